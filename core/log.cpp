#include "core/log.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <string>
#include <thread>

#include "core/mpsc_queue.hpp"

namespace tessera::log {
namespace {
std::atomic<Level> g_level{Level::info};
thread_local std::string t_name = "main";
thread_local bool t_deferred = false;

void write_all(std::string_view line) {
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::write(2, line.data() + off, line.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
}

// The lines of deferring threads (targets), written by a thread of its own: a target thread
// never waits on stderr (a full pipe, a slow disk). Bounded: past kMaxPending lines waiting,
// lines are dropped and counted, and the next line written says how many.
struct LineNode final : TaskNode {
  std::string line;
  void run() override {}
};

std::atomic<bool> g_writer_alive{false};

class Writer {
 public:
  static constexpr uint64_t kMaxPending = 4096;
  Writer() : thread_([this] { loop(); }) { g_writer_alive = true; }
  ~Writer() {
    g_writer_alive = false;
    quit_ = true;
    wake();
    thread_.join();
    drain();
  }
  void push(std::string&& line) {
    if (pending_.fetch_add(1, std::memory_order_relaxed) >= kMaxPending) {
      pending_.fetch_sub(1, std::memory_order_relaxed);
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    auto* n = new LineNode;
    n->line = std::move(line);
    q_.push(n);
    wake();
  }

 private:
  void wake() {
    seq_.fetch_add(1, std::memory_order_release);
    seq_.notify_one();
  }
  void loop() {
    while (true) {
      const uint64_t seen = seq_.load(std::memory_order_acquire);
      drain();
      if (quit_) return;
      seq_.wait(seen, std::memory_order_acquire);
    }
  }
  void drain() {
    while (TaskNode* n = q_.pop()) {
      auto* l = static_cast<LineNode*>(n);
      write_all(l->line);
      delete l;
      pending_.fetch_sub(1, std::memory_order_relaxed);
    }
    if (uint64_t d = dropped_.exchange(0, std::memory_order_relaxed); d > 0) {
      write_all(fmt::format("{} log lines of target threads dropped (the log writer fell "
                            "behind)\n",
                            d));
    }
  }
  MpscQueue q_;
  std::atomic<uint64_t> seq_{0};
  std::atomic<uint64_t> pending_{0};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<bool> quit_{false};
  std::thread thread_;
};

Writer& writer() {
  static Writer w;
  return w;
}
}  // namespace

void set_deferred(bool on) {
  if (on) (void)writer();  // started here, off the data path
  t_deferred = on;
}

void set_level(Level l) {
  g_level = l;
}
Level level() {
  return g_level.load(std::memory_order_relaxed);
}

Level parse_level(std::string_view s) {
  if (s == "debug") return Level::debug;
  if (s == "warn") return Level::warn;
  if (s == "error") return Level::error;
  if (s == "off") return Level::off;
  return Level::info;
}

void set_thread_name(std::string_view name) {
  t_name = name;
}

void write(Level l, std::string_view msg) {
  static constexpr const char* kNames[] = {"DEBUG", "INFO", "WARN", "ERROR", "OFF"};
  // UTC, ISO 8601 to the microsecond: 2026-11-30T15:40:01.123456Z.
  auto now = std::chrono::system_clock::now();
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  const time_t secs = static_cast<time_t>(us / 1000000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  std::string line =
      fmt::format("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.{:06d}Z {:5} [{}] {}\n",
                  tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  us % 1000000, kNames[static_cast<int>(l)], t_name, msg);
  if (t_deferred && g_writer_alive.load(std::memory_order_acquire)) {
    writer().push(std::move(line));
    return;
  }
  write_all(line);
}

bool RateLimit::allow(uint64_t* suppressed) {
  const auto now = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                             std::chrono::steady_clock::now().time_since_epoch())
                                             .count());
  uint64_t seen = second_.load(std::memory_order_relaxed);
  if (seen != now && second_.compare_exchange_strong(seen, now, std::memory_order_relaxed)) {
    count_.store(0, std::memory_order_relaxed);
  }
  if (count_.fetch_add(1, std::memory_order_relaxed) < per_second_) {
    *suppressed = dropped_.exchange(0, std::memory_order_relaxed);
    return true;
  }
  dropped_.fetch_add(1, std::memory_order_relaxed);
  total_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

}  // namespace tessera::log

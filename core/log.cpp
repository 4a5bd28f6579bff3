#include "core/log.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <string>

namespace tessera::log {
namespace {
std::atomic<Level> g_level{Level::info};
thread_local std::string t_name = "main";
}  // namespace

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
  ssize_t off = 0;
  while (off < static_cast<ssize_t>(line.size())) {
    ssize_t n = ::write(2, line.data() + off, line.size() - off);
    if (n <= 0) break;
    off += n;
  }
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

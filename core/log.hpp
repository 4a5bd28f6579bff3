// Logging through fmt. One process-wide level; lines carry the thread's name (e.g. "tgt-1")
// so a target's messages are easy to pick out. Writes go to stderr with one write(2) per line,
// so lines from different threads never interleave. Target threads never write themselves:
// their lines go to a bounded queue a log thread drains (set_deferred).
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <cstdint>
#include <string_view>

namespace tessera::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

void set_level(Level l);
Level level();
Level parse_level(std::string_view s);  // "debug|info|warn|error|off"; unknown -> info
void set_thread_name(std::string_view name);
// Lines of the calling thread are queued (bounded) and written by a log thread, so it never
// blocks on stderr: target threads turn this on. Other threads write directly.
void set_deferred(bool on);
void write(Level l, std::string_view msg);

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... a) {
  if (level() <= Level::debug) write(Level::debug, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... a) {
  if (level() <= Level::info) write(Level::info, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... a) {
  if (level() <= Level::warn) write(Level::warn, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... a) {
  if (level() <= Level::error) write(Level::error, fmt::format(f, std::forward<Args>(a)...));
}

// Bounds the lines one call site writes for input that others control (malformed frames,
// refused requests): at most `per_second` lines in each second; the rest are counted, and the
// next line written says how many were left out. Lock-free; any thread.
//   static log::RateLimit limit(5);
//   if (uint64_t skipped = 0; limit.allow(&skipped)) log::warn("... ({} like it not shown)",
//   skipped);
class RateLimit {
 public:
  explicit RateLimit(uint32_t per_second) : per_second_(per_second) {}
  bool allow(uint64_t* suppressed);
  uint64_t suppressed_total() const { return total_.load(std::memory_order_relaxed); }

 private:
  const uint32_t per_second_;
  std::atomic<uint64_t> second_{0};
  std::atomic<uint32_t> count_{0};
  std::atomic<uint64_t> dropped_{0};  // since the last line written
  std::atomic<uint64_t> total_{0};
};

}  // namespace tessera::log

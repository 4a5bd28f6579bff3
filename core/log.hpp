// Logging through fmt. One process-wide level; lines carry the thread's name (e.g. "tgt-1")
// so a target's messages are easy to pick out. Writes go to stderr with one write(2) per line,
// so lines from different threads never interleave.
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace tessera::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

void set_level(Level l);
Level level();
Level parse_level(std::string_view s);  // "debug|info|warn|error|off"; unknown -> info
void set_thread_name(std::string_view name);
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

}  // namespace tessera::log

#include "core/crash_point.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace tessera {

namespace {
struct Armed {
  std::string point;
  std::string key;  // empty: any
  bool any_key = false;
  uint64_t nth = 1;   // ends the process at this hit
  int64_t rank = -1;  // only in this engine (-1: any)
  std::shared_ptr<std::atomic<uint64_t>> hits = std::make_shared<std::atomic<uint64_t>>(0);
};

// "%hh" is the byte hh (keys holding bytes an environment variable cannot: a NUL, a comma).
std::string unescape(std::string_view k) {
  std::string out;
  for (size_t i = 0; i < k.size(); ++i) {
    if (k[i] == '%' && i + 2 < k.size()) {
      const std::string hex(k.substr(i + 1, 2));
      out.push_back(static_cast<char>(std::strtoul(hex.c_str(), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(k[i]);
    }
  }
  return out;
}

// The non-empty items of the comma-separated list in environment variable `name`.
std::vector<std::string_view> env_items(const char* name) {
  std::vector<std::string_view> out;
  const char* env = std::getenv(name);
  std::string_view s(env == nullptr ? "" : env);
  while (!s.empty()) {
    auto comma = s.find(',');
    std::string_view item = s.substr(0, comma);
    s = comma == std::string_view::npos ? std::string_view() : s.substr(comma + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// Parsed once (static init is thread-safe); read-only afterwards (every thread may reach a crash
// point).
const std::vector<Armed>& armed() {
  static const std::vector<Armed> list = [] {
    std::vector<Armed> out;
    for (std::string_view item : env_items("TESSERA_CRASH_AT")) {
      Armed a;
      if (auto eq = item.find('='); eq != std::string_view::npos) {
        a.rank = std::strtoll(std::string(item.substr(eq + 1)).c_str(), nullptr, 10);
        item = item.substr(0, eq);
      }
      auto at = item.find('@');
      if (at != std::string_view::npos) {
        a.nth = std::strtoull(std::string(item.substr(at + 1)).c_str(), nullptr, 10);
        item = item.substr(0, at);
      }
      auto colon = item.find(':');
      a.point = std::string(item.substr(0, colon));
      a.any_key = colon == std::string_view::npos;
      if (!a.any_key) a.key = unescape(item.substr(colon + 1));
      out.push_back(std::move(a));
    }
    return out;
  }();
  return list;
}
// TESSERA_DELAY_AT, parsed once: (point, milliseconds).
const std::vector<std::pair<std::string, uint64_t>>& delays() {
  static const std::vector<std::pair<std::string, uint64_t>> list = [] {
    std::vector<std::pair<std::string, uint64_t>> out;
    for (std::string_view item : env_items("TESSERA_DELAY_AT")) {
      auto eq = item.find('=');
      if (eq == std::string_view::npos) continue;
      out.emplace_back(std::string(item.substr(0, eq)),
                       std::strtoull(std::string(item.substr(eq + 1)).c_str(), nullptr, 10));
    }
    return out;
  }();
  return list;
}
std::atomic<int64_t> g_rank{-1};
// Written only while no target runs (set_crash_hook's contract); read by every target.
CrashHook g_hook;
std::atomic<bool> g_hooked{false};
}  // namespace

void set_crash_hook(CrashHook hook) {
  g_hooked = false;
  g_hook = std::move(hook);
  g_hooked = static_cast<bool>(g_hook);
}

void delay_point(std::string_view point) {
  const auto& list = delays();
  if (list.empty()) return;
  for (const auto& [p, ms] : list) {
    if (p == point) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  }
}

void set_crash_point_rank(uint32_t rank) {
  g_rank = rank;
}

void crash_point(std::string_view point, std::string_view key) {
  if (g_hooked.load(std::memory_order_relaxed)) g_hook(point, key);
  const auto& list = armed();
  if (list.empty()) return;
  for (const auto& a : list) {
    if (a.point != point || (!a.any_key && a.key != key)) continue;
    if (a.rank >= 0 && a.rank != g_rank.load()) continue;
    if (a.hits->fetch_add(1) + 1 != a.nth) continue;
    std::string line = "crash point reached: " + std::string(point) + " " + std::string(key) + "\n";
    ssize_t n = ::write(2, line.data(), line.size());
    (void)n;
    ::_exit(137);
  }
}

}  // namespace tessera

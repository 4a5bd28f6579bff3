// Crash points: fault injection for the tests that kill an engine at each step of a protocol.
//
// TESSERA_CRASH_AT="point:key@n=rank,..." in an engine's environment makes the process end at
// once, as `kill -9` would (no destructor runs, nothing is flushed), the n-th time it reaches
// `point` for `key` (without "@n": the first time; without ":key": any key; without "=rank": in
// every engine, else only in the engine of that rank). In a key, "%hh" stands for the byte of
// hex value hh (binary keys: "%00%00%00%00%00%00%00%00"). One line naming the point goes to
// standard error first. Unset (the default), a crash point costs one branch.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

namespace tessera {

void crash_point(std::string_view point, std::string_view key = {});
// Delay points: TESSERA_DELAY_AT="point=ms,..." makes the thread reaching `point` sleep `ms`
// milliseconds each time (a test widens a race window with it: the next step of a stop comes
// late). Only where a thread may block (the main and control threads), never on a target's
// thread. Unset (the default), a delay point costs one branch.
void delay_point(std::string_view point);

// The engine's rank, for points armed for one rank (tessera-server sets it at start).
void set_crash_point_rank(uint32_t rank);

// A simulation that runs many engines in one process cannot end the process: it installs a hook
// that every crash point calls first (on the thread that reached it), and decides there whether
// the engine owning that thread dies. Install before any target runs and clear after all
// stopped (empty: none).
using CrashHook = std::function<void(std::string_view point, std::string_view key)>;
void set_crash_hook(CrashHook hook);

}  // namespace tessera

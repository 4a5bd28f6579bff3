#include "core/env.hpp"

#include <time.h>

namespace tessera {

RealEnv::RealEnv() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  state_ = static_cast<uint64_t>(ts.tv_nsec) ^ (static_cast<uint64_t>(ts.tv_sec) << 20) ^
           0x9e3779b97f4a7c15ULL;
}

Nanos RealEnv::now() const {
  return std::chrono::duration_cast<Nanos>(std::chrono::steady_clock::now().time_since_epoch());
}

Nanos RealEnv::wall() const {
  return std::chrono::duration_cast<Nanos>(std::chrono::system_clock::now().time_since_epoch());
}

uint64_t RealEnv::random() {
  // splitmix64 over an atomic counter: lock-free and good enough for ids and jitter.
  uint64_t z = state_.fetch_add(0x9e3779b97f4a7c15ULL) + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

RealEnv& RealEnv::instance() {
  static RealEnv env;
  return env;
}

namespace {
constexpr uint64_t kLogicalBits = 16;
uint64_t physical_part(const Env& env) {
  // Microseconds of wall time, shifted to leave room for the logical counter.
  auto us = static_cast<uint64_t>(env.wall().count() / 1000);
  return us << kLogicalBits;
}
}  // namespace

uint64_t epoch_at_wall(Nanos wall) {
  return static_cast<uint64_t>(wall.count() / 1000) << kLogicalBits;
}

Nanos wall_of_epoch(uint64_t epoch, Nanos now) {
  constexpr uint64_t kMask = (uint64_t{1} << (64 - kLogicalBits)) - 1;
  const auto now_us = static_cast<uint64_t>(now.count() / 1000);
  const uint64_t low = epoch >> kLogicalBits;
  const uint64_t back = (now_us - low) & kMask;  // how long before `now`, modulo the wrap
  return Nanos(static_cast<int64_t>((now_us - back) * 1000));
}

uint64_t HybridClock::tick() {
  uint64_t p = physical_part(env_);
  last_ = p > last_ ? p : last_ + 1;
  return last_;
}

void HybridClock::observe(uint64_t remote) {
  if (remote > last_) last_ = remote;
}

}  // namespace tessera

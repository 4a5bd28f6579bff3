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

uint64_t epoch_at_wall(Nanos wall) {
  if (wall <= kEpochOrigin) return 0;
  const auto ns = static_cast<uint64_t>((wall - kEpochOrigin).count());
  return ns & ~((uint64_t{1} << kEpochLogicalBits) - 1);
}

Nanos wall_of_epoch(uint64_t epoch) {
  const uint64_t ns = epoch & ~((uint64_t{1} << kEpochLogicalBits) - 1);
  // A wall time in 64-bit nanoseconds ends in 2262; epochs beyond read as that end.
  const auto room = static_cast<uint64_t>((Nanos::max() - kEpochOrigin).count());
  if (ns > room) return Nanos::max();
  return kEpochOrigin + Nanos(static_cast<int64_t>(ns));
}

uint64_t HybridClock::tick() {
  const uint64_t p = epoch_at_wall(env_.wall());
  last_ = p > last_ ? p : last_ + 1;
  return last_;
}

void HybridClock::observe(uint64_t remote) {
  if (remote > last_) last_ = remote;
}

}  // namespace tessera

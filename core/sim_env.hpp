// SimEnv: the environment a simulation gives the production code it runs (tests/sim).
//
// Two clocks:
// - real time (the default): the real monotonic clock plus every skip(). A simulation whose
//   clients never pause jumps to a background timer (a transaction resolver that acts after
//   seconds, a checkpoint, a WAL group's delay) at once instead of sleeping.
// - virtual time: only skip() moves it. A simulation moves it while every target is idle
//   (Target::idle) and nothing is in flight, so no timeout expires because a thread was slow:
//   on a loaded machine the run takes longer, never differently.
// Targets sleep in epoll for the Env time to their next timer, so whoever skips wakes them
// (Target::wake) to fire what came due. Wall time starts at a fixed instant. Random draws come
// from the seed.
//
// Fault points (Env::fault) fire at a seeded rate per site (set_faults). Every site asked is
// counted, with how often it fired, so a test shows which points it reached and that its faults
// happened.
//
// Thread-safe: all targets of a simulation share one (a mutex: test wiring, not a data path).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <random>
#include <string>

#include "core/env.hpp"

namespace tessera {

class SimEnv final : public Env {
 public:
  struct Options {
    uint64_t seed = 1;
    bool real_time = true;                          // false: virtual time (see above)
    Nanos wall_start{1'893'456'000'000'000'000LL};  // 2030-01-01T00:00:00Z
  };
  struct SiteCount {
    uint64_t asked = 0;
    uint64_t fired = 0;
  };
  using Rates = std::map<std::string, uint32_t, std::less<>>;  // site -> faults per 100,000

  explicit SimEnv(Options o);
  Nanos now() const override;
  Nanos wall() const override;
  uint64_t random() override;
  bool fault(std::string_view site) override;

  // Moves the clock `d` ahead at once (then wake the targets).
  void skip(Nanos d);
  // Which sites fail, and how often (empty: none, as for a simulation's final convergence).
  void set_faults(Rates per_100k);
  std::map<std::string, SiteCount, std::less<>> fault_counts() const;

 private:
  const Options opts_;
  const Nanos start_;
  std::atomic<int64_t> skipped_{0};
  mutable std::mutex mu_;
  std::mt19937_64 rng_;
  std::mt19937_64 fault_rng_;  // apart, so faults do not shift the other draws
  Rates rates_;
  std::map<std::string, SiteCount, std::less<>> counts_;
};

}  // namespace tessera

// The injected environment: every clock read and random draw in Tessera goes through an Env.
//
// Production code receives RealEnv; tests (and the later simulation) pass ManualEnv, whose clock
// only moves when the test advances it and whose randomness is seeded. An Env is shared by all
// targets of a process and must be thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <random>
#include <string_view>

namespace tessera {

using Nanos = std::chrono::nanoseconds;

class Env {
 public:
  virtual ~Env() = default;
  // Monotonic time in nanoseconds; drives timers and timeouts.
  virtual Nanos now() const = 0;
  // Wall-clock time in nanoseconds since the Unix epoch; feeds the hybrid logical clock.
  virtual Nanos wall() const = 0;
  virtual uint64_t random() = 0;
  // A fault point (FoundationDB's BUGGIFY): production code asks here, where a rare failure is
  // possible (a device write, a send, a commit notice), whether to fail now as the site's
  // comment says. Only a simulation's Env ever answers true (core/sim_env.hpp); the real one
  // costs a virtual call. `site` names the point ("wal.write"): docs/DEVELOPMENT.md lists them.
  virtual bool fault(std::string_view site) {
    (void)site;
    return false;
  }
};

class RealEnv final : public Env {
 public:
  RealEnv();
  Nanos now() const override;
  Nanos wall() const override;
  uint64_t random() override;
  static RealEnv& instance();

 private:
  std::atomic<uint64_t> state_;
};

// Another environment with its wall clock `offset` apart, as on a host whose clock is not set
// right (tessera-server --clock-offset-ms, for tests of engines whose clocks disagree).
class SkewedEnv final : public Env {
 public:
  SkewedEnv(Env& base, Nanos offset) : base_(base), offset_(offset) {}
  Nanos now() const override { return base_.now(); }
  Nanos wall() const override { return base_.wall() + offset_; }
  uint64_t random() override { return base_.random(); }
  bool fault(std::string_view site) override { return base_.fault(site); }

 private:
  Env& base_;
  Nanos offset_;
};

// Deterministic environment for tests: time advances only through advance().
class ManualEnv final : public Env {
 public:
  explicit ManualEnv(uint64_t seed = 1) : rng_(seed) {}
  Nanos now() const override { return Nanos(now_.load()); }
  Nanos wall() const override { return Nanos(1'700'000'000'000'000'000LL + now_.load()); }
  uint64_t random() override {
    std::lock_guard lk(mu_);
    return rng_();
  }
  void advance(Nanos d) { now_ += d.count(); }

 private:
  std::atomic<int64_t> now_{0};
  std::mutex mu_;
  std::mt19937_64 rng_;
};

// Epochs: a hybrid logical clock with a fixed origin (docs/STORAGE_FORMAT.md, "Epochs").
//
// An epoch is a 64-bit integer, compared as one: the nanoseconds since kEpochOrigin
// (2021-01-01T00:00:00Z) with the low kEpochLogicalBits cleared (a physical tick of 256 ns),
// plus a logical counter in those bits that orders epochs taken within one tick or after a
// peer's clock that runs ahead. The clock does not wrap: it runs as long as a 64-bit
// nanosecond wall clock does (to 2262; the epochs themselves would reach 2605). A wall clock
// before the origin counts as the origin (the logical part still orders). One clock per
// target; not shared.
inline constexpr Nanos kEpochOrigin{1'609'459'200'000'000'000LL};  // 2021-01-01T00:00:00Z
inline constexpr uint64_t kEpochLogicalBits = 8;

// The epoch a HybridClock would give at wall time `wall` (ns since the Unix epoch), logical part
// zero: how the store turns "older than 30 s" into an aggregation epoch.
uint64_t epoch_at_wall(Nanos wall);
// The wall time (ns since the Unix epoch) an epoch's physical part stands for, to within a
// physical tick (an epoch whose logical part carried into it reads a little later).
Nanos wall_of_epoch(uint64_t epoch);

class HybridClock {
 public:
  explicit HybridClock(const Env& env) : env_(env) {}
  uint64_t tick();
  // Merge an epoch seen from a peer so that later local epochs order after it.
  void observe(uint64_t remote);
  uint64_t last() const { return last_; }

 private:
  const Env& env_;
  uint64_t last_ = 0;
};

}  // namespace tessera

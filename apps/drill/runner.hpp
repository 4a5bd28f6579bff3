// The drill runner's internals, shared by runner.cpp (setup, monitor, report) and steps.cpp
// (what each step does). Not part of the drill API (drill.hpp).
#pragma once

#include <signal.h>

#include <fmt/format.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "apps/drill/drill.hpp"
#include "apps/drill/fill.hpp"
#include "apps/local_system.hpp"
#include "client/mgmt_client.hpp"

namespace tessera::drill {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
using placement::TargetState;
namespace fs = std::filesystem;

constexpr Millis kPoll{100};
constexpr Millis kDefaultWait{180000};

inline double mib(uint64_t bytes) {
  return static_cast<double>(bytes) / (1024.0 * 1024.0);
}
// `x` rounded to `decimals` places (figures in the report).
inline double rounded(double x, int decimals) {
  const double f = std::pow(10.0, decimals);
  return static_cast<double>(static_cast<int64_t>(x * f + 0.5)) / f;
}
inline double round1(double x) {
  return rounded(x, 1);
}
inline double round2(double x) {
  return rounded(x, 2);
}

// No target of the engine is up-in any more: its failure (or stop) has reached the map.
inline bool none_up_in(const placement::MapEngine& e) {
  return std::none_of(e.targets.begin(), e.targets.end(),
                      [](const auto& t) { return t.state == TargetState::up_in; });
}

class Runner {
 public:
  Runner(const DrillSpec& d, const RunOptions& o) : d_(d), o_(o) {}
  ~Runner() { teardown(); }

  Result<json> run();

 private:
  double now() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }
  void event(const std::string& kind, const std::string& text, json extra = json::object());
  void progress(const std::string& line) const {
    if (o_.on_progress) o_.on_progress(line);
  }
  Status setup();
  Status run_step(const Step& st);
  // The steps that take more than a few lines (steps.cpp).
  Status step_kill(const Step& st);
  Status step_restart(const Step& st);
  Status step_background(const Step& st);
  Status step_exec(const Step& st);
  Status step_fill(const Step& st);
  Status step_unfill();
  Status step_corrupt(const Step& st);
  Status assert_space(const Step& st);
  // Waits (up to `within`) until the system lists every rank of `ranks` joined.
  Status wait_joined(const std::vector<uint32_t>& ranks, Millis within);
  // Waits (up to `limit`) for every background step to end; the first failure is returned.
  Status join_background(Millis limit);
  // The system file as steps last saw it (kill and restart update it; background steps too).
  local::SystemFile system() const {
    std::lock_guard lk(sys_mu_);
    return sys_;
  }
  // A wait step's limit: its `timeout` or `dflt`, times the run's time scale.
  Millis limit(const Step& st, Millis dflt) const {
    const Millis given = st.duration.count() > 0 ? st.duration : dflt;
    return Millis(static_cast<int64_t>(static_cast<double>(given.count()) *
                                       std::max(1.0, o_.time_scale)));
  }
  Status wait_until(const Step& st, const std::function<Result<bool>(const mgmt::PoolView&)>& done,
                    const std::string& what);
  void monitor();
  void observe(const mgmt::PoolView& v);
  bool degraded(const mgmt::PoolView& v) const;
  json summary(const Result<VerifyReport>& final) const;
  void teardown();
  // The first fault (kill, stop, data-moving operation) ends the "before" phase.
  void fault() {
    if (first_fault_.load() < 0) first_fault_ = now();
    std::lock_guard lk(mu_);
    fault_gen_ = last_ ? last_->pool.rebuild.gen : 0;
  }
  uint32_t fault_gen_ = 0;  // the rebuild generation seen when the last fault was injected

  const DrillSpec& d_;
  RunOptions o_;
  Clock::time_point t0_ = Clock::now();
  mutable std::mutex mu_;  // the timeline and the monitor's records (a tool, not a data path)
  json timeline_ = json::array();
  mutable std::mutex sys_mu_;  // sys_, once background steps may run
  local::SystemFile sys_;
  bool started_ = false;
  std::string dir_;
  std::string mgmt_;
  std::unique_ptr<MgmtClient> mc_;
  // Set by the main thread; the monitor thread reads both under mu_.
  std::unique_ptr<VerifiedLoad> load_;
  bool load_running_ = false;
  double steps_start_ = 0;
  std::atomic<double> first_fault_{-1};
  std::map<uint32_t, double> kill_t_;    // rank -> when it was killed (or its target stopped)
  std::map<uint32_t, double> detect_s_;  // rank -> seconds from the kill to the map change
  std::set<uint32_t> expect_down_;       // killed and not yet reintegrated
  std::set<uint32_t> hung_;              // stopped with SIGSTOP (killed at the end)
  std::set<std::pair<uint32_t, uint32_t>> stopped_;  // targets stopped, not yet reintegrated
  // Monitor.
  std::thread mon_;
  std::atomic<bool> mon_stop_{false};
  struct Sample {
    double t = 0;
    uint64_t bytes = 0;
    uint64_t writes = 0;
    bool running = false;
    bool degraded = false;
  };
  std::vector<Sample> samples_;
  std::optional<mgmt::PoolView> last_;
  std::map<uint32_t, json> gens_;  // rebuild generations seen finished
  // Background steps: each runs in its own thread until `wait background` or the drill's end.
  struct Background {
    Step step;
    std::thread th;
    std::atomic<bool> done{false};
    Status result;  // valid once done
  };
  std::vector<std::unique_ptr<Background>> bg_;
  std::atomic<bool> aborting_{false};  // the drill failed or ends: waits give up at once
  std::unique_ptr<Filler> filler_;  // fill pool to N% / delete fill
};

}  // namespace tessera::drill

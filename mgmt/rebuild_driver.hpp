// RebuildDriver: the management service's decisions about rebuild generations, apart from its
// threads, its network and its clock, so that the seeded simulation runs the same rules
// (tests/sim/rebuild_sim_test.cpp) as the service does (actors/mgmt/).
//
// The state machine (MgmtState) starts a generation whenever a pool's map moves; the driver
// decides what follows from it:
// - which engines to send a generation (every joined engine of the pool's map, once per
//   generation, and an engine that joins while one runs);
// - when a generation completes: once every target that serves or is being filled reported it
//   done, whatever its engine's membership (an engine that stopped, or died beyond what the pool
//   tolerates, keeps its targets in the map and may hold the one copy a position is filled
//   from: the generation waits for it to come back rather than completing without its data);
//   a generation with no such target completes at once;
// - when it failed: the first target that reports an error fails it;
// - when a failed generation starts again: after a back-off (5 s, doubling with each failure in
//   a row up to 5 minutes), only while the map still moves; a completed generation resets it.
//
// The driver returns the commands to commit and the starts to send; its caller commits them
// (through its journal or raft) and sends them. It remembers only what a new leader may forget
// (what it sent, the targets' reports, the back-off): `reset` starts afresh.
//
// Thread: its owner's (the service's, under its state lock; the simulation's test thread).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/env.hpp"
#include "mgmt/state.hpp"
#include "mgmt/types.hpp"

namespace tessera::mgmt {

class RebuildDriver {
 public:
  struct Options {
    Nanos first_retry = std::chrono::seconds(5);
    Nanos longest_retry = std::chrono::seconds(300);
  };
  // A generation to send: to each engine of `ranks`.
  struct Start {
    uint32_t pool = 0, gen = 0, version = 0;
    std::vector<uint32_t> ranks;
  };
  // One target's report of a generation: progress, or done, or failed (`error`).
  struct Report {
    uint32_t pool = 0, gen = 0, rank = 0, target = 0;
    uint64_t objects = 0, records = 0, bytes = 0, lost = 0, planned = 0;
    bool done = false;
    std::string error;
  };
  // What the caller does next: commit each command in order, send each start.
  struct Actions {
    std::vector<nlohmann::json> commands;
    std::vector<Start> starts;
  };
  // Back-off decisions the caller may log: a failed generation scheduled for a retry.
  struct Scheduled {
    uint32_t pool = 0, gen = 0, attempt = 0;
    Nanos wait{0};
  };

  RebuildDriver() : RebuildDriver(Options{}) {}
  explicit RebuildDriver(Options o) : opts_(o) {}

  // After any change of the state: the busy generations not sent yet, to the joined engines
  // of their pools; generations with nothing to wait for complete at once (`now_ms`: the wall
  // clock the commands record).
  Actions after_change(const MgmtState& st, uint64_t now_ms);
  // Rank `rank` joined: the busy generations of its pools, for it alone (it scans too).
  std::vector<Start> on_join(const MgmtState& st, uint32_t rank) const;
  // A target's report: the command it completes or fails its generation with, if any. Reports
  // of other generations, and of targets the generation does not wait for, change nothing.
  std::optional<nlohmann::json> report(const MgmtState& st, const Report& r, uint64_t now_ms);
  // The retry of a failed generation: the command that starts it, and how many generations
  // failed in a row before it.
  struct Retry {
    nlohmann::json command;
    uint32_t attempt = 0;
  };
  // The monitor's round at `now` (the service's monotonic clock): the retry of a failed
  // generation that is due, if any (one per round); `scheduled` gets the retries planned.
  std::optional<Retry> tick(const MgmtState& st, Nanos now, uint64_t now_ms,
                            std::vector<Scheduled>* scheduled = nullptr);
  // A new leader: forget what was sent and reported (the engines are sent the running
  // generations again), and the back-off.
  void reset();

  // The running generation's progress for `pool`, summed over the targets that reported
  // (targets_done and targets_reported count them; targets_total is the pool's).
  RebuildProgress progress(const Pool& p) const;
  // The targets a pool's generation waits for.
  static uint32_t targets_waited(const Pool& p);
  static bool waits_for(const Pool& p, uint32_t rank, uint32_t target);

 private:
  struct Progress {
    uint32_t gen = 0;
    std::map<std::pair<uint32_t, uint32_t>, RebuildProgress> targets;  // (rank, target)
    std::map<std::pair<uint32_t, uint32_t>, bool> done;
    // `bytes_total`: each target's plan, or (while it runs, `at_least_sent`) what it has sent
    // when that is more: writes during a rebuild add to it.
    RebuildProgress sum(bool at_least_sent) const;
  };
  struct Backoff {
    uint32_t failed_gen = 0;  // the failed generation a retry is scheduled for
    uint32_t attempts = 0;    // failures in a row
    Nanos at{0};
  };
  Options opts_;
  std::map<uint32_t, uint32_t> sent_gen_;  // by pool: the generation the engines were sent
  std::map<uint32_t, Progress> progress_;  // by pool
  std::map<uint32_t, Backoff> retry_;      // by pool
};

}  // namespace tessera::mgmt

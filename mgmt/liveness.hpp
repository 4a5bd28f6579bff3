// Liveness: the management service's judgement of which joined engines are alive, apart from
// its threads and its clock, so that the seeded simulation runs the same rules
// (tests/sim/rebuild_sim_test.cpp) as the service's monitor does (actors/mgmt/membership.cpp).
//
// The rules (docs/OPERATIONS.md, "Membership and failures"):
// - a joined engine silent (no join, no heartbeat) for `dead_after` is dead; one that has not
//   joined this leader yet (`awaiting_rejoin`) is allowed `rejoin_grace` more;
// - an engine that announced a clean stop is dead only if it has not joined again after
//   `stop_grace`;
// - a service that finds it has not run for `pause_after` (its own process paused or starved,
//   the clock read between two rounds jumped) gives every engine a new grace period: silence
//   while the service itself did not run is no evidence against the engines;
// - a failure detector's verdict is refused while the engine's own heartbeat is younger than
//   `dead_confirm_silence`;
// - the engine hosting the service (`self_rank`) is never judged: the service runs, so it does.
//
// Time is the service's monotonic clock, given to every call. The caller turns a verdict into
// a command (`leave` with state dead) and tells the state machine.
//
// Thread: its owner's (the service's, under its state lock; the simulation's test thread).
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "core/env.hpp"
#include "mgmt/state.hpp"

namespace tessera::mgmt {

class Liveness {
 public:
  struct Options {
    Nanos dead_after = std::chrono::seconds(10);
    Nanos rejoin_grace = std::chrono::seconds(10);
    Nanos stop_grace = std::chrono::seconds(30);
    Nanos pause_after = std::chrono::seconds(3);
    Nanos dead_confirm_silence = std::chrono::milliseconds(1500);
    uint32_t self_rank = UINT32_MAX;
  };
  // A member that must be declared gone, and why (for the log and the command's reason).
  struct Verdict {
    uint32_t rank = 0;
    std::string why;
  };

  explicit Liveness(Options o) : opts_(o) {}

  // Rank `rank` joined (again): heard from now, no longer a clean stop waiting for it.
  void joined(uint32_t rank, Nanos now);
  // Its heartbeat.
  void heard(uint32_t rank, Nanos now) { last_seen_[rank] = now; }
  // It announced a clean stop: its grace starts now.
  void stopped(uint32_t rank, Nanos now) { stopped_at_[rank] = now; }
  // A restarted service or a new leader: every member heard from now, and the monitor's
  // rounds counted from now; nothing else remembered (a new leader then starts the grace of
  // each stopped member with `stopped`).
  void restart(const MgmtState& st, Nanos now);
  // The monitor's rounds counted from now, nobody heard from yet (an access point starting:
  // it judges nobody until it leads, and then `restart`s).
  void begin(Nanos now) { last_round_ = now; }

  // The monitor's round begins at `now`: the length of the gap since the last round when it is
  // longer than `pause_after` (every engine then gets a new grace period; the caller extends
  // anything else it times, such as handle leases), else nothing.
  std::optional<Nanos> round(Nanos now);
  // The first member to declare gone at `now`, if any (one per round: the state changes).
  // `awaiting_rejoin(rank)`: the rank has not joined this leader yet.
  std::optional<Verdict> judge(const MgmtState& st, Nanos now,
                               const std::function<bool(uint32_t)>& awaiting_rejoin);
  // How long ago the rank was heard from, when that is less than `dead_confirm_silence` (a
  // failure detector's verdict is then refused).
  std::optional<Nanos> heard_recently(uint32_t rank, Nanos now) const;

  const Options& options() const { return opts_; }

 private:
  Options opts_;
  Nanos last_round_{0};
  std::map<uint32_t, Nanos> last_seen_;   // joined ranks: the last join or heartbeat
  std::map<uint32_t, Nanos> stopped_at_;  // ranks that announced a clean stop: when
};

}  // namespace tessera::mgmt

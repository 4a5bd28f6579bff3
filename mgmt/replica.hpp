// Replica: one access point's copy of the management state, kept in step with the others by
// raft (canonical's libraft, with its libuv back end for the log, snapshots and TCP).
//
// The state machine is the caller's (Fsm): raft calls `apply` with each committed command, in
// log order, on every replica; `snapshot` and `restore` bound the log. A command is proposed on
// the leader with `propose`, which returns once this replica has applied it, with the status
// `apply` returned for it (a refused command is refused on every replica alike: the state
// machine is deterministic). On a follower, `propose` answers `not_leader` and names the
// leader it knows.
//
// Connections between replicas prove the system key (AuthTransport).
//
// Threads: a thread of its own runs the uv loop; raft and the Fsm callbacks run only there.
// `propose`, `info` and the destructor may be called from any other thread; they hand work to
// the loop through a bounded queue. The Fsm callbacks must not wait for anything a proposer
// holds while it waits in `propose` (a proposer may hold its own lock while it waits; the
// callbacks then must not take that lock).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.hpp"
#include "security/system_key.hpp"

namespace tessera::mgmt {

class Replica {
 public:
  struct Peer {
    uint64_t id = 0;      // raft id, > 0
    std::string address;  // "IPv4:port"
  };
  struct Options {
    uint64_t id = 0;
    std::string address;       // where the others reach this one ("IPv4:port")
    std::string bind;          // listen here instead, when it differs ("0.0.0.0:port")
    std::string dir;           // raft's log, metadata and snapshots (must exist)
    std::vector<Peer> voters;  // every access point, this one included (the first start)
    std::shared_ptr<const security::SystemKey> key;
    std::chrono::milliseconds election_timeout{1000};
    std::chrono::milliseconds heartbeat{100};
    unsigned snapshot_threshold = 1024;  // entries between snapshots
    unsigned snapshot_trailing = 256;    // entries kept behind a snapshot
    size_t max_queued = 4096;            // proposals waiting for the loop
  };
  struct Fsm {
    std::function<Status(std::string_view cmd)> apply;  // deterministic
    std::function<std::string()> snapshot;
    std::function<Status(std::string_view state)> restore;
  };
  enum class Role { unavailable, follower, candidate, leader };
  struct Info {
    uint64_t id = 0;
    Role role = Role::unavailable;
    uint64_t leader_id = 0;  // 0: none known
    std::string leader_address;
    uint64_t term = 0;
    uint64_t last_index = 0;
    uint64_t applied = 0;
    uint64_t refused_connections = 0;
    uint64_t dropped_sends = 0;  // messages raft built for no valid peer (raft_send_guard.hpp)
  };

  // Starts the loop thread and raft. The first start of a replica (an empty `dir`) records
  // `voters` as the configuration; later starts read it from `dir`.
  static Result<std::unique_ptr<Replica>> start(Options opts, Fsm fsm);
  // Stops raft and the loop thread (the leader first hands leadership on, when it can).
  ~Replica();
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  // Appends `cmd` to the log and waits until this replica applied it: the Fsm's status, or
  // `not_leader` (naming the leader), `uncertain` (leadership was lost after the command was
  // appended: it may yet be applied), `timeout` (no majority answered in time: it may yet be
  // applied), `busy` (too many proposals queued), `shutdown`.
  Status propose(std::string cmd, std::chrono::milliseconds timeout);
  // Waits until every command committed before the call is applied here (a leader's read that
  // must see all earlier writes); errors as propose.
  Status barrier(std::chrono::milliseconds timeout);
  Result<Info> info(std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));

  struct Loop;  // replica.cpp

 private:
  explicit Replica(std::unique_ptr<Loop> loop);
  template <typename Submit>
  Status wait(std::chrono::milliseconds timeout, const char* what, const char* after,
              Submit submit);
  std::unique_ptr<Loop> loop_;
};

const char* role_name(Replica::Role r);

}  // namespace tessera::mgmt

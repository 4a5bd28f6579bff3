// MgmtService: the management service, on an engine's control socket. Keeps system membership,
// pools with their maps and ACLs, containers and open container handles in a MgmtState.
//
// Two ways to keep the state (docs/OPERATIONS.md, "Access points"):
// - alone (config `mgmt_host: true`): one engine hosts the service and appends every command
//   to its state file's journal before it answers, with a snapshot now and then (StateFile);
// - replicated (config `access_points`): every access point runs a MgmtService with a
//   Replica; a command is a raft log entry, applied by every access point in the same order.
//   Only the leader serves: a follower answers `not_leader` naming the leader's control
//   address, and decides nothing (membership, handle expiry, rebuilds). An access point that
//   becomes the leader first waits until it applied everything committed before (a barrier),
//   then starts as a restarted service would: no join connections, a grace period for all.
//
// Threads: requests arrive on the control server's worker threads; `mu_` orders them and
// guards the state (the control plane, never a target thread). Slow work (asking engines to
// create or destroy pool shards) runs without it. With a replica, commit() lends the state
// half of `mu_` to raft's apply (on the replica's loop thread) while it waits for its command:
// the request stays in order, the loop thread applies.
//
// Membership (membership.cpp): a monitor thread marks engines dead when their heartbeats stop;
// the join connection closing (an engine killed) marks them dead at once. An engine that stops
// cleanly says so first (`leave`): it is `stopped`, its targets stay in the pool maps, and only
// if it has not joined again after `stop_grace` is it dead. A service that is shutting down,
// or that finds it has not run for a while (paused, starved), decides nothing about others.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "core/actor.hpp"
#include "mgmt/leader.hpp"
#include "mgmt/liveness.hpp"
#include "mgmt/rebuild_driver.hpp"
#include "mgmt/replica.hpp"
#include "mgmt/state.hpp"
#include "mgmt/state_file.hpp"
#include "proto/mgmt.capnp.h"
#include "security/credential.hpp"

namespace tessera::mgmt {

// The wall clock in ms since the epoch, as records of the service keep it.
inline uint64_t wall_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// The service's clock as an epoch (new containers' and snapshots' epochs).
uint64_t wall_epoch();

struct MgmtOptions {
  std::string state_path;                       // the persisted state (JSON)
  uint32_t admin_uid = 0;                       // may create/destroy pools (as may root)
  std::chrono::milliseconds dead_after{10000};  // heartbeat silence that marks an engine dead
  // A new leader allows an engine that has not joined it yet this much more silence: the
  // engine may still be waiting on the previous leader, which a cut-off host answers with
  // nothing at all (the engine notices only when its heartbeat's answer is overdue,
  // MgmtLink::kBeatAnswer, then tries the access points one connect timeout each).
  std::chrono::milliseconds rejoin_grace{10000};
  // A failure detector's report is refused when the rank's own heartbeat is younger than this.
  std::chrono::milliseconds dead_confirm_silence{1500};
  std::chrono::milliseconds engine_timeout{120000};  // pool shard create/destroy on an engine
  // An engine that announced a clean stop and has not joined again after this is dead.
  std::chrono::milliseconds stop_grace{30000};
  // The monitor ticks every 500 ms; a gap longer than this means the service itself did not
  // run (SIGSTOP, starvation): silence meanwhile is no evidence against the engines.
  std::chrono::milliseconds pause_after{3000};
  // A container handle whose holder has not renewed it for this long is closed (its client
  // died); 0: handles never expire.
  std::chrono::milliseconds handle_lease{60000};
  // Verifies users' signed credentials (security/credential.hpp); null: only requests
  // authenticated with the system key (engines, administrators) are served.
  std::shared_ptr<security::CredentialVerifier> verifier;
  // The rank of the engine hosting the service: never declared dead while the service runs.
  uint32_t self_rank = UINT32_MAX;
  // Replicated (mgmt/leader.hpp): every access point, this engine (self_rank) among them; its
  // replica keeps raft's log and snapshots in `raft_dir`, and its connections to the other
  // access points prove `key`. Empty: the service stands alone with its state file.
  std::vector<AccessPoint> access_points;
  std::string raft_dir;
  std::shared_ptr<const security::SystemKey> key;
  std::chrono::milliseconds election_timeout{1000};
  std::chrono::milliseconds propose_timeout{10000};  // a command's wait for a majority
};

// The service's lock: `cmd` keeps requests one at a time, `state` guards the MgmtState. Locked
// whole by the request threads; raft's apply takes `state` alone, which commit() lends it.
class ServiceMutex {
 public:
  void lock() {
    cmd_.lock();
    state_.lock();
  }
  void unlock() {
    state_.unlock();
    cmd_.unlock();
  }
  std::mutex& state() { return state_; }

 private:
  std::mutex cmd_;
  std::mutex state_;
};

class MgmtService {
 public:
  static Result<std::unique_ptr<MgmtService>> open(MgmtOptions opts);
  ~MgmtService();

  // One request (protocol kProtoMgmt) from connection `session`.
  Result<Buffer> handle(const Message& m, uint64_t session);
  // A control connection closed.
  void on_close(uint64_t session);
  // The hosting engine is stopping: from now on the service decides nothing about members
  // (the connections that close as it stops are its own doing, not the engines' deaths). An
  // access point stops its replica (a leader hands leadership on).
  void shutdown();

  // This access point's replica (role, leader, term, log); unsupported when alone.
  Result<Replica::Info> replica_info();
  // Whether this service serves requests now (alone: always; replicated: while it leads).
  bool leading() const { return leading_.load(); }

 private:
  explicit MgmtService(MgmtOptions opts)
      : opts_(std::move(opts)), file_(opts_.state_path), live_(liveness_options(opts_)) {}
  static Liveness::Options liveness_options(const MgmtOptions& o);
  // Replicated (service_replica.cpp): the Fsm over state_, the replica's start, the
  // monitor's leadership check, the change of leader, and the follower's answer.
  bool replicated() const { return !opts_.access_points.empty(); }
  Status start_replica();
  void follow_leadership();
  void become_leader(uint64_t term);
  void stop_leading(const char* why);
  // After a change of leader (mu_ held, released while it waits): until the engines joined
  // this access point again, or kRejoinWindow after it began to lead.
  void await_rejoins(std::unique_lock<ServiceMutex>& lk);
  static constexpr std::chrono::milliseconds kRejoinWindow{4000};
  Status not_leader_reply();
  Result<Buffer> on_replica_info();
  Status propose(const nlohmann::json& cmd);
  Result<Buffer> dispatch(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  // The commands dispatch() hands a request to (state lock taken inside): membership.cpp,
  // pool_cmds.cpp, cont_ops.cpp and handles.cpp.
  Result<Buffer> cmd_join(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_handle_renew(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_heartbeat(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_leave(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_system_query(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_system_stop(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_pool_list(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_pool_query(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_pool_map(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_pool_props(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_pool_snapshots(schema::MgmtReq::Reader req, const Cred& cred,
                                    uint64_t session);
  Result<Buffer> cmd_pool_set_prop(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_cont_create(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_cont_query(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_cont_set_prop(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_cont_set_attr(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_snap(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_rank_dead(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_rank_exclude(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_target_state(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_target_stop(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  // A target's reclaim pass completed (rebuild/reclaim.hpp): kept in reclaimed_; only the
  // engine itself speaks for its targets (the session it joined with).
  Result<Buffer> cmd_reclaim_done(schema::MgmtReq::Reader req, const Cred& cred, uint64_t session);
  Result<Buffer> cmd_rebuild_report(schema::MgmtReq::Reader req, const Cred& cred,
                                    uint64_t session);
  // Applies and persists one command (state lock held).
  Status commit(const nlohmann::json& cmd);
  bool is_admin(const Cred& c) const { return c.uid == 0 || c.uid == opts_.admin_uid; }
  // Who sent `m`: the user an engine or administrator names, or the one a credential proves.
  Result<Cred> caller(const Message& m, schema::MgmtReq::Reader req);
  Result<const Pool*> find_pool(const std::string& key) const;
  Result<const Container*> find_cont(const Pool& p, const std::string& key) const;
  // A container the caller may reach: pool read, then `perms` on the container (0: none).
  struct PoolCont {
    const Pool* pool;
    const Container* cont;
  };
  Result<PoolCont> find_pool_cont(const std::string& pool, const std::string& cont,
                                  const Cred& cred, uint32_t perms) const;
  // One engine control request; `timeout` 0: the options' engine_timeout.
  Status engine_call(const Member& m, capnp::MessageBuilder& req,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  // The same, with the engine's reply body.
  Result<Buffer> engine_ask(const Member& m, capnp::MessageBuilder& req,
                            std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  // The request `build` makes, to every engine of `to` at once (call without the state lock;
  // `build` runs on several threads); the replies in the order of `to`.
  std::vector<Result<Buffer>> ask_engines(
      const std::vector<Member>& to, const std::function<void(schema::EngineReq::Builder)>& build,
      std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  void monitor();
  // Membership decisions (state lock held; membership.cpp).
  Result<Buffer> on_heartbeat(uint32_t rank, uint64_t session);
  Result<Buffer> on_leave(uint32_t rank, uint64_t session);
  // Container handles (actors/mgmt/handles.cpp): open, close, the engines' lookups,
  // eviction, lease renewals and the monitor's expiry.
  Result<Buffer> on_cont_open(schema::MgmtReq::ContOpen::Reader r, const Cred& cred);
  Result<Buffer> on_cont_close(schema::MgmtReq::HandleRef::Reader r, const Cred& cred);
  Result<Buffer> on_handle_query(schema::MgmtReq::HandleRef::Reader r, const Cred& cred);
  Result<Buffer> on_pool_evict(schema::MgmtReq::PoolEvict::Reader r, const Cred& cred);
  Result<Buffer> on_handle_renew(capnp::List<uint64_t>::Reader cookies, const Cred& cred);
  void expire_handles(std::chrono::steady_clock::time_point now);
  // After an ACL change of pool `pool_id` (state lock held): closes the handles whose opener
  // the ACLs no longer grant what the handle holds.
  void close_disallowed_handles(uint32_t pool_id);
  // After a command (state lock held): tells the engines of each pool to forget the handles
  // the command removed (by the worker thread; best effort, engines also re-check).
  void revoke_removed(const std::vector<Handle>& gone);
  Result<Buffer> on_rank_dead(uint32_t rank, uint32_t reporter, uint64_t incarnation);
  // A member is gone for `why`: dead, or stopped while the system stops.
  Status declare_gone(uint32_t rank, const std::string& why);
  // The monitor's round begins (also before a failure detector's verdict is judged): when the
  // service itself has not run for a while, every engine gets a new grace period, and every
  // handle a new lease (a paused service must not blame the engines for its own silence).
  void check_pause(std::chrono::steady_clock::time_point now);

  Result<Buffer> pool_create(schema::MgmtReq::PoolCreate::Reader r, const Cred& cred);
  Result<Buffer> pool_destroy(schema::MgmtReq::Destroy::Reader r, const Cred& cred);
  // Container-wide operations (actors/mgmt/cont_ops.cpp).
  Result<Buffer> cont_destroy(schema::MgmtReq::Destroy::Reader r, const Cred& cred);
  Result<Buffer> cont_rollback(schema::MgmtReq::ContRollback::Reader r, const Cred& cred);
  Result<Buffer> snap_create(schema::MgmtReq::SnapReq::Reader r, const Cred& cred);
  // The engines of `pool` whose targets serve or take writes (up-in, up, draining); each must
  // be joined (state lock held).
  Result<std::vector<Member>> serving_engines(const Pool& pool) const;
  // Every engine's targets of `pool` observe `observe` and issue one epoch, in parallel and
  // without the state lock; the highest epoch issued (above everything they issued before).
  Result<uint64_t> fence_epochs(const std::vector<Member>& engines, uint32_t pool,
                                uint64_t observe);
  Result<Buffer> update_acl(schema::MgmtReq::AclEdit::Reader r, const Cred& cred);
  Result<Buffer> pool_op(schema::MgmtReq::PoolOp::Reader r, const Cred& cred);
  // An engine found its store of a pool on one of its targets damaged when it opened it.
  Result<Buffer> on_shard_damaged(schema::MgmtReq::ShardDamaged::Reader r, const Cred& cred,
                                  uint64_t session);
  Status rebuild_report(schema::MgmtReq::RebuildReport::Reader r);
  // Only an engine speaks for its own targets: `session` must be the connection `rank` joined
  // with; else permission denied, naming what it `reports` (state lock held).
  Status own_connection(uint32_t rank, uint64_t session, std::string_view reports) const;
  // The targets pool `p`'s aggregation keeps punches for (mgmt::reclaim_pending over
  // reclaimed_), as text (state lock held).
  std::string reclaim_pending_text(const Pool& p) const;

  // Rebuild driving (state lock held): the decisions are the RebuildDriver's
  // (mgmt/rebuild_driver.hpp); these commit what it returns and send its starts (by the worker
  // thread). After a change: every busy generation not sent yet; the monitor's round: a failed
  // generation's retry once its back-off passed.
  void drive_rebuilds();
  void retry_rebuilds(std::chrono::steady_clock::time_point now);
  void send_rebuild(const RebuildDriver::Start& s);
  static constexpr std::chrono::milliseconds kRebuildStartTimeout{5000};
  void encode_progress(schema::PoolInfo::Builder b, const Pool& p) const;
  // A reply carrying a pool (and its rebuild progress).
  Buffer pool_reply(const Pool& p, bool with_conts) const;
  void post(std::function<void()> job);
  void worker();
  RebuildDriver rebuilds_;

  MgmtOptions opts_;
  StateFile file_;
  // Set when a command could neither be made durable nor taken back (its state file failed
  // and cannot be read again): the service refuses commands until it restarts.
  Status unpersisted_;
  ServiceMutex mu_;
  std::mutex create_mu_;  // one pool create at a time (it reserves the next pool id)
  MgmtState state_;
  // Reclaim passes reported, by pool (mgmt::reclaim_pending). Not persisted: a restarted or new
  // leader keeps punches until the targets' next passes.
  std::map<uint32_t, ReclaimReports> reclaimed_;
  std::map<uint64_t, uint32_t> session_rank_;  // join connections
  std::map<uint32_t, uint64_t> rank_session_;
  bool stopping_ = false;  // system stop in progress: engines that leave are stopped, not dead
  bool closing_ = false;   // this service is shutting down: no membership decisions
  // Who is alive: joins, heartbeats, clean stops (not during a system stop), the monitor's
  // rounds (mgmt/liveness.hpp).
  Liveness live_;
  // When each open handle was last renewed (a handle first seen, as after a restart, starts
  // its lease then). Not persisted: a restarted service gives every holder a whole lease.
  std::map<uint64_t, std::chrono::steady_clock::time_point> renewed_;
  std::condition_variable_any cv_;
  bool quit_ = false;
  // Replicated: the replica (null once shut down; copied under mu_ by whoever calls it
  // without mu_), whether this access point serves, and the leader's control address.
  std::shared_ptr<Replica> replica_;
  std::atomic<bool> leading_{true};
  std::mutex hint_mu_;
  std::string leader_hint_;
  std::chrono::steady_clock::time_point led_at_;  // when this access point began to lead
  std::thread monitor_;
  // Slow calls to engines made on behalf of the state machine (rebuild starts).
  std::mutex jobs_mu_;
  std::condition_variable jobs_cv_;
  std::vector<std::function<void()>> jobs_;
  // Handles to revoke, gathered by engine and pool until the worker sends them: while it
  // sends, the closes meanwhile wait and go together (one request per engine and pool, not one
  // connection per engine and close). Bounded: past kMaxRevokesPending cookies for an engine
  // the oldest are dropped (it re-checks its cached handles by itself).
  struct Revokes {
    Member engine;
    std::map<uint32_t, std::deque<uint64_t>> cookies;  // by pool, oldest first
    size_t count = 0;
  };
  std::map<uint32_t, Revokes> revokes_;  // by rank
  void send_revokes(Revokes r);
  bool jobs_quit_ = false;
  std::thread worker_;
};

std::string new_uuid();

}  // namespace tessera::mgmt

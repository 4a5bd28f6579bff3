// ObjectService: the actor on every engine target that serves the object protocol.
//
// A request names a pool (IoCtx). Pool 0 is the engine's local scratch store (one engine, no
// placement: the single-engine mode of the first tools and benchmarks). Any other pool is a
// shard of a system pool: the request must carry the pool map version its sender used (older
// than the target's: `stale`, the sender refreshes; newer: the target refreshes from the
// management service first) and an open container handle whose permissions allow the
// operation. Inside the shard's store the container id sits in the OID's reserved bits.
//
// Replication: an update or punch of a replicated object arrives at the group's leader, which
// stamps it with an epoch, forwards it (replica = true, same epoch) to the other available
// members of the group and replies once every one of them and itself is durable.
//
// Erasure coding: an EcUpdateReq arrives at the first available position of the group; it
// stamps one epoch, applies its own pieces and sends each other available position its pieces
// (docs/ERASURE_CODING.md).
//
// Runs on its target's thread only; concurrent (each request in its own fiber).
#pragma once

#include <boost/fiber/condition_variable.hpp>

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "core/actor.hpp"
#include "core/histogram.hpp"
#include "proto/protocol.hpp"
#include "mgmt/types.hpp"
#include "rebuild/check.hpp"
#include "shard/pool_shard.hpp"
#include "storage/store.hpp"

namespace tessera {

class ObjectService final : public Actor {
 public:
  ObjectService(ActorRuntime& rt, TargetPools& pools, uint32_t rank, uint16_t target)
      : rt_(rt), pools_(pools), rank_(rank), target_(target) {}
  void receive(Message& m) override;
  uint64_t rejected() const { return stats_.rejected; }

  // Requests served here by object method and sender (`[method][trusted]`: an engine or an
  // administrator, or a client), each counted when its fiber ends: bytes of bulk in and out,
  // failures, and the time from the fiber's start to its end. Target thread only (telemetry
  // copies it there).
  struct OpStats {
    uint64_t count = 0, errors = 0, bytes_in = 0, bytes_out = 0;
    Histogram latency;
  };
  struct Stats {
    std::array<std::array<OpStats, 2>, proto::kObjMethods> ops;
    uint64_t inflight = 0;  // request fibers running now
    uint64_t rejected = 0;  // requests answered with an error
  };
  const Stats& stats() const { return stats_; }

  struct Ctx {
    uint32_t pool = 0;
    uint32_t map_version = 0;
    uint64_t handle = 0;
    uint32_t cont = 0;
    bool replica = false;
    // Engine to engine: the transaction a forwarded change is part of (epoch 0: none), its
    // participants, and commits the sender decided (IoCtx.dtx, IoCtx.commits).
    storage::DtxId dtx;
    std::vector<uint64_t> participants;
    std::vector<storage::DtxId> commits;
    // A user transaction's read at the request's epoch: its reader id (IoCtx.txRead).
    uint64_t tx_read = 0;
  };

  // Background work of distributed transactions on this target until it stops: tells
  // participants the commits no request carried to them, and resolves transactions left
  // prepared here (a leader that died, a notice lost). The engine starts it on every target.
  void run_dtx_background();
  // The background scrubber of this target until it stops: every pool whose `scrub` property
  // is `timed` gets a check pass with repair of each container every `scrub_freq` seconds,
  // using `scrub_share` percent of the target's time (actors/object_service_check.cpp).
  void run_scrubber();
  // Decides every transaction prepared in `sh` (TargetPools::settle); `busy` while one cannot
  // be decided yet.
  Status settle_all(PoolShard& sh);
  // An aggregation pass an operator asked for (`tessera pool aggregate`, kObjAggregate) of pool
  // `pool`'s store (0: the scratch store) up to `epoch`, keeping `protect`: `busy` while the
  // pool's guard holds aggregation (a rebuild moves its data: shard/pool_shard.hpp).
  Result<storage::AggregateStats> aggregate_now(uint32_t pool, uint64_t epoch,
                                                std::vector<uint64_t> protect);
  // One check pass of a container of `sh` (waits for one running there to end), counted in
  // the shard's counters: this target's part of `tessera cont check` (kObjCheck), and of the
  // scrubber's pass.
  Result<rebuild::CheckCounters> check_pass(PoolShard& sh, rebuild::CheckOptions o);
  // What a request resolved to: the store, the shard (none for pool 0; held in use while the
  // request runs), the store's key.
  struct Where {
    storage::TargetStore* store = nullptr;
    PoolShard* shard = nullptr;
    ObjectId key;
    CsumType csum = CsumType::crc32c;
    ShardUse use;
  };

 private:
  Status handle(Message& m);
  // The counters of `m`'s method and sender; null for a method beyond the table.
  OpStats* op_stats(const Message& m);
  // A successful reply carrying bulk bytes, counted as the method's bytes out.
  Status reply_bulk(const Message& m, Buffer body, Buffer bulk);
  Result<Where> resolve(const Ctx& ctx, ObjectId oid, uint32_t need);
  // rf_exceeded when container `cont` is UNCLEAN in the shard's view (more engines failed than
  // its redundancy factor, or lost data): a client's write is refused there.
  static Status takes_writes(const PoolShard& sh, uint32_t cont);
  // Asks the management service about the request's container handle and caches the answer
  // in the shard (suspends); a closed or unknown handle is erased and refused.
  Status check_handle(PoolShard& sh, const Ctx& ctx, Nanos now);
  static constexpr size_t kMaxCachedHandles = 65536;
  // Stats, aggregation, checkpoints and scrubs address a pool's store without a container
  // handle (Where: the store, and the shard held in use; pool 0: the scratch store).
  Result<Where> maintenance_store(uint32_t pool, uint32_t map_version = 0);
  // ... for a stats or checkpoint request (StatsReq body; empty: pool 0).
  Result<Where> maintenance_store(const Message& m);
  // Maintenance requests (actors/object_service_maint.cpp).
  Status on_stats(Message& m);
  Status on_aggregate(Message& m);
  Status on_checkpoint(Message& m);
  Status on_scrub(Message& m);
  // Consistency check (actors/object_service_check.cpp): a copy's digests of a dkey, an akey's
  // history for a repair, and this target's part of a container's check.
  Status on_digest(Message& m);
  Status on_shard_export(Message& m);
  Status on_check(Message& m);
  // A read met a damaged piece of (key, dkey, akey) in the pool's shard: queue the akey for the
  // shard's repair fiber (started when none runs).
  void schedule_repair(uint32_t pool, ObjectId key, const std::string& dkey,
                       const std::string& akey);
  void run_repairs(uint32_t pool);
  // Leader side of a replicated change: one distributed transaction over the members of the
  // group of (oid, dkey). `local(epoch, stage)` stages this target's change (stage null: apply
  // it, when the group has no other member); `m` is forwarded to the others with the epoch.
  using Local = std::function<Result<uint64_t>(uint64_t, storage::DtxStage*)>;
  Result<uint64_t> replicate(Message& m, const Where& w, ObjectId oid, const std::string& dkey,
                             bool sequential, const Local& local);

  // ---- distributed transactions (actors/object_service_dtx.cpp) ----
  // One other participant's part: who holds it, and the call that prepares it there.
  struct DtxPart {
    uint64_t member;
    std::function<Status()> prepare;
  };
  // Leader: prepares this target's part (`prepare_local`) and every other participant's
  // (`remote`, run in parallel; after the local part when `sequential`), then commits when all
  // prepared and aborts everywhere otherwise. Returns the first failure. The parts on this
  // engine's other targets are prepared before any other engine hears of the transaction: one
  // death takes all of an engine's targets, and a refusal nobody else saw must not leave the
  // others holding the transaction prepared (they would commit it by vote). `key` (the dkey)
  // names the transaction to the crash points (core/crash_point.hpp).
  Status lead_dtx(PoolShard& sh, storage::TargetStore& store, const storage::DtxId& id,
                  std::string_view key, const std::vector<uint64_t>& participants, bool sequential,
                  const std::function<Status()>& prepare_local, const std::vector<DtxPart>& remote,
                  bool confirm_abort = false);
  // A user transaction's abort, made durable on every other participant, and then here, before
  // the client hears it (`confirm_abort` of lead_dtx): otherwise participants deciding without
  // the coordinator could still commit it. `uncertain` when some participant did not confirm:
  // this target's part then stays prepared, and is decided with the others later.
  Status confirm_abort(PoolShard& sh, storage::TargetStore& store, const storage::DtxId& id,
                       std::string_view key, const std::vector<uint64_t>& participants,
                       const Status& why);
  // A participant: applies the commits a forwarded request carries, then stages its change
  // with `stage` and prepares it as the request's transaction.
  Status prepare_part(PoolShard& sh, storage::TargetStore& store, const Ctx& ctx,
                      std::string_view key, const std::function<Status(storage::DtxStage&)>& stage,
                      const storage::DtxChecks& checks = {});
  // The commits waiting to be told to `member` (at most `max`), taken from the shard.
  std::vector<storage::DtxId> take_notices(PoolShard& sh, uint64_t member, size_t max = 512);
  // A read of (key, dkey, akey) at `epoch` (empty dkey/akey: anything under): first decide here
  // every prepared transaction that changes it at or below `epoch`. `busy` while one is not
  // decided yet (the client retries).
  Status settle(PoolShard& sh, ObjectId key, std::string_view dkey, std::string_view akey,
                uint64_t epoch);
  // Learns and applies here the outcome of a transaction prepared here: waits for it when this
  // target leads it, asks its leader, or decides with the other participants when the leader
  // is gone (no longer a member of the group) or this target led it before a restart.
  Status resolve_dtx(PoolShard& sh, const storage::DtxId& id);
  Status decide_by_vote(PoolShard& sh, const storage::TargetStore::DtxInfo& info, bool skip_leader);
  Result<storage::DtxState> ask_dtx(uint32_t pool, uint64_t member, const storage::DtxId& id,
                                    bool abort_unknown);
  // Tells `member` decisions (no answer awaited; one that does not arrive is asked for later).
  void send_outcome(uint32_t pool, uint64_t member, std::vector<storage::DtxId> ids, bool commit);
  bool is_writer(const PoolShard& sh, ObjectId key, const std::string& dkey, uint64_t member) const;
  // Whether `member` must answer before a transaction held here is decided without it: a
  // writer of the dkey's group, or for a user transaction a target the pool map still serves.
  bool must_answer(const PoolShard& sh, const storage::TargetStore::DtxInfo& info,
                   uint64_t member) const;
  Status on_dtx_outcome(Message& m);
  Status on_dtx_query(Message& m);
  uint64_t me() const { return storage::dtx_member(rank_, target_); }
  boost::fibers::condition_variable_any dtx_wake_;  // commit notices queued
  // A pool's shard on this target for an engine-to-engine request (rebuild): no handle; a
  // sender's newer map is fetched first.
  Result<ShardUse> shard_for(uint32_t pool, uint32_t map_version);
  // ---- user transactions (actors/object_service_tx.cpp) ----
  // An epoch for a transaction; a commit led here (the coordinator); a participant's share.
  Status on_tx_begin(Message& m);
  Status on_tx_commit(Message& m);
  Status on_tx_prepare(Message& m);
  // A transaction's read at `epoch` (ctx.tx_read set): the clock observes the epoch and the
  // read leaves its stamp (dkey or akey empty: a listing of the dkeys or akeys).
  Status note_tx_read(const Ctx& ctx, storage::TargetStore& store, ObjectId key,
                      std::string_view dkey, std::string_view akey, uint64_t epoch);
  // Erasure-coded update (leader or position), object_service_ec.cpp.
  Status ec_update(Message& m);
  // Where an engine-to-engine (re-encoding) erasure-coded update applies.
  Result<Where> internal_where(const Ctx& ctx, ObjectId key);
  ActorRuntime& rt_;
  TargetPools& pools_;
  uint32_t rank_;
  uint16_t target_;
  Stats stats_;
};

}  // namespace tessera

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
#include "mgmt/types.hpp"
#include "shard/pool_shard.hpp"
#include "storage/store.hpp"

namespace tessera {

class ObjectService final : public Actor {
 public:
  ObjectService(ActorRuntime& rt, TargetPools& pools, uint32_t rank, uint16_t target)
      : rt_(rt), pools_(pools), rank_(rank), target_(target) {}
  void receive(Message& m) override;
  uint64_t rejected() const { return rejected_; }

  struct Ctx {
    uint32_t pool = 0;
    uint32_t map_version = 0;
    uint64_t handle = 0;
    uint32_t cont = 0;
    bool replica = false;
  };
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
  Result<Where> resolve(const Ctx& ctx, ObjectId oid, uint32_t need);
  // Asks the management service about the request's container handle and caches the answer
  // in the shard (suspends); a closed or unknown handle is erased and refused.
  Status check_handle(PoolShard& sh, const Ctx& ctx, std::chrono::steady_clock::time_point now);
  static constexpr size_t kMaxCachedHandles = 65536;
  // Stats, aggregation, checkpoints and scrubs address a pool's store without a container
  // handle (Where: the store, and the shard held in use; pool 0: the scratch store).
  Result<Where> maintenance_store(uint32_t pool);
  // ... for a stats or checkpoint request (StatsReq body; empty: pool 0).
  Result<Where> maintenance_store(const Message& m);
  // Maintenance requests (actors/object_service_maint.cpp).
  Status on_stats(Message& m);
  Status on_aggregate(Message& m);
  Status on_checkpoint(Message& m);
  Status on_scrub(Message& m);
  // A read met a damaged piece of (key, dkey, akey) in the pool's shard: queue the akey for the
  // shard's repair fiber (started when none runs).
  void schedule_repair(uint32_t pool, ObjectId key, const std::string& dkey,
                       const std::string& akey);
  void run_repairs(uint32_t pool);
  // Leader side of a replicated change: forwards `m` (with `epoch`) to the other members of the
  // group of (oid, dkey) and runs `local`; all must succeed.
  Result<uint64_t> replicate(Message& m, const Where& w, ObjectId oid, const std::string& dkey,
                             bool sequential,
                             const std::function<Result<uint64_t>(uint64_t)>& local);
  // A pool's shard on this target for an engine-to-engine request (rebuild): no handle; a
  // sender's newer map is fetched first.
  Result<ShardUse> shard_for(uint32_t pool, uint32_t map_version);
  // Erasure-coded update (leader or position), object_service_ec.cpp.
  Status ec_update(Message& m);
  // Where an engine-to-engine (re-encoding) erasure-coded update applies.
  Result<Where> internal_where(const Ctx& ctx, ObjectId key);
  ActorRuntime& rt_;
  TargetPools& pools_;
  uint32_t rank_;
  uint16_t target_;
  uint64_t rejected_ = 0;
};

}  // namespace tessera

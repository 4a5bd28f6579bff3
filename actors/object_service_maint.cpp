// The object service's maintenance requests: a store's counters, aggregation, checkpoints and
// scrubs, addressed to a pool's shard (or the scratch store) without a container handle; and
// the repair of damaged pieces that reads report (rebuild/repair.hpp).
#include <fmt/format.h>

#include "actors/object_service.hpp"
#include "actors/object_service_util.hpp"
#include "proto/protocol.hpp"
#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"
#include "core/log.hpp"
#include "rebuild/repair.hpp"

namespace tessera {

using capn::BodyReader;
using namespace objsvc;

namespace {
// Akeys waiting for a shard's repair fiber; beyond it a scrub finds them.
constexpr size_t kRepairQueue = 256;

// Adds what a repair or scrub pass did to the shard's counters.
void count(PoolShard::Repair& into, const rebuild::RepairCounters& c) {
  into.damaged += c.damaged;
  into.repaired += c.repaired;
  into.unrepaired += c.unrepaired;
  if (!c.last_error.empty()) into.last_error = c.last_error;
}
}  // namespace

Result<ObjectService::Where> ObjectService::maintenance_store(const Message& m) {
  uint32_t pool = 0;
  if (m.body.size() > 0) {  // an empty body (older clients, the CLI's engine mode): pool 0
    capn::DecodeScope ds;
    BodyReader br(m.body);
    pool = br.root<schema::StatsReq>().getCtx().getPool();
    if (ds.failed()) return malformed(ds);
  }
  return maintenance_store(pool);
}

Result<ObjectService::Where> ObjectService::maintenance_store(uint32_t pool, uint32_t map_version) {
  if (pool == 0) {
    if (pools_.scratch == nullptr)
      return Status(Errc::not_found, "this engine has no scratch store");
    return Where{pools_.scratch, nullptr, {}, CsumType::crc32c, {}};
  }
  auto use = shard_for(pool, map_version);
  if (!use) return use.status();
  PoolShard* sh = use->get();
  return Where{sh->store.get(), sh, {}, CsumType::crc32c, std::move(*use)};
}

Status ObjectService::on_stats(Message& m) {
  auto w = maintenance_store(m);
  if (!w) return w.status();
  auto s = w->store->stats();
  capnp::MallocMessageBuilder b(128);
  auto rep = b.initRoot<schema::TargetStatsRep>();
  rep.setCapacity(s.capacity);
  rep.setUsed(s.used);
  rep.setWalUsed(s.wal_used);
  rep.setWalCapacity(s.wal_capacity);
  rep.setObjects(s.objects);
  rep.setUpdates(s.updates);
  rep.setFetches(s.fetches);
  rep.setBackend(pools_.backend);
  rep.setCheckpointBytes(s.checkpoint_bytes);
  rep.setPendingFree(s.pending_free);
  rep.setVersions(s.versions);
  rep.setCheckpoints(s.checkpoints);
  rep.setAggregations(s.aggregations);
  rep.setAggregationEpoch(s.aggregation_epoch);
  rep.setRecoveryMs(s.recovery_ms);
  rep.setReserve(s.reserve);
  if (const PoolShard* sh = w->shard; sh != nullptr) {
    rep.setReencodePasses(sh->reencode.passes);
    rep.setReencodeStripes(sh->reencode.stripes);
    rep.setReencodeCopyBytes(sh->reencode.copy_bytes);
    rep.setReencodeError(sh->reencode.last_error);
    rep.setRepairDamaged(sh->repair.damaged);
    rep.setRepairRepaired(sh->repair.repaired);
    rep.setRepairUnrepaired(sh->repair.unrepaired);
    rep.setRepairError(sh->repair.last_error);
    rep.setScrubs(sh->repair.scrubs);
    rep.setCheckPasses(sh->check.passes);
    rep.setCheckDone(sh->check.done);
    rep.setCheckTotal(sh->check.total);
    rep.setCheckInconsistent(sh->check.inconsistent);
    rep.setCheckFixed(sh->check.fixed);
    rep.setCheckRunning(sh->check.running);
    rep.setCheckScrubs(sh->check.scrubs);
    rep.setCheckError(sh->check.last_error);
    rep.setReclaimPasses(sh->reclaim.passes);
    rep.setReclaimDkeys(sh->reclaim.dkeys);
    rep.setReclaimAkeys(sh->reclaim.akeys);
    rep.setReclaimBytes(sh->reclaim.bytes);
    rep.setReclaimError(sh->reclaim.last_error);
  }
  return rt_.reply(m, Status(), capn::to_body(b));
}

Result<storage::AggregateStats> ObjectService::aggregate_now(uint32_t pool, uint64_t epoch,
                                                             std::vector<uint64_t> protect) {
  auto w = maintenance_store(pool);
  if (!w) return w.status();
  // As the background passes: every punch kept while the pool's guard holds (a rebuild moves
  // its data in, or former homes have not reclaimed), and those of the containers whose former
  // homes keep their copies.
  storage::AggregationGuard guard;
  if (pool != 0 && pools_.fetch_guard) {
    auto g = pools_.guard(pool);
    if (!g) return g.status();
    guard = std::move(*g);
  }
  return w->store->aggregate(epoch, std::move(protect), !guard.hold.empty(), guard.keep_punches_of);
}

Status ObjectService::on_aggregate(Message& m) {
  uint64_t epoch;
  std::vector<uint64_t> prot;
  uint32_t pool;
  {
    capn::DecodeScope ds;
    BodyReader br(m.body);
    auto req = br.root<schema::AggregateReq>();
    epoch = req.getEpoch();
    for (uint64_t e : req.getProtected()) prot.push_back(e);
    pool = req.getCtx().getPool();
    if (ds.failed()) return malformed(ds);
  }
  auto r = aggregate_now(pool, epoch, std::move(prot));
  if (!r) return r.status();
  capnp::MallocMessageBuilder b(128);
  auto rep = b.initRoot<schema::AggregateRep>();
  rep.setEpoch(r->epoch);
  rep.setAkeysScanned(r->akeys_scanned);
  rep.setVersionsDropped(r->versions_dropped);
  rep.setVersionsTrimmed(r->versions_trimmed);
  rep.setPunchesDropped(r->punches_dropped);
  rep.setKeysRemoved(r->keys_removed);
  rep.setBytesFreed(r->bytes_freed);
  rep.setPunchesKept(r->punches_kept);
  return rt_.reply(m, Status(), capn::to_body(b));
}

Status ObjectService::on_checkpoint(Message& m) {
  auto w = maintenance_store(m);
  if (!w) return w.status();
  TESSERA_TRY(w->store->checkpoint());
  return rt_.reply(m, Status());
}

Status ObjectService::on_scrub(Message& m) {
  uint32_t pool, version;
  double share;
  {
    capn::DecodeScope ds;
    BodyReader br(m.body);
    auto req = br.root<schema::ScrubReq>();
    pool = req.getCtx().getPool();
    version = req.getCtx().getMapVersion();
    share = req.getShare();
    if (ds.failed()) return malformed(ds);
  }
  if (pool == 0) return Status(Errc::invalid_argument, "scrub a pool's shard, not pool 0");
  // Judged by the operator's map at least (a target no request reached since a move knows an
  // older one, and would take another's copies for its own).
  auto w = maintenance_store(pool, version);
  if (!w) return w.status();
  PoolShard& sh = *w->shard;
  rebuild::ScrubOptions o;
  o.share = share > 0 ? share : 1.0;
  Target& t = rt_.target();
  o.cancelled = [&t, &sh] { return t.stopping() || sh.closing; };
  auto r = rebuild::scrub(rt_, rank_, target_, sh, o);
  if (!r) return r.status();
  ++sh.repair.scrubs;
  count(sh.repair, *r);
  capnp::MallocMessageBuilder b(128);
  auto rep = b.initRoot<schema::ScrubRep>();
  rep.setAkeys(r->akeys);
  rep.setExtents(r->extents);
  rep.setBytes(r->bytes);
  rep.setDamaged(r->damaged);
  rep.setRepaired(r->repaired);
  rep.setUnrepaired(r->unrepaired);
  rep.setLastError(r->last_error);
  return rt_.reply(m, Status(), capn::to_body(b));
}

void ObjectService::schedule_repair(uint32_t pool, ObjectId key, const std::string& dkey,
                                    const std::string& akey) {
  auto it = pools_.shards.find(pool);
  if (it == pools_.shards.end()) return;
  PoolShard::Repair& r = it->second->repair;
  if (r.queue.size() >= kRepairQueue) {
    ++r.overflow;
    return;
  }
  r.queue.emplace(key, dkey, akey);
  if (r.running) return;
  r.running = true;
  rt_.target().post([this, pool] { run_repairs(pool); });
}

void ObjectService::run_repairs(uint32_t pool) {
  Target& t = rt_.target();
  while (true) {
    auto it = pools_.shards.find(pool);
    if (it == pools_.shards.end()) return;
    PoolShard& sh = *it->second;
    if (sh.repair.queue.empty() || sh.closing || !sh.view || t.stopping() || pools_.stopped) {
      sh.repair.running = false;
      return;
    }
    ShardUse use(sh);
    auto [key, dkey, akey] = *sh.repair.queue.begin();
    sh.repair.queue.erase(sh.repair.queue.begin());
    rebuild::Peer peer{rt_, rank_, target_, sh, rebuild::kRepairRetry,
                       [&t, &sh] { return t.stopping() || sh.closing; }};
    rebuild::RepairCounters c;
    Status st = rebuild::repair_akey(peer, key, dkey, akey, c);
    count(sh.repair, c);
    if (!st.is_ok()) {
      sh.repair.last_error = st.to_string();
      log::warn("rank {} target {}: repair of a damaged akey failed: {}", rank_, target_,
                st.to_string());
    }
  }
}

}  // namespace tessera

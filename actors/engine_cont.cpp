// Container-wide operations the management service asks of an engine: purge a destroyed
// container's objects, fence a pool's epochs (snapshots), roll a container back to a snapshot.
// Control threads post one fiber per target and wait; the targets work in parallel.
#include <boost/fiber/operations.hpp>

#include "actors/engine.hpp"
#include "actors/engine_internal.hpp"
#include "core/log.hpp"
#include "proto/capnp_util.hpp"
#include "shard/keys.hpp"

namespace tessera {

namespace {

// Runs fn(slot) on every target at once and waits for all; the first error wins.
template <typename T, typename F>
Result<std::vector<T>> on_every_target(std::vector<std::unique_ptr<Engine::Slot>>& slots, F fn,
                                       std::chrono::seconds limit) {
  std::vector<std::future<Result<T>>> futures;
  for (auto& sp : slots) {
    Engine::Slot* s = sp.get();
    auto p = std::make_shared<std::promise<Result<T>>>();
    futures.push_back(p->get_future());
    s->target->post([p, s, fn]() mutable { p->set_value(fn(s)); });
  }
  std::vector<T> out;
  Status first;
  for (size_t i = 0; i < futures.size(); ++i) {
    if (futures[i].wait_for(limit) != std::future_status::ready) {
      if (first.is_ok()) first = Status(Errc::timeout, fmt::format("target {} did not answer", i));
      continue;
    }
    auto r = futures[i].get();
    if (!r && first.is_ok()) first = r.status();
    if (r) out.push_back(std::move(*r));
  }
  if (!first.is_ok()) return first;
  return out;
}

// The object keys of container `cont` in a target's shard.
std::vector<ObjectId> container_keys(const storage::TargetStore& st, uint32_t cont) {
  std::vector<ObjectId> keys;
  for (const ObjectId& k : st.object_keys()) {
    if (shard_keys::cont_of(k) == cont) keys.push_back(k);
  }
  return keys;
}

}  // namespace

Status Engine::purge_container(uint32_t pool, uint32_t cont) {
  auto r = on_every_target<uint64_t>(
      slots_,
      [pool, cont](Slot* s) -> Result<uint64_t> {
        auto it = s->pools.shards.find(pool);
        if (it == s->pools.shards.end() || it->second->closing) return uint64_t{0};
        ShardUse use(*it->second);  // the punches below suspend
        storage::TargetStore& st = *use->store;
        uint64_t punched = 0;
        for (const ObjectId& o : container_keys(st, cont)) {
          // An object that shows nothing (punched already) needs no punch record.
          auto shown = st.list(ListScope::dkeys, o, {}, {}, {}, 1);
          if (shown && shown->entries.empty()) continue;
          TESSERA_TRY(st.punch(o, {}, {}).status());
          ++punched;
        }
        return punched;
      },
      std::chrono::minutes(10));
  if (!r) return r.status();
  uint64_t punched = 0;
  for (uint64_t n : *r) punched += n;
  log::info("pool {} container {} destroyed: {} object shards punched", pool, cont, punched);
  return Status();
}

Result<uint64_t> Engine::fence_epochs(uint32_t pool, uint64_t observe) {
  auto r = on_every_target<uint64_t>(
      slots_,
      [pool, observe](Slot* s) -> Result<uint64_t> {
        auto it = s->pools.shards.find(pool);
        if (it == s->pools.shards.end() || it->second->closing) return uint64_t{0};
        storage::TargetStore& st = *it->second->store;  // (nothing here suspends)
        st.observe_epoch(observe);
        return st.new_epoch();
      },
      std::chrono::seconds(60));
  if (!r) return r.status();
  uint64_t highest = 0;
  for (uint64_t e : *r) highest = std::max(highest, e);
  return highest;
}

Result<storage::RollbackStats> Engine::rollback_container(uint32_t pool, uint32_t cont,
                                                          uint64_t snap, uint64_t at,
                                                          std::vector<uint64_t> protect) {
  auto r = on_every_target<storage::RollbackStats>(
      slots_,
      [pool, cont, snap, at, protect](Slot* s) -> Result<storage::RollbackStats> {
        Target& t = *s->target;
        auto it = s->pools.shards.find(pool);
        if (it == s->pools.shards.end() || it->second->closing) {
          return storage::RollbackStats{};
        }
        if (s->pools.stopped) {
          return Status(Errc::unavailable,
                        fmt::format("target {} is stopped: it cannot roll back", t.index()));
        }
        ShardUse use(*it->second);
        PoolShard& sh = *use;
        storage::TargetStore& st = *sh.store;
        // From here on a change stamped below `at` is refused (retried above it); then the
        // transactions prepared before are decided: one decided after the rollback read the
        // snapshot would otherwise appear below the rollback's changes, half undone.
        st.set_protected_epochs(protect);
        TESSERA_TRY(st.rollback_begin(snap, at));
        TESSERA_TRY(s->pools.settle_within(t, sh, std::chrono::seconds(60)));
        storage::RollbackStats total;
        uint32_t n = 0;
        for (const ObjectId& k : container_keys(st, cont)) {
          if (sh.closing || t.stopping()) {
            return Status(Errc::shutdown, "the shard closed during the rollback");
          }
          auto one = st.rollback_object(k, snap, at);
          if (!one) return one.status();
          total += *one;
          if (++n % 256 == 0) boost::this_fiber::yield();
        }
        return total;
      },
      std::chrono::minutes(30));
  if (!r) return r.status();
  storage::RollbackStats sum;
  for (const auto& one : *r) sum += one;
  log::info(
      "pool {} container {} rolled back to epoch {} at epoch {}: {} object shards, {} akeys "
      "rewritten, {} keys punched, {} bytes",
      pool, cont, snap, at, sum.objects, sum.rewritten, sum.punched, sum.bytes);
  return sum;
}

// ---- the control requests answered with a body (Engine::control) ---------------------------

Result<Buffer> Engine::on_rollback(schema::EngineReq::Reader req, capn::DecodeScope& ds) {
  auto r = req.getContRollback();
  const uint32_t pool = r.getPool(), cont = r.getCont();
  const uint64_t snap = r.getSnap(), at = r.getAt();
  std::vector<uint64_t> protect;
  for (uint64_t e : r.getProtect()) protect.push_back(e);
  if (ds.failed()) return Status(Errc::protocol, "malformed engine request: " + ds.what());
  auto done = rollback_container(pool, cont, snap, at, std::move(protect));
  if (!done) return done.status();
  capnp::MallocMessageBuilder b(128);
  auto rep = b.initRoot<schema::RollbackDone>();
  rep.setFrom(snap);
  rep.setAt(at);
  rep.setObjects(done->objects);
  rep.setRewritten(done->rewritten);
  rep.setPunched(done->punched);
  rep.setBytes(done->bytes);
  return capn::to_body(b);
}

Result<Buffer> Engine::on_fence(schema::EngineReq::Reader req, capn::DecodeScope& ds) {
  auto r = req.getEpochFence();
  const uint32_t pool = r.getPool();
  const uint64_t observe = r.getObserve();
  if (ds.failed()) return Status(Errc::protocol, "malformed engine request: " + ds.what());
  auto highest = fence_epochs(pool, observe);
  if (!highest) return highest.status();
  capnp::MallocMessageBuilder b(64);
  b.initRoot<schema::EpochFenced>().setHighest(*highest);
  return capn::to_body(b);
}

}  // namespace tessera

#include "shard/pool_shard.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_set>

#include "core/no_lock.hpp"
#include "mgmt/types.hpp"
#include "shard/keys.hpp"

namespace tessera {

void PoolShard::set_view(std::shared_ptr<const mgmt::PoolView> v) {
  const bool newer = view && v && v->pool.map.version > view->pool.map.version;
  view = std::move(v);
  if (newer && store) store->read_stamps().raise_floor(store->new_epoch());
  write_refusals.clear();
  if (!view) return;
  for (const auto& cv : view->conts) {
    if (Status st = mgmt::write_refusal(view->pool, cv.c); !st.is_ok()) {
      write_refusals.emplace(cv.c.id, std::move(st));
    }
  }
}

bool PoolShard::keeps_all_of(const mgmt::ContView& k) const {
  return k.c.lost_data || write_refusals.count(k.c.id) > 0;
}

bool PoolShard::keeps_all_of(uint32_t cont) const {
  if (!view) return true;
  const auto it = std::find_if(view->conts.begin(), view->conts.end(),
                               [cont](const mgmt::ContView& k) { return k.c.id == cont; });
  return it == view->conts.end() || keeps_all_of(*it);
}

std::function<bool(const ObjectId& key)> PoolShard::punches_to_keep() const {
  if (!view) return [](const ObjectId&) { return true; };
  // The containers whose punches may go: every other one's stay (keeps_all_of).
  std::unordered_set<uint32_t> may_drop;
  for (const auto& cv : view->conts) {
    if (!keeps_all_of(cv)) may_drop.insert(cv.c.id);
  }
  return [may_drop = std::move(may_drop)](const ObjectId& key) {
    return may_drop.count(shard_keys::cont_of(key)) == 0;
  };
}

Result<storage::AggregationGuard> TargetPools::guard(uint32_t pool) {
  if (!fetch_guard) return Status(Errc::unavailable, "not attached yet");
  auto g = fetch_guard(pool);
  if (!g) return g;
  if (auto it = shards.find(pool); it != shards.end()) {
    g->keep_punches_of = it->second->punches_to_keep();
  } else {
    g->keep_punches_of = [](const ObjectId&) { return true; };
  }
  return g;
}

storage::AggregationGuard aggregation_guard(uint32_t pool, std::vector<uint64_t> snapshots,
                                            bool moving, const std::string& reclaim_pending) {
  storage::AggregationGuard g;
  g.protect = std::move(snapshots);
  if (moving) {
    g.hold = fmt::format(
        "pool {} is moving data (a rebuild generation runs): rebuilt histories may still arrive",
        pool);
  } else if (!reclaim_pending.empty()) {
    g.hold = fmt::format(
        "pool {} moved data and its former homes have not all dropped what they no longer hold "
        "(reclaim_interval_ms): {}",
        pool, reclaim_pending);
  }
  return g;
}

bool PoolShard::wait_admitted_below(uint32_t version, const std::function<bool()>& give_up) {
  NoLock nl;
  while (admitted_below(version)) {
    if (give_up()) return false;
    // Woken when a version's last request ends; the limit lets `give_up` be asked meanwhile.
    Target& t = *Target::current();
    t.wait_until(admitted_cv, nl, t.env().now() + std::chrono::milliseconds(100));
  }
  return true;
}

Status TargetPools::settle_within(Target& t, PoolShard& sh, std::chrono::milliseconds limit,
                                  const std::function<bool()>& cancelled) {
  if (!settle) return Status();
  const auto until = t.env().now() + limit;
  while (true) {
    Status st = settle(sh);
    if (st.code() != Errc::busy || t.env().now() >= until || (cancelled && cancelled())) {
      return st;
    }
    t.sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace tessera

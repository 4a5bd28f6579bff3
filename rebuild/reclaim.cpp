#include "rebuild/reclaim.hpp"

#include <boost/fiber/operations.hpp>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "core/log.hpp"
#include "placement/erasure.hpp"
#include "placement/layout.hpp"
#include "rebuild/settled.hpp"
#include "shard/keys.hpp"

namespace tessera::rebuild {

namespace {

// Dkeys looked at between two yields to the target's other fibers (the pass reads the index).
constexpr uint32_t kSlice = 256;

// The akeys of an erasure-coded dkey that a target holding positions `held` (not empty) keeps
// nothing of: cells of other positions, and single values when it holds none of their homes.
std::vector<std::string> ec_strays(const storage::TargetStore& store, ObjectId key,
                                   const std::string& dkey, const placement::EcGeometry& g,
                                   const std::vector<uint32_t>& held) {
  auto holds = [&held](uint32_t pos) { return std::count(held.begin(), held.end(), pos) > 0; };
  bool singles = false;
  for (uint32_t pos : g.single_positions()) singles |= holds(pos);
  std::vector<std::string> out;
  for (const auto& [akey, kind] : store.akey_names(key, dkey)) {
    if (auto cell = placement::parse_ec_cell_akey(akey)) {
      if (!holds(cell->second)) out.push_back(akey);
    } else if (kind == storage::ValueKind::single && !singles &&
               !placement::is_ec_reserved_akey(akey)) {
      out.push_back(akey);
    }
  }
  return out;
}

}  // namespace

Result<ReclaimCounters> reclaim(uint32_t rank, uint16_t target, PoolShard& shard,
                                const ReclaimOptions& opts) {
  ReclaimCounters c;
  if (!shard.view) return c;
  // The map of this pass: kept alive while it runs.
  const std::shared_ptr<const mgmt::PoolView> view = shard.view;
  const placement::PoolMap& map = view->pool.map;
  auto stop = [&] { return (opts.cancelled && opts.cancelled()) || shard.view != view; };
  // Asked by the store once it can drop without suspending: a map that moved while it waited
  // may place the dkey here again (and its new writes may have landed).
  const std::function<bool()> still = [&] { return shard.view == view; };
  // A request admitted under an older map may still write where that map placed its data.
  if (!shard.wait_admitted_below(map.version, stop)) return c;
  auto is_me = [&](const placement::Shard& s) { return s.rank == rank && s.target == target; };
  storage::TargetStore& store = *shard.store;
  uint32_t slice = 0;
  for (const ObjectId& key : store.object_keys()) {
    if (stop()) break;
    const uint32_t cont = shard_keys::cont_of(key);
    // A container the map does not know yet (or any more), or whose data a rebuild could not
    // all copy: what this target keeps of it may be the last copy.
    const auto kit = std::find_if(view->conts.begin(), view->conts.end(),
                                  [cont](const mgmt::ContView& k) { return k.c.id == cont; });
    if (kit == view->conts.end() || shard.keeps_all_of(*kit)) continue;
    const ObjectId uoid = shard_keys::user_oid(key);
    const auto* cls = placement::find_class(placement::oid_class(uoid));
    if (cls == nullptr) continue;
    auto place = placement::place(uoid, map);
    if (!place) continue;
    const bool ec = cls->redundancy == placement::Redundancy::erasure;
    for (const auto& dkey : store.dkey_names(key)) {
      if (++slice % kSlice == 0) boost::this_fiber::yield();
      if (stop()) break;
      const auto pos = place->dkey(dkey);
      if (pos.empty() || !placement::settled(pos, map)) continue;
      std::vector<uint32_t> held;
      for (uint32_t i = 0; i < pos.size(); ++i) {
        if (is_me(pos[i].home)) held.push_back(i);
      }
      if (held.empty()) {
        c.bytes += store.drop_keys(key, dkey, {}, still);
        ++c.dkeys;
        continue;
      }
      if (!ec || kit->c.props.cell_size == 0) continue;
      const auto g = placement::ec_geometry(cls->data, cls->parity, kit->c.props.cell_size, dkey);
      const auto strays = ec_strays(store, key, dkey, g, held);
      if (strays.empty()) continue;
      c.bytes += store.drop_keys(key, dkey, strays, still);
      c.akeys += strays.size();
    }
  }
  if (c.dkeys + c.akeys > 0) TESSERA_TRY(store.checkpoint());
  c.complete = !stop();
  return c;
}

void reclaim_loop(Target& t, TargetPools& pools, uint32_t rank,
                  std::chrono::milliseconds interval) {
  const auto index = static_cast<uint16_t>(t.index());
  // A former home is the target no request brings a new map to: ask the service for it.
  settled_loop(t, pools, interval, true, [&](uint32_t id, PoolShard& sh) {
    ReclaimOptions o;
    o.cancelled = [&t, &sh] { return t.stopping() || sh.closing; };
    const std::shared_ptr<const mgmt::PoolView> view = sh.view;
    auto r = reclaim(rank, index, sh, o);
    // Every pass over a settled map is reported, not only the first: a new management leader
    // knows none of them.
    if (r && r->complete && pools.report_reclaimed && !view->pool.map.moving()) {
      if (Status st = pools.report_reclaimed(id, view->pool.map.version); !st.is_ok()) {
        log::warn(
            "pool {} target {}: the management service did not take the reclaim report "
            "(the next pass reports again): {}",
            id, index, st.to_string());
      }
    }
    ++sh.reclaim.passes;
    if (r) {
      sh.reclaim.dkeys += r->dkeys;
      sh.reclaim.akeys += r->akeys;
      sh.reclaim.bytes += r->bytes;
      if (r->dkeys + r->akeys > 0) {
        log::info(
            "pool {} target {}: reclaimed what the pool map no longer places here: {} dkeys, "
            "{} akeys, {} bytes",
            id, index, r->dkeys, r->akeys, r->bytes);
      }
    } else {
      sh.reclaim.last_error = r.status().to_string();
      log::warn("pool {} target {}: reclaim pass: {} (the next pass starts again)", id, index,
                sh.reclaim.last_error);
    }
  });
}

}  // namespace tessera::rebuild

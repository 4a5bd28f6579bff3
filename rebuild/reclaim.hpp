// Reclaim of what a target no longer holds (docs/REBUILD.md, "Reclaiming a former home's data").
//
// A move (reintegration, extension, the drain of a live target, a fallback given back) leaves
// the former holder of a position with the data it held: it stops receiving the group's writes
// and its copy goes stale. Left in place it costs space and, worse, it is wrong the day the
// target becomes a home of the group again: the history a rebuild fills it with is merged into
// what it kept, and a version whose punch the rightful holders have since aggregated away (with
// what it hid) shows again. So once a shard's map has settled, each target drops, physically
// (storage::TargetStore::drop_keys, never a punch), what the map no longer places on it:
//   * every dkey of which it holds no position;
//   * in an erasure-coded dkey it holds positions of: the cells of the positions it does not
//     hold, and the single values when it holds none of the positions that keep them whole.
// Only dkeys whose whole group has settled (placement::settled: every position complete at its
// own up-in home, no former holder serving) are touched, only once no request admitted under
// an older map runs, and never in a container the map marks as having lost data or refuses
// writes to (a kept copy may be the last one). A pass ends with a checkpoint, which makes the
// drops durable. A complete pass over a map that is not moving data is reported to the
// management service (TargetPools::report_reclaimed): after a move, the pool's aggregation
// keeps every punch until every target that may keep a former home's copy has reported one
// (mgmt::reclaim_pending), so that no punch is aggregated away while a copy of what it hides
// could still be merged into a later fill of that target.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include "core/status.hpp"
#include "core/target.hpp"
#include "shard/pool_shard.hpp"

namespace tessera::rebuild {

struct ReclaimCounters {
  uint64_t dkeys = 0;  // whole dkeys dropped (no position held)
  uint64_t akeys = 0;  // akeys dropped from dkeys still held in part
  uint64_t bytes = 0;  // bytes of data they held
  // The pass looked at every dkey of the shard under its map and its drops are durable (it
  // was not cut short by a new map or a stop).
  bool complete = false;
};

struct ReclaimOptions {
  // Checked between dkeys: stop early (the target is stopping).
  std::function<bool()> cancelled;
};

// One pass over `shard` on the target (`rank`, `target`): drops what its map no longer places
// there. Runs on the shard's target thread, in a fiber. A pass that meets a new map stops (what
// it dropped so far is made durable) and the next pass starts again.
Result<ReclaimCounters> reclaim(uint32_t rank, uint16_t target, PoolShard& shard,
                                const ReclaimOptions& opts);

// The background loop an engine runs on each target (and the rebuild simulation on its
// engines): every `interval`, one pass over each pool shard whose map has stayed the same for a
// whole interval (rebuild/settled.hpp); counters and the last error go to PoolShard::reclaim.
void reclaim_loop(Target& t, TargetPools& pools, uint32_t rank, std::chrono::milliseconds interval);

}  // namespace tessera::rebuild

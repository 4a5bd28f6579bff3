// One target's part of a rebuild generation: what an engine does when the management service
// starts generation `gen` of a pool (actors/engine.cpp), and what the rebuild simulation
// (tests/sim/rebuild_sim_test.cpp) runs on its engines.
//
// On the target's thread, in a fiber. The run is recorded in `pools.rebuilds[pool]`: a
// generation older than the one recorded is ignored, the one recorded is reported again once it
// finished (the service asks again after a restart), a newer one replaces it (the older scan
// sees itself cancelled between dkeys and stops). The scan starts once no request admitted
// under an older pool map runs on the shard (PoolShard::wait_admitted_below) and every
// transaction prepared in the shard is decided (ScanOptions::settle).
#pragma once

#include <cstdint>
#include <functional>

#include "core/actor.hpp"
#include "shard/pool_shard.hpp"

namespace tessera::rebuild {

// Progress (done false: the plan as soon as it is counted, then at most once a second) and the
// end (done true, with the error if it failed). Called on the target's thread; it may suspend.
using Report = std::function<void(const TargetPools::RebuildRun&, bool done)>;

struct RunOptions {
  uint32_t pool = 0;
  uint32_t gen = 0;      // the generation
  uint32_t version = 0;  // the pool map version it rebuilds for (fetched if the shard's is older)
  double share = 0.5;    // ScanOptions::share
};

// Runs generation `o.gen` of `o.pool` on this target's shard: scans it (rebuild::scan) against
// the generation's pool map and reports. `rank`: this engine's.
void run_generation(ActorRuntime& rt, TargetPools& pools, uint32_t rank, const RunOptions& o,
                    const Report& report);

}  // namespace tessera::rebuild

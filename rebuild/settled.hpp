// The background passes a target runs over its pool shards once their map has settled
// (rebuild/reencode.hpp, rebuild/reclaim.hpp): one loop shape for all of them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include "core/target.hpp"
#include "shard/pool_shard.hpp"

namespace tessera::rebuild {

// Every `interval`, runs `pass(pool, shard)` on each open pool shard of `pools` whose map
// version has stayed the same since the previous interval (updates stamped under an older map
// have had time to finish; a shard's first interval only records its version). With
// `ask_service`, each interval first asks the management service for a newer map
// (TargetPools::fetch_view; one ask per shard and interval): a target learns maps from the
// requests that carry them, and one that no request reaches any more (a former home) would
// judge by an old one. The pass holds a ShardUse. Runs in a fiber of `t` (sleeping between
// passes) until the target stops.
void settled_loop(Target& t, TargetPools& pools, std::chrono::milliseconds interval,
                  bool ask_service,
                  const std::function<void(uint32_t pool, PoolShard& shard)>& pass);

}  // namespace tessera::rebuild

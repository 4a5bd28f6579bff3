#include "rebuild/settled.hpp"

#include <algorithm>
#include <map>
#include <vector>

namespace tessera::rebuild {

void settled_loop(Target& t, TargetPools& pools, std::chrono::milliseconds interval,
                  bool ask_service,
                  const std::function<void(uint32_t pool, PoolShard& shard)>& pass) {
  std::map<uint32_t, uint32_t> seen;  // pool -> map version at the previous interval
  constexpr Nanos kSlice = std::chrono::milliseconds(100);
  while (!t.stopping()) {
    for (Nanos slept{0}; slept < interval && !t.stopping(); slept += kSlice) {
      t.sleep_for(std::min<Nanos>(kSlice, interval - slept));
    }
    std::vector<uint32_t> ids;
    for (const auto& [id, sh] : pools.shards) ids.push_back(id);
    for (uint32_t id : ids) {
      auto it = pools.shards.find(id);
      if (t.stopping() || pools.stopped || it == pools.shards.end()) continue;
      PoolShard& sh = *it->second;
      if (!sh.view || sh.closing) continue;
      ShardUse use(sh);
      // A target learns a new map from the requests that carry it: one that no request
      // reaches any more (a former home) would keep judging by an old one.
      if (ask_service && pools.fetch_view) {
        auto newer = pools.fetch_view(id, sh.view->pool.map.version + 1);
        if (sh.closing || !sh.view) continue;
        if (newer && *newer && (*newer)->pool.map.version > sh.view->pool.map.version) {
          sh.set_view(std::move(*newer));
          if (pools.learn) pools.learn(*sh.view);
        }
      }
      // Only once the map has stayed the same for a whole interval.
      const uint32_t v = sh.view->pool.map.version;
      auto [at, fresh] = seen.try_emplace(id, v);
      if (fresh || at->second != v) {
        at->second = v;
        continue;
      }
      pass(id, sh);
    }
  }
}

}  // namespace tessera::rebuild

// Pool maps for placement tests.
#pragma once

#include <string>

#include "placement/layout.hpp"

namespace tessera::placement::testing {

// `hosts` hosts with `engines` engines each and `targets` targets per engine; ranks in order.
inline PoolMap make_map(uint32_t hosts, uint32_t engines, uint32_t targets,
                        uint32_t first_rank = 0) {
  PoolMap m;
  uint32_t rank = first_rank;
  for (uint32_t h = 0; h < hosts; ++h) {
    for (uint32_t e = 0; e < engines; ++e) {
      MapEngine me{rank++, "host" + std::to_string(h), {}};
      for (uint32_t t = 0; t < targets; ++t) me.targets.push_back({t, TargetState::up_in});
      m.engines.push_back(me);
    }
  }
  return m;
}

}  // namespace tessera::placement::testing

// Engine-to-engine requests of the background scans that move or re-encode a pool shard's data
// (rebuild/scan.cpp, rebuild/reencode.cpp): asks with retries while the peer may be coming back,
// and shard fetches (the store key, no container handle) checked against their crc32c.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "shard/pool_shard.hpp"
#include "core/actor.hpp"
#include "placement/layout.hpp"
#include "storage/store.hpp"

namespace tessera::rebuild {

struct Peer {
  ActorRuntime& rt;
  uint32_t rank;
  uint16_t target;
  PoolShard& shard;
  // How long a retryable failure (unavailable, timeout, stale...) is retried; 0: one attempt.
  std::chrono::milliseconds retry{10000};
  std::function<bool()> cancelled;

  const placement::PoolMap& map() const { return shard.view->pool.map; }
  bool is_me(const placement::Shard& s) const { return s.rank == rank && s.target == target; }
  // The erasure-coding cell size of a container of the pool (0: not in the map).
  uint64_t cell_size(uint32_t cont) const {
    for (const auto& k : shard.view->conts) {
      if (k.c.id == cont) return k.c.props.cell_size;
    }
    return 0;
  }
  // Asks the object service of `dst` and checks the answer's status.
  Result<Message> ask(const placement::Shard& dst, uint16_t method, const Buffer& body,
                      const Buffer& bulk) const;
  // Records [off, off + len) of an array akey of `src` (this target: its store) at `epoch`
  // (0: newest), holes and the newest epoch returned included; a single value (`kind`) whole.
  Result<storage::FetchResult> fetch(const placement::Shard& src, ObjectId key,
                                     const std::string& dkey, const std::string& akey, uint64_t off,
                                     uint64_t len, uint64_t epoch = 0,
                                     storage::ValueKind kind = storage::ValueKind::array,
                                     uint32_t rsize = 1) const;
};

}  // namespace tessera::rebuild

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

// What a push sent: messages (or local imports) and bytes of data.
struct Pushed {
  uint64_t records = 0;
  uint64_t bytes = 0;
};

// The most data one push carries (the fabric bounds a message's bulk).
inline constexpr uint64_t kPushBytes = 64ull << 20;

// A RebuildPush message: one akey's history (its bytes travel as the bulk).
struct PushMsg {
  ObjectId key;
  std::string dkey, akey;
  storage::AkeyExport x;
  uint64_t replace_upto = 0;
};
Buffer push_body(uint32_t pool, uint32_t map_version, ObjectId key, const std::string& dkey,
                 const std::string& akey, const storage::AkeyExport& x, uint64_t replace_upto);
// Checks the bulk against the body's crc32c, and takes it as the history's data.
Result<PushMsg> parse_push(const Buffer& body, Buffer bulk);

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
  // Sends `dst` (this target: its store) one akey's history, epochs kept, in pieces of at most
  // kPushBytes of data: versions in order, an array version larger than a piece split by byte
  // range (the pieces keep its epoch). The punches go with the first piece. Each piece is an
  // import on its own, so a history of any size moves, and a piece sent again is skipped.
  // `replace_upto` > 0 (a consistency repair): the first piece replaces the receiver's history
  // at or below that epoch (storage::TargetStore::replace_history) instead of merging into it.
  Status push(const placement::Shard& dst, ObjectId key, const std::string& dkey,
              const std::string& akey, const storage::AkeyExport& x, Pushed& sent,
              uint64_t replace_upto = 0) const;
  // Records [off, off + len) of an array akey of `src` (this target: its store) at `epoch`
  // (0: newest), holes and the newest epoch returned included; a single value (`kind`) whole.
  // `stamp` (not 0): `src` stamps the read as that reader's (storage/read_stamps.hpp), so a
  // change below `epoch` arriving later is refused instead of sliding under what was read.
  Result<storage::FetchResult> fetch(const placement::Shard& src, ObjectId key,
                                     const std::string& dkey, const std::string& akey, uint64_t off,
                                     uint64_t len, uint64_t epoch = 0,
                                     storage::ValueKind kind = storage::ValueKind::array,
                                     uint32_t rsize = 1, uint64_t stamp = 0) const;
};

}  // namespace tessera::rebuild

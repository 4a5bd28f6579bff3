// PlacementCache: the placements of recently used objects in one pool map, for one thread.
//
// An object's placement is a pure function of its id and the pool map, but computing it costs
// O(targets): the fault-domain tree is built from the map, and a GX class places about
// targets / group size groups, each from the targets the earlier ones left (10 ms at 1,024
// engines of 16 targets, docs/SCALE.md). A client and an engine place an object on every
// request; this keeps the placements they computed, least recently used first out.
//
// Which map: the cache serves the map of one *owner* at a time, an immutable object that holds
// the map (a `const mgmt::PoolView`), kept alive by the cache while it serves it. A call with
// another owner (a new view, even of the same version) empties the cache first, so a placement
// is never served for a map it was not computed from; the owner being kept alive means its
// address cannot be reused by a later one.
//
// Not thread-safe: one cache per thread (a target's pool shard, a client's container).
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>

#include "core/object.hpp"
#include "core/status.hpp"
#include "placement/layout.hpp"

namespace tessera::placement {

class PlacementCache {
 public:
  // At most `max_shards` shards of layouts kept (a placement's own and, while the map moves
  // data, its settled layout's), and at most `max_objects` objects.
  explicit PlacementCache(size_t max_shards = 256 * 1024, size_t max_objects = 4096)
      : max_shards_(max_shards), max_objects_(max_objects) {}

  // The placement of `oid` in `map`, which `owner` holds and keeps unchanged.
  Result<std::shared_ptr<const Placement>> place(ObjectId oid,
                                                 const std::shared_ptr<const void>& owner,
                                                 const PoolMap& map);

  size_t objects() const { return index_.size(); }
  size_t shards() const { return shards_; }
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }

 private:
  struct OidHash {
    size_t operator()(const ObjectId& o) const {
      return std::hash<uint64_t>()(o.hi * 0x9e3779b97f4a7c15ULL ^ o.lo);
    }
  };
  using Entry = std::pair<ObjectId, std::shared_ptr<const Placement>>;
  static size_t weight(const Placement& p);
  void clear();

  size_t max_shards_;
  size_t max_objects_;
  std::shared_ptr<const void> owner_;
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<ObjectId, std::list<Entry>::iterator, OidHash> index_;
  size_t shards_ = 0;
  uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace tessera::placement

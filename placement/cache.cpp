#include "placement/cache.hpp"

namespace tessera::placement {

size_t PlacementCache::weight(const Placement& p) {
  return p.now.shards.size() + (p.settled ? p.settled->shards.size() : 0) + 1;
}

void PlacementCache::clear() {
  index_.clear();
  lru_.clear();
  shards_ = 0;
}

Result<std::shared_ptr<const Placement>> PlacementCache::place(
    ObjectId oid, const std::shared_ptr<const void>& owner, const PoolMap& map) {
  if (owner != owner_) {
    clear();
    owner_ = owner;
  }
  if (auto it = index_.find(oid); it != index_.end()) {
    ++hits_;
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->second;
  }
  ++misses_;
  auto p = placement::place(oid, map);
  if (!p) return p.status();
  auto shared = std::make_shared<const Placement>(std::move(*p));
  const size_t w = weight(*shared);
  if (w > max_shards_) return shared;  // larger than the whole cache: not kept
  while (!lru_.empty() && (shards_ + w > max_shards_ || index_.size() >= max_objects_)) {
    shards_ -= weight(*lru_.back().second);
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  lru_.emplace_front(oid, shared);
  index_.emplace(oid, lru_.begin());
  shards_ += w;
  return shared;
}

}  // namespace tessera::placement

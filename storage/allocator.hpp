// ExtentAllocator: hands out 4 KiB-aligned extents of a target's data region.
//
// Owned by one TargetStore on its target thread; not thread-safe. Free space is a set of
// extents kept both by offset (to coalesce neighbours on free) and by size (best fit).
// On restart the store rebuilds it from the index: everything free, then mark_used() for
// every extent a live record references.
#pragma once

#include <cstdint>
#include <map>
#include <set>

#include "core/status.hpp"

namespace tessera::storage {

class ExtentAllocator {
 public:
  static constexpr uint64_t kBlock = 4096;

  ExtentAllocator() = default;
  ExtentAllocator(uint64_t base, uint64_t length) { reset(base, length); }

  // Everything free again.
  void reset(uint64_t base, uint64_t length);
  // Best-fit allocation of `len` bytes rounded up to 4 KiB.
  Result<uint64_t> alloc(uint64_t len);
  // Returns [off, off+len) (len rounded up) to the free set; adjacent extents merge.
  Status free(uint64_t off, uint64_t len);
  // Removes [off, off+len) from the free set; fails if any of it is not free (double use).
  Status mark_used(uint64_t off, uint64_t len);

  uint64_t capacity() const { return length_; }
  uint64_t free_bytes() const { return free_bytes_; }
  uint64_t used_bytes() const { return length_ - free_bytes_; }
  size_t fragments() const { return by_off_.size(); }
  uint64_t largest_free() const;

 private:
  void insert(uint64_t off, uint64_t len);
  void erase(std::map<uint64_t, uint64_t>::iterator it);

  uint64_t base_ = 0;
  uint64_t length_ = 0;
  uint64_t free_bytes_ = 0;
  std::map<uint64_t, uint64_t> by_off_;              // offset -> length
  std::set<std::pair<uint64_t, uint64_t>> by_size_;  // (length, offset)
};

inline uint64_t round_block(uint64_t v) {
  return (v + ExtentAllocator::kBlock - 1) / ExtentAllocator::kBlock * ExtentAllocator::kBlock;
}

}  // namespace tessera::storage

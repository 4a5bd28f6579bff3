#include "storage/allocator.hpp"

#include <fmt/format.h>

namespace tessera::storage {

void ExtentAllocator::reset(uint64_t base, uint64_t length) {
  base_ = base;
  length_ = length / kBlock * kBlock;
  by_off_.clear();
  by_size_.clear();
  free_bytes_ = 0;
  if (length_ > 0) insert(base_, length_);
}

void ExtentAllocator::insert(uint64_t off, uint64_t len) {
  by_off_.emplace(off, len);
  by_size_.emplace(len, off);
  free_bytes_ += len;
}

void ExtentAllocator::erase(std::map<uint64_t, uint64_t>::iterator it) {
  by_size_.erase({it->second, it->first});
  free_bytes_ -= it->second;
  by_off_.erase(it);
}

uint64_t ExtentAllocator::largest_free() const {
  return by_size_.empty() ? 0 : by_size_.rbegin()->first;
}

Result<uint64_t> ExtentAllocator::alloc(uint64_t len) {
  if (len == 0) return Status(Errc::invalid_argument, "zero-length extent");
  uint64_t need = round_block(len);
  auto it = by_size_.lower_bound({need, 0});
  if (it == by_size_.end()) {
    return Status(Errc::no_space, fmt::format("data region full: need {} bytes, {} free in {} "
                                              "fragments (largest {})",
                                              need, free_bytes_, by_off_.size(), largest_free()));
  }
  uint64_t off = it->second;
  uint64_t have = it->first;
  erase(by_off_.find(off));
  if (have > need) insert(off + need, have - need);
  return off;
}

Status ExtentAllocator::free(uint64_t off, uint64_t len) {
  uint64_t n = round_block(len);
  if (off < base_ || off + n > base_ + length_ || off % kBlock != 0) {
    return Status(Errc::internal, fmt::format("free of [{}, +{}) outside the data region", off, n));
  }
  auto next = by_off_.lower_bound(off);
  if (next != by_off_.end() && next->first < off + n) {
    return Status(Errc::internal, fmt::format("double free at {}", off));
  }
  if (next != by_off_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second > off) {
      return Status(Errc::internal, fmt::format("double free at {}", off));
    }
  }
  uint64_t start = off;
  uint64_t end = off + n;
  if (next != by_off_.end() && next->first == end) {
    end += next->second;
    erase(next);
  }
  auto after = by_off_.lower_bound(start);
  if (after != by_off_.begin()) {
    auto prev = std::prev(after);
    if (prev->first + prev->second == start) {
      start = prev->first;
      erase(prev);
    }
  }
  insert(start, end - start);
  return Status();
}

Status ExtentAllocator::mark_used(uint64_t off, uint64_t len) {
  uint64_t n = round_block(len);
  auto it = by_off_.upper_bound(off);
  if (it == by_off_.begin()) {
    return Status(Errc::internal, fmt::format("extent at {} is not free", off));
  }
  --it;
  uint64_t fo = it->first;
  uint64_t fl = it->second;
  if (off + n > fo + fl) {
    return Status(Errc::internal, fmt::format("extent at {} (+{}) is not free", off, n));
  }
  erase(it);
  if (off > fo) insert(fo, off - fo);
  if (fo + fl > off + n) insert(off + n, fo + fl - (off + n));
  return Status();
}

}  // namespace tessera::storage

#include "core/buffer.hpp"

#include <cstdlib>
#include <new>

namespace tessera {

void Buffer::reset(size_t size) {
  if (size <= cap_ && data_ != nullptr && data_ == base_) {
    size_ = size;
    return;
  }
  release();
  size_t cap = align_up(size == 0 ? 1 : size, kAlign);
  void* p = std::aligned_alloc(kAlign, cap);
  if (p == nullptr) throw std::bad_alloc();
  base_ = data_ = static_cast<uint8_t*>(p);
  size_ = size;
  cap_ = cap;
}

void Buffer::release() {
  std::free(base_);
  base_ = data_ = nullptr;
  size_ = cap_ = 0;
}

}  // namespace tessera

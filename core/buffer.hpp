// Buffer: an owned, 4 KiB-aligned byte buffer (usable directly for O_DIRECT I/O and as a
// Cap'n Proto word array). Move-only; single owner; no reference counting on the data path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

namespace tessera {

class Buffer {
 public:
  static constexpr size_t kAlign = 4096;

  Buffer() = default;
  explicit Buffer(size_t size) { reset(size); }
  Buffer(const void* data, size_t size) {
    reset(size);
    if (size) std::memcpy(data_, data, size);
  }
  ~Buffer() { release(); }
  Buffer(Buffer&& o) noexcept : base_(o.base_), data_(o.data_), size_(o.size_), cap_(o.cap_) {
    o.base_ = o.data_ = nullptr;
    o.size_ = o.cap_ = 0;
  }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      base_ = o.base_;
      data_ = o.data_;
      size_ = o.size_;
      cap_ = o.cap_;
      o.base_ = o.data_ = nullptr;
      o.size_ = o.cap_ = 0;
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  Buffer clone() const { return Buffer(data_, size_); }
  // Reallocates (contents discarded) unless the capacity already fits.
  void reset(size_t size);
  // Shrinks the visible size without reallocating.
  void truncate(size_t size) { size_ = size < size_ ? size : size_; }
  // Drops the first n bytes without copying (a received frame handing its payload on).
  void advance(size_t n) {
    n = n < size_ ? n : size_;
    data_ += n;
    size_ -= n;
    cap_ -= n;
  }

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  size_t capacity() const { return cap_; }  // bytes usable from data()
  bool empty() const { return size_ == 0; }
  std::span<uint8_t> span() { return {data_, size_}; }
  std::span<const uint8_t> span() const { return {data_, size_}; }
  std::string_view view() const { return {reinterpret_cast<const char*>(data_), size_}; }

 private:
  void release();
  uint8_t* base_ = nullptr;  // what aligned_alloc returned
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t cap_ = 0;
};

inline size_t align_up(size_t v, size_t a) {
  return (v + a - 1) / a * a;
}

}  // namespace tessera

// crc32c (Castagnoli, ISA-L's crc32_iscsi): the checksum of messages' bulk data, stored extents,
// log records and rebuild transfers. One place for the call and its casts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace tessera {

// crc32c of `n` bytes at `p`, continuing from `seed` (0: a new checksum).
uint32_t crc32c(const void* p, size_t n, uint32_t seed = 0);
inline uint32_t crc32c(std::span<const uint8_t> d, uint32_t seed = 0) {
  return crc32c(d.data(), d.size(), seed);
}
inline uint32_t crc32c(std::string_view s, uint32_t seed = 0) {
  return crc32c(s.data(), s.size(), seed);
}

}  // namespace tessera

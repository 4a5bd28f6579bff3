#include "core/checksum.hpp"

#include <isa-l/crc.h>

namespace tessera {

uint32_t crc32c(const void* p, size_t n, uint32_t seed) {
  // ISA-L takes a non-const pointer and an int length; it reads only.
  return crc32_iscsi(static_cast<unsigned char*>(const_cast<void*>(p)), static_cast<int>(n), seed);
}

}  // namespace tessera

#include "placement/placement.hpp"

namespace tessera::placement {

uint32_t jump_hash(uint64_t key, uint32_t buckets) {
  if (buckets == 0) return 0;
  int64_t b = -1;
  int64_t j = 0;
  while (j < static_cast<int64_t>(buckets)) {
    b = j;
    key = key * 2862933555777941757ULL + 1;
    j = static_cast<int64_t>(static_cast<double>(b + 1) * (static_cast<double>(1LL << 31) /
                                                           static_cast<double>((key >> 33) + 1)));
  }
  return static_cast<uint32_t>(b);
}

uint64_t hash_oid(uint64_t hi, uint64_t lo) {
  auto mix = [](uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  return mix(hi ^ mix(lo + 0x9e3779b97f4a7c15ULL));
}

}  // namespace tessera::placement

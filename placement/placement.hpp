// Placement, first cut: which target of an engine holds an object.
//
// A pure function of (OID, number of targets): no table, no RPC. Jump consistent hash keeps
// movement minimal when the target count changes; the pool-map / fault-domain version
// (RP and EC layouts across engines) builds on the same functions.
#pragma once

#include <cstdint>

namespace tessera::placement {

// Lamping & Veach's jump consistent hash: a bucket in [0, buckets) for `key`.
uint32_t jump_hash(uint64_t key, uint32_t buckets);

// Mixes a 128-bit object id into 64 well-distributed bits.
uint64_t hash_oid(uint64_t hi, uint64_t lo);

inline uint32_t target_for(uint64_t oid_hi, uint64_t oid_lo, uint32_t targets) {
  return jump_hash(hash_oid(oid_hi, oid_lo), targets);
}

}  // namespace tessera::placement

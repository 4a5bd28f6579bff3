// The object vocabulary shared by the store, the services and the client API.
#pragma once

#include <compare>
#include <cstdint>

namespace tessera {

// 128-bit object id; the high bits will carry the object class.
struct ObjectId {
  uint64_t hi = 0;
  uint64_t lo = 0;
  auto operator<=>(const ObjectId&) const = default;
};

// An akey holds either one value replaced atomically, or a byte-granular array.
enum class ValueKind : uint8_t { single = 0, array = 1 };

// What a listing enumerates: objects, the dkeys of an object, the akeys of a dkey, or the
// written extents (record ranges) of an array akey.
enum class ListScope : uint8_t { objects, dkeys, akeys, recx };

// Conditions an update may carry: store only if the akey has no visible value (insert) or only
// if it has one (update). A failed condition is `exists` / `not_found` and changes nothing.
enum class Cond : uint8_t { none = 0, insert = 1, update = 2 };

// What one aggregation pass of a target's store did (store, service and client share it).
struct AggregateStats {
  uint64_t epoch = 0;  // the aggregation epoch actually used
  uint64_t akeys_scanned = 0;
  uint64_t versions_dropped = 0;
  uint64_t versions_trimmed = 0;
  uint64_t punches_dropped = 0;
  uint64_t keys_removed = 0;
  uint64_t bytes_freed = 0;
};

// Checksum kept with every stored extent (computed on arrival, verified on every read).
enum class CsumType : uint8_t { crc32c = 0, crc64 = 1 };

}  // namespace tessera

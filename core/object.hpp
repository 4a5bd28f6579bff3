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

// What a listing enumerates: objects, the dkeys of an object, or the akeys of a dkey.
enum class ListScope : uint8_t { objects, dkeys, akeys };

}  // namespace tessera

// Listing anchors: where a page of a listing ends, so the next page goes on after it. The store
// makes them, the object service passes them on, the client and the C API hand them back.
// - objects: the last object's id, 16 bytes, hi then lo;
// - extents (recx): the record after the last run, 8 bytes;
// - dkeys and akeys: the last key itself (no codec).
// Numbers are in host byte order: an anchor is only ever read on a machine of the order that
// made it (engines and clients of one system share it).
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "core/object.hpp"

namespace tessera {

inline std::string oid_anchor(const ObjectId& id) {
  std::string a(16, '\0');
  std::memcpy(a.data(), &id.hi, 8);
  std::memcpy(a.data() + 8, &id.lo, 8);
  return a;
}

// The object id of an objects anchor; nothing for an empty or malformed one.
inline std::optional<ObjectId> oid_of_anchor(std::string_view a) {
  if (a.size() != 16) return std::nullopt;
  ObjectId id;
  std::memcpy(&id.hi, a.data(), 8);
  std::memcpy(&id.lo, a.data() + 8, 8);
  return id;
}

inline std::string record_anchor(uint64_t record) {
  return std::string(reinterpret_cast<const char*>(&record), 8);
}

inline std::optional<uint64_t> record_of_anchor(std::string_view a) {
  if (a.size() != 8) return std::nullopt;
  uint64_t r = 0;
  std::memcpy(&r, a.data(), 8);
  return r;
}

}  // namespace tessera

// Keys and decoding helpers the object service and the rebuild service share: where a
// container's objects live inside a pool shard's store, and the object protocol's basic types.
#pragma once

#include <fmt/format.h>

#include "core/checksum.hpp"
#include "core/object.hpp"
#include "core/status.hpp"
#include "mgmt/types.hpp"
#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"

namespace tessera::shard_keys {

inline ObjectId oid_of(schema::ObjId::Reader r) {
  return {r.getHi(), r.getLo()};
}
inline ValueKind kind_of(schema::ValueKind k) {
  return k == schema::ValueKind::ARRAY ? ValueKind::array : ValueKind::single;
}

// The container id lives in the reserved OID bits 32..47 inside a pool shard's store.
inline ObjectId store_key(ObjectId oid, uint32_t cont) {
  return {(oid.hi & ~(0xffffull << 32)) | (uint64_t{cont} << 32), oid.lo};
}
inline uint32_t cont_of(ObjectId key) {
  return static_cast<uint32_t>((key.hi >> 32) & 0xffff);
}
inline ObjectId user_oid(ObjectId key) {
  return {key.hi & ~(0xffffull << 32), key.lo};
}

// The checksum type of a container's extents (its `checksum` property).
inline CsumType csum_of(const mgmt::ContProps& p) {
  return p.checksum == "crc64" ? CsumType::crc64 : CsumType::crc32c;
}

inline Status malformed(const capn::DecodeScope& ds) {
  return Status(Errc::protocol, fmt::format("malformed request body: {}", ds.what()));
}

}  // namespace tessera::shard_keys

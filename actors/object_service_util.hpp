// Decoding helpers shared by the object service's translation units.
#pragma once

#include <fmt/format.h>

#include <chrono>

#include "actors/object_service.hpp"
#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"

namespace tessera::objsvc {

inline storage::ObjectId oid_of(schema::ObjId::Reader r) {
  return {r.getHi(), r.getLo()};
}
inline storage::ValueKind kind_of(schema::ValueKind k) {
  return k == schema::ValueKind::ARRAY ? storage::ValueKind::array : storage::ValueKind::single;
}
inline ObjectService::Ctx ctx_of(schema::IoCtx::Reader r) {
  return {r.getPool(), r.getMapVersion(), r.getHandle(), r.getCont(), r.getReplica()};
}
inline constexpr auto kForwardTimeout = std::chrono::seconds(10);

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

// What only engines (and administrators) may ask: a client may neither act as a group's
// leader forwarding to its replicas (the `replica` or `internal` flag) nor choose the epoch
// a write is stored at (a far-future epoch would push the target's clock ahead for good).
inline Status client_may_write(const Message& m, bool replica, uint64_t epoch) {
  if (m.trusted()) return Status();
  if (replica) {
    return Status(Errc::unauthenticated,
                  "the replica flag is for engines forwarding to their group (the request is "
                  "not authenticated with the system key)");
  }
  if (epoch != 0) {
    return Status(Errc::unauthenticated,
                  "a client may not choose the epoch of a write (epochs come from the target)");
  }
  return Status();
}

// Update and punch both answer with the epoch they were stored at.
inline Buffer epoch_body(uint64_t epoch) {
  capnp::MallocMessageBuilder b(64);
  b.initRoot<schema::UpdateRep>().setEpoch(epoch);
  return capn::to_body(b);
}

}  // namespace tessera::objsvc

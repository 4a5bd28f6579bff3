// Decoding helpers shared by the object service's translation units (the key helpers the
// rebuild service uses too live in shard/keys.hpp).
#pragma once

#include <fmt/format.h>

#include <chrono>

#include "actors/object_service.hpp"
#include "shard/keys.hpp"
#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"

namespace tessera::objsvc {

using shard_keys::cont_of;
using shard_keys::csum_of;
using shard_keys::kind_of;
using shard_keys::malformed;
using shard_keys::oid_of;
using shard_keys::store_key;
using shard_keys::user_oid;

inline ObjectService::Ctx ctx_of(schema::IoCtx::Reader r) {
  return {r.getPool(), r.getMapVersion(), r.getHandle(), r.getCont(), r.getReplica()};
}
inline constexpr auto kForwardTimeout = std::chrono::seconds(10);

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

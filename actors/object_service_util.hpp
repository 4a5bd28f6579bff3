// Decoding helpers shared by the object service's translation units (the key helpers the
// rebuild service uses too live in shard/keys.hpp).
#pragma once

#include <fmt/format.h>

#include <chrono>

#include "actors/object_service.hpp"
#include "placement/layout.hpp"
#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"
#include "shard/keys.hpp"

namespace tessera::objsvc {

using shard_keys::cont_of;
using shard_keys::csum_of;
using shard_keys::kind_of;
using shard_keys::malformed;
using shard_keys::oid_of;
using shard_keys::store_key;
using shard_keys::user_oid;

inline storage::DtxId dtx_of(schema::DtxRef::Reader r) {
  return {r.getEpoch(), r.getLeader()};
}
inline void dtx_to(schema::DtxRef::Builder b, const storage::DtxId& id) {
  b.setEpoch(id.epoch);
  b.setLeader(id.leader);
}

inline ObjectService::Ctx ctx_of(schema::IoCtx::Reader r) {
  ObjectService::Ctx c;
  c.pool = r.getPool();
  c.map_version = r.getMapVersion();
  c.handle = r.getHandle();
  c.cont = r.getCont();
  c.replica = r.getReplica();
  if (r.hasDtx()) {
    c.dtx = dtx_of(r.getDtx().getId());
    for (uint64_t p : r.getDtx().getParticipants()) c.participants.push_back(p);
  }
  for (auto id : r.getCommits()) c.commits.push_back(dtx_of(id));
  c.tx_read = r.getTxRead();
  return c;
}

// Marks an engine-to-engine request's context as part of transaction `id`, with the commits
// the receiver is told on the way.
inline void set_dtx(schema::IoCtx::Builder c, const storage::DtxId& id,
                    const std::vector<uint64_t>& participants,
                    const std::vector<storage::DtxId>& commits) {
  auto d = c.initDtx();
  dtx_to(d.initId(), id);
  auto p = d.initParticipants(static_cast<unsigned>(participants.size()));
  for (size_t i = 0; i < participants.size(); ++i) p.set(static_cast<unsigned>(i), participants[i]);
  auto l = c.initCommits(static_cast<unsigned>(commits.size()));
  for (size_t i = 0; i < commits.size(); ++i) dtx_to(l[static_cast<unsigned>(i)], commits[i]);
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

// Whether an erasure-coded group takes writes: a position none of whose holders has its older
// cells (a replacement not yet filled by rebuild) counts as missing; it is written all the
// same, so that rebuild and new writes together fill it. More than p missing: unavailable.
inline Status ec_group_writable(const placement::ObjectClass& cls,
                                const std::vector<placement::Position>& group) {
  uint32_t missing = 0;
  for (const auto& pos : group) missing += pos.reader() == nullptr ? 1 : 0;
  if (missing <= cls.parity) return Status();
  return Status(Errc::unavailable,
                fmt::format("{} of the {} positions of this object's group are unavailable; {} "
                            "tolerates {}",
                            missing, group.size(), cls.name, cls.parity));
}

// Update and punch both answer with the epoch they were stored at.
inline Buffer epoch_body(uint64_t epoch) {
  capnp::MallocMessageBuilder b(64);
  b.initRoot<schema::UpdateRep>().setEpoch(epoch);
  return capn::to_body(b);
}

}  // namespace tessera::objsvc

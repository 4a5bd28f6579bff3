#include "rebuild/repair.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <span>

#include "shard/keys.hpp"
#include "core/log.hpp"
#include "placement/layout.hpp"

namespace tessera::rebuild {

namespace {

// The bytes of piece `p` as `src` holds the same version.
Result<Buffer> piece_from(const Peer& peer, const placement::Shard& src, ObjectId key,
                          const std::string& dkey, const std::string& akey,
                          const storage::TargetStore::DamagedPiece& p) {
  const bool array = p.kind == storage::ValueKind::array;
  const uint64_t rsize = std::max<uint32_t>(1, p.rsize);
  // Arrays: the records that hold the piece, read as they were at the piece's epoch.
  const uint64_t rec_lo = array ? p.at / rsize : 0;
  const uint64_t rec_hi = array ? (p.at + p.len + rsize - 1) / rsize : 0;
  auto f = peer.fetch(src, key, dkey, akey, rec_lo, rec_hi - rec_lo, p.epoch, p.kind,
                      static_cast<uint32_t>(rsize));
  if (!f) return f.status();
  const uint64_t skip = array ? p.at - rec_lo * rsize : p.at;
  if (!f->exists || (!array && f->epoch != p.epoch) || f->data.size() < skip + p.len) {
    return Status(Errc::not_found,
                  fmt::format("rank {} target {} no longer holds that version", src.rank,
                              src.target));
  }
  return Buffer(f->data.data() + skip, p.len);
}

}  // namespace

Status repair_akey(const Peer& peer, ObjectId key, const std::string& dkey,
                   const std::string& akey, RepairCounters& c) {
  storage::TargetStore& store = *peer.shard.store;
  auto v = store.verify_akey(key, dkey, akey);
  if (!v) return v.status();
  ++c.akeys;
  c.extents += v->extents;
  c.bytes += v->bytes;
  c.damaged += v->damaged.size();
  if (v->damaged.empty()) return Status();

  // Every other member of the group that holds complete data (or still serves it) may hold a
  // good copy of the same version; the recorded checksum decides.
  std::vector<placement::Shard> sources;
  if (auto place = placement::place(shard_keys::user_oid(key), peer.map())) {
    for (const auto& p : place->dkey(dkey)) {
      if (const placement::Shard* r = p.reader(); r != nullptr && !peer.is_me(*r)) {
        placement::add_unique(sources, *r);
      }
    }
  }
  for (const auto& p : v->damaged) {
    Status why(Errc::unavailable, "no other member of the object's group holds a copy");
    bool healed = false;
    bool gone = false;
    for (const auto& s : sources) {
      auto bytes = piece_from(peer, s, key, dkey, akey, p);
      if (!bytes) {
        why = bytes.status();
        continue;
      }
      Status st = store.rewrite_piece(key, dkey, akey, p, bytes->span());
      if (st.is_ok()) {
        healed = true;
        log::warn("rank {} target {}: repaired a damaged piece ({} bytes at {}, epoch {}) from "
                  "rank {} target {}",
                  peer.rank, peer.target, p.len, p.disk, p.epoch, s.rank, s.target);
        break;
      }
      why = st;
      if (st.code() == Errc::not_found) {
        gone = true;  // aggregated away meanwhile: nothing left to heal
        break;
      }
    }
    if (healed) {
      ++c.repaired;
    } else if (!gone) {
      ++c.unrepaired;
      c.last_error = fmt::format("{} (damaged: {})", why.to_string(), p.error);
      log::error("rank {} target {}: a damaged piece ({} bytes at {}, epoch {}) stays damaged: {}",
                 peer.rank, peer.target, p.len, p.disk, p.epoch, why.to_string());
    }
  }
  return Status();
}

Result<RepairCounters> scrub(ActorRuntime& rt, uint32_t rank, uint16_t target, PoolShard& shard,
                             const ScrubOptions& opts) {
  if (!shard.view) return Status(Errc::unavailable, "no pool map");
  Peer peer{rt, rank, target, shard, kRepairRetry, opts.cancelled};
  RepairCounters c;
  const double share = std::clamp(opts.share, 0.01, 1.0);
  Env& env = rt.target().env();
  storage::TargetStore& store = *shard.store;
  for (const ObjectId& key : store.object_keys()) {
    for (const auto& dkey : store.dkey_names(key)) {
      if (opts.cancelled && opts.cancelled()) return Status(Errc::shutdown, "scrub cancelled");
      const Nanos t0 = env.now();
      for (const auto& [akey, kind] : store.akey_names(key, dkey)) {
        Status st = repair_akey(peer, key, dkey, akey, c);
        if (!st.is_ok()) c.last_error = st.to_string();
      }
      const Nanos busy = env.now() - t0;
      if (share < 1.0 && busy > Nanos(0)) {
        rt.target().sleep_for(
            Nanos(static_cast<int64_t>(static_cast<double>(busy.count()) * (1.0 - share) / share)));
      }
    }
  }
  return c;
}

}  // namespace tessera::rebuild

#include "rebuild/repair.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <span>

#include "core/log.hpp"
#include "placement/erasure.hpp"
#include "placement/layout.hpp"
#include "shard/keys.hpp"

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
    return Status(Errc::not_found, fmt::format("rank {} target {} no longer holds that version",
                                               src.rank, src.target));
  }
  return Buffer(f->data.data() + skip, p.len);
}

}  // namespace

Result<Buffer> ec_cell_piece(const Peer& peer, const placement::EcGeometry& g,
                             const std::vector<placement::Position>& pos, ObjectId key,
                             const std::string& dkey, const std::string& akey, uint32_t j,
                             const storage::TargetStore::DamagedPiece& p) {
  std::vector<uint8_t> out(p.len);
  const auto& code = placement::erasure_code(g.k, g.p);
  for (uint64_t s = p.at / g.cell; s * g.cell < p.at + p.len; ++s) {
    std::vector<Buffer> cells(g.n());
    bool present[64] = {};
    size_t have = 0;
    for (uint32_t i = 0; i < g.n() && have < g.k; ++i) {
      const placement::Shard* r = pos[i].reader();
      if (i == j || r == nullptr) continue;
      auto f =
          peer.fetch(*r, key, dkey, placement::ec_cell_akey(akey, i), s * g.cell, g.cell, p.epoch);
      if (!f || !f->holes.empty() || f->data.size() != g.cell || f->epoch != p.epoch) continue;
      const uint32_t ci = g.cell_at(i);
      cells[ci] = std::move(f->data);
      present[ci] = true;
      ++have;
    }
    if (have < g.k) {
      return Status(
          Errc::unavailable,
          fmt::format("fewer than {} other cells of stripe {} hold epoch {}", g.k, s, p.epoch));
    }
    std::vector<uint8_t*> ptrs(g.n());
    for (uint32_t ci = 0; ci < g.n(); ++ci) {
      if (!present[ci]) cells[ci].reset(g.cell);
      ptrs[ci] = cells[ci].data();
    }
    TESSERA_TRY(code.reconstruct(g.cell, ptrs, std::span<const bool>(present, g.n())));
    const uint8_t* mine = ptrs[g.cell_at(j)];
    const uint64_t lo = std::max(p.at, s * g.cell);
    const uint64_t hi = std::min(p.at + p.len, (s + 1) * g.cell);
    std::memcpy(out.data() + (lo - p.at), mine + (lo - s * g.cell), hi - lo);
  }
  return Buffer(out.data(), out.size());
}

Status repair_akey(const Peer& peer, ObjectId key, const std::string& dkey, const std::string& akey,
                   RepairCounters& c) {
  storage::TargetStore& store = *peer.shard.store;
  auto v = store.verify_akey(key, dkey, akey);
  if (!v) return v.status();
  ++c.akeys;
  c.extents += v->extents;
  c.bytes += v->bytes;
  c.damaged += v->damaged.size();
  if (v->damaged.empty()) return Status();

  // An erasure-coded cell has no copy of its own: its bytes are rebuilt from its stripe.
  if (auto cell = placement::parse_ec_cell_akey(akey)) {
    const ObjectId uoid = shard_keys::user_oid(key);
    const auto* cls = placement::find_class(placement::oid_class(uoid));
    auto place = placement::place(uoid, peer.map());
    const uint64_t cell_size = peer.cell_size(shard_keys::cont_of(key));
    if (cls != nullptr && cls->redundancy == placement::Redundancy::erasure && place &&
        cell_size > 0) {
      const auto g = placement::ec_geometry(cls->data, cls->parity, cell_size, dkey);
      const auto pos = place->dkey(dkey);
      for (const auto& p : v->damaged) {
        auto bytes = ec_cell_piece(peer, g, pos, key, dkey, cell->first, cell->second, p);
        Status st = bytes ? store.rewrite_piece(key, dkey, akey, p, bytes->span()) : bytes.status();
        if (st.is_ok()) {
          ++c.repaired;
          log::warn(
              "rank {} target {}: rebuilt a damaged cell piece ({} bytes at {}, epoch {}) "
              "from its stripe",
              peer.rank, peer.target, p.len, p.disk, p.epoch);
        } else if (st.code() != Errc::not_found) {  // not_found: aggregated away meanwhile
          ++c.unrepaired;
          c.last_error = fmt::format("{} (damaged: {})", st.to_string(), p.error);
        }
      }
      return Status();
    }
  }

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
        log::warn(
            "rank {} target {}: repaired a damaged piece ({} bytes at {}, epoch {}) from "
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

#include "rebuild/reencode.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "core/checksum.hpp"
#include "core/log.hpp"
#include "placement/erasure.hpp"
#include "placement/layout.hpp"
#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"
#include "proto/protocol.hpp"
#include "rebuild/peer.hpp"
#include "rebuild/settled.hpp"
#include "shard/keys.hpp"

namespace tessera::rebuild {

using placement::EcGeometry;
using placement::Position;

namespace {

// How long a round waits for the updates this target leads below its epoch to finish.
constexpr auto kInflightWait = std::chrono::seconds(30);
constexpr auto kInflightPoll = std::chrono::milliseconds(1);

// A round's piece for one position: cells (or parity) of runs of stripes, their checksum
// record, or a punch of the copies.
struct Piece {
  uint32_t pos = 0;
  std::string akey;
  bool punch = false;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t bulk_offset = 0;
};

struct Reencoder {
  Peer peer;
  const ReencodeOptions& o;
  ReencodeCounters c;

  // The reader id of this target's re-encoding reads: the top bit keeps it apart from every
  // transaction's (a target's member id + 1).
  uint64_t reader_id() const {
    return (uint64_t{1} << 63) | storage::dtx_member(peer.rank, peer.target);
  }

  // An internal EcUpdateReq to the group's leader (this target: position 0's home): every
  // position's pieces at `epoch` and map `version`, one distributed transaction.
  Status send(const Position& leader, ObjectId key, const std::string& dkey,
              const std::vector<Piece>& pieces, const Buffer& bulk, uint64_t epoch,
              uint32_t version) {
    capnp::MallocMessageBuilder b(512);
    auto req = b.initRoot<schema::EcUpdateReq>();
    req.initOid().setHi(key.hi);
    req.getOid().setLo(key.lo);
    req.setDkey(capn::as_data(dkey));
    req.setEpoch(epoch);
    req.setInternal(true);
    auto ctx = req.initCtx();
    ctx.setPool(peer.shard.id);
    ctx.setMapVersion(version);
    auto list = req.initPieces(static_cast<unsigned>(pieces.size()));
    for (size_t i = 0; i < pieces.size(); ++i) {
      const Piece& p = pieces[i];
      auto w = list[static_cast<unsigned>(i)];
      w.setPos(p.pos);
      w.setAkey(capn::as_data(p.akey));
      w.setKind(schema::ValueKind::ARRAY);
      w.setPunch(p.punch);
      w.setOffset(p.offset);
      w.setLength(p.length);
      if (!p.punch) {
        w.setBulkOffset(p.bulk_offset);
        w.setCrc(crc32c(bulk.data() + p.bulk_offset, p.length));
      }
    }
    auto r = peer.ask(leader.home, proto::kObjEcUpdate, capn::to_body(b), bulk);
    return r ? Status() : r.status();
  }

  // The stripes whose copies this target holds entirely (its share of them: the whole stripe
  // on a parity position, its own cell on a data position): the candidates of this akey.
  Result<std::vector<uint64_t>> candidates(ObjectId key, const std::string& dkey,
                                           const std::string& copy, const EcGeometry& g,
                                           uint32_t me) {
    std::vector<std::pair<uint64_t, uint64_t>> runs;
    std::string anchor;
    while (true) {
      auto page = peer.shard.store->list(ListScope::recx, key, dkey, copy, anchor, 1000, 0);
      if (!page) return page.status();
      for (const auto& e : page->entries) {
        if (e.length == 0) continue;
        if (!runs.empty() && runs.back().second >= e.offset) {
          runs.back().second = std::max(runs.back().second, e.offset + e.length);
        } else {
          runs.emplace_back(e.offset, e.offset + e.length);
        }
      }
      if (page->done || page->anchor.empty()) break;
      anchor = page->anchor;
    }
    const uint32_t ci = g.cell_at(me);
    // The part of stripe s this position's copies must cover: [s*S + lo, s*S + hi).
    const uint64_t lo = ci < g.k ? ci * g.cell : 0;
    const uint64_t hi = ci < g.k ? lo + g.cell : g.stripe();
    std::vector<uint64_t> out;
    for (const auto& [a, b] : runs) {
      uint64_t s = a / g.stripe();
      if (s * g.stripe() + lo < a) ++s;
      for (; s * g.stripe() + hi <= b; ++s) out.push_back(s);
    }
    return out;
  }

  // One round: stripes [s0, s1) of `akey` (all candidates), at one fresh epoch.
  Status round(ObjectId key, const std::string& dkey, const std::string& akey,
               const std::vector<Position>& pos, const EcGeometry& g, uint32_t version, uint64_t s0,
               uint64_t s1) {
    PoolShard& sh = peer.shard;
    const uint64_t epoch = sh.store->new_epoch();
    const auto deadline = peer.rt.target().env().now() + kInflightWait;
    while (!sh.ec_inflight.empty() && *sh.ec_inflight.begin() < epoch) {
      if (peer.rt.target().env().now() >= deadline) return Status();
      peer.rt.target().sleep_for(kInflightPoll);
    }
    const std::string copy = placement::ec_copy_akey(akey);
    const uint64_t S = g.stripe();
    // The read is stamped: a change of the copies below `epoch` that arrives after it (a user
    // transaction's, whose epoch was taken at its begin) is refused and runs again, rather
    // than landing under the cells written here and being punched with the copies.
    auto f = peer.fetch(pos[g.parity_pos(0)].home, key, dkey, copy, s0 * S, (s1 - s0) * S, epoch,
                        storage::ValueKind::array, 1, reader_id());
    if (!f) return f.status();
    if (f->data.size() != (s1 - s0) * S) {
      return Status(Errc::internal, fmt::format("copies of stripes [{}, {}) read back {} bytes", s0,
                                                s1, f->data.size()));
    }
    std::vector<bool> full(s1 - s0, true);
    for (const auto& [ho, hl] : f->holes) {
      for (uint64_t s = std::max(ho, s0 * S) / S; s < s1 && s * S < ho + hl; ++s) {
        full[s - s0] = false;
      }
    }
    const auto stripes = static_cast<uint64_t>(std::count(full.begin(), full.end(), true));
    if (stripes == 0) return Status();

    // Every position's cells (data or parity) of the full stripes and their checksum record
    // at `epoch`, and the punch of their copies at `epoch`: one transaction, so no reader and
    // no rebuild ever meets some positions re-encoded and others not.
    const auto& code = placement::erasure_code(g.k, g.p);
    // The bulk: each position's region (indexed by cell: data cells, then parity) holds its
    // cells, then the stripes' checksum record (alike everywhere).
    const uint64_t ss = placement::ec_sum_size(g.k);
    const uint64_t sum_at = stripes * g.cell;
    const uint64_t region = sum_at + stripes * ss;
    Buffer bulk(region * g.n());
    auto at_cell = [&](uint32_t ci, uint64_t off) { return bulk.data() + ci * region + off; };
    std::vector<Piece> pieces;
    uint64_t at = 0;  // stripes packed so far
    for (uint64_t s = s0; s < s1;) {
      if (!full[s - s0]) {
        ++s;
        continue;
      }
      uint64_t e = s;
      while (e < s1 && full[e - s0]) ++e;
      for (uint64_t t = s; t < e; ++t, ++at) {
        const uint8_t* src = f->data.data() + (t - s0) * S;
        std::vector<const uint8_t*> data(g.k);
        std::vector<uint8_t*> parity(g.p);
        for (uint32_t j = 0; j < g.k; ++j) {
          std::memcpy(at_cell(j, at * g.cell), src + j * g.cell, g.cell);
          data[j] = at_cell(j, at * g.cell);
        }
        for (uint32_t q = 0; q < g.p; ++q) parity[q] = at_cell(g.k + q, at * g.cell);
        code.encode(g.cell, data, parity);
        placement::ec_stripe_sums(g.cell, data, at_cell(0, sum_at + at * ss));
        for (uint32_t ci = 1; ci < g.n(); ++ci) {
          std::memcpy(at_cell(ci, sum_at + at * ss), at_cell(0, sum_at + at * ss), ss);
        }
      }
      const uint64_t first = at - (e - s);
      for (uint32_t ci = 0; ci < g.n(); ++ci) {
        const uint32_t p = ci < g.k ? g.data_pos(ci) : g.parity_pos(ci - g.k);
        pieces.push_back({p, placement::ec_cell_akey(akey, p), false, s * g.cell, (e - s) * g.cell,
                          ci * region + first * g.cell});
        pieces.push_back({p, placement::ec_sum_akey(akey), false, s * ss, (e - s) * ss,
                          ci * region + sum_at + first * ss});
        pieces.push_back({p, copy, true, s * S, (e - s) * S, 0});
      }
      s = e;
    }
    TESSERA_TRY(send(pos[0], key, dkey, pieces, bulk, epoch, version));
    c.stripes += stripes;
    c.copy_bytes += stripes * S;
    return Status();
  }

  Status dkey_work(const placement::ObjectClass& cls, const placement::Placement& place,
                   const placement::PoolMap& map, ObjectId key, const std::string& dkey) {
    const uint32_t version = map.version;
    const auto pos = place.dkey(dkey);
    if (pos.empty() || !peer.is_me(pos[0].home)) return Status();
    const uint64_t cell = peer.cell_size(shard_keys::cont_of(key));
    if (cell == 0) return Status();
    const EcGeometry g = placement::ec_geometry(cls.data, cls.parity, cell, dkey);
    std::vector<std::string> copies;
    for (const auto& [akey, kind] : peer.shard.store->akey_names(key, dkey)) {
      if (kind == storage::ValueKind::array && placement::is_ec_copy_akey(akey)) {
        copies.push_back(akey);
      }
    }
    if (copies.empty()) return Status();
    // Every position serves at its own home, complete: the stripe can be written whole.
    if (!placement::settled(pos, map)) return Status();
    const uint64_t batch = std::max<uint64_t>(1, o.batch_bytes / g.stripe());
    for (const auto& copy : copies) {
      const std::string akey = copy.substr(placement::ec_copy_akey("").size());
      auto cand = candidates(key, dkey, copy, g, 0);
      if (!cand) return cand.status();
      for (size_t i = 0; i < cand->size();) {
        // A run of consecutive candidates, at most `batch` stripes.
        size_t e = i + 1;
        while (e < cand->size() && (*cand)[e] == (*cand)[e - 1] + 1 && e - i < batch) ++e;
        if (peer.map().version != version) return Status();  // a new map: the next pass
        TESSERA_TRY(round(key, dkey, akey, pos, g, version, (*cand)[i], (*cand)[e - 1] + 1));
        i = e;
      }
    }
    return Status();
  }
};

}  // namespace

Result<ReencodeCounters> reencode(ActorRuntime& rt, uint32_t rank, uint16_t target,
                                  PoolShard& shard, const ReencodeOptions& opts) {
  Reencoder r{
      Peer{rt, rank, target, shard, std::chrono::milliseconds(0), opts.cancelled}, opts, {}};
  if (!shard.view) return r.c;
  for (const ObjectId& key : shard.store->object_keys()) {
    const ObjectId uoid = shard_keys::user_oid(key);
    const auto* cls = placement::find_class(placement::oid_class(uoid));
    if (cls == nullptr || cls->redundancy != placement::Redundancy::erasure) continue;
    // The map of this object's pass: kept alive while its requests are out.
    const std::shared_ptr<const mgmt::PoolView> view = shard.view;
    auto place = placement::place(uoid, view->pool.map);
    if (!place) continue;
    for (const auto& dkey : shard.store->dkey_names(key)) {
      if (opts.cancelled && opts.cancelled()) return r.c;
      if (shard.view != view) break;  // a new map: the next pass
      TESSERA_TRY(r.dkey_work(*cls, *place, view->pool.map, key, dkey));
    }
  }
  return r.c;
}

void reencode_loop(Target& t, ActorRuntime& rt, TargetPools& pools, uint32_t rank,
                   std::chrono::milliseconds interval) {
  const auto index = static_cast<uint16_t>(t.index());
  // The leader of a group learns new maps from the group's requests; a round it starts under
  // an old one is refused by the positions (their requests carry its map version).
  settled_loop(t, pools, interval, false, [&](uint32_t id, PoolShard& sh) {
    ReencodeOptions o;
    o.cancelled = [&t, &sh] { return t.stopping() || sh.closing; };
    auto r = reencode(rt, rank, index, sh, o);
    ++sh.reencode.passes;
    if (r) {
      sh.reencode.stripes += r->stripes;
      sh.reencode.copy_bytes += r->copy_bytes;
      if (r->stripes > 0) {
        log::info(
            "pool {} target {}: {} stripes of partial-stripe copies re-encoded into cells and "
            "parity ({} bytes of copies released)",
            id, index, r->stripes, r->copy_bytes);
      }
    } else {
      sh.reencode.last_error = r.status().to_string();
      log::warn("pool {} target {}: re-encoding pass: {} (the next pass starts again)", id, index,
                sh.reencode.last_error);
    }
  });
}

}  // namespace tessera::rebuild

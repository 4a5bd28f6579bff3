// Writes of erasure-coded objects (libtessera): an update cut into the pieces each position
// stores (cells, parity and the stripes' checksum record of full stripes; copies of partial
// stripes; a single value whole on p + 1 positions), punches, and the request that carries them
// to the group's leader. Reads are in container_ec.cpp. The scheme: docs/ERASURE_CODING.md.

#include <algorithm>

#include "client/container_impl.hpp"
#include "core/checksum.hpp"
#include "placement/erasure.hpp"
#include "proto/object.capnp.h"
#include "proto/protocol.hpp"

namespace tessera::contimpl {

using placement::EcGeometry;
using Range = std::pair<uint64_t, uint64_t>;  // [first, last)

Status ec_check_akey(const std::string& akey) {
  if (placement::is_ec_reserved_akey(akey)) {
    return Status(Errc::invalid_argument,
                  "akeys starting with \"\\0ec-copy:\" or \"\\0ec-cell:\" are reserved for "
                  "erasure coding");
  }
  return Status();
}

EcGeometry ec_geometry_of(const Container::State& st, const placement::ObjectClass& cls,
                          const std::string& dkey) {
  return placement::ec_geometry(cls.data, cls.parity, st.cell, dkey);
}

using Piece = EcPiece;

Buffer ec_body(ObjectId oid, const std::string& dkey, const std::vector<Piece>& pieces,
               const IoCtxValues& ctx) {
  capnp::MallocMessageBuilder b(1024);
  auto req = b.initRoot<schema::EcUpdateReq>();
  req.initOid().setHi(oid.hi);
  req.getOid().setLo(oid.lo);
  req.setDkey(capn::as_data(dkey));
  auto c = req.initCtx();
  c.setPool(ctx.pool);
  c.setMapVersion(ctx.map_version);
  c.setHandle(ctx.handle);
  c.setCont(ctx.cont);
  auto list = req.initPieces(static_cast<unsigned>(pieces.size()));
  for (size_t i = 0; i < pieces.size(); ++i) {
    const Piece& p = pieces[i];
    auto w = list[static_cast<unsigned>(i)];
    w.setPos(p.pos);
    w.setAkey(capn::as_data(p.akey));
    w.setKind(p.kind == ValueKind::array ? schema::ValueKind::ARRAY : schema::ValueKind::SINGLE);
    w.setPunch(p.punch);
    w.setOffset(p.offset);
    w.setLength(p.length);
    w.setBulkOffset(p.bulk_offset);
    w.setCrc(p.crc);
  }
  return capn::to_body(b);
}

Status ec_supported(const placement::ObjectClass& cls, const std::string& akey, ValueKind kind,
                    uint32_t rsize, Cond cond, bool range_punch) {
  if (range_punch) {
    return Status(Errc::unsupported,
                  "range punch of an erasure-coded array is not supported (punch the akey, or "
                  "overwrite the range)");
  }
  TESSERA_TRY(ec_check_akey(akey));
  if (cond != Cond::none) {
    return Status(Errc::unsupported, fmt::format("conditional updates of erasure-coded objects "
                                                 "({}) are not supported",
                                                 cls.name));
  }
  if (kind == ValueKind::array && rsize > 1) {
    return Status(Errc::unsupported, "erasure-coded arrays are byte-granular (record size 1)");
  }
  return Status();
}

Result<EcPieces> ec_update_pieces(const Container::State& st, const placement::ObjectClass& cls,
                                  const std::string& dkey, const std::string& akey, ValueKind kind,
                                  uint64_t offset, const Buffer& data, UpdateFlags flags) {
  TESSERA_TRY(ec_supported(cls, akey, kind, flags.rsize, flags.cond, false));
  const EcGeometry g = ec_geometry_of(st, cls, dkey);
  EcPieces out_pieces;
  std::vector<Piece>& pieces = out_pieces.pieces;
  Buffer& bulk = out_pieces.bulk;
  const uint8_t* src = data.data();
  if (kind == ValueKind::single) {
    // A single value is kept whole on p + 1 positions: the first data position and the parity
    // positions.
    bulk = Buffer(src, data.size());
    const uint32_t crc = crc32c(src, data.size());
    for (uint32_t pos : g.single_positions()) {
      pieces.push_back({pos, akey, kind, false, 0, data.size(), 0, crc});
    }
  } else {
    const uint64_t a = offset, b = offset + data.size(), stripe = g.stripe();
    const uint64_t s_lo = (a + stripe - 1) / stripe, s_hi = b / stripe;
    const uint64_t full = s_lo < s_hi ? s_hi - s_lo : 0;
    const uint64_t run = full * g.cell;  // bytes per position of the full stripes
    std::vector<Range> parts;            // partial stripes
    if (full == 0) {
      if (a < b) parts.emplace_back(a, b);
    } else {
      if (a < s_lo * stripe) parts.emplace_back(a, s_lo * stripe);
      if (s_hi * stripe < b) parts.emplace_back(s_hi * stripe, b);
    }
    uint64_t part_bytes = 0;
    for (const auto& [x, y] : parts) part_bytes += y - x;
    const uint64_t sum_at = g.n() * run + part_bytes;  // the full stripes' checksum record
    const uint64_t sum_len = full * placement::ec_sum_size(g.k);
    bulk = Buffer(sum_at + sum_len);
    uint8_t* out = bulk.data();
    if (full > 0) {
      // Each data position's cells of consecutive stripes back to back, then parity the same
      // way: one encode over the whole run.
      for (uint32_t j = 0; j < g.k; ++j) {
        for (uint64_t s = s_lo; s < s_hi; ++s) {
          std::memcpy(out + j * run + (s - s_lo) * g.cell, src + (s * stripe + j * g.cell - a),
                      g.cell);
        }
      }
      std::vector<const uint8_t*> dptr;
      std::vector<uint8_t*> pptr;
      for (uint32_t j = 0; j < g.k; ++j) dptr.push_back(out + j * run);
      for (uint32_t q = 0; q < g.p; ++q) pptr.push_back(out + (g.k + q) * run);
      placement::erasure_code(g.k, g.p).encode(run, dptr, pptr);
      for (uint64_t s = 0; s < full; ++s) {
        std::vector<const uint8_t*> cells;
        for (uint32_t j = 0; j < g.k; ++j) cells.push_back(out + j * run + s * g.cell);
        placement::ec_stripe_sums(g.cell, cells, out + sum_at + s * placement::ec_sum_size(g.k));
      }
      const uint32_t sum_crc = crc32c(out + sum_at, sum_len);
      for (uint32_t c = 0; c < g.n(); ++c) {
        uint32_t pos = c < g.k ? g.data_pos(c) : g.parity_pos(c - g.k);
        pieces.push_back({pos, placement::ec_cell_akey(akey, pos), kind, false, s_lo * g.cell, run,
                          c * run, crc32c(out + c * run, run)});
        pieces.push_back({pos, placement::ec_sum_akey(akey), kind, false,
                          s_lo * placement::ec_sum_size(g.k), sum_len, sum_at, sum_crc});
        // The full stripes replace any partial-stripe copies of their range.
        pieces.push_back(
            {pos, placement::ec_copy_akey(akey), kind, true, s_lo * stripe, full * stripe, 0, 0});
      }
    }
    // Partial stripes: a full copy on every parity position, and each data position keeps a
    // copy of its own cells' bytes (p + 1 copies of every byte).
    uint64_t at = g.n() * run;
    const std::string copy = placement::ec_copy_akey(akey);
    for (const auto& [x, y] : parts) {
      std::memcpy(out + at, src + (x - a), y - x);
      for (uint32_t q = 0; q < g.p; ++q) {
        pieces.push_back(
            {g.parity_pos(q), copy, kind, false, x, y - x, at, crc32c(out + at, y - x)});
      }
      for (uint32_t j = 0; j < g.k; ++j) {
        for (uint64_t s = x / stripe; s * stripe < y; ++s) {
          const uint64_t lo = std::max(x, s * stripe + j * g.cell);
          const uint64_t hi = std::min(y, s * stripe + (j + 1) * g.cell);
          if (lo >= hi) continue;
          pieces.push_back({g.data_pos(j), copy, kind, false, lo, hi - lo, at + (lo - x),
                            crc32c(out + at + (lo - x), hi - lo)});
        }
      }
      at += y - x;
    }
  }
  return out_pieces;
}

Result<EcPieces> ec_punch_pieces(const Container::State& st, const placement::ObjectClass& cls,
                                 const std::string& dkey, const std::string& akey) {
  TESSERA_TRY(ec_check_akey(akey));
  const EcGeometry g = ec_geometry_of(st, cls, dkey);
  EcPieces out;
  std::vector<Piece>& pieces = out.pieces;
  for (uint32_t pos = 0; pos < g.n(); ++pos) {
    pieces.push_back({pos, akey, ValueKind::array, true, 0, 0, 0, 0});
    pieces.push_back({pos, placement::ec_cell_akey(akey, pos), ValueKind::array, true, 0, 0, 0, 0});
    pieces.push_back({pos, placement::ec_copy_akey(akey), ValueKind::array, true, 0, 0, 0, 0});
    pieces.push_back({pos, placement::ec_sum_akey(akey), ValueKind::array, true, 0, 0, 0, 0});
  }
  return out;
}

namespace {
Result<uint64_t> send_pieces(const StatePtr& sp, ObjectId oid, const std::string& dkey,
                             const EcPieces& p) {
  auto body = [&] { return ec_body(oid, dkey, p.pieces, ctx_of(*sp)); };
  auto r = op(sp, oid, dkey, Pick::leader, proto::kObjEcUpdate, body, p.bulk);
  if (!r) return r.status();
  return decoded(*r, decode_epoch);
}
}  // namespace

Result<uint64_t> ec_update(const StatePtr& sp, const placement::ObjectClass& cls, ObjectId oid,
                           const std::string& dkey, const std::string& akey, ValueKind kind,
                           uint64_t offset, const Buffer& data, UpdateFlags flags) {
  auto p = ec_update_pieces(*sp, cls, dkey, akey, kind, offset, data, flags);
  if (!p) return p.status();
  return send_pieces(sp, oid, dkey, *p);
}

Result<uint64_t> ec_punch_akey(const StatePtr& sp, const placement::ObjectClass& cls, ObjectId oid,
                               const std::string& dkey, const std::string& akey) {
  auto p = ec_punch_pieces(*sp, cls, dkey, akey);
  if (!p) return p.status();
  return send_pieces(sp, oid, dkey, *p);
}

}  // namespace tessera::contimpl

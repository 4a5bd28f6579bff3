// Scrub and repair of one target's stored pieces: reading every piece of an akey back against
// its checksum, and healing a damaged piece in place with a good replica's bytes of the same
// version. The index never changes here: a repair only makes a piece's bytes match the
// checksum the index recorded when the piece was written.
#include <fmt/format.h>

#include <cstring>

#include "storage/store.hpp"

namespace tessera::storage {

Result<TargetStore::VerifyResult> TargetStore::verify_akey(const ObjectId& oid,
                                                           std::string_view dkey,
                                                           std::string_view akey) {
  VerifyResult out;
  std::vector<DamagedPiece> pieces;  // every stored piece, planned before the first read
  {
    const Object* o = nullptr;
    const Dkey* d = nullptr;
    const AkeyVal* a = find(oid, dkey, akey, &o, &d);
    if (a == nullptr) return out;
    for (const Version& v : a->versions) {
      uint64_t at = v.offset;
      for (const Extent& e : v.extents) {
        DamagedPiece p;
        p.epoch = v.epoch;
        p.kind = a->kind;
        p.rsize = a->rsize;
        p.at = at;
        p.len = e.len;
        p.disk = e.disk;
        p.csum = e.csum;
        p.csum_type = v.csum_type;
        pieces.push_back(std::move(p));
        at += e.len;
      }
    }
  }
  // Pieces freed while the reads run (aggregation) are not reused until the guard ends.
  ReadGuard guard(*this);
  for (DamagedPiece& p : pieces) {
    auto r = read_extent(Extent{p.disk, p.len, p.csum}, p.csum_type);
    ++out.extents;
    out.bytes += p.len;
    if (r) continue;
    if (r.status().code() != Errc::checksum && r.status().code() != Errc::io_error) {
      return r.status();
    }
    p.error = r.status().to_string();
    out.damaged.push_back(std::move(p));
  }
  return out;
}

Status TargetStore::rewrite_piece(const ObjectId& oid, std::string_view dkey,
                                  std::string_view akey, const DamagedPiece& p,
                                  std::span<const uint8_t> bytes) {
  const Extent e{p.disk, p.len, p.csum};
  if (bytes.size() != p.len) {
    return Status(Errc::invalid_argument,
                  fmt::format("{}: a repair of {} bytes for a piece of {}", who(), bytes.size(),
                              p.len));
  }
  // The replacement must be the bytes the piece was written with, as its checksum says.
  if (Status st = verify_extent(e, p.csum_type, bytes.data()); !st.is_ok()) {
    return Status(Errc::checksum,
                  fmt::format("{}: the replacement for the piece at {} does not match its "
                              "recorded checksum",
                              who(), p.disk));
  }
  ReadGuard guard(*this);  // the extent is not reused while it is rewritten
  const Object* o = nullptr;
  const Dkey* d = nullptr;
  const AkeyVal* a = find(oid, dkey, akey, &o, &d);
  bool held = false;
  if (a != nullptr) {
    for (const Version& v : a->versions) {
      if (v.epoch != p.epoch) continue;
      for (const Extent& x : v.extents) {
        held = held || (x.disk == e.disk && x.len == e.len && x.csum == e.csum);
      }
    }
  }
  if (!held) {
    return Status(Errc::not_found,
                  fmt::format("{}: the piece at {} is no longer stored (aggregated meanwhile)",
                              who(), p.disk));
  }
  Buffer block(round_block(p.len));
  std::memcpy(block.data(), bytes.data(), p.len);
  std::memset(block.data() + p.len, 0, block.size() - p.len);
  auto w = q_->write(e.disk, block.data(), block.size());
  if (!w) return w.status();
  return q_->sync();
}

}  // namespace tessera::storage

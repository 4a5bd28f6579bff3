#include "rebuild/check.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "core/checksum.hpp"
#include "core/log.hpp"
#include "placement/erasure.hpp"
#include "placement/layout.hpp"
#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"
#include "proto/protocol.hpp"
#include "rebuild/repair.hpp"
#include "shard/keys.hpp"

namespace tessera::rebuild {

using placement::Position;
using placement::Shard;

void CheckCounters::add(CheckFinding f) {
  if (findings.size() < kMaxFindings) {
    findings.push_back(std::move(f));
  } else {
    ++left_off;
  }
}

Result<DkeyDigests> dkey_digests(storage::TargetStore& store, ObjectId key, const std::string& dkey,
                                 uint64_t epoch, const std::string& after, size_t limit) {
  DkeyDigests out;
  const auto names = store.akey_names(key, dkey);
  out.known = !names.empty();
  for (const auto& [akey, kind] : names) {
    if (!after.empty() && akey <= after) continue;
    if (placement::parse_ec_cell_akey(akey)) continue;  // cells are checked stripe by stripe
    if (out.akeys.size() >= limit) {
      out.more = true;
      break;
    }
    auto d = store.akey_digest(key, dkey, akey, epoch);
    if (!d) return d.status();
    if (d->exists) out.akeys.emplace_back(akey, *d);
  }
  return out;
}

Result<storage::AkeyExport> history_upto(storage::TargetStore& store, ObjectId key,
                                         const std::string& dkey, const std::string& akey,
                                         uint64_t upto) {
  auto x = store.export_akey(key, dkey, akey);
  if (!x) return x.status();
  std::erase_if(x->versions, [upto](const storage::AkeyExport::Ver& v) { return v.epoch > upto; });
  for (auto* p : {&x->object_punches, &x->dkey_punches, &x->akey_punches}) {
    std::erase_if(*p, [upto](uint64_t e) { return e > upto; });
  }
  return x;
}

namespace {

// A difference is read again this many times (an update may be on its way between the copies),
// this far apart at first, three times longer each time.
constexpr int kAttempts = 4;
constexpr auto kFirstPause = std::chrono::milliseconds(100);

std::string where(const Shard& s) { return fmt::format("rank {} target {}", s.rank, s.target); }

std::string describe(const storage::AkeyDigest& d) {
  if (!d.exists) return "nothing";
  if (d.kind == ValueKind::single) {
    return fmt::format("a {}-byte value of epoch {} (digest {:016x})", d.size, d.epoch, d.digest);
  }
  return fmt::format("an array of {} records of {} bytes (digest {:016x})", d.size, d.rsize,
                     d.digest);
}

bool same(const storage::AkeyDigest& a, const storage::AkeyDigest& b) {
  if (!a.exists && !b.exists) return true;
  return a == b;
}

// One akey whose copies disagree: the holders (in position order) and what each shows.
struct Diff {
  std::string akey;
  std::vector<Shard> holders;
  std::vector<storage::AkeyDigest> seen;
  size_t good = 0;  // the holder whose copy the others must take
};

struct Checker {
  Peer peer;
  const CheckOptions& o;
  CheckCounters c;

  storage::TargetStore& store() { return *peer.shard.store; }
  Target& target() { return peer.rt.target(); }
  bool cancelled() const { return o.cancelled && o.cancelled(); }

  // ---- what other targets hold -----------------------------------------------------------

  Result<DkeyDigests> digests(const Shard& m, ObjectId key, const std::string& dkey,
                              uint64_t epoch, bool probe = false) {
    DkeyDigests all;
    std::string after;
    while (true) {
      DkeyDigests page;
      if (peer.is_me(m)) {
        if (o.settle) TESSERA_TRY(o.settle(key, dkey, epoch));
        if (probe) {
          page.known = !store().akey_names(key, dkey).empty();
        } else {
          auto r = dkey_digests(store(), key, dkey, epoch, after);
          if (!r) return r.status();
          page = std::move(*r);
        }
      } else {
        capnp::MallocMessageBuilder b(256);
        auto req = b.initRoot<schema::DigestReq>();
        req.initCtx().setPool(peer.shard.id);
        req.getCtx().setMapVersion(peer.map().version);
        req.initOid().setHi(key.hi);
        req.getOid().setLo(key.lo);
        req.setDkey(capn::as_data(dkey));
        req.setEpoch(epoch);
        req.setAfter(capn::as_data(after));
        req.setProbe(probe);
        auto r = peer.ask(m, proto::kObjDigest, capn::to_body(b), {});
        if (!r) return r.status();
        capn::DecodeScope ds;
        capn::BodyReader br(r->body);
        auto rep = br.root<schema::DigestRep>();
        page.known = rep.getKnown();
        page.more = rep.getMore();
        for (auto a : rep.getAkeys()) {
          storage::AkeyDigest d;
          d.kind = shard_keys::kind_of(a.getKind());
          d.rsize = a.getRsize();
          d.exists = a.getExists();
          d.size = a.getSize();
          d.epoch = a.getEpoch();
          d.digest = a.getDigest();
          d.damaged = a.getDamaged();
          page.akeys.emplace_back(capn::from_data(a.getAkey()), d);
        }
        if (ds.failed()) return Status(Errc::protocol, "malformed digest reply: " + ds.what());
      }
      all.known |= page.known;
      for (auto& a : page.akeys) all.akeys.push_back(std::move(a));
      if (!page.more || all.akeys.empty()) break;
      after = all.akeys.back().first;
    }
    return all;
  }

  Result<storage::AkeyExport> history(const Shard& src, ObjectId key, const std::string& dkey,
                                      const std::string& akey, uint64_t upto) {
    if (peer.is_me(src)) return history_upto(store(), key, dkey, akey, upto);
    capnp::MallocMessageBuilder b(256);
    auto req = b.initRoot<schema::FetchReq>();
    req.initOid().setHi(key.hi);
    req.getOid().setLo(key.lo);
    req.setDkey(capn::as_data(dkey));
    req.setAkey(capn::as_data(akey));
    req.setEpoch(upto);
    req.initCtx().setPool(peer.shard.id);
    req.getCtx().setMapVersion(peer.map().version);
    auto r = peer.ask(src, proto::kObjShardExport, capn::to_body(b), {});
    if (!r) return r.status();
    auto p = parse_push(r->body, r->bulk);
    if (!p) return p.status();
    return std::move(p->x);
  }

  void pause(int attempt) {
    auto d = kFirstPause;
    for (int i = 0; i < attempt; ++i) d *= 3;
    target().sleep_for(d);
  }

  // ---- 1. stored pieces against their checksums --------------------------------------------

  // The bytes of a damaged piece of an erasure-coded cell (position `j` of the group), rebuilt
  // from the other cells of its stripes as they were at the piece's epoch.
  Result<Buffer> ec_piece(const placement::EcGeometry& g, const std::vector<Position>& pos,
                          ObjectId key, const std::string& dkey, const std::string& akey,
                          uint32_t j, const storage::TargetStore::DamagedPiece& p) {
    std::vector<uint8_t> out(p.len);
    const auto& code = placement::erasure_code(g.k, g.p);
    for (uint64_t s = p.at / g.cell; s * g.cell < p.at + p.len; ++s) {
      std::vector<Buffer> cells(g.n());
      std::vector<uint8_t> present_v(g.n(), 0);
      bool present[64] = {};
      size_t have = 0;
      for (uint32_t i = 0; i < g.n() && have < g.k; ++i) {
        const Shard* r = pos[i].reader();
        if (i == j || r == nullptr) continue;
        auto f = peer.fetch(*r, key, dkey, placement::ec_cell_akey(akey, i), s * g.cell, g.cell,
                            p.epoch);
        if (!f || !f->holes.empty() || f->data.size() != g.cell || f->epoch != p.epoch) continue;
        const uint32_t ci = g.cell_at(i);
        cells[ci] = std::move(f->data);
        present[ci] = true;
        ++have;
      }
      if (have < g.k) {
        return Status(Errc::unavailable,
                      fmt::format("fewer than {} other cells of stripe {} hold epoch {}", g.k, s,
                                  p.epoch));
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

  void verify_dkey(ObjectId key, const std::string& dkey, const std::vector<Position>& pos,
                   const std::optional<placement::EcGeometry>& g) {
    for (const auto& [akey, kind] : store().akey_names(key, dkey)) {
      ++c.akeys;
      auto cell = g ? placement::parse_ec_cell_akey(akey) : std::nullopt;
      uint64_t damaged = 0, healed = 0;
      std::string why;
      if (!o.repair || cell) {
        auto v = store().verify_akey(key, dkey, akey);
        if (!v) {
          c.last_error = v.status().to_string();
          continue;
        }
        c.extents += v->extents;
        c.bytes += v->bytes;
        damaged = v->damaged.size();
        for (const auto& p : v->damaged) {
          if (!o.repair) break;
          auto bytes = ec_piece(*g, pos, key, dkey, cell->first, cell->second, p);
          Status st = bytes ? store().rewrite_piece(key, dkey, akey, p, bytes->span())
                            : bytes.status();
          if (st.is_ok()) {
            ++healed;
            log::warn("rank {} target {}: rebuilt a damaged cell piece ({} bytes at {}, epoch "
                      "{}) from its stripe",
                      peer.rank, peer.target, p.len, p.disk, p.epoch);
          } else {
            why = st.to_string();
          }
        }
        if (damaged > 0 && why.empty() && healed < damaged) why = v->damaged.front().error;
      } else {
        RepairCounters rc;
        Status st = repair_akey(peer, key, dkey, akey, rc);
        if (!st.is_ok()) c.last_error = st.to_string();
        c.extents += rc.extents;
        c.bytes += rc.bytes;
        damaged = rc.damaged;
        healed = rc.repaired;
        why = rc.last_error;
      }
      if (damaged == 0) continue;
      c.damaged += damaged;
      c.repaired += healed;
      c.unrepaired += damaged - healed;
      if (!why.empty()) c.last_error = why;
      CheckFinding f;
      f.oid = shard_keys::user_oid(key);
      f.dkey = dkey;
      f.akey = placement::ec_user_akey(akey);
      f.what = fmt::format("{} stored piece{} of '{}' fail{} {} checksum{}", damaged,
                           damaged == 1 ? "" : "s", akey, damaged == 1 ? "s" : "",
                           damaged == 1 ? "its" : "their",
                           healed == damaged ? "" : fmt::format(" ({})", why));
      f.copies = where(Shard{peer.rank, peer.target});
      f.repaired = healed == damaged;
      c.add(std::move(f));
    }
  }

  // ---- 2. copies kept whole on several positions -------------------------------------------

  // The positions that keep identical copies of `akey` (in order).
  static std::vector<uint32_t> holders_of(const std::optional<placement::EcGeometry>& g,
                                          size_t n, const std::string& akey) {
    std::vector<uint32_t> out;
    if (!g) {
      for (uint32_t i = 0; i < n; ++i) out.push_back(i);
      return out;
    }
    if (placement::parse_ec_cell_akey(akey)) return out;  // checked stripe by stripe
    if (placement::is_ec_sum_akey(akey)) {
      for (uint32_t i = 0; i < g->n(); ++i) out.push_back(i);
      return out;
    }
    // Partial-stripe copies: whole on every parity position (a data position holds only the
    // bytes of its own cells). Single values: data position 0 and every parity position.
    if (!placement::is_ec_copy_akey(akey)) out.push_back(g->data_pos(0));
    for (uint32_t q = 0; q < g->p; ++q) out.push_back(g->parity_pos(q));
    return out;
  }

  // The akeys whose copies disagree at `epoch`.
  Result<std::vector<Diff>> differences(const std::vector<Position>& pos, ObjectId key,
                                        const std::string& dkey,
                                        const std::optional<placement::EcGeometry>& g,
                                        uint64_t epoch, uint64_t& compared) {
    // Each reader's digests, once per reader (one may read for two positions).
    std::vector<Shard> readers;
    std::vector<std::map<std::string, storage::AkeyDigest>> seen;
    std::set<std::string> names;
    for (const auto& p : pos) {
      const Shard* r = p.reader();
      if (r == nullptr) continue;
      bool dup = false;
      for (const auto& s : readers) dup |= s.rank == r->rank && s.target == r->target;
      if (dup) continue;
      auto d = digests(*r, key, dkey, epoch);
      if (!d) return d.status();
      readers.push_back(*r);
      seen.emplace_back();
      for (auto& [akey, dg] : d->akeys) {
        names.insert(akey);
        seen.back().emplace(akey, dg);
      }
    }
    auto index_of = [&](const Shard& s) {
      for (size_t i = 0; i < readers.size(); ++i) {
        if (readers[i].rank == s.rank && readers[i].target == s.target) return i;
      }
      return readers.size();
    };
    std::vector<Diff> out;
    compared = 0;
    for (const auto& akey : names) {
      Diff d;
      d.akey = akey;
      for (uint32_t i : holders_of(g, pos.size(), akey)) {
        const Shard* r = pos[i].reader();
        if (r == nullptr) continue;
        const size_t m = index_of(*r);
        if (m == readers.size()) continue;
        bool dup = false;
        for (const auto& h : d.holders) dup |= h.rank == r->rank && h.target == r->target;
        if (dup) continue;
        auto it = seen[m].find(akey);
        // A damaged copy is left to the repair of damaged pieces (its holder's own check).
        if (it != seen[m].end() && it->second.damaged) continue;
        d.holders.push_back(*r);
        d.seen.push_back(it == seen[m].end() ? storage::AkeyDigest{} : it->second);
      }
      if (d.holders.size() < 2) continue;
      ++compared;
      bool agree = true;
      for (const auto& s : d.seen) agree &= same(s, d.seen[0]);
      if (agree) continue;
      // The majority's copy; on a tie, the first position's.
      size_t best = 0, best_n = 0;
      for (size_t i = 0; i < d.seen.size(); ++i) {
        size_t n = 0;
        for (const auto& s : d.seen) n += same(s, d.seen[i]) ? 1 : 0;
        if (n > best_n) {
          best = i;
          best_n = n;
        }
      }
      d.good = best;
      out.push_back(std::move(d));
    }
    return out;
  }

  Status compare_dkey(const std::vector<Position>& pos, ObjectId key, const std::string& dkey,
                      const std::optional<placement::EcGeometry>& g) {
    std::vector<Diff> diffs;
    uint64_t epoch = 0, compared = 0;
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
      if (attempt > 0) pause(attempt - 1);
      epoch = store().new_epoch();
      auto d = differences(pos, key, dkey, g, epoch, compared);
      // A transaction not decided yet somewhere (`busy`): read again, as for a difference.
      if (!d && d.status().code() == Errc::busy && attempt + 1 < kAttempts) continue;
      if (!d) return d.status();
      diffs = std::move(*d);
      if (diffs.empty()) break;
    }
    c.compared += compared;
    for (const Diff& d : diffs) {
      ++c.inconsistent;
      CheckFinding f;
      f.oid = shard_keys::user_oid(key);
      f.dkey = dkey;
      f.akey = placement::ec_user_akey(d.akey);
      std::string bad, good = where(d.holders[d.good]);
      for (size_t i = 0; i < d.holders.size(); ++i) {
        if (i == d.good) continue;
        if (same(d.seen[i], d.seen[d.good])) {
          good += ", " + where(d.holders[i]);
        } else {
          bad += fmt::format("{}{} holds {}", bad.empty() ? "" : "; ", where(d.holders[i]),
                             describe(d.seen[i]));
        }
      }
      f.what = fmt::format("copies{} differ at epoch {}: {}; {} hold{} {}",
                           d.akey == f.akey ? "" : fmt::format(" of '{}'", d.akey), epoch, bad,
                           good, good.find(',') == std::string::npos ? "s" : "",
                           describe(d.seen[d.good]));
      f.copies = bad;
      if (o.repair) {
        Status st = repair_copies(key, dkey, d, epoch);
        f.repaired = st.is_ok();
        if (f.repaired) {
          ++c.fixed;
        } else {
          c.last_error = st.to_string();
          f.what += fmt::format(" (not repaired: {})", st.to_string());
        }
      }
      log::warn("rank {} target {}: pool {} object {:x}.{:x} dkey '{}': {}{}", peer.rank,
                peer.target, peer.shard.id, f.oid.hi, f.oid.lo, dkey, f.what,
                f.repaired ? " (repaired)" : "");
      c.add(std::move(f));
    }
    return Status();
  }

  // Gives every disagreeing holder the good copy's history at or below `epoch`, then checks
  // that they agree.
  Status repair_copies(ObjectId key, const std::string& dkey, const Diff& d, uint64_t epoch) {
    auto x = history(d.holders[d.good], key, dkey, d.akey, epoch);
    if (!x) return x.status();
    for (size_t i = 0; i < d.holders.size(); ++i) {
      if (same(d.seen[i], d.seen[d.good])) continue;
      Pushed sent;
      TESSERA_TRY(peer.push(d.holders[i], key, dkey, d.akey, *x, sent, epoch));
    }
    for (size_t i = 0; i < d.holders.size(); ++i) {
      if (same(d.seen[i], d.seen[d.good])) continue;
      auto now = digests(d.holders[i], key, dkey, epoch);
      if (!now) return now.status();
      storage::AkeyDigest got;
      for (const auto& [a, dg] : now->akeys) {
        if (a == d.akey) got = dg;
      }
      if (!same(got, d.seen[d.good])) {
        return Status(Errc::internal, fmt::format("{} still holds {} after the repair",
                                                  where(d.holders[i]), describe(got)));
      }
    }
    return Status();
  }

  // ---- 2b. erasure-coded stripes against their parity --------------------------------------

  struct StripeRead {
    std::vector<Buffer> cells;           // by cell index (data first, then parity)
    std::vector<int> at;                 // cell index -> position (-1: no reader)
    std::vector<std::string> missing;    // cell index -> why it is not present ("" present)
    uint64_t epoch = 0;                  // the writer's record's
    bool recorded = false;
    std::vector<uint8_t> sums;
  };

  Result<StripeRead> read_stripe(const placement::EcGeometry& g, const std::vector<Position>& pos,
                                 ObjectId key, const std::string& dkey, const std::string& akey,
                                 uint64_t s, uint64_t epoch) {
    StripeRead r;
    r.cells.resize(g.n());
    r.at.assign(g.n(), -1);
    r.missing.assign(g.n(), "");
    const uint64_t ss = placement::ec_sum_size(g.k);
    auto sums = store().fetch(key, dkey, placement::ec_sum_akey(akey), ValueKind::array, s * ss,
                              ss, epoch);
    if (!sums) return sums.status();
    r.recorded = sums->holes.empty() && sums->data.size() == ss;
    if (!r.recorded) return r;
    r.epoch = sums->epoch;
    r.sums.assign(sums->data.data(), sums->data.data() + ss);
    for (uint32_t i = 0; i < g.n(); ++i) {
      const uint32_t ci = g.cell_at(i);
      const Shard* from = pos[i].reader();
      if (from == nullptr) {
        r.missing[ci] = "no reader";
        continue;
      }
      r.at[ci] = static_cast<int>(i);
      auto f = peer.fetch(*from, key, dkey, placement::ec_cell_akey(akey, i), s * g.cell, g.cell,
                          epoch);
      if (!f) {
        if (f.status().code() != Errc::checksum && f.status().code() != Errc::io_error) {
          return f.status();
        }
        r.missing[ci] = "damaged";  // its holder's own check heals it
        continue;
      }
      if (f->holes.size() == 1 && f->holes[0].second == g.cell) {
        r.missing[ci] = "absent";
      } else if (!f->holes.empty() || f->data.size() != g.cell) {
        r.missing[ci] = "partly written";
      } else if (f->epoch != r.epoch) {
        r.missing[ci] = fmt::format("of epoch {}, not the record's {}", f->epoch, r.epoch);
      } else {
        r.cells[ci] = std::move(f->data);
      }
    }
    return r;
  }

  bool data_cell_ok(const placement::EcGeometry& g, const StripeRead& r, uint32_t j,
                    const uint8_t* bytes) const {
    uint32_t want = 0;
    for (int b = 3; b >= 0; --b) want = (want << 8) | r.sums[j * 4 + static_cast<uint32_t>(b)];
    return crc32c(bytes, g.cell) == want;
  }

  // The stripe as its writer meant it, from the cells that agree with its record (all n
  // cells), and the cell indexes that hold other bytes or none. Fails when fewer than k cells
  // can be trusted.
  Result<std::pair<std::vector<std::vector<uint8_t>>, std::vector<uint32_t>>> solve(
      const placement::EcGeometry& g, const StripeRead& r) {
    const auto& code = placement::erasure_code(g.k, g.p);
    std::vector<uint32_t> usable;
    for (uint32_t ci = 0; ci < g.n(); ++ci) {
      if (!r.missing[ci].empty()) continue;
      if (ci < g.k && !data_cell_ok(g, r, ci, r.cells[ci].data())) continue;
      usable.push_back(ci);
    }
    // Try the usable cells, leaving out one parity cell at a time when all of them fail (a
    // wrong parity cell rebuilds wrong data cells, which their record then refuses).
    std::vector<int> leave_out{-1};
    for (uint32_t q = 0; q < g.p; ++q) leave_out.push_back(static_cast<int>(g.k + q));
    for (int skip : leave_out) {
      std::vector<std::vector<uint8_t>> cells(g.n(), std::vector<uint8_t>(g.cell, 0));
      bool present[64] = {};
      size_t have = 0;
      for (uint32_t ci : usable) {
        if (static_cast<int>(ci) == skip) continue;
        std::memcpy(cells[ci].data(), r.cells[ci].data(), g.cell);
        present[ci] = true;
        ++have;
      }
      if (have < g.k) continue;
      std::vector<uint8_t*> ptrs(g.n());
      for (uint32_t ci = 0; ci < g.n(); ++ci) ptrs[ci] = cells[ci].data();
      if (!code.reconstruct(g.cell, ptrs, std::span<const bool>(present, g.n())).is_ok()) continue;
      bool ok = true;
      for (uint32_t j = 0; j < g.k && ok; ++j) ok = data_cell_ok(g, r, j, cells[j].data());
      if (!ok) continue;
      // Parity from the data, whatever cells rebuilt it.
      std::vector<const uint8_t*> d;
      std::vector<uint8_t*> p;
      for (uint32_t j = 0; j < g.k; ++j) d.push_back(cells[j].data());
      for (uint32_t q = 0; q < g.p; ++q) p.push_back(cells[g.k + q].data());
      code.encode(g.cell, d, p);
      std::vector<uint32_t> bad;
      for (uint32_t ci = 0; ci < g.n(); ++ci) {
        if (r.missing[ci] == "no reader" || r.missing[ci] == "damaged") continue;
        if (!r.missing[ci].empty() ||
            std::memcmp(cells[ci].data(), r.cells[ci].data(), g.cell) != 0) {
          bad.push_back(ci);
        }
      }
      return std::make_pair(std::move(cells), std::move(bad));
    }
    return Status(Errc::checksum,
                  fmt::format("fewer than {} cells agree with the writer's checksum record", g.k));
  }

  Status check_stripes(const placement::EcGeometry& g, const std::vector<Position>& pos,
                       ObjectId key, const std::string& dkey, const std::string& akey) {
    const uint64_t ss = placement::ec_sum_size(g.k);
    std::set<uint64_t> stripes;
    std::string anchor;
    while (true) {
      auto page = store().list(storage::ListScope::recx, key, dkey, placement::ec_sum_akey(akey),
                               anchor, 1000, 0);
      if (!page) return page.status();
      for (const auto& e : page->entries) {
        if (e.length == 0) continue;
        for (uint64_t s = e.offset / ss; s <= (e.offset + e.length - 1) / ss; ++s) {
          stripes.insert(s);
        }
      }
      if (page->done || page->anchor.empty()) break;
      anchor = page->anchor;
    }
    for (uint64_t s : stripes) {
      if (cancelled()) return Status(Errc::shutdown, "check cancelled");
      StripeRead r;
      Result<std::pair<std::vector<std::vector<uint8_t>>, std::vector<uint32_t>>> solved =
          Status(Errc::internal, "not read");
      uint64_t epoch = 0;
      for (int attempt = 0; attempt < kAttempts; ++attempt) {
        if (attempt > 0) pause(attempt - 1);
        epoch = store().new_epoch();
        auto got = read_stripe(g, pos, key, dkey, akey, s, epoch);
        if (!got) return got.status();
        r = std::move(*got);
        if (!r.recorded) break;
        solved = solve(g, r);
        if (solved && solved->second.empty()) break;
      }
      if (!r.recorded) continue;  // not a whole stripe at that epoch (punched)
      ++c.stripes;
      if (solved && solved->second.empty()) continue;
      ++c.inconsistent;
      CheckFinding f;
      f.oid = shard_keys::user_oid(key);
      f.dkey = dkey;
      f.akey = akey;
      f.offset = s * g.stripe();
      f.length = g.stripe();
      if (!solved) {
        f.what = fmt::format("stripe {} (epoch {}): {}", s, r.epoch, solved.status().message());
        c.last_error = f.what;
        c.add(std::move(f));
        continue;
      }
      std::string bad;
      for (uint32_t ci : solved->second) {
        const Shard* h = pos[static_cast<uint32_t>(r.at[ci])].reader();
        bad += fmt::format("{}{} cell {} at {}{}", bad.empty() ? "" : ", ",
                           ci < g.k ? "data" : "parity", ci < g.k ? ci : ci - g.k, where(*h),
                           r.missing[ci].empty() ? "" : " (" + r.missing[ci] + ")");
      }
      f.what = fmt::format("stripe {} (epoch {}): {} disagree{} with the others and the writer's "
                           "checksum record",
                           s, r.epoch, bad, solved->second.size() == 1 ? "s" : "");
      f.copies = bad;
      if (o.repair) {
        Status st = repair_cells(g, pos, key, dkey, akey, s, r, *solved, epoch);
        f.repaired = st.is_ok();
        if (f.repaired) {
          ++c.fixed;
        } else {
          c.last_error = st.to_string();
          f.what += fmt::format(" (not repaired: {})", st.to_string());
        }
      }
      log::warn("rank {} target {}: pool {} object {:x}.{:x} dkey '{}' akey '{}': {}{}", peer.rank,
                peer.target, peer.shard.id, f.oid.hi, f.oid.lo, dkey, akey, f.what,
                f.repaired ? " (repaired)" : "");
      c.add(std::move(f));
    }
    return Status();
  }

  // Rewrites each bad cell of stripe `s` in its holder's history: the version of the record's
  // epoch gets the right bytes (a cell of another epoch, or none, cannot be put right that way).
  Status repair_cells(const placement::EcGeometry& g, const std::vector<Position>& pos,
                      ObjectId key, const std::string& dkey, const std::string& akey, uint64_t s,
                      const StripeRead& r,
                      const std::pair<std::vector<std::vector<uint8_t>>, std::vector<uint32_t>>& fix,
                      uint64_t epoch) {
    for (uint32_t ci : fix.second) {
      if (!r.missing[ci].empty()) {
        return Status(Errc::unavailable,
                      fmt::format("cell {} is {}: only a cell of the record's epoch is rewritten",
                                  ci, r.missing[ci]));
      }
      const auto i = static_cast<uint32_t>(r.at[ci]);
      const Shard& h = *pos[i].reader();
      const std::string cell_akey = placement::ec_cell_akey(akey, i);
      auto x = history(h, key, dkey, cell_akey, epoch);
      if (!x) return x.status();
      const uint64_t lo = s * g.cell, hi = lo + g.cell;
      uint64_t patched = 0;
      for (const auto& v : x->versions) {
        if (v.punch || v.epoch != r.epoch || v.hi <= lo || v.lo >= hi) continue;
        const uint64_t a = std::max(lo, v.lo), b = std::min(hi, v.hi);
        std::memcpy(x->data.data() + v.data_at + (a - v.lo), fix.first[ci].data() + (a - lo),
                    b - a);
        patched += b - a;
      }
      if (patched != g.cell) {
        return Status(Errc::not_found, fmt::format("{} no longer holds the cell's version",
                                                   where(h)));
      }
      Pushed sent;
      TESSERA_TRY(peer.push(h, key, dkey, cell_akey, *x, sent, epoch));
    }
    auto again = read_stripe(g, pos, key, dkey, akey, s, epoch);
    if (!again) return again.status();
    auto solved = solve(g, *again);
    if (!solved) return solved.status();
    if (!solved->second.empty()) {
      return Status(Errc::internal, "the stripe still disagrees after the repair");
    }
    return Status();
  }

  // ---- one dkey ---------------------------------------------------------------------------

  Status dkey_work(const placement::ObjectClass& cls, const placement::Placement& place,
                   ObjectId key, const std::string& dkey) {
    const auto pos = place.dkey(dkey);
    bool reader = false;
    for (const auto& p : pos) reader |= p.reader() != nullptr && peer.is_me(*p.reader());
    if (!reader) return Status();  // not a holder of complete data here: rebuild's business
    ++c.dkeys;
    std::optional<placement::EcGeometry> g;
    if (cls.redundancy == placement::Redundancy::erasure) {
      const uint64_t cell = peer.cell_size(shard_keys::cont_of(key));
      if (cell == 0) return Status(Errc::not_found, "the container is not in the pool map");
      g = placement::ec_geometry(cls.data, cls.parity, cell, dkey);
    }
    verify_dkey(key, dkey, pos, g);
    if (pos.size() < 2) return Status();
    // The first position's holder compares the group; another holder does only when that one
    // does not know the dkey at all (its copy is wholly missing).
    const int first = placement::first_holder(pos);
    if (first < 0) return Status();
    const Shard& checker = *pos[static_cast<size_t>(first)].reader();
    if (!peer.is_me(checker)) {
      auto probe = digests(checker, key, dkey, 0, true);
      if (!probe) return probe.status();
      if (probe->known) return Status();
    }
    TESSERA_TRY(compare_dkey(pos, key, dkey, g));
    if (!g) return Status();
    for (const auto& [akey, kind] : store().akey_names(key, dkey)) {
      if (placement::is_ec_sum_akey(akey)) {
        TESSERA_TRY(check_stripes(*g, pos, key, dkey, placement::ec_user_akey(akey)));
      }
    }
    return Status();
  }
};

}  // namespace

Result<CheckCounters> check(ActorRuntime& rt, uint32_t rank, uint16_t target, PoolShard& shard,
                            const CheckOptions& opts) {
  if (!shard.view) return Status(Errc::unavailable, "no pool map");
  Checker k{Peer{rt, rank, target, shard, kRepairRetry, opts.cancelled}, opts, {}};
  const double share = std::clamp(opts.share, 0.01, 1.0);
  Env& env = rt.target().env();
  std::vector<ObjectId> keys = shard.store->object_keys();
  std::erase_if(keys, [&](const ObjectId& key) { return shard_keys::cont_of(key) != opts.cont; });
  uint64_t total = 0, done = 0;
  for (const ObjectId& key : keys) total += shard.store->dkey_names(key).size();
  if (opts.progress) opts.progress(0, total);
  for (const ObjectId& key : keys) {
    const ObjectId uoid = shard_keys::user_oid(key);
    const auto* cls = placement::find_class(placement::oid_class(uoid));
    if (cls == nullptr) continue;
    auto place = placement::place(uoid, k.peer.map());
    if (!place) continue;
    ++k.c.objects;
    for (const auto& dkey : shard.store->dkey_names(key)) {
      if (k.cancelled()) return Status(Errc::shutdown, "check cancelled");
      const Nanos t0 = env.now();
      Status st = k.dkey_work(*cls, *place, key, dkey);
      if (!st.is_ok()) {
        if (st.code() == Errc::shutdown) return st;
        k.c.last_error = st.to_string();
        CheckFinding f;
        f.oid = uoid;
        f.dkey = dkey;
        f.what = fmt::format("not checked: {}", st.to_string());
        ++k.c.unchecked;
        k.c.add(std::move(f));
      }
      if (opts.progress) opts.progress(std::min(++done, total), total);
      const Nanos busy = env.now() - t0;
      if (share < 1.0 && busy > Nanos(0)) {
        rt.target().sleep_for(
            Nanos(static_cast<int64_t>(static_cast<double>(busy.count()) * (1.0 - share) / share)));
      }
    }
  }
  if (opts.progress) opts.progress(total, total);
  return std::move(k.c);
}

}  // namespace tessera::rebuild

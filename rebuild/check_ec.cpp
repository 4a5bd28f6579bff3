// The erasure-coded half of a container check's pass on one target (rebuild/check.hpp): a
// damaged cell rebuilt from its stripe, and stripes checked against their parity and their
// writer's checksum record, a bad cell rewritten in its holder's history.
#include <fmt/format.h>

#include <cstring>
#include <set>

#include "core/checksum.hpp"
#include "core/log.hpp"
#include "rebuild/check_internal.hpp"
#include "shard/keys.hpp"

namespace tessera::rebuild::detail {

Result<StripeRead> Checker::read_stripe(const placement::EcGeometry& g,
                                        const std::vector<Position>& pos, ObjectId key,
                                        const std::string& dkey, const std::string& akey,
                                        uint64_t s, uint64_t epoch) {
  StripeRead r;
  r.cells.resize(g.n());
  r.at.assign(g.n(), -1);
  r.missing.assign(g.n(), "");
  const uint64_t ss = placement::ec_sum_size(g.k);
  auto sums =
      store().fetch(key, dkey, placement::ec_sum_akey(akey), ValueKind::array, s * ss, ss, epoch);
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
    auto f =
        peer.fetch(*from, key, dkey, placement::ec_cell_akey(akey, i), s * g.cell, g.cell, epoch);
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

bool Checker::data_cell_ok(const placement::EcGeometry& g, const StripeRead& r, uint32_t j,
                           const uint8_t* bytes) {
  // The record of cell j alone (its crc32c sits at 4 * j).
  const uint8_t* one[1] = {bytes};
  return placement::ec_check_sums(g.cell, one, r.sums.data() + 4 * j) < 0;
}

// The stripe as its writer meant it, from the cells that agree with its record (all n
// cells), and the cell indexes that hold other bytes or none. Fails when fewer than k cells
// can be trusted.
Result<Solved> Checker::solve(const placement::EcGeometry& g, const StripeRead& r) {
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

Status Checker::check_stripes(const placement::EcGeometry& g, const std::vector<Position>& pos,
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
    Result<Solved> solved = Status(Errc::internal, "not read");
    auto read = read_settled([&](uint64_t epoch) -> Result<bool> {
      auto got = read_stripe(g, pos, key, dkey, akey, s, epoch);
      if (!got) return got.status();
      r = std::move(*got);
      if (!r.recorded) return true;
      solved = solve(g, r);
      return solved && solved->second.empty();
    });
    if (!read) return read.status();
    const uint64_t epoch = *read;
    if (!r.recorded) continue;  // not a whole stripe at that epoch (punched)
    ++c.stripes;
    if (solved && solved->second.empty()) continue;
    CheckFinding f;
    f.oid = shard_keys::user_oid(key);
    f.dkey = dkey;
    f.akey = akey;
    f.offset = s * g.stripe();
    f.length = g.stripe();
    if (!solved) {
      f.what = fmt::format("stripe {} (epoch {}): {}", s, r.epoch, solved.status().message());
      c.last_error = f.what;
      ++c.inconsistent;
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
    f.what = fmt::format(
        "stripe {} (epoch {}): {} disagree{} with the others and the writer's "
        "checksum record",
        s, r.epoch, bad, solved->second.size() == 1 ? "s" : "");
    f.copies = bad;
    report(std::move(f),
           [&] { return repair_cells(g, pos, key, dkey, akey, s, r, *solved, epoch); });
  }
  return Status();
}

// Rewrites each bad cell of stripe `s` in its holder's history: the version of the record's
// epoch gets the right bytes (a cell of another epoch, or none, cannot be put right that way).
Status Checker::repair_cells(const placement::EcGeometry& g, const std::vector<Position>& pos,
                             ObjectId key, const std::string& dkey, const std::string& akey,
                             uint64_t s, const StripeRead& r, const Solved& fix, uint64_t epoch) {
  for (uint32_t ci : fix.second) {
    if (!r.missing[ci].empty()) {
      return Status(Errc::unavailable,
                    fmt::format("cell {} is {}: only a cell of the record's epoch is rewritten", ci,
                                r.missing[ci]));
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
      std::memcpy(x->data.data() + v.data_at + (a - v.lo), fix.first[ci].data() + (a - lo), b - a);
      patched += b - a;
    }
    if (patched != g.cell) {
      return Status(Errc::not_found,
                    fmt::format("{} no longer holds the cell's version", where(h)));
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

}  // namespace tessera::rebuild::detail

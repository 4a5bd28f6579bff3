// The client's erasure-coding actor, its reads: an array read through any p missing positions
// (cells, reconstruction from parity, partial-stripe copies over the cells, at one pinned
// epoch), single values, listings. Writes are in container_ec_write.cpp. The scheme and its
// failure cases: docs/ERASURE_CODING.md.

#include <algorithm>
#include <set>

#include "proto/protocol.hpp"
#include "proto/object.capnp.h"
#include "client/container_impl.hpp"
#include "core/checksum.hpp"
#include "placement/erasure.hpp"

namespace tessera::contimpl {

using Clock = std::chrono::steady_clock;
using placement::EcGeometry;
using Range = std::pair<uint64_t, uint64_t>;  // [first, last)

const placement::ObjectClass* ec_class(ObjectId oid) {
  const auto* c = placement::find_class(placement::oid_class(oid));
  return c != nullptr && c->redundancy == placement::Redundancy::erasure ? c : nullptr;
}

namespace {

constexpr Nanos kPositionAttempt = std::chrono::seconds(2);

// The positions of (oid, dkey)'s group under the current map, each by the shard that reads
// serve it from; `up`: it has one that holds its complete data (a replacement being filled by
// rebuild does not) and was not seen failing during this operation.
struct GroupView {
  std::vector<placement::Shard> shards;
  std::vector<bool> up;
  uint32_t up_count() const {
    return static_cast<uint32_t>(std::count(up.begin(), up.end(), true));
  }
};

Result<GroupView> group_view(const Container::State& st, ObjectId oid, const std::string& dkey,
                             const std::set<uint32_t>& failed);

// The shards of the dkey's positions that hold complete data (unavailable where none does).
std::vector<placement::Shard> gv_shards(const Container::State& st, ObjectId oid,
                                        const std::string& dkey, const std::set<uint32_t>& failed) {
  std::vector<placement::Shard> out;
  auto gv = group_view(st, oid, dkey, failed);
  if (!gv) return out;
  for (size_t i = 0; i < gv->shards.size(); ++i) {
    out.push_back(gv->shards[i]);
    out.back().available = gv->up[i];
  }
  return out;
}

Result<GroupView> group_view(const Container::State& st, ObjectId oid, const std::string& dkey,
                             const std::set<uint32_t>& failed) {
  auto placed = placement_of(st, oid);
  if (!placed) return placed.status();
  const placement::Placement* place = placed->get();
  GroupView v;
  auto positions = place->dkey(dkey);
  for (uint32_t i = 0; i < positions.size(); ++i) {
    const placement::Shard* r = positions[i].reader();
    v.shards.push_back(r != nullptr ? *r : positions[i].home);
    // A position on an engine the system counts as dead (its targets kept in the map because
    // taking them out would strand data) does not answer: read around it at once.
    auto a = r != nullptr ? st.view->addrs.find(r->rank) : st.view->addrs.end();
    const bool gone = a != st.view->addrs.end() &&
                      (a->second.state == "dead" || a->second.state == "excluded");
    v.up.push_back(r != nullptr && failed.count(i) == 0 && !gone);
  }
  return v;
}

// A position failed to answer during an operation: the operation plans again without it.
struct PositionFailed {
  uint32_t pos;
  Status why;
};

// A position answered with bytes that fail their checksum, or a device error: read around it.
bool damaged(Errc e) { return e == Errc::checksum || e == Errc::io_error; }

// Runs `attempt` until it succeeds, fails for good, or the container's timeout passes. An
// attempt that saw a position fail (`failed` grows) is planned again at once without it (a
// degraded read); when too few positions are left the map is fetched again. A position whose
// bytes are damaged is read around the same way; when nothing is left to read around it with,
// its error is the answer.
template <typename T>
Result<T> with_retries(const StatePtr& sp,
                       const std::function<Result<T>(std::set<uint32_t>& failed)>& attempt) {
  Container::State& st = *sp;
  const auto deadline = Clock::now() + st.timeout;
  std::set<uint32_t> failed;
  if (st.suspect) {
    st.suspect = false;
    (void)refresh(sp);
  }
  Status damage;  // a position's bytes were damaged or missing: read around it, or answer this
  while (true) {
    size_t before = failed.size();
    auto r = attempt(failed);
    if (r) return r;
    if (damaged(r.status().code()) && failed.size() > before) {
      damage = r.status();
      continue;  // plan again without the damaged position
    }
    if (!damage.is_ok() && retryable(r.status().code())) return damage;  // no way around it
    if (!retryable(r.status().code())) return r;
    st.suspect = true;
    if (Clock::now() >= deadline) {
      return Status(r.status().code(), fmt::format("{} (gave up after {} ms)", r.status().message(),
                                                   st.timeout.count()));
    }
    if (failed.size() == before) {
      // No position to leave out: wait for a new map.
      st.im->target->sleep_for(std::chrono::milliseconds(50));
      (void)refresh(sp);
      failed.clear();
    }
  }
}

// Runs the jobs in parallel fibers of the client target; the first error wins.
Status parallel(Container::State& st, std::vector<std::function<Status()>> jobs) {
  if (jobs.size() == 1) return jobs[0]();
  std::vector<boost::fibers::future<Status>> done;
  for (auto& j : jobs) {
    auto p = std::make_shared<boost::fibers::promise<Status>>();
    done.push_back(p->get_future());
    st.im->target->spawn([p, j = std::move(j)] { p->set_value(j()); });
  }
  Status first;
  for (auto& f : done) {
    Status s = f.get();
    if (!s.is_ok() && (first.is_ok() || !retryable(s.code()))) first = s;
  }
  return first;
}

// One request to position `pos`; a retryable failure, or damaged bytes, marks the position
// failed.
Result<Message> ask_position(Container::State& st, const GroupView& gv, uint32_t pos,
                             std::set<uint32_t>& failed, uint16_t method, Buffer body) {
  auto r = send(st, gv.shards[pos], method, std::move(body), {}, kPositionAttempt);
  if (!r && ((retryable(r.status().code()) && r.status().code() != Errc::stale) ||
             damaged(r.status().code()))) {
    failed.insert(pos);
  }
  return r;
}

// The written runs of an array akey at one position.
Result<std::vector<Range>> runs_at(Container::State& st, const GroupView& gv, uint32_t pos,
                                   std::set<uint32_t>& failed, ObjectId oid,
                                   const std::string& dkey, const std::string& akey, ReadAt at) {
  std::vector<Range> out;
  std::string anchor;
  do {
    auto r = ask_position(
        st, gv, pos, failed, proto::kObjList,
        list_body(ListScope::recx, oid, dkey, akey, anchor, 1000, at.epoch, read_ctx(st, at)));
    if (!r && r.status().code() == Errc::not_found) return out;
    if (!r) return r.status();
    auto page = decoded(*r, decode_list);
    if (!page) return page.status();
    for (const auto& e : page->first) out.emplace_back(e.offset, e.offset + e.length);
    anchor = std::move(page->second);
  } while (!anchor.empty());
  return out;
}

Result<FetchResult> fetch_at(Container::State& st, const GroupView& gv, uint32_t pos,
                             std::set<uint32_t>& failed, ObjectId oid, const std::string& dkey,
                             const std::string& akey, ValueKind kind, uint64_t offset,
                             uint64_t length, ReadAt at) {
  auto r = ask_position(
      st, gv, pos, failed, proto::kObjFetch,
      fetch_body(oid, dkey, akey, kind, offset, length, at.epoch, FetchFlags{}, read_ctx(st, at)));
  if (!r) return r.status();
  return decoded(*r, decode_fetch);
}

// Sorted, merged.
std::vector<Range> merged(std::vector<Range> v) {
  std::sort(v.begin(), v.end());
  std::vector<Range> out;
  for (const auto& r : v) {
    if (r.first >= r.second) continue;
    if (!out.empty() && r.first <= out.back().second) {
      out.back().second = std::max(out.back().second, r.second);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

// Whether one of the (merged) runs holds all of [a, b).
bool covers(const std::vector<Range>& runs, uint64_t a, uint64_t b) {
  for (const auto& r : runs) {
    if (r.first <= a && b <= r.second) return true;
  }
  return false;
}

bool intersects(const std::vector<Range>& runs, uint64_t a, uint64_t b) {
  for (const auto& r : runs) {
    if (r.first < b && a < r.second) return true;
  }
  return false;
}

// What a read of an array akey needs to know first: where its full stripes and its copies lie.
struct ArrayMap {
  std::vector<Range> stripes;  // logical ranges written as full stripes (cells + parity)
  std::vector<Range> copies;   // logical ranges written as partial-stripe copies
  std::vector<int> copy_from;  // -1: copies from the first up parity position; else data
                               // positions, each for its own cells
  int copy_parity = -1;
};

Result<ArrayMap> array_map(Container::State& st, const GroupView& gv, const EcGeometry& g,
                           std::set<uint32_t>& failed, ObjectId oid, const std::string& dkey,
                           const std::string& akey, ReadAt at) {
  ArrayMap m;
  // Every position holds the checksum record of every full stripe (one record per stripe).
  const uint64_t ss = placement::ec_sum_size(g.k);
  for (uint32_t pos = 0; pos < g.n(); ++pos) {
    if (!gv.up[pos]) continue;
    auto r = runs_at(st, gv, pos, failed, oid, dkey, placement::ec_sum_akey(akey), at);
    if (!r) return r.status();
    for (const auto& [lo, hi] : *r) {
      m.stripes.emplace_back(lo / ss * g.stripe(), (hi + ss - 1) / ss * g.stripe());
    }
    break;
  }
  m.stripes = merged(std::move(m.stripes));
  // Copies: every parity position holds all of them; without one, each data position holds
  // those of its own cells.
  const std::string copy = placement::ec_copy_akey(akey);
  for (uint32_t q = 0; q < g.p; ++q) {
    if (gv.up[g.parity_pos(q)]) {
      m.copy_parity = static_cast<int>(g.parity_pos(q));
      break;
    }
  }
  if (m.copy_parity >= 0) {
    auto r = runs_at(st, gv, static_cast<uint32_t>(m.copy_parity), failed, oid, dkey, copy, at);
    if (!r) return r.status();
    m.copies = std::move(*r);
  } else {
    for (uint32_t j = 0; j < g.k; ++j) {
      if (!gv.up[g.data_pos(j)]) continue;
      auto r = runs_at(st, gv, g.data_pos(j), failed, oid, dkey, copy, at);
      if (!r) return r.status();
      // Only its own cells' bytes: a target that once stood in for a parity position keeps the
      // whole copies it took then, which no partial write of another cell updates since.
      for (const auto& [lo, hi] : *r) {
        for (uint64_t s = lo / g.stripe(); s * g.stripe() < hi; ++s) {
          const uint64_t c0 = s * g.stripe() + j * g.cell;
          const uint64_t x = std::max(lo, c0), y = std::min(hi, c0 + g.cell);
          if (x < y) m.copies.emplace_back(x, y);
        }
      }
    }
  }
  m.copies = merged(std::move(m.copies));
  return m;
}

// Rebuilds data cell j of stripe s from k other positions. The survivors must agree: all
// written by the same full-stripe update (one epoch) or all holes; anything else is a torn
// update and is refused rather than answered with wrong bytes.
Status rebuild_cell(Container::State& st, const GroupView& gv, const EcGeometry& g,
                    std::set<uint32_t>& failed, ObjectId oid, const std::string& dkey,
                    const std::string& akey, ReadAt at, uint32_t j, uint64_t s,
                    std::vector<uint8_t>& out, bool& hole) {
  std::vector<uint32_t> cells;  // cell indices (0..k+p-1) read
  for (uint32_t c = 0; c < g.n() && cells.size() < g.k; ++c) {
    uint32_t pos = c < g.k ? g.data_pos(c) : g.parity_pos(c - g.k);
    if (gv.up[pos]) cells.push_back(c);
  }
  if (cells.size() < g.k) {
    return Status(Errc::unavailable,
                  fmt::format("only {} of the {} positions serve; {}+{} erasure coding needs {}",
                              gv.up_count(), g.n(), g.k, g.p, g.k));
  }
  std::vector<Result<FetchResult>> got;
  for (size_t i = 0; i < cells.size(); ++i) got.emplace_back(Status(Errc::internal, "not read"));
  std::vector<std::function<Status()>> jobs;
  for (size_t i = 0; i < cells.size(); ++i) {
    jobs.push_back([&, i]() -> Status {
      uint32_t c = cells[i];
      uint32_t pos = c < g.k ? g.data_pos(c) : g.parity_pos(c - g.k);
      got[i] = fetch_at(st, gv, pos, failed, oid, dkey, placement::ec_cell_akey(akey, pos),
                        ValueKind::array, s * g.cell, g.cell, at);
      return got[i] ? Status() : got[i].status();
    });
  }
  // The stripe's checksum record, from the first survivor (every position holds it).
  const uint64_t ss = placement::ec_sum_size(g.k);
  Result<FetchResult> sums = Status(Errc::internal, "not read");
  jobs.push_back([&]() -> Status {
    uint32_t c = cells[0];
    uint32_t pos = c < g.k ? g.data_pos(c) : g.parity_pos(c - g.k);
    sums = fetch_at(st, gv, pos, failed, oid, dkey, placement::ec_sum_akey(akey), ValueKind::array,
                    s * ss, ss, at);
    return sums ? Status() : sums.status();
  });
  TESSERA_TRY(parallel(st, std::move(jobs)));
  const bool recorded = sums->holes.empty() && sums->data.size() == ss;
  std::vector<uint32_t> empty;  // positions whose cell holds no bytes, or only some
  uint64_t ep = 0;
  for (size_t i = 0; i < cells.size(); ++i) {
    const auto& f = *got[i];
    uint64_t hole_bytes = 0;
    for (const auto& h : f.holes) hole_bytes += h.second;
    if (hole_bytes != 0) {
      empty.push_back(cells[i] < g.k ? g.data_pos(cells[i]) : g.parity_pos(cells[i] - g.k));
      continue;
    }
    if (ep != 0 && f.epoch != ep) ep = UINT64_MAX;
    if (ep != UINT64_MAX) ep = f.epoch;
  }
  if (empty.size() == cells.size() && !recorded) {
    hole = true;  // never written as a full stripe
    return Status();
  }
  if (!empty.empty() && empty.size() < cells.size()) {
    // A stripe is written whole: a cell without bytes was lost (a rebuild that could not
    // make it). Read around those positions.
    failed.insert(empty.begin(), empty.end());
    return Status(Errc::io_error,
                  fmt::format("stripe {} of akey '{}': {} of the cells read to rebuild cell {} "
                              "hold no bytes although the stripe was written whole",
                              s, akey, empty.size(), j));
  }
  if (!empty.empty() || ep == UINT64_MAX) {
    return Status(Errc::io_error,
                  fmt::format("stripe {} of akey '{}': {}; cell {} cannot be rebuilt", s, akey,
                              empty.empty() ? "the surviving cells were not written by one "
                                              "update (a torn update)"
                                            : "none of the surviving cells hold bytes although "
                                              "the stripe was written whole",
                              j));
  }
  std::vector<std::vector<uint8_t>> buf(g.n(), std::vector<uint8_t>(g.cell));
  std::unique_ptr<bool[]> pres(new bool[g.n()]());
  for (size_t i = 0; i < cells.size(); ++i) {
    std::memcpy(buf[cells[i]].data(), got[i]->data.data(), g.cell);
    pres[cells[i]] = true;
  }
  std::vector<uint8_t*> ptrs;
  for (auto& b : buf) ptrs.push_back(b.data());
  TESSERA_TRY(placement::erasure_code(g.k, g.p).reconstruct(
      g.cell, ptrs, std::span<const bool>(pres.get(), g.n())));
  // End to end: the rebuilt stripe must hold the bytes its writer summed.
  if (!recorded || sums->epoch != ep) {
    return Status(Errc::checksum,
                  fmt::format("stripe {} of akey '{}': no checksum record of the update that "
                              "wrote its cells; cell {} is not answered",
                              s, akey, j));
  }
  const int bad = placement::ec_check_sums(
      g.cell, std::span<const uint8_t* const>(ptrs.data(), g.k), sums->data.data());
  if (bad >= 0) {
    return Status(Errc::checksum,
                  fmt::format("stripe {} of akey '{}': data cell {} rebuilt from {} others fails "
                              "the checksum its writer recorded",
                              s, akey, bad, g.k));
  }
  out = std::move(buf[j]);
  hole = false;
  return Status();
}

// The epoch a read of an array pins when its caller asked for the newest state (epoch 0), and
// the reader id its reads stamp with (ReadAt::owner), from one round trip (kObjTxBegin): to the
// first parity position that serves, which holds a part of every update of the dkey and so has
// an epoch clock past every update acknowledged before the read began; with none, to every
// data position that serves (the newest of their epochs). Every position read at that epoch
// shows the same state of the stripes, where reads of the newest state at each position could
// straddle an update landing (a stripe torn between two updates); the stamps the reads leave
// make a change below the epoch that arrives later run again at a new one (docs/TRANSACTIONS.md).
Result<ReadAt> pin_read(Container::State& st, const GroupView& gv, const EcGeometry& g,
                        std::set<uint32_t>& failed) {
  std::vector<uint32_t> ask;
  for (uint32_t q = 0; q < g.p && ask.empty(); ++q) {
    if (gv.up[g.parity_pos(q)]) ask.push_back(g.parity_pos(q));
  }
  if (ask.empty()) {
    for (uint32_t j = 0; j < g.k; ++j) {
      if (gv.up[g.data_pos(j)]) ask.push_back(g.data_pos(j));
    }
  }
  std::vector<std::pair<uint64_t, uint64_t>> got(ask.size());
  std::vector<std::function<Status()>> jobs;
  for (size_t i = 0; i < ask.size(); ++i) {
    jobs.push_back([&, i]() -> Status {
      capnp::MallocMessageBuilder b(128);
      set_ctx(b.initRoot<schema::TxBeginReq>().initCtx(), ctx_of(st));
      auto m = ask_position(st, gv, ask[i], failed, proto::kObjTxBegin, capn::to_body(b));
      if (!m) return m.status();
      auto r = decoded(*m, decode_tx_begin);
      if (!r) return r.status();
      got[i] = *r;
      return Status();
    });
  }
  if (jobs.empty()) return Status(Errc::unavailable, "no position of this object's group serves");
  TESSERA_TRY(parallel(st, std::move(jobs)));
  ReadAt at;
  for (const auto& [epoch, owner] : got) {
    if (epoch > at.epoch) at = ReadAt(epoch, owner);
  }
  return at;
}

Result<FetchResult> fetch_array(Container::State& st, const GroupView& gv, const EcGeometry& g,
                                std::set<uint32_t>& failed, ObjectId oid, const std::string& dkey,
                                const std::string& akey, uint64_t a, uint64_t length, ReadAt at) {
  auto map = array_map(st, gv, g, failed, oid, dkey, akey, at);
  if (!map) return map.status();
  uint64_t end = 0;
  if (!map->stripes.empty()) end = map->stripes.back().second;
  if (!map->copies.empty()) end = std::max(end, map->copies.back().second);
  FetchResult out;
  out.size = end;
  out.exists = end > 0;
  const uint64_t b = length == 0 ? std::max(a, end) : a + length;
  out.data.reset(b - a);
  std::memset(out.data.data(), 0, b - a);
  std::vector<uint8_t> written(b - a, 0);
  uint64_t newest = 0;

  // Full stripes: each data position's cells, or the cells rebuilt from k others.
  std::vector<std::function<Status()>> jobs;
  std::vector<uint32_t> lost;
  for (uint32_t j = 0; j < g.k; ++j) {
    const uint64_t lo = g.local_floor(j, a), hi = g.local_floor(j, b);
    if (lo >= hi) continue;
    bool any = false;
    for (const auto& r : map->stripes) {
      if (g.local_floor(j, r.first) < hi && lo < g.local_floor(j, r.second)) any = true;
    }
    if (!any) continue;
    if (!gv.up[g.data_pos(j)]) {
      lost.push_back(j);
      continue;
    }
    jobs.push_back([&, j, lo, hi]() -> Status {
      auto f =
          fetch_at(st, gv, g.data_pos(j), failed, oid, dkey,
                   placement::ec_cell_akey(akey, g.data_pos(j)), ValueKind::array, lo, hi - lo, at);
      if (!f) return f.status();
      newest = std::max(newest, f->epoch);
      std::vector<uint8_t> hole(hi - lo, 0);
      for (const auto& [ho, hl] : f->holes) {
        std::fill(hole.begin() + static_cast<long>(ho - lo),
                  hole.begin() + static_cast<long>(ho - lo + hl), 1);
      }
      // Local bytes of one cell are contiguous in logical space: copy cell by cell.
      for (uint64_t l = lo; l < hi;) {
        uint64_t n = std::min(hi - l, g.cell - l % g.cell);
        uint64_t x = g.logical(j, l);
        std::memcpy(out.data.data() + (x - a), f->data.data() + (l - lo), n);
        bool missing = false;
        for (uint64_t i = 0; i < n; ++i) {
          if (hole[l - lo + i] == 0) {
            written[x - a + i] = 1;
          } else {
            missing = true;
          }
        }
        // A full stripe is written whole: a cell without bytes in one was lost (a rebuild
        // that could not make it), not left unwritten. Read around it, unless the copies hold
        // those bytes (they overlay the cell anyway): a re-encoding round interrupted after
        // some positions took their cells and before the copies were released leaves that.
        if (missing && intersects(map->stripes, x, x + n) && !covers(map->copies, x, x + n)) {
          failed.insert(g.data_pos(j));
          const auto& sh = gv.shards[g.data_pos(j)];
          return Status(Errc::io_error,
                        fmt::format("rank {} target {}: data cell {} of stripe {} of akey '{}' "
                                    "holds no bytes although the stripe was written whole",
                                    sh.rank, sh.target, j, x / g.stripe(), akey));
        }
        l += n;
      }
      return Status();
    });
  }
  // The copies of partial stripes.
  std::vector<Range> want;
  for (const auto& r : map->copies) {
    if (r.first < b && a < r.second) want.emplace_back(std::max(a, r.first), std::min(b, r.second));
  }
  std::vector<std::pair<FetchResult, int>> copies;  // (bytes, data cell or -1 for all)
  if (!want.empty()) {
    const uint64_t ca = want.front().first, cb = want.back().second;
    const std::string copy = placement::ec_copy_akey(akey);
    if (map->copy_parity >= 0) {
      copies.emplace_back(FetchResult{}, -1);
      jobs.push_back([&, ca, cb, copy]() -> Status {
        auto f = fetch_at(st, gv, static_cast<uint32_t>(map->copy_parity), failed, oid, dkey, copy,
                          ValueKind::array, ca, cb - ca, at);
        if (!f) return f.status();
        copies[0].first = std::move(*f);
        return Status();
      });
    } else {
      for (uint32_t j = 0; j < g.k; ++j) {
        if (gv.up[g.data_pos(j)]) copies.emplace_back(FetchResult{}, static_cast<int>(j));
      }
      for (size_t i = 0; i < copies.size(); ++i) {
        jobs.push_back([&, i, ca, cb, copy]() -> Status {
          auto f = fetch_at(st, gv, g.data_pos(static_cast<uint32_t>(copies[i].second)), failed,
                            oid, dkey, copy, ValueKind::array, ca, cb - ca, at);
          if (!f) return f.status();
          copies[i].first = std::move(*f);
          return Status();
        });
      }
    }
  }
  TESSERA_TRY(parallel(st, std::move(jobs)));

  // Lost data cells: stripe by stripe from k survivors.
  for (uint32_t j : lost) {
    const uint64_t lo = g.local_floor(j, a), hi = g.local_floor(j, b);
    for (uint64_t s = lo / g.cell; s * g.cell < hi; ++s) {
      const uint64_t x0 = s * g.stripe() + j * g.cell;
      if (!intersects(map->stripes, x0, x0 + g.cell)) continue;
      const uint64_t from = std::max(a, x0), to = std::min(b, x0 + g.cell);
      // The copies hold every byte wanted (they overlay the cells below): nothing to rebuild.
      // This also reads a stripe whose re-encoding a failure interrupted before it released
      // its copies (its cells may disagree then).
      if (covers(map->copies, from, to)) continue;
      std::vector<uint8_t> cell;
      bool hole = false;
      TESSERA_TRY(rebuild_cell(st, gv, g, failed, oid, dkey, akey, at, j, s, cell, hole));
      if (hole) continue;
      std::memcpy(out.data.data() + (from - a), cell.data() + (from - x0), to - from);
      std::fill(written.begin() + static_cast<long>(from - a),
                written.begin() + static_cast<long>(to - a), 1);
    }
  }
  // Copies are newer than the cells under them (a full-stripe update punches them).
  std::vector<uint8_t> copied(want.empty() ? 0 : b - a, 0);
  for (auto& [f, j] : copies) {
    if (f.data.size() == 0) continue;
    newest = std::max(newest, f.epoch);
    const uint64_t ca = want.front().first;
    std::vector<uint8_t> hole(f.data.size(), 0);
    for (const auto& [ho, hl] : f.holes) {
      std::fill(hole.begin() + static_cast<long>(ho - ca),
                hole.begin() + static_cast<long>(ho - ca + hl), 1);
    }
    for (uint64_t i = 0; i < f.data.size(); ++i) {
      if (hole[i] != 0) continue;
      const uint64_t x = ca + i;
      if (j >= 0 && (x % g.stripe()) / g.cell != static_cast<uint64_t>(j)) continue;
      out.data.data()[x - a] = f.data.data()[i];
      written[x - a] = 1;
      copied[x - a] = 1;
    }
  }
  // The copies listed first must all have been read: a re-encoding round writes its cells and
  // releases the copies at an epoch taken before this read's (an engine's background work, not
  // a transaction: docs/ERASURE_CODING.md), so it can land between the listing and the reads,
  // and a lost cell the listing said the copies hold would read as a hole. Read again, at a new
  // epoch (the round has completed by then, or it left its copies).
  for (const auto& [x, y] : want) {
    for (uint64_t i = x; i < y; ++i) {
      if (copied[i - a] != 0) continue;
      return Status(Errc::restart,
                    fmt::format("the copies of bytes [{}, {}) of akey '{}' were released while "
                                "the read ran (a re-encoding round landed below its epoch)",
                                i, y, akey));
    }
  }
  for (uint64_t i = 0; i < b - a;) {
    if (written[i] != 0) {
      ++i;
      continue;
    }
    uint64_t k = i;
    while (k < b - a && written[k] == 0) ++k;
    out.holes.emplace_back(a + i, k - i);
    i = k;
  }
  out.epoch = newest;
  return out;
}

}  // namespace

Result<FetchResult> ec_fetch(const StatePtr& sp, const placement::ObjectClass& cls, ObjectId oid,
                             const std::string& dkey, const std::string& akey, ValueKind kind,
                             uint64_t offset, uint64_t length, ReadAt at, FetchFlags flags) {
  TESSERA_TRY(ec_supported(cls, akey, kind, flags.rsize, Cond::none, false));
  Container::State& st = *sp;
  const EcGeometry g = ec_geometry_of(st, cls, dkey);
  auto r = with_retries<FetchResult>(sp, [&](std::set<uint32_t>& failed) -> Result<FetchResult> {
    auto gv = group_view(st, oid, dkey, failed);
    if (!gv) return gv.status();
    if (kind == ValueKind::array) {
      if (gv->up_count() < g.k) {
        return Status(Errc::unavailable,
                      fmt::format("only {} of the {} positions of this object's group serve; {} "
                                  "needs {}",
                                  gv->up_count(), g.n(), cls.name, g.k));
      }
      if (at.epoch != 0) {
        return fetch_array(st, *gv, g, failed, oid, dkey, akey, offset, length, at);
      }
      // A read pinned here that a position refuses (`restart`: its epoch fell below what that
      // position aggregated) pins a new epoch; after a few, the caller's retries take over.
      Result<FetchResult> r = Status(Errc::busy, "the read's epoch was refused");
      for (int pin = 0; pin < 4; ++pin) {
        auto p = pin_read(st, *gv, g, failed);
        if (!p) return p.status();
        r = fetch_array(st, *gv, g, failed, oid, dkey, akey, offset, length, *p);
        if (r || r.status().code() != Errc::restart) return r;
      }
      return Status(Errc::busy, r.status().message());
    }
    // A single value: whole on the first data position and on every parity position.
    std::vector<uint32_t> holders{g.data_pos(0)};
    for (uint32_t q = 0; q < g.p; ++q) holders.push_back(g.parity_pos(q));
    Status last(Errc::unavailable, fmt::format("no position holding this single value serves "
                                               "({} of {} positions serve)",
                                               gv->up_count(), g.n()));
    for (uint32_t pos : holders) {
      if (!gv->up[pos]) continue;
      auto f = fetch_at(st, *gv, pos, failed, oid, dkey, akey, kind, offset, length, at);
      if (f || !(retryable(f.status().code()) || damaged(f.status().code()))) return f;
      last = f.status();  // a damaged copy: the next holder's
    }
    return last;
  });
  if (r && flags.must_exist && !r->exists) {
    return Status(Errc::not_found, fmt::format("akey '{}' has no value", akey));
  }
  return r;
}

Result<std::vector<KeyEntry>> ec_list(const StatePtr& sp, const placement::ObjectClass& cls,
                                      ListScope scope, ObjectId oid, const std::string& dkey,
                                      const std::string& akey, ReadAt at) {
  Container::State& st = *sp;
  return with_retries<std::vector<KeyEntry>>(
      sp, [&](std::set<uint32_t>& failed) -> Result<std::vector<KeyEntry>> {
        std::vector<KeyEntry> all;
        if (scope == ListScope::recx) {
          TESSERA_TRY(ec_check_akey(akey));
          const EcGeometry g = ec_geometry_of(st, cls, dkey);
          auto gv = group_view(st, oid, dkey, failed);
          if (!gv) return gv.status();
          auto map = array_map(st, *gv, g, failed, oid, dkey, akey, at);
          if (!map) return map.status();
          auto runs = map->stripes;
          runs.insert(runs.end(), map->copies.begin(), map->copies.end());
          for (const auto& [lo, hi] : merged(std::move(runs))) {
            KeyEntry e;
            e.kind = ValueKind::array;
            e.offset = lo;
            e.length = hi - lo;
            all.push_back(e);
          }
          if (all.empty())
            return Status(Errc::not_found, fmt::format("akey '{}' has no extents", akey));
          return all;
        }
        // Every key lives on at least p + 1 positions of its group, so the union over the
        // positions that serve (at least k of k + p) holds every key.
        // While the map moves data, a dkey's group may have changed: dkeys are then listed
        // from every holder of complete data (each group counted as served by all of them).
        auto placed = placement_of(st, oid);
        if (!placed) return placed.status();
        const placement::Placement* place = placed->get();
        std::vector<std::vector<placement::Shard>> groups;
        if (scope == ListScope::dkeys && place->settled) {
          groups.push_back(place->all_readers());
        } else if (scope == ListScope::dkeys) {
          for (uint32_t gi = 0; gi < place->now.groups; ++gi) {
            auto grp = place->now.group(gi);
            groups.emplace_back(grp.begin(), grp.end());
          }
        } else {
          groups.push_back(gv_shards(st, oid, dkey, failed));
        }
        bool found = false;
        const bool moving_dkeys = scope == ListScope::dkeys && place->settled.has_value();
        for (const auto& group : groups) {
          uint32_t serving = 0;
          for (uint32_t pos = 0; pos < group.size(); ++pos) {
            const auto& s = group[pos];
            if (!s.available || (groups.size() == 1 && !moving_dkeys && failed.count(pos) != 0)) {
              continue;
            }
            std::string anchor;
            bool ok = true;
            do {
              auto r =
                  send(st, s, proto::kObjList,
                       list_body(scope, oid, dkey, akey, anchor, 1000, at.epoch, read_ctx(st, at)),
                       {}, kPositionAttempt);
              if (!r && r.status().code() == Errc::not_found) break;
              if (!r && retryable(r.status().code())) {
                if (groups.size() == 1 && !moving_dkeys) failed.insert(pos);
                ok = false;
                break;
              }
              if (!r) return r.status();
              auto page = decoded(*r, decode_list);
              if (!page) return page.status();
              found = true;
              for (auto& e : page->first) all.push_back(std::move(e));
              anchor = std::move(page->second);
            } while (!anchor.empty());
            if (ok) ++serving;
          }
          if (serving < cls.data) {
            return Status(Errc::unavailable,
                          fmt::format("only {} positions of a group of this object answered; {} "
                                      "lists with {}",
                                      serving, cls.name, cls.data));
          }
        }
        if (!found) return Status(Errc::not_found, "no such object");
        for (auto& e : all) e.key = placement::ec_user_akey(e.key);
        std::sort(all.begin(), all.end(),
                  [](const KeyEntry& x, const KeyEntry& y) { return x.key < y.key; });
        all.erase(std::unique(all.begin(), all.end(),
                              [](const KeyEntry& x, const KeyEntry& y) { return x.key == y.key; }),
                  all.end());
        return all;
      });
}

}  // namespace tessera::contimpl

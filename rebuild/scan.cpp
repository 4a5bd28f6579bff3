#include <fmt/format.h>

#include <boost/fiber/condition_variable.hpp>
#include <boost/fiber/operations.hpp>

#include <algorithm>
#include <optional>
#include <set>

#include "core/checksum.hpp"
#include "core/log.hpp"
#include "core/no_lock.hpp"
#include "placement/erasure.hpp"
#include "placement/layout.hpp"
#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"
#include "proto/protocol.hpp"
#include "rebuild/peer.hpp"
#include "rebuild/rebuild.hpp"
#include "shard/keys.hpp"

namespace tessera::rebuild {

using capn::as_data;
using capn::from_data;
using placement::Position;
using placement::Shard;

namespace {

// A stripe that reads torn is read again this many times, this far apart, before it counts.
constexpr int kTornRereads = 3;
constexpr auto kTornPause = std::chrono::milliseconds(100);

struct Scan {
  Peer peer;
  const ScanOptions& o;
  Counters c;
  bool planning = false;  // counts c.planned from the index; reads and sends nothing

  PoolShard& shard() const { return peer.shard; }
  const placement::PoolMap& map() const { return peer.map(); }
  bool is_me(const Shard& s) const { return peer.is_me(s); }

  // Sends a history to `dst` (Peer::push), counting what went.
  Status send(const Shard& dst, ObjectId key, const std::string& dkey, const std::string& akey,
              const storage::AkeyExport& x) {
    Pushed n;
    Status st = peer.push(dst, key, dkey, akey, x, n);
    c.records += n.records;
    c.bytes += n.bytes;
    return st;
  }

  // A home this target fills with whole histories, and which akeys it takes.
  struct Fill {
    Shard home;
    bool copies = true;   // erasure-coded partial-stripe copies
    bool singles = true;  // single values
    bool arrays = true;   // other arrays (replicas; erasure-coded cells are rebuilt instead)
    bool sums = true;     // erasure-coded stripes' checksum records (alike on every position)
    // Erasure-coded cells of this position only (a former holder sending its position's
    // history); -1: none. Cells of other positions a target holds (it held them once) stay.
    int cells_of = -1;
    bool wants(const std::string& akey, storage::ValueKind kind) const {
      if (placement::is_ec_copy_akey(akey)) return copies;
      if (placement::is_ec_sum_akey(akey)) return sums;
      if (auto c = placement::parse_ec_cell_akey(akey)) {
        return cells_of >= 0 && c->second == static_cast<uint32_t>(cells_of);
      }
      return kind == storage::ValueKind::single ? singles : arrays;
    }
  };

  // Sends the punches of the dkey and object, then each akey a fill wants, whole; each akey's
  // history is read once whatever the number of homes.
  Status send_histories(ObjectId key, const std::string& dkey, const std::vector<Fill>& fills) {
    if (fills.empty()) return Status();
    storage::TargetStore& st = *shard().store;
    if (planning) {
      for (const auto& [akey, kind] : st.akey_names(key, dkey)) {
        for (const auto& f : fills) {
          if (f.wants(akey, kind)) c.planned += st.history_bytes(key, dkey, akey);
        }
      }
      return Status();
    }
    auto punches = st.export_akey(key, dkey, "");
    if (!punches) return punches.status();
    if (!punches->object_punches.empty() || !punches->dkey_punches.empty()) {
      for (const auto& f : fills) TESSERA_TRY(send(f.home, key, dkey, "", *punches));
    }
    for (const auto& [akey, kind] : st.akey_names(key, dkey)) {
      std::optional<storage::AkeyExport> x;
      for (const auto& f : fills) {
        if (!f.wants(akey, kind)) continue;
        if (!x) {
          auto e = st.export_akey(key, dkey, akey);
          if (!e) return e.status();
          x = std::move(*e);
        }
        TESSERA_TRY(send(f.home, key, dkey, akey, *x));
      }
    }
    return Status();
  }

  // The first parity position with a holder of complete data (it holds the whole copies), or
  // -1: then every data position's holder keeps the copies of its own cells.
  static int copy_parity(const placement::EcGeometry& g, const std::vector<Position>& pos) {
    for (uint32_t q = 0; q < g.p; ++q) {
      if (pos[g.parity_pos(q)].reader() != nullptr) return static_cast<int>(g.parity_pos(q));
    }
    return -1;
  }

  // Whether the partial-stripe copies hold all of stripe `s`, where the fill (dkey_work()) takes
  // them from: copy_parity(), or without one each data position's own cells (only those count:
  // one that once stood in for a parity position keeps the whole copies it took then, which no
  // partial write of another cell updates since).
  bool copies_cover(const placement::EcGeometry& g, const std::vector<Position>& pos, ObjectId key,
                    const std::string& dkey, const std::string& akey, uint64_t s) {
    const std::string copy = placement::ec_copy_akey(akey);
    if (const int q = copy_parity(g, pos); q >= 0) {
      auto f = peer.fetch(*pos[q].reader(), key, dkey, copy, s * g.stripe(), g.stripe());
      return f && f->holes.empty() && f->data.size() == g.stripe();
    }
    for (uint32_t j = 0; j < g.k; ++j) {
      const placement::Shard* r = pos[g.data_pos(j)].reader();
      if (r == nullptr) return false;
      auto f = peer.fetch(*r, key, dkey, copy, s * g.stripe() + j * g.cell, g.cell);
      if (!f || !f->holes.empty() || f->data.size() != g.cell) return false;
    }
    return true;
  }

  // Rebuilds position `lost`'s cells of one akey (the user's), stripe by stripe, from k
  // positions whose data is complete somewhere; `me` is the position this target reads for.
  Status rebuild_cells(const placement::EcGeometry& g, const std::vector<Position>& pos,
                       uint32_t me, uint32_t lost, ObjectId key, const std::string& dkey,
                       const std::string& akey) {
    const std::string mine = placement::ec_cell_akey(akey, me);
    const std::string theirs = placement::ec_cell_akey(akey, lost);
    // Sources: positions whose data is complete somewhere (a complete home, or the former
    // holder of a home being refilled).
    std::vector<uint32_t> sources;
    for (uint32_t j = 0; j < pos.size() && sources.size() < g.k; ++j) {
      if (j != lost && pos[j].reader() != nullptr) sources.push_back(j);
    }
    if (sources.size() < g.k) {
      ++c.lost;
      return Status();
    }
    // Which stripes exist: the written runs of the position this target reads for.
    std::set<uint64_t> stripes;
    std::string anchor;
    while (true) {
      auto page = shard().store->list(ListScope::recx, key, dkey, mine, anchor, 1000, 0);
      if (!page) return page.status();
      for (const auto& e : page->entries) {
        if (e.length == 0) continue;
        for (uint64_t s = e.offset / g.cell; s <= (e.offset + e.length - 1) / g.cell; ++s) {
          stripes.insert(s);
        }
      }
      if (page->done || page->anchor.empty()) break;
      anchor = page->anchor;
    }
    if (planning) {
      c.planned += stripes.size() * g.cell;
      return Status();
    }
    // The cells' punches first: a stripe older than a punch stays hidden after it.
    auto punches = shard().store->export_akey(key, dkey, mine);
    if (!punches) return punches.status();
    punches->versions.clear();
    punches->data = Buffer();
    if (!punches->akey_punches.empty())
      TESSERA_TRY(send(pos[lost].home, key, dkey, theirs, *punches));
    const auto& code = placement::erasure_code(g.k, g.p);
    const size_t cell = g.cell;
    const uint64_t ss = placement::ec_sum_size(g.k);
    // One stripe's cells as the sources hold them.
    struct Read {
      std::vector<Buffer> cells;
      bool present[64] = {};
      uint64_t epoch = 0;
      bool torn = false;
      size_t written = 0;
      std::string seen;  // what each source held, for the warning of a torn stripe
    };
    auto read = [&](uint64_t s) -> Result<Read> {
      Read r;
      r.cells.resize(g.n());
      size_t holes = 0;
      for (uint32_t j : sources) {
        const placement::Shard& from = pos[j].reader() != nullptr ? *pos[j].reader() : pos[j].home;
        auto f = peer.fetch(from, key, dkey, placement::ec_cell_akey(akey, j), s * cell, cell);
        if (!f) return f.status();
        r.seen += fmt::format("{}position {} (rank {} target {}): {}", r.seen.empty() ? "" : ", ",
                              j, from.rank, from.target,
                              f->holes.empty() ? fmt::format("epoch {}", f->epoch)
                                               : fmt::format("{} holes", f->holes.size()));
        if (f->holes.size() == 1 && f->holes[0].second == cell) {
          ++holes;
          continue;
        }
        // One full-stripe update's cells (one epoch), or all holes; anything else is torn.
        if (!f->holes.empty() || f->data.size() != cell || (r.written > 0 && f->epoch != r.epoch)) {
          r.torn = true;
        }
        ++r.written;
        r.epoch = f->epoch;
        const uint32_t ci = g.cell_at(j);
        r.cells[ci] = std::move(f->data);
        r.present[ci] = true;
      }
      r.torn = r.written > 0 && (r.torn || holes > 0);
      return r;
    };
    for (uint64_t s : stripes) {
      auto got = read(s);
      // An update of the stripe in flight (applied at some positions, not yet at others) reads
      // torn for a moment; its pieces reach the home being filled anyway. Read again before
      // calling the stripe torn.
      for (int again = 0; got && got->torn && again < kTornRereads; ++again) {
        peer.rt.target().sleep_for(kTornPause);
        got = read(s);
      }
      if (!got) return got.status();
      auto& cells = got->cells;
      auto& present = got->present;
      const uint64_t epoch = got->epoch;
      const bool torn = got->torn;
      const size_t written = got->written;
      const std::string& seen = got->seen;
      if (written == 0) continue;  // never written as a full stripe
      if (torn && copies_cover(g, pos, key, dkey, akey, s)) {
        // A re-encoding that a failure interrupted before it released the copies: they still
        // hold every byte of the stripe (and go to the home with the copies), so nothing is
        // lost; the next re-encoding pass writes the stripe whole again.
        continue;
      }
      if (torn) {
        log::warn(
            "rebuild: pool {} stripe {} of akey '{}' (dkey {} bytes) for position {} is torn "
            "(its cells disagree: {}); not rebuilt",
            shard().id, s, akey, dkey.size(), lost, seen);
        ++c.lost;
        continue;
      }
      std::vector<uint8_t*> ptrs(g.n());
      for (uint32_t ci = 0; ci < g.n(); ++ci) {
        if (!present[ci]) cells[ci].reset(cell);
        ptrs[ci] = cells[ci].data();
      }
      TESSERA_TRY(code.reconstruct(cell, ptrs, std::span<const bool>(present, g.n())));
      // End to end: the stripe must hold what its writer summed, or it is not sent. The record
      // is read at the cells' epoch: a newer update of the stripe (a re-encoding round, which
      // is no transaction) may have reached this position since the cells were read.
      auto sums = shard().store->fetch(key, dkey, placement::ec_sum_akey(akey),
                                       storage::ValueKind::array, s * ss, ss, epoch);
      if (!sums) return sums.status();
      const bool recorded = sums->holes.empty() && sums->data.size() == ss && sums->epoch == epoch;
      const int bad =
          recorded ? placement::ec_check_sums(cell, std::span<uint8_t* const>(ptrs.data(), g.k),
                                              sums->data.data())
                   : -1;
      if (!recorded || bad >= 0) {
        if (copies_cover(g, pos, key, dkey, akey, s)) continue;  // as for a torn stripe
        log::warn("rebuild: pool {} stripe {} of akey '{}': {}; not rebuilt", shard().id, s, akey,
                  recorded ? fmt::format("data cell {} fails its writer's checksum", bad)
                           : std::string("no checksum record of the update that wrote it"));
        ++c.lost;
        continue;
      }
      storage::AkeyExport x;
      x.kind = storage::ValueKind::array;
      x.rsize = 1;
      x.data = std::move(cells[g.cell_at(lost)]);
      x.versions.push_back({epoch, s * cell, (s + 1) * cell, false, 0});
      TESSERA_TRY(send(pos[lost].home, key, dkey, theirs, x));
    }
    return Status();
  }

  // One dkey: fills every position whose home this target must fill.
  Status dkey_work(const placement::ObjectClass& cls, const placement::Placement& place,
                   ObjectId key, const std::string& dkey) {
    const auto pos = place.dkey(dkey);
    int me_complete = -1;
    for (uint32_t j = 0; j < pos.size(); ++j) {
      if (pos[j].complete && is_me(pos[j].home)) me_complete = static_cast<int>(j);
    }
    // Erasure coding: the positions this target reads for (its complete homes, and the homes
    // it is the serving former holder of); the first position with such a holder rebuilds
    // the cells of the positions being filled from scratch.
    std::vector<uint32_t> mine;
    for (uint32_t j = 0; j < pos.size(); ++j) {
      if (pos[j].reader() != nullptr && is_me(*pos[j].reader())) mine.push_back(j);
    }
    auto reads = [&mine](int j) {
      return j >= 0 && std::count(mine.begin(), mine.end(), static_cast<uint32_t>(j)) > 0;
    };
    const int first = placement::first_holder(pos);
    const bool ec = cls.redundancy == placement::Redundancy::erasure;
    std::vector<Fill> fills;
    std::vector<uint32_t> cell_targets;  // positions whose cells this target rebuilds
    std::optional<placement::EcGeometry> g;
    for (uint32_t i = 0; i < pos.size(); ++i) {
      const Position& p = pos[i];
      const placement::FillBy by = placement::fill_by(pos, i);
      // A home of this target's is filled by others, except an erasure-coded position whose
      // cells this target rebuilds itself (it reads for another position of the group, as
      // its former holder: no placement rule keeps it from being this one's new home).
      if (by == placement::FillBy::none ||
          (is_me(p.home) && !(ec && by != placement::FillBy::prev))) {
        continue;
      }
      if (by == placement::FillBy::prev) {
        // The former holder sends its own history of the position (erasure coding: its cells
        // of that position, none of another it may also hold).
        if (is_me(*p.prev)) {
          Fill f{p.home};
          if (ec) f.cells_of = static_cast<int>(i);
          fills.push_back(f);
        }
        continue;
      }
      if (!ec) {
        if (by == placement::FillBy::lost) {
          if (is_me(pos[0].home) || me_complete >= 0) ++c.lost;
          continue;
        }
        // Every replica holds the same data: the first position's holder sends it.
        const placement::Shard* src = pos[placement::first_holder(pos)].reader();
        if (is_me(*src)) fills.push_back({p.home});
        continue;
      }
      if (first < 0) {  // no position has a holder of complete data
        if (is_me(pos[0].home) || me_complete >= 0 || (p.prev && is_me(*p.prev))) ++c.lost;
        continue;
      }
      if (mine.empty()) continue;
      const uint64_t cell = peer.cell_size(shard_keys::cont_of(key));
      if (cell == 0) {
        log::warn("rebuild: pool {}: container {} unknown; its object is skipped", shard().id,
                  shard_keys::cont_of(key));
        ++c.lost;
        continue;
      }
      if (!g) g = placement::ec_geometry(cls.data, cls.parity, cell, dkey);
      // Partial-stripe copies: from the first parity position with a holder, or, without one,
      // from every data position's holder (each holds the copies of its own cells).
      const int copy_src = copy_parity(*g, pos);
      bool data_copies = false;
      for (uint32_t m : mine) data_copies |= g->cell_at(m) < g->k;
      const std::vector<uint32_t> holders = g->single_positions();
      int single_src = -1;
      for (uint32_t h : holders) {
        if (single_src < 0 && pos[h].reader() != nullptr) single_src = static_cast<int>(h);
      }
      Fill f{p.home};
      f.copies = copy_src >= 0 ? reads(copy_src) : data_copies;
      f.singles = std::count(holders.begin(), holders.end(), i) > 0 && reads(single_src);
      f.arrays = false;
      f.sums = reads(first);  // with the cells this target rebuilds
      if (f.copies || f.singles || f.sums) fills.push_back(f);
      if (reads(first)) cell_targets.push_back(i);
    }
    TESSERA_TRY(send_histories(key, dkey, fills));
    if (cell_targets.empty()) return Status();
    const auto me = static_cast<uint32_t>(first);
    for (const auto& [akey, kind] : shard().store->akey_names(key, dkey)) {
      auto cell = placement::parse_ec_cell_akey(akey);
      if (kind != storage::ValueKind::array || !cell || cell->second != me) continue;
      for (uint32_t i : cell_targets) {
        TESSERA_TRY(rebuild_cells(*g, pos, me, i, key, dkey, cell->first));
      }
    }
    return Status();
  }
};

// The dkeys whose histories are on their way at once, and the bytes they hold (their histories
// as the index sizes them): the scan starts a dkey's work in a fiber of its own while there is
// room, so that reading, sending and the homes' imports of several dkeys overlap. One dkey's
// sends stay in order (its punches before its versions, an akey's pieces one after another);
// dkeys are independent. A dkey larger than the byte budget runs alone.
struct Window {
  uint32_t dkeys = 0;
  uint64_t bytes = 0;
  Nanos began{0};   // when the pass started (Env time)
  Nanos opened{0};  // when the window last went from no dkey in flight to one
  Nanos busy{0};    // how long the window had dkeys in flight before `opened`
  Status first;     // the first failure of a dkey's work: no more are started
  boost::fibers::condition_variable_any cv;
  NoLock lk;

  // How long some dkey was in flight since the pass began.
  Nanos working(Nanos now) const { return busy + (dkeys > 0 ? now - opened : Nanos(0)); }
  // A dkey of `est` bytes starts, and ends.
  void enter(Nanos now, uint64_t est) {
    if (dkeys == 0) opened = now;
    ++dkeys;
    bytes += est;
  }
  void leave(Nanos now, uint64_t est) {
    if (dkeys == 1) busy += now - opened;
    --dkeys;
    bytes -= est;
    cv.notify_all();
  }
  template <typename F>
  void wait_for(F ready) {
    while (!ready()) cv.wait(lk);
  }
  void drain() {
    wait_for([this] { return dkeys == 0; });
  }
};

// One dkey's bytes to send, from the index (no data read).
uint64_t dkey_bytes(const storage::TargetStore& st, ObjectId key, const std::string& dkey) {
  uint64_t n = 0;
  for (const auto& [akey, kind] : st.akey_names(key, dkey)) n += st.history_bytes(key, dkey, akey);
  return n;
}

// One pass over the shard's objects: sends (or, planning, counts) what this target fills.
Status walk(Scan& s, const ScanOptions& opts, Window& w) {
  ActorRuntime& rt = s.peer.rt;
  PoolShard& shard = s.shard();
  const double share = std::clamp(opts.share, 0.01, 1.0);
  const uint32_t window = std::max<uint32_t>(1, opts.window);
  Env& env = rt.target().env();
  w.began = env.now();
  // The plan reads only the index: it runs unthrottled, letting the target's other fibers run
  // every so many dkeys.
  constexpr uint32_t kPlanSlice = 256;
  uint32_t slice = 0;
  for (const ObjectId& key : shard.store->object_keys()) {
    if (opts.cancelled && opts.cancelled()) {
      return Status(Errc::busy, "replaced by a newer rebuild");
    }
    const ObjectId uoid = shard_keys::user_oid(key);
    const auto* cls = placement::find_class(placement::oid_class(uoid));
    if (cls == nullptr) continue;
    auto place = placement::place(uoid, s.map());
    if (!place) continue;  // the class does not fit this map: nothing can be placed
    ++s.c.objects;
    auto pl = std::make_shared<const placement::Placement>(std::move(*place));
    for (const auto& dkey : shard.store->dkey_names(key)) {
      if (opts.cancelled && opts.cancelled()) {
        return Status(Errc::busy, "replaced by a newer rebuild");
      }
      if (s.planning) {
        TESSERA_TRY(s.dkey_work(*cls, *pl, key, dkey));
        if (++slice % kPlanSlice == 0) boost::this_fiber::yield();
        continue;
      }
      // The share: of the pass's time so far, the scan works (some dkey in flight) at most
      // `share`. Past it, the window drains and no dkey starts until enough time has passed
      // with none: the scan runs in bursts, and between them the target is the foreground's.
      if (share < 1.0 && w.working(env.now()) > share * (env.now() - w.began)) {
        w.drain();
        const Nanos now = env.now();
        const Nanos d = Nanos(static_cast<int64_t>(
                            static_cast<double>(w.working(now).count()) / share)) -
                        (now - w.began);
        if (d > Nanos(0)) rt.target().sleep_for(d);
      }
      const uint64_t est = dkey_bytes(*shard.store, key, dkey);
      w.wait_for([&] {
        return !w.first.is_ok() ||
               w.dkeys == 0 || (w.dkeys < window && w.bytes + est <= opts.window_bytes);
      });
      if (!w.first.is_ok()) return Status();  // pass() returns it
      w.enter(env.now(), est);
      rt.target().spawn([&s, &w, &env, cls, pl, key, dkey, est] {
        // Leaves the window however the work ends: the pass waits for the window to empty.
        struct Leave {
          Window& w;
          Env& env;
          uint64_t est;
          ~Leave() { w.leave(env.now(), est); }
        } leave{w, env, est};
        Status st = s.dkey_work(*cls, *pl, key, dkey);
        if (!st.is_ok() && w.first.is_ok()) w.first = std::move(st);
      });
    }
    if (!s.planning && opts.progress) opts.progress(s.c);
  }
  return Status();
}

// A pass, and every dkey it started finished (their fibers use the pass's state).
Status pass(Scan& s, const ScanOptions& opts) {
  Window w;
  Status st = walk(s, opts, w);
  w.drain();
  if (!st.is_ok()) return st;
  return w.first;
}

}  // namespace

Result<Counters> scan(ActorRuntime& rt, uint32_t rank, uint16_t target, PoolShard& shard,
                      const ScanOptions& opts) {
  if (!shard.view) return Status(Errc::unavailable, "no pool map");
  if (opts.settle) TESSERA_TRY(opts.settle());
  Scan plan{Peer{rt, rank, target, shard, opts.retry, opts.cancelled}, opts, {}, true};
  TESSERA_TRY(pass(plan, opts));
  Scan s{Peer{rt, rank, target, shard, opts.retry, opts.cancelled}, opts, {}};
  s.c.planned = plan.c.planned;
  if (opts.progress) opts.progress(s.c);
  TESSERA_TRY(pass(s, opts));
  return s.c;
}

Status apply_push(storage::TargetStore& store, const Buffer& body, Buffer bulk) {
  auto p = parse_push(body, std::move(bulk));
  if (!p) return p.status();
  if (p->replace_upto > 0) {
    if (p->akey.empty()) return Status(Errc::protocol, "a history replacement without an akey");
    return store.replace_history(p->key, p->dkey, p->akey, p->replace_upto, p->x);
  }
  return store.import_akey(p->key, p->dkey, p->akey, p->x);
}

}  // namespace tessera::rebuild

// The rebuild simulation's workload and its model (tests/sim/rebuild_sim_test.cpp): the
// container variants, the keys and the stripes written to them (each cell names its update),
// the writers (updates as libtessera sends them, each acknowledgement recorded) and the reader
// (libtessera's own read path on a client target of its own, each read recorded with what its
// cells show). Test thread and the writers' and reader's client targets, as each says.
#pragma once

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <ostream>

#include "client/container_impl.hpp"
#include "core/checksum.hpp"
#include "placement/layout.hpp"
#include "shard/keys.hpp"
#include "tests/sim/dtx_cluster.hpp"
#include "tests/sim/history.hpp"

namespace tessera::sim::rebuild_sim {

using tessera::contimpl::decoded;

constexpr uint32_t kEngines = 6;
constexpr uint32_t kWriters = 2;
constexpr uint32_t kObjects = 8;
constexpr uint32_t kDkeys = 4;  // per object
constexpr const char* kAkey = "v";

// The container's object class and redundancy factor (engines down at once stay within it),
// and what the writers update: a single value, or one full stripe of an array (erasure coding:
// cells and parity, rebuilt by reconstruction).
// With `aggregate`, the engines' stores aggregate in the background (every 150 ms of the
// simulated clock, versions older than 600 ms, which the clock's skips make most of them), and
// the test takes snapshots that aggregation must keep readable.
// With `partial`, half of the array updates write one data cell of the stripe (a partial-stripe
// write, kept as copies) and every engine re-encodes fully copied stripes in the background
// (rebuild::reencode_loop, every 200 ms of the simulated clock).
struct Variant {
  const char* oclass;
  uint32_t rf;
  bool arrays = false;
  bool aggregate = false;
  bool partial = false;
};
constexpr Variant kReplicated{"RP_3GX", 2};
constexpr Variant kErasureCoded{"EC_2P1GX", 1};
constexpr Variant kErasureCodedArrays{"EC_2P1GX", 1, true, true};
constexpr Variant kErasureCodedPartial{"EC_2P1GX", 1, true, true, true};
constexpr Variant kReplicatedAggregated{"RP_3GX", 2, false, true};
// The container's cell size: small, so that the simulated disks hold every stripe written.
constexpr uint32_t kCell = 1024;

// The stripe an array update with `tag` writes (k cells): 8-byte words, word i = tag ^ i * K, so
// that any cell names the update it came from and where in the stripe it belongs.
constexpr uint64_t kWordMix = 0x9e3779b97f4a7c15ull;
inline Buffer stripe_of(uint64_t tag, const placement::EcGeometry& g) {
  Buffer b(g.stripe());
  for (uint64_t i = 0; i < g.stripe() / 8; ++i) {
    const uint64_t w = tag ^ (i * kWordMix);
    std::memcpy(b.data() + i * 8, &w, 8);
  }
  return b;
}
// The k + p cells of that stripe, by cell index (data, then parity).
inline std::vector<Buffer> cells_of(uint64_t tag, const placement::EcGeometry& g) {
  const Buffer s = stripe_of(tag, g);
  std::vector<Buffer> out;
  for (uint32_t j = 0; j < g.n(); ++j) out.emplace_back(g.cell);
  for (uint32_t j = 0; j < g.k; ++j) std::memcpy(out[j].data(), s.data() + j * g.cell, g.cell);
  std::vector<const uint8_t*> d;
  std::vector<uint8_t*> par;
  for (uint32_t j = 0; j < g.k; ++j) d.push_back(out[j].data());
  for (uint32_t q = 0; q < g.p; ++q) par.push_back(out[g.k + q].data());
  placement::erasure_code(g.k, g.p).encode(g.cell, d, par);
  return out;
}
inline placement::EcGeometry geometry_of(ObjectId oid, const std::string& dkey) {
  const placement::ObjectClass* cls = placement::find_class(placement::oid_class(oid));
  return placement::ec_geometry(cls->data, cls->parity, kCell, dkey);
}

struct Key {
  ObjectId oid;
  std::string dkey;
};

struct Value {
  uint64_t tag = 0;
  uint64_t epoch = 0;
  bool operator==(const Value&) const = default;
};
inline std::ostream& operator<<(std::ostream& os, const Value& v) {
  return os << fmt::format("{{tag {:#x}, epoch {}}}", v.tag, v.epoch);
}

// A writer: its own target, speaking the object protocol as libtessera does, on the pool map
// it last learned.
class Writer {
 public:
  Writer(Env& env, SimNet& net, SimPool& pool, const std::vector<Key>& keys, uint32_t id,
         uint64_t seed, const Variant& variant, std::atomic<uint64_t>& acks)
      : pool_(pool),
        keys_(keys),
        id_(id),
        arrays_(variant.arrays),
        partial_(variant.partial),
        acks_(acks),
        rng_(seed),
        node_(env, net, fmt::format("sim-w{}", id), fmt::format("sim-writer-{}", id), id) {}
  ~Writer() { stop = true; }  // the node then stops the target: the loop ends
  void wake() { node_.target->wake(true); }

  // Writes until stopped (on the writer's target); the future is ready when it stopped.
  std::future<void> start() {
    auto p = std::make_shared<std::promise<void>>();
    auto f = p->get_future();
    node_.target->post([this, p] {
      while (!stop) put_one();
      p->set_value();
    });
    return f;
  }

  std::atomic<bool> stop{false};
  // Cold keys are no longer written: their newest values stay the ones written before, and a
  // position that loses them gets them back from rebuild alone, not from a later update.
  std::atomic<bool> cold_stop{false};
  static bool cold(uint32_t key) { return key % (2 * kWriters) >= kWriters; }
  std::vector<PutRecord> puts;  // the writer's thread until it stopped

 private:
  // The newest pool map the management service published (client thread).
  const mgmt::PoolView& view() {
    auto v = pool_.view();
    if (!view_ || v->pool.map.version != view_->pool.map.version) {
      view_ = std::move(v);
      mgmt::learn_view(*node_.rt, *view_);
    }
    return *view_;
  }
  // The key's group leader in the map: its first position with a reader.
  uint32_t leader(const Key& k) {
    auto place = placement::place(k.oid, view().pool.map);
    if (!place) return 0;
    const auto& pos = place->dkey(k.dkey);
    for (const auto& p : pos) {
      if (const placement::Shard* s = p.reader()) return s->rank;
    }
    return pos.front().home.rank;
  }
  // One update of a key this writer owns (keys k with k % kWriters == id). Sent again only
  // when refused before anything was done (a map older than the engine's, busy): anything else
  // could have been applied, so it stays unacknowledged.
  void put_one() {
    PutRecord p;
    do {
      p.key = static_cast<uint32_t>(rng_() % keys_.size());
    } while (p.key % kWriters != id_ || (cold_stop && cold(p.key)));
    p.tag = (uint64_t{id_} + 1) << 40 | ++seq_;
    const Key& k = keys_[p.key];
    std::string v(8, '\0');
    std::memcpy(v.data(), &p.tag, 8);
    std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(v.data()), v.size());
    for (int attempt = 0; attempt < 50; ++attempt) {
      const mgmt::PoolView& pv = view();
      IoCtxValues ctx{pv.pool.id, pv.pool.map.version, pool_.cookie, pool_.cont, 0};
      Message m;
      m.dst = ActorAddr{leader(k), 0, proto::kObjectServiceActor};
      m.protocol = proto::kProtoObject;
      m.method = proto::kObjUpdate;
      m.body = update_body(k.oid, k.dkey, kAkey, ValueKind::single, 0, crc32c(bytes), UpdateFlags{},
                           ctx);
      if (arrays_) {
        // The whole stripe, as libtessera encodes it: cells, parity and the stripe's checksum
        // record for each position, sent to the group's leader. A partial write: one data
        // cell's bytes of the stripe, which libtessera sends as copies.
        contimpl::EcPieces ps;
        {
          Container::State st;
          st.cell = kCell;
          const placement::EcGeometry g = geometry_of(k.oid, k.dkey);
          if (attempt == 0 && partial_ && rng_() % 2 == 0) {
            p.cells = 1u << static_cast<uint32_t>(rng_() % g.k);
          }
          uint64_t offset = 0;
          Buffer data = stripe_of(p.tag, g);
          if (p.cells != 0) {
            offset = static_cast<uint64_t>(std::countr_zero(p.cells)) * kCell;
            data = Buffer(data.data() + offset, kCell);
          }
          auto r = contimpl::ec_update_pieces(
              st, *placement::find_class(placement::oid_class(k.oid)), k.dkey, kAkey,
              ValueKind::array, offset, data, UpdateFlags{});
          if (!r) {
            ADD_FAILURE() << r.status().to_string();
            break;
          }
          ps = std::move(*r);
        }
        m.method = proto::kObjEcUpdate;
        m.body = contimpl::ec_body(k.oid, k.dkey, ps.pieces, ctx);
        m.bulk = std::move(ps.bulk);
      } else if (erasure_coded(k.oid)) {
        // The whole value for each position that keeps it, through the group's leader.
        std::vector<contimpl::EcPiece> pieces;
        for (uint32_t pos : holders(k.oid, k.dkey)) {
          pieces.push_back({pos, kAkey, ValueKind::single, false, 0, 8, 0, crc32c(bytes)});
        }
        m.method = proto::kObjEcUpdate;
        m.body = contimpl::ec_body(k.oid, k.dkey, pieces, ctx);
      }
      if (!arrays_) m.bulk = Buffer(v.data(), v.size());
      auto r = node_.rt->ask(std::move(m), std::chrono::seconds(10));
      Status st = !r ? r.status() : r->status != Errc::ok ? Status(r->status, r->error) : Status();
      if (st.is_ok()) {
        auto e = decoded(*r, decode_epoch);
        if (e) {
          p.acked = true;
          p.epoch = *e;
          p.acked_at = acks_.fetch_add(1) + 1;
        }
        break;
      }
      if (st.code() != Errc::stale && st.code() != Errc::busy) break;
      node_.target->sleep_for(std::chrono::milliseconds(5));
    }
    if (!p.acked) node_.target->sleep_for(std::chrono::milliseconds(5));  // not in a tight loop
    puts.push_back(p);
  }

  SimPool& pool_;
  const std::vector<Key>& keys_;
  uint32_t id_;
  bool arrays_;
  bool partial_;
  std::atomic<uint64_t>& acks_;  // acknowledgements heard, by every writer
  uint64_t seq_ = 0;
  std::mt19937_64 rng_;
  std::shared_ptr<const mgmt::PoolView> view_;
  SimClientNode node_;  // last: its target stops before the members its fibers use go
};

// What a read of a stripe showed: the update each data cell came from (0: never written), or
// why the cells did not add up to updates (torn), or the read's error.
struct ReadRecord {
  uint32_t key = 0;
  uint64_t before = 0;  // acknowledgements heard when it began (PutRecord::acked_at)
  std::vector<uint64_t> tags;
  std::string torn;
  std::optional<Status> error;
};

// The updates the data cells of a fetched stripe come from: each cell must be one update's
// bytes (stripe_of) or a hole.
inline void name_cells(const FetchResult& f, const placement::EcGeometry& g, ReadRecord& r) {
  for (uint32_t c = 0; c < g.k; ++c) {
    const uint64_t a = uint64_t{c} * kCell, b = a + kCell;
    uint64_t hole = 0;
    for (const auto& [off, len] : f.holes) {
      hole +=
          std::min(b, off + len) > std::max(a, off) ? std::min(b, off + len) - std::max(a, off) : 0;
    }
    if (!f.exists || hole == kCell) {
      r.tags.push_back(0);
      continue;
    }
    if (hole != 0 || f.data.size() < b) {
      r.torn = fmt::format("cell {} is partly a hole ({} bytes of {})", c, hole, kCell);
      return;
    }
    uint64_t tag = 0;
    std::memcpy(&tag, f.data.data() + a, 8);
    tag ^= (a / 8) * kWordMix;
    for (uint64_t i = a / 8; i < b / 8; ++i) {
      uint64_t w = 0;
      std::memcpy(&w, f.data.data() + i * 8, 8);
      if (w != (tag ^ (i * kWordMix))) {
        r.torn = fmt::format("cell {} mixes updates: word {} is not tag {:#x}'s", c, i, tag);
        return;
      }
    }
    r.tags.push_back(tag);
  }
}

// A reader: libtessera's own read path (contimpl::fetch_once: any healthy replica of a
// replicated object; for an erasure-coded one ec_fetch, with its pinned epoch, reads around
// positions that fail or are down, reconstruction from parity, copies of partial writes) with
// its retries on a new map, on a client target of its own, with the pool map the state machine
// published. While the faults run it reads random keys and records what it saw; the check
// reads every key through it again, once with the whole map and once with each engine shown
// dead.
class Reader {
 public:
  Reader(Env& env, SimNet& net, SimPool& pool, const std::vector<Key>& keys,
         std::atomic<uint64_t>& acks, uint64_t seed, bool arrays)
      : net_(net), pool_(pool), keys_(keys), acks_(acks), arrays_(arrays), rng_(seed) {
    TargetOptions to;
    to.name = "sim-reader";
    to.spin_window = Nanos(0);
    im_.target = std::make_unique<Target>(env, to);
    im_.rt = std::make_unique<ActorRuntime>(*im_.target, kClientRankBase | 100);
    tp_ = std::make_unique<SimTransport>(net, kAddr, false);
    im_.rt->set_transport(tp_.get());
    EXPECT_TRUE(im_.target->start().is_ok());
    net.add(kAddr, im_.rt.get());
    st_ = std::make_shared<Container::State>();
    st_->im = &im_;
    st_->view = pool.view();
    st_->version = st_->view->pool.map.version;
    st_->pool = st_->view->pool.id;
    st_->cont = pool.cont;
    st_->cookie = pool.cookie;
    st_->cell = kCell;
    st_->timeout = std::chrono::seconds(5);
    st_->map_source = [this]() -> Result<mgmt::PoolView> {
      mgmt::PoolView v = *pool_.view();
      const int64_t h = hidden_.load();
      if (h >= 0) v.addrs[static_cast<uint32_t>(h)].state = "dead";
      return v;
    };
    on_client([this] {
      (void)contimpl::refresh(st_);
      return 0;
    });
  }
  ~Reader() {
    stop = true;
    net_.remove(kAddr, im_.rt.get());
    im_.target->stop();
  }
  void wake() { im_.target->wake(true); }

  // Reads random stripes until stopped (on the reader's target); ready when it stopped.
  std::future<void> start() {
    auto p = std::make_shared<std::promise<void>>();
    auto f = p->get_future();
    im_.target->post([this, p] {
      while (!stop) {
        reads.push_back(read(static_cast<uint32_t>(rng_() % keys_.size())));
        im_.target->sleep_for(std::chrono::milliseconds(rng_() % 10));
      }
      p->set_value();
    });
    return f;
  }
  // Reads key k now, through the map with engine `hide` shown dead (-1: none) (test thread).
  ReadRecord read_now(uint32_t k, int64_t hide) {
    hidden_ = hide;
    return on_client([this, k] {
      (void)contimpl::refresh(st_);
      return read(k);
    });
  }

  std::atomic<bool> stop{false};
  std::vector<ReadRecord> reads;  // the reader's thread until it stopped

 private:
  static constexpr const char* kAddr = "sim-reader";
  template <typename F>
  auto on_client(F fn) -> decltype(fn()) {
    auto p = std::make_shared<std::promise<decltype(fn())>>();
    auto f = p->get_future();
    im_.target->post([p, fn = std::move(fn)]() mutable { p->set_value(fn()); });
    return f.get();
  }
  // One read of key k, as libtessera's Container::fetch reads it (contimpl::fetch_once): its
  // stripe, or its single value (reader's target).
  ReadRecord read(uint32_t k) {
    ReadRecord r;
    r.key = k;
    r.before = acks_.load();
    const Key& key = keys_[k];
    const placement::ObjectClass* ec = contimpl::ec_class(key.oid);
    if (arrays_) {
      const placement::EcGeometry g = geometry_of(key.oid, key.dkey);
      auto f = contimpl::fetch_once(st_, ec, key.oid, key.dkey, kAkey, ValueKind::array, 0,
                                    g.stripe(), 0, FetchFlags{});
      if (!f) {
        r.error = f.status();
        return r;
      }
      name_cells(*f, g, r);
      return r;
    }
    auto f = contimpl::fetch_once(st_, ec, key.oid, key.dkey, kAkey, ValueKind::single, 0, 0, 0,
                                  FetchFlags{});
    if (!f) {
      r.error = f.status();
    } else if (!f->exists) {
      r.tags.push_back(0);
    } else if (f->data.size() != 8) {
      r.torn = fmt::format("a value of {} bytes", f->data.size());
    } else {
      uint64_t tag = 0;
      std::memcpy(&tag, f->data.data(), 8);
      r.tags.push_back(tag);
    }
    return r;
  }

  SimNet& net_;
  SimPool& pool_;
  const std::vector<Key>& keys_;
  std::atomic<uint64_t>& acks_;
  bool arrays_;  // stripes of arrays, else single values
  std::mt19937_64 rng_;
  std::atomic<int64_t> hidden_{-1};
  std::unique_ptr<SimTransport> tp_;  // outlives the runtime
  Client::Impl im_;                   // the reader's target and runtime
  std::shared_ptr<Container::State> st_;
};

}  // namespace tessera::sim::rebuild_sim

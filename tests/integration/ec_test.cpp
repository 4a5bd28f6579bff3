// Erasure-coded containers over real engines: full-stripe and partial-stripe writes, overwrites
// of each by the other, single values; reads byte-exact with every position up, with p engines
// killed (degraded reads rebuild the lost cells), after the dead engines restart, and after
// kill -9 of every engine. More than p lost positions is a clear error, never wrong bytes.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "actors/object_service_util.hpp"
#include "client/container.hpp"
#include "core/checksum.hpp"
#include "placement/erasure.hpp"
#include "placement/layout.hpp"
#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"
#include "proto/protocol.hpp"
#include "security/system_key.hpp"
#include "tests/integration/local_cluster.hpp"
#include "tests/integration/raw_peer.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using namespace tessera::testing;

namespace {

constexpr uint64_t kCell = 4096;
constexpr uint64_t kStripe = 4 * kCell;  // EC_4P2

// What the store must answer: bytes written so far per (object, akey), zeros elsewhere.
struct Model {
  std::map<std::pair<uint64_t, std::string>, std::string> arrays;
  std::map<std::pair<uint64_t, std::string>, std::string> singles;
};

std::string random_bytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Writes of every shape: aligned full stripes, unaligned spans with partial head and tail,
// writes inside one cell, writes across one stripe boundary, partial over full and full over
// partial, and single values.
void write_round(Container& c, Model& m, std::mt19937_64& rng, uint64_t objects, int round) {
  for (uint64_t i = 0; i < objects; ++i) {
    auto oid = c.make_oid(3, i);
    ASSERT_TRUE(oid) << oid.status().to_string();
    const std::string akey = "data";
    uint64_t off = 0, len = 0;
    switch ((i + static_cast<uint64_t>(round)) % 6) {
      case 0:
        off = kStripe * (rng() % 4);
        len = kStripe * (1 + rng() % 4);
        break;
      case 1:
        off = rng() % (3 * kStripe);
        len = kStripe + rng() % (4 * kStripe);
        break;
      case 2:
        off = rng() % (4 * kStripe);
        len = 1 + rng() % 200;
        break;
      case 3:
        off = kStripe - 100;
        len = 300;
        break;
      case 4:
        off = rng() % kStripe;
        len = 3 * kStripe + rng() % kCell;
        break;
      default:
        off = 0;
        len = 8 * kStripe;
        break;
    }
    std::string data = random_bytes(rng, len);
    auto r = c.update(*oid, "d", akey, ValueKind::array, off, bytes(data));
    ASSERT_TRUE(r) << "object " << i << ": " << r.status().to_string();
    auto& cur = m.arrays[{i, akey}];
    if (cur.size() < off + len) cur.resize(off + len, '\0');
    cur.replace(off, len, data);
    if (i % 4 == 0) {
      std::string v = random_bytes(rng, 1 + rng() % 9000);
      auto s = c.update(*oid, "meta", "v", ValueKind::single, 0, bytes(v));
      ASSERT_TRUE(s) << s.status().to_string();
      m.singles[{i, "v"}] = v;
    }
  }
}

void verify(Container& c, const Model& m, const char* when) {
  for (const auto& [key, want] : m.arrays) {
    auto oid = c.make_oid(3, key.first);
    ASSERT_TRUE(oid);
    auto r = c.fetch(*oid, "d", key.second, ValueKind::array, 0, 0);
    ASSERT_TRUE(r) << when << ": object " << key.first << ": " << r.status().to_string();
    ASSERT_EQ(r->size, want.size()) << when << ": object " << key.first;
    ASSERT_TRUE(r->data.view() == want)
        << when << ": object " << key.first << " differs from byte "
        << (std::mismatch(want.begin(), want.end(), r->data.view().begin()).first - want.begin())
        << " of " << want.size();
    // A range that starts and ends inside cells of different stripes.
    if (want.size() > kStripe + 1000) {
      auto p = c.fetch(*oid, "d", key.second, ValueKind::array, 1000, kStripe);
      ASSERT_TRUE(p) << p.status().to_string();
      ASSERT_TRUE(p->data.view() == std::string_view(want).substr(1000, kStripe)) << when;
    }
  }
  for (const auto& [key, want] : m.singles) {
    auto oid = c.make_oid(3, key.first);
    auto r = c.fetch(*oid, "meta", key.second, ValueKind::single, 0, 0, 0, {.must_exist = true});
    ASSERT_TRUE(r) << when << ": single of object " << key.first << ": " << r.status().to_string();
    ASSERT_TRUE(r->data.view() == want) << when << ": single of object " << key.first;
  }
}

// Six engines, a pool "tank" and an EC_4P2G1 array container "ec" with 4 KiB cells, open.
struct EcSystem {
  TempDir dir;
  std::unique_ptr<LocalSystem> sys;
  std::unique_ptr<MgmtClient> mc;
  ClientOptions co;
  std::unique_ptr<Client> client;
  std::unique_ptr<Container> c;
};

void start_ec_system(EcSystem& h, const std::vector<std::string>& extra = {},
                     const char* self_heal = nullptr, uint32_t engines = 6) {
  h.sys = std::make_unique<LocalSystem>(h.dir.path(), engines, 1, extra);
  ASSERT_TRUE(h.sys->wait_joined(engines));
  h.mc = std::make_unique<MgmtClient>(h.sys->mgmt());
  ASSERT_TRUE(h.mc->pool_create("tank", 6 * (96ull << 20)));
  if (self_heal != nullptr) {
    ASSERT_TRUE(h.mc->pool_set_prop("tank", "self_heal", self_heal).is_ok());
  }
  ASSERT_TRUE(
      h.mc->cont_create("tank", cont_props("ec", "EC_4P2G1", 2, mgmt::ContType::array, kCell)));
  h.co.engine = h.sys->mgmt();
  h.co.timeout = std::chrono::milliseconds(20000);
  auto client = Client::connect_system(h.co);
  ASSERT_TRUE(client) << client.status().to_string();
  h.client = std::move(*client);
  auto c = h.client->open_container("tank", "ec", true);
  ASSERT_TRUE(c) << c.status().to_string();
  h.c = std::move(*c);
}

// kill -9 of the engines still running (`alive`), restart of all six: a new client reads back
// everything acknowledged.
void kill_all_restart_verify(EcSystem& h, const Model& m, const std::vector<uint32_t>& alive,
                             const char* when) {
  for (uint32_t r : alive) h.sys->engine(r).kill9();
  for (uint32_t r = 0; r < 6; ++r) {
    Status st = h.sys->engine(r).start();
    ASSERT_TRUE(st.is_ok()) << "rank " << r << ": " << st.to_string();
  }
  ASSERT_TRUE(h.sys->wait_joined(6));
  auto fresh = Client::connect_system(h.co);
  ASSERT_TRUE(fresh);
  auto c = (*fresh)->open_container("tank", "ec", false);
  ASSERT_TRUE(c) << c.status().to_string();
  verify(**c, m, when);
}

}  // namespace

TEST(EcTest, DegradedReadsRebuildLostCellsAndNothingAcknowledgedIsLost) {
  EcSystem h;
  ASSERT_NO_FATAL_FAILURE(start_ec_system(h));
  LocalSystem& sys = *h.sys;
  MgmtClient& mc = *h.mc;
  auto& client = h.client;
  auto& c = h.c;

  Model m;
  std::mt19937_64 rng(7);
  const uint64_t objects = 36;
  for (int round = 0; round < 3; ++round) write_round(*c, m, rng, objects, round);
  verify(*c, m, "all positions up");

  // Extents: full stripes and copies read back as written runs.
  auto ext = c->list_all(ListScope::recx, *c->make_oid(3, 5), "d", "data");
  ASSERT_TRUE(ext) << ext.status().to_string();
  EXPECT_FALSE(ext->empty());
  auto akeys = c->list_all(ListScope::akeys, *c->make_oid(3, 0), "d");
  ASSERT_TRUE(akeys) << akeys.status().to_string();
  ASSERT_EQ(akeys->size(), 1u);  // the partial-stripe copies never show
  EXPECT_EQ((*akeys)[0].key, "data");

  // p = 2 engines die: every group of EC_4P2G1 (6 positions on 6 engines) loses 2 cells.
  sys.engine(2).kill9();
  sys.engine(4).kill9();
  ASSERT_TRUE(wait_gone(mc, {2, 4}));
  verify(*c, m, "ranks 2 and 4 killed (same container)");
  {
    auto c2 = client->open_container("tank", "ec", true);
    ASSERT_TRUE(c2) << c2.status().to_string();
    verify(**c2, m, "ranks 2 and 4 killed (new handle)");
    // Degraded writes: the parity still covers the missing cells.
    write_round(**c2, m, rng, objects, 3);
    verify(**c2, m, "after degraded writes");
  }

  // kill -9 of every engine, restart: everything acknowledged reads back.
  // (Ranks 2 and 4 come back with their targets down until reintegration: reads stay
  // degraded.)
  ASSERT_NO_FATAL_FAILURE(
      kill_all_restart_verify(h, m, {0u, 1u, 3u, 5u}, "after kill -9 of every engine"));
}

namespace {
// Stripes re-encoded so far over the pool's targets (their stats).
uint64_t reencoded_stripes(Client& client, MgmtClient& mc) {
  auto v = mc.pool_query("tank");
  if (!v) return 0;
  uint64_t n = 0;
  for (const auto& t : client.pool_space(*v)) {
    if (t.stats) n += t.stats->reencode_stripes;
  }
  return n;
}
}  // namespace

// Partial-stripe writes are kept as copies; once they fill whole stripes, the engines turn
// those stripes into cells and parity in the background (rebuild/reencode.hpp) while writes go
// on. Afterwards every byte reads back with every position up, with p engines killed (the lost
// cells are rebuilt from the re-encoded cells and parity: the copies are gone), and after kill -9
// of every engine.
TEST(EcTest, PartialStripeCopiesAreReencodedInTheBackground) {
  EcSystem h;
  ASSERT_NO_FATAL_FAILURE(start_ec_system(h, {"--ec-reencode-interval-ms", "200"}, "exclude"));
  LocalSystem& sys = *h.sys;
  MgmtClient& mc = *h.mc;
  auto& c = h.c;

  // 12 objects written front to back in 1000-byte pieces: 3 whole stripes each, then a tail
  // that fills no stripe (it stays in copies).
  Model m;
  std::mt19937_64 rng(11);
  const uint64_t objects = 12, length = 3 * kStripe + 500;
  for (uint64_t i = 0; i < objects; ++i) {
    auto oid = c->make_oid(3, i);
    ASSERT_TRUE(oid);
    std::string all = random_bytes(rng, length);
    for (uint64_t off = 0; off < length; off += 1000) {
      const uint64_t n = std::min<uint64_t>(1000, length - off);
      auto r = c->update(*oid, "d", "data", ValueKind::array, off, bytes(all.substr(off, n)));
      ASSERT_TRUE(r) << r.status().to_string();
    }
    m.arrays[{i, "data"}] = all;
  }
  // Small overwrites go on while the engines re-encode (some land on stripes being re-encoded).
  for (int k = 0; k < 300; ++k) {
    const uint64_t i = rng() % objects, off = rng() % length, n = 1 + rng() % 700;
    std::string data = random_bytes(rng, std::min(n, length - off));
    auto r = c->update(*c->make_oid(3, i), "d", "data", ValueKind::array, off, bytes(data));
    ASSERT_TRUE(r) << r.status().to_string();
    m.arrays[{i, "data"}].replace(off, data.size(), data);
    if (k % 50 == 0) verify(*c, m, "while re-encoding");
  }
  // Wait for the condition (bounded generously: a loaded machine runs the passes late), never
  // for a fixed number of polls.
  uint64_t stripes = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  while ((stripes = reencoded_stripes(*h.client, mc)) < objects * 3 &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_GE(stripes, objects * 3) << "the copies of whole stripes were not re-encoded";
  std::printf("%llu stripes re-encoded\n", static_cast<unsigned long long>(stripes));
  verify(*c, m, "re-encoded, all positions up");

  // The copies of the re-encoded stripes are gone: with p engines dead, their lost cells are
  // rebuilt from the re-encoded cells and parity.
  sys.engine(1).kill9();
  sys.engine(3).kill9();
  ASSERT_TRUE(wait_gone(mc, {1, 3}));
  verify(*c, m, "re-encoded, ranks 1 and 3 killed");

  ASSERT_NO_FATAL_FAILURE(
      kill_all_restart_verify(h, m, {0u, 2u, 4u, 5u}, "re-encoded, after kill -9 of every engine"));
}

// End-to-end checksums of erasure-coded stripes. A stripe whose parity disagrees with its data
// although every cell carries the same epoch and passes its own stored checksum (what an
// encoder fault, or memory that flipped before the engine summed the bytes, leaves) is never
// folded into a degraded read: the data cell rebuilt from it fails the checksum record the
// writer stored on every position, and the read fails with a checksum error instead of
// answering wrong bytes; a rebuild does not write the cell either (it counts it lost), and the
// read after it still fails rather than answering the missing cell as zeros. The stripe is
// written here as an engine re-encoding it would, with its parity computed wrong;
// a stripe written right beside it is read and rebuilt exactly.
TEST(EcTest, AStripeWhoseParityDisagreesFailsItsWritersChecksumsAndIsNeverAnswered) {
  EcSystem h;
  // Seven engines: the group's six positions, and one to rebuild a lost position on.
  ASSERT_NO_FATAL_FAILURE(start_ec_system(h, {}, "exclude", 7));
  std::mt19937_64 rng(23);
  auto oid = h.c->make_oid(3, 0);
  ASSERT_TRUE(oid);
  // A client write first: its epoch is one the engines accept.
  auto epoch = h.c->update(*oid, "other", "data", ValueKind::array, 0, bytes("x"));
  ASSERT_TRUE(epoch) << epoch.status().to_string();

  auto v = h.mc->pool_query("tank");
  ASSERT_TRUE(v) << v.status().to_string();
  auto place = placement::place(*oid, v->pool.map);
  ASSERT_TRUE(place);
  const auto pos = place->dkey("d");
  const auto g = placement::ec_geometry(4, 2, kCell, "d");
  const ObjectId key = objsvc::store_key(*oid, h.c->handle().cont.c.id);

  // Stripes 0 and 1: cells, parity and checksum record; parity 0 of stripe 0 is wrong.
  const std::string data = random_bytes(rng, 2 * kStripe);
  std::vector<std::string> cells(g.n()), sums;
  for (uint64_t s = 0; s < 2; ++s) {
    std::vector<std::string> c(g.n(), std::string(kCell, '\0'));
    std::vector<const uint8_t*> d;
    std::vector<uint8_t*> p;
    for (uint32_t j = 0; j < g.k; ++j) {
      c[j] = data.substr(s * kStripe + j * kCell, kCell);
      d.push_back(reinterpret_cast<const uint8_t*>(c[j].data()));
    }
    for (uint32_t q = 0; q < g.p; ++q) p.push_back(reinterpret_cast<uint8_t*>(c[g.k + q].data()));
    placement::erasure_code(g.k, g.p).encode(kCell, d, p);
    std::string sum(placement::ec_sum_size(g.k), '\0');
    placement::ec_stripe_sums(kCell, d, reinterpret_cast<uint8_t*>(sum.data()));
    if (s == 0) {  // both parity cells: any k cells that rebuild a data cell hold a wrong one
      c[g.k][100] ^= 0x5a;
      c[g.k + 1][200] ^= 0xa5;
    }
    for (uint32_t ci = 0; ci < g.n(); ++ci) cells[ci] += c[ci];
    sums.push_back(sum);
  }
  // The internal updates of a leader: only a sender holding the engines' key may make them.
  auto engines_key = security::SystemKey::load(test_system_key());
  ASSERT_TRUE(engines_key.is_ok()) << engines_key.status().to_string();
  RawPeer peer(v->provider, *engines_key);
  ASSERT_TRUE(peer.status.is_ok()) << peer.status.to_string();
  mgmt::learn_view(peer.rt, *v);
  std::vector<RawPiece> pieces;
  for (uint32_t ci = 0; ci < g.n(); ++ci) {
    const uint32_t at = ci < g.k ? g.data_pos(ci) : g.parity_pos(ci - g.k);
    pieces.push_back({at, placement::ec_cell_akey("data", at), 0, cells[ci]});
    pieces.push_back({at, placement::ec_sum_akey("data"), 0, sums[0] + sums[1]});
  }
  Status st = raw_ec_update(peer, *v, pos[0].home, key, "d", pieces, *epoch + 1);
  ASSERT_TRUE(st.is_ok()) << st.to_string();

  // Every position up: the data cells are read as they are.
  auto whole = h.c->fetch(*oid, "d", "data", ValueKind::array, 0, 0);
  ASSERT_TRUE(whole) << whole.status().to_string();
  ASSERT_TRUE(whole->data.view() == data);

  // A data position dies (not rank 0: it hosts the management service): its cells are
  // rebuilt from the other data cells and parity 0.
  uint32_t lost = g.data_pos(0);
  for (uint32_t j = 0; j < g.k && pos[lost].home.rank == 0; ++j) lost = g.data_pos(j);
  ASSERT_NE(pos[lost].home.rank, 0u);
  h.sys->engine(pos[lost].home.rank).kill9();
  ASSERT_TRUE(wait_gone(*h.mc, {pos[lost].home.rank}));
  auto f = h.c->fetch(*oid, "d", "data", ValueKind::array, 0, kStripe);
  ASSERT_FALSE(f) << "a degraded read answered bytes rebuilt from a wrong parity cell ("
                  << (f->data.view() == std::string_view(data).substr(0, kStripe) ? "equal"
                                                                                  : "different")
                  << ")";
  EXPECT_EQ(f.status().code(), Errc::checksum) << f.status().to_string();
  EXPECT_NE(f.status().message().find("fails the checksum its writer recorded"), std::string::npos)
      << f.status().to_string();
  // Stripe 1's parity is right: its rebuilt cell passes and reads back exactly.
  auto f1 = h.c->fetch(*oid, "d", "data", ValueKind::array, kStripe, kStripe);
  ASSERT_TRUE(f1) << f1.status().to_string();
  EXPECT_TRUE(f1->data.view() == std::string_view(data).substr(kStripe));

  // A rebuild refills the lost position on the seventh engine: stripe 1's cell is rebuilt;
  // stripe 0's fails its checksums and is counted lost, not written.
  ASSERT_TRUE(h.mc->pool_set_prop("tank", "self_heal", "exclude;rebuild").is_ok());
  auto started = h.mc->pool_op("tank", "rebuild", {});
  ASSERT_TRUE(started) << started.status().to_string();
  const uint32_t gen = started->pool.rebuild.gen;
  const mgmt::PoolView after = wait_pool(*h.mc, "tank", [gen](const mgmt::PoolView& v) {
    return v.pool.rebuild.gen >= gen && v.pool.rebuild.state == "done";
  });
  ASSERT_EQ(after.pool.rebuild.state, "done");
  EXPECT_GE(after.pool.rebuild.lost, 1u)
      << "generation " << after.pool.rebuild.gen << ": " << after.pool.rebuild.records << " sent";
  auto c = h.client->open_container("tank", "ec", false);  // the map after the rebuild
  ASSERT_TRUE(c) << c.status().to_string();
  auto r0 = (*c)->fetch(*oid, "d", "data", ValueKind::array, 0, kStripe);
  ASSERT_FALSE(r0) << "after the rebuild, stripe 0 read back "
                   << (r0->data.view() == std::string_view(data).substr(0, kStripe)
                           ? "equal"
                           : "different bytes");
  EXPECT_EQ(r0.status().code(), Errc::checksum) << r0.status().to_string();
  auto r1 = (*c)->fetch(*oid, "d", "data", ValueKind::array, kStripe, kStripe);
  ASSERT_TRUE(r1) << r1.status().to_string();
  EXPECT_TRUE(r1->data.view() == std::string_view(data).substr(kStripe));
}

TEST(EcTest, ErasureCodedKvContainerAndBadRequests) {
  TempDir dir;
  LocalSystem sys(dir.path(), 3, 1);
  Tank t;
  ASSERT_NO_FATAL_FAILURE(open_tank(sys, 3, "kv", "EC_2P1G1", 1, t));
  MgmtClient& mc = *t.mc;
  ClientOptions co;
  co.engine = sys.mgmt();
  for (int i = 0; i < 20; ++i) {
    std::string v = "value-" + std::to_string(i);
    ASSERT_TRUE(t.cont->kv_put("k" + std::to_string(i), bytes(v)));
  }
  auto keys = t.cont->kv_list();
  ASSERT_TRUE(keys) << keys.status().to_string();
  EXPECT_EQ(keys->size(), 20u);
  ASSERT_TRUE(t.cont->kv_del("k3"));
  EXPECT_EQ(t.cont->kv_get("k3").status().code(), Errc::not_found);
  sys.engine(1).kill9();
  for (int i = 0; i < 20; ++i) {
    if (i == 3) continue;
    auto r = t.cont->kv_get("k" + std::to_string(i));
    ASSERT_TRUE(r) << r.status().to_string();
    EXPECT_EQ(r->data.view(), "value-" + std::to_string(i));
  }
  // A second engine: fewer than k positions serve. A clear error, never wrong bytes. The
  // container (rf 1) is UNCLEAN and opens read-only only.
  sys.engine(2).kill9();
  bool unclean = false;
  for (int i = 0; i < 300 && !unclean; ++i) {
    auto q = mc.cont_query("tank", "kv");
    unclean = q && q->health.status == "UNCLEAN";
    if (!unclean) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(unclean);
  {
    auto w = t.client->open_container("tank", "kv", true);
    ASSERT_FALSE(w);
    EXPECT_NE(w.status().message().find("UNCLEAN"), std::string::npos) << w.status().to_string();
    EXPECT_NE(w.status().message().find("redundancy factor 1"), std::string::npos);
  }
  {
    ClientOptions quick = co;
    quick.timeout = std::chrono::milliseconds(3000);
    auto cl = Client::connect_system(quick);
    ASSERT_TRUE(cl);
    auto c3 = (*cl)->open_container("tank", "kv", false);
    ASSERT_TRUE(c3) << c3.status().to_string();
    bool refused = false;
    for (int i = 0; i < 20 && !refused; ++i) {
      if (i == 3) continue;
      auto r = (*c3)->kv_get("k" + std::to_string(i));
      if (r) {
        // Its value is whole on 2 of the 3 positions (rank 0 may hold one).
        EXPECT_EQ(r->data.view(), "value-" + std::to_string(i));
        continue;
      }
      EXPECT_NE(r.status().message().find("position"), std::string::npos) << r.status().to_string();
      refused = true;
    }
    EXPECT_TRUE(refused);
  }
  auto oid = t.cont->make_oid(1, 1);
  std::string v = "x";
  // What erasure coding does not do is refused with a reason.
  EXPECT_EQ(t.cont->update(*oid, "d", "a", ValueKind::single, 0, bytes(v), {.cond = Cond::insert})
                .status()
                .code(),
            Errc::unsupported);
  EXPECT_EQ(t.cont->update(*oid, "d", std::string("\0ec-copy:a", 10), ValueKind::array, 0, bytes(v))
                .status()
                .code(),
            Errc::invalid_argument);
  EXPECT_EQ(t.cont->update(*oid, "d", std::string("\0ec-cell:0:a", 12), ValueKind::array, 0, bytes(v))
                .status()
                .code(),
            Errc::invalid_argument);
  EXPECT_EQ(t.cont->punch_range_async(*oid, "d", "a", 0, 10).get().status().code(),
            Errc::unsupported);
}

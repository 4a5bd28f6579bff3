// The rebuild service over real engines: after kill -9 of an engine under write load, the
// pool's self-healing rebuild refills the lost replicas and erasure-coded cells elsewhere
// (proved by then killing as many more engines as the class tolerates and reading every
// acknowledged write back); drain, reintegration and extension move data and keep every byte.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <signal.h>

#include <map>
#include <random>

#include "client/container.hpp"
#include "placement/layout.hpp"
#include "tests/integration/local_cluster.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using namespace tessera::testing;

namespace {

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Every acknowledged write: (object, dkey) -> single value "v", and an array "a" per object.
struct Model {
  std::map<std::pair<uint64_t, std::string>, std::string> singles;
  std::map<uint64_t, std::string> arrays;
};

std::string random_bytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>('a' + rng() % 26);
  return s;
}

// One write: a single value of a random (object, dkey), or a piece of an object's array.
void write_one(Container& c, Model& m, std::mt19937_64& rng, uint64_t objects, uint64_t cell) {
  const uint64_t o = rng() % objects;
  auto oid = c.make_oid(5, o);
  ASSERT_TRUE(oid);
  if (rng() % 3 != 0) {
    const std::string dkey = "d" + std::to_string(rng() % 4);
    std::string v = random_bytes(rng, 1 + rng() % 6000);
    auto r = c.update(*oid, dkey, "v", ValueKind::single, 0, bytes(v));
    ASSERT_TRUE(r) << "object " << o << ": " << r.status().to_string();
    m.singles[{o, dkey}] = v;
    return;
  }
  // Full stripes or unaligned pieces (partial-stripe copies for EC).
  const uint64_t off = rng() % 2 == 0 ? cell * 2 * (rng() % 4) : rng() % (6 * cell);
  const uint64_t len = rng() % 2 == 0 ? cell * 2 * (1 + rng() % 3) : 1 + rng() % (3 * cell);
  std::string data = random_bytes(rng, len);
  auto r = c.update(*oid, "arr", "a", ValueKind::array, off, bytes(data));
  ASSERT_TRUE(r) << "object " << o << ": " << r.status().to_string();
  auto& cur = m.arrays[o];
  if (cur.size() < off + len) cur.resize(off + len, '\0');
  cur.replace(off, len, data);
}

void verify(Container& c, const Model& m, const std::string& when) {
  for (const auto& [k, want] : m.singles) {
    auto oid = c.make_oid(5, k.first);
    auto r = c.fetch(*oid, k.second, "v", ValueKind::single, 0, 0, 0, {.must_exist = true});
    ASSERT_TRUE(r) << when << ": object " << k.first << " " << k.second << ": "
                   << r.status().to_string();
    ASSERT_TRUE(r->data.view() == want) << when << ": object " << k.first << " " << k.second;
  }
  for (const auto& [o, want] : m.arrays) {
    auto oid = c.make_oid(5, o);
    auto r = c.fetch(*oid, "arr", "a", ValueKind::array, 0, want.size());
    ASSERT_TRUE(r) << when << ": array of object " << o << ": " << r.status().to_string();
    ASSERT_TRUE(r->data.view() == want)
        << when << ": array of object " << o << " differs from byte "
        << (std::mismatch(want.begin(), want.end(), r->data.view().begin()).first - want.begin());
  }
}

// Waits for the pool's rebuild to finish (writing meanwhile when `load` is given); returns
// the final pool view.
mgmt::PoolView wait_rebuild(MgmtClient& mc, const std::function<void()>& load = nullptr,
                            uint32_t after_gen = 0) {
  mgmt::PoolView last;
  for (int i = 0; i < 1200; ++i) {
    auto q = mc.pool_query("tank");
    EXPECT_TRUE(q) << q.status().to_string();
    if (q) {
      last = *q;
      const auto& r = q->pool.rebuild;
      if (r.gen > after_gen && r.state == "done" && !q->pool.map.moving()) return last;
      EXPECT_NE(r.state, "failed") << r.error;
      if (r.state == "failed") return last;
    }
    if (load) {
      load();
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  ADD_FAILURE() << "the rebuild never finished (state " << last.pool.rebuild.state << ")";
  return last;
}

struct Harness {
  TempDir dir;
  std::unique_ptr<LocalSystem> sys;
  std::unique_ptr<MgmtClient> mc;
  std::unique_ptr<Client> client;
  std::unique_ptr<Container> cont;

  void start(uint32_t engines, const std::vector<uint32_t>& pool_ranks, const char* oclass,
             uint32_t rf, uint32_t cell, std::vector<std::string> extra = {}) {
    extra.insert(extra.begin(), {"--rebuild-share-pct", "100"});
    sys = std::make_unique<LocalSystem>(dir.path(), engines, 1, extra);
    ASSERT_TRUE(sys->wait_joined(engines));
    mc = std::make_unique<MgmtClient>(sys->mgmt());
    ASSERT_TRUE(mc->pool_create("tank", 64ull << 20, pool_ranks));
    ASSERT_TRUE(mc->cont_create("tank", cont_props("c", oclass, rf, mgmt::ContType::array, cell)));
    cont = open(client, true);
    ASSERT_TRUE(cont);
  }
  // A fresh client's read-only view (a new map, a new handle).
  std::unique_ptr<Container> fresh() { return open(client2, false); }
  // Connects `cl` to the system and opens the container through it (null on failure).
  std::unique_ptr<Container> open(std::unique_ptr<Client>& cl, bool write) {
    return open_container(*sys, cl, "tank", "c", write);
  }
  std::unique_ptr<Client> client2;
};

// kill -9 one engine under load; rebuild, then lose `more` engines at once: nothing is lost.
void kill_rebuild_kill(const char* oclass, uint32_t rf, uint32_t cell, std::vector<uint32_t> more) {
  Harness h;
  h.start(6, {}, oclass, rf, cell);
  Model m;
  std::mt19937_64 rng(11);
  const uint64_t objects = 40;
  for (int i = 0; i < 300; ++i) write_one(*h.cont, m, rng, objects, cell);
  verify(*h.cont, m, "all engines up");

  h.sys->engine(3).kill9();
  ASSERT_TRUE(wait_gone(*h.mc, {3}));
  // Writes go on while the rebuild runs; every acknowledged one is in the model.
  auto v = wait_rebuild(*h.mc, [&] { write_one(*h.cont, m, rng, objects, cell); });
  ASSERT_EQ(v.pool.rebuild.state, "done");
  EXPECT_EQ(*v.pool.map.state(3, 0), placement::TargetState::down_out);
  EXPECT_GT(v.pool.rebuild.records, 0u);
  EXPECT_GT(v.pool.rebuild.bytes, 0u);
  EXPECT_EQ(v.pool.rebuild.lost, 0u);
  EXPECT_EQ(v.redundancy, "normal");
  for (int i = 0; i < 50; ++i) write_one(*h.cont, m, rng, objects, cell);
  verify(*h.cont, m, "after the rebuild");

  // Redundancy is back: the class's tolerance worth of engines more fails at once, before any
  // second rebuild could help, and every acknowledged write still reads back.
  ASSERT_TRUE(h.mc->pool_set_prop("tank", "self_heal", "exclude").is_ok());
  for (uint32_t r : more) h.sys->engine(r).kill9();
  ASSERT_TRUE(wait_gone(*h.mc, more));
  auto c2 = h.fresh();
  ASSERT_TRUE(c2);
  verify(*c2, m, "after losing more engines");
}

}  // namespace

TEST(RebuildTest, ReplicatedRebuildUnderLoadRestoresRedundancy) {
  kill_rebuild_kill("RP_3GX", 2, 4096, {4, 5});
}

TEST(RebuildTest, ErasureCodedRebuildReconstructsCellsUnderLoad) {
  kill_rebuild_kill("EC_2P1G1", 1, 4096, {5});
}

// Drain moves a rank's data off (then it is out), reintegration brings it back with its stale
// data dropped, extension adds engines and rebalances. After each, losing one engine loses
// nothing (RP_2: the moved copies are complete).
TEST(RebuildTest, DrainReintegrateAndExtendMoveData) {
  Harness h;
  h.start(6, {0, 1, 2, 3}, "RP_2GX", 1, 4096);
  Model m;
  std::mt19937_64 rng(5);
  const uint64_t objects = 30;
  for (int i = 0; i < 200; ++i) write_one(*h.cont, m, rng, objects, 4096);
  uint32_t gen = 0;

  auto drained = h.mc->pool_op("tank", "drain", {2});
  ASSERT_TRUE(drained) << drained.status().to_string();
  EXPECT_EQ(*drained->pool.map.state(2, 0), placement::TargetState::drain);
  auto v = wait_rebuild(
      *h.mc, [&] { write_one(*h.cont, m, rng, objects, 4096); }, gen);
  gen = v.pool.rebuild.gen;
  EXPECT_EQ(*v.pool.map.state(2, 0), placement::TargetState::down_out);
  verify(*h.cont, m, "after drain");

  // Wrong transitions are refused with the state named.
  auto again = h.mc->pool_op("tank", "drain", {2});
  ASSERT_FALSE(again);
  EXPECT_NE(again.status().message().find("down-out"), std::string::npos);

  auto back = h.mc->pool_op("tank", "reintegrate", {2});
  ASSERT_TRUE(back) << back.status().to_string();
  EXPECT_EQ(*back->pool.map.state(2, 0), placement::TargetState::up);
  v = wait_rebuild(
      *h.mc, [&] { write_one(*h.cont, m, rng, objects, 4096); }, gen);
  gen = v.pool.rebuild.gen;
  EXPECT_EQ(*v.pool.map.state(2, 0), placement::TargetState::up_in);
  verify(*h.cont, m, "after reintegration");

  auto ext = h.mc->pool_op("tank", "extend", {4, 5});
  ASSERT_TRUE(ext) << ext.status().to_string();
  EXPECT_EQ(ext->pool.map.engines.size(), 6u);
  v = wait_rebuild(
      *h.mc, [&] { write_one(*h.cont, m, rng, objects, 4096); }, gen);
  EXPECT_EQ(*v.pool.map.state(5, 0), placement::TargetState::up_in);
  verify(*h.cont, m, "after extension");

  // Every copy the moves made is complete: lose an old engine, then read everything.
  ASSERT_TRUE(h.mc->pool_set_prop("tank", "self_heal", "exclude").is_ok());
  h.sys->engine(1).kill9();
  ASSERT_TRUE(wait_gone(*h.mc, {1}));
  auto c2 = h.fresh();
  ASSERT_TRUE(c2);
  verify(*c2, m, "after losing rank 1");
}

// A second engine dies while the first one's rebuild runs: the rebuild plans again on the new
// map and converges; then one more engine fails and every acknowledged write reads back.
TEST(RebuildTest, SecondFailureDuringRebuildReplansAndConverges) {
  Harness h;
  h.start(6, {}, "RP_3GX", 2, 4096);
  Model m;
  std::mt19937_64 rng(23);
  const uint64_t objects = 40;
  for (int i = 0; i < 400; ++i) write_one(*h.cont, m, rng, objects, 4096);
  h.sys->engine(3).kill9();
  // Rank 4 dies as soon as the first generation runs.
  bool busy = false;
  for (int i = 0; i < 600 && !busy; ++i) {
    auto q = h.mc->pool_query("tank");
    busy = q && q->pool.rebuild.state == "busy";
    if (!busy) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(busy);
  h.sys->engine(4).kill9();
  ASSERT_TRUE(wait_gone(*h.mc, {3, 4}));
  auto v = wait_rebuild(*h.mc, [&] { write_one(*h.cont, m, rng, objects, 4096); });
  ASSERT_EQ(v.pool.rebuild.state, "done");
  EXPECT_EQ(*v.pool.map.state(3, 0), placement::TargetState::down_out);
  EXPECT_EQ(*v.pool.map.state(4, 0), placement::TargetState::down_out);
  EXPECT_GE(v.pool.rebuild.gen, 2u);
  verify(*h.cont, m, "after both rebuilds");
  ASSERT_TRUE(h.mc->pool_set_prop("tank", "self_heal", "exclude").is_ok());
  h.sys->engine(5).kill9();
  ASSERT_TRUE(wait_gone(*h.mc, {5}));
  auto c2 = h.fresh();
  ASSERT_TRUE(c2);
  verify(*c2, m, "after a third engine is lost");
}

// A rebuild generation that fails (a home it fills does not answer: its engine is paused for
// longer than a push is retried) is started again by the management service after a back-off,
// without anyone asking; once the home answers, the retry completes and every value reads back.
// Failure detection is slowed so that the pause is not taken for a death.
TEST(RebuildTest, AFailedGenerationIsRetriedByItselfAndCompletes) {
  Harness h;
  h.start(4, {}, "RP_3GX", 2, 4096,
          {"--mgmt-dead-after-ms", "300000", "--swim-suspicion-ms", "300000",
           "--aggregation-interval-ms", "200"});
  Model m;
  std::mt19937_64 rng(5);
  for (int i = 0; i < 120; ++i) write_one(*h.cont, m, rng, 24, 4096);

  // Rank 2 pauses; rank 3 dies. With four engines, every group that loses rank 3's replica is
  // refilled on one of ranks 0, 1 and 2: the pushes to rank 2 (and its own) cannot complete.
  ASSERT_EQ(::kill(h.sys->engine(2).pid(), SIGSTOP), 0);
  h.sys->engine(3).kill9();
  const mgmt::PoolView failed = wait_pool(*h.mc, "tank", [](const mgmt::PoolView& v) {
    return v.pool.rebuild.state == "failed" || v.pool.rebuild.state == "done";
  });
  ASSERT_EQ(failed.pool.rebuild.state, "failed");
  EXPECT_FALSE(failed.pool.rebuild.error.empty());
  std::printf("generation %u failed: %s\n", failed.pool.rebuild.gen,
              failed.pool.rebuild.error.c_str());

  // While the map moves data no store drops a punch (docs/REBUILD.md, "Aggregation during a
  // rebuild"): a pass an operator asks for runs and keeps them, and so do the background
  // passes, as the management service tells them.
  ASSERT_TRUE(failed.pool.map.moving());
  for (const auto& r : h.client->pool_reclaim(failed)) {
    if (r.rank > 1) continue;  // rank 2 paused, rank 3 dead
    ASSERT_TRUE(r.aggregated) << "rank " << r.rank << ": " << r.aggregated.status().to_string();
    EXPECT_TRUE(r.aggregated->punches_kept) << "rank " << r.rank << " dropped punches while the "
                                            << "map moved data";
  }
  EXPECT_TRUE(tessera::testing::eventually(
      [&] {
        return h.sys->engine(0).log().find("aggregation keeps punches: pool") != std::string::npos;
      },
      std::chrono::seconds(60)));

  // Rank 2 resumes: a later generation, started by the service itself, completes.
  ASSERT_EQ(::kill(h.sys->engine(2).pid(), SIGCONT), 0);
  const uint32_t gen = failed.pool.rebuild.gen;
  const mgmt::PoolView v = wait_pool(*h.mc, "tank", [gen](const mgmt::PoolView& x) {
    return x.pool.rebuild.gen > gen && x.pool.rebuild.state == "done" && !x.pool.map.moving();
  });
  ASSERT_EQ(v.pool.rebuild.state, "done") << "no retry completed: " << v.pool.rebuild.error;
  EXPECT_GT(v.pool.rebuild.gen, failed.pool.rebuild.gen);
  EXPECT_EQ(v.pool.rebuild.lost, 0u);
  EXPECT_EQ(v.redundancy, "normal");
  EXPECT_NE(h.sys->engine(0).log().find("rebuild retry 1 started"), std::string::npos);
  // Settled: aggregation drops punches again, on demand and in the background, once every
  // target has reported a reclaim pass over the settled map (mgmt::reclaim_pending; a pass
  // every 10 s).
  std::string last;
  EXPECT_TRUE(tessera::testing::eventually(
      [&] {
        for (const auto& r : h.client->pool_reclaim(v)) {
          if (r.rank == 3) continue;  // down-out
          if (!r.aggregated || r.aggregated->punches_kept) {
            last = fmt::format("rank {}: {}", r.rank,
                               r.aggregated ? "punches kept" : r.aggregated.status().to_string());
            return false;
          }
        }
        return true;
      },
      std::chrono::seconds(120)))
      << last;
  EXPECT_TRUE(tessera::testing::eventually(
      [&] {
        return h.sys->engine(0).log().find("aggregation drops punches again") != std::string::npos;
      },
      std::chrono::seconds(60)));
  auto c2 = h.fresh();
  ASSERT_TRUE(c2);
  verify(*c2, m, "after the retried rebuild");
}

// A container's redundancy factor bounds what it acknowledges: once more of its engines have
// failed than rf, no write is acknowledged (it would stand on fewer copies than the container
// promises), through handles opened while it was healthy too; reads go on. The engines decide
// from the pool map each write is served in (ObjectService::takes_writes), the management
// service at open.
//
// Scripted: rf 1 over three engines, a write handle held across two kills; rf 0 left UNCLEAN by
// a rebuild and set healthy by its operator, refused while the map is beyond the rf.
// Randomized: seeded sequences of kills, restarts and `status=healthy` over four engines, every
// step checked against a model (engines down; beyond rf the container must be UNCLEAN, refuse
// being set healthy and take no write; HEALTHY it must take them), and at the end every
// acknowledged write reads back. TESSERA_REDUNDANCY_SEEDS=N runs N more
// seeds (from 1000), TESSERA_REDUNDANCY_SEED=S one.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <string>

#include "tests/integration/dtx_harness.hpp"
#include "tests/integration/local_cluster.hpp"
#include "tests/test_util.hpp"

namespace tessera::testing {
namespace {

bool serving_in(const mgmt::PoolView& v, uint32_t rank) {
  auto st = v.pool.map.state(rank, 0);
  return st && placement::is_serving(*st);
}

bool member_joined(const MgmtClient& mc, uint32_t rank) {
  auto ms = mc.system_query();
  if (!ms) return false;
  for (const auto& m : *ms) {
    if (m.rank == rank) return m.state == mgmt::MemberState::joined;
  }
  return false;
}

// Until the service has noticed `rank` died and no rebuild runs.
void wait_dead(const MgmtClient& mc, uint32_t rank) {
  for (int i = 0; i < 1500 && member_joined(mc, rank); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_FALSE(member_joined(mc, rank)) << "rank " << rank << " was never found dead";
}

std::string value_of(const std::string& key) {
  return "value of " + key;
}

// Key-value writes through a container handle, and the keys whose write was acknowledged.
struct Writes {
  std::vector<std::string> acked;

  Status put(Container& c, const std::string& k) {
    auto r = c.kv_put(k, bytes(value_of(k)));
    if (r) acked.push_back(k);
    return r.status();
  }
  // Every acknowledged write reads back through `c` (`why`: what happened meanwhile).
  void read_back(Container& c, const std::string& why = "") const {
    for (const auto& k : acked) {
      auto r = c.kv_get(k);
      ASSERT_TRUE(r) << "acknowledged " << k << " lost" << why << ": " << r.status().to_string();
      EXPECT_EQ(r->data.view(), value_of(k)) << k;
    }
  }
};

// Restarts rank `r`, reintegrates it where the map took it out, and waits until it serves
// again with nothing left to move (`joined`: engines expected up once it is).
void bring_back(LocalSystem& sys, const MgmtClient& mc, uint32_t r, size_t joined,
                const std::string& trace) {
  Status st = sys.engine(r).start();
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  ASSERT_TRUE(sys.wait_joined(joined)) << trace;
  auto view = mc.pool_query("tank");
  ASSERT_TRUE(view);
  if (!serving_in(*view, r)) {
    auto op = mc.pool_op("tank", "reintegrate", {r});
    ASSERT_TRUE(op) << trace << op.status().to_string();
  }
  auto v = wait_pool(mc, "tank", [&](const mgmt::PoolView& p) {
    return serving_in(p, r) && p.pool.rebuild.state != "busy" && !p.pool.map.moving();
  });
  ASSERT_TRUE(serving_in(v, r)) << trace;
}

// Until `rank` is out of the map (its targets excluded) and no rebuild runs.
mgmt::PoolView wait_out(const MgmtClient& mc, uint32_t rank) {
  return wait_pool(mc, "tank", [rank](const mgmt::PoolView& p) {
    return !serving_in(p, rank) && p.pool.rebuild.state != "busy";
  });
}

TEST(Redundancy, AHeldWriteHandleTakesNoWriteOnceItsContainerIsUnclean) {
  TempDir dir;
  LocalSystem sys(dir.path(), 3, 1);
  Tank t;
  ASSERT_NO_FATAL_FAILURE(open_tank(sys, 3, "c", "RP_3G1", 1, t));
  MgmtClient& mc = *t.mc;
  Writes writes;
  auto put = [&](const std::string& k) { return writes.put(*t.cont, k); };
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(put("healthy-" + std::to_string(i)).is_ok());

  // One engine down: within rf 1, writes go on (on two copies).
  sys.engine(2).kill9();
  wait_dead(mc, 2);
  auto v = wait_out(mc, 2);
  ASSERT_FALSE(serving_in(v, 2));
  for (int i = 0; i < 5; ++i) {
    Status st = put("degraded-" + std::to_string(i));
    ASSERT_TRUE(st.is_ok()) << st.to_string();
  }

  // A second: beyond rf. The handle was opened healthy; its writes are refused all the same.
  sys.engine(1).kill9();
  wait_dead(mc, 1);
  v = wait_out(mc, 1);
  ASSERT_FALSE(serving_in(v, 1));
  auto q = mc.cont_query("tank", "c");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->health.status, "UNCLEAN");
  for (int i = 0; i < 3; ++i) {
    Status st = put("unclean-" + std::to_string(i));
    ASSERT_FALSE(st.is_ok()) << "a write was acknowledged on one copy of an rf 1 container";
    EXPECT_EQ(st.code(), Errc::rf_exceeded) << st.to_string();
    EXPECT_NE(st.message().find("redundancy factor 1"), std::string::npos) << st.to_string();
  }
  auto oid = t.cont->make_oid(1, 1);
  ASSERT_TRUE(oid);
  auto p = t.cont->punch(*oid);
  ASSERT_FALSE(p) << "a punch was acknowledged beyond rf";
  EXPECT_EQ(p.status().code(), Errc::rf_exceeded) << p.status().to_string();
  // Reads go on: every acknowledged write is on the engine left.
  ASSERT_NO_FATAL_FAILURE(writes.read_back(*t.cont));
  // Opening for writing is refused with the same code.
  auto w = t.client->open_container("tank", "c", true);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.status().code(), Errc::rf_exceeded) << w.status().to_string();
}

// A rebuild that ends beyond the rf leaves the container UNCLEAN for good (lost_data): only its
// operator, having checked it, sets it healthy again (`cont set-prop ... status=healthy`), and
// not while the map is still beyond the rf. Then a write handle held throughout takes writes.
TEST(Redundancy, AnOperatorSetsAContainerHealthyAgainOnlyOnceItsEnginesServe) {
  TempDir dir;
  LocalSystem sys(dir.path(), 3, 1);
  Tank t;
  ASSERT_NO_FATAL_FAILURE(open_tank(sys, 3, "c", "RP_2G1", 0, t));
  MgmtClient& mc = *t.mc;
  Writes writes;
  auto put = [&](const std::string& k) { return writes.put(*t.cont, k); };
  auto set_healthy = [&] { return mc.cont_set_props("tank", "c", {{"status", "healthy"}}); };
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(put("before-" + std::to_string(i)).is_ok());

  // rf 0, one engine lost: the rebuild that takes it out ends beyond the rf.
  sys.engine(2).kill9();
  wait_dead(mc, 2);
  ASSERT_FALSE(serving_in(wait_out(mc, 2), 2));
  auto q = mc.cont_query("tank", "c");
  ASSERT_TRUE(q);
  ASSERT_EQ(q->health.status, "UNCLEAN");
  ASSERT_TRUE(q->c.lost_data);
  Status st = put("lost");
  ASSERT_EQ(st.code(), Errc::rf_exceeded) << st.to_string();
  EXPECT_NE(st.message().find("status=healthy"), std::string::npos) << st.to_string();
  st = mc.cont_set_props("tank", "c", {{"status", "fine"}});
  EXPECT_EQ(st.code(), Errc::invalid_argument) << st.to_string();

  // Another engine lost: the map itself is beyond the rf, the operator's word changes nothing.
  sys.engine(1).kill9();
  wait_dead(mc, 1);
  ASSERT_FALSE(serving_in(wait_out(mc, 1), 1));
  st = set_healthy();
  ASSERT_FALSE(st.is_ok()) << "set healthy with one engine of two serving an RP_2G1 rf 0 "
                           << "container";
  EXPECT_EQ(st.code(), Errc::rf_exceeded) << st.to_string();
  EXPECT_NE(st.message().find("cannot set status=healthy"), std::string::npos) << st.to_string();
  q = mc.cont_query("tank", "c");
  ASSERT_TRUE(q);
  EXPECT_TRUE(q->c.lost_data);

  // Back to two engines: still UNCLEAN (lost_data) until the operator says so.
  ASSERT_NO_FATAL_FAILURE(bring_back(sys, mc, 1, 2, "restart rank 1"));
  q = mc.cont_query("tank", "c");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->health.status, "UNCLEAN");
  st = put("still-lost");
  ASSERT_EQ(st.code(), Errc::rf_exceeded) << st.to_string();
  st = set_healthy();
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  q = mc.cont_query("tank", "c");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->health.status, "HEALTHY");
  EXPECT_FALSE(q->c.lost_data);
  // The handle held since the start takes writes again (the engines learn it with the map).
  for (int i = 0; i < 5; ++i) {
    st = put("after-" + std::to_string(i));
    ASSERT_TRUE(st.is_ok()) << st.to_string();
  }
  ASSERT_NO_FATAL_FAILURE(writes.read_back(*t.cont));
}

// ---- seeded fault sequences against a model ----

// The model: which engines are down, and what that implies for an RP_3G1 container with rf 1 on
// kEngines engines, whatever the rebuilds did meanwhile:
// - at most rf down: HEALTHY, unless it was UNCLEAN before (a rebuild may have found it
//   beyond rf: that is for good);
// - fewer serving engines than a group needs, by more than rf (kGroup - serving > kRf): UNCLEAN,
//   whatever was rebuilt (no placement gives the objects more copies than engines serve);
// - between the two, either: it depends on whether a rebuild replaced the first engines lost.
// Whatever the health, the system must keep its promise: UNCLEAN, no write is acknowledged;
// HEALTHY, every write is. At the end, every engine back, every acknowledged write reads back.
struct Model {
  static constexpr uint32_t kEngines = 4;
  static constexpr uint32_t kGroup = 3;  // RP_3G1
  static constexpr uint32_t kRf = 1;
  std::set<uint32_t> down;  // killed and not yet back
  bool was_unclean = false;

  uint32_t serving() const { return kEngines - static_cast<uint32_t>(down.size()); }
  bool must_be_healthy() const { return down.size() <= kRf && !was_unclean; }
  bool must_be_unclean() const { return serving() < kGroup && kGroup - serving() > kRf; }
};

class FaultRun {
 public:
  static constexpr uint32_t kEngines = Model::kEngines;
  static constexpr uint32_t kRf = Model::kRf;

  explicit FaultRun(uint64_t seed) : seed_(seed), rng_(seed), sys_(dir_.path(), kEngines, 1) {}

  void run(int steps) {
    ClientOptions co;
    co.timeout = std::chrono::milliseconds(20000);
    ASSERT_NO_FATAL_FAILURE(open_tank(sys_, kEngines, "c", "RP_3G1", kRf, t_, co));
    ASSERT_NO_FATAL_FAILURE(check_step("start"));
    // Kills (never rank 0: it hosts the management service) and restarts; the sequence goes
    // on until it has been where the container must be UNCLEAN at least once.
    bool beyond = false;
    for (int s = 0; s < 4 * steps && (s < steps || !beyond); ++s) {
      std::string what;
      const bool all_down = model_.down.size() == kEngines - 1;
      if (!model_.down.empty() && (all_down || (s < steps && chance(0.35)))) {
        ASSERT_NO_FATAL_FAILURE(bring_back(pick(model_.down), what));
      } else {
        ASSERT_NO_FATAL_FAILURE(kill(what));
      }
      beyond |= model_.must_be_unclean();
      ASSERT_NO_FATAL_FAILURE(check_step(what));
    }
    EXPECT_TRUE(beyond) << "the sequence never went beyond rf: " << trace_;
    while (!model_.down.empty()) {
      std::string what;
      ASSERT_NO_FATAL_FAILURE(bring_back(*model_.down.begin(), what));
      ASSERT_NO_FATAL_FAILURE(check_step(what));
    }
    verify_all();
  }

 private:
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  uint32_t pick(const std::set<uint32_t>& from) {
    auto it = from.begin();
    std::advance(it, std::uniform_int_distribution<size_t>(0, from.size() - 1)(rng_));
    return *it;
  }

  void kill(std::string& what) {
    std::set<uint32_t> up;
    for (uint32_t r = 1; r < kEngines; ++r) {
      if (model_.down.count(r) == 0) up.insert(r);
    }
    const uint32_t r = pick(up);
    what = "kill rank " + std::to_string(r);
    trace_ += what + "; ";
    sys_.engine(r).kill9();
    model_.down.insert(r);
    ASSERT_NO_FATAL_FAILURE(wait_dead(*t_.mc, r));
    // Settled when no rebuild runs (the service may keep a dead engine in the map when taking
    // it out would strand data: check_step waits for the map only where writes must go on).
    wait_pool(*t_.mc, "tank",
              [](const mgmt::PoolView& p) { return p.pool.rebuild.state != "busy"; });
  }

  void bring_back(uint32_t r, std::string& what) {
    what = "restart rank " + std::to_string(r);
    trace_ += what + "; ";
    model_.down.erase(r);
    ASSERT_NO_FATAL_FAILURE(
        tessera::testing::bring_back(sys_, *t_.mc, r, kEngines - model_.down.size(), trace_));
  }

  // The model against the system (struct Model).
  void check_step(std::string what) {
    auto q = t_.mc->cont_query("tank", "c");
    ASSERT_TRUE(q) << q.status().to_string();
    std::string health = q->health.status;
    if (model_.must_be_unclean()) {
      ASSERT_EQ(health, "UNCLEAN") << "seed " << seed_ << " after " << trace_;
    }
    if (model_.must_be_healthy()) {
      ASSERT_EQ(health, "HEALTHY") << "seed " << seed_ << " after " << trace_;
    }
    if (health == "UNCLEAN") {
      ASSERT_NO_FATAL_FAILURE(maybe_set_healthy(health, what));
    }
    model_.was_unclean |= health == "UNCLEAN";
    if (health == "HEALTHY") {
      // Writes go on once the map has taken the dead engines out (before, they wait on them).
      auto v = wait_pool(*t_.mc, "tank", [&](const mgmt::PoolView& p) {
        for (uint32_t r : model_.down) {
          if (serving_in(p, r)) return false;
        }
        return p.pool.rebuild.state != "busy";
      });
      for (uint32_t r : model_.down) ASSERT_FALSE(serving_in(v, r)) << trace_;
    }
    // One write when it must be refused: beyond rf with the dead engine kept in the map, it
    // fails only when its forward to that engine times out.
    const int writes = health == "UNCLEAN" ? 1 : 3;
    for (int i = 0; i < writes; ++i) {
      const std::string k = "s" + std::to_string(step_) + "-" + std::to_string(i);
      const Status r = writes_.put(*t_.cont, k);
      if (health == "UNCLEAN") {
        ASSERT_FALSE(r.is_ok()) << "seed " << seed_ << ": " << k
                                << " acknowledged with the container UNCLEAN ("
                                << model_.down.size() << " engines down, rf " << kRf << ") after "
                                << trace_;
        EXPECT_TRUE(r.code() == Errc::rf_exceeded || r.code() == Errc::timeout ||
                    r.code() == Errc::unavailable)
            << r.to_string();
      } else {
        ASSERT_TRUE(r.is_ok()) << "seed " << seed_ << " after " << trace_ << ": " << k << ": "
                               << r.to_string();
      }
    }
    std::printf("seed %llu step %d (%s): %zu down, %s\n", static_cast<unsigned long long>(seed_),
                step_, what.c_str(), model_.down.size(), health.c_str());
    ++step_;
  }

  // The operator, at random, sets an UNCLEAN container healthy: refused while the map is
  // beyond the rf (Model::must_be_unclean), done where at most rf engines are down (a rebuild
  // beyond the rf left it UNCLEAN), and then writes must go on.
  void maybe_set_healthy(std::string& health, std::string& what) {
    const bool refused = model_.must_be_unclean();
    if ((!refused && model_.down.size() > kRf) || !chance(0.6)) return;
    Status st = t_.mc->cont_set_props("tank", "c", {{"status", "healthy"}});
    trace_ += "set healthy; ";
    what += refused ? ", set healthy (refused)" : ", set healthy";
    if (refused) {
      ASSERT_FALSE(st.is_ok()) << "seed " << seed_ << ": set healthy beyond rf after " << trace_;
      EXPECT_EQ(st.code(), Errc::rf_exceeded) << st.to_string();
      return;
    }
    ASSERT_TRUE(st.is_ok()) << "seed " << seed_ << " after " << trace_ << ": " << st.to_string();
    auto q = t_.mc->cont_query("tank", "c");
    ASSERT_TRUE(q) << q.status().to_string();
    ASSERT_EQ(q->health.status, "HEALTHY") << "seed " << seed_ << " after " << trace_;
    model_.was_unclean = false;
    health = "HEALTHY";
  }

  // Every engine back: every acknowledged write reads back, through a new client.
  void verify_all() {
    ClientOptions co;
    co.engine = sys_.mgmt();
    auto cl = Client::connect_system(co);
    ASSERT_TRUE(cl);
    auto c = (*cl)->open_container("tank", "c", false);
    ASSERT_TRUE(c) << c.status().to_string();
    ASSERT_NO_FATAL_FAILURE(
        writes_.read_back(**c, " (seed " + std::to_string(seed_) + ") after " + trace_));
    std::printf("seed %llu: %zu acknowledged writes read back\n",
                static_cast<unsigned long long>(seed_), writes_.acked.size());
  }

  uint64_t seed_;
  std::mt19937_64 rng_;
  TempDir dir_;
  LocalSystem sys_;
  Tank t_;
  Model model_;
  Writes writes_;
  std::string trace_;
  int step_ = 0;
};

std::vector<uint64_t> seeds() {
  if (const char* one = std::getenv("TESSERA_REDUNDANCY_SEED")) return {std::stoull(one)};
  std::vector<uint64_t> out{1};
  if (const char* n = std::getenv("TESSERA_REDUNDANCY_SEEDS")) {
    for (uint64_t i = 0; i < std::stoull(n); ++i) out.push_back(1000 + i);
  }
  return out;
}

TEST(Redundancy, SeededFaultSequencesNeverAcknowledgeAWriteBeyondTheRedundancyFactor) {
  for (uint64_t seed : seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    FaultRun run(seed);
    run.run(5);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace tessera::testing

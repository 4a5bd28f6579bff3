// `tessera cont rollback` against a local system started through the CLI (3 engines, 2 targets
// each), on a replicated and on an erasure-coded container: after a rollback to a snapshot,
// values, deletions, arrays with holes and listings read as they did at the snapshot; a later
// snapshot still reads as it was; a restart keeps all of it; writes after the rollback land on
// top; bad requests get clear errors. Background aggregation runs all along, snapshots kept.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "tests/integration/cli_system.hpp"
#include "tests/test_util.hpp"

using namespace tessera::testing;
using nlohmann::json;

namespace {

struct Cont {
  std::string label;
  std::vector<std::string> args;  // obj command options naming the container
};

// What the container shows at `epoch` ("" = newest): every object listed, and the value (or
// "absent") and holes of each akey this test writes.
json state(CliSystem& s, const Cont& c, const std::string& epoch) {
  auto with = [&](std::vector<std::string> a) {
    a.insert(a.end(), c.args.begin(), c.args.end());
    if (!epoch.empty()) a.insert(a.end(), {"--epoch", epoch});
    return a;
  };
  json out;
  json objs = s.ok(with({"obj", "list"}))["entries"];
  std::vector<std::string> oids;
  for (const auto& o : objs) oids.push_back(o["oid"]);
  std::sort(oids.begin(), oids.end());
  out["objects"] = oids;
  for (const std::string oid : {"1", "2", "3", "4"}) {
    for (const std::string akey : {"a", "b"}) {
      std::vector<std::string> get = {"obj", "get", "--oid", oid, "--dkey", "d", "--akey", akey};
      if (oid == "3") get.push_back("--array");
      auto [rc, j] = s.run(with(get));
      json& slot = out[oid + "/" + akey];
      if (rc != 0) {
        slot = j.value("error", std::string("?"));
        continue;
      }
      slot = {{"data", j["data"]}, {"holes", j["holes"]}};
    }
  }
  return out;
}

std::string pattern(size_t n, char base) {
  std::string v(n, '\0');
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<char>(base + i % 23);
  return v;
}

}  // namespace

TEST(Rollback, AContainerReadsAsItsSnapshotAfterARollbackAndARestart) {
  CliSystem s;
  // Background aggregation every half second of everything older than a tenth of one: the
  // snapshots must stay readable through it (the engines learn them before every pass).
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "3", "--targets", "2",
        "--engine-arg=--aggregation-interval-ms=500", "--engine-arg=--aggregation-delay-ms=100"});
  s.ok({"pool", "create", "tank", "--size", "384M"});
  s.ok({"cont", "create", "tank", "rep", "--type", "ARRAY", "--oclass", "RP_3GX", "--rf", "2"});
  s.ok({"cont", "create", "tank", "ec", "--type", "ARRAY", "--oclass", "EC_2P1G1", "--cell-size",
        "4K"});
  const std::vector<Cont> conts = {{"rep", {"--pool", "tank", "--cont", "rep"}},
                                   {"ec", {"--pool", "tank", "--cont", "ec"}}};
  auto put = [&](const Cont& c, std::vector<std::string> a, const std::string& data) {
    std::vector<std::string> argv = {"obj", "put"};
    argv.insert(argv.end(), a.begin(), a.end());
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    s.ok(argv, data);
  };
  auto punch = [&](const Cont& c, std::vector<std::string> a) {
    std::vector<std::string> argv = {"obj", "punch"};
    argv.insert(argv.end(), a.begin(), a.end());
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    s.ok(argv);
  };
  std::map<std::string, json> at_s1, at_s2;
  std::map<std::string, std::string> s2_epoch;
  for (const Cont& c : conts) {
    SCOPED_TRACE(c.label);
    // The snapshot's state: two single values, one to be deleted, an array of 3 stripes.
    put(c, {"--oid", "1", "--dkey", "d", "--akey", "a"}, "first");
    put(c, {"--oid", "1", "--dkey", "d", "--akey", "b"}, "stays");
    put(c, {"--oid", "2", "--dkey", "d", "--akey", "a"}, "deleted later");
    put(c, {"--oid", "3", "--dkey", "d", "--akey", "a", "--array"}, pattern(24000, 'A'));
    s.ok({"cont", "snap", "create", "tank", c.label, "--name", "s1"});
    at_s1[c.label] = state(s, c, "");
    // Then: a value replaced, an object deleted, an object added, array records overwritten,
    // punched (replicated) and appended.
    put(c, {"--oid", "1", "--dkey", "d", "--akey", "a"}, "second");
    punch(c, {"--oid", "2"});
    put(c, {"--oid", "4", "--dkey", "d", "--akey", "a"}, "new");
    put(c, {"--oid", "3", "--dkey", "d", "--akey", "a", "--array", "--offset", "5000"},
        pattern(9000, 'a'));
    if (c.label == "rep") {  // (erasure-coded arrays have no range punch)
      punch(c, {"--oid", "3", "--dkey", "d", "--akey", "a", "--offset", "100", "--length", "3000"});
    }
    put(c, {"--oid", "3", "--dkey", "d", "--akey", "a", "--array", "--offset", "30000"},
        pattern(5000, 'k'));
    json snap = s.ok({"cont", "snap", "create", "tank", c.label, "--name", "s2"});
    s2_epoch[c.label] = snap["epoch"];
    at_s2[c.label] = state(s, c, "");
    ASSERT_NE(at_s1[c.label], at_s2[c.label]);
    EXPECT_EQ(at_s1[c.label]["objects"].size(), 3u) << at_s1[c.label].dump();
    EXPECT_EQ(at_s2[c.label]["objects"].size(), 3u) << at_s2[c.label].dump();

    json r = s.ok({"cont", "rollback", "tank", c.label, "--snap", "s1"});
    EXPECT_GT(r["rewritten"].get<uint64_t>(), 0u) << r.dump();
    EXPECT_GT(r["punched"].get<uint64_t>(), 0u) << r.dump();
    EXPECT_GT(std::stoull(r["at"].get<std::string>()), std::stoull(s2_epoch[c.label]));
    EXPECT_EQ(state(s, c, ""), at_s1[c.label]);
    // The later snapshot still reads as it was.
    EXPECT_EQ(state(s, c, s2_epoch[c.label]), at_s2[c.label]);
  }

  // Clear errors, nothing changed by them.
  EXPECT_NE(
      s.err({"cont", "rollback", "tank", "rep", "--snap", "nope"}).find("no snapshot named 'nope'"),
      std::string::npos);
  EXPECT_NE(s.err({"cont", "rollback", "tank", "rep"}).find("give one of --snap NAME or --epoch"),
            std::string::npos);
  EXPECT_NE(s.err({"cont", "rollback", "tank", "rep", "--epoch", "18446744073709551000"})
                .find("not in the past"),
            std::string::npos);
  EXPECT_NE(s.err({"cont", "rollback", "tank", "nope", "--snap", "s1"}).find("no container"),
            std::string::npos);

  // A restart keeps the rollback; writes after it land on top; rolling back to the later
  // snapshot (by epoch) brings its state back.
  s.ok({"system", "stop"});
  s.ok({"system", "start"});
  for (const Cont& c : conts) {
    SCOPED_TRACE(c.label);
    EXPECT_EQ(state(s, c, ""), at_s1[c.label]);
    EXPECT_EQ(state(s, c, s2_epoch[c.label]), at_s2[c.label]);
    put(c, {"--oid", "1", "--dkey", "d", "--akey", "a"}, "after");
    json now = state(s, c, "");
    EXPECT_EQ(now["1/a"]["data"], "after");
    EXPECT_EQ(now["1/b"], at_s1[c.label]["1/b"]);
    s.ok({"cont", "rollback", "tank", c.label, "--epoch", s2_epoch[c.label], "--force"});
    EXPECT_EQ(state(s, c, ""), at_s2[c.label]);
  }
}

// A snapshot holds every write acknowledged before it was taken and nothing written after,
// whatever the clocks: here every engine's wall clock reads 5 s ahead of (then behind) the
// management service's. A rollback to it brings exactly that state back. (With the snapshot
// epoch taken from the service's own clock, the first case left the writes out of the
// snapshot and the rollback punched them; the second let a later write into it.)
class SnapshotClocks : public ::testing::TestWithParam<int> {};

TEST_P(SnapshotClocks, ASnapshotHoldsWhatWasAcknowledgedBeforeItAndNothingAfter) {
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "3", "--targets", "1",
        fmt::format("--engine-arg=--clock-offset-ms={}", GetParam())});
  s.ok({"pool", "create", "tank", "--size", "256M"});
  for (const std::string oclass : {"RP_2GX", "SX", "EC_2P1G1"}) {
    SCOPED_TRACE(oclass);
    const std::string label = "c" + oclass;
    s.ok({"cont", "create", "tank", label, "--oclass", oclass});
    const std::vector<std::string> c = {"--pool", "tank", "--cont", label};
    auto put = [&](const std::string& akey, const std::string& v) {
      std::vector<std::string> a = {"obj", "put", "--oid", "1", "--dkey", "d", "--akey", akey};
      a.insert(a.end(), c.begin(), c.end());
      s.ok(a, v);
    };
    auto get = [&](const std::string& akey, const std::string& epoch) {
      std::vector<std::string> a = {"obj", "get", "--oid", "1", "--dkey", "d", "--akey", akey};
      a.insert(a.end(), c.begin(), c.end());
      if (!epoch.empty()) a.insert(a.end(), {"--epoch", epoch});
      auto [rc, j] = s.run(a);
      return rc == 0 ? j["data"].get<std::string>() : "error: " + j.value("error", "?");
    };
    put("a", "before");
    put("b", "kept");
    const std::string snap =
        s.ok({"cont", "snap", "create", "tank", label, "--name", "s"})["epoch"];
    put("a", "after");
    put("c", "new");
    EXPECT_EQ(get("a", snap), "before");
    EXPECT_EQ(get("b", snap), "kept");
    EXPECT_NE(get("c", snap), "new");
    EXPECT_EQ(get("a", ""), "after");
    json r = s.ok({"cont", "rollback", "tank", label, "--snap", "s"});
    EXPECT_GT(r["rewritten"].get<uint64_t>(), 0u) << r.dump();
    EXPECT_EQ(get("a", ""), "before");
    EXPECT_EQ(get("b", ""), "kept");
    EXPECT_NE(get("c", ""), "new");
    // At once after the rollback (whose epoch lies ahead of the clocks), a write and a
    // snapshot: the snapshot holds the write.
    put("a", "again");
    const std::string snap2 =
        s.ok({"cont", "snap", "create", "tank", label, "--name", "s2"})["epoch"];
    EXPECT_EQ(get("a", snap2), "again");
  }
}

INSTANTIATE_TEST_SUITE_P(Offsets, SnapshotClocks, ::testing::Values(5000, -5000),
                         [](const auto& info) {
                           return info.param > 0 ? std::string("EnginesAhead")
                                                 : std::string("EnginesBehind");
                         });

// Seeded random sequences of writes, punches, snapshots, rollbacks and clean restarts of an
// engine on two containers of one pool (a rollback of one moves the clocks of the targets the
// other uses too), with the engines' clocks ahead, behind or with the service's; after every
// step a model (each container's keys now and at each snapshot) gives every read. While an
// engine is stopped a snapshot is refused and changes nothing; restarted, the engine's clocks
// start above the pool's newest snapshot. TESSERA_SEED=S repeats a run.
TEST(SnapshotClocks, RandomWritesSnapshotsAndRollbacksMatchAModel) {
  uint64_t seed = std::random_device{}();
  if (const char* e = std::getenv("TESSERA_SEED")) seed = std::strtoull(e, nullptr, 10);
  std::printf("seed %lu (TESSERA_SEED repeats it)\n", static_cast<unsigned long>(seed));
  std::mt19937_64 rng(seed);
  const int offset = std::vector<int>{-3000, 0, 3000}[rng() % 3];
  SCOPED_TRACE(fmt::format("seed {}, engine clocks {} ms apart", seed, offset));
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "3", "--targets", "1",
        fmt::format("--engine-arg=--clock-offset-ms={}", offset)});
  s.ok({"pool", "create", "tank", "--size", "256M"});
  using Keys = std::map<std::string, std::string>;
  struct Model {
    std::string label;
    Keys now;
    std::vector<std::pair<std::string, Keys>> snaps;  // epoch, the keys then
  };
  std::vector<Model> conts = {{"x", {}, {}}, {"y", {}, {}}};
  s.ok({"cont", "create", "tank", "x", "--oclass", "RP_2GX"});
  s.ok({"cont", "create", "tank", "y", "--oclass", "EC_2P1G1"});
  const std::vector<std::string> akeys = {"a", "b", "c"};
  auto obj = [&](const Model& c, const std::string& op, const std::string& akey) {
    return std::vector<std::string>{"obj",    op,   "--oid",  "1",    "--dkey", "d",
                                    "--akey", akey, "--pool", "tank", "--cont", c.label};
  };
  // Every key of `c` at `epoch` ("" = now) against `want`.
  auto check = [&](const Model& c, const std::string& epoch, const Keys& want, int step) {
    for (const auto& k : akeys) {
      auto a = obj(c, "get", k);
      if (!epoch.empty()) a.insert(a.end(), {"--epoch", epoch});
      auto [rc, j] = s.run(a);
      auto it = want.find(k);
      const std::string got =
          rc == 0 ? j["data"].get<std::string>() : "<" + j.value("error", "?") + ">";
      const std::string expect = it == want.end() ? "<not found>" : it->second;
      EXPECT_EQ(got, expect) << "step " << step << ", container " << c.label << ", akey " << k
                             << ", epoch '" << epoch << "'";
      if (got != expect) return false;
    }
    return true;
  };
  for (int step = 0; step < 40; ++step) {
    Model& c = conts[rng() % conts.size()];
    const std::string k = akeys[rng() % akeys.size()];
    switch (rng() % 9) {
      case 0:
      case 1:
      case 2: {
        const std::string v = fmt::format("v{}", step);
        s.ok(obj(c, "put", k), v);
        c.now[k] = v;
        break;
      }
      case 3:
        s.ok(obj(c, "punch", k));
        c.now.erase(k);
        break;
      case 4:
      case 5: {
        json r =
            s.ok({"cont", "snap", "create", "tank", c.label, "--name", fmt::format("s{}", step)});
        c.snaps.emplace_back(r["epoch"].get<std::string>(), c.now);
        break;
      }
      case 6:
        if (!c.snaps.empty()) {
          const auto& [epoch, keys] = c.snaps[rng() % c.snaps.size()];
          s.ok({"cont", "rollback", "tank", c.label, "--epoch", epoch});
          c.now = keys;
        }
        break;
      case 7: {
        const int rank = 1 + static_cast<int>(rng() % 2);  // (rank 0 hosts the service)
        s.ok({"system", "kill", "--rank", std::to_string(rank), "--signal", "TERM"});
        ASSERT_TRUE(tessera::testing::eventually(
            [&] {
              const json q = s.ok({"system", "query"});
              for (const auto& r : q["ranks"]) {
                if (r["rank"] == rank) return r["state"] == "stopped";
              }
              return false;
            },
            std::chrono::seconds(60)))
            << "rank " << rank << " did not stop";
        const std::string e =
            s.err({"cont", "snap", "create", "tank", c.label, "--name", fmt::format("s{}", step)});
        EXPECT_NE(e.find(fmt::format("rank {} serves it but is stopped", rank)), std::string::npos)
            << e;
        s.ok({"system", "start"});  // (with the recorded --clock-offset-ms)
        break;
      }
      default:
        ASSERT_TRUE(check(c, "", c.now, step));
        if (!c.snaps.empty()) {
          const auto& [epoch, keys] = c.snaps[rng() % c.snaps.size()];
          ASSERT_TRUE(check(c, epoch, keys, step));
        }
    }
  }
  for (const Model& c : conts) {
    EXPECT_EQ(s.ok({"cont", "snap", "list", "tank", c.label})["snapshots"].size(), c.snaps.size());
    EXPECT_TRUE(check(c, "", c.now, 40));
    for (const auto& [epoch, keys] : c.snaps) EXPECT_TRUE(check(c, epoch, keys, 40));
  }
}

// The targets learn a snapshot's epoch in memory; an engine killed -9 before it wrote anything
// above it comes back with the clock its log recovers, behind the snapshot when its wall clock
// is. On joining it raises its clocks above the pool's newest snapshot before it serves: a write
// after the restart does not land in the snapshot. (Here the whole system dies at once, so no
// target is marked down; the engines' clocks read a minute behind the service's, longer than the
// kills and the restart take.)
TEST(SnapshotClocks, EnginesKilledAfterASnapshotStartAboveIt) {
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "3", "--targets", "1",
        "--engine-arg=--clock-offset-ms=-60000"});
  s.ok({"pool", "create", "tank", "--size", "256M"});
  s.ok({"cont", "create", "tank", "c", "--oclass", "RP_2GX"});
  const std::vector<std::string> put = {"obj",    "put", "--oid",  "1",    "--dkey", "d",
                                        "--akey", "a",   "--pool", "tank", "--cont", "c"};
  std::vector<std::string> get = put;
  get[1] = "get";
  s.ok(put, "before");
  const std::string snap = s.ok({"cont", "snap", "create", "tank", "c", "--name", "s"})["epoch"];
  for (const std::string rank : {"0", "1", "2"}) {  // the service first: it marks no one dead
    s.ok({"system", "kill", "--rank", rank, "--force"});
  }
  s.ok({"system", "start"});  // (with the recorded --clock-offset-ms)
  s.ok(put, "after");
  std::vector<std::string> at = get;
  at.insert(at.end(), {"--epoch", snap});
  EXPECT_EQ(s.ok(at)["data"], "before");
  EXPECT_EQ(s.ok(get)["data"], "after");
}

// Engines whose clocks disagree with each other: rank 2's reads 5 s ahead, the others' do not.
// The snapshot's epoch comes from rank 2; the other targets must learn it before the snapshot
// is answered (the second round of the fence), or a write they stamp after it lands in it.
TEST(SnapshotClocks, WritesAfterASnapshotStayOutOfItWhenOneEngineIsAhead) {
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "3", "--targets", "1"});
  s.ok({"system", "kill", "--rank", "2", "--signal", "TERM"});
  s.ok({"system", "start", "--ranks", "2", "--engine-arg=--clock-offset-ms=5000"});
  s.ok({"pool", "create", "tank", "--size", "256M"});
  s.ok({"cont", "create", "tank", "c", "--oclass", "S1"});
  auto obj = [&](const char* op, int oid) {
    return std::vector<std::string>{"obj",    op,     "--oid",  std::to_string(oid),
                                    "--dkey", "d",    "--akey", "a",
                                    "--pool", "tank", "--cont", "c"};
  };
  constexpr int kObjects = 12;  // single copies spread over the three engines
  for (int o = 1; o <= kObjects; ++o) s.ok(obj("put", o), "before");
  const std::string snap = s.ok({"cont", "snap", "create", "tank", "c", "--name", "s"})["epoch"];
  for (int o = 1; o <= kObjects; ++o) s.ok(obj("put", o), "after");
  for (int o = 1; o <= kObjects; ++o) {
    auto a = obj("get", o);
    a.insert(a.end(), {"--epoch", snap});
    EXPECT_EQ(s.ok(a)["data"], "before") << "object " << o;
  }
}

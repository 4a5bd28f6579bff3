// `tessera cont rollback` against a local system started through the CLI (3 engines, 2 targets
// each), on a replicated and on an erasure-coded container: after a rollback to a snapshot,
// values, deletions, arrays with holes and listings read as they did at the snapshot; a later
// snapshot still reads as it was; a restart keeps all of it; writes after the rollback land on
// top; bad requests get clear errors. Background aggregation runs all along, snapshots kept.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/integration/cli_system.hpp"

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
  EXPECT_NE(s.err({"cont", "rollback", "tank", "rep", "--snap", "nope"})
                .find("no snapshot named 'nope'"),
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

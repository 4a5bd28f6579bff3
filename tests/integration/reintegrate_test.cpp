// Reintegration through the CLI against a real local system: a rank's down targets come back
// by default (its healthy targets keep serving), and a target whose data no rebuild copied
// elsewhere keeps it: reintegration never discards the last up-to-date copy.
#include <gtest/gtest.h>

#include <string>

#include "tests/integration/cli_system.hpp"

using namespace tessera::testing;
using nlohmann::json;

namespace {
std::string state_of(const json& pool, int rank, int target) {
  for (const auto& t : pool["targets"]) {
    if (t["rank"] == rank && t["target"] == target) return t["state"].get<std::string>();
  }
  return "absent";
}
}  // namespace

TEST(Reintegrate, TakesBackOnlyTheDownTargetsOfARank) {
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "3", "--targets", "2"});
  s.ok({"pool", "create", "P", "--target-size", "64M"});
  s.ok({"cont", "create", "P", "C", "--type", "KV", "--oclass", "RP_2GX", "--rf", "1"});
  for (int i = 0; i < 8; ++i) {
    s.ok({"kv", "put", "--pool", "P", "--cont", "C", "k" + std::to_string(i), "v"});
  }
  s.ok({"system", "stop-target", "--rank", "1", "--target", "1"});
  s.ok({"pool", "rebuild", "wait", "P"});
  json p = s.ok({"pool", "query", "P"})["pool"];
  EXPECT_EQ(state_of(p, 1, 1), "down-out") << p.dump();
  EXPECT_EQ(state_of(p, 1, 0), "up-in") << p.dump();
  // No --target: the rank's targets that are out come back; 1:0 is not an error.
  s.ok({"pool", "reintegrate", "P", "--rank", "1"});
  s.ok({"pool", "rebuild", "wait", "P"});
  p = s.ok({"pool", "query", "P"})["pool"];
  for (const auto& t : p["targets"]) EXPECT_EQ(t["state"], "up-in") << p.dump();
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(s.ok({"kv", "get", "--pool", "P", "--cont", "C", "k" + std::to_string(i)})["value"],
              "v");
  }
  std::string e = s.err({"pool", "reintegrate", "P", "--rank", "2"});
  EXPECT_NE(e.find("no down or down-out target"), std::string::npos) << e;
}

TEST(Reintegrate, KeepsDataThatNoRebuildCopiedElsewhere) {
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "3", "--targets", "1"});
  s.ok({"pool", "create", "P", "--ranks", "1,2", "--target-size", "64M"});
  s.ok({"cont", "create", "P", "S", "--type", "KV", "--oclass", "S1"});
  for (int i = 0; i < 6; ++i) {
    s.ok({"kv", "put", "--pool", "P", "--cont", "S", "k" + std::to_string(i), "v" + std::to_string(i)});
  }
  const int holder = s.rank_holding_objects("P");
  ASSERT_TRUE(holder == 1 || holder == 2) << "the S1 object is on one of the pool's engines: "
                                          << s.ok({"pool", "query", "P"}).dump();
  // The only copy's engine is taken out by hand: the rebuild has nothing to copy it from and
  // the container has lost data (UNCLEAN).
  s.ok({"pool", "exclude", "P", "--rank", std::to_string(holder)});
  s.ok({"pool", "rebuild", "wait", "P"});
  EXPECT_EQ(state_of(s.ok({"pool", "query", "P"})["pool"], holder, 0), "down-out");
  EXPECT_NE(s.err({"kv", "get", "--pool", "P", "--cont", "S", "k0"}), "");
  // Back in: its data is the only copy there is, so it is kept, not dropped as stale.
  s.ok({"pool", "reintegrate", "P", "--rank", std::to_string(holder)});
  s.ok({"pool", "rebuild", "wait", "P"});
  EXPECT_EQ(state_of(s.ok({"pool", "query", "P"})["pool"], holder, 0), "up-in");
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(s.ok({"kv", "get", "--pool", "P", "--cont", "S", "k" + std::to_string(i)})["value"],
              "v" + std::to_string(i));
  }
}

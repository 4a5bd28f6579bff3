// A target whose store fails its checks when its engine opens it (here: a write-ahead log group
// damaged in the middle of the log while the system was stopped), through the CLI against a
// real local system. The engine serves the pool's other targets, does not serve the damaged one
// and reports it; `pool query` names it. With replicas the pool takes the target out and
// rebuilds its data from the other copies, and a reintegration formats it anew. Without them
// the target stays in the map (taking it out would strand data), and every request for its data
// names the damage until an administrator excludes it, accepting the loss.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "tests/integration/cli_system.hpp"
#include "tests/storage_files.hpp"

using namespace tessera::testing;
using nlohmann::json;

namespace {

// The file of `pool`'s store on `rank`'s target 0.
std::string pool_file(CliSystem& s, const std::string& pool, int rank) {
  const json q = s.ok({"pool", "query", pool, "--no-space"});
  return s.dir() + "/rank" + std::to_string(rank) + "/pools/" +
         std::to_string(q["pool"]["id"].get<int>()) + "-" + q["pool"]["uuid"].get<std::string>() +
         "/target0.dat";
}

json target_of(const json& pool, int rank) {
  for (const auto& e : pool["engines"]) {
    if (e["rank"] == rank) return e["targets"][0];
  }
  return json();
}

// Waits until `pool query` shows rank's target 0 damaged (the engine reports it once it has
// joined) and returns the pool.
json wait_damaged(CliSystem& s, const std::string& pool, int rank) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  json p;
  while (std::chrono::steady_clock::now() < until) {
    p = s.ok({"pool", "query", pool, "--no-space"})["pool"];
    if (target_of(p, rank).contains("damaged")) return p;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "pool " << pool << " never showed rank " << rank
                << " target 0 damaged: " << p.dump();
  return p;
}

std::string key(int i) {
  return "k" + std::to_string(i);
}

// Whether every target of `pool` answers for its store (`pool query` asks each for its space).
bool every_target_answers(CliSystem& s, const std::string& pool) {
  const json q = s.ok({"pool", "query", pool});
  for (const auto& t : q["pool"]["targets"]) {
    if (t.contains("error")) {
      ADD_FAILURE() << t.dump();
      return false;
    }
  }
  return !q["pool"]["targets"].empty();
}

}  // namespace

TEST(ShardDamage, ADamagedLogIsNotServedIsRebuiltFromReplicasAndNamedWithoutThem) {
  CliSystem s;
  // Checkpoints only under log pressure: every update stays in the log until the damage.
  const std::vector<std::string> start = {
      "system",    "start",     "--dir",
      s.dir(),     "--engines", "3",
      "--targets", "1",         "--engine-arg=--checkpoint-interval-ms=0"};
  s.ok(start);
  s.ok({"pool", "create", "P", "--size", "192M"});
  s.ok({"pool", "create", "Q", "--size", "192M"});
  s.ok({"cont", "create", "P", "R", "--type", "KV", "--oclass", "RP_3G1", "--rf", "2"});
  s.ok({"cont", "create", "Q", "S", "--type", "KV", "--oclass", "S1"});
  constexpr int kKeys = 8;
  for (int i = 0; i < kKeys; ++i) {
    s.ok({"kv", "put", "--pool", "P", "--cont", "R", key(i), "r" + std::to_string(i)});
    s.ok({"kv", "put", "--pool", "Q", "--cont", "S", key(i), "s" + std::to_string(i)});
  }
  // The damaged engine: the one holding the only copy of S (every engine holds R).
  const int rank = s.rank_holding_objects("Q");
  ASSERT_GE(rank, 0);
  const std::string p_file = pool_file(s, "P", rank), q_file = pool_file(s, "Q", rank);
  s.ok({"system", "stop"});
  ASSERT_TRUE(damage_middle_of_log(p_file)) << p_file;
  ASSERT_TRUE(damage_middle_of_log(q_file)) << q_file;
  s.ok(start);

  // Replicated: reported, taken out, rebuilt from the other copies.
  json p = wait_damaged(s, "P", rank);
  const std::string reason = target_of(p, rank)["damaged"].get<std::string>();
  EXPECT_NE(reason.find("write-ahead log is damaged"), std::string::npos) << p.dump();
  ASSERT_EQ(p["damaged"].size(), 1u) << p.dump();
  EXPECT_EQ(p["damaged"][0]["rank"], rank) << p.dump();
  s.ok({"pool", "rebuild", "wait", "P"});
  p = s.ok({"pool", "query", "P", "--no-space"})["pool"];
  EXPECT_EQ(target_of(p, rank)["state"], "down-out") << p.dump();
  for (int i = 0; i < kKeys; ++i) {
    EXPECT_EQ(s.ok({"kv", "get", "--pool", "P", "--cont", "R", key(i)})["value"],
              "r" + std::to_string(i));
  }
  s.ok({"kv", "put", "--pool", "P", "--cont", "R", "after", "damage"});
  s.ok({"cont", "check", "P", "R"});
  // The text form names it too.
  auto [trc, text] = run_command({"/bin/sh", "-c",
                                  "HOME=" + s.base() + " TESSERA_SYSTEM=" + s.dir() + " " +
                                      TESSERA_CLI_BIN + " pool query P --no-space"});
  ASSERT_EQ(trc, 0) << text;
  EXPECT_NE(text.find("damaged: target " + std::to_string(rank) + ":0"), std::string::npos) << text;

  // Reintegrated: formatted anew (never kept), filled by a rebuild, the damage forgotten.
  s.ok({"pool", "reintegrate", "P", "--rank", std::to_string(rank), "--target", "0"});
  s.ok({"pool", "rebuild", "wait", "P"});
  p = s.ok({"pool", "query", "P", "--no-space"})["pool"];
  EXPECT_EQ(target_of(p, rank)["state"], "up-in") << p.dump();
  EXPECT_FALSE(target_of(p, rank).contains("damaged")) << p.dump();
  EXPECT_TRUE(every_target_answers(s, "P")) << "the reintegrated target still refuses the pool";
  EXPECT_TRUE(p["damaged"].empty()) << p.dump();
  s.ok({"cont", "check", "P", "R"});

  // Not replicated: kept in the map (its data has no other copy), and every request for that
  // data is answered with the damage.
  json q = wait_damaged(s, "Q", rank);
  EXPECT_EQ(target_of(q, rank)["state"], "up-in") << q.dump();
  EXPECT_NE(q["redundancy"], "normal") << q.dump();
  std::string e = s.err({"kv", "get", "--pool", "Q", "--cont", "S", key(0)});
  EXPECT_NE(e.find("damaged"), std::string::npos) << e;
  e = s.err({"kv", "put", "--pool", "Q", "--cont", "S", "new", "v"});
  EXPECT_NE(e.find("damaged"), std::string::npos) << e;
  // Excluded by the administrator (the loss accepted), then reintegrated: formatted anew.
  s.ok({"pool", "exclude", "Q", "--rank", std::to_string(rank), "--target", "0"});
  s.ok({"pool", "rebuild", "wait", "Q"});
  s.ok({"pool", "reintegrate", "Q", "--rank", std::to_string(rank), "--target", "0"});
  s.ok({"pool", "rebuild", "wait", "Q"});
  q = s.ok({"pool", "query", "Q", "--no-space"})["pool"];
  EXPECT_EQ(target_of(q, rank)["state"], "up-in") << q.dump();
  EXPECT_TRUE(q["damaged"].empty()) << q.dump();
  EXPECT_TRUE(every_target_answers(s, "Q")) << "the reintegrated target still refuses the pool";

  // A restart opens both stores cleanly: nothing is damaged any more.
  s.ok({"system", "stop"});
  s.ok(start);
  for (int i = 0; i < kKeys; ++i) {
    EXPECT_EQ(s.ok({"kv", "get", "--pool", "P", "--cont", "R", key(i)})["value"],
              "r" + std::to_string(i));
  }
  p = s.ok({"pool", "query", "P", "--no-space"})["pool"];
  EXPECT_TRUE(p["damaged"].empty()) << p.dump();
  EXPECT_EQ(target_of(p, rank)["state"], "up-in") << p.dump();
}

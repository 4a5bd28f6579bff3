// Space after deletes, through the CLI against a real local system: a full pool refuses writes
// with `no space`; deleting values and `tessera pool aggregate` give the space back at once
// (aggregation to now, then a checkpoint), without waiting for the background pass.
#include <gtest/gtest.h>

#include <fstream>
#include <chrono>
#include <string>
#include <thread>

#include "tests/integration/cli_system.hpp"

using namespace tessera::testing;
using nlohmann::json;

TEST(Space, PoolAggregateReclaimsDeletedValuesAtOnce) {
  CliSystem s;
  // Background aggregation effectively off: only the command may free the space.
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "1", "--targets", "1",
        "--engine-arg=--aggregation-interval-ms=0"});
  s.ok({"pool", "create", "P", "--target-size", "64M"});
  s.ok({"cont", "create", "P", "C", "--type", "KV", "--oclass", "S1"});
  // 4 MiB values: the pool (one 64 MiB target) is full after about ten.
  const std::string f = s.base() + "/value";
  std::ofstream(f, std::ios::binary) << std::string(4u << 20, 'x');
  auto put = [&](int i) {
    return s.run({"obj", "put", "--pool", "P", "--cont", "C", "--oid", "5", "--dkey", "d",
                  "--akey", "a" + std::to_string(i), "--file", f});
  };
  int stored = 0;
  for (; stored < 200; ++stored) {
    auto [rc, j] = put(stored);
    if (rc != 0) {
      EXPECT_EQ(j.value("error", std::string()), "no space") << j.dump();
      EXPECT_NE(j.value("message", std::string()).find("rank 0 target 0"), std::string::npos)
          << j.dump();
      break;
    }
  }
  ASSERT_GT(stored, 4) << "the pool filled before four 4 MiB values";
  ASSERT_LT(stored, 200) << "the pool never filled";
  for (int i = 0; i < stored; ++i) {
    s.ok({"obj", "punch", "--pool", "P", "--cont", "C", "--oid", "5", "--dkey", "d", "--akey",
          "a" + std::to_string(i)});
  }
  // Deleted, but nothing is freed until aggregation drops the versions nobody sees.
  EXPECT_NE(put(1000).first, 0) << "space came back without aggregation";
  json r = s.ok({"pool", "aggregate", "P"});
  EXPECT_GE(r["bytes_freed"].get<uint64_t>(), uint64_t(stored - 1) << 22) << r.dump();
  EXPECT_EQ(r["targets"].size(), 1u);
  for (int i = 0; i < stored - 1; ++i) {
    auto [rc, j] = put(2000 + i);
    ASSERT_EQ(rc, 0) << "value " << i << " after aggregation: " << j.dump();
  }
}

// A full pool frees deleted data by itself, promptly: the write that finds the data region full
// asks its target for an aggregation pass at once (up to a second ago), so once values are
// deleted a later write fits, long before the background pass (here ten minutes away) would run.
TEST(Space, FullPoolFreesDeletedValuesWithoutWaitingForTheBackgroundPass) {
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "1", "--targets", "1",
        "--engine-arg=--aggregation-interval-ms=600000",
        "--engine-arg=--aggregation-delay-ms=600000"});
  s.ok({"pool", "create", "P", "--target-size", "64M"});
  s.ok({"cont", "create", "P", "C", "--type", "KV", "--oclass", "S1"});
  const std::string f = s.base() + "/value";
  std::ofstream(f, std::ios::binary) << std::string(4u << 20, 'x');
  auto put = [&](int i) {
    return s.run({"obj", "put", "--pool", "P", "--cont", "C", "--oid", "5", "--dkey", "d",
                  "--akey", "a" + std::to_string(i), "--file", f});
  };
  int stored = 0;
  for (; stored < 200; ++stored) {
    auto [rc, j] = put(stored);
    if (rc != 0) {
      ASSERT_EQ(j.value("error", std::string()), "no space") << j.dump();
      break;
    }
  }
  ASSERT_GT(stored, 4);
  ASSERT_LT(stored, 200) << "the pool never filled";
  for (int i = 0; i < stored; ++i) {
    s.ok({"obj", "punch", "--pool", "P", "--cont", "C", "--oid", "5", "--dkey", "d", "--akey",
          "a" + std::to_string(i)});
  }
  // Writes fail while the pass runs, then fit: wait for that (bounded), never for a fixed time.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  json last;
  bool fits = false;
  int n = 1000;
  while (!fits && std::chrono::steady_clock::now() < until) {
    auto [rc, j] = put(n);
    fits = rc == 0;
    if (!fits) {
      last = j;
      ASSERT_EQ(j.value("error", std::string()), "no space") << j.dump();
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }
  ASSERT_TRUE(fits) << "deleted space never came back: " << last.dump();
  for (int i = 1; i < stored - 1; ++i) {
    auto [rc, j] = put(n + i);
    ASSERT_EQ(rc, 0) << "value " << i << " after the deletes: " << j.dump();
  }
}

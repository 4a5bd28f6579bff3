// Space after deletes, through the CLI against a real local system: a full pool refuses writes
// with `no space`; deleting values and `tessera pool aggregate` give the space back at once
// (aggregation to now, then a checkpoint), without waiting for the background pass.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "tests/integration/cli_system.hpp"

using namespace tessera::testing;
using nlohmann::json;

namespace {

// One engine, a 64 MiB pool P with an S1 container C, and 4 MiB values to fill it with (full
// after about ten).
struct FullPool {
  CliSystem s;
  std::string file;
  explicit FullPool(const std::vector<std::string>& engine_args) {
    std::vector<std::string> start{"system",    "start", "--dir",     s.dir(),
                                   "--engines", "1",     "--targets", "1"};
    start.insert(start.end(), engine_args.begin(), engine_args.end());
    s.ok(start);
    s.ok({"pool", "create", "P", "--target-size", "64M"});
    s.ok({"cont", "create", "P", "C", "--type", "KV", "--oclass", "S1"});
    file = s.base() + "/value";
    std::ofstream(file, std::ios::binary) << std::string(4u << 20, 'x');
  }
  std::pair<int, json> put(int i) {
    return s.run({"obj", "put", "--pool", "P", "--cont", "C", "--oid", "5", "--dkey", "d", "--akey",
                  "a" + std::to_string(i), "--file", file});
  }
  // Puts value i, retrying while the answer is `no space` for at most 90 s (a checkpoint or an
  // aggregation pass may be running); `last` keeps the last refusal.
  bool fits(int i, json& last) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(90);
    while (std::chrono::steady_clock::now() < until) {
      auto [rc, j] = put(i);
      if (rc == 0) return true;
      last = j;
      if (j.value("error", std::string()) != "no space") return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    return false;
  }
  // Puts values 0, 1, ... until one fails with `no space`; returns how many were stored.
  int fill() {
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
    EXPECT_GT(stored, 4) << "the pool filled before four 4 MiB values";
    EXPECT_LT(stored, 200) << "the pool never filled";
    return stored;
  }
  void punch_all(int stored) {
    for (int i = 0; i < stored; ++i) {
      s.ok({"obj", "punch", "--pool", "P", "--cont", "C", "--oid", "5", "--dkey", "d", "--akey",
            "a" + std::to_string(i)});
    }
  }
};

}  // namespace

TEST(Space, PoolAggregateReclaimsDeletedValuesAtOnce) {
  // Background aggregation effectively off: only the command may free the space.
  FullPool p(
      {"--engine-arg=--aggregation-interval-ms=0", "--engine-arg=--checkpoint-interval-ms=1000"});
  CliSystem& s = p.s;
  auto put = [&](int i) { return p.put(i); };
  const int stored = p.fill();
  ASSERT_FALSE(::testing::Test::HasFailure());
  p.punch_all(stored);
  // Deleted, but nothing is freed until aggregation drops the versions nobody sees.
  EXPECT_NE(put(1000).first, 0) << "space came back without aggregation";
  json r = s.ok({"pool", "aggregate", "P"});
  EXPECT_GE(r["bytes_freed"].get<uint64_t>(), uint64_t(stored - 1) << 22) << r.dump();
  EXPECT_EQ(r["targets"].size(), 1u);
  // Room for the next checkpoint is kept too: a write may wait for one (every second here).
  json last;
  for (int i = 0; i < stored - 1; ++i) {
    ASSERT_TRUE(p.fits(2000 + i, last)) << "value " << i << " after aggregation: " << last.dump();
  }
}

// A full pool frees deleted data by itself, promptly: the write that finds the data region full
// asks its target for an aggregation pass at once (up to a second ago), so once values are
// deleted a later write fits, long before the background pass (here ten minutes away) would run.
// What a write may use also leaves room for the next checkpoint, which grows with the log
// written since the last one: on a loaded machine a checkpoint can lag, so each write may wait
// for one (every second here), never for the background aggregation pass.
TEST(Space, FullPoolFreesDeletedValuesWithoutWaitingForTheBackgroundPass) {
  FullPool p({"--engine-arg=--aggregation-interval-ms=600000",
              "--engine-arg=--aggregation-delay-ms=600000",
              "--engine-arg=--checkpoint-interval-ms=1000"});
  const int stored = p.fill();
  ASSERT_FALSE(::testing::Test::HasFailure());
  p.punch_all(stored);
  // Writes fail while the pass runs, then fit: wait for that (bounded), never for a fixed time.
  json last;
  ASSERT_TRUE(p.fits(1000, last)) << "deleted space never came back: " << last.dump();
  for (int i = 1; i < stored - 1; ++i) {
    ASSERT_TRUE(p.fits(1000 + i, last)) << "value " << i << " after the deletes: " << last.dump();
  }
}

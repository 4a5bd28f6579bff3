// A clean stop is not a crash: SIGTERM of an engine or of the management service's host, and a
// paused management service, through the CLI against a real local system. Nothing may be
// marked dead for it, no data may move, and every acknowledged value reads back.
#include <signal.h>
#include <stdlib.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/integration/cli_system.hpp"

using namespace tessera::testing;
using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

// Writes `n` keys to pool P container C and returns nothing; every put must be acknowledged.
void put_keys(CliSystem& s, int from, int n) {
  for (int i = from; i < from + n; ++i) {
    s.ok({"kv", "put", "--pool", "P", "--cont", "C", "key" + std::to_string(i),
          "value" + std::to_string(i)});
  }
}

void expect_keys(CliSystem& s, int n) {
  for (int i = 0; i < n; ++i) {
    json g = s.ok({"kv", "get", "--pool", "P", "--cont", "C", "key" + std::to_string(i)});
    EXPECT_EQ(g.value("value", std::string()), "value" + std::to_string(i)) << g.dump();
  }
}

// Every target of pool P and the rebuild record.
json pool(CliSystem& s) {
  return s.ok({"pool", "query", "P"})["pool"];
}

void expect_untouched(const json& p, size_t targets) {
  ASSERT_EQ(p["targets"].size(), targets) << p.dump();
  for (const auto& t : p["targets"]) EXPECT_EQ(t["state"], "up-in") << p.dump();
  EXPECT_EQ(p["rebuild"]["generation"], 0) << "no data may move: " << p["rebuild"].dump();
}

std::string member_state(CliSystem& s, int rank) {
  json q = s.ok({"system", "query"});
  for (const auto& r : q["ranks"]) {
    if (r["rank"] == rank) return r["state"].get<std::string>();
  }
  return "absent";
}

void start_system(CliSystem& s, std::vector<std::string> extra = {}) {
  std::vector<std::string> a{"system",    "start", "--dir",     s.dir(),
                             "--engines", "4",     "--targets", "2"};
  a.insert(a.end(), extra.begin(), extra.end());
  s.ok(a);
  s.ok({"pool", "create", "P", "--size", "512M"});
  s.ok({"cont", "create", "P", "C", "--type", "KV", "--oclass", "RP_3GX", "--rf", "2"});
}

}  // namespace

// The management service's host stopped with SIGTERM (a reboot, a service restart) used to
// mark every other engine dead as their connections closed under it: every target went
// down-out, and the documented reintegration then dropped all the data.
TEST(CleanStop, ManagementHostSigtermKeepsEveryTargetAndEveryValue) {
  CliSystem s;
  start_system(s);
  put_keys(s, 0, 8);
  s.ok({"system", "kill", "--rank", "0", "--signal", "TERM"});
  s.ok({"system", "start"});
  expect_untouched(pool(s), 8);
  for (int r = 0; r < 4; ++r) EXPECT_EQ(member_state(s, r), "joined") << "rank " << r;
  EXPECT_EQ(pool(s)["redundancy"], "normal");
  expect_keys(s, 8);
  put_keys(s, 8, 2);
  expect_keys(s, 10);
}

// Another engine stopped with SIGTERM is `stopped`, not dead: its targets stay in the map, the
// pool says it is degraded meanwhile, and once it is back nothing has moved.
TEST(CleanStop, EngineSigtermIsAStopNotADeath) {
  CliSystem s;
  start_system(s, {"--engine-arg=--mgmt-stop-grace-ms=600000"});
  put_keys(s, 0, 6);
  s.ok({"system", "kill", "--rank", "2", "--signal", "TERM"});
  EXPECT_EQ(member_state(s, 2), "stopped");
  json p = pool(s);
  expect_untouched(p, 8);
  EXPECT_EQ(p["redundancy"], "degraded") << "an engine is away: " << p.dump();
  expect_keys(s, 6);  // reads go to the other replicas
  s.ok({"system", "start"});
  EXPECT_EQ(member_state(s, 2), "joined");
  expect_untouched(pool(s), 8);
  EXPECT_EQ(pool(s)["redundancy"], "normal");
  put_keys(s, 6, 2);
  expect_keys(s, 8);
}

// A heartbeat sent after the service recorded the stop is answered "join again": the stopping
// engine used to join again, then close its connection, which the service took for a crash (an
// exclusion and a rebuild in the middle of a rolling restart). On a loaded machine its main
// thread may come late to the rest of the stop: here it comes 300 ms late (a delay point,
// core/crash_point.hpp), with a heartbeat every 20 ms.
TEST(CleanStop, AStoppingEngineNeverJoinsAgain) {
  CliSystem s;
  ::setenv("TESSERA_DELAY_AT", "engine.stop.recorded=300", 1);
  start_system(s, {"--engine-arg=--mgmt-heartbeat-ms=20"});
  put_keys(s, 0, 4);
  for (int rank = 1; rank < 4; ++rank) {
    s.ok({"system", "kill", "--rank", std::to_string(rank), "--signal", "TERM"});
    s.ok({"system", "start"});
    for (int r = 0; r < 4; ++r) ASSERT_EQ(member_state(s, r), "joined") << "rank " << r;
  }
  ::unsetenv("TESSERA_DELAY_AT");
  expect_untouched(pool(s), 8);
  expect_keys(s, 4);
}

// An engine that stopped cleanly and does not come back within the grace period is dead: its
// targets leave the map and rebuild refills the third copies.
TEST(CleanStop, EngineThatDoesNotReturnWithinTheGraceIsRebuilt) {
  CliSystem s;
  start_system(s, {"--engine-arg=--mgmt-stop-grace-ms=1500"});
  put_keys(s, 0, 6);
  s.ok({"system", "kill", "--rank", "3", "--signal", "TERM"});
  ASSERT_TRUE(eventually([&] { return member_state(s, 3) == "dead"; }, std::chrono::seconds(30)));
  s.ok({"pool", "rebuild", "wait", "P"});
  json p = pool(s);
  for (const auto& t : p["targets"]) {
    EXPECT_EQ(t["state"], t["rank"] == 3 ? "down-out" : "up-in") << p.dump();
  }
  expect_keys(s, 6);
}

// A paused management host (SIGSTOP) heard nobody meanwhile; on resuming it must not blame the
// engines (nor itself) for that silence.
TEST(CleanStop, PausedManagementHostJudgesNobodyForItsOwnSilence) {
  CliSystem s;
  start_system(s, {"--engine-arg=--mgmt-dead-after-ms=2000"});
  put_keys(s, 0, 5);
  s.ok({"system", "kill", "--rank", "0", "--signal", "STOP", "--force"});
  const auto paused = Clock::now();
  // A command to a hung service honours its timeout (the service accepts the connection,
  // then answers nothing) and says so.
  std::string e = s.err({"pool", "query", "P", "--timeout-ms", "1500"});
  EXPECT_NE(e.find("no reply from"), std::string::npos) << e;
  EXPECT_NE(e.find("within 1500 ms"), std::string::npos) << e;
  // The fault: a pause past dead_after.
  std::this_thread::sleep_until(paused + std::chrono::seconds(5));
  s.ok({"system", "kill", "--rank", "0", "--signal", "CONT"});
  // The monitor runs every 500 ms and SWIM verdicts queued during the pause arrive at once:
  // give every wrong decision time to be taken, then check none was.
  for (int i = 0; i < 8; ++i) {
    for (int r = 0; r < 4; ++r) ASSERT_EQ(member_state(s, r), "joined") << "rank " << r;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  expect_untouched(pool(s), 8);
  expect_keys(s, 5);
}

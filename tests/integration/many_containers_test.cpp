// A pool with many containers: its view (every container and snapshot) no longer fits the 64 KiB
// a fabric frame carries. Engines once fetched it on the control socket before every
// aggregation pass; a reply that could not be sent closed the engine's join connection, and the
// management service took that for the engine's death every pass. Now the control socket
// carries it (a client's pool query here), aggregation asks only for the pool's snapshot
// epochs, and the engines stay joined through several passes while pool and container commands
// answer.
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "client/mgmt_client.hpp"
#include "telemetry/http.hpp"
#include "tests/integration/cli_system.hpp"

using namespace tessera;
using namespace tessera::testing;
using nlohmann::json;

TEST(ManyContainers, EnginesStayJoinedWhenThePoolViewOutgrowsAFabricFrame) {
  CliSystem s;
  // Aggregation every 300 ms: each pass asks the service for the pool's snapshots.
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "3", "--targets", "1",
        "--engine-arg=--aggregation-interval-ms=300"});
  s.ok({"pool", "create", "tank", "--target-size", "64M"});
  const std::string mgmt = s.mgmt();
  constexpr int kConts = 1200, kThreads = 6;
  std::atomic<int> next{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> th;
  for (int t = 0; t < kThreads; ++t) {
    th.emplace_back([&] {
      MgmtClient mc(mgmt);
      for (int i = next++; i < kConts; i = next++) {
        mgmt::ContProps p;
        p.label = "c" + std::to_string(i);
        if (!mc.cont_create("tank", p).is_ok()) ++failed;
      }
    });
  }
  for (auto& t : th) t.join();
  ASSERT_EQ(failed.load(), 0);
  MgmtClient mc(mgmt);
  auto view = mc.pool_query("tank");
  ASSERT_TRUE(view) << view.status().to_string();
  EXPECT_EQ(view->conts.size(), static_cast<size_t>(kConts));
  const json before = s.ok({"system", "query"});
  // Several aggregation passes on every engine, each after a fetch of the pool's snapshot
  // epochs (a pass whose fetch fails is skipped, not counted): the engines' metrics count them.
  auto passes = [&](const json& rank) -> double {
    auto body = telemetry::http_get(rank["metrics"].get<std::string>(), "/metrics.json",
                                    std::chrono::seconds(30));
    if (!body) {
      ADD_FAILURE() << "metrics of rank " << rank["rank"] << ": " << body.status().to_string();
      return -1;
    }
    const json all = json::parse(*body);
    for (const auto& f : all["families"]) {
      if (f["name"] != "tessera_aggregations_total") continue;
      for (const auto& smp : f["samples"]) {
        if (smp["labels"]["pool"] == "1") return smp["value"].get<double>();
      }
    }
    return -1;
  };
  std::vector<double> start;
  for (const auto& r : before["ranks"]) start.push_back(passes(r));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
  for (size_t i = 0; i < start.size(); ++i) {
    while (passes(before["ranks"][i]) < start[i] + 3 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_GE(passes(before["ranks"][i]), start[i] + 3) << "rank " << i << ": aggregation stalled";
  }
  const json after = s.ok({"system", "query"});
  ASSERT_EQ(after["ranks"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(after["ranks"][i]["state"], "joined") << after.dump();
    EXPECT_EQ(after["ranks"][i]["incarnation"], before["ranks"][i]["incarnation"])
        << "rank " << i << " joined again: its join connection was closed";
  }
  // Containers open writable: no engine was taken for dead.
  json q = s.ok({"cont", "query", "tank", "c7"});
  EXPECT_EQ(q["container"]["health"], "HEALTHY") << q.dump();
}

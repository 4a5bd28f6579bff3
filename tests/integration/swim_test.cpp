// Failure detection among engines (SWIM). An engine that stops answering without closing its
// connections (SIGSTOP: a hung node, or a network that drops its packets) is found by its peers'
// pings, declared dead through the management service (whose own heartbeat timeout is set far
// away here, so only the detector can act), and its targets leave every pool map; replicated
// reads go on.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <sstream>

#include "client/container.hpp"
#include "placement/layout.hpp"
#include "tests/integration/local_cluster.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using namespace tessera::testing;

namespace {
std::string file_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
}  // namespace

TEST(SwimTest, HungEngineIsDeclaredDeadByItsPeersAndLeavesThePoolMap) {
  TempDir dir;
  LocalSystem sys(dir.path(), 4, 1, {"--mgmt-dead-after-ms", "600000"});
  Tank t;
  ASSERT_NO_FATAL_FAILURE(open_tank(sys, 4, "c", "RP_3GX", 2, t));
  MgmtClient& mc = *t.mc;
  for (int i = 0; i < 50; ++i) {
    std::string v = "v" + std::to_string(i);
    ASSERT_TRUE(t.cont->kv_put("k" + std::to_string(i), bytes(v)));
  }
  auto before = mc.pool_query("tank");
  ASSERT_TRUE(before);

  ASSERT_EQ(::kill(sys.engine(2).pid(), SIGSTOP), 0);
  const auto t0 = std::chrono::steady_clock::now();
  const bool dead = wait_gone(mc, {2}, std::chrono::seconds(60));
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  ASSERT_TRUE(dead) << "rank 2 was not declared dead";
  std::printf(
      "hung rank 2 declared dead after %lld ms (defaults: period 500, ping timeout 250, "
      "suspicion 3000)\n",
      static_cast<long long>(ms.count()));
  EXPECT_NE(file_text(sys.engine(0).log_path()).find("declared dead by the failure detector"),
            std::string::npos);

  auto after = mc.pool_query("tank");
  ASSERT_TRUE(after);
  EXPECT_GT(after->pool.map.version, before->pool.map.version);
  auto st = after->pool.map.state(2, 0);
  ASSERT_TRUE(st.has_value());
  // Down, or already down-out: the self-heal rebuild of this small pool may have finished
  // between the detection and this query.
  EXPECT_TRUE(*st == placement::TargetState::down || *st == placement::TargetState::down_out)
      << placement::state_name(*st);
  for (int i = 0; i < 50; ++i) {
    auto r = t.cont->kv_get("k" + std::to_string(i));
    ASSERT_TRUE(r) << r.status().to_string();
    EXPECT_EQ(r->data.view(), "v" + std::to_string(i));
  }
  ::kill(sys.engine(2).pid(), SIGCONT);
}

// Every engine runs the detector: with all of them healthy nobody is declared dead, and a
// configuration that cannot work is refused at start.
TEST(SwimTest, HealthyEnginesStayJoinedAndBadSettingsAreRefused) {
  TempDir dir;
  LocalSystem sys(
      dir.path(), 3, 1,
      {"--swim-period-ms", "200", "--swim-ping-timeout-ms", "100", "--swim-suspicion-ms", "600"});
  ASSERT_TRUE(sys.wait_joined(3));
  std::this_thread::sleep_for(std::chrono::seconds(4));  // ~20 probe rounds per engine
  MgmtClient mc(sys.mgmt());
  auto m = mc.system_query();
  ASSERT_TRUE(m);
  for (auto& x : *m) EXPECT_EQ(x.state, mgmt::MemberState::joined) << "rank " << x.rank;
  EXPECT_EQ(file_text(sys.engine(0).log_path()).find("declared dead"), std::string::npos);

  auto o = ServerOptions::in(dir.path() + "/bad");
  std::filesystem::create_directories(o.dir);
  o.extra = {"--swim-period-ms", "100", "--swim-ping-timeout-ms", "300"};
  ServerProcess bad(o);
  Status s = bad.start();
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("swim_ping_timeout_ms"), std::string::npos) << s.to_string();
}

// The management service's judgement of which engines live (mgmt::Liveness) over the real state
// machine, on a clock the test sets; the seeded simulation runs the same judgement as its
// failure detector (tests/sim/rebuild_sim_test.cpp).
#include <gtest/gtest.h>

#include "mgmt/liveness.hpp"
#include "mgmt/state.hpp"

using namespace tessera;
using namespace tessera::mgmt;
using namespace std::chrono_literals;

namespace {
nlohmann::json join(uint32_t rank) {
  return {{"op", "join"},        {"rank", rank},      {"host", "h" + std::to_string(rank)},
          {"control_addr", "x"}, {"provider", "tcp"}, {"fabric_addrs", {"0a0b"}}};
}
Liveness::Options options() {
  Liveness::Options o;
  o.dead_after = 10s;
  o.rejoin_grace = 5s;
  o.stop_grace = 30s;
  o.pause_after = 3s;
  o.dead_confirm_silence = 1500ms;
  o.self_rank = 0;
  return o;
}
const auto nobody_awaited = [](uint32_t) { return false; };
}  // namespace

// Silence for dead_after makes a joined engine dead; heartbeats keep it alive; the service's
// own engine is never judged.
TEST(Liveness, SilenceMakesAnEngineDeadAndHeartbeatsKeepItAlive) {
  MgmtState st;
  for (uint32_t r = 0; r < 3; ++r) ASSERT_TRUE(st.apply(join(r)).is_ok());
  Liveness l(options());
  l.restart(st, 0s);
  Nanos now = 0s;
  for (int i = 0; i < 40; ++i) {  // 20 s of rounds every 500 ms; rank 1 beats, 0 and 2 do not
    now += 500ms;
    EXPECT_FALSE(l.round(now));
    l.heard(1, now);
    auto v = l.judge(st, now, nobody_awaited);
    if (now < 10s) {
      EXPECT_FALSE(v) << "at " << now.count();
      continue;
    }
    ASSERT_TRUE(v);
    EXPECT_EQ(v->rank, 2u) << "only the silent engine that does not host the service";
    EXPECT_EQ(v->why, "silent for 10000 ms");
    ASSERT_TRUE(st.apply({{"op", "leave"}, {"rank", 2}, {"state", "dead"}}).is_ok());
    EXPECT_FALSE(l.judge(st, now, nobody_awaited)) << "a dead engine is not judged again";
    break;
  }
  EXPECT_EQ(st.members().at(1).state, MemberState::joined);
}

// A service that did not run for pause_after judges nobody for it: every engine gets a new
// grace period.
TEST(Liveness, AServiceThatDidNotRunGivesEveryEngineANewGracePeriod) {
  MgmtState st;
  for (uint32_t r = 0; r < 2; ++r) ASSERT_TRUE(st.apply(join(r)).is_ok());
  Liveness l(options());
  l.restart(st, 0s);
  EXPECT_FALSE(l.round(2s));
  auto gap = l.round(14s);  // paused for 12 s
  ASSERT_TRUE(gap);
  EXPECT_EQ(*gap, 12s);
  EXPECT_FALSE(l.judge(st, 14s, nobody_awaited));
  EXPECT_FALSE(l.judge(st, 23s, nobody_awaited));
  EXPECT_TRUE(l.judge(st, 24s, nobody_awaited));
}

// An engine not yet joined to a new leader gets rejoin_grace more.
TEST(Liveness, AnEngineAwaitingItsRejoinGetsMoreTime) {
  MgmtState st;
  for (uint32_t r = 0; r < 2; ++r) ASSERT_TRUE(st.apply(join(r)).is_ok());
  Liveness l(options());
  l.restart(st, 0s);
  auto awaited = [](uint32_t r) { return r == 1; };
  EXPECT_FALSE(l.judge(st, 14s, awaited));
  auto v = l.judge(st, 15s, awaited);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->rank, 1u);
}

// A clean stop waits stop_grace; joining again ends the wait.
TEST(Liveness, AStoppedEngineIsDeadOnlyIfItDoesNotReturnWithinItsGrace) {
  MgmtState st;
  for (uint32_t r = 0; r < 3; ++r) ASSERT_TRUE(st.apply(join(r)).is_ok());
  Liveness l(options());
  l.restart(st, 0s);
  for (uint32_t r : {1u, 2u}) {
    ASSERT_TRUE(st.apply({{"op", "leave"}, {"rank", r}, {"state", "stopped"}}).is_ok());
    l.stopped(r, 1s);
  }
  EXPECT_FALSE(l.judge(st, 30s, nobody_awaited));
  ASSERT_TRUE(st.apply(join(1)).is_ok());  // rank 1 is back
  l.joined(1, 30s);
  auto v = l.judge(st, 31s, nobody_awaited);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->rank, 2u);
  EXPECT_EQ(v->why, "stopped cleanly and did not come back within 30000 ms");
  ASSERT_TRUE(st.apply({{"op", "leave"}, {"rank", 2}, {"state", "dead"}}).is_ok());
  EXPECT_FALSE(l.judge(st, 39s, nobody_awaited));  // rank 1 heard at 30 s
}

// A failure detector's verdict is refused while the engine's own heartbeat is recent.
TEST(Liveness, ARecentHeartbeatContradictsADetectorsVerdict) {
  MgmtState st;
  ASSERT_TRUE(st.apply(join(1)).is_ok());
  Liveness l(options());
  l.restart(st, 0s);
  l.heard(1, 5s);
  auto ago = l.heard_recently(1, 6s);
  ASSERT_TRUE(ago);
  EXPECT_EQ(*ago, 1s);
  EXPECT_FALSE(l.heard_recently(1, 6500ms));
  EXPECT_FALSE(l.heard_recently(7, 6s));
}

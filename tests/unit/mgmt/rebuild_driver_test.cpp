// The management service's rebuild decisions (mgmt::RebuildDriver) over the real state machine,
// without processes; the seeded simulation runs the same driver under faults
// (tests/sim/rebuild_sim_test.cpp).
#include <gtest/gtest.h>

#include "mgmt/rebuild_driver.hpp"
#include "mgmt/state.hpp"

using namespace tessera;
using namespace tessera::mgmt;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {
json join(uint32_t rank) {
  return {{"op", "join"},        {"rank", rank},      {"host", "h" + std::to_string(rank)},
          {"control_addr", "x"}, {"provider", "tcp"}, {"fabric_addrs", {"0a0b", "0c0d"}}};
}
// Ranks 0..3 of two targets each, pool 1 on all of them, an RP_2GX container (rf 1).
void pool_of_four(MgmtState& s) {
  for (uint32_t r = 0; r < 4; ++r) ASSERT_TRUE(s.apply(join(r)).is_ok());
  ASSERT_TRUE(s.apply({{"op", "pool_create"},
                       {"uuid", "u1"},
                       {"label", "p"},
                       {"target_bytes", 1 << 26},
                       {"ranks", {0, 1, 2, 3}},
                       {"acl", acl_json(Acl{})}})
                  .is_ok());
  ContProps props;
  props.label = "c";
  props.oclass = placement::find_class("RP_2GX")->id;
  props.rf = 1;
  ASSERT_TRUE(s.apply({{"op", "cont_create"},
                       {"pool", 1},
                       {"uuid", "cu"},
                       {"props", props_json(props)},
                       {"acl", acl_json(Acl{})},
                       {"epoch", 5}})
                  .is_ok());
}
RebuildDriver::Report done(const MgmtState& s, uint32_t rank, uint32_t target, uint64_t bytes) {
  RebuildDriver::Report r;
  r.pool = 1;
  r.gen = s.pool(1)->rebuild.gen;
  r.rank = rank;
  r.target = target;
  r.objects = 1;
  r.records = 2;
  r.bytes = bytes;
  r.planned = bytes;
  r.done = true;
  return r;
}
// Applies the driver's commands as the service commits them.
void commit_all(MgmtState& s, const RebuildDriver::Actions& a) {
  for (const auto& c : a.commands) ASSERT_TRUE(s.apply(c).is_ok()) << c.dump();
}
}  // namespace

// A death starts a generation: it goes to the joined engines once; it completes when every
// target that serves reported it done, and the dead engine's targets are not waited for.
TEST(RebuildDriver, AGenerationGoesToTheJoinedEnginesAndCompletesWhenEveryServingTargetIsDone) {
  MgmtState s;
  ASSERT_NO_FATAL_FAILURE(pool_of_four(s));
  RebuildDriver d;
  EXPECT_TRUE(d.after_change(s, 1).starts.empty());  // nothing busy
  ASSERT_TRUE(s.apply({{"op", "leave"}, {"rank", 1}, {"state", "dead"}}).is_ok());
  ASSERT_EQ(s.pool(1)->rebuild.state, "busy");
  auto a = d.after_change(s, 1);
  ASSERT_EQ(a.starts.size(), 1u);
  EXPECT_EQ(a.starts[0].gen, s.pool(1)->rebuild.gen);
  EXPECT_EQ(a.starts[0].ranks, (std::vector<uint32_t>{0, 2, 3}));
  EXPECT_TRUE(a.commands.empty());
  EXPECT_TRUE(d.after_change(s, 1).starts.empty()) << "sent once per generation";
  EXPECT_EQ(RebuildDriver::targets_waited(*s.pool(1)), 6u);
  EXPECT_FALSE(RebuildDriver::waits_for(*s.pool(1), 1, 0));

  // The dead engine's targets answer at once with nothing: not counted.
  EXPECT_FALSE(d.report(s, done(s, 1, 0, 0), 1));
  EXPECT_FALSE(d.report(s, done(s, 1, 1, 0), 1));
  for (uint32_t r : {0u, 2u}) {
    for (uint32_t t : {0u, 1u}) EXPECT_FALSE(d.report(s, done(s, r, t, 100), 1));
  }
  auto progress = d.progress(*s.pool(1));
  EXPECT_EQ(progress.targets_done, 4u);
  EXPECT_EQ(progress.targets_total, 6u);
  EXPECT_EQ(progress.bytes, 400u);
  // A report of an older generation changes nothing.
  auto old = done(s, 3, 0, 100);
  old.gen -= 1;
  EXPECT_FALSE(d.report(s, old, 1));
  EXPECT_FALSE(d.report(s, done(s, 3, 0, 100), 1));
  auto cmd = d.report(s, done(s, 3, 1, 100), 7);
  ASSERT_TRUE(cmd);
  EXPECT_EQ((*cmd)["op"], "rebuild_done");
  EXPECT_EQ((*cmd)["bytes"], 600u);
  EXPECT_EQ((*cmd)["objects"], 6u);
  EXPECT_EQ((*cmd)["now_ms"], 7u);
  ASSERT_TRUE(s.apply(*cmd).is_ok());
  EXPECT_EQ(s.pool(1)->rebuild.state, "done");
  EXPECT_EQ(*s.pool(1)->map.state(1, 0), placement::TargetState::down_out);
}

// An engine beyond what the pool tolerates keeps its targets in the map: the generation waits
// for it, and it is sent the generation when it joins again.
TEST(RebuildDriver, AGenerationWaitsForAnEngineTheMapStillCountsOnAndSendsItWhenItJoins) {
  MgmtState s;
  ASSERT_NO_FATAL_FAILURE(pool_of_four(s));
  RebuildDriver d;
  ASSERT_TRUE(s.apply({{"op", "leave"}, {"rank", 1}, {"state", "dead"}}).is_ok());
  commit_all(s, d.after_change(s, 1));
  // A second death beyond rf: its targets stay in the map (up_in), unreachable.
  ASSERT_TRUE(s.apply({{"op", "leave"}, {"rank", 2}, {"state", "dead"}}).is_ok());
  ASSERT_EQ(*s.pool(1)->map.state(2, 0), placement::TargetState::up_in);
  EXPECT_TRUE(d.after_change(s, 1).starts.empty());
  EXPECT_TRUE(RebuildDriver::waits_for(*s.pool(1), 2, 0));
  for (uint32_t r : {0u, 3u}) {
    for (uint32_t t : {0u, 1u}) EXPECT_FALSE(d.report(s, done(s, r, t, 10), 1));
  }
  // Rank 2 joins: the generation is sent to it alone; the generation completes with its reports.
  ASSERT_TRUE(s.apply(join(2)).is_ok());
  auto starts = d.on_join(s, 2);
  ASSERT_EQ(starts.size(), 1u);
  EXPECT_EQ(starts[0].ranks, (std::vector<uint32_t>{2}));
  EXPECT_EQ(starts[0].gen, s.pool(1)->rebuild.gen);
  EXPECT_FALSE(d.report(s, done(s, 2, 0, 10), 1));
  auto cmd = d.report(s, done(s, 2, 1, 10), 1);
  ASSERT_TRUE(cmd);
  EXPECT_EQ((*cmd)["op"], "rebuild_done");
}

// A target's error fails the generation; the retry comes after the back-off, which doubles with
// each failure in a row up to the longest; a completed generation resets it.
TEST(RebuildDriver, AFailedGenerationStartsAgainAfterABackOffThatDoubles) {
  MgmtState s;
  ASSERT_NO_FATAL_FAILURE(pool_of_four(s));
  RebuildDriver d(RebuildDriver::Options{5s, 12s});
  ASSERT_TRUE(s.apply({{"op", "leave"}, {"rank", 1}, {"state", "dead"}}).is_ok());
  commit_all(s, d.after_change(s, 1));
  Nanos now = 100s;
  std::vector<Nanos> waits;
  for (int failure = 0; failure < 3; ++failure) {
    auto r = done(s, 0, 0, 0);
    r.done = false;
    r.error = "no space";
    auto cmd = d.report(s, r, 1);
    ASSERT_TRUE(cmd);
    EXPECT_EQ((*cmd)["op"], "rebuild_failed");
    EXPECT_NE((*cmd)["error"].get<std::string>().find("rank 0 target 0: no space"),
              std::string::npos);
    ASSERT_TRUE(s.apply(*cmd).is_ok());
    commit_all(s, d.after_change(s, 1));
    std::vector<RebuildDriver::Scheduled> planned;
    EXPECT_FALSE(d.tick(s, now, 1, &planned));
    ASSERT_EQ(planned.size(), 1u);
    EXPECT_EQ(planned[0].attempt, static_cast<uint32_t>(failure + 1));
    waits.push_back(planned[0].wait);
    EXPECT_FALSE(d.tick(s, now + planned[0].wait - 1ms, 1)) << "not before its time";
    now += planned[0].wait;
    auto retry = d.tick(s, now, 1);
    ASSERT_TRUE(retry);
    EXPECT_EQ(retry->command["op"], "rebuild_start");
    EXPECT_EQ(retry->attempt, static_cast<uint32_t>(failure + 1));
    const uint32_t gen = s.pool(1)->rebuild.gen;
    ASSERT_TRUE(s.apply(retry->command).is_ok());
    EXPECT_EQ(s.pool(1)->rebuild.gen, gen + 1);
    auto a = d.after_change(s, 1);
    ASSERT_EQ(a.starts.size(), 1u) << "the new generation is sent";
    EXPECT_FALSE(d.tick(s, now, 1)) << "one retry per failure";
  }
  EXPECT_EQ(waits, (std::vector<Nanos>{5s, 10s, 12s}));
  // Completed: the next failure waits the first back-off again.
  for (uint32_t r : {0u, 2u, 3u}) {
    for (uint32_t t : {0u, 1u}) {
      auto cmd = d.report(s, done(s, r, t, 1), 1);
      if (cmd) {
        ASSERT_TRUE(s.apply(*cmd).is_ok());
      }
    }
  }
  ASSERT_EQ(s.pool(1)->rebuild.state, "done");
  EXPECT_FALSE(d.tick(s, now, 1));
  ASSERT_TRUE(s.apply({{"op", "leave"}, {"rank", 2}, {"state", "dead"}}).is_ok());
  commit_all(s, d.after_change(s, 1));
  auto r = done(s, 0, 0, 0);
  r.error = "refused";
  ASSERT_TRUE(s.apply(*d.report(s, r, 1)).is_ok());
  std::vector<RebuildDriver::Scheduled> planned;
  EXPECT_FALSE(d.tick(s, now, 1, &planned));
  ASSERT_EQ(planned.size(), 1u);
  EXPECT_EQ(planned[0].wait, 5s);
}

// A new leader forgets what was sent: the running generation goes to the engines again.
TEST(RebuildDriver, AfterResetTheRunningGenerationIsSentAgain) {
  MgmtState s;
  ASSERT_NO_FATAL_FAILURE(pool_of_four(s));
  RebuildDriver d;
  ASSERT_TRUE(s.apply({{"op", "leave"}, {"rank", 3}, {"state", "dead"}}).is_ok());
  EXPECT_EQ(d.after_change(s, 1).starts.size(), 1u);
  EXPECT_FALSE(d.report(s, done(s, 0, 0, 1), 1));
  EXPECT_EQ(d.progress(*s.pool(1)).targets_done, 1u);
  d.reset();
  EXPECT_EQ(d.progress(*s.pool(1)).targets_done, 0u);
  auto a = d.after_change(s, 1);
  ASSERT_EQ(a.starts.size(), 1u);
  EXPECT_EQ(a.starts[0].ranks, (std::vector<uint32_t>{0, 1, 2}));
}

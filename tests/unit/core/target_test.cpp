#include <gtest/gtest.h>
#include <sched.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "core/target.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using tessera::testing::run_on;

TEST(Target, RunsPinnedToItsCpu) {
  TargetOptions o;
  o.index = 3;
  o.cpu = 0;
  Target t(RealEnv::instance(), o);
  ASSERT_TRUE(t.start().is_ok());
  int cpu = run_on(t, [] { return sched_getcpu(); });
  EXPECT_EQ(cpu, 0);
  std::ifstream st("/proc/self/task/" + std::to_string(t.tid()) + "/status");
  std::stringstream ss;
  ss << st.rdbuf();
  EXPECT_NE(ss.str().find("Cpus_allowed_list:\t0\n"), std::string::npos) << ss.str();
  EXPECT_EQ(run_on(t, [&] { return Target::current(); }), &t);
  t.stop();
}

TEST(Target, RejectsACpuThatDoesNotExist) {
  TargetOptions o;
  o.cpu = 4095;
  Target t(RealEnv::instance(), o);
  Status st = t.start();
  EXPECT_FALSE(st.is_ok());
}

TEST(Target, FibersInterleaveOnOneThread) {
  Target t(RealEnv::instance(), TargetOptions{});
  ASSERT_TRUE(t.start().is_ok());
  std::string trace = run_on(t, [&t] {
    auto trace = std::make_shared<std::string>();
    auto done = std::make_shared<boost::fibers::promise<void>>();
    t.spawn([trace, done] {
      for (int i = 0; i < 3; ++i) {
        *trace += 'a';
        boost::this_fiber::yield();
      }
      done->set_value();
    });
    for (int i = 0; i < 3; ++i) {
      *trace += 'b';
      boost::this_fiber::yield();
    }
    done->get_future().get();
    return *trace;
  });
  EXPECT_EQ(trace, "bababa");
}

TEST(Target, TimersFollowTheInjectedClock) {
  ManualEnv env;
  Target t(env, TargetOptions{});
  ASSERT_TRUE(t.start().is_ok());
  std::atomic<bool> woke{false};
  t.post([&] {
    Target::current()->sleep_for(std::chrono::seconds(5));
    woke = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(woke.load());  // no Env time has passed
  env.advance(std::chrono::seconds(5));
  t.post([] {});  // wake the target so it looks at its timers
  for (int i = 0; i < 2000 && !woke; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(woke.load());
  t.stop();
}

TEST(Target, IdleTargetSleepsInsteadOfSpinning) {
  Target t(RealEnv::instance(), TargetOptions{});
  ASSERT_TRUE(t.start().is_ok());
  run_on(t, [] {});
  uint64_t polls_before = run_on(t, [&t] { return t.stats().polls; });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  uint64_t polls_after = run_on(t, [&t] { return t.stats().polls; });
  // A spinning loop sweeps millions of times in 300 ms. A sleeping one sweeps a few hundred times
  // inside the 100 us spin window that follows each event (the run_on calls), then sleeps.
  EXPECT_LT(polls_after - polls_before, 5000u);
  EXPECT_GT(run_on(t, [&t] { return t.stats().sleeps; }), 0u);
  t.stop();
}

TEST(Target, StopWaitsForRunningFibers) {
  Target t(RealEnv::instance(), TargetOptions{});
  ASSERT_TRUE(t.start().is_ok());
  std::atomic<int> finished{0};
  for (int i = 0; i < 10; ++i) {
    t.post([&] {
      Target::current()->sleep_for(std::chrono::milliseconds(20));
      ++finished;
    });
  }
  run_on(t, [] {});
  t.stop();
  EXPECT_EQ(finished.load(), 10);
}

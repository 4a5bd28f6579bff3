// SimEnv (core/sim_env.hpp) and what a simulation needs of Target: timed waits that follow the
// Env clock (Target::wait_until), and a view of when a sleeping target next has work.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "core/no_lock.hpp"
#include "core/sim_env.hpp"
#include "core/target.hpp"

using namespace tessera;

namespace {

// Spins (yielding) until `cond` holds; a bound only against a hang.
template <typename F>
bool eventually(F cond) {
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!cond()) {
    if (std::chrono::steady_clock::now() > limit) return false;
    std::this_thread::yield();
  }
  return true;
}

// A started target on a SimEnv of virtual time, stopped at the end of the test.
struct VirtualTarget {
  SimEnv env{SimEnv::Options{1, false}};
  Target t{env, [] {
             TargetOptions o;
             o.spin_window = Nanos(0);
             return o;
           }()};
  VirtualTarget() { EXPECT_TRUE(t.start().is_ok()); }
  ~VirtualTarget() { t.stop(); }
};

}  // namespace

TEST(SimEnv, VirtualTimeMovesOnlyWhenSkipped) {
  SimEnv env(SimEnv::Options{7, false});
  const Nanos t0 = env.now();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_EQ(env.now(), t0);
  env.skip(std::chrono::seconds(3));
  EXPECT_EQ(env.now(), t0 + std::chrono::seconds(3));
  EXPECT_EQ(env.wall() - env.now(), SimEnv::Options{}.wall_start);
}

TEST(SimEnv, RealTimeRunsAndSkipsAdd) {
  SimEnv env(SimEnv::Options{7, true});
  const Nanos t0 = env.now();
  env.skip(std::chrono::hours(2));
  EXPECT_GE(env.now() - t0, std::chrono::hours(2));
}

TEST(SimEnv, FaultPointsFailAtTheirRateAndAreCounted) {
  SimEnv env(SimEnv::Options{11, false});
  EXPECT_FALSE(env.fault("a"));  // no rates: nothing fails
  env.set_faults({{"a", 100000}, {"b", 50000}});
  int a = 0, b = 0;
  for (int i = 0; i < 1000; ++i) {
    a += env.fault("a") ? 1 : 0;
    b += env.fault("b") ? 1 : 0;
    EXPECT_FALSE(env.fault("c"));  // not enabled
  }
  EXPECT_EQ(a, 1000);
  EXPECT_GT(b, 400);
  EXPECT_LT(b, 600);
  const auto counts = env.fault_counts();
  EXPECT_EQ(counts.at("a").asked, 1001u);
  EXPECT_EQ(counts.at("a").fired, 1000u);
  EXPECT_EQ(counts.at("b").fired, static_cast<uint64_t>(b));
  EXPECT_EQ(counts.at("c").asked, 1000u);
  EXPECT_EQ(counts.at("c").fired, 0u);
  env.set_faults({});
  EXPECT_FALSE(env.fault("a"));
  // The production Env never fails.
  EXPECT_FALSE(RealEnv::instance().fault("a"));
}

TEST(SimEnv, SameSeedSameDraws) {
  SimEnv x(SimEnv::Options{5, false}), y(SimEnv::Options{5, false});
  for (int i = 0; i < 10; ++i) EXPECT_EQ(x.random(), y.random());
}

// A fiber's timed wait ends at its Env deadline, which only a skip reaches on virtual time; a
// sleeping target shows that deadline as its next timer.
TEST(Target, WaitUntilEndsAtItsEnvDeadline) {
  VirtualTarget vt;
  SimEnv& env = vt.env;
  Target& t = vt.t;
  boost::fibers::condition_variable_any cv;
  const Nanos deadline = env.now() + std::chrono::seconds(5);
  std::atomic<int> result{-1};
  t.post([&] {
    NoLock nl;
    bool passed = false;
    while (!passed) passed = Target::current()->wait_until(cv, nl, deadline);
    result = passed ? 1 : 0;
  });
  ASSERT_TRUE(eventually([&] { return t.idle() && t.next_timer() == deadline; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // real time changes nothing
  EXPECT_EQ(result.load(), -1);
  env.skip(std::chrono::seconds(5));
  t.wake(true);
  ASSERT_TRUE(eventually([&] { return result.load() != -1; }));
  EXPECT_EQ(result.load(), 1);
}

// Notified before its deadline, the wait ends at once and says the deadline has not passed; its
// timer is cancelled, so the target has nothing left to wake for.
TEST(Target, WaitUntilEndsWhenNotified) {
  VirtualTarget vt;
  SimEnv& env = vt.env;
  Target& t = vt.t;
  boost::fibers::condition_variable_any cv;
  std::atomic<int> result{-1};
  t.post([&] {
    NoLock nl;
    result = Target::current()->wait_until(cv, nl, env.now() + std::chrono::hours(1)) ? 1 : 0;
  });
  ASSERT_TRUE(eventually([&] { return t.idle() && t.next_timer() != Nanos::max(); }));
  t.post([&] { cv.notify_all(); });
  ASSERT_TRUE(eventually([&] { return result.load() != -1; }));
  EXPECT_EQ(result.load(), 0);
}

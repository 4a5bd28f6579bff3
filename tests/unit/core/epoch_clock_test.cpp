// The epoch clock (core/env.hpp): a hybrid logical clock counted from 2021 that keeps ordering
// across the dates where the old one (microseconds since 1970 in 48 bits) wrapped, to 2100 and
// beyond, before its origin, and behind a peer whose clock runs ahead.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "core/env.hpp"

using namespace tessera;

namespace {

// A wall clock the test sets to any date.
class WallEnv final : public Env {
 public:
  Nanos now() const override { return Nanos(0); }
  Nanos wall() const override { return Nanos(wall_.load()); }
  uint64_t random() override { return 4; }
  void set(Nanos w) { wall_ = w.count(); }
  void advance(Nanos d) { wall_ += d.count(); }

 private:
  std::atomic<int64_t> wall_{0};
};

constexpr int64_t kSec = 1'000'000'000;
// Seconds since 1970 of some dates (UTC).
constexpr int64_t k2021 = 1'609'459'200;  // 2021-01-01: the origin
// 2^48 us in seconds: the old clock wrapped every 8.92 years (1978-11, ..., 2023-07, 2032-06).
constexpr int64_t kOldWrap = 281'474'976;
constexpr int64_t k2032 = 1'969'920'000;  // 2032-06-04, days before the old wrap
constexpr int64_t k2100 = 4'102'444'800;  // 2100-01-01
constexpr int64_t k2250 = 8'835'148'800;  // 2250-01-01

Nanos at(int64_t secs) {
  return Nanos(secs * kSec);
}

}  // namespace

TEST(EpochClock, EpochsKeepRisingAcrossTheOldWrapsTo2100AndBeyond) {
  WallEnv env;
  HybridClock c(env);
  uint64_t last = 0;
  // Every date where microseconds since 1970 in 48 bits wrapped or will (1978 + k * 8.92
  // years: 2023-07 and 2032-06 among them), a second before and after, then the century.
  std::vector<int64_t> dates;
  for (int64_t w = kOldWrap; w < k2100; w += kOldWrap) {
    if (w > k2021) dates.insert(dates.end(), {w - 1, w + 1});
  }
  dates.insert(dates.end(), {k2032, k2100 - 1, k2100, k2250});
  std::sort(dates.begin(), dates.end());
  for (int64_t d : dates) {
    env.set(at(d));
    const uint64_t e = c.tick();
    EXPECT_GT(e, last) << "at " << d << " s since 1970";
    // The epoch says when it was taken, to within a physical tick.
    const Nanos back = wall_of_epoch(e);
    EXPECT_LE(back, at(d)) << d;
    EXPECT_LT(at(d) - back, Nanos(uint64_t{1} << kEpochLogicalBits)) << d;
    EXPECT_EQ(epoch_at_wall(at(d)), e) << "a fresh physical tick starts with logical 0";
    last = e;
  }
  // Physical parts alone order like the dates (a second before a wrap and a second after it
  // included), and so do consecutive seconds around each date.
  for (size_t i = 1; i < dates.size(); ++i) {
    EXPECT_LT(epoch_at_wall(at(dates[i - 1])), epoch_at_wall(at(dates[i]))) << dates[i];
  }
  for (int64_t d : dates) {
    EXPECT_LT(epoch_at_wall(at(d)), epoch_at_wall(at(d) + Nanos(kSec))) << d;
  }
}

TEST(EpochClock, ManyEpochsInOneTickStayOrderedAndCarryIntoThePhysicalPart) {
  WallEnv env;
  env.set(at(k2032));
  HybridClock c(env);
  uint64_t last = c.tick();
  // More epochs than the logical part holds, all within one physical tick.
  for (int i = 0; i < 70'000; ++i) {
    const uint64_t e = c.tick();
    ASSERT_EQ(e, last + 1);
    last = e;
  }
  EXPECT_GT(wall_of_epoch(last), at(k2032)) << "the logical part carried into the physical";
  // Time goes on: the clock waits for the wall clock to pass it, then follows it again.
  env.advance(Nanos(1000));
  EXPECT_EQ(c.tick(), last + 1);
  env.advance(Nanos(kSec));
  EXPECT_EQ(c.tick(), epoch_at_wall(at(k2032) + Nanos(kSec + 1000)));
}

TEST(EpochClock, APeerAheadPullsTheClockForwardAndItNeverGoesBack) {
  WallEnv env;
  env.set(at(k2100));
  HybridClock c(env);
  const uint64_t mine = c.tick();
  // A peer whose wall clock runs an hour ahead: our later epochs order after what it sent.
  const uint64_t peer = epoch_at_wall(at(k2100 + 3600)) + 5;
  c.observe(peer);
  const uint64_t next = c.tick();
  EXPECT_GT(next, peer);
  EXPECT_GT(next, mine);
  // An epoch from the past changes nothing.
  c.observe(mine);
  EXPECT_EQ(c.tick(), next + 1);
  // Our wall clock passes the peer's: physical time again.
  env.set(at(k2100 + 7200));
  EXPECT_EQ(c.tick(), epoch_at_wall(at(k2100 + 7200)));
}

TEST(EpochClock, AWallClockBeforeTheOriginCountsFromIt) {
  WallEnv env;
  env.set(at(k2021 - 86400 * 365));  // 2020: a host whose clock was never set right
  HybridClock c(env);
  EXPECT_EQ(epoch_at_wall(env.wall()), 0u);
  const uint64_t a = c.tick(), b = c.tick();
  EXPECT_LT(a, b);
  EXPECT_EQ(wall_of_epoch(0), kEpochOrigin);
  env.set(at(k2021 + 1));
  EXPECT_GT(c.tick(), b);
  EXPECT_EQ(epoch_at_wall(at(k2021)), 0u);
}

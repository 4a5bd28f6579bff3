// SingleFlight (core/single_flight.hpp) on a real target's fibers: concurrent askers share one
// fetch; a shared result too old for an asker makes it fetch again; errors are shared.
#include <gtest/gtest.h>

#include <boost/fiber/all.hpp>

#include "core/single_flight.hpp"
#include "core/target.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using tessera::testing::run_on;

namespace {

// Runs `n` fibers on `t` that each call `body(i)`, and waits for all of them.
template <typename F>
void fibers(Target& t, int n, F body) {
  run_on(t, [&] {
    std::vector<boost::fibers::promise<void>> done(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      t.spawn([&, i] {
        body(i);
        done[static_cast<size_t>(i)].set_value();
      });
    }
    for (auto& d : done) d.get_future().get();
  });
}

}  // namespace

TEST(SingleFlight, ConcurrentAskersShareOneFetch) {
  Target t(RealEnv::instance(), TargetOptions{});
  ASSERT_TRUE(t.start().is_ok());
  SingleFlight<int, int> sf;
  int version = 7, calls = 0;
  std::vector<int> got(10, 0);
  fibers(t, 10, [&](int i) {
    auto r = sf.get(
        1,
        [&]() -> Result<int> {
          ++calls;
          for (int k = 0; k < 5; ++k) boost::this_fiber::yield();  // the fetch suspends
          return version;
        },
        [](int v) { return v >= 7; });
    got[static_cast<size_t>(i)] = r.is_ok() ? *r : -1;
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(sf.fetched(), 1u);
  EXPECT_EQ(sf.joined(), 9u);
  for (int v : got) EXPECT_EQ(v, 7);
  // Another key is fetched on its own.
  fibers(t, 1, [&](int) {
    (void)sf.get(
        2,
        [&]() -> Result<int> {
          ++calls;
          return 1;
        },
        [](int) { return true; });
  });
  EXPECT_EQ(calls, 2);
}

TEST(SingleFlight, AResultTooOldForAnAskerMakesItFetchAgain) {
  Target t(RealEnv::instance(), TargetOptions{});
  ASSERT_TRUE(t.start().is_ok());
  SingleFlight<int, int> sf;
  int version = 3, calls = 0;
  int old_asker = 0, new_asker = 0;
  auto fetch = [&]() -> Result<int> {
    int v = version;  // what the service knows when the fetch leaves
    ++calls;
    for (int k = 0; k < 5; ++k) boost::this_fiber::yield();
    return v;
  };
  fibers(t, 2, [&](int i) {
    if (i == 0) {
      old_asker = *sf.get(1, fetch, [](int v) { return v >= 3; });
    } else {
      version = 4;  // the map changed after the first fetch left; this asker needs 4
      new_asker = *sf.get(1, fetch, [](int v) { return v >= 4; });
    }
  });
  EXPECT_EQ(old_asker, 3);
  EXPECT_EQ(new_asker, 4) << "a waiter must not accept a map older than the one it needs";
  EXPECT_EQ(calls, 2);
}

TEST(SingleFlight, ErrorsAreShared) {
  Target t(RealEnv::instance(), TargetOptions{});
  ASSERT_TRUE(t.start().is_ok());
  SingleFlight<int, int> sf;
  int calls = 0, failed = 0;
  fibers(t, 4, [&](int) {
    auto r = sf.get(
        1,
        [&]() -> Result<int> {
          ++calls;
          boost::this_fiber::yield();
          return Status(Errc::unavailable, "no service");
        },
        [](int) { return true; });
    if (!r.is_ok() && r.status().code() == Errc::unavailable) ++failed;
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(failed, 4);
}

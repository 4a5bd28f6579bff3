// Future<T> / Promise<T> (core/future.hpp): the completion a client's reply crosses threads in.
// Under the tsan preset these tests are the race check of that hand-off.
#include <gtest/gtest.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/future.hpp"
#include "core/target.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using tessera::testing::run_on;

TEST(Future, AValueSetOnATargetThreadReachesTheWaitingThreadWhole) {
  Target t(RealEnv::instance(), TargetOptions{});
  ASSERT_TRUE(t.start().is_ok());
  std::vector<Future<std::string>> futures;
  for (int i = 0; i < 200; ++i) {
    auto p = std::make_shared<Promise<std::string>>();
    futures.push_back(p->get_future());
    t.post([p, i] { p->set_value(std::string(1000 + i, static_cast<char>('a' + i % 26))); });
  }
  for (int i = 0; i < 200; ++i) {
    auto r = futures[i].get();
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(*r, std::string(1000 + i, static_cast<char>('a' + i % 26)));
    EXPECT_FALSE(futures[i].valid());
  }
  t.stop();
}

TEST(Future, WaitForTimesOutUntilTheValueIsSetAndReadyNeverBlocks) {
  Promise<int> p;
  auto f = p.get_future();
  EXPECT_FALSE(f.ready());
  EXPECT_EQ(f.wait_for(std::chrono::milliseconds(1)), FutureStatus::timeout);
  std::thread setter([&p] { p.set_value(7); });
  f.wait();
  setter.join();
  EXPECT_TRUE(f.ready());
  EXPECT_EQ(f.wait_for(std::chrono::milliseconds(0)), FutureStatus::ready);
  p.set_value(8);  // a second value is ignored
  EXPECT_EQ(*f.get(), 7);
}

TEST(Future, AnAbandonedPromiseCompletesWithShutdown) {
  Future<int> f;
  {
    Promise<int> p;
    f = p.get_future();
  }
  auto r = f.get();
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Errc::shutdown);
}

TEST(Future, AwaitingOnATargetThreadAnswersInternalInsteadOfBlockingIt) {
  Target t(RealEnv::instance(), TargetOptions{});
  ASSERT_TRUE(t.start().is_ok());
  auto p = std::make_shared<Promise<int>>();
  Result<int> r = run_on(t, [p] {
    auto f = p->get_future();
    EXPECT_EQ(f.wait_for(std::chrono::seconds(10)), FutureStatus::timeout);
    return f.get();
  });
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Errc::internal);
  auto ready = Future<int>::ready_with(5);
  EXPECT_EQ(*run_on(t, [&ready] { return ready.get(); }), 5);  // a ready value is returned
  t.stop();
}

// on_ready: called once, after the value is there; on the setting thread (a target's) when
// registered first, at once when the value was already set; the value stays for get(). Many
// futures set on a target, all waited for by one thread through their callbacks.
TEST(Future, OnReadyRunsOnceTheValueIsSetAndOneThreadWaitsForMany) {
  Promise<int> early;
  early.set_value(3);
  auto fe = early.get_future();
  int calls = 0;
  fe.on_ready([&calls] { ++calls; });
  EXPECT_EQ(calls, 1) << "a future already set calls at once";
  EXPECT_EQ(*fe.get(), 3);

  Target t(RealEnv::instance(), TargetOptions{});
  ASSERT_TRUE(t.start().is_ok());
  constexpr int kMany = 300;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> order;
  std::vector<Future<int>> futures;
  std::vector<std::shared_ptr<Promise<int>>> promises;
  for (int i = 0; i < kMany; ++i) {
    promises.push_back(std::make_shared<Promise<int>>());
    futures.push_back(promises.back()->get_future());
    futures.back().on_ready([&, i] {
      {
        std::lock_guard g(mu);
        EXPECT_TRUE(futures[i].ready()) << "called before the value was set";
        order.push_back(i);
      }
      cv.notify_all();
    });
  }
  for (int i = kMany - 1; i >= 0; --i) t.post([p = promises[i], i] { p->set_value(i * 2); });
  {
    std::unique_lock lk(mu);
    ASSERT_TRUE(cv.wait_for(lk, std::chrono::seconds(60), [&] { return order.size() == kMany; }));
  }
  for (int i = 0; i < kMany; ++i) {
    EXPECT_EQ(order[i], kMany - 1 - i) << "not once each, in the order set";
    EXPECT_EQ(*futures[i].get(), i * 2);
  }
  promises.clear();  // already set: nothing more is called
  EXPECT_EQ(order.size(), static_cast<size_t>(kMany));
  t.stop();
}

// BlockingWorkers (core/blocking_workers.hpp): the threads that run the C API's blocking calls
// given an event. Its bound, its parallelism and its end, with jobs held on a gate so that
// nothing depends on timing.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "core/blocking_workers.hpp"

using tessera::BlockingWorkers;
using tessera::Errc;
using tessera::Status;

namespace {

// Jobs wait at the gate until it opens; the test waits for how many arrived.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  int arrived = 0;
  void pass() {
    std::unique_lock lk(mu);
    ++arrived;
    cv.notify_all();
    cv.wait(lk, [this] { return open; });
  }
  void wait_arrived(int n) {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return arrived >= n; });
  }
  void release() {
    std::lock_guard g(mu);
    open = true;
    cv.notify_all();
  }
};

}  // namespace

TEST(BlockingWorkers, RunsUpToItsThreadsAtOnceAndRefusesBeyondItsQueue) {
  Gate gate;
  std::atomic<int> done{0};
  {
    BlockingWorkers w(3, 2);
    // Three jobs hold the three threads at once (a fourth thread would never be needed).
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(w.submit([&] {
                     gate.pass();
                     ++done;
                   }).is_ok());
      gate.wait_arrived(i + 1);  // taken by a thread: the queue is empty again
    }
    EXPECT_EQ(w.waiting(), 0u);
    // Two more wait in the queue; the next is refused and dropped, never run.
    EXPECT_TRUE(w.submit([&] { ++done; }).is_ok());
    EXPECT_TRUE(w.submit([&] { ++done; }).is_ok());
    EXPECT_EQ(w.waiting(), 2u);
    bool ran_refused = false;
    const Status refused = w.submit([&] { ran_refused = true; });
    EXPECT_EQ(refused.code(), Errc::busy) << refused.to_string();
    EXPECT_EQ(w.waiting(), 2u);
    gate.release();
    // The destructor runs every accepted job before it returns.
    EXPECT_FALSE(ran_refused);
  }
  EXPECT_EQ(done.load(), 5);
}

TEST(BlockingWorkers, TheEndRunsEveryAcceptedJobEvenWithOneThread) {
  std::atomic<int> done{0};
  {
    BlockingWorkers w(1, 100);
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(w.submit([&] { ++done; }).is_ok());
  }
  EXPECT_EQ(done.load(), 100);
  BlockingWorkers idle(2, 1);  // never used: no thread started, nothing to join
}

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "core/mpsc_queue.hpp"

using namespace tessera;

TEST(MpscQueue, ManyProducersOneConsumerLoseNothing) {
  MpscQueue q;
  std::atomic<uint64_t> sum{0};
  constexpr int kThreads = 4, kPer = 20000;
  std::vector<std::thread> ths;
  for (int t = 0; t < kThreads; ++t) {
    ths.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) {
        uint64_t v = static_cast<uint64_t>(t) * kPer + i;
        auto f = [&sum, v] { sum += v; };
        q.push(new FnTask<decltype(f)>(std::move(f)));
      }
    });
  }
  uint64_t seen = 0;
  while (seen < kThreads * kPer) {
    if (TaskNode* n = q.pop()) {
      n->run();
      delete n;
      ++seen;
    }
  }
  for (auto& t : ths) t.join();
  uint64_t n = uint64_t{kThreads} * kPer;
  EXPECT_EQ(sum.load(), n * (n - 1) / 2);
  EXPECT_EQ(q.pop(), nullptr);
}

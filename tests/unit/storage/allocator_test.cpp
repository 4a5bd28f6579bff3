#include <gtest/gtest.h>

#include <random>

#include "storage/allocator.hpp"

using namespace tessera;
using namespace tessera::storage;

TEST(ExtentAllocator, AllocatesAlignedAndCoalescesOnFree) {
  ExtentAllocator a(1 << 20, 64 * 4096);
  auto x = a.alloc(1);
  auto y = a.alloc(8192);
  auto z = a.alloc(4097);
  ASSERT_TRUE(x && y && z);
  EXPECT_EQ(*x % 4096, 0u);
  EXPECT_EQ(a.used_bytes(), 4096u + 8192u + 8192u);
  EXPECT_TRUE(a.free(*y, 8192).is_ok());
  EXPECT_TRUE(a.free(*x, 1).is_ok());
  EXPECT_TRUE(a.free(*z, 4097).is_ok());
  EXPECT_EQ(a.free_bytes(), 64u * 4096);
  EXPECT_EQ(a.fragments(), 1u);
}

TEST(ExtentAllocator, ReportsNoSpaceAndDetectsDoubleFree) {
  ExtentAllocator a(0, 4 * 4096);
  auto x = a.alloc(4 * 4096);
  ASSERT_TRUE(x.is_ok());
  auto y = a.alloc(1);
  ASSERT_FALSE(y.is_ok());
  EXPECT_EQ(y.status().code(), Errc::no_space);
  EXPECT_TRUE(a.free(*x, 4096).is_ok());
  EXPECT_FALSE(a.free(*x, 4096).is_ok());
  EXPECT_FALSE(a.free(1 << 30, 4096).is_ok());
}

TEST(ExtentAllocator, MarkUsedRebuildsStateAndRejectsOverlap) {
  ExtentAllocator a(0, 100 * 4096);
  EXPECT_TRUE(a.mark_used(10 * 4096, 3 * 4096).is_ok());
  EXPECT_TRUE(a.mark_used(0, 4096).is_ok());
  EXPECT_FALSE(a.mark_used(11 * 4096, 4096).is_ok());
  EXPECT_EQ(a.used_bytes(), 4u * 4096);
  EXPECT_TRUE(a.free(10 * 4096, 3 * 4096).is_ok());
  EXPECT_EQ(a.used_bytes(), 4096u);
}

TEST(ExtentAllocator, RandomAllocFreeKeepsAccountingExact) {
  ExtentAllocator a(4096, 1024 * 4096);
  std::mt19937_64 rng(11);
  std::vector<std::pair<uint64_t, uint64_t>> live;
  uint64_t used = 0;
  for (int i = 0; i < 20000; ++i) {
    if (live.empty() || rng() % 3 != 0) {
      uint64_t len = 1 + rng() % (16 * 4096);
      auto r = a.alloc(len);
      if (!r) continue;
      for (auto& [o, l] : live) ASSERT_TRUE(*r + round_block(len) <= o || o + round_block(l) <= *r);
      live.emplace_back(*r, len);
      used += round_block(len);
    } else {
      size_t k = rng() % live.size();
      ASSERT_TRUE(a.free(live[k].first, live[k].second).is_ok());
      used -= round_block(live[k].second);
      live.erase(live.begin() + static_cast<long>(k));
    }
    ASSERT_EQ(a.used_bytes(), used);
  }
}

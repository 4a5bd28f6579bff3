#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "placement/placement.hpp"

using namespace tessera::placement;

TEST(Placement, JumpHashSpreadsEvenly) {
  constexpr uint32_t kTargets = 16;
  std::vector<int> count(kTargets);
  for (uint64_t i = 0; i < 160000; ++i) ++count[target_for(0, i, kTargets)];
  for (int c : count) {
    EXPECT_GT(c, 9000);
    EXPECT_LT(c, 11000);
  }
}

TEST(Placement, GrowingMovesOnlyToTheNewTarget) {
  int moved = 0;
  for (uint64_t i = 0; i < 20000; ++i) {
    uint32_t a = target_for(7, i, 10);
    uint32_t b = target_for(7, i, 11);
    if (a != b) {
      EXPECT_EQ(b, 10u);
      ++moved;
    }
  }
  EXPECT_GT(moved, 1300);  // about 1/11 of 20000
  EXPECT_LT(moved, 2300);
}

TEST(Placement, IsAPureFunction) {
  EXPECT_EQ(target_for(1, 2, 8), target_for(1, 2, 8));
  EXPECT_EQ(jump_hash(12345, 1), 0u);
  EXPECT_EQ(jump_hash(12345, 0), 0u);
}

#include <gtest/gtest.h>

#include "core/env.hpp"
#include "core/status.hpp"

using namespace tessera;

TEST(Status, OkAndErrorCarryCodeAndMessage) {
  Status ok;
  EXPECT_TRUE(ok.is_ok());
  Status e(Errc::no_space, "target 1 full");
  EXPECT_FALSE(e.is_ok());
  EXPECT_EQ(e.code(), Errc::no_space);
  EXPECT_EQ(e.to_string(), "no space: target 1 full");
}

TEST(Result, HoldsValueOrStatus) {
  Result<int> v(7);
  ASSERT_TRUE(v.is_ok());
  EXPECT_EQ(*v, 7);
  Result<int> e(Errc::not_found, "nope");
  ASSERT_FALSE(e.is_ok());
  EXPECT_EQ(e.status().code(), Errc::not_found);
}

TEST(HybridClock, IsMonotonicAndObservesRemoteEpochs) {
  ManualEnv env;
  HybridClock c(env);
  uint64_t a = c.tick();
  uint64_t b = c.tick();  // same physical time: the logical part advances
  EXPECT_GT(b, a);
  c.observe(b + 1000);
  EXPECT_GT(c.tick(), b + 1000);
  env.advance(std::chrono::seconds(1));
  uint64_t d = c.tick();
  EXPECT_GT(d, b + 1000);
}

TEST(ManualEnv, RandomIsSeeded) {
  ManualEnv a(42), b(42), c(43);
  uint64_t x = a.random();
  EXPECT_EQ(x, b.random());
  EXPECT_NE(x, c.random());
}

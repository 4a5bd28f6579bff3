// Missing data must not look like missing keys: with the only engine holding an S1 object dead,
// reads and listings fail with `unavailable`, naming the rank and target that hold the data,
// and exit non-zero; they never answer "not found" or an empty listing. Through the CLI
// against a real local system.
#include <gtest/gtest.h>

#include <string>

#include "tests/integration/cli_system.hpp"

using namespace tessera::testing;
using nlohmann::json;

TEST(Unavailable, DeadEngineOfAnOnlyCopyIsUnavailableNotMissing) {
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "3", "--targets", "1"});
  // On ranks 1 and 2 only: the management host (rank 0) stays up to answer.
  s.ok({"pool", "create", "P", "--ranks", "1,2", "--target-size", "64M"});
  s.ok({"cont", "create", "P", "S", "--type", "KV", "--oclass", "S1"});
  for (int i = 0; i < 4; ++i) {
    s.ok({"kv", "put", "--pool", "P", "--cont", "S", "k" + std::to_string(i), "v"});
  }
  const int holder = s.rank_holding_objects("P");
  ASSERT_TRUE(holder == 1 || holder == 2) << "the S1 object is on one of the pool's engines: "
                                          << s.ok({"pool", "query", "P"}).dump();
  s.ok({"system", "kill", "--rank", std::to_string(holder)});
  const std::string where = "rank " + std::to_string(holder) + " target 0";
  for (int i = 0; i < 4; ++i) {
    std::string e = s.err({"kv", "get", "--pool", "P", "--cont", "S", "k" + std::to_string(i)});
    EXPECT_NE(e.find("unavailable"), std::string::npos) << e;
    EXPECT_NE(e.find(where), std::string::npos) << e;
  }
  std::string l = s.err({"kv", "list", "--pool", "P", "--cont", "S"});
  EXPECT_EQ(l.find("not_found"), std::string::npos) << l;
  EXPECT_NE(l.find("incomplete"), std::string::npos) << l;
  EXPECT_NE(l.find(where), std::string::npos) << l;
  // The engine comes back with its data: nothing was lost or moved.
  s.ok({"system", "start"});
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(s.ok({"kv", "get", "--pool", "P", "--cont", "S", "k" + std::to_string(i)})["value"],
              "v");
  }
  EXPECT_EQ(s.ok({"kv", "list", "--pool", "P", "--cont", "S"})["keys"].size(), 4u);
}

// Values larger than one message, through a real local system: a 272 MiB array update (more
// than the fabric's 256 MiB message limit) is split by the client into updates of whole records
// and read back whole; when an engine holding a replica dies, the rebuild moves that akey's
// history (272 MiB, also more than one message) in pieces, and every byte reads back from the
// new home.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "client/client.hpp"
#include "client/container.hpp"
#include "tests/integration/cli_system.hpp"

using namespace tessera;
using namespace tessera::testing;
using nlohmann::json;

namespace {


// Bytes whose every 8 bytes name their offset: a misplaced piece cannot read back right.
Buffer big_value(uint64_t size) {
  Buffer b(size);
  for (uint64_t i = 0; i + 8 <= size; i += 8) {
    uint64_t v = i * 0x9e3779b97f4a7c15ull;
    std::memcpy(b.data() + i, &v, 8);
  }
  return b;
}

}  // namespace

TEST(LargeValue, ArrayAboveTheMessageLimitIsStoredReadAndRebuilt) {
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "3", "--targets", "1",
        "--engine-arg=--rebuild-share-pct=100"});
  s.ok({"pool", "create", "P", "--target-size", "1G"});
  s.ok({"cont", "create", "P", "C", "--type", "ARRAY", "--oclass", "RP_2G1", "--rf", "1"});
  const uint64_t kSize = 272ull << 20;  // above the 256 MiB message limit
  const Buffer value = big_value(kSize);

  ClientOptions co;
  co.engine = s.mgmt();
  co.timeout = std::chrono::milliseconds(120000);
  auto client = Client::connect_system(co);
  ASSERT_TRUE(client.is_ok()) << client.status().to_string();
  {
    auto c = (*client)->open_container("P", "C", true);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    auto oid = (*c)->make_oid(7, 1);
    ASSERT_TRUE(oid.is_ok());
    auto w = (*c)->update(*oid, "d", "a", ValueKind::array, 0, value.span());
    ASSERT_TRUE(w.is_ok()) << w.status().to_string();
    auto r = (*c)->fetch(*oid, "d", "a", ValueKind::array);  // length 0: up to the end
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    ASSERT_EQ(r->data.size(), kSize);
    EXPECT_EQ(std::memcmp(r->data.data(), value.data(), kSize), 0);
  }

  // Kill an engine (not the management host) that holds a replica; the rebuild copies the
  // whole history to the third engine.
  const json q = s.ok({"pool", "query", "P"});
  int victim = -1;
  for (const auto& t : q["pool"]["targets"]) {
    if (t.value("objects", 0) > 0 && t["rank"].get<int>() != 0) victim = t["rank"].get<int>();
  }
  ASSERT_GT(victim, 0) << q.dump();
  s.ok({"system", "kill", "--rank", std::to_string(victim)});
  // Rebuilt: the victim's target is down-out (the rebuild completed) and nothing failed.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  json after;
  bool rebuilt = false;
  while (!rebuilt && std::chrono::steady_clock::now() < until) {
    after = s.ok({"pool", "query", "P", "--no-space"});
    ASSERT_NE(after["pool"]["rebuild"].value("state", std::string()), "failed") << after.dump();
    rebuilt = after["pool"]["target_states"].value("down-out", 0) == 1 &&
              after["pool"]["rebuild"].value("state", std::string()) != "busy";
    if (!rebuilt) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  ASSERT_TRUE(rebuilt) << after.dump();
  EXPECT_EQ(after["pool"].value("redundancy", std::string()), "normal") << after.dump();

  // Read from the survivors: the new home and the other replica hold every byte.
  auto c = (*client)->open_container("P", "C", false);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  auto oid = (*c)->make_oid(7, 1);
  ASSERT_TRUE(oid.is_ok());
  for (int i = 0; i < 2; ++i) {  // replica reads rotate: both copies get read
    auto r = (*c)->fetch(*oid, "d", "a", ValueKind::array, 0, kSize);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    ASSERT_EQ(r->data.size(), kSize);
    EXPECT_EQ(std::memcmp(r->data.data(), value.data(), kSize), 0) << "read " << i;
  }
}

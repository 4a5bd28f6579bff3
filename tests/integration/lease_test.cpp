// Container handle leases, through a real local system: a handle whose holder stops renewing it
// (a client that died right after opening) is closed by the management service after one lease,
// so `cont destroy` works without --force; a live client's handle is renewed and stays open
// across many leases. `cont query` names each handle's owner.
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "client/client.hpp"
#include "client/container.hpp"
#include "client/mgmt_client.hpp"
#include "tests/integration/cli_system.hpp"

using namespace tessera;
using namespace tessera::testing;
using nlohmann::json;

namespace {


// Waits (bounded) until the container has `n` open handles; returns the last count seen.
int wait_handles(CliSystem& s, int n, std::chrono::seconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  int have = -1;
  while (std::chrono::steady_clock::now() < until) {
    const json q = s.ok({"cont", "query", "P", "C"});
    have = q["container"].value("open_handles", -1);
    if (have == n) return have;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return have;
}

}  // namespace

TEST(Lease, HandleOfADeadClientIsClosedAndALiveOneIsRenewed) {
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "1", "--targets", "1",
        "--engine-arg=--mgmt-handle-lease-ms=3000"});
  s.ok({"pool", "create", "P", "--target-size", "64M"});
  s.ok({"cont", "create", "P", "C", "--type", "KV", "--oclass", "S1"});
  const std::string mgmt = s.mgmt();

  // A live client: its handle is renewed in the background.
  ClientOptions co;
  co.engine = mgmt;
  auto client = Client::connect_system(co);
  ASSERT_TRUE(client.is_ok()) << client.status().to_string();
  auto live = (*client)->open_container("P", "C", true);
  ASSERT_TRUE(live.is_ok()) << live.status().to_string();

  // A dead one: opened, never renewed (what a client killed right after opening leaves).
  MgmtClient raw(mgmt);
  auto dead = raw.cont_open("P", "C", false);
  ASSERT_TRUE(dead.is_ok()) << dead.status().to_string();
  EXPECT_EQ(dead->lease_ms, 3000u);

  const json q = s.ok({"cont", "query", "P", "C"});
  ASSERT_EQ(q["container"]["open_handles"], 2) << q.dump();
  ASSERT_EQ(q["container"]["handles"].size(), 2u) << q.dump();
  for (const auto& h : q["container"]["handles"]) {
    EXPECT_EQ(h["pid"].get<uint32_t>(), static_cast<uint32_t>(::getpid())) << h.dump();
    EXPECT_EQ(h["uid"].get<uint32_t>(), static_cast<uint32_t>(::getuid())) << h.dump();
    EXPECT_FALSE(h["host"].get<std::string>().empty()) << h.dump();
  }

  // The unrenewed handle goes after its lease; the renewed one stays (watched over 3 leases).
  EXPECT_EQ(wait_handles(s, 1, std::chrono::seconds(30)), 1);
  // Not a wait for a condition: a window of three leases in which renewals must keep it.
  std::this_thread::sleep_for(std::chrono::seconds(9));
  EXPECT_EQ(s.ok({"cont", "query", "P", "C"})["container"]["open_handles"], 1);
  const std::string busy = s.err({"cont", "destroy", "P", "C"});
  EXPECT_NE(busy.find("busy"), std::string::npos) << busy;
  // The live handle still works.
  auto oid = (*live)->make_oid(1, 1);
  ASSERT_TRUE(oid.is_ok());
  const std::string v = "still open";
  EXPECT_TRUE((*live)->update(*oid, "d", "a", ValueKind::single, 0,
                              {reinterpret_cast<const uint8_t*>(v.data()), v.size()})
                  .is_ok());
  live->reset();
  EXPECT_EQ(wait_handles(s, 0, std::chrono::seconds(10)), 0);
  s.ok({"cont", "destroy", "P", "C"});
}

// The replicated management service (docs/OPERATIONS.md, "Access points"), through a real local
// system of five engines whose ranks 0..2 are the access points:
// - the leader is killed (kill -9) again and again, at random moments of a load of management
//   commands and I/O: every command the service acknowledged is in the state afterwards, every
//   acknowledged write reads back, and a new leader serves after each kill;
// - with two of the three access points dead, commands fail with a clear error while I/O on an
//   open container goes on; once one comes back, commands work again.
// The moments of the kills come from a seed (printed; TESSERA_SEED repeats a run).
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "client/client.hpp"
#include "client/container.hpp"
#include "client/mgmt_client.hpp"
#include "tests/integration/cli_system.hpp"

using namespace tessera;
using namespace tessera::testing;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// The rank of the access point that serves, once one does (and is not `not`): -1 on timeout.
int wait_leader(CliSystem& s, int not_rank, std::chrono::seconds limit) {
  const auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    auto [rc, q] = s.run({"system", "query", "--timeout-ms", "3000"});
    if (rc == 0 && q.contains("leader") && !q["leader"].is_null() &&
        q["leader"].get<int>() != not_rank) {
      return q["leader"].get<int>();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return -1;
}

// What the load saw acknowledged.
struct Model {
  std::mutex mu;
  std::map<std::string, std::string> attrs;  // container attributes set
  std::map<std::string, std::string> kv;     // values stored
  std::atomic<uint64_t> acked{0};
  std::atomic<uint64_t> refused{0};
};

// A load of management commands (container attributes) and writes through an open handle,
// until `stop`; what was acknowledged goes into `m`.
void load(const std::string& mgmt, Container& io, Model& m, const std::atomic<bool>& stop) {
  MgmtClient mc(mgmt, std::chrono::milliseconds(20000));
  for (uint64_t i = 0; !stop.load(); ++i) {
    const std::string name = "a" + std::to_string(i);
    const std::string value = "v" + std::to_string(i * 7919);
    Status st = mc.cont_set_attr("io", "C", name, value);
    if (st.is_ok()) {
      std::lock_guard lk(m.mu);
      m.attrs[name] = value;
      m.acked++;
    } else {
      m.refused++;
    }
    const std::string key = "k" + std::to_string(i);
    if (io.kv_put(key, bytes(value)).is_ok()) {
      std::lock_guard lk(m.mu);
      m.kv[key] = value;
    }
  }
}

// Waits until the load has `n` more acknowledged commands than now (bounded).
bool wait_acks(const Model& m, uint64_t n, std::chrono::seconds limit) {
  const uint64_t want = m.acked.load() + n;
  const auto until = Clock::now() + limit;
  while (m.acked.load() < want) {
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

struct ApSystem {
  CliSystem s;
  std::string mgmt;
  std::unique_ptr<Client> client;
  std::unique_ptr<Container> io;

  // Five engines, three access points; pool `io` on ranks 3 and 4 only (the kills of access
  // points never touch its targets), a KV container `C` open for writing.
  void start() {
    s.ok({"system", "start", "--dir", s.dir(), "--engines", "5", "--targets", "1",
          "--access-points", "3"});
    s.ok({"pool", "create", "io", "--target-size", "64M", "--ranks", "3", "4"});
    s.ok({"cont", "create", "io", "C", "--type", "KV", "--oclass", "S1"});
    mgmt = s.mgmt();
    ClientOptions co;
    co.engine = mgmt;
    auto c = Client::connect_system(co);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    client = std::move(*c);
    auto h = client->open_container("io", "C", true);
    ASSERT_TRUE(h.is_ok()) << h.status().to_string();
    io = std::move(*h);
  }
};

}  // namespace

TEST(AccessPoints, KillingTheLeaderUnderLoadLosesNoAcknowledgedCommand) {
  uint64_t seed = std::random_device{}();
  if (const char* e = std::getenv("TESSERA_SEED")) seed = std::strtoull(e, nullptr, 10);
  std::printf("kill moments seed %lu (TESSERA_SEED repeats it)\n",
              static_cast<unsigned long>(seed));
  std::mt19937_64 rng(seed);
  ApSystem a;
  ASSERT_NO_FATAL_FAILURE(a.start());
  Model m;
  std::atomic<bool> stop{false};
  std::thread loader([&] { load(a.mgmt, *a.io, m, stop); });
  // Whatever way the test ends, the load stops first (a failed assertion returns early).
  struct Join {
    std::atomic<bool>& stop;
    std::thread& t;
    ~Join() {
      stop = true;
      if (t.joinable()) t.join();
    }
  } join{stop, loader};

  int leader = wait_leader(a.s, -1, std::chrono::seconds(60));
  for (int round = 0; round < 3 && leader >= 0; ++round) {
    // A random moment of the load: after 2..12 more acknowledged commands.
    ASSERT_TRUE(wait_acks(m, 2 + rng() % 11, std::chrono::seconds(120)))
        << "the load stalled before kill " << round << " (seed " << seed << ")";
    a.s.ok({"system", "kill", "--rank", std::to_string(leader)});
    const int next = wait_leader(a.s, leader, std::chrono::seconds(60));
    ASSERT_GE(next, 0) << "no new leader after killing rank " << leader << " (seed " << seed << ")";
    // The service takes commands again under the new leader.
    ASSERT_TRUE(wait_acks(m, 3, std::chrono::seconds(120)))
        << "no command acknowledged after kill " << round << " (seed " << seed << ")";
    // The killed access point comes back and catches up from the others' log.
    a.s.ok({"system", "start", "--ranks", std::to_string(leader)});
    leader = next;
  }
  ASSERT_GE(leader, 0);
  stop = true;
  loader.join();

  // Every acknowledged command is in the state; every acknowledged write reads back.
  std::lock_guard lk(m.mu);
  std::printf("%zu commands acknowledged, %lu refused during the failovers; %zu writes\n",
              m.attrs.size(), static_cast<unsigned long>(m.refused.load()), m.kv.size());
  ASSERT_GT(m.attrs.size(), 10u);
  const json q = a.s.ok({"cont", "query", "io", "C"});
  const json& attrs = q["container"]["attrs"];
  for (const auto& [name, value] : m.attrs) {
    ASSERT_TRUE(attrs.contains(name))
        << "acknowledged attribute " << name << " lost (seed " << seed << ")";
    EXPECT_EQ(attrs[name].get<std::string>(), value) << name;
  }
  for (const auto& [key, value] : m.kv) {
    auto r = a.io->kv_get(key);
    ASSERT_TRUE(r.is_ok()) << key << ": " << r.status().to_string();
    ASSERT_TRUE(r->exists) << key << " lost (seed " << seed << ")";
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(r->data.data()), r->data.size()), value);
  }
  // The three replicas agree: each applied the same log.
  const json sq = a.s.ok({"system", "query"});
  ASSERT_EQ(sq["access_points"].size(), 3u) << sq.dump();
}

TEST(AccessPoints, WithoutAMajorityCommandsFailClearlyAndIoGoesOn) {
  ApSystem a;
  ASSERT_NO_FATAL_FAILURE(a.start());
  ASSERT_TRUE(a.io->kv_put("before", bytes("1")).is_ok());
  const int leader = wait_leader(a.s, -1, std::chrono::seconds(60));
  ASSERT_GE(leader, 0);
  const int follower = (leader + 1) % 3;
  a.s.ok({"system", "kill", "--rank", std::to_string(follower)});
  a.s.ok({"system", "kill", "--rank", std::to_string(leader)});

  // No majority: a clear error, within the request's time.
  auto [rc, j] = a.s.run({"pool", "create", "P2", "--target-size", "64M", "--timeout-ms", "8000"});
  EXPECT_EQ(rc, 1) << j.dump();
  const std::string msg = j.value("message", std::string());
  EXPECT_TRUE(msg.find("leader") != std::string::npos || msg.find("majority") != std::string::npos)
      << j.dump();

  // I/O on the open container goes on: its engines do not need the management service.
  auto w = a.io->kv_put("during", bytes("2"));
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  auto r = a.io->kv_get("before");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(r->exists);

  // One access point back: a majority again, and commands work.
  a.s.ok({"system", "start", "--ranks", std::to_string(follower)});
  ASSERT_GE(wait_leader(a.s, -1, std::chrono::seconds(60)), 0);
  a.s.ok({"cont", "set-attr", "io", "C", "after", "3"});
  auto d = a.io->kv_get("during");
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  EXPECT_TRUE(d->exists);
}

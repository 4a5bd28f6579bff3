// kill -9 a server while acknowledged and in-flight updates mix; after restart every
// acknowledged update reads back exactly and no unacknowledged one appears torn.
#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <random>
#include <thread>

#include "client/client.hpp"
#include "tests/integration/server_process.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using namespace tessera::testing;

namespace {

std::string value_for(uint64_t i) {
  std::mt19937_64 rng(i * 31 + 5);
  // Mostly small, some large enough to live in data extents.
  size_t n = (i % 10 == 0) ? 100000 + rng() % 1500000 : 1 + rng() % 3000;
  std::string v(n, '\0');
  for (auto& c : v) c = static_cast<char>(rng());
  return v;
}

ObjectId oid_for(uint64_t i) {
  return ObjectId{0xC0DE, i};
}

class CrashTest : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(CrashTest, AcknowledgedUpdatesSurviveKillDashNine) {
  TempDir dir;
  ServerOptions so;
  so.dir = dir.path();
  so.provider = GetParam();
  ServerProcess server(so);
  ASSERT_TRUE(server.start().is_ok());

  std::map<uint64_t, bool> acked;  // key -> acknowledged
  std::vector<uint64_t> unacked;   // sent, no reply before the kill
  uint64_t next = 0;
  const uint64_t kill_after[] = {300, 1000, 2000};
  for (uint64_t round = 0; round < 3; ++round) {
    ClientOptions co;
    co.engine = server.address();
    auto c = Client::connect(co);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    std::deque<std::pair<uint64_t, Client::Future<uint64_t>>> inflight;
    uint64_t acked_this_round = 0;
    while (acked_this_round < kill_after[round]) {
      uint64_t i = next++;
      std::string v = value_for(i);
      inflight.emplace_back(i, (*c)->update_async(oid_for(i), "d", "a", ValueKind::single, 0,
                                                  Buffer(v.data(), v.size())));
      if (inflight.size() >= 32) {
        auto r = inflight.front().second.get();
        ASSERT_TRUE(r.is_ok()) << r.status().to_string();
        acked[inflight.front().first] = true;
        ++acked_this_round;
        inflight.pop_front();
      }
    }
    // Kill while 32 updates are in flight; whatever is not acknowledged yet is "unacked".
    // Closing the client right after the kill fails the asks still pending (shutdown), so no
    // future waits for a timeout; replies that arrived before the kill keep their value.
    // shm (libfabric 1.17): a sender that enters fi_sendv while the peer is being killed can
    // spin for ever on a lock the dead peer held in its region (docs/OPERATIONS.md), so over
    // shm the client is idle when the kill lands; tcp;ofi_rxm is killed mid-flight.
    if (GetParam() == "shm") {
      while (!inflight.empty()) {
        auto r = inflight.front().second.get();
        ASSERT_TRUE(r.is_ok()) << r.status().to_string();
        acked[inflight.front().first] = true;
        inflight.pop_front();
      }
    }
    server.kill9();
    c->reset();
    for (auto& [i, f] : inflight) {
      auto r = f.get();
      if (r.is_ok()) {
        acked[i] = true;  // acknowledged just before the kill landed
      } else {
        unacked.push_back(i);
      }
    }
    ASSERT_TRUE(server.start().is_ok());
  }

  ClientOptions co;
  co.engine = server.address();
  auto c = Client::connect(co);
  ASSERT_TRUE(c.is_ok());
  size_t verified = 0;
  for (auto& [i, ok] : acked) {
    auto r = (*c)->fetch(oid_for(i), "d", "a", ValueKind::single, 0, 0, 0, {.must_exist = true});
    ASSERT_TRUE(r.is_ok()) << "acknowledged update " << i << " lost: " << r.status().to_string();
    ASSERT_TRUE(r->data.view() == value_for(i)) << "acknowledged update " << i << " differs";
    ++verified;
  }
  size_t present = 0;
  for (uint64_t i : unacked) {
    auto r = (*c)->fetch(oid_for(i), "d", "a", ValueKind::single, 0, 0, 0, {.must_exist = true});
    if (r.is_ok()) {
      ++present;
      ASSERT_TRUE(r->data.view() == value_for(i)) << "unacknowledged update " << i << " is torn";
    } else {
      ASSERT_EQ(r.status().code(), Errc::not_found) << r.status().to_string();
    }
  }
  EXPECT_GE(verified, 3300u);
  std::printf("verified %zu acknowledged updates; %zu of %zu unacknowledged present whole\n",
              verified, present, unacked.size());
}

// The versioned store under kill -9 at random moments: keys are overwritten (many versions),
// half of them are array extents, the log is small so checkpoints run and the log wraps during
// the test, and background aggregation drops old versions meanwhile. After each restart every
// key must read back as its newest acknowledged update or a newer unacknowledged one, whole.
TEST(CrashTest, VersionedStoreWithCheckpointsAndAggregationSurvivesRandomKills) {
  TempDir dir;
  ServerOptions so;
  so.dir = dir.path();
  so.storage_size = "256M";
  so.extra = {"--wal-size",
              "1M",
              "--checkpoint-interval-ms",
              "150",
              "--aggregation-interval-ms",
              "200",
              "--aggregation-delay-ms",
              "50"};
  ServerProcess server(so);
  ASSERT_TRUE(server.start().is_ok());

  constexpr uint64_t kKeys = 400;  // > in-flight window: one update per key in flight at most
  auto key_of = [](uint64_t i) { return i % kKeys; };
  auto is_array = [&](uint64_t i) { return key_of(i) % 2 == 1; };
  auto value = [](uint64_t i) {
    std::mt19937_64 rng(i * 131 + 7);
    size_t n = (i % 9 == 0) ? 20000 + rng() % 200000 : 1 + rng() % 2000;
    std::string v(n, '\0');
    for (auto& c : v) c = static_cast<char>(rng());
    return v;
  };
  std::map<uint64_t, uint64_t> newest_acked;          // key -> update index
  std::map<uint64_t, std::vector<uint64_t>> unacked;  // key -> update indexes lost in flight
  std::mt19937_64 rng(std::random_device{}());
  uint64_t seed = rng();
  std::printf("kill moments seed %lu\n", static_cast<unsigned long>(seed));
  rng.seed(seed);
  uint64_t next = 0;
  size_t checked = 0;
  auto verify = [&](Client& c) {
    checked = 0;
    for (auto& [k, i] : newest_acked) {
      ValueKind kind = is_array(i) ? ValueKind::array : ValueKind::single;
      auto r = c.fetch(ObjectId{0xFEED, k}, "d", "a", kind, 0, 0, 0, {.must_exist = true});
      ASSERT_TRUE(r.is_ok()) << "key " << k << " (update " << i
                             << ") lost: " << r.status().to_string() << " seed " << seed
                             << "\nserver log:\n"
                             << server.log();
      std::string got(r->data.view());
      bool ok = got == value(i);
      // Array akeys: the newest update of a key overwrites from offset 0; a shorter update
      // leaves the tail of an older, longer one visible beyond it.
      if (!ok && kind == ValueKind::array) ok = got.compare(0, value(i).size(), value(i)) == 0;
      for (uint64_t u : unacked[k]) {
        if (ok) break;
        if (u < i) continue;
        ok = got == value(u) ||
             (kind == ValueKind::array && got.compare(0, value(u).size(), value(u)) == 0);
      }
      ASSERT_TRUE(ok) << "key " << k << ": newest acknowledged update " << i
                      << " does not read back whole (seed " << seed << ")";
      ++checked;
    }
  };
  for (int round = 0; round < 4; ++round) {
    ClientOptions co;
    co.engine = server.address();
    auto c = Client::connect(co);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    if (round > 0) verify(**c);
    if (::testing::Test::HasFatalFailure()) return;
    uint64_t kill_after = 300 + rng() % 1200;
    std::deque<std::pair<uint64_t, Client::Future<uint64_t>>> inflight;
    uint64_t acked = 0;
    while (acked < kill_after) {
      uint64_t i = next++;
      std::string v = value(i);
      ValueKind kind = is_array(i) ? ValueKind::array : ValueKind::single;
      inflight.emplace_back(i, (*c)->update_async(ObjectId{0xFEED, key_of(i)}, "d", "a", kind, 0,
                                                  Buffer(v.data(), v.size())));
      if (inflight.size() >= 16) {
        auto r = inflight.front().second.get();
        ASSERT_TRUE(r.is_ok()) << r.status().to_string();
        newest_acked[key_of(inflight.front().first)] = inflight.front().first;
        ++acked;
        inflight.pop_front();
      }
    }
    server.kill9();
    c->reset();
    for (auto& [i, f] : inflight) {
      if (f.get().is_ok()) {
        newest_acked[key_of(i)] = i;
      } else {
        unacked[key_of(i)].push_back(i);
      }
    }
    ASSERT_TRUE(server.start().is_ok());
  }
  ClientOptions co;
  co.engine = server.address();
  auto c = Client::connect(co);
  ASSERT_TRUE(c.is_ok());
  verify(**c);
  if (::testing::Test::HasFatalFailure()) return;
  auto st = (*c)->stats_async(0).get();
  ASSERT_TRUE(st.is_ok());
  std::printf(
      "verified %zu keys after 4 kills; %lu updates sent; target 0: %lu checkpoints, "
      "recovery %.0f ms\n",
      checked, static_cast<unsigned long>(next), static_cast<unsigned long>(st->checkpoints),
      st->recovery_ms);
  EXPECT_EQ(checked, kKeys);
  // Checkpoints and the wrapped log were really in play: the engine log says so.
  EXPECT_NE(server.log().find("checkpoint"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Providers, CrashTest, ::testing::Values("tcp;ofi_rxm", "shm"),
                         [](const auto& info) { return info.param == "shm" ? "shm" : "tcp_rxm"; });

// Concurrent bank transfers through user transactions (docs/TRANSACTIONS.md): serializable
// (checked against a model: the committed transactions applied in epoch order give every read)
// and keeping their sum through engine kills.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "client/container.hpp"
#include "client/tessera.h"
#include "tests/integration/tx_harness.hpp"

using namespace tessera;
using namespace tessera::testing;

namespace {

// ---- concurrent transfers against a model ----------------------------------------------------

constexpr int kAccounts = 12;
constexpr int64_t kStart = 100;

struct Bank {
  explicit Bank(TxSystem& sys) : h(sys) {}
  TxSystem& h;
  ObjectId acct_oid(int a) { return h.obj(100 + a % 3); }
  std::string acct_key(int a) { return fmt::format("acct-{}", a); }

  // What one committed transaction read and wrote (the model checks it).
  struct Record {
    uint64_t epoch = 0;
    std::map<int, int64_t> reads, writes;
  };
  std::mutex mu;
  std::vector<Record> committed;
  std::atomic<uint64_t> restarts{0}, unknown{0}, transfers{0}, audits{0};

  Status open_accounts() {
    auto r = h.c->run_tx([&](Transaction& tx) -> Status {
      for (int a = 0; a < kAccounts; ++a) {
        TESSERA_TRY(tx.update(acct_oid(a), acct_key(a), "bal", ValueKind::single, 0, num(kStart),
                              {.cond = Cond::insert}));
      }
      return Status();
    });
    return r.status();
  }
  // One transfer from a to b, retried while it conflicts. A failure other than `restart` (an
  // engine died) leaves its outcome unknown: it counts in no model check.
  void transfer(std::mt19937_64& rng, bool model) {
    int a = static_cast<int>(rng() % kAccounts), b = static_cast<int>(rng() % kAccounts);
    if (a == b) b = (a + 1) % kAccounts;
    const int64_t amount = 1 + static_cast<int64_t>(rng() % 30);
    Record rec;
    int tries = 0;
    auto r = h.c->run_tx([&](Transaction& tx) -> Status {
      ++tries;
      rec = Record{tx.epoch(), {}, {}};
      auto va = read_num(tx, acct_oid(a), acct_key(a));
      if (!va) return va.status();
      auto vb = read_num(tx, acct_oid(b), acct_key(b));
      if (!vb) return vb.status();
      rec.reads = {{a, *va}, {b, *vb}};
      if (*va < amount) return Status();  // refused: a read-only transaction
      rec.writes = {{a, *va - amount}, {b, *vb + amount}};
      TESSERA_TRY(
          tx.update(acct_oid(a), acct_key(a), "bal", ValueKind::single, 0, num(rec.writes[a])));
      return tx.update(acct_oid(b), acct_key(b), "bal", ValueKind::single, 0, num(rec.writes[b]));
    });
    restarts += static_cast<uint64_t>(tries - 1);
    if (!r) {
      ++unknown;
      return;
    }
    ++transfers;
    EXPECT_EQ(*r, rec.epoch);
    if (model) {
      std::lock_guard g(mu);
      committed.push_back(std::move(rec));
    }
  }
  // Reads every account in one transaction: the sum never changes.
  void audit(bool model, const std::string& when) {
    Record rec;
    auto r = h.c->run_tx([&](Transaction& tx) -> Status {
      rec = Record{tx.epoch(), {}, {}};
      for (int a = 0; a < kAccounts; ++a) {
        auto v = read_num(tx, acct_oid(a), acct_key(a));
        if (!v) return v.status();
        rec.reads[a] = *v;
      }
      return Status();
    });
    if (!r) {
      ++unknown;
      return;
    }
    int64_t sum = 0;
    for (const auto& [a, v] : rec.reads) sum += v;
    EXPECT_EQ(sum, kAccounts * kStart) << when << ": an audit at epoch " << rec.epoch;
    ++audits;
    if (model) {
      std::lock_guard g(mu);
      committed.push_back(std::move(rec));
    }
  }
  // The committed transactions applied in epoch order from the opening balances give every
  // read each of them made, and the balances read now.
  //
  // Epochs taken from two targets' clocks may be equal (their reader ids differ). Of such a
  // tie, a change under the other's read is refused, so one that committed and was read by
  // the other came first (the reader met it and saw it); the tie is applied in that order,
  // and one where each read what the other changed, or both changed one account, fails
  // (docs/TRANSACTIONS.md, step 5).
  void order_ties() {
    for (size_t lo = 0; lo < committed.size();) {
      size_t hi = lo + 1;
      while (hi < committed.size() && committed[hi].epoch == committed[lo].epoch) ++hi;
      // x must come before y when y read an account x changed.
      auto before = [](const Record& x, const Record& y) {
        for (const auto& [a, v] : x.writes) {
          if (y.reads.count(a) != 0) return true;
        }
        return false;
      };
      std::vector<Record> group(committed.begin() + static_cast<long>(lo),
                                committed.begin() + static_cast<long>(hi));
      std::vector<Record> ordered;
      while (!group.empty()) {
        auto next = std::find_if(group.begin(), group.end(), [&](const Record& x) {
          return std::none_of(group.begin(), group.end(),
                              [&](const Record& y) { return &x != &y && before(y, x); });
        });
        if (next == group.end()) {
          ADD_FAILURE() << "transactions at epoch " << committed[lo].epoch
                        << " each read what another of them changed";
          next = group.begin();
        }
        for (const Record& y : group) {
          for (const auto& [a, v] : next->writes) {
            if (&y != &*next && y.writes.count(a) != 0) {
              ADD_FAILURE() << "two transactions at epoch " << committed[lo].epoch
                            << " both changed account " << a;
            }
          }
        }
        ordered.push_back(std::move(*next));
        group.erase(next);
      }
      std::move(ordered.begin(), ordered.end(), committed.begin() + static_cast<long>(lo));
      lo = hi;
    }
  }
  void check_model() {
    std::sort(committed.begin(), committed.end(),
              [](const Record& x, const Record& y) { return x.epoch < y.epoch; });
    order_ties();
    std::map<int, int64_t> state;
    for (int a = 0; a < kAccounts; ++a) state[a] = kStart;
    size_t bad = 0;
    for (size_t i = 0; i < committed.size(); ++i) {
      const Record& r = committed[i];
      for (const auto& [a, v] : r.reads) {
        if (state[a] != v && bad++ < 5) {
          ADD_FAILURE() << "the transaction at epoch " << r.epoch << " read account " << a << " as "
                        << v << "; in epoch order it holds " << state[a];
        }
      }
      for (const auto& [a, v] : r.writes) state[a] = v;
    }
    EXPECT_EQ(bad, 0u);
    auto tx = h.c->tx_open();
    ASSERT_TRUE(tx);
    for (int a = 0; a < kAccounts; ++a) {
      auto v = read_num(**tx, acct_oid(a), acct_key(a));
      ASSERT_TRUE(v) << v.status().to_string();
      EXPECT_EQ(*v, state[a]) << "account " << a << " now";
    }
  }
};

TEST(Tx, ConcurrentTransfersAreSerializable) {
  TxSystem h;
  ASSERT_TRUE(h.c);
  Bank bank(h);
  ASSERT_TRUE(bank.open_accounts().is_ok());
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937_64 rng(1000 + static_cast<uint64_t>(w));
      for (int i = 0; i < 60; ++i) bank.transfer(rng, true);
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < 20; ++i) bank.audit(true, "during the transfers");
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(bank.unknown.load(), 0u);
  EXPECT_EQ(bank.transfers.load(), 240u);
  bank.check_model();
  std::cout << "transfers " << bank.transfers << ", audits " << bank.audits << ", restarts "
            << bank.restarts << "\n";
  h.expect_consistent("after the transfers");
}

// Seeded kill -9 of engines under transfers: every audit, and the last, sees the opening sum;
// the copies agree afterwards.
void run_transfer_kills(uint64_t seed) {
  SCOPED_TRACE(fmt::format("seed {} (TESSERA_TX_SEED={} reruns it)", seed, seed));
  TxSystem h("RP_3GX", 1, true);
  ASSERT_TRUE(h.c);
  Bank bank(h);
  ASSERT_TRUE(bank.open_accounts().is_ok());
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < 3; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937_64 rng(seed * 10 + static_cast<uint64_t>(w));
      while (!stop) bank.transfer(rng, false);
    });
  }
  threads.emplace_back([&] {
    while (!stop) bank.audit(false, "under kills");
  });
  std::mt19937_64 rng(seed);
  for (int step = 0; step < 4; ++step) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 700));
    h.sys->engine(1 + static_cast<uint32_t>(rng() % 3)).kill9();
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 1000));
    h.restart_dead();
  }
  // The load goes on until it has committed transfers enough to mean something (a slow
  // machine commits few while engines restart).
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (bank.transfers.load() < 20 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  stop = true;
  for (auto& t : threads) t.join();
  std::cout << "transfers " << bank.transfers << ", audits " << bank.audits << ", restarts "
            << bank.restarts << ", outcome unknown " << bank.unknown << "\n";
  EXPECT_GE(bank.transfers.load(), 20u);
  bank.audit(false, "after the kills");
  EXPECT_GT(bank.audits.load(), 1u);
  h.expect_consistent("after the kills");
}

// Transfers and audits while engines are killed and restarted (excluded and reintegrated when
// the system noticed). TESSERA_TX_SEEDS=N runs N more seeds, TESSERA_TX_SEED=S one. It found
// the coordinator that aborted alone (ACoordinatorAbortsOnlyWhatItsParticipantsAbort).
TEST(Tx, TransfersKeepTheirSumThroughEngineKills) {
  if (const char* one = std::getenv("TESSERA_TX_SEED")) {
    return run_transfer_kills(std::strtoull(one, nullptr, 10));
  }
  std::vector<uint64_t> seeds{1};
  if (const char* n = std::getenv("TESSERA_TX_SEEDS")) {
    for (uint64_t i = 0; i < std::strtoull(n, nullptr, 10); ++i) seeds.push_back(100 + i);
  }
  for (uint64_t seed : seeds) {
    run_transfer_kills(seed);
    if (::testing::Test::HasFailure()) break;
  }
}

}  // namespace

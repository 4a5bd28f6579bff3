// Distributed transactions in one target's store: prepared changes are durable and invisible,
// a commit applies them whole, an abort drops them, and both survive restarts and checkpoints.
#include <gtest/gtest.h>

#include <boost/fiber/operations.hpp>
#include <map>
#include <random>

#include "storage/store.hpp"
#include "tests/unit/storage/store_fixture.hpp"

using namespace tessera;
using namespace tessera::storage;
using namespace tessera::storage::testing;

namespace {

class DtxTest : public StoreTest {
 protected:
  // Stages one single-value update per (akey, value) under dkey "d" of `oid`, and prepares them
  // as transaction `id` at the store's next epoch.
  Result<DtxId> prepare(ObjectId oid, const std::vector<std::pair<std::string, std::string>>& kv,
                        std::vector<std::string> punches = {}) {
    return run_on(target, [&]() -> Result<DtxId> {
      DtxId id{store->new_epoch(), dtx_member(1, 0)};
      DtxStage stage;
      for (const auto& [k, v] : kv) {
        UpdateOptions o;
        o.epoch = id.epoch;
        o.stage = &stage;
        auto r = store->update(oid, "d", k, ValueKind::single, 0, bytes(v), crc(v), o);
        if (!r) {
          store->dtx_discard(stage);
          return r.status();
        }
      }
      for (const auto& k : punches) {
        auto r = store->punch(oid, "d", k, id.epoch, false, &stage);
        if (!r) return r.status();
      }
      TESSERA_TRY(store->dtx_prepare(id, {dtx_member(1, 0), dtx_member(2, 0)}, std::move(stage)));
      return id;
    });
  }
  Status commit(DtxId id) {
    return run_on(target, [&] { return store->dtx_commit(id); });
  }
  Status abort(DtxId id) {
    return run_on(target, [&] { return store->dtx_abort(id); });
  }
  DtxState state(DtxId id) {
    return run_on(target, [&] { return store->dtx_state(id); });
  }
  bool blocked(ObjectId oid, std::string ak) {
    return run_on(target, [&] { return store->dtx_blocking(oid, "d", ak, 0).has_value(); });
  }
  // The value an akey shows now, or "<none>".
  std::string show(ObjectId oid, std::string ak) {
    auto r = get(oid, "d", ak);
    if (!r) return r.status().code() == Errc::not_found ? "<none>" : r.status().to_string();
    return std::string(r->data.view());
  }
  void reopen() {
    close();
    ASSERT_TRUE(open().is_ok());
  }
};

TEST_P(DtxTest, PreparedChangesAreInvisibleUntilCommittedThenAllAppear) {
  ASSERT_TRUE(open().is_ok());
  const ObjectId oid{7, 1};
  ASSERT_TRUE(put(oid, "d", "a", "old a").is_ok());
  ASSERT_TRUE(put(oid, "d", "gone", "still here").is_ok());
  auto id = prepare(oid, {{"a", "new a"}, {"b", std::string(70000, 'b')}}, {"gone"});
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  EXPECT_EQ(state(*id), DtxState::prepared);
  EXPECT_EQ(show(oid, "a"), "old a");
  EXPECT_EQ(show(oid, "b"), "<none>");
  EXPECT_EQ(show(oid, "gone"), "still here");
  EXPECT_TRUE(blocked(oid, "a"));
  EXPECT_TRUE(blocked(oid, "gone"));
  EXPECT_FALSE(blocked(oid, "other"));
  EXPECT_FALSE(blocked({7, 2}, "a"));

  ASSERT_TRUE(commit(*id).is_ok());
  EXPECT_EQ(state(*id), DtxState::committed);
  EXPECT_EQ(show(oid, "a"), "new a");
  EXPECT_EQ(show(oid, "b"), std::string(70000, 'b'));
  EXPECT_EQ(show(oid, "gone"), "<none>");
  EXPECT_FALSE(blocked(oid, "a"));
  // Deciding again agrees with the decision, and never reverses it.
  EXPECT_TRUE(commit(*id).is_ok());
  EXPECT_EQ(abort(*id).code(), Errc::exists);
}

TEST_P(DtxTest, AbortDropsTheChangesAndGivesTheirSpaceBack) {
  ASSERT_TRUE(open().is_ok());
  const ObjectId oid{7, 1};
  // A checkpoint that already holds a decision, as the later ones will.
  auto first = prepare(oid, {{"small", "s"}});
  ASSERT_TRUE(first.is_ok() && commit(*first).is_ok());
  ASSERT_TRUE(run_on(target, [&] { return store->checkpoint(); }).is_ok());
  const uint64_t used0 = stats().used - stats().checkpoint_bytes;
  auto id = prepare(oid, {{"big", std::string(3 << 20, 'x')}});
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  EXPECT_GE(stats().used - stats().checkpoint_bytes, used0 + (3u << 20));
  ASSERT_TRUE(abort(*id).is_ok());
  EXPECT_EQ(state(*id), DtxState::aborted);
  EXPECT_EQ(show(oid, "big"), "<none>");
  EXPECT_EQ(commit(*id).code(), Errc::aborted);
  // The extents are reused only after a checkpoint no longer names the transaction.
  ASSERT_TRUE(run_on(target, [&] { return store->checkpoint(); }).is_ok());
  EXPECT_EQ(stats().used - stats().checkpoint_bytes, used0);
  reopen();
  EXPECT_EQ(show(oid, "big"), "<none>");
  EXPECT_EQ(stats().used - stats().checkpoint_bytes, used0);
}

// Room is kept for the next checkpoint, and it grows with what the log took since the last one.
// Aborted transactions leave log behind and nothing in the index: a store nearly full of data
// takes a checkpoint to get that room back instead of refusing even a value that needs no
// room of its own (what an erasure-coded rebuild under load met: "0 needed").
TEST_P(DtxTest, LogGrowthAloneNeverFillsTheStore) {
  ASSERT_TRUE(open(48ull << 20, 16ull << 20).is_ok());
  const std::string mib(1 << 20, 'm');
  uint64_t n = 0;
  while (put({0, n}, "d", "a", mib)) {
    ++n;
    ASSERT_LT(n, 100u);
  }
  ASSERT_GT(n, 10u);
  const uint64_t checkpoints = stats().checkpoints;
  // About 6 MiB of log (under the half of the 16 MiB log that starts a checkpoint on its own),
  // far more than the room left after the fill (under 1 MiB beside the reserve).
  const std::string small(3000, 's');
  for (int i = 0; i < 2000; ++i) {
    auto id = prepare({1, 0}, {{"a", small}});
    ASSERT_TRUE(id.is_ok()) << "cycle " << i << ": " << id.status().to_string();
    ASSERT_TRUE(abort(*id).is_ok());
  }
  EXPECT_GT(stats().checkpoints, checkpoints);
  EXPECT_EQ(show({1, 0}, "a"), "<none>");
  for (uint64_t i = 0; i < n; ++i) EXPECT_EQ(get_str({0, i}, "d", "a"), mib);
}

TEST_P(DtxTest, AnAbortDecidedBeforeThePrepareArrivesRefusesIt) {
  ASSERT_TRUE(open().is_ok());
  const ObjectId oid{7, 1};
  const DtxId id{run_on(target, [&] { return store->new_epoch(); }) + 1000, dtx_member(1, 0)};
  ASSERT_TRUE(abort(id).is_ok());  // a resolver found it nowhere and gave up on it
  Status st = run_on(target, [&] {
    DtxStage stage;
    UpdateOptions o;
    o.epoch = id.epoch;
    o.stage = &stage;
    auto r = store->update(oid, "d", "a", ValueKind::single, 0, bytes("late"), crc("late"), o);
    if (!r) return r.status();
    return store->dtx_prepare(id, {dtx_member(1, 0)}, std::move(stage));
  });
  EXPECT_EQ(st.code(), Errc::aborted) << st.to_string();
  EXPECT_EQ(show(oid, "a"), "<none>");
  EXPECT_FALSE(blocked(oid, "a"));
}

// A target holds one part of a transaction: a second prepare of the same id, even while the
// first is still being logged, is refused and changes nothing (before, it was taken for a replayed
// duplicate once logged, and its changes silently dropped).
TEST_P(DtxTest, ASecondPartOfOneTransactionIsRefused) {
  ASSERT_TRUE(open().is_ok());
  const ObjectId oid{7, 1};
  const DtxId id{run_on(target, [&] { return store->new_epoch(); }), dtx_member(1, 0)};
  auto part = [&](const std::string& akey) {
    DtxStage stage;
    UpdateOptions o;
    o.epoch = id.epoch;
    o.stage = &stage;
    auto r = store->update(oid, "d", akey, ValueKind::single, 0, bytes(akey), crc(akey), o);
    if (!r) return r.status();
    return store->dtx_prepare(id, {dtx_member(1, 0)}, std::move(stage));
  };
  auto [first, second] = run_on(target, [&] {
    Status a, b;
    boost::fibers::fiber f([&] { a = part("first"); });
    b = part("second");  // starts while the first is being logged
    f.join();
    return std::make_pair(a, b);
  });
  EXPECT_TRUE(first.is_ok() != second.is_ok())
      << "first: " << first.to_string() << ", second: " << second.to_string();
  EXPECT_EQ((first.is_ok() ? second : first).code(), Errc::exists);
  ASSERT_TRUE(commit(id).is_ok());
  EXPECT_NE(show(oid, "first") == "first", show(oid, "second") == "second");
}

// Prepared, committed and aborted transactions come back as they were after restarts, whether
// the log or a checkpoint holds them; a transaction left prepared can be decided after.
TEST_P(DtxTest, EveryStateSurvivesRestartsFromTheLogAndFromCheckpoints) {
  ASSERT_TRUE(open().is_ok());
  const ObjectId oid{7, 1};
  auto x = prepare(oid, {{"x", "X"}});                     // stays prepared
  auto y = prepare(oid, {{"y", "Y"}});                     // committed
  auto z = prepare(oid, {{"z", std::string(9000, 'Z')}});  // aborted
  ASSERT_TRUE(x && y && z);
  ASSERT_TRUE(commit(*y).is_ok());
  ASSERT_TRUE(abort(*z).is_ok());
  for (bool checkpoint : {false, true}) {
    SCOPED_TRACE(checkpoint ? "from a checkpoint" : "from the log");
    if (checkpoint) {
      ASSERT_TRUE(run_on(target, [&] { return store->checkpoint(); }).is_ok());
    }
    reopen();
    EXPECT_EQ(state(*x), DtxState::prepared);
    EXPECT_EQ(state(*y), DtxState::committed);
    EXPECT_EQ(state(*z), DtxState::aborted);
    EXPECT_EQ(show(oid, "x"), "<none>");
    EXPECT_TRUE(blocked(oid, "x"));
    EXPECT_EQ(show(oid, "y"), "Y");
    EXPECT_EQ(show(oid, "z"), "<none>");
  }
  ASSERT_TRUE(commit(*x).is_ok());
  reopen();
  EXPECT_EQ(show(oid, "x"), "X");
  EXPECT_FALSE(blocked(oid, "x"));
  // A transaction committed while a checkpoint is being written: the checkpoint holds it
  // prepared and the commit, logged after the checkpoint's mark, replays over it.
  auto w = prepare(oid, {{"w", "W"}});
  ASSERT_TRUE(w.is_ok());
  ASSERT_TRUE(run_on(target, [&] {
                boost::fibers::fiber f([&] { ASSERT_TRUE(store->checkpoint().is_ok()); });
                boost::this_fiber::yield();
                EXPECT_TRUE(store->dtx_commit(*w).is_ok());
                f.join();
                return Status();
              }).is_ok());
  reopen();
  EXPECT_EQ(show(oid, "w"), "W");
  EXPECT_EQ(state(*w), DtxState::committed);
}

// A conditional insert decides against the committed state only: while a transaction that
// writes the key is prepared, it waits for the decision.
TEST_P(DtxTest, ConditionalUpdatesWaitForAPreparedChangeOfTheirKey) {
  ASSERT_TRUE(open().is_ok());
  const ObjectId oid{7, 1};
  auto id = prepare(oid, {{"k", "from the transaction"}});
  ASSERT_TRUE(id.is_ok());
  Status cond = run_on(target, [&] {
    Status result(Errc::internal, "not run");
    bool done = false;
    boost::fibers::fiber f([&] {
      UpdateOptions o;
      o.cond = Cond::insert;
      auto r = store->update(oid, "d", "k", ValueKind::single, 0, bytes("mine"), crc("mine"), o);
      result = r.status();
      done = true;
    });
    for (int i = 0; i < 20; ++i) boost::this_fiber::yield();
    EXPECT_FALSE(done) << "the conditional insert did not wait for the prepared transaction";
    EXPECT_TRUE(store->dtx_commit(*id).is_ok());
    f.join();
    return result;
  });
  EXPECT_EQ(cond.code(), Errc::exists) << cond.to_string();
  EXPECT_EQ(show(oid, "k"), "from the transaction");
}

TEST_P(DtxTest, AggregationStaysBelowPreparedEpochs) {
  ASSERT_TRUE(open().is_ok());
  const ObjectId oid{7, 1};
  ASSERT_TRUE(put(oid, "d", "a", "v1").is_ok());
  auto id = prepare(oid, {{"a", "from the transaction"}});
  ASSERT_TRUE(id.is_ok());
  ASSERT_TRUE(put(oid, "d", "a", "v3").is_ok());
  auto agg = aggregate();
  EXPECT_LT(agg.epoch, id->epoch);
  ASSERT_TRUE(commit(*id).is_ok());
  // Its version sits between the two others: the newest read still sees v3, a read at its
  // epoch sees it.
  EXPECT_EQ(show(oid, "a"), "v3");
  auto at = get(oid, "d", "a", ValueKind::single, 0, 0, id->epoch);
  ASSERT_TRUE(at.is_ok());
  EXPECT_EQ(at->data.view(), "from the transaction");
}

// Random sequences of transactions, decisions, checkpoints and restarts against a model: what
// a read sees is exactly the committed transactions' values; prepared ones stay invisible and
// block reads of their keys; decisions survive every restart.
TEST_P(DtxTest, RandomSequencesMatchAModel) {
  ASSERT_TRUE(open().is_ok());
  const ObjectId oid{9, 9};
  const std::vector<std::string> keys = {"k0", "k1", "k2", "k3", "k4", "k5"};
  for (uint64_t seed : {1, 2, 3}) {
    SCOPED_TRACE(fmt::format("seed {}", seed));
    std::mt19937_64 rng(seed);
    std::map<std::string, std::string> committed;  // the model: key -> value (absent: none)
    struct Open {
      DtxId id;
      std::map<std::string, std::string> writes;
    };
    std::vector<Open> open_txs;
    for (int step = 0; step < 120; ++step) {
      const int op = static_cast<int>(rng() % 10);
      if (op < 4 || open_txs.empty()) {
        std::map<std::string, std::string> w;
        for (int i = 0, n = 1 + static_cast<int>(rng() % 3); i < n; ++i) {
          const size_t len = rng() % 3 == 0 ? 5000 + rng() % 9000 : 1 + rng() % 40;
          // Printable, so that a mismatch reads well; the head names the step.
          w[keys[rng() % keys.size()]] =
              fmt::format("{}:{}", step, std::string(len, static_cast<char>('a' + rng() % 26)));
        }
        auto id = prepare(oid, {w.begin(), w.end()});
        ASSERT_TRUE(id.is_ok()) << id.status().to_string();
        open_txs.push_back({*id, std::move(w)});
      } else if (op < 8) {
        // Decide one, in any order: commit writes its values at its epoch, which may be older
        // than a value committed meanwhile; the model applies in epoch order below.
        size_t i = rng() % open_txs.size();
        Open t = open_txs[i];
        open_txs.erase(open_txs.begin() + static_cast<long>(i));
        if (rng() % 3 != 0) {
          ASSERT_TRUE(commit(t.id).is_ok());
          for (auto& [k, v] : t.writes) committed[fmt::format("{:020}/{}", t.id.epoch, k)] = v;
        } else {
          ASSERT_TRUE(abort(t.id).is_ok());
        }
      } else if (op == 8) {
        ASSERT_TRUE(run_on(target, [&] { return store->checkpoint(); }).is_ok());
      } else {
        reopen();
      }
      // Check every key: the newest committed value by epoch, and blocked iff an open
      // transaction writes it.
      for (const auto& k : keys) {
        std::string want = "<none>";
        uint64_t best = 0;
        for (const auto& [ek, v] : committed) {
          auto slash = ek.find('/');
          if (ek.substr(slash + 1) != k) continue;
          uint64_t e = std::stoull(ek.substr(0, slash));
          if (e > best) {
            best = e;
            want = v;
          }
        }
        bool open_writes = false;
        for (const auto& t : open_txs) open_writes |= t.writes.count(k) != 0;
        ASSERT_EQ(show(oid, k), want) << "step " << step << " key " << k;
        ASSERT_EQ(blocked(oid, k), open_writes) << "step " << step << " key " << k;
      }
    }
    for (auto& t : open_txs) ASSERT_TRUE(abort(t.id).is_ok());
    // Start the next seed from an empty object.
    ASSERT_TRUE(run_on(target, [&] { return store->punch(oid, {}, {}).status(); }).is_ok());
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, DtxTest, ::testing::Values("uring", "aio"),
                         [](const auto& info) { return info.param; });

}  // namespace

namespace {

// A change under a transaction's read is refused once registered; a change above it is not;
// the reading transaction's own change at its epoch is not; a newer change of the key refuses
// an older one; a restart counts every key as read at the clock.
TEST_P(DtxTest, ChangesUnderTransactionsReadsOrNewerChangesAreRefused) {
  ASSERT_TRUE(open().is_ok());
  const ObjectId oid{7, 3};
  const uint64_t reader = dtx_member(3, 0);
  auto prepare_at = [&](uint64_t epoch, const std::string& akey, DtxChecks checks) {
    return run_on(target, [&]() -> Status {
      DtxId id{store->new_epoch(), dtx_member(1, 0)};
      DtxStage stage;
      UpdateOptions o;
      o.epoch = epoch;
      o.stage = &stage;
      auto r = store->update(oid, "d", akey, ValueKind::single, 0, bytes("v"), crc("v"), o);
      if (!r) return r.status();
      TESSERA_TRY(store->dtx_prepare(id, {dtx_member(1, 0)}, std::move(stage), checks));
      return store->dtx_commit(id);
    });
  };
  const uint64_t read_at = run_on(target, [&] { return store->new_epoch() + 1000; });
  const uint64_t below = read_at - 500, above = read_at + 500;
  run_on(target, [&] { store->read_stamps().note(oid, "d", "read", read_at, reader); });
  const DtxChecks plain{false, true, 0, false};
  EXPECT_EQ(prepare_at(below, "read", plain).code(), Errc::restart);
  EXPECT_EQ(prepare_at(read_at, "read", plain).code(), Errc::restart) << "a read at its epoch";
  EXPECT_TRUE(prepare_at(below, "other", plain).is_ok());
  EXPECT_EQ(show(oid, "read"), "<none>") << "a refused change is aborted";
  // The reading transaction's own change at its epoch.
  EXPECT_TRUE(prepare_at(read_at, "read", DtxChecks{true, true, reader, true}).is_ok());
  EXPECT_TRUE(prepare_at(above, "read", plain).is_ok());
  // Newer changes: the key holds a version at `above`.
  EXPECT_EQ(prepare_at(above - 1, "read", DtxChecks{true, false, 0, true}).code(), Errc::restart);
  // A listing of the dkey's akeys meets a new akey under it.
  run_on(target, [&] { store->read_stamps().note(oid, "d", "", above + 100, reader); });
  EXPECT_EQ(prepare_at(above + 50, "new", plain).code(), Errc::restart);
  // After a restart, every key counts as read at the clock.
  reopen();
  const uint64_t clock = run_on(target, [&] { return store->now_epoch(); });
  EXPECT_EQ(prepare_at(clock - 1, "fresh", plain).code(), Errc::restart);
  EXPECT_TRUE(prepare_at(clock + 1000, "fresh", plain).is_ok());
}

TEST(ReadStamps, BoundedTableRaisesItsFloor) {
  ReadStamps rs(8);
  const ObjectId oid{1, 1};
  for (uint64_t i = 1; i <= 20; ++i) rs.note(oid, "d", std::to_string(i), 100 + i, 5);
  EXPECT_LE(rs.size(), 8u);
  EXPECT_GT(rs.floor(), 100u);
  // Every key read counts as read at least at the floor, the newest ones exactly.
  for (uint64_t i = 1; i <= 20; ++i) {
    EXPECT_NE(rs.conflict(oid, "d", std::to_string(i), 100 + i - 1, 0), 0u) << i;
  }
  EXPECT_EQ(rs.conflict(oid, "d", "20", 120, 5), 0u) << "the reader's own read";
  EXPECT_NE(rs.conflict(oid, "d", "20", 120, 6), 0u);
  EXPECT_EQ(rs.conflict(oid, "d", "20", 121, 0), 0u);
  // A punch of the dkey or object meets every read under it.
  EXPECT_NE(rs.conflict(oid, "d", "", 119, 0), 0u);
  EXPECT_NE(rs.conflict(oid, "", "", 119, 0), 0u);
  EXPECT_EQ(rs.conflict(oid, "e", "", 119, 0), 0u);
  EXPECT_EQ(rs.conflict(ObjectId{1, 2}, "", "", 119, 0), 0u);
}

}  // namespace

// Snapshot rollback in one target's store: after rollback_object, what every object shows
// (listings of objects, dkeys and akeys, single values, array records and holes) is what it
// showed at the snapshot; every epoch before the rollback still reads as it did; changes made
// after the rollback sit on top; all of it survives a restart. Seeded random histories.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <filesystem>
#include <map>
#include <random>

#include "storage/store.hpp"
#include "tests/unit/storage/store_fixture.hpp"

using namespace tessera;
using namespace tessera::storage;
using namespace tessera::storage::testing;

namespace {

const std::vector<ObjectId> kObjects = {{5, 1}, {5, 2}, {5, 3}};
const std::vector<std::string> kDkeys = {"d0", "d1", "d2"};
// Single values s0, s1; arrays of 1-byte records (a1) and of 8-byte records (a8).
const std::vector<std::string> kAkeys = {"s0", "s1", "a1", "a8"};

uint32_t rsize_of(const std::string& akey) {
  return akey == "a8" ? 8 : 1;
}

class RollbackTest : public StoreTest {
 protected:
  // Everything the store shows at `epoch` (0: newest), one line per key: the listings decide
  // which keys appear; values (arrays: every record to the end, holes as '.') follow.
  std::map<std::string, std::string> dump(uint64_t epoch) {
    std::map<std::string, std::string> out;
    Status st = run_on(target, [&]() -> Status {
      auto all = [&](ListScope scope, ObjectId oid, std::string dk) -> Result<std::vector<ListEntry>> {
        std::vector<ListEntry> v;
        std::string anchor;
        while (true) {
          auto page = store->list(scope, oid, dk, {}, anchor, 7, epoch);
          if (!page) return page.status();
          v.insert(v.end(), page->entries.begin(), page->entries.end());
          if (page->done) return v;
          anchor = page->anchor;
        }
      };
      auto objs = all(ListScope::objects, {}, {});
      if (!objs) return objs.status();
      for (const ListEntry& o : *objs) {
        auto dkeys = all(ListScope::dkeys, o.oid, {});
        if (!dkeys) return dkeys.status();
        for (const ListEntry& d : *dkeys) {
          auto akeys = all(ListScope::akeys, o.oid, d.key);
          if (!akeys) return akeys.status();
          for (const ListEntry& a : *akeys) {
            const std::string name = fmt::format("{}.{}/{}/{}", o.oid.hi, o.oid.lo, d.key, a.key);
            FetchOptions fo;
            fo.rsize = rsize_of(a.key);
            auto r = store->fetch(o.oid, d.key, a.key, a.kind, 0, 0, epoch, fo);
            if (!r) return r.status();
            std::string v(r->data.view());
            if (a.kind == ValueKind::array) {
              for (const auto& [off, len] : r->holes) {
                for (uint64_t i = off * fo.rsize; i < (off + len) * fo.rsize; ++i) v[i] = '.';
              }
            }
            out[name] = v;
          }
        }
      }
      return Status();
    });
    EXPECT_TRUE(st.is_ok()) << st.to_string();
    return out;
  }

  // One random change (each at a fresh epoch of the store's clock).
  void random_change(std::mt19937_64& rng) {
    const ObjectId oid = kObjects[rng() % kObjects.size()];
    const std::string dk = kDkeys[rng() % kDkeys.size()];
    const std::string ak = kAkeys[rng() % kAkeys.size()];
    const char fill = static_cast<char>('a' + rng() % 26);
    const uint32_t rs = rsize_of(ak);
    Status st = run_on(target, [&]() -> Status {
      const uint64_t pick = rng() % 20;
      if (pick == 0) return store->punch(oid, {}, {}).status();
      if (pick <= 2) return store->punch(oid, dk, {}).status();
      if (pick <= 4) return store->punch(oid, dk, ak).status();
      if (ak[0] == 's') {
        // Inline and extent-backed values alike.
        std::string v(1 + rng() % 6000, fill);
        return store->update(oid, dk, ak, ValueKind::single, 0, bytes(v), crc(v)).status();
      }
      const uint64_t off = rng() % 40, n = 1 + rng() % 24;
      if (pick <= 7) return store->punch_range(oid, dk, ak, off, n, rs).status();
      std::string v(n * rs, fill);
      UpdateOptions uo;
      uo.rsize = rs;
      return store->update(oid, dk, ak, ValueKind::array, off, bytes(v), crc(v), uo).status();
    });
    ASSERT_TRUE(st.is_ok()) << st.to_string();
  }

  uint64_t now() {
    return run_on(target, [&] { return store->now_epoch(); });
  }

  Result<RollbackStats> rollback(uint64_t snap, uint64_t at) {
    return run_on(target, [&]() -> Result<RollbackStats> {
      TESSERA_TRY(store->rollback_begin(snap, at));
      RollbackStats total;
      for (const ObjectId& oid : store->object_keys()) {
        auto r = store->rollback_object(oid, snap, at);
        if (!r) return r.status();
        total += *r;
      }
      return total;
    });
  }
};

TEST_P(RollbackTest, RandomHistoriesReadAsTheSnapshotAfterARollback) {
  for (uint64_t seed : {1, 2, 3, 4, 5, 6}) {
    SCOPED_TRACE(fmt::format("seed {}", seed));
    ASSERT_TRUE(open().is_ok());
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 40; ++i) ASSERT_NO_FATAL_FAILURE(random_change(rng));
    const uint64_t snap = now();
    const auto at_snap = dump(snap);
    for (int i = 0; i < 25; ++i) ASSERT_NO_FATAL_FAILURE(random_change(rng));
    const uint64_t mid = now();
    const auto at_mid = dump(mid);
    for (int i = 0; i < 25; ++i) ASSERT_NO_FATAL_FAILURE(random_change(rng));
    const auto before = dump(0);

    const uint64_t at = now() + 1000;
    auto r = rollback(snap, at);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(dump(0), at_snap);
    EXPECT_EQ(dump(at), at_snap);
    // History below the rollback reads as before: later snapshots stay readable.
    EXPECT_EQ(dump(mid), at_mid);
    EXPECT_EQ(dump(at - 1), before);
    EXPECT_EQ(dump(snap), at_snap);
    // Rolling back again to the same snapshot changes nothing visible.
    auto again = rollback(snap, at + 1000);
    ASSERT_TRUE(again.is_ok()) << again.status().to_string();
    EXPECT_EQ(dump(0), at_snap);

    // Changes after the rollback sit on top; everything survives a restart.
    for (int i = 0; i < 10; ++i) ASSERT_NO_FATAL_FAILURE(random_change(rng));
    const auto after = dump(0);
    close();
    ASSERT_TRUE(open().is_ok());
    EXPECT_EQ(dump(0), after);
    EXPECT_EQ(dump(at), at_snap);
    EXPECT_EQ(dump(mid), at_mid);
    EXPECT_EQ(dump(at - 1), before);
    close();
    std::filesystem::remove(dir.file("target.dat"));
  }
}

TEST_P(RollbackTest, RefusesEpochsItCannotRollBackTo) {
  ASSERT_TRUE(open().is_ok());
  const ObjectId oid{5, 9};
  ASSERT_TRUE(put(oid, "d", "a", "v1").is_ok());
  const uint64_t snap = now();
  ASSERT_TRUE(put(oid, "d", "a", "v2").is_ok());
  ASSERT_TRUE(put(oid, "d", "a", "v3").is_ok());
  // An epoch the clock has passed: a change may already sit above it.
  auto late = rollback(snap, now());
  EXPECT_EQ(late.status().code(), Errc::stale) << late.status().to_string();
  EXPECT_EQ(rollback(now() + 10, now() + 5).status().code(), Errc::invalid_argument);
  // Aggregated past the snapshot: only protected epochs stay readable below it.
  run_on(target, [&] { store->set_protected_epochs({snap}); });
  aggregate(now());
  auto kept = rollback(snap, now() + 100);
  ASSERT_TRUE(kept.is_ok()) << kept.status().to_string();
  EXPECT_EQ(get_str(oid, "d", "a"), "v1");
  EXPECT_EQ(kept->rewritten, 1u);
  ASSERT_TRUE(put(oid, "d", "a", "v4").is_ok());
  const uint64_t unkept = now();
  ASSERT_TRUE(put(oid, "d", "a", "v5").is_ok());
  aggregate(now());
  auto gone = rollback(unkept, now() + 100);
  EXPECT_EQ(gone.status().code(), Errc::invalid_argument) << gone.status().to_string();
  EXPECT_EQ(get_str(oid, "d", "a"), "v5");
}

// A change a leader stamped before the rollback but that reaches this store after it began would
// land below the rollback's changes, unseen: it is refused as stale (its sender retries at a new
// epoch, above them). Rebuild imports still move old history.
TEST_P(RollbackTest, ChangesStampedBeforeARollbackAreRefusedAfterItBegins) {
  ASSERT_TRUE(open().is_ok());
  const ObjectId oid{5, 7};
  ASSERT_TRUE(put(oid, "d", "a", "v1").is_ok());
  const uint64_t snap = now();
  ASSERT_TRUE(put(oid, "d", "a", "v2").is_ok());
  const uint64_t stamped = run_on(target, [&] { return store->new_epoch(); });
  const uint64_t at = now() + 1000;
  auto r = rollback(snap, at);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const std::string late = "stamped before the rollback";
  auto write_at = [&](uint64_t epoch, bool import) {
    return run_on(target, [&] {
      UpdateOptions uo;
      uo.epoch = epoch;
      uo.import = import;
      return store->update(oid, "d", "b", ValueKind::single, 0, bytes(late), crc(late), uo)
          .status();
    });
  };
  Status refused = write_at(stamped, false);
  EXPECT_EQ(refused.code(), Errc::stale) << refused.to_string();
  EXPECT_EQ(run_on(target, [&] { return store->punch(oid, "d", "a", stamped).status(); }).code(),
            Errc::stale);
  EXPECT_EQ(get(oid, "d", "b").status().code(), Errc::not_found);
  EXPECT_EQ(get_str(oid, "d", "a"), "v1");
  // Retried at a new epoch it lands above the rollback.
  ASSERT_TRUE(put(oid, "d", "b", late).is_ok());
  EXPECT_EQ(get_str(oid, "d", "b"), late);
  // A rebuild import keeps its old epoch.
  ASSERT_TRUE(write_at(stamped, true).is_ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, RollbackTest, ::testing::Values("uring", "aio"),
                         [](const auto& info) { return info.param; });

}  // namespace

// Background aggregation and its guard (StoreOptions::guard): a pass runs only once the guard
// said what to keep, and keeps every punch while it holds. A pool's shard holds it while a
// rebuild moves the pool's data (shard/pool_shard.hpp, aggregation_guard): the histories a
// rebuild pushes keep their old epochs, and the home they go to takes the pool's new writes
// meanwhile, so a punch written there may come before the older version it hides.
#include <atomic>

#include "tests/unit/storage/store_fixture.hpp"

namespace tessera::storage::testing {
namespace {

using tessera::testing::eventually;

class AggregationGuardTest : public StoreTest {
 protected:
  // Background passes every 10 ms, of every version older than now, asking the guard first.
  void open_guarded() {
    tweak = [this](StoreOptions& so) {
      so.aggregation_interval = std::chrono::milliseconds(10);
      so.aggregation_delay = std::chrono::milliseconds(0);
      so.guard = [this]() -> Result<AggregationGuard> {
        ++asked;
        AggregationGuard g;
        if (hold) g.hold = "a rebuild moves data in";
        return g;
      };
    };
    ASSERT_TRUE(open().is_ok());
  }
  // Passes the guard was asked about from now on: three mean a whole pass ran after the first.
  bool asked_again(int n) {
    const int from = asked.load();
    return eventually([&] { return asked.load() >= from + n; }, std::chrono::seconds(60));
  }
  uint64_t aggregations() {
    return run_on(target, [&] { return store->stats().aggregations; });
  }
  std::atomic<int> asked{0};
  std::atomic<bool> hold{true};
};

// The history a rebuild pushes (a version at an older epoch) reaches a home after a newer
// punch of the same akey, a write of the pool's that went to the new home directly. While the
// guard holds, passes run (an overwritten value's older version goes) but the punch stays and
// hides the version; once it lets go, aggregation removes both. A pass that dropped the punch
// meanwhile (nothing below it yet) would let the import bring the punched value back.
TEST_P(AggregationGuardTest, AHeldPassKeepsThePunchThatHidesAnOlderImport) {
  open_guarded();
  const ObjectId src{7, 1}, home{7, 2}, other{7, 4};
  ASSERT_TRUE(put(src, "d", "a", "punched later").is_ok());
  auto x = run_on(target, [&] { return store->export_akey(src, "d", "a"); });
  ASSERT_TRUE(x.is_ok()) << x.status().to_string();
  ASSERT_TRUE(run_on(target, [&] { return store->punch(home, "d", "a"); }).is_ok());
  ASSERT_TRUE(put(other, "d", "a", "first").is_ok());
  ASSERT_TRUE(put(other, "d", "a", "second").is_ok());
  ASSERT_TRUE(asked_again(3));
  EXPECT_GT(aggregations(), 0u) << "no pass ran while the guard held";
  auto over = run_on(target, [&] { return store->export_akey(other, "d", "a"); });
  ASSERT_TRUE(over.is_ok()) << over.status().to_string();
  EXPECT_EQ(over->versions.size(), 1u) << "a held pass kept an overwritten version";
  auto punched = run_on(target, [&] { return store->export_akey(home, "d", "a"); });
  ASSERT_TRUE(punched.is_ok()) << punched.status().to_string();
  EXPECT_EQ(punched->akey_punches.size(), 1u) << "a held pass dropped a punch";
  ASSERT_TRUE(run_on(target, [&] { return store->import_akey(home, "d", "a", *x); }).is_ok());
  EXPECT_EQ(get(home, "d", "a").status().code(), Errc::not_found)
      << "the punch no longer hides the value imported below it";

  // Released: two more passes mean a whole one ran after the guard let go.
  hold = false;
  const uint64_t held_passes = aggregations();
  ASSERT_TRUE(
      eventually([&] { return aggregations() >= held_passes + 2; }, std::chrono::seconds(60)));
  EXPECT_EQ(get(home, "d", "a").status().code(), Errc::not_found);
  auto left = run_on(target, [&] { return store->export_akey(home, "d", "a"); });
  ASSERT_TRUE(left.is_ok()) << left.status().to_string();
  EXPECT_TRUE(left->versions.empty() && left->akey_punches.empty())
      << "aggregation left " << left->versions.size() << " versions and "
      << left->akey_punches.size() << " punches of a punched value";
}

// A guard that cannot be asked (the management service unreachable) means no pass either: the
// snapshots to keep are unknown.
TEST_P(AggregationGuardTest, NoPassRunsWhileTheGuardCannotBeAsked) {
  tweak = [this](StoreOptions& so) {
    so.aggregation_interval = std::chrono::milliseconds(10);
    so.aggregation_delay = std::chrono::milliseconds(0);
    so.guard = [this]() -> Result<AggregationGuard> {
      ++asked;
      if (hold) return Status(Errc::unavailable, "the management service does not answer");
      return AggregationGuard{};
    };
  };
  ASSERT_TRUE(open().is_ok());
  ASSERT_TRUE(put(ObjectId{7, 3}, "d", "a", "one").is_ok());
  ASSERT_TRUE(put(ObjectId{7, 3}, "d", "a", "two").is_ok());
  ASSERT_TRUE(asked_again(3));
  EXPECT_EQ(aggregations(), 0u);
  hold = false;
  EXPECT_TRUE(eventually([&] { return aggregations() > 0; }, std::chrono::seconds(60)));
}

// The punches of the objects the guard names stay without a hold (a container whose former
// homes keep their copies: a kept copy merged into a later fill must meet the punch that hides
// it); every other object's punch that hides nothing goes.
TEST_P(AggregationGuardTest, ThePunchesOfTheObjectsTheGuardNamesStay) {
  ASSERT_TRUE(open().is_ok());
  const ObjectId kept{9, 1}, other{9, 2}, src{9, 3};
  ASSERT_TRUE(put(src, "d", "a", "an old copy").is_ok());
  auto x = run_on(target, [&] { return store->export_akey(src, "d", "a"); });
  ASSERT_TRUE(x.is_ok()) << x.status().to_string();
  for (const ObjectId& o : {kept, other}) {
    ASSERT_TRUE(put(o, "d", "a", "deleted").is_ok());
    ASSERT_TRUE(run_on(target, [&] { return store->punch(o, "d", "a"); }).is_ok());
  }
  auto r = run_on(target, [&] {
    return store->aggregate(0, {}, false, [&](const ObjectId& key) { return key == kept; });
  });
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_FALSE(r->punches_kept) << "no hold: the pass as a whole dropped punches";
  auto left = run_on(target, [&] { return store->export_akey(kept, "d", "a"); });
  ASSERT_TRUE(left.is_ok()) << left.status().to_string();
  EXPECT_EQ(left->akey_punches.size(), 1u) << "the named object's punch was dropped";
  EXPECT_TRUE(left->versions.empty()) << "the value the punch hides stayed";
  ASSERT_TRUE(run_on(target, [&] { return store->import_akey(kept, "d", "a", *x); }).is_ok());
  EXPECT_EQ(get(kept, "d", "a").status().code(), Errc::not_found)
      << "a copy merged in after the pass brought a deleted value back";
  auto gone = run_on(target, [&] { return store->export_akey(other, "d", "a"); });
  EXPECT_TRUE(!gone.is_ok() || (gone->akey_punches.empty() && gone->versions.empty()))
      << "another object's punch that hides nothing stayed";
}

INSTANTIATE_TEST_SUITE_P(Backends, AggregationGuardTest, ::testing::Values("uring"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tessera::storage::testing

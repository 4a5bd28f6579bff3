// PlacementCache (placement/cache.hpp): what it serves is what placement::place computes in the
// map of the caller's owner, across seeded sequences of map changes and lookups; it stays
// within its bounds.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <random>

#include "placement/cache.hpp"
#include "tests/sim/seeds.hpp"
#include "tests/unit/placement/maps.hpp"

using namespace tessera;
using namespace tessera::placement;
using tessera::placement::testing::make_map;

namespace {

std::string describe(const Layout& l) {
  std::string s = fmt::format("{}x{}:", l.groups, l.group_size);
  for (const auto& x : l.shards) {
    s += fmt::format(" {}.{}{}{}", x.rank, x.target, x.available ? "" : "!", x.fallback ? "f" : "");
  }
  return s;
}

// Everything a caller reads of a placement.
std::string describe(const Placement& p) {
  std::string s = describe(p.now);
  if (p.settled) s += " | settled " + describe(*p.settled);
  s += " | up-in";
  for (auto b : p.home_up_in) s += b != 0 ? "1" : "0";
  s += " | serving";
  for (auto b : p.old_serving) s += b != 0 ? "1" : "0";
  return s;
}

const TargetState kStates[] = {TargetState::up_in, TargetState::up, TargetState::down,
                               TargetState::down_out, TargetState::drain};

// A map change of the kinds pool commands make: a target's state, an engine's whole state,
// a move begun (the settled map kept) or settled; every change a new version.
PoolMap change(const PoolMap& m, std::mt19937_64& rng) {
  PoolMap next = m;
  ++next.version;
  auto& e = next.engines[rng() % next.engines.size()];
  switch (rng() % 4) {
    case 0:
      e.targets[rng() % e.targets.size()].state = kStates[rng() % std::size(kStates)];
      break;
    case 1:
      for (auto& t : e.targets) t.state = kStates[rng() % std::size(kStates)];
      break;
    case 2:
      if (!next.moving()) next.settled = m.engines;
      e.targets[rng() % e.targets.size()].state = TargetState::down;
      break;
    default:
      next.settled.clear();
      break;
  }
  return next;
}

ObjectId object(std::mt19937_64& rng) {
  static const char* kClassNames[] = {"S1", "SX", "RP_2G1", "RP_3GX", "EC_2P1G1", "EC_4P2GX"};
  const ObjectClass* c = find_class(kClassNames[rng() % std::size(kClassNames)]);
  const uint64_t hi = rng() % 4, lo = rng() % 8;
  return with_class({hi, lo}, c->id);  // a small set: repeats hit
}

}  // namespace

TEST(PlacementCache, ServesWhatPlaceComputesInTheCallersMap) {
  for (uint64_t seed : sim::seeds("PLACEMENT_CACHE", 8, 104729)) {
    std::mt19937_64 rng(seed);
    PlacementCache cache(rng() % 2 == 0 ? 64 : 4096, 32);
    auto owner = std::make_shared<const PoolMap>(make_map(3, 3, 4));
    uint64_t served = 0;
    for (int step = 0; step < 400 && !HasFailure(); ++step) {
      if (rng() % 8 == 0) {
        // A new map: the old owner is dropped by the caller, as a replaced view is.
        owner = std::make_shared<const PoolMap>(change(*owner, rng));
      }
      const ObjectId oid = object(rng);
      auto want = place(oid, *owner);
      auto got = cache.place(oid, owner, *owner);
      ASSERT_EQ(want.is_ok(), got.is_ok()) << "seed " << seed << " step " << step;
      if (!want) {
        ADD_FAILURE() << want.status().to_string();
        continue;
      }
      ++served;
      ASSERT_EQ(describe(**got), describe(*want))
          << "seed " << seed << " step " << step << " map version " << owner->version
          << "; replay with TESSERA_PLACEMENT_CACHE_SEED=" << seed;
    }
    EXPECT_GT(cache.hits(), 0u) << "seed " << seed << ": the sequence never repeated an object";
    EXPECT_GT(served, 100u);
  }
}

TEST(PlacementCache, ANewOwnerOfTheSameVersionIsNotServedTheOldMapsPlacements) {
  // Two maps of one version that differ (two pools, or a view rebuilt): the owner, not the
  // version, tells them apart.
  auto a = std::make_shared<const PoolMap>(make_map(2, 4, 2));
  PoolMap changed = *a;
  changed.engines[0].targets[0].state = TargetState::down;
  changed.engines[1].targets[1].state = TargetState::down;
  auto b = std::make_shared<const PoolMap>(changed);
  PlacementCache cache;
  const ObjectId oid = with_class({7, 7}, find_class("RP_3GX")->id);
  ASSERT_TRUE(cache.place(oid, a, *a).is_ok());
  auto got = cache.place(oid, b, *b);
  ASSERT_TRUE(got.is_ok());
  EXPECT_EQ(describe(**got), describe(*place(oid, *b)));
  EXPECT_NE(describe(*place(oid, *a)), describe(*place(oid, *b))) << "the maps must differ";
  EXPECT_EQ(cache.hits(), 0u);
  EXPECT_EQ(cache.objects(), 1u);
}

TEST(PlacementCache, StaysWithinItsBounds) {
  auto map = std::make_shared<const PoolMap>(make_map(2, 4, 4));  // 32 targets
  const uint16_t gx = find_class("RP_2GX")->id;                   // 16 groups of 2: 32 shards
  PlacementCache cache(100, 1000);                                // three such objects at most
  for (uint64_t i = 0; i < 10; ++i) {
    ASSERT_TRUE(cache.place(with_class({1, i}, gx), map, *map).is_ok());
    EXPECT_LE(cache.shards(), 100u);
  }
  EXPECT_EQ(cache.objects(), 3u);
  // The most recent are kept; a lookup of one is a hit.
  ASSERT_TRUE(cache.place(with_class({1, 9}, gx), map, *map).is_ok());
  EXPECT_EQ(cache.hits(), 1u);
  ASSERT_TRUE(cache.place(with_class({1, 0}, gx), map, *map).is_ok());
  EXPECT_EQ(cache.hits(), 1u);

  PlacementCache few(1 << 20, 4);
  for (uint64_t i = 0; i < 10; ++i) {
    ASSERT_TRUE(few.place(with_class({2, i}, gx), map, *map).is_ok());
  }
  EXPECT_EQ(few.objects(), 4u);

  PlacementCache tiny(16, 1000);  // smaller than one placement: computed, never kept
  auto p = tiny.place(with_class({3, 3}, gx), map, *map);
  ASSERT_TRUE(p.is_ok());
  EXPECT_EQ((*p)->now.shards.size(), 32u);
  EXPECT_EQ(tiny.objects(), 0u);
}

TEST(PlacementCache, AFreedOwnersAddressIsNeverTakenForIt) {
  // The caller drops its view before it makes the next: the allocator may give the next one the
  // same address, which the cache must not take for the map it served (it keeps its owner).
  PoolMap healthy = make_map(2, 4, 2);
  PoolMap degraded = healthy;
  degraded.engines[0].targets[0].state = TargetState::down;
  degraded.engines[1].targets[1].state = TargetState::down;
  const ObjectId oid = with_class({7, 7}, find_class("RP_3GX")->id);
  ASSERT_NE(describe(*place(oid, healthy)), describe(*place(oid, degraded)));
  PlacementCache cache;
  for (int i = 0; i < 16; ++i) {
    const PoolMap& m = i % 2 == 0 ? healthy : degraded;
    auto owner = std::make_shared<const PoolMap>(m);
    auto got = cache.place(oid, owner, *owner);
    ASSERT_TRUE(got.is_ok());
    ASSERT_EQ(describe(**got), describe(*place(oid, m))) << "view " << i;
  }
}

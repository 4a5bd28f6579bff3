// Placement is a pure function of the object id, the dkey and the pool map, and every object
// already stored is found again only while it stays the same function: a change strands them.
// These tests pin it across releases: the exact targets of a few objects, and a digest over
// thousands of objects, dkeys and maps (healthy, with an engine out, with a target down,
// extended). A deliberate change of placement is a format change: it needs a migration, and
// then new values here. TESSERA_GOLDEN_PRINT=1 prints the values this build computes.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/checksum.hpp"
#include "placement/erasure.hpp"
#include "placement/layout.hpp"
#include "placement/placement.hpp"
#include "tests/unit/placement/maps.hpp"

using namespace tessera;
using namespace tessera::placement;
using tessera::placement::testing::make_map;

namespace {

bool printing() {
  return std::getenv("TESSERA_GOLDEN_PRINT") != nullptr;
}

// The maps the values below were computed with.
std::vector<PoolMap> golden_maps() {
  PoolMap healthy = make_map(2, 4, 2);  // 8 engines x 2 targets on 2 hosts
  PoolMap engine_out = healthy;
  engine_out.version = 2;
  for (auto& t : engine_out.engine(3)->targets) t.state = TargetState::down_out;
  PoolMap target_down = engine_out;
  target_down.version = 3;
  target_down.engine(5)->targets[1].state = TargetState::down;
  PoolMap extended = make_map(3, 4, 2);  // 4 more engines on a third host
  extended.version = 4;
  return {healthy, engine_out, target_down, extended};
}

// "rank.target" of every shard, groups separated by '|', fallbacks marked '*'.
std::string shards(const Layout& l) {
  std::string out;
  for (uint32_t g = 0; g < l.groups; ++g) {
    if (g > 0) out += '|';
    for (const Shard& s : l.group(g)) {
      out += std::to_string(s.rank) + "." + std::to_string(s.target) + (s.fallback ? "*" : "");
      out += ' ';
    }
  }
  return out;
}

struct Pinned {
  const char* cls;
  uint64_t hi, lo;
  int map;  // index into golden_maps()
  const char* shards;
};

}  // namespace

TEST(GoldenPlacement, TheseObjectsLiveOnExactlyTheseTargets) {
  const Pinned pinned[] = {
#include "tests/unit/placement/golden_pinned.inc"
  };
  const auto maps = golden_maps();
  for (const Pinned& p : pinned) {
    auto l = compute_layout(with_class(ObjectId{p.hi, p.lo}, find_class(p.cls)->id), maps[p.map]);
    ASSERT_TRUE(l) << l.status().to_string();
    if (printing()) {
      std::printf("{\"%s\", %llu, %llu, %d, \"%s\"},\n", p.cls,
                  static_cast<unsigned long long>(p.hi), static_cast<unsigned long long>(p.lo),
                  p.map, shards(*l).c_str());
      continue;
    }
    EXPECT_EQ(shards(*l), p.shards) << p.cls << " oid " << p.hi << "." << p.lo << " map " << p.map;
  }
}

TEST(GoldenPlacement, ADigestOfThousandsOfLayoutsDkeyGroupsAndStripeRotations) {
  const auto maps = golden_maps();
  const char* classes[] = {"S1",     "S2",     "S4",       "SX",       "RP_2G1",   "RP_2GX",
                           "RP_3G1", "RP_3GX", "EC_2P1G1", "EC_2P1GX", "EC_4P2G1", "EC_4P2GX"};
  std::string all;
  for (size_t m = 0; m < maps.size(); ++m) {
    for (const char* cls : classes) {
      for (uint64_t i = 0; i < 500; ++i) {
        const ObjectId oid{i * 7919, i ^ 0x5deece66dULL};
        auto l = compute_layout(with_class(oid, find_class(cls)->id), maps[m]);
        ASSERT_TRUE(l) << cls << " " << l.status().to_string();
        all += shards(*l);
        all += '\n';
      }
    }
  }
  const uint32_t layouts = crc32c(reinterpret_cast<const uint8_t*>(all.data()), all.size());
  std::string keys;
  for (uint64_t i = 0; i < 2000; ++i) {
    const std::string dkey = "dkey-" + std::to_string(i * 31);
    for (uint32_t groups : {1u, 2u, 3u, 7u, 16u, 1000u}) {
      keys += std::to_string(dkey_group(dkey, groups)) + ',';
    }
    keys += std::to_string(ec_geometry(4, 2, 4096, dkey).rot) + ';';
    keys += std::to_string(ec_geometry(16, 2, 4096, dkey).rot) + ';';
    keys += std::to_string(target_for(i, i * 977, 37)) + '\n';
  }
  const uint32_t dkeys = crc32c(reinterpret_cast<const uint8_t*>(keys.data()), keys.size());
  if (printing()) {
    std::printf("layouts digest 0x%08x over %zu bytes, dkeys digest 0x%08x over %zu bytes\n",
                layouts, all.size(), dkeys, keys.size());
    return;
  }
  EXPECT_EQ(layouts, 0x2e8c1426u) << "placement of objects changed: every stored object moved";
  EXPECT_EQ(dkeys, 0xe85ffcc4u) << "dkey groups or stripe rotations changed";
}

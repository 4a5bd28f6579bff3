// Property tests of layouts over thousands of OIDs: fault-domain constraints, determinism,
// minimal movement on exclusion and on extension, and how evenly shards spread over targets.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "placement/layout.hpp"
#include "tests/unit/placement/maps.hpp"

using namespace tessera;
using namespace tessera::placement;

namespace {

using tessera::placement::testing::make_map;

ObjectId oid_n(uint64_t i, const char* cls) {
  return with_class(ObjectId{i * 7919, i}, find_class(cls)->id);
}

const char* kReplicated[] = {"RP_2G1", "RP_2GX", "RP_3G1", "RP_3GX"};
const char* kAll[] = {"S1", "S2", "S4", "SX", "RP_2G1", "RP_2GX", "RP_3G1", "RP_3GX"};

void expect_domains(const Layout& l, const PoolMap& m, uint64_t i) {
  size_t hosts = m.layout_hosts();
  for (uint32_t g = 0; g < l.groups; ++g) {
    std::set<uint32_t> ranks;
    std::set<std::string> hs;
    for (const Shard& s : l.group(g)) {
      if (!s.available) continue;
      ranks.insert(s.rank);
      hs.insert(m.engine(s.rank)->host);
    }
    size_t live = static_cast<size_t>(
        std::count_if(l.group(g).begin(), l.group(g).end(), [](auto& s) { return s.available; }));
    ASSERT_EQ(ranks.size(), live) << "two shards of one group on one engine, oid " << i;
    ASSERT_EQ(hs.size(), std::min(live, hosts)) << "hosts not spread, oid " << i;
  }
}

}  // namespace

TEST(ObjectClasses, TableAndOidBits) {
  EXPECT_EQ(object_classes().size(), 16u);
  for (const auto& c : object_classes()) {
    EXPECT_EQ(find_class(c.name), &c);
    EXPECT_EQ(find_class(c.id), &c);
  }
  EXPECT_EQ(find_class("RP_3GX")->group_size, 3u);
  EXPECT_EQ(find_class("RP_3GX")->tolerated(), 2u);
  EXPECT_EQ(find_class("EC_4P2GX")->tolerated(), 2u);
  EXPECT_EQ(find_class("S1")->tolerated(), 0u);
  EXPECT_EQ(find_class("RP_4G1"), nullptr);
  ObjectId o = with_class({0x1234, 99}, find_class("RP_2G1")->id);
  EXPECT_EQ(oid_class(o), find_class("RP_2G1")->id);
  EXPECT_TRUE(check_oid(o).is_ok());
  EXPECT_EQ(check_oid({0x1234, 99}).code(), Errc::invalid_argument);  // class 0
  EXPECT_EQ(check_oid(with_class({1ull << 40, 1}, 1)).code(), Errc::invalid_argument);
}

TEST(Layout, GroupCountsAndTooFewFaultDomains) {
  PoolMap m = make_map(1, 4, 2);  // 4 engines x 2 targets
  EXPECT_EQ(*group_count(*find_class("RP_3GX"), m), 2u);
  EXPECT_EQ(*group_count(*find_class("RP_2GX"), m), 4u);
  EXPECT_EQ(*group_count(*find_class("SX"), m), 8u);
  EXPECT_EQ(*group_count(*find_class("S4"), m), 4u);
  PoolMap two = make_map(1, 2, 2);
  auto r = group_count(*find_class("RP_3G1"), two);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().code(), Errc::unsatisfiable);
  EXPECT_NE(r.status().message().find("not enough fault domains"), std::string::npos);
  auto l = compute_layout(oid_n(1, "RP_3GX"), two);
  EXPECT_FALSE(l);
  PoolMap one = make_map(1, 1, 2);
  EXPECT_FALSE(group_count(*find_class("S4"), one));
}

TEST(Layout, DeterministicAndRespectsFaultDomains) {
  for (PoolMap m : {make_map(1, 4, 2), make_map(3, 2, 4), make_map(6, 1, 8), make_map(2, 3, 1)}) {
    for (const char* cls : kAll) {
      if (!group_count(*find_class(cls), m)) continue;
      for (uint64_t i = 0; i < 1500; ++i) {
        auto a = compute_layout(oid_n(i, cls), m);
        auto b = compute_layout(oid_n(i, cls), m);
        ASSERT_TRUE(a) << a.status().to_string();
        ASSERT_EQ(a->shards.size(), size_t{a->groups} * a->group_size);
        for (size_t s = 0; s < a->shards.size(); ++s) {
          ASSERT_EQ(a->shards[s].rank, b->shards[s].rank);
          ASSERT_EQ(a->shards[s].target, b->shards[s].target);
          ASSERT_TRUE(a->shards[s].available);
        }
        expect_domains(*a, m, i);
      }
    }
  }
}

// Excluding a target (or a whole engine) moves exactly the shards that lived there, each to a
// healthy target that keeps its group on distinct engines.
TEST(Layout, ExclusionMovesOnlyTheShardsOfTheExcludedTargets) {
  PoolMap before = make_map(2, 3, 4);  // 6 engines on 2 hosts, 24 targets
  for (int scenario = 0; scenario < 2; ++scenario) {
    PoolMap after = before;
    after.version++;
    if (scenario == 0) {
      after.engine(2)->targets[1].state = TargetState::down;  // one target
    } else {
      for (auto& t : after.engine(4)->targets) t.state = TargetState::down_out;  // one engine
    }
    size_t moved = 0, total = 0;
    for (const char* cls : kAll) {
      for (uint64_t i = 0; i < 3000; ++i) {
        auto a = compute_layout(oid_n(i, cls), before);
        auto b = compute_layout(oid_n(i, cls), after);
        ASSERT_TRUE(a && b);
        for (size_t s = 0; s < a->shards.size(); ++s) {
          const Shard& x = a->shards[s];
          const Shard& y = b->shards[s];
          ++total;
          bool was_hit = !is_available(*after.state(x.rank, x.target));
          if (!was_hit) {
            ASSERT_EQ(x.rank, y.rank) << cls << " oid " << i << " shard " << s;
            ASSERT_EQ(x.target, y.target) << cls << " oid " << i << " shard " << s;
            continue;
          }
          ++moved;
          ASSERT_TRUE(y.available && y.fallback) << cls << " oid " << i;
          ASSERT_TRUE(is_available(*after.state(y.rank, y.target)));
        }
        expect_domains(*b, after, i);
      }
    }
    std::printf("exclusion scenario %d: %zu of %zu shards moved (%.2f%%)\n", scenario, moved, total,
                100.0 * static_cast<double>(moved) / static_cast<double>(total));
    EXPECT_GT(moved, 0u);
  }
}

// Two failures: the shards moved by the first stay where they went unless the second hits them.
TEST(Layout, SecondExclusionKeepsFirstFallbacks) {
  PoolMap m1 = make_map(1, 6, 2);
  m1.engine(1)->targets[0].state = TargetState::down;
  PoolMap m2 = m1;
  for (auto& t : m2.engine(3)->targets) t.state = TargetState::down;
  for (const char* cls : kReplicated) {
    for (uint64_t i = 0; i < 3000; ++i) {
      auto a = compute_layout(oid_n(i, cls), m1);
      auto b = compute_layout(oid_n(i, cls), m2);
      ASSERT_TRUE(a && b);
      for (size_t s = 0; s < a->shards.size(); ++s) {
        const Shard& x = a->shards[s];
        if (x.rank == 3) continue;
        // A shard whose group lost a member may be unchanged or not; only those untouched
        // by engine 3 in its whole group must keep their home.
        bool group_hit = false;
        uint32_t g = static_cast<uint32_t>(s / a->group_size);
        for (const Shard& o : a->group(g)) group_hit |= o.rank == 3;
        if (group_hit) continue;
        ASSERT_EQ(x.rank, b->shards[s].rank) << cls << " oid " << i;
        ASSERT_EQ(x.target, b->shards[s].target) << cls << " oid " << i;
      }
      expect_domains(*b, m2, i);
    }
  }
}

// Adding engines (extend) moves about added/total of the shards.
TEST(Layout, ExtensionMovesAboutOneNth) {
  struct Case {
    PoolMap before, after;
    const char* what;
  };
  std::vector<Case> cases;
  {
    PoolMap b = make_map(1, 4, 2);
    PoolMap a = b;
    for (auto& e : make_map(1, 2, 2, 4).engines) a.engines.push_back(e);  // same host
    cases.push_back({b, a, "4 -> 6 engines, one host"});
  }
  {
    PoolMap b = make_map(8, 1, 4);
    PoolMap a = make_map(10, 1, 4);  // two new hosts
    cases.push_back({b, a, "8 -> 10 hosts"});
  }
  for (auto& c : cases) {
    for (const char* cls : {"S1", "RP_2G1", "RP_3G1"}) {
      size_t moved = 0, total = 0;
      for (uint64_t i = 0; i < 5000; ++i) {
        auto a = compute_layout(oid_n(i, cls), c.before);
        auto b = compute_layout(oid_n(i, cls), c.after);
        ASSERT_TRUE(a && b);
        for (size_t s = 0; s < a->shards.size(); ++s, ++total) {
          moved +=
              (a->shards[s].rank != b->shards[s].rank || a->shards[s].target != b->shards[s].target)
                  ? 1
                  : 0;
        }
      }
      double added = static_cast<double>(c.after.layout_targets() - c.before.layout_targets());
      double expect = added / static_cast<double>(c.after.layout_targets());
      double got = static_cast<double>(moved) / static_cast<double>(total);
      std::printf("extend %s, %s: %.1f%% of shards moved (ideal %.1f%%)\n", c.what, cls, 100 * got,
                  100 * expect);
      EXPECT_GT(got, 0.6 * expect) << c.what << " " << cls;
      EXPECT_LT(got, 1.5 * expect + 0.02) << c.what << " " << cls;
    }
  }
}

TEST(Layout, ShardsSpreadEvenlyOverTargets) {
  for (PoolMap m : {make_map(1, 4, 2), make_map(4, 2, 8)}) {
    for (const char* cls : {"S1", "RP_3G1", "RP_2GX"}) {
      std::map<std::pair<uint32_t, uint32_t>, size_t> per_target;
      const uint64_t n = 12000;
      for (uint64_t i = 0; i < n; ++i) {
        auto l = compute_layout(oid_n(i, cls), m);
        ASSERT_TRUE(l);
        // For GX classes count the group a random dkey lands in, as I/O does.
        uint32_t g = dkey_group("dkey" + std::to_string(i), l->groups);
        for (const Shard& s : l->group(g)) ++per_target[{s.rank, s.target}];
      }
      ASSERT_EQ(per_target.size(), m.layout_targets());
      size_t lo = SIZE_MAX, hi = 0, sum = 0;
      for (auto& [k, v] : per_target) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
        sum += v;
      }
      double mean = static_cast<double>(sum) / static_cast<double>(per_target.size());
      double spread = static_cast<double>(hi - lo) / mean;
      std::printf("%zu targets, %s: shards per target min %zu max %zu mean %.0f spread %.1f%%\n",
                  per_target.size(), cls, lo, hi, mean, 100 * spread);
      // A uniform choice gives counts of about mean +- sqrt(mean); allow 5 standard deviations.
      double sigma = std::sqrt(mean);
      EXPECT_GT(static_cast<double>(lo), mean - 5 * sigma) << cls;
      EXPECT_LT(static_cast<double>(hi), mean + 5 * sigma) << cls;
    }
  }
}

TEST(Layout, DkeysSpreadOverGroups) {
  std::vector<size_t> count(8);
  for (int i = 0; i < 80000; ++i) ++count[dkey_group("k" + std::to_string(i), 8)];
  for (size_t c : count) {
    EXPECT_GT(c, 9300u);
    EXPECT_LT(c, 10700u);
  }
}

// While a map moves data (settled map kept), every position says where writes go, whether its
// home holds complete data, and which serving former holder reads go to meanwhile.
TEST(Placement, PositionsWhileDataMoves) {
  PoolMap m = make_map(6, 1, 2);
  for (uint64_t i = 0; i < 300; ++i) {
    const ObjectId oid = oid_n(i, "RP_3GX");
    const std::string dkey = "k" + std::to_string(i);
    auto settled = place(oid, m);
    ASSERT_TRUE(settled);
    EXPECT_FALSE(settled->settled.has_value());
    for (const auto& p : settled->dkey(dkey)) {
      EXPECT_TRUE(p.complete);
      EXPECT_FALSE(p.prev.has_value());
      EXPECT_EQ(p.reader(), &p.home);
    }
    EXPECT_TRUE(tessera::placement::settled(settled->dkey(dkey), m)) << i;
    // Rank 2 fails, rank 4 drains: their positions move; nothing else does.
    PoolMap mv = m;
    mv.settled = m.engines;
    for (auto& t : mv.engine(2)->targets) t.state = TargetState::down;
    for (auto& t : mv.engine(4)->targets) t.state = TargetState::drain;
    ++mv.version;
    auto moving = place(oid, mv);
    ASSERT_TRUE(moving);
    auto before = settled->dkey(dkey);
    auto now = moving->dkey(dkey);
    ASSERT_EQ(before.size(), now.size());
    // A group settles again only once nothing of it moves (what a reclaim pass waits for).
    bool moved = false;
    for (const auto& p : before) moved |= p.home.rank == 2 || p.home.rank == 4;
    EXPECT_EQ(tessera::placement::settled(now, mv), !moved) << i;
    for (size_t s = 0; s < now.size(); ++s) {
      const Shard& old = before[s].home;
      if (old.rank == 2) {
        EXPECT_FALSE(now[s].complete) << i;
        EXPECT_FALSE(now[s].prev.has_value()) << i;  // the failed holder serves nothing
        EXPECT_NE(now[s].home.rank, 2u);
        EXPECT_EQ(now[s].reader(), nullptr);
      } else if (old.rank == 4) {
        EXPECT_FALSE(now[s].complete) << i;
        ASSERT_TRUE(now[s].prev.has_value()) << i;  // the draining holder serves until done
        EXPECT_TRUE(same_target(*now[s].prev, old));
        EXPECT_EQ(now[s].writers().size(), 2u);
        EXPECT_EQ(now[s].reader(), &*now[s].prev);
      } else {
        EXPECT_TRUE(now[s].complete) << i;
        EXPECT_TRUE(same_target(now[s].home, old));
      }
    }
    // The rebuild completes: the new homes hold complete data.
    PoolMap done = mv;
    done.settled.clear();
    for (auto& t : done.engine(2)->targets) t.state = TargetState::down_out;
    for (auto& t : done.engine(4)->targets) t.state = TargetState::down_out;
    auto after = place(oid, done);
    ASSERT_TRUE(after);
    auto fin = after->dkey(dkey);
    for (size_t s = 0; s < fin.size(); ++s) {
      EXPECT_TRUE(fin[s].complete);
      EXPECT_TRUE(same_target(fin[s].home, now[s].home));
    }
    EXPECT_TRUE(tessera::placement::settled(fin, done)) << i;
  }
}

// Who fills a home: its serving former holder; else the first position with a holder of
// complete data, which may itself be a former holder when one change moved every position of
// the group (the case the simulation found: no home complete, the data only on the former
// holders); nobody when no position has a holder.
TEST(Placement, FillRuleUsesFormerHoldersWhenNoHomeIsComplete) {
  auto shard = [](uint32_t rank, bool available = true) {
    Shard s;
    s.rank = rank;
    s.available = available;
    return s;
  };
  std::vector<Position> pos(3);
  pos[0].home = shard(1);  // new home, its former holder failed
  pos[1].home = shard(5);  // moved: its former holder serves
  pos[1].prev = shard(2);
  pos[2].home = shard(7, false);  // no home available at all
  pos[2].prev = shard(5);
  EXPECT_EQ(first_complete(pos), -1);
  EXPECT_EQ(first_holder(pos), 1);
  EXPECT_EQ(fill_by(pos, 0), FillBy::first_holder);
  EXPECT_EQ(pos[first_holder(pos)].reader()->rank, 2u);  // the former holder sends
  EXPECT_EQ(fill_by(pos, 1), FillBy::prev);
  EXPECT_EQ(fill_by(pos, 2), FillBy::none);  // nothing can take it
  pos[1].prev.reset();
  pos[2].prev.reset();
  EXPECT_EQ(fill_by(pos, 0), FillBy::lost);
  pos[2].home = shard(7);
  pos[2].complete = true;
  EXPECT_EQ(first_holder(pos), 2);
  EXPECT_EQ(fill_by(pos, 0), FillBy::first_holder);
  EXPECT_EQ(fill_by(pos, 2), FillBy::none);
}

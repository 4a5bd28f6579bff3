// PoolShard::keeps_all_of and punches_to_keep: the containers whose copies a target keeps
// whatever the map places on it (reclaim leaves them) are those whose punches aggregation
// keeps, so that a kept copy merged into a later fill meets every punch that hides it.
#include <gtest/gtest.h>

#include "shard/keys.hpp"
#include "shard/pool_shard.hpp"

namespace tessera {
namespace {

mgmt::ContView cont(uint32_t id, bool lost) {
  mgmt::ContView v;
  v.c.id = id;
  v.c.lost_data = lost;
  return v;
}

TEST(FormerCopies, ALostDataOrUnknownContainersPunchesStayAndNoOthers) {
  PoolShard sh;
  EXPECT_TRUE(sh.keeps_all_of(1)) << "no map yet: everything may be the last copy";
  EXPECT_TRUE(sh.punches_to_keep()(shard_keys::store_key({5, 5}, 1)));

  auto v = std::make_shared<mgmt::PoolView>();
  v->pool.id = 1;
  v->conts = {cont(1, false), cont(2, true)};
  sh.set_view(v);
  EXPECT_FALSE(sh.keeps_all_of(1));
  EXPECT_TRUE(sh.keeps_all_of(2)) << "lost data: its former homes' copies may be the last";
  EXPECT_TRUE(sh.keeps_all_of(3)) << "a container the map does not know";

  const auto keep = sh.punches_to_keep();
  EXPECT_FALSE(keep(shard_keys::store_key({5, 5}, 1)));
  EXPECT_TRUE(keep(shard_keys::store_key({5, 5}, 2)));
  EXPECT_TRUE(keep(shard_keys::store_key({5, 6}, 3)));

  // The predicate is the map's as it was asked: a later map does not change a pass under way.
  auto w = std::make_shared<mgmt::PoolView>(*v);
  w->conts = {cont(1, true), cont(2, true)};
  sh.set_view(w);
  EXPECT_TRUE(sh.keeps_all_of(1));
  EXPECT_FALSE(keep(shard_keys::store_key({5, 5}, 1)));
  EXPECT_TRUE(sh.punches_to_keep()(shard_keys::store_key({5, 5}, 1)));
}

}  // namespace
}  // namespace tessera

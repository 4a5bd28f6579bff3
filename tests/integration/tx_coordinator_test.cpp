// User transactions whose coordinator dies (docs/TRANSACTIONS.md, "Resolution after failures"
// and "Double failures"): the participants decide without it, and never commit what one of
// them refused.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>

#include "client/container.hpp"
#include "client/tessera.h"
#include "tests/integration/tx_harness.hpp"

using namespace tessera;
using namespace tessera::testing;

namespace {

// A coordinator that dies while it aborts. The participants decide without their coordinator
// when it leaves the map: they commit what all of them hold prepared (decide_by_vote). So an
// abort may be told to no one before it holds everywhere but at the coordinator, and a
// coordinator must not abort at all on its own: when it returns, its "aborted" would
// override what the participants decided, or would decide, without it (the atomicity defect the
// transfers-under-kills test found).
//  - Its own part refused (a later transaction read the key there): nobody else hears of the
//    transaction, and the client hears `restart` (it never reaches the abort, where a crash
//    point waits).
//  - A participant dies once its part is durable, so the coordinator aborts; it dies too before
//    telling anyone. Both come back: every part is prepared, the coordinator's included, so the
//    transaction commits, as the participants would have decided without it.
TEST(Tx, ACoordinatorAbortsOnlyWhatItsParticipantsAbort) {
  TxSystem h("RP_3GX", 2, true);
  ASSERT_TRUE(h.c);
  // Dead engines stay in the map and come back with their state: the coordinator's own record
  // of the transaction is what decides then.
  ASSERT_TRUE(h.mc->pool_set_prop("tank", "self_heal", "none").is_ok());
  const ObjectId o = h.obj(1);
  auto read = [&](const std::string& dkey) {
    return text(h.c->fetch(o, dkey, "v", ValueKind::single));
  };
  for (const char* k : {"r", "a"}) {
    ASSERT_TRUE(h.c->update(o, k, "v", ValueKind::single, 0, bytes("old")));
  }
  {
    SCOPED_TRACE("the coordinator's own part refused");
    const auto g = h.group_ranks(o, "r");
    ASSERT_EQ(g.size(), 3u);
    h.arm(g[0], "dtx.leader.aborting:r");
    h.connect();
    auto t = h.c->tx_open();
    ASSERT_TRUE(t) << t.status().to_string();
    auto later = h.c->tx_open();
    ASSERT_TRUE(later) << later.status().to_string();
    ASSERT_LT((*t)->epoch(), (*later)->epoch());
    // Transactions read from the group's leader, the coordinator of a change of "r".
    EXPECT_EQ(text((*later)->fetch(o, "r", "v", ValueKind::single)), "old");
    ASSERT_TRUE((*t)->update(o, "r", "v", ValueKind::single, 0, bytes("t")).is_ok());
    auto c = (*t)->commit();
    ASSERT_FALSE(c);
    EXPECT_EQ(c.status().code(), Errc::restart) << c.status().to_string();
    EXPECT_TRUE(h.sys->engine(g[0]).alive()) << "the coordinator told others of a part it refused";
    h.restart_dead();
    h.connect();
    for (int i = 0; i < 3; ++i) EXPECT_EQ(read("r"), "old");
  }
  {
    SCOPED_TRACE("a participant's failure, then the coordinator's");
    const auto g = h.group_ranks(o, "a");
    ASSERT_EQ(g.size(), 3u);
    h.arm(g[1], "dtx.participant.prepared:a");
    h.arm(g[0], "dtx.leader.aborting:a");
    h.connect();
    auto t = h.c->tx_open();
    ASSERT_TRUE(t) << t.status().to_string();
    ASSERT_TRUE((*t)->update(o, "a", "v", ValueKind::single, 0, bytes("t")).is_ok());
    auto c = (*t)->commit();
    EXPECT_FALSE(c) << "committed with a participant dead";
    for (uint32_t r : {g[1], g[0]}) {
      EXPECT_TRUE(eventually([&] { return !h.sys->engine(r).alive(); }, std::chrono::seconds(20)))
          << "rank " << r << " did not reach its crash point";
    }
    h.restart_dead();
    h.connect();
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(read("a"), "t") << "every part was prepared, yet the returning coordinator aborted";
    }
  }
  EXPECT_TRUE(eventually([&] { return h.check_reaches_all(); }, std::chrono::seconds(60)));
  h.expect_consistent("after the coordinators' deaths");
}

// One engine's death takes every target it holds. A coordinator whose sibling target (same
// engine) refused its share, because a later transaction had read the key there, dies before
// the others hear the abort; the engine is excluded, and the participants on the other engines
// decide without both. Had they heard of the transaction before the sibling answered, all of
// them would hold it prepared and commit it by vote: under the later transaction's read (the
// transfers under kills saw an audit sum a few units off so). The coordinator asks its own
// engine's targets first, so that the others never hear of a share refused there.
TEST(Tx, ARefusalOnTheCoordinatorsEngineDiesWithItAndStillHolds) {
  TxSystem h("RP_3GX", 1, true);
  ASSERT_TRUE(h.c);
  // "c" (the coordinator's key) and "q" (its sibling's) on two objects whose leaders share an
  // engine but not a target.
  std::optional<std::pair<ObjectId, std::string>> kc, kq;
  for (uint64_t n = 1; n < 40 && !kq; ++n) {
    for (uint64_t m = n + 1; m < 40 && !kq; ++m) {
      const auto a = h.leader(h.obj(n), "c"), b = h.leader(h.obj(m), "q");
      if (a.first == b.first && a.second != b.second) {
        kc = {h.obj(n), "c"};
        kq = {h.obj(m), "q"};
      }
    }
  }
  ASSERT_TRUE(kq) << "no two objects led from one engine's two targets";
  const uint32_t rank = h.leader(kc->first, kc->second).first;
  auto read = [&](Transaction& t, const std::pair<ObjectId, std::string>& k) {
    return text(t.fetch(k.first, k.second, "v", ValueKind::single));
  };
  h.arm(rank, "dtx.leader.aborting:c");
  h.connect();
  // Written after the restart: every participant has learned the map it brought (a target
  // that learns a newer map refuses changes older than its clock, which would refuse the
  // transaction everywhere).
  for (const auto* k : {&*kc, &*kq}) {
    ASSERT_TRUE(h.c->update(k->first, k->second, "v", ValueKind::single, 0, bytes("old")));
  }
  auto t = h.c->tx_open();
  ASSERT_TRUE(t) << t.status().to_string();
  auto later = h.c->tx_open();
  ASSERT_TRUE(later) << later.status().to_string();
  ASSERT_LT((*t)->epoch(), (*later)->epoch());
  // The later transaction reads "q" at its leader, the coordinator's sibling: the earlier
  // one's change of it is refused there.
  EXPECT_EQ(read(**later, *kq), "old");
  ASSERT_TRUE((*t)->update(kc->first, "c", "v", ValueKind::single, 0, bytes("t")).is_ok());
  ASSERT_TRUE((*t)->update(kq->first, "q", "v", ValueKind::single, 0, bytes("t")).is_ok());
  auto c = (*t)->commit();
  EXPECT_FALSE(c) << "committed over a refused share";
  EXPECT_TRUE(eventually([&] { return !h.sys->engine(rank).alive(); }, std::chrono::seconds(20)))
      << "rank " << rank << " did not reach its crash point";
  // The engine is excluded; the later transaction reads "c" at the new leader, where the
  // earlier transaction is prepared only if it was asked before the refusal.
  (void)wait_pool(*h.mc, "tank", [&](const mgmt::PoolView& p) {
    auto s = p.pool.map.state(rank, 0);
    return s && !placement::is_serving(*s);
  });
  // Its leader's answer may wait for the participants' decision, which waits for asks to the
  // dead engine: read until one answers.
  Result<FetchResult> r = Status(Errc::timeout, "not read");
  for (int i = 0; i < 10 && !r; ++i) {
    r = (*later)->fetch(kc->first, kc->second, "v", ValueKind::single);
    if (!r && r.status().code() != Errc::timeout && r.status().code() != Errc::busy &&
        r.status().code() != Errc::unavailable) {
      break;
    }
  }
  EXPECT_EQ(text(r), "old") << "a transaction refused on one target committed on the others, "
                               "under a later transaction's read";
  EXPECT_TRUE((*later)->commit());
  h.restart_dead();
  h.connect();
  for (const auto* k : {&*kc, &*kq}) {
    EXPECT_EQ(text(h.c->fetch(k->first, k->second, "v", ValueKind::single)), "old");
  }
  EXPECT_TRUE(eventually([&] { return h.check_reaches_all(); }, std::chrono::seconds(60)));
  h.expect_consistent("after the coordinator's engine died");
}

}  // namespace

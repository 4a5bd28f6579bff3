// User transactions (docs/TRANSACTIONS.md, "User transactions"), on real engines: conflicts
// end in `restart`, commits are all or nothing, reads see one epoch and the transaction's own
// changes, read-only transactions read a snapshot, erasure-coded changes commit with the rest,
// and the C API. Concurrent transfers: tx_transfers_test.cpp; coordinators that die:
// tx_coordinator_test.cpp.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "client/container.hpp"
#include "client/tessera.h"
#include "tests/integration/tx_harness.hpp"

using namespace tessera;
using namespace tessera::testing;

namespace {

TEST(Tx, ConflictsRestartAndCommitsAreAllOrNothing) {
  TxSystem h;
  ASSERT_TRUE(h.c);
  const ObjectId o = h.obj(1);
  for (const char* k : {"x", "y", "k"}) {
    ASSERT_TRUE(h.c->update(o, k, "v", ValueKind::single, 0, bytes(std::string("0-") + k)));
  }
  auto open = [&] {
    auto t = h.c->tx_open();
    EXPECT_TRUE(t) << t.status().to_string();
    return t ? std::move(*t) : nullptr;
  };

  // Write skew: both read x and y, each writes one. The later one commits; the earlier one's
  // write would slide under the later one's read: restart.
  {
    auto t1 = open(), t2 = open();
    ASSERT_LT(t1->epoch(), t2->epoch());
    for (auto* t : {t1.get(), t2.get()}) {
      EXPECT_EQ(text(t->fetch(o, "x", "v", ValueKind::single)), "0-x");
      EXPECT_EQ(text(t->fetch(o, "y", "v", ValueKind::single)), "0-y");
    }
    ASSERT_TRUE(t2->update(o, "y", "v", ValueKind::single, 0, bytes("t2")).is_ok());
    ASSERT_TRUE(t1->update(o, "x", "v", ValueKind::single, 0, bytes("t1")).is_ok());
    auto c2 = t2->commit();
    ASSERT_TRUE(c2) << c2.status().to_string();
    EXPECT_EQ(*c2, t2->epoch());
    auto c1 = t1->commit();
    ASSERT_FALSE(c1);
    EXPECT_EQ(c1.status().code(), Errc::restart) << c1.status().to_string();
    EXPECT_EQ(text(h.c->fetch(o, "x", "v", ValueKind::single)), "0-x");
    EXPECT_EQ(text(h.c->fetch(o, "y", "v", ValueKind::single)), "t2");
    EXPECT_FALSE(t1->commit()) << "a transaction commits once";
  }
  // Write-write: a newer change of the key (from a transaction or a plain update) stops an
  // older transaction's change of it.
  {
    auto t1 = open();
    ASSERT_TRUE(h.c->update(o, "k", "v", ValueKind::single, 0, bytes("plain")));
    ASSERT_TRUE(t1->update(o, "k", "v", ValueKind::single, 0, bytes("t1")).is_ok());
    auto c1 = t1->commit();
    ASSERT_FALSE(c1);
    EXPECT_EQ(c1.status().code(), Errc::restart) << c1.status().to_string();
    EXPECT_EQ(text(h.c->fetch(o, "k", "v", ValueKind::single)), "plain");
  }
  // Repeatable reads: a plain update after the transaction read lands above its epoch; the
  // transaction keeps reading what it read, and may not change the key any more.
  {
    auto t1 = open();
    EXPECT_EQ(text(t1->fetch(o, "k", "v", ValueKind::single)), "plain");
    ASSERT_TRUE(h.c->update(o, "k", "v", ValueKind::single, 0, bytes("later")));
    EXPECT_EQ(text(t1->fetch(o, "k", "v", ValueKind::single)), "plain");
    ASSERT_TRUE(t1->update(o, "k", "v", ValueKind::single, 0, bytes("t1")).is_ok());
    auto c1 = t1->commit();
    ASSERT_FALSE(c1);
    EXPECT_EQ(c1.status().code(), Errc::restart);
  }
  // All or nothing across groups: one failed condition and nothing of the transaction applies.
  {
    auto t = open();
    for (int i = 0; i < 8; ++i) {
      ASSERT_TRUE(t->update(h.obj(2), fmt::format("d{}", i), "v", ValueKind::single, 0,
                            bytes(fmt::format("new-{}", i)))
                      .is_ok());
    }
    ASSERT_TRUE(
        t->update(o, "x", "v", ValueKind::single, 0, bytes("dup"), {.cond = Cond::insert}).is_ok());
    auto r = t->commit();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.status().code(), Errc::exists) << r.status().to_string();
    auto dkeys = h.c->list_all(ListScope::dkeys, h.obj(2));
    EXPECT_TRUE(!dkeys || dkeys->empty()) << dkeys->size() << " dkeys of a failed transaction";
    // The same changes without the failing condition: all of them.
    auto t2 = open();
    for (int i = 0; i < 8; ++i) {
      ASSERT_TRUE(t2->update(h.obj(2), fmt::format("d{}", i), "v", ValueKind::single, 0,
                             bytes(fmt::format("new-{}", i)))
                      .is_ok());
    }
    ASSERT_TRUE(
        t2->update(o, "fresh", "v", ValueKind::single, 0, bytes("ins"), {.cond = Cond::insert})
            .is_ok());
    auto r2 = t2->commit();
    ASSERT_TRUE(r2) << r2.status().to_string();
    auto all = h.c->list_all(ListScope::dkeys, h.obj(2));
    ASSERT_TRUE(all);
    EXPECT_EQ(all->size(), 8u);
    for (int i = 0; i < 8; ++i) {
      auto v = h.c->fetch(h.obj(2), fmt::format("d{}", i), "v", ValueKind::single);
      EXPECT_EQ(text(v), fmt::format("new-{}", i));
      if (v) {
        EXPECT_EQ(v->epoch, *r2) << "every change at the transaction's epoch";
      }
    }
  }
  // Its own changes: reads and listings see them before the commit; nobody else does.
  {
    auto t = open();
    ASSERT_TRUE(t->update(o, "own", "v", ValueKind::single, 0, bytes("mine")).is_ok());
    ASSERT_TRUE(t->punch(o, "x").is_ok());
    ASSERT_TRUE(t->update(o, "arr", "a", ValueKind::array, 4, bytes("WXYZ")).is_ok());
    EXPECT_EQ(text(t->fetch(o, "own", "v", ValueKind::single)), "mine");
    EXPECT_EQ(text(t->fetch(o, "x", "v", ValueKind::single)), "<absent>");
    auto arr = t->fetch(o, "arr", "a", ValueKind::array, 0, 0);
    ASSERT_TRUE(arr) << arr.status().to_string();
    EXPECT_EQ(arr->size, 8u);
    EXPECT_EQ(std::string(arr->data.view()), std::string("\0\0\0\0WXYZ", 8));
    ASSERT_EQ(arr->holes.size(), 1u);
    EXPECT_EQ(arr->holes[0], std::make_pair(uint64_t{0}, uint64_t{4}));
    auto ks = t->list_all(ListScope::dkeys, o);
    ASSERT_TRUE(ks) << ks.status().to_string();
    std::vector<std::string> names;
    for (const auto& e : *ks) names.push_back(e.key);
    EXPECT_EQ(names, (std::vector<std::string>{"arr", "fresh", "k", "own", "y"}));
    EXPECT_EQ(text(h.c->fetch(o, "own", "v", ValueKind::single)), "<absent>");
    EXPECT_EQ(text(h.c->fetch(o, "x", "v", ValueKind::single)), "0-x");
    // A key changed twice: a single value's last change wins; overlapping array ranges no.
    ASSERT_TRUE(t->update(o, "own", "v", ValueKind::single, 0, bytes("mine2")).is_ok());
    EXPECT_EQ(t->update(o, "arr", "a", ValueKind::array, 6, bytes("!!")).code(), Errc::unsupported);
    auto r = t->commit();
    ASSERT_TRUE(r) << r.status().to_string();
    EXPECT_EQ(text(h.c->fetch(o, "own", "v", ValueKind::single)), "mine2");
    EXPECT_EQ(text(h.c->fetch(o, "x", "v", ValueKind::single)), "<absent>");
    EXPECT_EQ(text(h.c->fetch(o, "arr", "a", ValueKind::array, 4, 4)), "WXYZ");
  }
}

TEST(Tx, ReadOnlyAtASnapshotAndAWholeObjectPunch) {
  TxSystem h;
  ASSERT_TRUE(h.c);
  const ObjectId o = h.obj(3);
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(h.c->update(o, fmt::format("d{}", i), "v", ValueKind::single, 0,
                            bytes(fmt::format("old-{}", i))));
  }
  auto snap = h.mc->snap_create("tank", "c", "before");
  ASSERT_TRUE(snap) << snap.status().to_string();
  ASSERT_FALSE(snap->c.snapshots.empty());
  const uint64_t at = snap->c.snapshots.back().epoch;
  ASSERT_TRUE(h.c->update(o, "d0", "v", ValueKind::single, 0, bytes("new-0")));
  // A whole-object punch is one transaction over every group of the object.
  auto p = h.c->tx_open();
  ASSERT_TRUE(p);
  ASSERT_TRUE((*p)->punch(o).is_ok());
  auto pe = (*p)->commit();
  ASSERT_TRUE(pe) << pe.status().to_string();
  auto now = h.c->list_all(ListScope::dkeys, o);
  EXPECT_TRUE(!now || now->empty());
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(text(h.c->fetch(o, fmt::format("d{}", i), "v", ValueKind::single)), "<absent>");
  }
  // Container::punch of a whole object: one transaction too.
  const ObjectId o2 = h.obj(4);
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(h.c->update(o2, fmt::format("d{}", i), "v", ValueKind::single, 0, bytes("x")));
  }
  auto pe2 = h.c->punch(o2);
  ASSERT_TRUE(pe2) << pe2.status().to_string();
  auto left = h.c->list_all(ListScope::dkeys, o2);
  EXPECT_TRUE(!left || left->empty());
  auto before = h.c->list_all(ListScope::dkeys, o2, {}, {}, *pe2 - 1);
  ASSERT_TRUE(before) << before.status().to_string();
  EXPECT_EQ(before->size(), 6u);
  auto ro = h.c->tx_open(at);
  ASSERT_TRUE(ro);
  EXPECT_TRUE((*ro)->read_only());
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(text((*ro)->fetch(o, fmt::format("d{}", i), "v", ValueKind::single)),
              fmt::format("old-{}", i));
  }
  auto ks = (*ro)->list_all(ListScope::dkeys, o);
  ASSERT_TRUE(ks) << ks.status().to_string();
  EXPECT_EQ(ks->size(), 6u);
  EXPECT_EQ((*ro)->update(o, "d0", "v", ValueKind::single, 0, bytes("no")).code(),
            Errc::invalid_argument);
  auto rc = (*ro)->commit();
  ASSERT_TRUE(rc);
  EXPECT_EQ(*rc, at);
}

// Erasure-coded objects in user transactions: an array change cut into full stripes (cells,
// parity, checksums) and partial-stripe copies, and a single value, commit with a replicated
// change at one epoch, all or nothing; reads stamp every position they read, so a change under
// a later transaction's read restarts; the parity committed agrees with the cells.
TEST(Tx, ErasureCodedChangesCommitWithTheRestAndConflictsRestart) {
  TxSystem h;
  ASSERT_TRUE(h.c);
  auto ec_oid = [&](uint64_t n) { return *h.c->make_oid(7, n, "EC_2P1GX"); };
  const ObjectId e = ec_oid(1), r = h.obj(1);
  const uint64_t stripe = 2 * kCell;
  std::string model(3 * stripe + 1500, '\0');  // the array "a" of dkey "d" of `e`
  auto write_model = [&](Transaction& t, uint64_t off, size_t len, char fill) {
    std::string v(len, fill);
    for (size_t i = 0; i < len; i += 97) v[i] = static_cast<char>('a' + (off + i) % 26);
    model.replace(off, len, v);
    return t.update(e, "d", "a", ValueKind::array, off, bytes(v));
  };
  auto array_now = [&](Transaction* t) {
    auto f = t != nullptr ? t->fetch(e, "d", "a", ValueKind::array, 0, model.size())
                          : h.c->fetch(e, "d", "a", ValueKind::array, 0, model.size());
    return f ? std::string(f->data.view()) : f.status().to_string();
  };
  auto open = [&] {
    auto t = h.c->tx_open();
    EXPECT_TRUE(t) << t.status().to_string();
    return t ? std::move(*t) : nullptr;
  };

  {
    SCOPED_TRACE("full stripes, partial stripes, a single value and a replicated key at once");
    auto t = open();
    ASSERT_TRUE(write_model(*t, 0, model.size(), 'x').is_ok());
    ASSERT_TRUE(t->update(e, "d", "s", ValueKind::single, 0, bytes("ec-single")).is_ok());
    ASSERT_TRUE(t->update(r, "k", "v", ValueKind::single, 0, bytes("rp-1")).is_ok());
    EXPECT_EQ(array_now(t.get()), model) << "a transaction reads its own erasure-coded change";
    auto c = t->commit();
    ASSERT_TRUE(c) << c.status().to_string();
    EXPECT_EQ(array_now(nullptr), model);
    EXPECT_EQ(text(h.c->fetch(e, "d", "s", ValueKind::single)), "ec-single");
    EXPECT_EQ(text(h.c->fetch(r, "k", "v", ValueKind::single)), "rp-1");
    // Partial stripes over full ones: copies on top of cells, at the next epoch.
    auto t2 = open();
    ASSERT_TRUE(write_model(*t2, stripe - 300, 700, 'y').is_ok());
    ASSERT_TRUE(write_model(*t2, 2 * stripe + 10, 20, 'z').is_ok());
    auto ks = t2->list_all(ListScope::akeys, e, "d");
    ASSERT_TRUE(ks) << ks.status().to_string();
    ASSERT_EQ(ks->size(), 2u) << "internal akeys listed";
    EXPECT_EQ((*ks)[0].key, "a");
    ASSERT_TRUE(t2->commit());
    EXPECT_EQ(array_now(nullptr), model);
    // A change that leaves the group's first position out: a write inside one cell goes to
    // that cell's position and the parity, which rotate with the dkey. The coordinator must hold
    // a piece of the first change (it was the group's first position: 'holds none of this
    // transaction's keys' until the client gave up).
    const ObjectId e2 = ec_oid(2);
    for (int d = 0; d < 6; ++d) {
      const std::string dk = fmt::format("cell-{}", d);
      for (uint64_t cell = 0; cell < 2; ++cell) {
        auto t3 = open();
        const std::string v(100, static_cast<char>('A' + d * 2 + static_cast<int>(cell)));
        ASSERT_TRUE(t3->update(e2, dk, "a", ValueKind::array, cell * kCell + 10, bytes(v)).is_ok());
        auto c3 = t3->commit();
        ASSERT_TRUE(c3) << dk << " cell " << cell << ": " << c3.status().to_string();
        auto f = h.c->fetch(e2, dk, "a", ValueKind::array, cell * kCell + 10, v.size());
        ASSERT_TRUE(f) << f.status().to_string();
        EXPECT_EQ(std::string(f->data.view()), v) << dk << " cell " << cell;
      }
    }
  }
  {
    SCOPED_TRACE("all or nothing: a failed condition of a replicated key drops the EC change");
    auto t = open();
    const std::string before = model;
    ASSERT_TRUE(write_model(*t, 100, 2 * stripe, 'n').is_ok());
    ASSERT_TRUE(
        t->update(r, "k", "v", ValueKind::single, 0, bytes("no"), {.cond = Cond::insert}).is_ok());
    auto c = t->commit();
    ASSERT_FALSE(c);
    EXPECT_EQ(c.status().code(), Errc::exists) << c.status().to_string();
    model = before;
    EXPECT_EQ(array_now(nullptr), model);
  }
  {
    SCOPED_TRACE("a change under a later transaction's read of an erasure-coded key restarts");
    auto t1 = open(), t2 = open();
    ASSERT_LT(t1->epoch(), t2->epoch());
    EXPECT_EQ(text(t2->fetch(e, "d", "s", ValueKind::single)), "ec-single");
    EXPECT_EQ(array_now(t2.get()), model);
    ASSERT_TRUE(t2->update(r, "k2", "v", ValueKind::single, 0, bytes("t2")).is_ok());
    ASSERT_TRUE(t2->commit());
    ASSERT_TRUE(t1->update(e, "d", "s", ValueKind::single, 0, bytes("t1")).is_ok());
    auto c1 = t1->commit();
    ASSERT_FALSE(c1) << "a single value changed under a later read";
    EXPECT_EQ(c1.status().code(), Errc::restart) << c1.status().to_string();
    auto t3 = open(), t4 = open();
    EXPECT_EQ(array_now(t4.get()), model);
    ASSERT_TRUE(t4->commit());
    ASSERT_TRUE(t3->update(e, "d", "a", ValueKind::array, 5, bytes("under")).is_ok());
    auto c3 = t3->commit();
    ASSERT_FALSE(c3) << "an array changed under a later read";
    EXPECT_EQ(c3.status().code(), Errc::restart) << c3.status().to_string();
    EXPECT_EQ(array_now(nullptr), model);
    EXPECT_EQ(text(h.c->fetch(e, "d", "s", ValueKind::single)), "ec-single");
  }
  {
    SCOPED_TRACE("what erasure coding does not take, in a transaction as outside one");
    auto t = open();
    EXPECT_EQ(
        t->update(e, "d", "c", ValueKind::single, 0, bytes("x"), {.cond = Cond::insert}).code(),
        Errc::unsupported);
    EXPECT_EQ(t->punch_range(e, "d", "a", 0, 10).code(), Errc::unsupported);
    EXPECT_EQ(
        t->update(e, "d", std::string("\0ec-cell:a", 10), ValueKind::single, 0, bytes("x")).code(),
        Errc::invalid_argument);
  }
  // The cells and parity the transactions wrote agree (and so read the same degraded).
  h.expect_consistent("after erasure-coded transactions");
  {
    SCOPED_TRACE("punches: an akey in a transaction, the whole object as one");
    auto t = open();
    ASSERT_TRUE(t->punch(e, "d", "a").is_ok());
    ASSERT_TRUE(t->commit());
    auto f = h.c->fetch(e, "d", "a", ValueKind::array, 0, model.size());
    ASSERT_TRUE(f) << f.status().to_string();
    EXPECT_FALSE(f->exists);
    ASSERT_TRUE(h.c->update(e, "d2", "s", ValueKind::single, 0, bytes("v")));
    auto p = h.c->punch(e);
    ASSERT_TRUE(p) << p.status().to_string();
    auto left = h.c->list_all(ListScope::dkeys, e);
    EXPECT_TRUE(!left || left->empty());
    auto before = h.c->list_all(ListScope::dkeys, e, {}, {}, *p - 1);
    ASSERT_TRUE(before) << before.status().to_string();
    EXPECT_EQ(before->size(), 2u);
  }
}

// The C API: a transfer between two keys, a conflict reported as -TESSERA_ERESTART.
TEST(Tx, TheCApiCommitsAndReportsRestart) {
  TxSystem h;
  ASSERT_TRUE(h.c);
  COpen o;
  ASSERT_NO_FATAL_FAILURE(c_open(h, 9, 9, o));
  tessera_client* cl = o.cl;
  tessera_cont* co = o.co;
  const uint64_t hi = o.hi, lo = o.lo;
  tessera_tx* t1 = nullptr;
  tessera_tx* t2 = nullptr;
  ASSERT_EQ(tessera_tx_open(co, 0, &t1), 0) << tessera_last_error();
  ASSERT_EQ(tessera_tx_update(t1, hi, lo, "a", "v", TESSERA_SINGLE, 0, "10", 2, TESSERA_COND_NONE),
            0);
  ASSERT_EQ(
      tessera_tx_update(t1, hi, lo, "b", "v", TESSERA_SINGLE, 0, "20", 2, TESSERA_COND_INSERT), 0);
  char buf[16];
  size_t n = 0;
  ASSERT_EQ(tessera_tx_fetch(t1, hi, lo, "b", "v", TESSERA_SINGLE, 0, 0, buf, sizeof buf, &n), 0);
  EXPECT_EQ(std::string(buf, n), "20");
  uint64_t e1 = 0;
  ASSERT_EQ(tessera_tx_commit(t1, &e1), 0) << tessera_last_error();
  EXPECT_EQ(e1, tessera_tx_epoch(t1));
  tessera_tx_close(t1);
  // Two transfers read both keys; the one with the older epoch loses.
  ASSERT_EQ(tessera_tx_open(co, 0, &t1), 0);
  ASSERT_EQ(tessera_tx_open(co, 0, &t2), 0);
  for (tessera_tx* t : {t1, t2}) {
    ASSERT_EQ(tessera_tx_fetch(t, hi, lo, "a", "v", TESSERA_SINGLE, 0, 0, buf, sizeof buf, &n), 0);
    EXPECT_EQ(std::string(buf, n), "10");
    ASSERT_EQ(tessera_tx_fetch(t, hi, lo, "b", "v", TESSERA_SINGLE, 0, 0, buf, sizeof buf, &n), 0);
  }
  ASSERT_EQ(tessera_tx_update(t2, hi, lo, "a", "v", TESSERA_SINGLE, 0, "05", 2, 0), 0);
  ASSERT_EQ(tessera_tx_update(t2, hi, lo, "b", "v", TESSERA_SINGLE, 0, "25", 2, 0), 0);
  ASSERT_EQ(tessera_tx_update(t1, hi, lo, "a", "v", TESSERA_SINGLE, 0, "00", 2, 0), 0);
  ASSERT_EQ(tessera_tx_update(t1, hi, lo, "b", "v", TESSERA_SINGLE, 0, "30", 2, 0), 0);
  ASSERT_EQ(tessera_tx_commit(t2, nullptr), 0) << tessera_last_error();
  EXPECT_EQ(tessera_tx_commit(t1, nullptr), -TESSERA_ERESTART) << tessera_last_error();
  tessera_tx_close(t1);
  tessera_tx_close(t2);
  ASSERT_EQ(tessera_tx_open(co, 0, &t1), 0);
  ASSERT_EQ(tessera_tx_fetch(t1, hi, lo, "a", "v", TESSERA_SINGLE, 0, 0, buf, sizeof buf, &n), 0);
  EXPECT_EQ(std::string(buf, n), "05");
  ASSERT_EQ(tessera_tx_fetch(t1, hi, lo, "b", "v", TESSERA_SINGLE, 0, 0, buf, sizeof buf, &n), 0);
  EXPECT_EQ(std::string(buf, n), "25");
  tessera_tx_close(t1);
  EXPECT_EQ(tessera_cont_close(co), 0);
  tessera_disconnect(cl);
}

// Transactions through events: many commits in flight on one queue, reads through events, a
// conflict reported on its event, and a transaction closed with its commit in flight.
TEST(Tx, TheCApiRunsTransactionsThroughEvents) {
  TxSystem h;
  ASSERT_TRUE(h.c);
  COpen o;
  ASSERT_NO_FATAL_FAILURE(c_open(h, 7, 7, o));
  tessera_client* cl = o.cl;
  tessera_cont* co = o.co;
  const uint64_t hi = o.hi, lo = o.lo;
  tessera_eq* eq = nullptr;
  ASSERT_EQ(tessera_eq_create(&eq), 0);
  constexpr int kN = 16;
  std::vector<tessera_event> evs(kN);
  for (int i = 0; i < kN; ++i) {
    ASSERT_EQ(tessera_event_init(&evs[i], eq, reinterpret_cast<void*>(static_cast<intptr_t>(i))),
              0);
  }
  auto poll_all = [&](int n) {
    std::vector<tessera_event*> got;
    while (static_cast<int>(got.size()) < n) {
      tessera_event* done[kN];
      int k = tessera_eq_poll(eq, -1, done, kN);
      EXPECT_GT(k, 0);
      if (k <= 0) break;
      got.insert(got.end(), done, done + k);
    }
    return got;
  };
  auto key = [](int i) { return "k" + std::to_string(i); };

  // kN transactions, each changing its key and one shared key's neighbour, committed at once.
  std::vector<tessera_tx*> txs(kN, nullptr);
  for (int i = 0; i < kN; ++i) {
    ASSERT_EQ(tessera_tx_open(co, 0, &txs[i]), 0) << tessera_last_error();
    const std::string v = "v" + std::to_string(i);
    ASSERT_EQ(tessera_tx_update(txs[i], hi, lo, key(i).c_str(), "a", TESSERA_SINGLE, 0, v.data(),
                                v.size(), TESSERA_COND_INSERT),
              0);
    ASSERT_EQ(tessera_tx_commit_ev(txs[i], &evs[i]), 0) << tessera_last_error();
  }
  for (tessera_event* e : poll_all(kN)) {
    const int i = static_cast<int>(reinterpret_cast<intptr_t>(e->user));
    EXPECT_EQ(e->status, 0) << i << ": " << tessera_event_error(e);
    EXPECT_EQ(e->epoch, tessera_tx_epoch(txs[i])) << i;
  }
  EXPECT_EQ(tessera_eq_inflight(eq), 0u);
  for (int i = 0; i < kN; ++i) {
    EXPECT_EQ(tessera_tx_commit(txs[i], nullptr), -TESSERA_EINVAL);  // finished
    tessera_tx_close(txs[i]);
  }

  // Reads through events, one transaction each: every committed value.
  std::vector<std::array<char, 16>> bufs(kN);
  for (int i = 0; i < kN; ++i) {
    ASSERT_EQ(tessera_tx_open(co, 0, &txs[i]), 0);
    ASSERT_EQ(tessera_tx_fetch_ev(txs[i], hi, lo, key(i).c_str(), "a", TESSERA_SINGLE, 0, 0,
                                  bufs[i].data(), bufs[i].size(), nullptr, &evs[i]),
              0)
        << tessera_last_error();
  }
  for (tessera_event* e : poll_all(kN)) {
    const int i = static_cast<int>(reinterpret_cast<intptr_t>(e->user));
    ASSERT_EQ(e->status, 0) << tessera_event_error(e);
    EXPECT_EQ(std::string(bufs[i].data(), e->out_len), "v" + std::to_string(i));
  }
  // Two of them change a key both read (one no later transaction read): the older one's
  // commit restarts, on its event.
  for (int i : {0, 1}) {
    ASSERT_EQ(tessera_tx_fetch_ev(txs[i], hi, lo, "shared", "a", TESSERA_SINGLE, 0, 0,
                                  bufs[i].data(), bufs[i].size(), nullptr, &evs[i]),
              0);
    ASSERT_EQ(poll_all(1).size(), 1u);
    ASSERT_EQ(evs[i].status, 0) << tessera_event_error(&evs[i]);
    ASSERT_EQ(tessera_tx_update(txs[i], hi, lo, "shared", "a", TESSERA_SINGLE, 0, "x", 1, 0), 0);
  }
  ASSERT_EQ(tessera_tx_commit_ev(txs[1], &evs[1]), 0);
  ASSERT_EQ(poll_all(1).front(), &evs[1]);
  EXPECT_EQ(evs[1].status, 0) << tessera_event_error(&evs[1]);
  ASSERT_EQ(tessera_tx_commit_ev(txs[0], &evs[0]), 0);
  ASSERT_EQ(poll_all(1).front(), &evs[0]);
  EXPECT_EQ(evs[0].status, -TESSERA_ERESTART) << tessera_event_error(&evs[0]);
  EXPECT_NE(std::string(tessera_event_error(&evs[0])), "");
  // Closed with its commit in flight: the close waits, the event still completes.
  ASSERT_EQ(tessera_tx_update(txs[3], hi, lo, key(3).c_str(), "a", TESSERA_SINGLE, 0, "w", 1, 0),
            0);
  ASSERT_EQ(tessera_tx_commit_ev(txs[3], &evs[3]), 0);
  tessera_tx_close(txs[3]);
  txs[3] = nullptr;
  ASSERT_EQ(poll_all(1).front(), &evs[3]);
  EXPECT_EQ(evs[3].status, 0) << tessera_event_error(&evs[3]);
  for (tessera_tx* t : txs) tessera_tx_close(t);
  size_t n = 0;
  char buf[16];
  ASSERT_EQ(tessera_cont_fetch(co, hi, lo, key(3).c_str(), "a", TESSERA_SINGLE, 0, 0, 0, buf,
                               sizeof buf, &n, nullptr),
            0);
  EXPECT_EQ(std::string(buf, n), "w");
  ASSERT_EQ(tessera_cont_fetch(co, hi, lo, "shared", "a", TESSERA_SINGLE, 0, 0, 0, buf, sizeof buf,
                               &n, nullptr),
            0);
  EXPECT_EQ(std::string(buf, n), "x");
  // Argument errors start nothing.
  EXPECT_EQ(tessera_tx_commit_ev(nullptr, &evs[0]), -TESSERA_EINVAL);
  for (auto& e : evs) EXPECT_EQ(tessera_event_fini(&e), 0);
  EXPECT_EQ(tessera_eq_destroy(eq), 0);
  EXPECT_EQ(tessera_cont_close(co), 0);
  tessera_disconnect(cl);
}

}  // namespace

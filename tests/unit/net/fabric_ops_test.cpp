// The bookkeeping of a fabric endpoint's operations (net/fabric_ops.hpp): which contexts are
// ours, that a failed receive is never handed out again, and the bounds on what failed
// receives keep. The real-process test of the same path is FabricKill (fabric_kill_test.cpp).
#include <gtest/gtest.h>

#include "net/fabric_ops.hpp"

using namespace tessera;
using namespace tessera::net;
using Clock = std::chrono::steady_clock;

TEST(RecvSlots, OnlyItsOwnContextsAreFound) {
  RecvSlots slots(4096);
  RecvSlot* a = slots.add();
  RecvSlot* b = slots.add();
  EXPECT_EQ(slots.find(a), a);
  EXPECT_EQ(slots.find(b), b);
  int other = 0;
  EXPECT_EQ(slots.find(&other), nullptr);
  EXPECT_EQ(slots.find(nullptr), nullptr);
  EXPECT_EQ(a->buf.capacity(), 4096u);
}

TEST(RecvSlots, ARetiredSlotIsStillRecognisedButNeverActiveAgain) {
  RecvSlots slots(4096);
  RecvSlot* a = slots.add();
  slots.defer(a);
  auto now = Clock::now();
  EXPECT_TRUE(slots.retire(a, now));
  EXPECT_FALSE(slots.retire(a, now)) << "a second error for the same posting retires nothing";
  EXPECT_EQ(slots.find(a), a);
  EXPECT_TRUE(a->retired);
  EXPECT_EQ(slots.active(), 0u);
  EXPECT_FALSE(slots.has_deferred()) << "a retired slot must not be posted again";
  EXPECT_EQ(a->buf.capacity(), 4096u) << "its buffer is kept while it may still be written";
}

TEST(RecvSlots, RetiredBuffersAreFreedWhenQuietOrOverTheBound) {
  RecvSlots::Limits lim;
  lim.quiet = std::chrono::seconds(5);
  lim.max_buffers = 2;
  lim.max_retired = 3;
  RecvSlots slots(4096, lim);
  auto t0 = Clock::now();
  std::vector<RecvSlot*> r;
  for (int i = 0; i < 3; ++i) {
    r.push_back(slots.add());
    slots.retire(r.back(), t0);
  }
  EXPECT_EQ(slots.retired_buffers(), 2u);
  EXPECT_EQ(r[0]->buf.capacity(), 0u) << "the oldest buffer goes first";
  EXPECT_EQ(r[2]->buf.capacity(), 4096u);
  slots.heard(r[2], t0 + std::chrono::seconds(4));
  slots.trim(t0 + std::chrono::seconds(6));
  EXPECT_EQ(r[1]->buf.capacity(), 0u) << "quiet for 6 s";
  EXPECT_EQ(r[2]->buf.capacity(), 4096u) << "heard 2 s ago";
  slots.trim(t0 + std::chrono::seconds(10));
  EXPECT_EQ(slots.retired_buffers(), 0u);
  // At most max_retired contexts are remembered, the oldest forgotten first.
  RecvSlot* d = slots.add();
  slots.retire(d, t0);
  EXPECT_EQ(slots.retired(), 3u);
  EXPECT_EQ(slots.find(d), d);
  EXPECT_EQ(slots.find(r[1]), r[1]);
}

TEST(SendList, HoldsSendsUntilTakenAndRecognisesOnlyThem) {
  SendList sends;
  std::vector<SendOp*> ops;
  for (int i = 0; i < 4; ++i) {
    auto op = std::make_unique<SendOp>();
    ops.push_back(op.get());
    sends.add(std::move(op));
  }
  EXPECT_EQ(sends.size(), 4u);
  for (SendOp* op : ops) EXPECT_EQ(sends.find(op), op);
  int other = 0;
  EXPECT_EQ(sends.find(&other), nullptr);
  auto middle = sends.take(ops[1]);
  EXPECT_EQ(sends.find(ops[1]), nullptr);
  auto first = sends.take(ops[3]);  // the head (added last)
  EXPECT_EQ(sends.size(), 2u);
  EXPECT_EQ(sends.find(ops[0]), ops[0]);
  EXPECT_EQ(sends.find(ops[2]), ops[2]);
  // The rest are freed with the list (ASan checks).
}

// The C API (client/tessera.h, docs/API.md) against a real system of four engines: container
// I/O, reads at an epoch, conditions, buffers too small, punches, read-only handles, and the
// error of each bad argument, with its thread-local message.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "client/tessera.h"
#include "tests/integration/dtx_harness.hpp"

using namespace tessera;
using namespace tessera::testing;

namespace {

struct CSystem : SystemHarness {
  explicit CSystem(const char* oclass = "RP_3G1") : SystemHarness(oclass, 1) {}
};

std::string fetch(tessera_cont* co, uint64_t hi, uint64_t lo, const char* dkey, int kind,
                  uint64_t offset, uint64_t length, uint64_t epoch) {
  char buf[256];
  size_t n = 0;
  int rc = tessera_cont_fetch(co, hi, lo, dkey, "v", kind, offset, length, epoch, buf, sizeof buf,
                              &n, nullptr);
  if (rc != 0) return std::string("rc ") + std::to_string(rc) + ": " + tessera_last_error();
  return std::string(buf, n);
}

}  // namespace

TEST(CApi, ContainerCallsStoreFetchAndPunch) {
  CSystem h;
  ASSERT_TRUE(h.c);
  COpen o;
  ASSERT_NO_FATAL_FAILURE(c_open(h, 1, 77, o));
  tessera_client* cl = o.cl;
  tessera_cont* co = o.co;
  const uint64_t hi = o.hi, lo = o.lo;

  uint64_t e1 = 0, e2 = 0;
  ASSERT_EQ(tessera_cont_update(co, hi, lo, "d", "v", TESSERA_SINGLE, 0, "one", 3,
                                TESSERA_COND_NONE, &e1, nullptr),
            0)
      << tessera_last_error();
  ASSERT_EQ(tessera_cont_update(co, hi, lo, "d", "v", TESSERA_SINGLE, 0, "two!", 4,
                                TESSERA_COND_NONE, &e2, nullptr),
            0)
      << tessera_last_error();
  EXPECT_GT(e2, e1);
  EXPECT_EQ(fetch(co, hi, lo, "d", TESSERA_SINGLE, 0, 0, 0), "two!");
  EXPECT_EQ(fetch(co, hi, lo, "d", TESSERA_SINGLE, 0, 0, e1), "one") << "a read at an epoch";

  // A buffer too small: -ERANGE and the size needed.
  char small[2];
  size_t need = 0;
  EXPECT_EQ(tessera_cont_fetch(co, hi, lo, "d", "v", TESSERA_SINGLE, 0, 0, 0, small, sizeof small,
                               &need, nullptr),
            -TESSERA_ERANGE);
  EXPECT_EQ(need, 4u);

  // Conditions: an insert over a value, an update of nothing.
  EXPECT_EQ(tessera_cont_update(co, hi, lo, "d", "v", TESSERA_SINGLE, 0, "x", 1,
                                TESSERA_COND_INSERT, nullptr, nullptr),
            -TESSERA_EEXIST);
  EXPECT_EQ(tessera_cont_update(co, hi, lo, "nothing", "v", TESSERA_SINGLE, 0, "x", 1,
                                TESSERA_COND_UPDATE, nullptr, nullptr),
            -TESSERA_ENOENT);
  EXPECT_EQ(
      tessera_cont_update(co, hi, lo, "d", "v", TESSERA_SINGLE, 0, "x", 1, 9, nullptr, nullptr),
      -TESSERA_EINVAL);
  EXPECT_EQ(fetch(co, hi, lo, "d", TESSERA_SINGLE, 0, 0, 0), "two!")
      << "a refused update changed it";

  // An array range, then a punch of the akey.
  ASSERT_EQ(tessera_cont_update(co, hi, lo, "arr", "v", TESSERA_ARRAY, 4096, "12345678", 8,
                                TESSERA_COND_NONE, nullptr, nullptr),
            0)
      << tessera_last_error();
  EXPECT_EQ(fetch(co, hi, lo, "arr", TESSERA_ARRAY, 4098, 4, 0), "3456");
  ASSERT_EQ(tessera_cont_punch(co, hi, lo, "d", "v", nullptr), 0) << tessera_last_error();
  EXPECT_EQ(fetch(co, hi, lo, "d", TESSERA_SINGLE, 0, 0, 0), "") << "a punched value reads empty";
  EXPECT_EQ(fetch(co, hi, lo, "d", TESSERA_SINGLE, 0, 0, e2), "two!") << "the past stays";

  // A read-only handle reads and may not write.
  tessera_cont* ro = nullptr;
  ASSERT_EQ(tessera_cont_open(cl, "tank", "c", 0, &ro), 0) << tessera_last_error();
  EXPECT_EQ(fetch(ro, hi, lo, "arr", TESSERA_ARRAY, 4096, 8, 0), "12345678");
  EXPECT_EQ(tessera_cont_update(ro, hi, lo, "d", "v", TESSERA_SINGLE, 0, "x", 1, TESSERA_COND_NONE,
                                nullptr, nullptr),
            -TESSERA_EPERM)
      << tessera_last_error();
  EXPECT_EQ(tessera_cont_close(ro), 0);

  EXPECT_EQ(tessera_cont_close(co), 0) << tessera_last_error();
  tessera_disconnect(cl);
}

TEST(CApi, BadArgumentsAndUnknownNamesAreClearErrors) {
  CSystem h;
  ASSERT_TRUE(h.c);
  tessera_client* cl = nullptr;
  EXPECT_EQ(tessera_connect_system(h.sys->mgmt().c_str(), nullptr), -TESSERA_EINVAL);
  EXPECT_NE(std::string(tessera_last_error()).find("null"), std::string::npos);
  ASSERT_EQ(tessera_connect_system(h.sys->mgmt().c_str(), &cl), 0) << tessera_last_error();
  tessera_cont* co = nullptr;
  EXPECT_EQ(tessera_cont_open(cl, "nosuchpool", "c", 1, &co), -TESSERA_ENOENT);
  EXPECT_NE(std::string(tessera_last_error()).find("nosuchpool"), std::string::npos)
      << tessera_last_error();
  EXPECT_EQ(tessera_cont_open(cl, "tank", "nosuchcont", 1, &co), -TESSERA_ENOENT);
  EXPECT_NE(std::string(tessera_last_error()).find("nosuchcont"), std::string::npos)
      << tessera_last_error();
  EXPECT_EQ(co, nullptr);
  char buf[8];
  size_t n = 0;
  EXPECT_EQ(tessera_cont_update(nullptr, 0, 1, "d", "a", TESSERA_SINGLE, 0, "x", 1,
                                TESSERA_COND_NONE, nullptr, nullptr),
            -TESSERA_EINVAL);
  EXPECT_EQ(tessera_cont_fetch(nullptr, 0, 1, "d", "a", TESSERA_SINGLE, 0, 0, 0, buf, sizeof buf,
                               &n, nullptr),
            -TESSERA_EINVAL);
  EXPECT_EQ(tessera_cont_punch(nullptr, 0, 1, "d", "a", nullptr), -TESSERA_EINVAL);
  EXPECT_EQ(tessera_cont_close(nullptr), 0);
  EXPECT_STREQ(tessera_version(), "0.1.0");
  tessera_disconnect(cl);
}

namespace {

// An open container of a fresh system through the C API, closed at the end.
struct CHandles {
  tessera_client* cl = nullptr;
  tessera_cont* co = nullptr;
  tessera_eq* eq = nullptr;
  uint64_t hi = 0, lo = 0;
  explicit CHandles(const std::string& mgmt) {
    EXPECT_EQ(tessera_connect_system(mgmt.c_str(), &cl), 0) << tessera_last_error();
    if (cl == nullptr) return;
    EXPECT_EQ(tessera_cont_open(cl, "tank", "c", 1, &co), 0) << tessera_last_error();
    if (co == nullptr) return;
    EXPECT_EQ(tessera_cont_oid(co, 2, 5, nullptr, &hi, &lo), 0) << tessera_last_error();
    EXPECT_EQ(tessera_eq_create(&eq), 0);
  }
  ~CHandles() {
    EXPECT_EQ(tessera_eq_destroy(eq), 0) << tessera_last_error();
    EXPECT_EQ(tessera_cont_close(co), 0) << tessera_last_error();
    tessera_disconnect(cl);
  }
  // Polls until every started event came back (or `limit` passed); the events, in order.
  std::vector<tessera_event*> drain(std::chrono::seconds limit = std::chrono::seconds(300)) {
    std::vector<tessera_event*> out;
    const auto end = std::chrono::steady_clock::now() + limit;
    while (tessera_eq_inflight(eq) > 0 && std::chrono::steady_clock::now() < end) {
      tessera_event* got[16];
      int n = tessera_eq_poll(eq, 1000000, got, 16);
      EXPECT_GE(n, 0) << tessera_last_error();
      for (int i = 0; i < n; ++i) out.push_back(got[i]);
    }
    return out;
  }
};

}  // namespace

TEST(CApi, HundredsOfCallsInFlightOnOneQueueEachCompleteOnce) {
  CSystem h;
  ASSERT_TRUE(h.c);
  CHandles c(h.sys->mgmt());
  ASSERT_NE(c.eq, nullptr);
  constexpr int kCalls = 300;
  std::vector<tessera_event> evs(kCalls);
  std::vector<std::string> values(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_EQ(tessera_event_init(&evs[i], c.eq, reinterpret_cast<void*>(static_cast<intptr_t>(i))),
              0);
    values[i] = fmt::format("value {} {}", i, std::string(static_cast<size_t>(i % 97), '*'));
    // The buffer is the caller's only until the call returns: the library copied it.
    std::string scratch = values[i];
    ASSERT_EQ(
        tessera_cont_update(c.co, c.hi, c.lo, fmt::format("k{}", i).c_str(), "v", TESSERA_SINGLE, 0,
                            scratch.data(), scratch.size(), TESSERA_COND_NONE, nullptr, &evs[i]),
        0)
        << tessera_last_error();
  }
  // Started and not polled: the queue is busy.
  EXPECT_EQ(tessera_eq_inflight(c.eq), static_cast<size_t>(kCalls));
  EXPECT_EQ(tessera_eq_destroy(c.eq), -TESSERA_EBUSY);
  auto done = c.drain();
  ASSERT_EQ(done.size(), static_cast<size_t>(kCalls)) << "events did not come back";
  std::vector<int> seen(kCalls, 0);
  for (tessera_event* e : done) {
    const auto i = static_cast<int>(reinterpret_cast<intptr_t>(e->user));
    ASSERT_TRUE(i >= 0 && i < kCalls);
    EXPECT_EQ(e, &evs[i]) << "the user pointer travels with its event";
    EXPECT_EQ(e->status, 0) << tessera_event_error(e);
    EXPECT_GT(e->epoch, 0u);
    ++seen[i];
  }
  for (int i = 0; i < kCalls; ++i) EXPECT_EQ(seen[i], 1) << "event " << i;
  EXPECT_EQ(tessera_eq_poll(c.eq, 0, done.data(), 1), 0) << "nothing more to poll";

  // The same events again: fetches into buffers of their own, one too small.
  std::vector<std::string> bufs(kCalls, std::string(256, '\0'));
  for (int i = 0; i < kCalls; ++i) {
    const size_t cap = i == 7 ? 3 : bufs[i].size();
    ASSERT_EQ(tessera_cont_fetch(c.co, c.hi, c.lo, fmt::format("k{}", i).c_str(), "v",
                                 TESSERA_SINGLE, 0, 0, 0, bufs[i].data(), cap, nullptr, &evs[i]),
              0)
        << tessera_last_error();
  }
  // An event is in flight until polled, done or not.
  EXPECT_EQ(tessera_cont_fetch(c.co, c.hi, c.lo, "k0", "v", TESSERA_SINGLE, 0, 0, 0, bufs[0].data(),
                               bufs[0].size(), nullptr, &evs[0]),
            -TESSERA_EBUSY)
      << "an event in flight started another call";
  EXPECT_EQ(tessera_cont_update(c.co, c.hi, c.lo, "refused-busy", "v", TESSERA_SINGLE, 0, "x", 1,
                                TESSERA_COND_NONE, nullptr, &evs[0]),
            -TESSERA_EBUSY);
  EXPECT_EQ(tessera_event_fini(&evs[0]), -TESSERA_EBUSY);
  done = c.drain();
  ASSERT_EQ(done.size(), static_cast<size_t>(kCalls));
  for (int i = 0; i < kCalls; ++i) {
    if (i == 7) {
      EXPECT_EQ(evs[i].status, -TESSERA_ERANGE);
      EXPECT_EQ(evs[i].out_len, values[i].size()) << "the bytes needed";
      EXPECT_NE(std::string(tessera_event_error(&evs[i])).find("too small"), std::string::npos);
      continue;
    }
    EXPECT_EQ(evs[i].status, 0) << tessera_event_error(&evs[i]);
    EXPECT_EQ(bufs[i].substr(0, evs[i].out_len), values[i]);
  }

  // A punch through an event, then a synchronous read: it is gone.
  ASSERT_EQ(tessera_cont_punch(c.co, c.hi, c.lo, "k1", "v", &evs[1]), 0);
  done = c.drain();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0]->status, 0) << tessera_event_error(done[0]);
  EXPECT_EQ(fetch(c.co, c.hi, c.lo, "k1", TESSERA_SINGLE, 0, 0, 0), "");

  // An event never initialised, and one finished, are refused.
  tessera_event raw{};
  EXPECT_EQ(tessera_cont_punch(c.co, c.hi, c.lo, "k2", "v", &raw), -TESSERA_EINVAL);
  for (auto& e : evs) EXPECT_EQ(tessera_event_fini(&e), 0);
  EXPECT_EQ(tessera_cont_punch(c.co, c.hi, c.lo, "k2", "v", &evs[2]), -TESSERA_EINVAL);
  EXPECT_EQ(tessera_cont_update(c.co, c.hi, c.lo, "refused-fini", "v", TESSERA_SINGLE, 0, "x", 1,
                                TESSERA_COND_NONE, nullptr, &evs[2]),
            -TESSERA_EINVAL);
  // A refused call sent nothing: no refused update stored its key (the object's dkeys are the
  // 300 written ones but k1, punched), and the refused punches left k2 as it was.
  tessera_anchor anchor = TESSERA_ANCHOR_INIT;
  std::vector<std::string> dkeys;
  std::vector<size_t> lens(64);
  std::string buf(16384, '\0');
  while (anchor.eof == 0) {
    uint32_t n = static_cast<uint32_t>(lens.size());
    ASSERT_EQ(tessera_cont_list_dkeys(c.co, c.hi, c.lo, 0, &anchor, &n, lens.data(), buf.data(),
                                      buf.size(), nullptr),
              0)
        << tessera_last_error();
    size_t at = 0;
    for (uint32_t i = 0; i < n; ++i) {
      dkeys.emplace_back(buf.data() + at, lens[i]);
      at += lens[i];
    }
  }
  EXPECT_EQ(dkeys.size(), static_cast<size_t>(kCalls - 1));
  for (const auto& k : dkeys) EXPECT_EQ(k.rfind("refused", 0), std::string::npos) << k;
  EXPECT_EQ(fetch(c.co, c.hi, c.lo, "k2", TESSERA_SINGLE, 0, 0, 0), values[2]);
}

// kill -9 of an engine while a thread keeps 64 updates in flight on one queue: every event comes
// back, each a success or a clear error, and every update acknowledged reads back.
TEST(CApi, AnEngineKilledDuringAsyncCallsLeavesNoEventHanging) {
  CSystem h("RP_3GX");
  ASSERT_TRUE(h.c);
  CHandles c(h.sys->mgmt());
  ASSERT_NE(c.eq, nullptr);
  constexpr int kDepth = 64;
  constexpr int kCalls = 1500;
  std::vector<tessera_event> evs(kDepth);
  for (int i = 0; i < kDepth; ++i) {
    ASSERT_EQ(tessera_event_init(&evs[i], c.eq, nullptr), 0);
  }
  std::vector<int> key_of(kDepth, -1);
  std::vector<int> acked, failed;
  std::vector<tessera_event*> free_evs;
  for (auto& e : evs) free_evs.push_back(&e);
  int started = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(600);
  while ((started < kCalls || tessera_eq_inflight(c.eq) > 0) &&
         std::chrono::steady_clock::now() < end) {
    while (started < kCalls && !free_evs.empty()) {
      tessera_event* e = free_evs.back();
      free_evs.pop_back();
      key_of[e - evs.data()] = started;
      const std::string v = fmt::format("v{}", started);
      int rc =
          tessera_cont_update(c.co, c.hi, c.lo, fmt::format("k{}", started).c_str(), "v",
                              TESSERA_SINGLE, 0, v.data(), v.size(), TESSERA_COND_NONE, nullptr, e);
      ASSERT_EQ(rc, 0) << tessera_last_error();
      if (++started == kCalls / 3) h.sys->engine(2).kill9();
    }
    tessera_event* got[kDepth];
    int n = tessera_eq_poll(c.eq, 1000000, got, kDepth);
    ASSERT_GE(n, 0);
    for (int i = 0; i < n; ++i) {
      const int k = key_of[got[i] - evs.data()];
      if (got[i]->status == 0) {
        acked.push_back(k);
      } else {
        failed.push_back(k);
        EXPECT_NE(std::string(tessera_event_error(got[i])), "") << "an error without a message";
      }
      free_evs.push_back(got[i]);
    }
  }
  EXPECT_EQ(tessera_eq_inflight(c.eq), 0u) << "events still in flight after 600 s";
  EXPECT_EQ(acked.size() + failed.size(), static_cast<size_t>(kCalls));
  EXPECT_GT(acked.size(), static_cast<size_t>(kCalls / 3));
  // Every acknowledged update reads back (through the same queue, 64 reads in flight).
  std::vector<std::string> bufs(kDepth, std::string(64, '\0'));
  size_t next = 0, lost = 0;
  while ((next < acked.size() || tessera_eq_inflight(c.eq) > 0) &&
         std::chrono::steady_clock::now() < end) {
    while (next < acked.size() && !free_evs.empty()) {
      tessera_event* e = free_evs.back();
      free_evs.pop_back();
      const size_t slot = static_cast<size_t>(e - evs.data());
      key_of[slot] = acked[next++];
      ASSERT_EQ(tessera_cont_fetch(c.co, c.hi, c.lo, fmt::format("k{}", key_of[slot]).c_str(), "v",
                                   TESSERA_SINGLE, 0, 0, 0, bufs[slot].data(), bufs[slot].size(),
                                   nullptr, e),
                0)
          << tessera_last_error();
    }
    tessera_event* got[kDepth];
    int n = tessera_eq_poll(c.eq, 1000000, got, kDepth);
    ASSERT_GE(n, 0);
    for (int i = 0; i < n; ++i) {
      const size_t slot = static_cast<size_t>(got[i] - evs.data());
      const std::string want = fmt::format("v{}", key_of[slot]);
      const std::string seen =
          got[i]->status == 0 ? bufs[slot].substr(0, got[i]->out_len) : tessera_event_error(got[i]);
      if (seen != want && lost++ < 5) {
        ADD_FAILURE() << "acknowledged update " << key_of[slot] << " reads " << seen;
      }
      free_evs.push_back(got[i]);
    }
  }
  EXPECT_EQ(next, acked.size());
  EXPECT_EQ(lost, 0u);
  for (auto& e : evs) EXPECT_EQ(tessera_event_fini(&e), 0);
}

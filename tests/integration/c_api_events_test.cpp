// The C API's blocking calls given an event (client/tessera.h, docs/API.md "Event queues"):
// administration, opening and closing containers and transactions run on the client's workers
// and complete through the event's queue, with their results, their errors and their messages,
// against a real system of four engines; none is lost when the client disconnects or when the
// management service dies under them. And a user (uid 65534, vouched for by the node agent)
// is kept to its ACLs through the C API, blocking and through events.
#include <fmt/format.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "client/tessera.h"
#include "tests/integration/cli_system.hpp"
#include "tests/integration/dtx_harness.hpp"

using namespace tessera;
using namespace tessera::testing;

namespace {

struct Queue {
  tessera_eq* eq = nullptr;
  std::vector<tessera_event> evs;
  explicit Queue(size_t n) : evs(n) {
    EXPECT_EQ(tessera_eq_create(&eq), 0);
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(tessera_event_init(&evs[i], eq, &evs[i]), 0);
  }
  ~Queue() {
    for (auto& e : evs) EXPECT_EQ(tessera_event_fini(&e), 0);
    EXPECT_EQ(tessera_eq_destroy(eq), 0);
  }
  // Polls until nothing is in flight; each event handed back once. How many came back. A
  // minute with none back is a hang: a failure (the client's timeout is 4 s).
  int drain() {
    std::multiset<tessera_event*> back;
    while (tessera_eq_inflight(eq) > 0) {
      tessera_event* done[16];
      int k = tessera_eq_poll(eq, 60'000'000, done, 16);
      EXPECT_GT(k, 0) << (k < 0 ? tessera_last_error() : "no event came back within a minute");
      if (k <= 0) break;
      for (int i = 0; i < k; ++i) {
        EXPECT_EQ(done[i]->user, done[i]) << "the caller's pointer comes back untouched";
        back.insert(done[i]);
      }
    }
    for (auto* e : back) EXPECT_EQ(back.count(e), 1u) << "an event handed back twice";
    return static_cast<int>(back.size());
  }
  // Starts one call on event i (its return value checked) and waits for it.
  tessera_event& one(size_t i, int started) {
    EXPECT_EQ(started, 0) << tessera_last_error();
    EXPECT_EQ(drain(), started == 0 ? 1 : 0);
    return evs[i];
  }
};

}  // namespace

TEST(CApiEvents, AdministrationOpeningAndClosingCompleteThroughEvents) {
  SystemHarness h("RP_3G1");
  ASSERT_TRUE(h.c);
  tessera_client* cl = nullptr;
  ASSERT_EQ(tessera_connect_system(h.sys->mgmt().c_str(), &cl), 0) << tessera_last_error();
  Queue q(16);
  tessera_event* ev = &q.evs[0];

  // A pool, its record arriving with the event.
  tessera_pool_info p{};
  auto& made = q.one(0, tessera_pool_create_ev(cl, "pe", 64ull << 20, &p, ev));
  ASSERT_EQ(made.status, 0) << tessera_event_error(ev);
  EXPECT_STREQ(p.label, "pe");
  EXPECT_EQ(p.engines, 4u);
  EXPECT_STREQ(tessera_event_error(ev), "");

  // Errors come through the event, with the message; a bad argument is refused at once.
  EXPECT_EQ(q.one(0, tessera_pool_create_ev(cl, "pe", 64ull << 20, nullptr, ev)).status,
            -TESSERA_EEXIST);
  EXPECT_EQ(q.one(0, tessera_pool_query_ev(cl, "nosuch", &p, ev)).status, -TESSERA_ENOENT);
  EXPECT_NE(std::string(tessera_event_error(ev)).find("nosuch"), std::string::npos)
      << tessera_event_error(ev);
  EXPECT_EQ(tessera_pool_query_ev(cl, nullptr, &p, ev), -TESSERA_EINVAL);
  EXPECT_EQ(tessera_cont_create_ev(cl, "pe", "bad", "colour=blue", nullptr, ev), -TESSERA_EINVAL);
  EXPECT_EQ(tessera_pool_destroy_ev(cl, "pe", 64, ev), -TESSERA_EINVAL);
  EXPECT_EQ(tessera_eq_inflight(q.eq), 0u) << "a refused call starts nothing";

  // Eight containers created at once on one queue, each handed back once; the caller's strings
  // may go as soon as the call returned.
  std::vector<tessera_cont_info> infos(8);
  for (int i = 0; i < 8; ++i) {
    std::string label = fmt::format("c{}", i);
    ASSERT_EQ(
        tessera_cont_create_ev(cl, "pe", label.c_str(), "oclass=RP_2G1,rf=1", &infos[i], &q.evs[i]),
        0)
        << tessera_last_error();
  }
  // An event in flight takes no other call until polled.
  EXPECT_EQ(tessera_pool_query_ev(cl, "pe", &p, &q.evs[0]), -TESSERA_EBUSY);
  EXPECT_EQ(q.drain(), 8);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(q.evs[i].status, 0) << tessera_event_error(&q.evs[i]);
    EXPECT_EQ(std::string(infos[i].label), fmt::format("c{}", i));
    EXPECT_STREQ(infos[i].oclass, "RP_2G1");
  }
  // Lists: the count in out_len, too little room a clear -TESSERA_ERANGE.
  std::vector<tessera_cont_info> conts(16);
  size_t n = 0;
  ASSERT_EQ(q.one(0, tessera_cont_list_ev(cl, "pe", conts.data(), 16, &n, ev)).status, 0);
  EXPECT_EQ(n, 8u);
  EXPECT_EQ(ev->out_len, 8u);
  EXPECT_EQ(q.one(0, tessera_cont_list_ev(cl, "pe", conts.data(), 2, &n, ev)).status,
            -TESSERA_ERANGE);
  EXPECT_EQ(ev->out_len, 8u);
  tessera_pool_info pools[4];
  ASSERT_EQ(q.one(0, tessera_pool_list_ev(cl, pools, 4, &n, ev)).status, 0);
  EXPECT_EQ(n, 2u);
  tessera_cont_info ci{};
  ASSERT_EQ(q.one(0, tessera_cont_set_prop_ev(cl, "pe", "c7", "label=last", ev)).status, 0)
      << tessera_event_error(ev);
  ASSERT_EQ(q.one(0, tessera_cont_query_ev(cl, "pe", "last", &ci, ev)).status, 0)
      << tessera_event_error(ev);
  EXPECT_EQ(ci.id, infos[7].id);

  // Open, write through a transaction opened through an event, snapshot, close.
  tessera_cont* co = nullptr;
  ASSERT_EQ(q.one(0, tessera_cont_open_ev(cl, "pe", "c0", 1, &co, ev)).status, 0)
      << tessera_event_error(ev);
  ASSERT_NE(co, nullptr);
  tessera_tx* tx = nullptr;
  ASSERT_EQ(q.one(0, tessera_tx_open_ev(co, 0, &tx, ev)).status, 0) << tessera_event_error(ev);
  ASSERT_NE(tx, nullptr);
  EXPECT_EQ(ev->epoch, tessera_tx_epoch(tx));
  uint64_t hi = 0, lo = 0;
  ASSERT_EQ(tessera_cont_oid(co, 0, 1, nullptr, &hi, &lo), 0);
  ASSERT_EQ(tessera_tx_update(tx, hi, lo, "d", "a", TESSERA_SINGLE, 0, "v1", 2, 0), 0);
  ASSERT_EQ(tessera_tx_commit(tx, nullptr), 0) << tessera_last_error();
  tessera_tx_close(tx);
  ASSERT_EQ(q.one(0, tessera_snap_create_ev(cl, "pe", "c0", "s", nullptr, ev)).status, 0)
      << tessera_event_error(ev);
  const uint64_t snap = ev->epoch;
  EXPECT_GT(snap, 0u);
  tessera_snap_info snaps[2];
  ASSERT_EQ(q.one(0, tessera_snap_list_ev(cl, "pe", "c0", snaps, 2, &n, ev)).status, 0);
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(snaps[0].epoch, snap);
  // Rollback to the snapshot: refused with the handle open unless forced, then the newest state
  // is the snapshot's again, as a new epoch.
  ASSERT_EQ(tessera_cont_update(co, hi, lo, "d", "a", TESSERA_SINGLE, 0, "v2", 2, TESSERA_COND_NONE,
                                nullptr, nullptr),
            0)
      << tessera_last_error();
  EXPECT_EQ(tessera_cont_rollback(cl, "pe", "c0", "s", snap, 0, nullptr), -TESSERA_EINVAL)
      << "a name or an epoch, not both";
  EXPECT_EQ(tessera_cont_rollback(cl, "pe", "c0", nullptr, 0, 0, nullptr), -TESSERA_EINVAL);
  EXPECT_EQ(tessera_cont_rollback_ev(cl, "pe", "c0", "s", 0, 8, nullptr, ev), -TESSERA_EINVAL);
  EXPECT_EQ(q.one(0, tessera_cont_rollback_ev(cl, "pe", "c0", "s", 0, 0, nullptr, ev)).status,
            -TESSERA_EBUSY)
      << "an open handle";
  uint64_t back_at = 0;
  ASSERT_EQ(q.one(0, tessera_cont_rollback_ev(cl, "pe", "c0", "s", 0, TESSERA_ROLLBACK_FORCE,
                                              &back_at, ev))
                .status,
            0)
      << tessera_event_error(ev);
  EXPECT_GT(ev->epoch, snap);
  EXPECT_EQ(back_at, ev->epoch);
  ASSERT_EQ(q.one(0, tessera_snap_destroy_ev(cl, "pe", "c0", snap, ev)).status, 0);
  char buf[8];
  size_t got = 0;
  ASSERT_EQ(tessera_cont_fetch(co, hi, lo, "d", "a", TESSERA_SINGLE, 0, 0, 0, buf, sizeof buf, &got,
                               nullptr),
            0)
      << tessera_last_error();
  EXPECT_EQ(std::string(buf, got), "v1");
  EXPECT_EQ(q.one(0, tessera_cont_destroy_ev(cl, "pe", "c0", 0, ev)).status, -TESSERA_EBUSY)
      << "an open handle";
  ASSERT_EQ(q.one(0, tessera_cont_close_ev(co, ev)).status, 0) << tessera_event_error(ev);
  ASSERT_EQ(q.one(0, tessera_cont_destroy_ev(cl, "pe", "c0", 0, ev)).status, 0)
      << tessera_event_error(ev);
  ASSERT_EQ(q.one(0, tessera_pool_destroy_ev(cl, "pe", TESSERA_DESTROY_RECURSIVE, ev)).status, 0)
      << tessera_event_error(ev);
  EXPECT_EQ(q.one(0, tessera_pool_query_ev(cl, "pe", &p, ev)).status, -TESSERA_ENOENT);

  // Disconnecting with calls in flight waits for them: every event still comes back, done.
  std::vector<tessera_pool_info> qs(16);
  for (int i = 0; i < 16; ++i) {
    ASSERT_EQ(tessera_pool_query_ev(cl, "tank", &qs[i], &q.evs[i]), 0) << tessera_last_error();
  }
  tessera_disconnect(cl);
  EXPECT_EQ(q.drain(), 16);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(q.evs[i].status, 0) << tessera_event_error(&q.evs[i]);
    EXPECT_STREQ(qs[i].label, "tank");
  }
}

TEST(CApiEvents, EveryCallCompletesWhenTheManagementServiceDies) {
  SystemHarness h("RP_3G1");
  ASSERT_TRUE(h.c);
  tessera_client* cl = nullptr;
  ASSERT_EQ(tessera_connect_system(h.sys->mgmt().c_str(), &cl), 0) << tessera_last_error();
  Queue q(64);
  std::vector<tessera_pool_info> qs(64);
  // Half start while it serves, the other half once it is gone (rank 0 hosts it).
  for (int i = 0; i < 32; ++i) {
    ASSERT_EQ(tessera_pool_query_ev(cl, "tank", &qs[i], &q.evs[i]), 0) << tessera_last_error();
  }
  h.sys->engine(0).kill9();
  for (int i = 32; i < 64; ++i) {
    ASSERT_EQ(tessera_pool_query_ev(cl, "tank", &qs[i], &q.evs[i]), 0) << tessera_last_error();
  }
  EXPECT_EQ(q.drain(), 64);
  int failed = 0;
  for (int i = 0; i < 64; ++i) {
    if (q.evs[i].status == 0) {
      EXPECT_STREQ(qs[i].label, "tank");
      EXPECT_LT(i, 32) << "answered after the service died";
    } else {
      ++failed;
      EXPECT_NE(std::string(tessera_event_error(&q.evs[i])), "") << "a failure names its cause";
    }
  }
  EXPECT_GE(failed, 32);
  tessera_disconnect(cl);
}

namespace {

// Runs `body` in a child process as uid/gid 65534 with no supplementary groups, finding the
// system through `system_file` as any program does (no system key it can read: the node agent
// vouches for it). The child's exit status: how many of its checks failed (each printed).
// Forked before this process starts any thread of its own.
int run_as_nobody(const std::string& system_file, void (*body)(int& failed)) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0) {
      ::_exit(100);
    }
    ::setenv("HOME", "/nonexistent", 1);
    ::setenv("TESSERA_SYSTEM", system_file.c_str(), 1);
    ::unsetenv("TESSERA_MGMT");
    ::unsetenv("TESSERA_SYSTEM_KEY");
    ::unsetenv("TESSERA_AGENT");
    int failed = 0;
    body(failed);
    ::_exit(failed);
  }
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 200;
}

void check(int& failed, bool ok, const char* what, const char* message) {
  if (ok) return;
  std::fprintf(stderr, "as uid 65534: %s (%s)\n", what, message);
  ++failed;
}

}  // namespace

TEST(CApiEvents, AUserIsKeptToItsAclBlockingAndThroughEvents) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as another user";
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "1", "--targets", "1"});
  s.let_others_in();
  s.ok({"pool", "create", "P", "--target-size", "64M"});
  s.ok({"cont", "create", "P", "C", "--type", "KV", "--oclass", "S1"});
  s.ok({"kv", "put", "--pool", "P", "--cont", "C", "k", "secret"});
  const std::string file = s.dir() + "/system.json";

  // No ACL entry for the user: administration and opening are refused, with or without events.
  EXPECT_EQ(run_as_nobody(
                file,
                [](int& failed) {
                  tessera_client* cl = nullptr;
                  int rc = tessera_connect_system(nullptr, &cl);
                  check(failed, rc == 0, "connects", tessera_last_error());
                  if (rc != 0) return;
                  rc = tessera_pool_create(cl, "X", 64ull << 20, nullptr);
                  check(failed, rc == -TESSERA_EPERM, "pool create refused", tessera_last_error());
                  tessera_cont* co = nullptr;
                  rc = tessera_cont_open(cl, "P", "C", 0, &co);
                  check(failed, rc == -TESSERA_EPERM, "open refused", tessera_last_error());
                  tessera_eq* eq = nullptr;
                  tessera_event ev;
                  tessera_eq_create(&eq);
                  tessera_event_init(&ev, eq, nullptr);
                  tessera_event* done = nullptr;
                  for (int i = 0; i < 3; ++i) {
                    rc = i == 0   ? tessera_pool_destroy_ev(cl, "P", 0, &ev)
                         : i == 1 ? tessera_cont_create_ev(cl, "P", "D", nullptr, nullptr, &ev)
                                  : tessera_cont_open_ev(cl, "P", "C", 1, &co, &ev);
                    check(failed, rc == 0, "started", tessera_last_error());
                    check(failed, tessera_eq_poll(eq, -1, &done, 1) == 1, "polled",
                          tessera_last_error());
                    check(failed, ev.status == -TESSERA_EPERM, "refused through the event",
                          tessera_event_error(&ev));
                  }
                  tessera_event_fini(&ev);
                  tessera_eq_destroy(eq);
                  tessera_disconnect(cl);
                }),
            0);

  // Read entries for uid 65534: it opens for reading and reads; writing stays refused.
  s.ok({"pool", "update-acl", "P", "--entry", "A::nobody@:r"});
  s.ok({"cont", "update-acl", "P", "C", "--entry", "A::nobody@:r"});
  EXPECT_EQ(run_as_nobody(file,
                          [](int& failed) {
                            tessera_client* cl = nullptr;
                            int rc = tessera_connect_system(nullptr, &cl);
                            check(failed, rc == 0, "connects", tessera_last_error());
                            if (rc != 0) return;
                            tessera_cont* co = nullptr;
                            rc = tessera_cont_open(cl, "P", "C", 0, &co);
                            check(failed, rc == 0, "opens to read", tessera_last_error());
                            if (rc != 0) return;
                            char buf[16];
                            size_t got = 0;
                            rc = tessera_kv_get(co, "k", buf, sizeof buf, &got, nullptr);
                            check(failed, rc == 0 && std::string(buf, got) == "secret", "reads",
                                  tessera_last_error());
                            rc = tessera_kv_put(co, "k", "mine", 4, nullptr);
                            check(failed, rc == -TESSERA_EPERM, "write refused",
                                  tessera_last_error());
                            tessera_cont* w = nullptr;
                            rc = tessera_cont_open(cl, "P", "C", 1, &w);
                            check(failed, rc == -TESSERA_EPERM, "open to write refused",
                                  tessera_last_error());
                            tessera_cont_close(co);
                            tessera_disconnect(cl);
                          }),
            0);
  EXPECT_EQ(s.ok({"kv", "get", "--pool", "P", "--cont", "C", "k"})["value"], "secret");
}

// The C API's system calls (client/tessera.h, docs/API.md) against a real system of four
// engines: finding the system as the CLI does, pools, containers and snapshots, listings page
// by page through anchors, the key-value calls, and the errors of each (permission, no space,
// unavailable, a buffer too small).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "client/tessera.h"
#include "tests/integration/dtx_harness.hpp"

using namespace tessera;
using namespace tessera::testing;

namespace {

// Sets an environment variable for a scope, then puts the old value back.
struct ScopedEnv {
  std::string name;
  std::string old;
  bool had = false;
  ScopedEnv(const char* n, const char* value) : name(n) {
    if (const char* v = std::getenv(n); v != nullptr) {
      had = true;
      old = v;
    }
    if (value != nullptr) {
      ::setenv(n, value, 1);
    } else {
      ::unsetenv(n);
    }
  }
  ~ScopedEnv() {
    if (had) {
      ::setenv(name.c_str(), old.c_str(), 1);
    } else {
      ::unsetenv(name.c_str());
    }
  }
};

// A system file for the harness's system, as `tessera system start` writes one: its management
// service and the system key (this process administers).
std::string write_system_file(const SystemHarness& h) {
  const std::string path = h.dir.path() + "/system.json";
  std::ofstream out(path);
  out << fmt::format(
      R"({{"version": 1, "dir": "{}", "mgmt": "{}", "provider": "tcp", "targets": 1,
          "system_key": "{}", "agent": "", "engines": []}})",
      h.dir.path(), h.sys->mgmt(), test_system_key());
  return path;
}

tessera_client* connect(const char* system) {
  tessera_client* cl = nullptr;
  EXPECT_EQ(tessera_connect_system(system, &cl), 0) << tessera_last_error();
  return cl;
}

// Every key of a listing, page by page with room for `room` keys in `buflen` bytes.
template <typename Call>
std::vector<std::string> all_keys(uint32_t room, size_t buflen, Call call, int* pages = nullptr) {
  std::vector<std::string> keys;
  tessera_anchor anchor = TESSERA_ANCHOR_INIT;
  std::vector<char> buf(buflen);
  std::vector<size_t> lens(room);
  int n_pages = 0;
  while (anchor.eof == 0 && n_pages < 100000) {
    uint32_t n = room;
    int rc = call(&anchor, &n, lens.data(), buf.data(), buf.size());
    EXPECT_EQ(rc, 0) << tessera_last_error();
    if (rc != 0) break;
    EXPECT_LE(n, room);
    size_t at = 0;
    for (uint32_t i = 0; i < n; ++i) {
      keys.emplace_back(buf.data() + at, lens[i]);
      at += lens[i];
    }
    ++n_pages;
  }
  if (pages != nullptr) *pages = n_pages;
  return keys;
}

}  // namespace

TEST(CApiAdmin, FindsTheSystemAsTheCliDoes) {
  SystemHarness h("RP_3G1");
  ASSERT_TRUE(h.c);
  const std::string file = write_system_file(h);
  tessera_pool_info info;
  {
    // A system file, by path and by its directory.
    for (const std::string& arg : {file, h.dir.path()}) {
      tessera_client* cl = connect(arg.c_str());
      ASSERT_NE(cl, nullptr) << arg;
      EXPECT_EQ(tessera_pool_query(cl, "tank", &info), 0) << tessera_last_error();
      EXPECT_STREQ(info.label, "tank");
      tessera_disconnect(cl);
    }
  }
  {
    // NULL: $TESSERA_MGMT first, else $TESSERA_SYSTEM.
    ScopedEnv mgmt("TESSERA_MGMT", nullptr);
    ScopedEnv sys("TESSERA_SYSTEM", file.c_str());
    tessera_client* cl = connect(nullptr);
    ASSERT_NE(cl, nullptr);
    EXPECT_EQ(tessera_pool_query(cl, "tank", &info), 0) << tessera_last_error();
    tessera_disconnect(cl);
    ScopedEnv sys2("TESSERA_SYSTEM", (h.dir.path() + "/nowhere.json").c_str());
    cl = nullptr;
    EXPECT_EQ(tessera_connect_system(nullptr, &cl), -TESSERA_ENOENT);
    EXPECT_NE(std::string(tessera_last_error()).find("nowhere.json"), std::string::npos)
        << tessera_last_error();
    EXPECT_EQ(cl, nullptr);
    ScopedEnv mgmt2("TESSERA_MGMT", h.sys->mgmt().c_str());
    cl = connect("");
    ASSERT_NE(cl, nullptr);
    EXPECT_EQ(tessera_pool_query(cl, "tank", &info), 0) << tessera_last_error();
    tessera_disconnect(cl);
  }
  EXPECT_EQ(tessera_connect_system(nullptr, nullptr), -TESSERA_EINVAL);
  tessera_client* cl = nullptr;
  EXPECT_EQ(tessera_connect_system("/no/such/dir/system.json", &cl), -TESSERA_ENOENT);
}

TEST(CApiAdmin, PoolsContainersAndSnapshots) {
  SystemHarness h("RP_3G1");
  ASSERT_TRUE(h.c);
  tessera_client* cl = connect(h.sys->mgmt().c_str());
  ASSERT_NE(cl, nullptr);

  tessera_pool_info p{};
  ASSERT_EQ(tessera_pool_create(cl, "p2", 64ull << 20, &p), 0) << tessera_last_error();
  EXPECT_STREQ(p.label, "p2");
  EXPECT_EQ(std::strlen(p.uuid), size_t{TESSERA_UUID_LEN});
  EXPECT_EQ(p.target_bytes, 64ull << 20);
  EXPECT_EQ(p.engines, 4u) << "every joined engine";
  EXPECT_EQ(p.targets, 4u);
  EXPECT_EQ(p.targets_up, 4u);
  EXPECT_EQ(tessera_pool_create(cl, "p2", 64ull << 20, nullptr), -TESSERA_EEXIST);
  EXPECT_EQ(tessera_pool_create(cl, std::string(TESSERA_LABEL_MAX + 1, 'x').c_str(), 64ull << 20,
                                nullptr),
            -TESSERA_EINVAL);
  EXPECT_NE(std::string(tessera_last_error()).find("at most 127"), std::string::npos)
      << tessera_last_error();

  // Listing: too little room says how much is needed.
  tessera_pool_info pools[4];
  size_t n = 0;
  EXPECT_EQ(tessera_pool_list(cl, pools, 1, &n), -TESSERA_ERANGE);
  EXPECT_EQ(n, 2u);
  ASSERT_EQ(tessera_pool_list(cl, pools, 4, &n), 0) << tessera_last_error();
  ASSERT_EQ(n, 2u);
  std::set<std::string> labels{pools[0].label, pools[1].label};
  EXPECT_EQ(labels, (std::set<std::string>{"tank", "p2"}));
  EXPECT_EQ(tessera_pool_query(cl, "nosuch", &p), -TESSERA_ENOENT);
  EXPECT_NE(std::string(tessera_last_error()).find("nosuch"), std::string::npos);

  // Containers: properties as the CLI takes them.
  tessera_cont_info ci{};
  ASSERT_EQ(tessera_cont_create(cl, "p2", "arr", "type=array,oclass=RP_2G1,rf=1", &ci), 0)
      << tessera_last_error();
  EXPECT_STREQ(ci.label, "arr");
  EXPECT_STREQ(ci.type, "ARRAY");
  EXPECT_STREQ(ci.oclass, "RP_2G1");
  EXPECT_EQ(ci.rf, 1u);
  EXPECT_STREQ(ci.health, "HEALTHY");
  EXPECT_EQ(tessera_cont_create(cl, "p2", "bad", "colour=blue", nullptr), -TESSERA_EINVAL);
  EXPECT_NE(std::string(tessera_last_error()).find("colour"), std::string::npos)
      << tessera_last_error();
  EXPECT_EQ(tessera_cont_create(cl, "p2", "bad", "rf", nullptr), -TESSERA_EINVAL);
  EXPECT_EQ(tessera_cont_create(cl, "p2", "kv", nullptr, nullptr), 0) << tessera_last_error();
  tessera_cont_info conts[2];
  EXPECT_EQ(tessera_cont_list(cl, "p2", conts, 2, &n), 0) << tessera_last_error();
  EXPECT_EQ(n, 2u);
  EXPECT_EQ(tessera_cont_query(cl, "p2", "arr", &ci), 0) << tessera_last_error();
  EXPECT_EQ(tessera_cont_query(cl, "p2", "nosuchcont", &ci), -TESSERA_ENOENT);
  // Properties by name: a label changes, the layout's do not, status is only ever "healthy"
  // (a HEALTHY container stays so: tests/integration/redundancy_test.cpp clears an UNCLEAN one).
  EXPECT_EQ(tessera_cont_set_prop(cl, "p2", "kv", "label=kv2"), 0) << tessera_last_error();
  EXPECT_EQ(tessera_cont_query(cl, "p2", "kv2", &ci), 0) << tessera_last_error();
  EXPECT_EQ(tessera_cont_set_prop(cl, "p2", "kv2", "label=kv"), 0) << tessera_last_error();
  EXPECT_EQ(tessera_cont_set_prop(cl, "p2", "kv", "rf=2"), -TESSERA_EINVAL);
  EXPECT_EQ(tessera_cont_set_prop(cl, "p2", "kv", "status=sick"), -TESSERA_EINVAL);
  EXPECT_NE(std::string(tessera_last_error()).find("healthy"), std::string::npos);
  EXPECT_EQ(tessera_cont_set_prop(cl, "p2", "kv", "label"), -TESSERA_EINVAL);
  EXPECT_EQ(tessera_cont_set_prop(cl, "p2", "kv", "status=healthy"), 0) << tessera_last_error();
  EXPECT_EQ(tessera_cont_set_prop(cl, "p2", "nosuchcont", "label=x"), -TESSERA_ENOENT);
  EXPECT_EQ(tessera_cont_query(cl, "p2", "kv", &ci), 0) << tessera_last_error();
  EXPECT_STREQ(ci.health, "HEALTHY");

  // Snapshots: a read at one sees its state.
  tessera_cont* co = nullptr;
  ASSERT_EQ(tessera_cont_open(cl, "p2", "arr", 1, &co), 0) << tessera_last_error();
  uint64_t hi = 0, lo = 0;
  ASSERT_EQ(tessera_cont_oid(co, 0, 9, nullptr, &hi, &lo), 0);
  ASSERT_EQ(tessera_cont_update(co, hi, lo, "d", "a", TESSERA_SINGLE, 0, "before", 6,
                                TESSERA_COND_NONE, nullptr, nullptr),
            0)
      << tessera_last_error();
  uint64_t snap = 0;
  ASSERT_EQ(tessera_snap_create(cl, "p2", "arr", "s1", &snap), 0) << tessera_last_error();
  EXPECT_GT(snap, 0u);
  ASSERT_EQ(tessera_cont_update(co, hi, lo, "d", "a", TESSERA_SINGLE, 0, "after", 5,
                                TESSERA_COND_NONE, nullptr, nullptr),
            0);
  char buf[16];
  size_t got = 0;
  ASSERT_EQ(tessera_cont_fetch(co, hi, lo, "d", "a", TESSERA_SINGLE, 0, 0, snap, buf, sizeof buf,
                               &got, nullptr),
            0)
      << tessera_last_error();
  EXPECT_EQ(std::string(buf, got), "before");
  tessera_snap_info snaps[2];
  ASSERT_EQ(tessera_snap_list(cl, "p2", "arr", snaps, 2, &n), 0) << tessera_last_error();
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(snaps[0].epoch, snap);
  EXPECT_STREQ(snaps[0].name, "s1");
  ASSERT_EQ(tessera_snap_destroy(cl, "p2", "arr", snap), 0) << tessera_last_error();
  ASSERT_EQ(tessera_snap_list(cl, "p2", "arr", snaps, 2, &n), 0);
  EXPECT_EQ(n, 0u);

  // Destroying: an open handle and the containers a pool still has are refused, unless forced.
  EXPECT_LT(tessera_cont_destroy(cl, "p2", "arr", 0), 0);
  EXPECT_EQ(tessera_cont_close(co), 0);
  EXPECT_EQ(tessera_cont_destroy(cl, "p2", "arr", 0), 0) << tessera_last_error();
  EXPECT_EQ(tessera_cont_destroy(cl, "p2", "arr", 0), -TESSERA_ENOENT);
  EXPECT_EQ(tessera_pool_destroy(cl, "p2", 64), -TESSERA_EINVAL);
  EXPECT_LT(tessera_pool_destroy(cl, "p2", 0), 0) << "container kv is still there";
  EXPECT_EQ(tessera_pool_destroy(cl, "p2", TESSERA_DESTROY_RECURSIVE), 0) << tessera_last_error();
  EXPECT_EQ(tessera_pool_query(cl, "p2", &p), -TESSERA_ENOENT);

  // A client of one engine has no management service.
  tessera_client* one = nullptr;
  ASSERT_EQ(tessera_connect(h.sys->engine(1).address().c_str(), &one), 0) << tessera_last_error();
  EXPECT_EQ(tessera_pool_list(one, pools, 4, &n), -TESSERA_ENOTSUP);
  tessera_disconnect(one);
  tessera_disconnect(cl);
}

TEST(CApiAdmin, ListingsPageThroughEveryKeyWithAnchors) {
  SystemHarness h("RP_3G1");
  ASSERT_TRUE(h.c);
  tessera_client* cl = connect(h.sys->mgmt().c_str());
  ASSERT_NE(cl, nullptr);
  ASSERT_EQ(tessera_cont_create(cl, "tank", "ec", "oclass=EC_2P1G1,rf=1", nullptr), 0)
      << tessera_last_error();
  for (const char* label : {"c", "ec"}) {
    SCOPED_TRACE(label);
    tessera_cont* co = nullptr;
    ASSERT_EQ(tessera_cont_open(cl, "tank", label, 1, &co), 0) << tessera_last_error();
    uint64_t hi = 0, lo = 0;
    ASSERT_EQ(tessera_cont_oid(co, 0, 1, nullptr, &hi, &lo), 0);
    // 150 dkeys of different lengths, written out of order.
    std::vector<std::string> dkeys;
    for (int i = 0; i < 150; ++i)
      dkeys.push_back(fmt::format("k{}{}", (i * 37) % 150, std::string(i % 5, 'x')));
    for (const auto& k : dkeys) {
      ASSERT_EQ(tessera_cont_update(co, hi, lo, k.c_str(), "a", TESSERA_SINGLE, 0, "v", 1,
                                    TESSERA_COND_NONE, nullptr, nullptr),
                0)
          << tessera_last_error();
    }
    uint64_t snap = 0;
    ASSERT_EQ(tessera_snap_create(cl, "tank", label, nullptr, &snap), 0) << tessera_last_error();
    ASSERT_EQ(tessera_cont_update(co, hi, lo, "later", "a", TESSERA_SINGLE, 0, "v", 1,
                                  TESSERA_COND_NONE, nullptr, nullptr),
              0);
    std::sort(dkeys.begin(), dkeys.end());
    auto list_at = [&](uint64_t epoch) {
      return [&, epoch](tessera_anchor* a, uint32_t* n, size_t* lens, void* buf, size_t len) {
        return tessera_cont_list_dkeys(co, hi, lo, epoch, a, n, lens, buf, len, nullptr);
      };
    };
    // Pages of 7 keys; then a buffer that holds only a few keys, so pages end early.
    int pages = 0;
    EXPECT_EQ(all_keys(7, 4096, list_at(snap), &pages), dkeys) << "at the snapshot";
    EXPECT_GE(pages, 150 / 7);
    std::vector<std::string> now = dkeys;
    now.push_back("later");
    std::sort(now.begin(), now.end());
    EXPECT_EQ(all_keys(64, 20, list_at(0)), now) << "newest, buffer-bound pages";
    EXPECT_EQ(all_keys(1000, 1 << 16, list_at(0), &pages), now);
    EXPECT_EQ(pages, 1);

    // A buffer too small for the first key: -ERANGE and its size.
    tessera_anchor a = TESSERA_ANCHOR_INIT;
    uint32_t n = 4;
    size_t lens[4];
    char tiny[1];
    EXPECT_EQ(tessera_cont_list_dkeys(co, hi, lo, 0, &a, &n, lens, tiny, sizeof tiny, nullptr),
              -TESSERA_ERANGE);
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(lens[0], now.front().size());
    EXPECT_EQ(a.eof, 0u);

    // akeys of one dkey; records of an array with a hole.
    for (const char* ak : {"z", "b", "m"}) {
      ASSERT_EQ(tessera_cont_update(co, hi, lo, "arr", ak, TESSERA_ARRAY, 0, "abc", 3,
                                    TESSERA_COND_NONE, nullptr, nullptr),
                0);
    }
    ASSERT_EQ(tessera_cont_update(co, hi, lo, "arr", "b", TESSERA_ARRAY, 100, "de", 2,
                                  TESSERA_COND_NONE, nullptr, nullptr),
              0);
    auto akeys = [&](tessera_anchor* an, uint32_t* nn, size_t* l, void* b, size_t len) {
      return tessera_cont_list_akeys(co, hi, lo, "arr", 0, an, nn, l, b, len, nullptr);
    };
    EXPECT_EQ(all_keys(2, 64, akeys), (std::vector<std::string>{"b", "m", "z"}));
    std::vector<std::pair<uint64_t, uint64_t>> runs;
    tessera_anchor ra = TESSERA_ANCHOR_INIT;
    while (ra.eof == 0) {
      uint32_t rn = 1;
      uint64_t off = 0, len = 0;
      ASSERT_EQ(tessera_cont_list_recx(co, hi, lo, "arr", "b", 0, &ra, &rn, &off, &len, nullptr), 0)
          << tessera_last_error();
      if (rn == 1) runs.emplace_back(off, len);
      ASSERT_LT(runs.size(), 10u);
    }
    EXPECT_EQ(runs, (std::vector<std::pair<uint64_t, uint64_t>>{{0, 3}, {100, 2}}));

    // Objects: the one above and 20 more, each once, in id order, 3 to a page.
    std::set<std::pair<uint64_t, uint64_t>> want{{hi, lo}};
    for (uint64_t i = 100; i < 120; ++i) {
      uint64_t oh = 0, ol = 0;
      ASSERT_EQ(tessera_cont_oid(co, 1, i, nullptr, &oh, &ol), 0);
      ASSERT_EQ(tessera_cont_update(co, oh, ol, "d", "a", TESSERA_SINGLE, 0, "v", 1,
                                    TESSERA_COND_NONE, nullptr, nullptr),
                0);
      want.insert({oh, ol});
    }
    std::vector<std::pair<uint64_t, uint64_t>> objs;
    tessera_anchor oa = TESSERA_ANCHOR_INIT;
    while (oa.eof == 0 && objs.size() < 100) {
      uint32_t on = 3;
      uint64_t ohs[3], ols[3];
      ASSERT_EQ(tessera_cont_list_objects(co, 0, &oa, &on, ohs, ols, nullptr), 0)
          << tessera_last_error();
      for (uint32_t i = 0; i < on; ++i) objs.emplace_back(ohs[i], ols[i]);
    }
    const std::vector<std::pair<uint64_t, uint64_t>> want_list(want.begin(), want.end());
    EXPECT_EQ(objs, want_list);

    // Through events: the dkeys (4 to a page) and the objects (2 to a page) listed side by
    // side on one queue, each page started when the last one came back.
    {
      tessera_eq* eq = nullptr;
      ASSERT_EQ(tessera_eq_create(&eq), 0);
      tessera_event kev, oev;
      ASSERT_EQ(tessera_event_init(&kev, eq, nullptr), 0);
      ASSERT_EQ(tessera_event_init(&oev, eq, nullptr), 0);
      tessera_anchor ka = TESSERA_ANCHOR_INIT, oa2 = TESSERA_ANCHOR_INIT;
      uint32_t kn = 4, on = 2;
      size_t klens[4];
      char kbuf[256];
      uint64_t ohs[2], ols[2];
      std::vector<std::string> keys;
      std::vector<std::pair<uint64_t, uint64_t>> objs2;
      ASSERT_EQ(tessera_cont_list_dkeys(co, hi, lo, 0, &ka, &kn, klens, kbuf, sizeof kbuf, &kev), 0)
          << tessera_last_error();
      ASSERT_EQ(tessera_cont_list_objects(co, 0, &oa2, &on, ohs, ols, &oev), 0)
          << tessera_last_error();
      for (int rounds = 0; tessera_eq_inflight(eq) > 0 && rounds < 10000; ++rounds) {
        tessera_event* done[2];
        int got = tessera_eq_poll(eq, -1, done, 2);
        ASSERT_GT(got, 0) << tessera_last_error();
        for (int i = 0; i < got; ++i) {
          ASSERT_EQ(done[i]->status, 0) << tessera_event_error(done[i]);
          if (done[i] == &kev) {
            EXPECT_EQ(kev.out_len, kn);
            size_t at = 0;
            for (uint32_t k = 0; k < kn; ++k) {
              keys.emplace_back(kbuf + at, klens[k]);
              at += klens[k];
            }
            if (ka.eof == 0) {
              kn = 4;
              ASSERT_EQ(
                  tessera_cont_list_dkeys(co, hi, lo, 0, &ka, &kn, klens, kbuf, sizeof kbuf, &kev),
                  0);
            }
          } else {
            for (uint32_t k = 0; k < on; ++k) objs2.emplace_back(ohs[k], ols[k]);
            if (oa2.eof == 0) {
              on = 2;
              ASSERT_EQ(tessera_cont_list_objects(co, 0, &oa2, &on, ohs, ols, &oev), 0);
            }
          }
        }
      }
      now.push_back("arr");
      std::sort(now.begin(), now.end());
      EXPECT_EQ(keys, now);
      EXPECT_EQ(objs2, want_list);
      EXPECT_EQ(tessera_event_fini(&kev), 0);
      EXPECT_EQ(tessera_event_fini(&oev), 0);
      EXPECT_EQ(tessera_eq_destroy(eq), 0);
    }

    uint32_t zero = 0;
    tessera_anchor za = TESSERA_ANCHOR_INIT;
    EXPECT_EQ(tessera_cont_list_dkeys(co, hi, lo, 0, &za, &zero, lens, tiny, 1, nullptr),
              -TESSERA_EINVAL);
    EXPECT_EQ(tessera_cont_close(co), 0);
  }
  tessera_disconnect(cl);
}

TEST(CApiAdmin, KeyValueCallsBlockingAndThroughEvents) {
  SystemHarness h("RP_3G1");
  ASSERT_TRUE(h.c);
  tessera_client* cl = connect(h.sys->mgmt().c_str());
  ASSERT_NE(cl, nullptr);
  tessera_cont* co = nullptr;
  ASSERT_EQ(tessera_cont_open(cl, "tank", "c", 1, &co), 0) << tessera_last_error();

  // Nothing stored: no keys, and a get names the missing key.
  auto kv_list = [&](tessera_anchor* a, uint32_t* n, size_t* l, void* b, size_t len) {
    return tessera_kv_list(co, a, n, l, b, len, nullptr);
  };
  EXPECT_TRUE(all_keys(8, 256, kv_list).empty());
  char buf[32];
  size_t got = 0;
  EXPECT_EQ(tessera_kv_get(co, "absent", buf, sizeof buf, &got, nullptr), -TESSERA_ENOENT);
  EXPECT_NE(std::string(tessera_last_error()).find("absent"), std::string::npos)
      << tessera_last_error();

  ASSERT_EQ(tessera_kv_put(co, "alpha", "1", 1, nullptr), 0) << tessera_last_error();
  ASSERT_EQ(tessera_kv_put(co, "beta", "22", 2, nullptr), 0);
  ASSERT_EQ(tessera_kv_get(co, "beta", buf, sizeof buf, &got, nullptr), 0) << tessera_last_error();
  EXPECT_EQ(std::string(buf, got), "22");
  EXPECT_EQ(tessera_kv_get(co, "beta", buf, 1, &got, nullptr), -TESSERA_ERANGE);
  EXPECT_EQ(got, 2u);
  EXPECT_EQ(tessera_kv_put(co, "", "x", 1, nullptr), -TESSERA_EINVAL);
  EXPECT_EQ(tessera_kv_put(co, nullptr, "x", 1, nullptr), -TESSERA_EINVAL);

  // Through events: 40 puts, then 40 gets and a get of a missing key, on one queue.
  tessera_eq* eq = nullptr;
  ASSERT_EQ(tessera_eq_create(&eq), 0);
  constexpr int kKeys = 40;
  std::vector<tessera_event> evs(kKeys + 1);
  std::vector<std::string> keys, vals;
  for (int i = 0; i < kKeys; ++i) {
    keys.push_back(fmt::format("key-{:03}", i));
    vals.push_back(fmt::format("value {}", i * i));
  }
  auto drain = [&] {
    int back = 0;
    while (tessera_eq_inflight(eq) > 0) {
      tessera_event* done[8];
      int k = tessera_eq_poll(eq, -1, done, 8);
      EXPECT_GE(k, 0);
      back += k;
      if (k < 0) break;
    }
    return back;
  };
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_EQ(tessera_event_init(&evs[i], eq, nullptr), 0);
    ASSERT_EQ(tessera_kv_put(co, keys[i].c_str(), vals[i].data(), vals[i].size(), &evs[i]), 0)
        << tessera_last_error();
  }
  ASSERT_EQ(tessera_event_init(&evs[kKeys], eq, nullptr), 0);
  EXPECT_EQ(drain(), kKeys);
  for (int i = 0; i < kKeys; ++i) EXPECT_EQ(evs[i].status, 0) << tessera_event_error(&evs[i]);
  std::vector<std::vector<char>> bufs(kKeys + 1, std::vector<char>(32));
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_EQ(tessera_kv_get(co, keys[i].c_str(), bufs[i].data(), 32, nullptr, &evs[i]), 0);
  }
  ASSERT_EQ(tessera_kv_get(co, "missing", bufs[kKeys].data(), 32, nullptr, &evs[kKeys]), 0);
  EXPECT_EQ(drain(), kKeys + 1);
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_EQ(evs[i].status, 0) << tessera_event_error(&evs[i]);
    EXPECT_EQ(std::string(bufs[i].data(), evs[i].out_len), vals[i]);
  }
  EXPECT_EQ(evs[kKeys].status, -TESSERA_ENOENT);
  EXPECT_NE(std::string(tessera_event_error(&evs[kKeys])).find("missing"), std::string::npos);

  // Remove: the key goes from gets and from the listing.
  ASSERT_EQ(tessera_kv_remove(co, "alpha", &evs[0]), 0);
  EXPECT_EQ(drain(), 1);
  EXPECT_EQ(evs[0].status, 0) << tessera_event_error(&evs[0]);
  EXPECT_EQ(tessera_kv_get(co, "alpha", buf, sizeof buf, &got, nullptr), -TESSERA_ENOENT);
  std::vector<std::string> want = keys;
  want.push_back("beta");
  std::sort(want.begin(), want.end());
  EXPECT_EQ(all_keys(6, 64, kv_list), want);
  for (auto& e : evs) EXPECT_EQ(tessera_event_fini(&e), 0);
  EXPECT_EQ(tessera_eq_destroy(eq), 0);

  // A read-only handle reads and may not write.
  tessera_cont* ro = nullptr;
  ASSERT_EQ(tessera_cont_open(cl, "tank", "c", 0, &ro), 0) << tessera_last_error();
  EXPECT_EQ(tessera_kv_get(ro, "beta", buf, sizeof buf, &got, nullptr), 0) << tessera_last_error();
  EXPECT_EQ(tessera_kv_put(ro, "beta", "x", 1, nullptr), -TESSERA_EPERM);
  EXPECT_EQ(tessera_kv_remove(ro, "beta", nullptr), -TESSERA_EPERM);
  EXPECT_EQ(tessera_cont_close(ro), 0);
  EXPECT_EQ(tessera_cont_close(co), 0);
  tessera_disconnect(cl);
}

// Pages as large as a caller asks: 1,500 keys in one call (more entries than one reply frame of
// an engine carries: the engine cuts its pages to fit, the library asks on), and keys of the
// largest size. Then the key-value calls in transactions.
TEST(CApiAdmin, LargePagesAndKeyValueTransactions) {
  SystemHarness h("RP_3G1");
  ASSERT_TRUE(h.c);
  tessera_client* cl = connect(h.sys->mgmt().c_str());
  ASSERT_NE(cl, nullptr);
  tessera_cont* co = nullptr;
  ASSERT_EQ(tessera_cont_open(cl, "tank", "c", 1, &co), 0) << tessera_last_error();
  auto kv_list = [&](tessera_anchor* a, uint32_t* n, size_t* l, void* b, size_t len) {
    return tessera_kv_list(co, a, n, l, b, len, nullptr);
  };
  std::vector<std::string> want;
  for (int i = 0; i < 1500; ++i) {
    want.push_back(fmt::format("k{:05}", i));
    ASSERT_EQ(tessera_kv_put(co, want.back().c_str(), "v", 1, nullptr), 0) << tessera_last_error();
  }
  int pages = 0;
  EXPECT_EQ(all_keys(2000, 1 << 20, kv_list, &pages), want);
  EXPECT_EQ(pages, 1);
  for (int i = 0; i < 40; ++i) {
    want.push_back(std::string(TESSERA_KEY_MAX - 1, 'z') + static_cast<char>('A' + i));
    ASSERT_EQ(tessera_kv_put(co, want.back().c_str(), "v", 1, nullptr), 0) << tessera_last_error();
  }
  std::sort(want.begin(), want.end());
  EXPECT_EQ(all_keys(2000, 1 << 20, kv_list), want);

  // Transactions: a change is the transaction's own until commit, a removal too.
  tessera_tx* tx = nullptr;
  ASSERT_EQ(tessera_tx_open(co, 0, &tx), 0) << tessera_last_error();
  ASSERT_EQ(tessera_tx_kv_put(tx, "t", "one", 3), 0) << tessera_last_error();
  char buf[16];
  size_t got = 0;
  ASSERT_EQ(tessera_tx_kv_get(tx, "t", buf, sizeof buf, &got), 0) << tessera_last_error();
  EXPECT_EQ(std::string(buf, got), "one");
  EXPECT_EQ(tessera_kv_get(co, "t", buf, sizeof buf, &got, nullptr), -TESSERA_ENOENT);
  EXPECT_EQ(tessera_tx_kv_get(tx, "nope", buf, sizeof buf, &got), -TESSERA_ENOENT);
  EXPECT_NE(std::string(tessera_last_error()).find("nope"), std::string::npos);
  EXPECT_EQ(tessera_tx_kv_put(tx, "", "x", 1), -TESSERA_EINVAL);
  EXPECT_EQ(tessera_tx_kv_get(tx, "t", buf, 1, &got), -TESSERA_ERANGE);
  EXPECT_EQ(got, 3u);
  ASSERT_EQ(tessera_tx_commit(tx, nullptr), 0) << tessera_last_error();
  tessera_tx_close(tx);
  ASSERT_EQ(tessera_kv_get(co, "t", buf, sizeof buf, &got, nullptr), 0);
  EXPECT_EQ(std::string(buf, got), "one");
  ASSERT_EQ(tessera_tx_open(co, 0, &tx), 0);
  ASSERT_EQ(tessera_tx_kv_remove(tx, "t"), 0) << tessera_last_error();
  EXPECT_EQ(tessera_tx_kv_get(tx, "t", buf, sizeof buf, &got), -TESSERA_ENOENT);
  ASSERT_EQ(tessera_tx_commit(tx, nullptr), 0) << tessera_last_error();
  tessera_tx_close(tx);
  EXPECT_EQ(tessera_kv_get(co, "t", buf, sizeof buf, &got, nullptr), -TESSERA_ENOENT);
  EXPECT_EQ(tessera_cont_close(co), 0);
  tessera_disconnect(cl);
}

TEST(CApiAdmin, NoSpaceAndUnavailableAreClearErrors) {
  SystemHarness h("RP_3G1");
  ASSERT_TRUE(h.c);
  tessera_client* cl = connect(h.sys->mgmt().c_str());
  ASSERT_NE(cl, nullptr);

  // A small pool fills: the update that does not fit is refused, the ones before read back.
  ASSERT_EQ(tessera_pool_create(cl, "small", 64ull << 20, nullptr), 0) << tessera_last_error();
  ASSERT_EQ(tessera_cont_create(cl, "small", "c", "oclass=RP_2G1,rf=1", nullptr), 0)
      << tessera_last_error();
  tessera_cont* co = nullptr;
  ASSERT_EQ(tessera_cont_open(cl, "small", "c", 1, &co), 0) << tessera_last_error();
  uint64_t hi = 0, lo = 0;
  ASSERT_EQ(tessera_cont_oid(co, 0, 1, nullptr, &hi, &lo), 0);
  const std::string chunk(1 << 20, 'z');
  int rc = 0, written = 0;
  for (; written < 200; ++written) {
    rc = tessera_cont_update(co, hi, lo, "d", "a", TESSERA_ARRAY, uint64_t(written) * chunk.size(),
                             chunk.data(), chunk.size(), TESSERA_COND_NONE, nullptr, nullptr);
    if (rc != 0) break;
  }
  EXPECT_EQ(rc, -TESSERA_ENOSPC) << tessera_last_error();
  EXPECT_GT(written, 0);
  std::vector<char> back(chunk.size());
  size_t got = 0;
  ASSERT_EQ(tessera_cont_fetch(co, hi, lo, "d", "a", TESSERA_ARRAY, 0, chunk.size(), 0, back.data(),
                               back.size(), &got, nullptr),
            0)
      << tessera_last_error();
  EXPECT_EQ(std::string(back.data(), got), chunk);
  EXPECT_EQ(tessera_cont_close(co), 0);

  // Every engine of the container gone: its writes are refused as unavailable.
  ASSERT_EQ(tessera_cont_open(cl, "tank", "c", 1, &co), 0) << tessera_last_error();
  ASSERT_EQ(tessera_cont_oid(co, 0, 2, nullptr, &hi, &lo), 0);
  ASSERT_EQ(tessera_cont_update(co, hi, lo, "d", "a", TESSERA_SINGLE, 0, "v", 1, TESSERA_COND_NONE,
                                nullptr, nullptr),
            0);
  for (uint32_t r = 1; r <= 3; ++r) h.sys->engine(r).kill9();
  rc = tessera_cont_update(co, hi, lo, "d", "a", TESSERA_SINGLE, 0, "w", 1, TESSERA_COND_NONE,
                           nullptr, nullptr);
  EXPECT_EQ(rc, -TESSERA_EUNAVAIL) << tessera_last_error();
  EXPECT_EQ(tessera_cont_close(co), 0);
  tessera_disconnect(cl);
}

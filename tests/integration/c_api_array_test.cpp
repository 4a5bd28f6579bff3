// The C API's arrays of fixed-size records (client/tessera.h, docs/API.md "Objects"): writes,
// reads and punches counted in records, holes, reads at an epoch, extents listed in records,
// calls through events, and the errors (record size 0 or changed, too small a buffer, erasure
// coding), against a real system of four engines.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "client/tessera.h"
#include "tests/integration/dtx_harness.hpp"

using namespace tessera;
using namespace tessera::testing;

namespace {

constexpr uint32_t kRec = 8;

// Records holding their own index (0 for a hole), as bytes.
std::vector<uint8_t> records(uint64_t first, uint64_t n) {
  std::vector<uint8_t> out(n * kRec);
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t v = first + i;
    std::memcpy(out.data() + i * kRec, &v, kRec);
  }
  return out;
}

// The array's records [first, first + n) as the indices they hold.
std::vector<uint64_t> read_back(tessera_cont* co, uint64_t hi, uint64_t lo, uint64_t first,
                                uint64_t n, uint64_t epoch = 0) {
  std::vector<uint8_t> buf(n == 0 ? 4096 : n * kRec);
  size_t got = 0;
  int rc = tessera_array_read(co, hi, lo, "d", "a", kRec, first, n, epoch, buf.data(), buf.size(),
                              &got, nullptr);
  EXPECT_EQ(rc, 0) << tessera_last_error();
  std::vector<uint64_t> out(got / kRec);
  std::memcpy(out.data(), buf.data(), out.size() * kRec);
  return out;
}

std::vector<uint64_t> indices(uint64_t first, uint64_t n) {
  std::vector<uint64_t> out;
  for (uint64_t i = 0; i < n; ++i) out.push_back(first + i);
  return out;
}

}  // namespace

TEST(CApiArray, RecordsWriteReadPunchAndListByRecord) {
  SystemHarness h("RP_3G1");
  ASSERT_TRUE(h.c);
  tessera_client* cl = nullptr;
  ASSERT_EQ(tessera_connect_system(h.sys->mgmt().c_str(), &cl), 0) << tessera_last_error();
  tessera_cont* co = nullptr;
  ASSERT_EQ(tessera_cont_open(cl, "tank", "c", 1, &co), 0) << tessera_last_error();
  uint64_t hi = 0, lo = 0;
  ASSERT_EQ(tessera_cont_oid(co, 0, 42, nullptr, &hi, &lo), 0);

  // Records 0-9 and 20-24: 10-19 read as zeros; nrec 0 reads up to the highest record.
  auto a = records(0, 10);
  uint64_t e1 = 0;
  ASSERT_EQ(tessera_array_write(co, hi, lo, "d", "a", kRec, 0, a.data(), 10, &e1, nullptr), 0)
      << tessera_last_error();
  EXPECT_GT(e1, 0u);
  EXPECT_EQ(read_back(co, hi, lo, 0, 10), indices(0, 10));
  auto b = records(20, 5);
  ASSERT_EQ(tessera_array_write(co, hi, lo, "d", "a", kRec, 20, b.data(), 5, nullptr, nullptr), 0)
      << tessera_last_error();
  std::vector<uint64_t> want = indices(0, 10);
  want.resize(20, 0);
  for (uint64_t i = 20; i < 25; ++i) want.push_back(i);
  EXPECT_EQ(read_back(co, hi, lo, 0, 25), want);
  EXPECT_EQ(read_back(co, hi, lo, 0, 0), want) << "nrec 0: up to the highest record";
  EXPECT_EQ(read_back(co, hi, lo, 0, 25, e1), [] {
    auto v = indices(0, 10);
    v.resize(25, 0);
    return v;
  }()) << "at the first write's epoch";

  // A range punch: records 2-4 read as zeros again.
  ASSERT_EQ(tessera_array_punch(co, hi, lo, "d", "a", kRec, 2, 3, nullptr), 0)
      << tessera_last_error();
  for (uint64_t i = 2; i < 5; ++i) want[i] = 0;
  EXPECT_EQ(read_back(co, hi, lo, 0, 25), want);

  // Extents are listed in records.
  tessera_anchor anchor = TESSERA_ANCHOR_INIT;
  uint32_t n = 8;
  uint64_t offs[8], lens[8];
  ASSERT_EQ(tessera_cont_list_recx(co, hi, lo, "d", "a", 0, &anchor, &n, offs, lens, nullptr), 0)
      << tessera_last_error();
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  for (uint32_t i = 0; i < n; ++i) runs.emplace_back(offs[i], lens[i]);
  EXPECT_EQ(runs, (std::vector<std::pair<uint64_t, uint64_t>>{{0, 2}, {5, 5}, {20, 5}}));

  // Errors: a record size of 0 or another than the first write's, nothing to punch, a buffer
  // too small (the bytes needed in *out_len).
  EXPECT_EQ(tessera_array_write(co, hi, lo, "d", "a", 0, 0, a.data(), 1, nullptr, nullptr),
            -TESSERA_EINVAL);
  EXPECT_EQ(tessera_array_write(co, hi, lo, "d", "a", 4, 0, a.data(), 2, nullptr, nullptr),
            -TESSERA_EINVAL);
  EXPECT_NE(std::string(tessera_last_error()), "");
  EXPECT_EQ(tessera_array_punch(co, hi, lo, "d", "a", kRec, 0, 0, nullptr), -TESSERA_EINVAL);
  EXPECT_EQ(tessera_array_write(co, hi, lo, "d", "a", kRec, 0, nullptr, 1, nullptr, nullptr),
            -TESSERA_EINVAL);
  uint8_t small[16];
  size_t got = 0;
  EXPECT_EQ(
      tessera_array_read(co, hi, lo, "d", "a", kRec, 0, 4, 0, small, sizeof small, &got, nullptr),
      -TESSERA_ERANGE);
  EXPECT_EQ(got, 4 * kRec);

  // Through events: 64 writes of one record each in flight on one queue, then 64 reads.
  tessera_eq* eq = nullptr;
  ASSERT_EQ(tessera_eq_create(&eq), 0);
  std::vector<tessera_event> evs(64);
  for (auto& e : evs) ASSERT_EQ(tessera_event_init(&e, eq, nullptr), 0);
  auto drain = [&] {
    int back = 0;
    while (tessera_eq_inflight(eq) > 0) {
      tessera_event* done[16];
      int k = tessera_eq_poll(eq, 60'000'000, done, 16);
      EXPECT_GT(k, 0) << "no event came back within a minute";
      if (k <= 0) break;
      back += k;
    }
    return back;
  };
  for (uint64_t i = 0; i < 64; ++i) {
    auto r = records(1000 + i, 1);
    ASSERT_EQ(
        tessera_array_write(co, hi, lo, "d", "b", kRec, 100 + i, r.data(), 1, nullptr, &evs[i]), 0)
        << tessera_last_error();
  }
  EXPECT_EQ(drain(), 64);
  std::vector<uint64_t> vals(64);
  for (uint64_t i = 0; i < 64; ++i) {
    EXPECT_EQ(evs[i].status, 0) << tessera_event_error(&evs[i]);
    EXPECT_GT(evs[i].epoch, 0u);
    ASSERT_EQ(tessera_array_read(co, hi, lo, "d", "b", kRec, 100 + i, 1, 0, &vals[i], kRec, nullptr,
                                 &evs[i]),
              0);
  }
  EXPECT_EQ(drain(), 64);
  for (uint64_t i = 0; i < 64; ++i) {
    EXPECT_EQ(evs[i].status, 0) << tessera_event_error(&evs[i]);
    EXPECT_EQ(evs[i].out_len, size_t{kRec});
    EXPECT_EQ(vals[i], 1000 + i);
  }
  ASSERT_EQ(tessera_array_punch(co, hi, lo, "d", "b", kRec, 100, 64, &evs[0]), 0);
  EXPECT_EQ(drain(), 1);
  EXPECT_EQ(evs[0].status, 0) << tessera_event_error(&evs[0]);
  for (auto& e : evs) EXPECT_EQ(tessera_event_fini(&e), 0);
  EXPECT_EQ(tessera_eq_destroy(eq), 0);
  std::vector<uint64_t> zeros(64, 0);
  std::vector<uint8_t> buf(64 * kRec);
  ASSERT_EQ(tessera_array_read(co, hi, lo, "d", "b", kRec, 100, 64, 0, buf.data(), buf.size(), &got,
                               nullptr),
            0);
  EXPECT_EQ(std::memcmp(buf.data(), zeros.data(), buf.size()), 0) << "punched records read zeros";

  // Erasure-coded objects keep one-byte records only.
  ASSERT_EQ(tessera_cont_create(cl, "tank", "ec", "oclass=EC_2P1G1,rf=1", nullptr), 0)
      << tessera_last_error();
  tessera_cont* ec = nullptr;
  ASSERT_EQ(tessera_cont_open(cl, "tank", "ec", 1, &ec), 0) << tessera_last_error();
  ASSERT_EQ(tessera_cont_oid(ec, 0, 1, nullptr, &hi, &lo), 0);
  EXPECT_EQ(tessera_array_write(ec, hi, lo, "d", "a", kRec, 0, a.data(), 2, nullptr, nullptr),
            -TESSERA_ENOTSUP);
  ASSERT_EQ(tessera_array_write(ec, hi, lo, "d", "a", 1, 3, "abc", 3, nullptr, nullptr), 0)
      << tessera_last_error();
  char text[8];
  ASSERT_EQ(tessera_array_read(ec, hi, lo, "d", "a", 1, 0, 6, 0, text, sizeof text, &got, nullptr),
            0)
      << tessera_last_error();
  EXPECT_EQ(std::string(text, got), std::string("\0\0\0abc", 6));
  EXPECT_EQ(tessera_cont_close(ec), 0);
  EXPECT_EQ(tessera_cont_close(co), 0);
  tessera_disconnect(cl);
}

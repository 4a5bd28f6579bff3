// The erasure codec against random data: every combination of up to p lost cells (data and
// parity alike) comes back byte-exact; more than p lost is refused. And the stripe geometry.
#include <gtest/gtest.h>

#include <random>

#include "placement/erasure.hpp"

using namespace tessera;
using namespace tessera::placement;

namespace {

struct Code {
  uint32_t k, p;
};

// Every subset of {0..n-1} of size 1..max, as bit masks.
std::vector<uint32_t> losses(uint32_t n, uint32_t max) {
  std::vector<uint32_t> out;
  for (uint32_t m = 1; m < (1u << n); ++m) {
    if (static_cast<uint32_t>(__builtin_popcount(m)) <= max) out.push_back(m);
  }
  return out;
}

class ErasureTest : public ::testing::TestWithParam<Code> {};

}  // namespace

TEST_P(ErasureTest, EveryCombinationOfUpToPLostCellsIsRebuilt) {
  const auto [k, p] = GetParam();
  const uint32_t n = k + p;
  const auto& code = erasure_code(k, p);
  std::mt19937_64 rng(k * 100 + p);
  size_t combos = 0;
  for (size_t len : {size_t{1}, size_t{4095}, size_t{32768}}) {
    std::vector<std::vector<uint8_t>> cells(n, std::vector<uint8_t>(len));
    for (uint32_t i = 0; i < k; ++i) {
      for (auto& b : cells[i]) b = static_cast<uint8_t>(rng());
    }
    std::vector<const uint8_t*> data;
    std::vector<uint8_t*> parity;
    for (uint32_t i = 0; i < k; ++i) data.push_back(cells[i].data());
    for (uint32_t q = 0; q < p; ++q) parity.push_back(cells[k + q].data());
    code.encode(len, data, parity);
    // Parity is not trivially zero or a copy of the data.
    if (len > 1) {
      for (uint32_t q = 0; q < p; ++q) {
        EXPECT_NE(cells[k + q], std::vector<uint8_t>(len, 0));
        EXPECT_NE(cells[k + q], cells[0]);
      }
    }
    for (uint32_t mask : losses(n, p)) {
      auto work = cells;
      std::vector<uint8_t*> ptrs;
      bool present[64];
      for (uint32_t i = 0; i < n; ++i) {
        present[i] = (mask & (1u << i)) == 0;
        if (!present[i]) std::fill(work[i].begin(), work[i].end(), uint8_t{0xA5});
        ptrs.push_back(work[i].data());
      }
      ASSERT_TRUE(code.reconstruct(len, ptrs, std::span<const bool>(present, n)).is_ok());
      for (uint32_t i = 0; i < n; ++i) {
        ASSERT_EQ(work[i], cells[i])
            << k << "+" << p << " lost mask " << mask << " cell " << i << " len " << len;
      }
      ++combos;
    }
    // One more loss than the code tolerates is refused, never answered with wrong bytes.
    std::vector<uint8_t*> ptrs;
    bool present[64];
    for (uint32_t i = 0; i < n; ++i) {
      present[i] = i > p;  // cells 0..p lost
      ptrs.push_back(cells[i].data());
    }
    auto st = code.reconstruct(len, ptrs, std::span<const bool>(present, n));
    EXPECT_EQ(st.code(), Errc::invalid_argument) << st.to_string();
  }
  std::printf("%u+%u: %zu loss combinations rebuilt byte-exact\n", k, p, combos);
}

INSTANTIATE_TEST_SUITE_P(Codes, ErasureTest,
                         ::testing::Values(Code{2, 1}, Code{4, 2}, Code{8, 2}, Code{16, 2}),
                         [](const auto& info) {
                           return std::to_string(info.param.k) + "P" + std::to_string(info.param.p);
                         });

TEST(EcGeometry, PositionsArePermutationsAndLocalOffsetsRoundTrip) {
  for (std::string dkey : {"a", "b", "dkey-17", ""}) {
    auto g = ec_geometry(4, 2, 4096, dkey);
    std::vector<bool> seen(6, false);
    for (uint32_t j = 0; j < 4; ++j) {
      EXPECT_EQ(g.cell_at(g.data_pos(j)), j);
      seen[g.data_pos(j)] = true;
    }
    for (uint32_t q = 0; q < 2; ++q) {
      EXPECT_EQ(g.cell_at(g.parity_pos(q)), 4 + q);
      seen[g.parity_pos(q)] = true;
    }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), true), 6);
  }
  // Parity rotates: over many dkeys every position holds parity sometimes.
  std::vector<int> parity_at(6, 0);
  for (int i = 0; i < 600; ++i)
    parity_at[ec_geometry(4, 2, 4096, std::to_string(i)).parity_pos(0)]++;
  for (int c : parity_at) EXPECT_GT(c, 50);

  auto g = ec_geometry(4, 2, 100, "x");  // stripe 400
  for (uint32_t j = 0; j < 4; ++j) {
    for (uint64_t l = 0; l < 1000; ++l) {
      uint64_t x = g.logical(j, l);
      EXPECT_EQ((x % 400) / 100, j);
      EXPECT_EQ(g.local_floor(j, x), l);
      EXPECT_EQ(g.local_floor(j, x + 1), l + 1);
    }
  }
  // Cell 1's share of logical [150, 950): stripe 0 bytes 150..199 (local 50..99), stripe 1
  // bytes 500..599 (local 100..199), stripe 2 bytes 900..949 (local 200..249).
  EXPECT_EQ(g.local_floor(1, 150), 50u);
  EXPECT_EQ(g.local_floor(1, 950), 250u);
  EXPECT_EQ(g.local_floor(0, 150), 100u);  // cell 0 starts after 150 only in stripe 1
  EXPECT_TRUE(is_ec_copy_akey(ec_copy_akey("value")));
  EXPECT_FALSE(is_ec_copy_akey("value"));
  // Cells are keyed by position: two positions' cells never share a key on one target.
  EXPECT_NE(ec_cell_akey("value", 0), ec_cell_akey("value", 1));
  auto c = parse_ec_cell_akey(ec_cell_akey("va:lue", 17));
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->first, "va:lue");
  EXPECT_EQ(c->second, 17u);
  EXPECT_FALSE(parse_ec_cell_akey("value").has_value());
  EXPECT_FALSE(parse_ec_cell_akey(std::string("\0ec-cell:x:a", 12)).has_value());
  EXPECT_TRUE(is_ec_reserved_akey(ec_cell_akey("a", 3)));
  EXPECT_TRUE(is_ec_reserved_akey(ec_copy_akey("a")));
  EXPECT_FALSE(is_ec_reserved_akey("a"));
  EXPECT_EQ(ec_user_akey(ec_cell_akey("a", 3)), "a");
  EXPECT_EQ(ec_user_akey(ec_copy_akey("b")), "b");
  EXPECT_EQ(ec_user_akey("c"), "c");
}

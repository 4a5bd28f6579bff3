#include "placement/erasure.hpp"

#include <fmt/format.h>
#include <isa-l/erasure_code.h>

#include <map>
#include <memory>

#include "core/checksum.hpp"
#include "placement/layout.hpp"

namespace tessera::placement {

ErasureCode::ErasureCode(uint32_t k, uint32_t p)
    : k_(k), p_(p), matrix_(size_t{k + p} * k), tables_(size_t{32} * k * std::max<uint32_t>(p, 1)) {
  gf_gen_cauchy1_matrix(matrix_.data(), static_cast<int>(k + p), static_cast<int>(k));
  if (p > 0) {
    ec_init_tables(static_cast<int>(k), static_cast<int>(p), &matrix_[size_t{k} * k],
                   tables_.data());
  }
}

void ErasureCode::encode(size_t len, std::span<const uint8_t* const> data,
                         std::span<uint8_t* const> parity) const {
  if (p_ == 0 || len == 0) return;
  // ISA-L takes non-const source pointers; it only reads them.
  std::vector<uint8_t*> src(k_);
  for (uint32_t i = 0; i < k_; ++i) src[i] = const_cast<uint8_t*>(data[i]);
  std::vector<uint8_t*> dst(parity.begin(), parity.end());
  ec_encode_data(static_cast<int>(len), static_cast<int>(k_), static_cast<int>(p_),
                 const_cast<uint8_t*>(tables_.data()), src.data(), dst.data());
}

Status ErasureCode::reconstruct(size_t len, std::span<uint8_t* const> cells,
                                std::span<const bool> present) const {
  const uint32_t n = k_ + p_;
  std::vector<uint32_t> survivors, missing;
  for (uint32_t i = 0; i < n; ++i) {
    if (present[i]) {
      if (survivors.size() < k_) survivors.push_back(i);
    } else {
      missing.push_back(i);
    }
  }
  if (missing.empty()) return Status();
  if (survivors.size() < k_) {
    return Status(
        Errc::invalid_argument,
        fmt::format("{} of {} cells are missing; {}+{} erasure coding rebuilds at most {}",
                    missing.size(), n, k_, p_, p_));
  }
  if (len == 0) return Status();
  // Rows of the encoding matrix for the survivors, inverted: multiplying it by the survivors
  // gives the data cells; any cell is then its encoding row times the data.
  std::vector<uint8_t> sub(size_t{k_} * k_), inv(size_t{k_} * k_);
  for (uint32_t r = 0; r < k_; ++r) {
    for (uint32_t c = 0; c < k_; ++c) sub[r * k_ + c] = matrix_[size_t{survivors[r]} * k_ + c];
  }
  if (gf_invert_matrix(sub.data(), inv.data(), static_cast<int>(k_)) != 0) {
    return Status(Errc::internal, "erasure code: survivor matrix is not invertible");
  }
  std::vector<uint8_t> rows(missing.size() * k_);
  for (size_t m = 0; m < missing.size(); ++m) {
    const uint8_t* enc = &matrix_[size_t{missing[m]} * k_];
    for (uint32_t c = 0; c < k_; ++c) {
      uint8_t v = 0;
      for (uint32_t j = 0; j < k_; ++j) v ^= gf_mul(enc[j], inv[j * k_ + c]);
      rows[m * k_ + c] = v;
    }
  }
  std::vector<uint8_t> tables(size_t{32} * k_ * missing.size());
  ec_init_tables(static_cast<int>(k_), static_cast<int>(missing.size()), rows.data(),
                 tables.data());
  std::vector<uint8_t*> src(k_), dst(missing.size());
  for (uint32_t r = 0; r < k_; ++r) src[r] = cells[survivors[r]];
  for (size_t m = 0; m < missing.size(); ++m) dst[m] = cells[missing[m]];
  ec_encode_data(static_cast<int>(len), static_cast<int>(k_), static_cast<int>(missing.size()),
                 tables.data(), src.data(), dst.data());
  return Status();
}

const ErasureCode& erasure_code(uint32_t k, uint32_t p) {
  thread_local std::map<std::pair<uint32_t, uint32_t>, std::unique_ptr<ErasureCode>> codes;
  auto& c = codes[{k, p}];
  if (!c) c = std::make_unique<ErasureCode>(k, p);
  return *c;
}

uint64_t EcGeometry::local_floor(uint32_t j, uint64_t x) const {
  const uint64_t s = x / stripe(), r = x % stripe();
  if (r < j * cell) return s * cell;
  if (r < (j + 1) * cell) return s * cell + (r - j * cell);
  return (s + 1) * cell;
}

EcGeometry ec_geometry(uint32_t k, uint32_t p, uint64_t cell, std::string_view dkey) {
  EcGeometry g;
  g.k = k;
  g.p = p;
  g.cell = cell;
  // The high half of the hash: dkey_group uses the whole hash modulo the group count.
  g.rot = static_cast<uint32_t>((hash_bytes(dkey) >> 32) % (k + p));
  return g;
}

namespace {
constexpr std::string_view kCopyPrefix("\0ec-copy:", 9);
constexpr std::string_view kCellPrefix("\0ec-cell:", 9);
constexpr std::string_view kSumPrefix("\0ec-sums:", 9);

void put_le32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t get_le32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{p[i]} << (8 * i);
  return v;
}
}  // namespace

std::string ec_sum_akey(std::string_view akey) {
  std::string s(kSumPrefix);
  s.append(akey);
  return s;
}

bool is_ec_sum_akey(std::string_view akey) {
  return akey.substr(0, kSumPrefix.size()) == kSumPrefix;
}

void ec_stripe_sums(uint64_t cell, std::span<const uint8_t* const> data, uint8_t* out) {
  for (size_t j = 0; j < data.size(); ++j) put_le32(out + 4 * j, crc32c(data[j], cell));
}

int ec_check_sums(uint64_t cell, std::span<const uint8_t* const> data, const uint8_t* sums) {
  for (size_t j = 0; j < data.size(); ++j) {
    if (crc32c(data[j], cell) != get_le32(sums + 4 * j)) return static_cast<int>(j);
  }
  return -1;
}

std::string ec_copy_akey(std::string_view akey) {
  std::string s(kCopyPrefix);
  s.append(akey);
  return s;
}

bool is_ec_copy_akey(std::string_view akey) {
  return akey.substr(0, kCopyPrefix.size()) == kCopyPrefix;
}

std::string ec_cell_akey(std::string_view akey, uint32_t pos) {
  std::string s(kCellPrefix);
  s.append(std::to_string(pos));
  s.push_back(':');
  s.append(akey);
  return s;
}

std::optional<std::pair<std::string, uint32_t>> parse_ec_cell_akey(std::string_view akey) {
  if (akey.substr(0, kCellPrefix.size()) != kCellPrefix) return std::nullopt;
  akey.remove_prefix(kCellPrefix.size());
  uint32_t pos = 0;
  size_t digits = 0;
  while (digits < akey.size() && digits < 4 && akey[digits] >= '0' && akey[digits] <= '9') {
    pos = pos * 10 + static_cast<uint32_t>(akey[digits] - '0');
    ++digits;
  }
  if (digits == 0 || digits >= akey.size() || akey[digits] != ':') return std::nullopt;
  return std::pair{std::string(akey.substr(digits + 1)), pos};
}

bool is_ec_reserved_akey(std::string_view akey) {
  return is_ec_copy_akey(akey) || is_ec_sum_akey(akey) ||
         akey.substr(0, kCellPrefix.size()) == kCellPrefix;
}

std::string ec_user_akey(std::string_view akey) {
  if (is_ec_copy_akey(akey)) return std::string(akey.substr(kCopyPrefix.size()));
  if (is_ec_sum_akey(akey)) return std::string(akey.substr(kSumPrefix.size()));
  if (auto c = parse_ec_cell_akey(akey)) return c->first;
  return std::string(akey);
}

}  // namespace tessera::placement

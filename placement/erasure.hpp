// Erasure coding: the Reed-Solomon codec (ISA-L, Cauchy matrices) and the stripe geometry of
// an erasure-coded object's group. The scheme (full stripes encoded by the client, partial
// stripes kept as full copies, degraded reads) is described in docs/ERASURE_CODING.md.
#pragma once

#include <optional>
#include <utility>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.hpp"

namespace tessera::placement {

// k data + p parity cells of `len` bytes each. Any k of the k + p cells give back the others.
class ErasureCode {
 public:
  ErasureCode(uint32_t k, uint32_t p);

  uint32_t k() const { return k_; }
  uint32_t p() const { return p_; }

  // Computes the p parity cells from the k data cells.
  void encode(size_t len, std::span<const uint8_t* const> data,
              std::span<uint8_t* const> parity) const;

  // cells: k + p buffers of `len` bytes (data first, then parity); present[i]: cell i holds its
  // bytes. Fills every cell that is not present. invalid_argument when fewer than k are present.
  Status reconstruct(size_t len, std::span<uint8_t* const> cells,
                     std::span<const bool> present) const;

 private:
  uint32_t k_, p_;
  std::vector<uint8_t> matrix_;  // (k + p) x k: identity on top, Cauchy rows below
  std::vector<uint8_t> tables_;  // ISA-L expanded tables of the parity rows
};

// One code per (k, p), built on first use (thread-local: no lock on the data path).
const ErasureCode& erasure_code(uint32_t k, uint32_t p);

// Where the cells of one dkey's stripes live inside its group of k + p positions. Parity
// rotates per dkey: data cell j sits at position (rot + j) % n, parity q at (rot + k + q) % n.
// Logical byte x of an array lies in stripe x / (k * cell), cell (x % stripe) / cell; a data
// position stores its cells of consecutive stripes back to back ("local" offsets), parity
// positions store the parity cells the same way.
struct EcGeometry {
  uint32_t k = 1;
  uint32_t p = 0;
  uint64_t cell = 128 * 1024;
  uint32_t rot = 0;

  uint32_t n() const { return k + p; }
  uint64_t stripe() const { return uint64_t{k} * cell; }
  uint32_t data_pos(uint32_t j) const { return (rot + j) % n(); }
  uint32_t parity_pos(uint32_t q) const { return (rot + k + q) % n(); }
  // The positions that keep a single value whole: the first data position, then the parity.
  std::vector<uint32_t> single_positions() const {
    std::vector<uint32_t> out{data_pos(0)};
    for (uint32_t q = 0; q < p; ++q) out.push_back(parity_pos(q));
    return out;
  }
  // The cell index (0..k-1 data, k..k+p-1 parity) stored at a group position.
  uint32_t cell_at(uint32_t pos) const { return (pos + n() - rot) % n(); }
  // First local offset of data cell j at or after logical offset x (monotone in x): the local
  // range of cell j inside logical [a, b) is [local_floor(j, a), local_floor(j, b)).
  uint64_t local_floor(uint32_t j, uint64_t x) const;
  // The logical offset of local offset `l` of data cell j.
  uint64_t logical(uint32_t j, uint64_t l) const {
    return (l / cell) * stripe() + j * cell + l % cell;
  }
};

EcGeometry ec_geometry(uint32_t k, uint32_t p, uint64_t cell, std::string_view dkey);

// Partial-stripe writes are kept, until re-encoded, as full copies under this akey (the user's
// akey with a reserved prefix that user keys cannot start with).
std::string ec_copy_akey(std::string_view akey);
bool is_ec_copy_akey(std::string_view akey);

// A position's cells of an array akey are stored under this akey, qualified by the position: a
// target can hold cells of two positions of one dkey (a former holder of one position that
// becomes the home of another when the map moves), and cells of one stripe share its epoch and
// local offsets, so under one key they would be taken for each other.
std::string ec_cell_akey(std::string_view akey, uint32_t pos);
// The user's akey and the position of a cell akey; nullopt for any other akey.
std::optional<std::pair<std::string, uint32_t>> parse_ec_cell_akey(std::string_view akey);
// The checksum record of an array akey's full stripes, kept whole on every position of the
// group: for stripe s, at offset s * ec_sum_size(k), the crc32c of each of its k data cells
// (4 bytes each, little-endian), written by the update that wrote the stripe, at its epoch.
// A cell rebuilt from others is checked against it (end to end: the writer computed it from
// the bytes it was given), so a stripe whose cells and parity disagree is never answered.
std::string ec_sum_akey(std::string_view akey);
bool is_ec_sum_akey(std::string_view akey);
constexpr uint64_t ec_sum_size(uint32_t k) { return uint64_t{k} * 4; }
// Writes one stripe's record (ec_sum_size(k) bytes at `out`) from its k data cells.
void ec_stripe_sums(uint64_t cell, std::span<const uint8_t* const> data, uint8_t* out);
// The first data cell that does not match a stripe's record, or -1 when all do.
int ec_check_sums(uint64_t cell, std::span<const uint8_t* const> data, const uint8_t* sums);
// Any akey erasure coding reserves (copies, cells, sums): user keys may not start like these.
bool is_ec_reserved_akey(std::string_view akey);
// The user's akey of a reserved one (itself for any other).
std::string ec_user_akey(std::string_view akey);

}  // namespace tessera::placement

// Pool maps, object classes and layouts: where every shard of an object lives.
//
// A layout is a pure function of (OID, object class, pool map). The pool map is a fault-domain
// tree, host -> engine -> target, kept as the list of the pool's engines in the order they
// joined the pool (each engine names its host). No table of objects exists anywhere: clients
// and engines compute the same layout from the same map. The design note is placement/README.md.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/object.hpp"
#include "core/status.hpp"

namespace tessera::placement {

// Target states of a pool map (DAOS vocabulary). A target in the layout set keeps its place in
// the hash tree whatever its state, so a state change moves only the shards that lived on it.
enum class TargetState : uint8_t {
  up_in = 0,     // healthy, serving, part of the layout
  up = 1,        // coming back (reintegration/extension in progress)
  down = 2,      // failed; its shards are served by their replacements
  down_out = 3,  // failed and excluded for good (after rebuild)
  drain = 4,     // healthy, data being moved off
  new_ = 5,      // added to the map but not yet part of the layout
};
std::string_view state_name(TargetState s);
std::optional<TargetState> parse_state(std::string_view s);
// Holds its positions of the layout and takes writes: up-in, or up (being filled by rebuild).
// A draining target gives its positions to replacements (it still serves them until rebuild
// completes, see Position::prev).
bool is_available(TargetState s);
// Keeps serving the data it holds: up-in or draining.
bool is_serving(TargetState s);
// Counts in the hash tree (everything but `new`).
bool in_layout(TargetState s);

struct MapTarget {
  uint32_t index = 0;
  TargetState state = TargetState::up_in;
};

struct MapEngine {
  uint32_t rank = 0;
  std::string host;  // the fault domain above the engine
  std::vector<MapTarget> targets;
};

struct PoolMap {
  uint32_t version = 1;
  std::vector<MapEngine> engines;  // in the order the engines joined the pool
  // The engines of the last map whose layouts hold complete data, while this one moves data
  // (empty: this map is settled). A state change sets it (if empty); the rebuild that fills
  // the new homes clears it.
  std::vector<MapEngine> settled;
  bool moving() const { return !settled.empty(); }
  PoolMap settled_map() const;  // the settled map itself (this one when not moving)

  const MapEngine* engine(uint32_t rank) const;
  MapEngine* engine(uint32_t rank);
  std::optional<TargetState> state(uint32_t rank, uint32_t target) const;
  size_t layout_targets() const;  // targets that count in the hash tree
  size_t layout_engines() const;  // engines with at least one such target
  size_t layout_hosts() const;
};

// ---- object classes -------------------------------------------------------------------------

enum class Redundancy : uint8_t { none, replication, erasure };

struct ObjectClass {
  uint16_t id = 0;  // what the OID's class bits hold
  std::string_view name;
  Redundancy redundancy = Redundancy::none;
  uint32_t group_size = 1;  // shards per redundancy group: replicas, or k + p
  uint32_t data = 1;        // EC k (data cells per stripe)
  uint32_t parity = 0;      // EC p
  uint32_t groups = 1;      // 0: GX, as many groups as the pool's targets allow
  // Engine failures a group survives: replicas - 1, or p.
  uint32_t tolerated() const { return redundancy == Redundancy::none ? 0 : group_size - data; }
};

std::span<const ObjectClass> object_classes();
const ObjectClass* find_class(std::string_view name);
const ObjectClass* find_class(uint16_t id);

// OID layout: bits 48..63 of `hi` hold the object class id, bits 32..47 are reserved (the
// engine stores the container there), bits 0..31 of `hi` and all of `lo` belong to the user.
inline constexpr uint64_t kUserHiMask = 0xffff'ffffull;
inline uint16_t oid_class(ObjectId oid) {
  return static_cast<uint16_t>(oid.hi >> 48);
}
inline ObjectId with_class(ObjectId oid, uint16_t cls) {
  return {(oid.hi & ~(0xffffull << 48)) | (uint64_t{cls} << 48), oid.lo};
}
// Checks that a user OID leaves the reserved bits clear and names a known class.
Status check_oid(ObjectId oid);

// ---- layouts --------------------------------------------------------------------------------

struct Shard {
  uint32_t rank = 0;
  uint32_t target = 0;
  bool available = false;  // serves I/O now
  bool fallback = false;   // a replacement for an unavailable ideal home
};

struct Layout {
  uint32_t groups = 0;
  uint32_t group_size = 0;
  std::vector<Shard> shards;  // group-major: shard s of group g is shards[g * group_size + s]

  std::span<const Shard> group(uint32_t g) const {
    return {shards.data() + size_t{g} * group_size, group_size};
  }
};

// One position of a dkey's group in a pool map that may be moving data.
struct Position {
  Shard home;                 // where the position lives now; takes writes when available
  std::optional<Shard> prev;  // its settled holder, elsewhere and still serving: takes writes
                              // too and serves reads until rebuild has filled `home`
  bool complete = false;      // `home` holds the position's complete data
  // Where reads of the position go (home when complete, else prev); null: nowhere.
  const Shard* reader() const { return complete ? &home : prev ? &*prev : nullptr; }
  // Shards that take the position's writes (home when available, prev).
  std::vector<Shard> writers() const;
};

// Who fills position `i`'s home during a rebuild (the rule every target applies to the
// positions of each dkey it holds, rebuild/scan.cpp):
//   none: nothing to fill (the home is complete, or not available to take data);
//   prev: the position's serving former holder sends its own data;
//   first_holder: the first position that still has a holder of complete data (its complete
//     home, or its serving former holder: when one change moves every position of a group,
//     no home is complete yet but the former holders are) sends it (replicas); for
//     erasure-coded cells, the first complete position rebuilds them from k complete ones;
//   lost: no position has a holder of complete data (more failures than the redundancy).
enum class FillBy { none, prev, first_holder, lost };
FillBy fill_by(const std::vector<Position>& pos, size_t i);
// The first position whose home holds complete data (-1: none).
int first_complete(const std::vector<Position>& pos);
// The first position with a reader: a complete home or a serving former holder (-1: none).
int first_holder(const std::vector<Position>& pos);
// Whether a group has settled under `map`: every position complete at its own home, no former
// holder serving, every home `up-in` (nothing of the group moves or waits to be rebuilt).
bool settled(const std::vector<Position>& pos, const PoolMap& map);

// An object's layout in a pool map and, while the map moves data, in the settled map.
struct Placement {
  Layout now;
  std::optional<Layout> settled;
  std::vector<uint8_t> home_up_in;   // per shard of `now`: its home is up-in
  std::vector<uint8_t> old_serving;  // per shard of `settled`: it still serves its data

  // The positions of the group that holds `dkey`.
  std::vector<Position> dkey(std::string_view dkey) const;
  // Every shard that takes writes of any group, once each (whole-object operations).
  std::vector<Shard> all_writers() const;
  // Every shard that holds complete data of some group, once each (listings).
  std::vector<Shard> all_readers() const;
  bool home_up_in_at(size_t shard) const { return home_up_in[shard] != 0; }
};
Result<Placement> place(ObjectId oid, const PoolMap& map);
bool same_target(const Shard& a, const Shard& b);
// Appends `s` unless `v` already names its target.
void add_unique(std::vector<Shard>& v, const Shard& s);

// Groups an object of `cls` gets in `map` (GX resolved); unavailable when the map has too few
// targets or engines (the message says which).
Result<uint32_t> group_count(const ObjectClass& cls, const PoolMap& map);
// The layout of `oid` (class from its class bits) in `map`.
Result<Layout> compute_layout(ObjectId oid, const PoolMap& map);
Result<Layout> compute_layout(ObjectId oid, const ObjectClass& cls, const PoolMap& map);
// Which group of a layout holds `dkey`.
uint32_t dkey_group(std::string_view dkey, uint32_t groups);

// A stable 64-bit hash of bytes (FNV-1a folded through a 64-bit finalizer).
uint64_t hash_bytes(std::string_view s);

}  // namespace tessera::placement

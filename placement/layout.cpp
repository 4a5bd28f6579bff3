#include "placement/layout.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "placement/placement.hpp"

namespace tessera::placement {

namespace {
constexpr std::array<std::string_view, 6> kStateNames = {"up-in",    "up",    "down",
                                                         "down-out", "drain", "new"};

uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

constexpr ObjectClass kClasses[] = {
    {1, "S1", Redundancy::none, 1, 1, 0, 1},
    {2, "S2", Redundancy::none, 1, 1, 0, 2},
    {3, "S4", Redundancy::none, 1, 1, 0, 4},
    {4, "SX", Redundancy::none, 1, 1, 0, 0},
    {10, "RP_2G1", Redundancy::replication, 2, 1, 0, 1},
    {11, "RP_2GX", Redundancy::replication, 2, 1, 0, 0},
    {12, "RP_3G1", Redundancy::replication, 3, 1, 0, 1},
    {13, "RP_3GX", Redundancy::replication, 3, 1, 0, 0},
    {20, "EC_2P1G1", Redundancy::erasure, 3, 2, 1, 1},
    {21, "EC_2P1GX", Redundancy::erasure, 3, 2, 1, 0},
    {22, "EC_4P2G1", Redundancy::erasure, 6, 4, 2, 1},
    {23, "EC_4P2GX", Redundancy::erasure, 6, 4, 2, 0},
    {24, "EC_8P2G1", Redundancy::erasure, 10, 8, 2, 1},
    {25, "EC_8P2GX", Redundancy::erasure, 10, 8, 2, 0},
    {26, "EC_16P2G1", Redundancy::erasure, 18, 16, 2, 1},
    {27, "EC_16P2GX", Redundancy::erasure, 18, 16, 2, 0},
};

// The fault-domain tree of the layout set, in map order.
struct Tree {
  struct Eng {
    const MapEngine* e;
    uint32_t host;
    std::vector<const MapTarget*> targets;
  };
  std::vector<std::vector<uint32_t>> hosts;  // host -> indices into engines
  std::vector<Eng> engines;

  explicit Tree(const PoolMap& map) {
    // Hosts numbered in the order they first appear (a hash map: a linear search made building
    // the tree quadratic in the engines).
    std::unordered_map<std::string_view, uint32_t> names;
    engines.reserve(map.engines.size());
    for (const auto& e : map.engines) {
      Eng n{&e, 0, {}};
      for (const auto& t : e.targets) {
        if (in_layout(t.state)) n.targets.push_back(&t);
      }
      if (n.targets.empty()) continue;
      auto [it, added] = names.try_emplace(std::string_view(e.host),
                                           static_cast<uint32_t>(hosts.size()));
      if (added) hosts.emplace_back();
      n.host = it->second;
      hosts[n.host].push_back(static_cast<uint32_t>(engines.size()));
      engines.push_back(std::move(n));
    }
  }
};

struct Pick {
  uint32_t engine;  // index into Tree::engines
  const MapTarget* target;
};

using TargetSet = std::unordered_set<const MapTarget*>;

// The members of one group chosen so far, and what the whole object already uses: the targets
// in `object` (shared by the object's groups, never copied: copying it for every group made a
// layout quadratic in its groups) and this group's own in `extra`.
struct Used {
  std::vector<uint32_t> group_engines;
  std::vector<uint32_t> group_hosts;
  const TargetSet* object = nullptr;
  std::vector<const MapTarget*> extra;
  bool engine(uint32_t e) const {
    return std::find(group_engines.begin(), group_engines.end(), e) != group_engines.end();
  }
  bool host(uint32_t h) const {
    return std::find(group_hosts.begin(), group_hosts.end(), h) != group_hosts.end();
  }
  bool target(const MapTarget* t) const {
    return (object != nullptr && object->count(t) != 0) ||
           std::find(extra.begin(), extra.end(), t) != extra.end();
  }
  // `p` joins the group; its target joins `extra` unless the caller adds it to `object`.
  void add(const Tree& tree, Pick p, bool to_extra) {
    group_engines.push_back(p.engine);
    group_hosts.push_back(tree.engines[p.engine].host);
    if (to_extra) extra.push_back(p.target);
  }
};

constexpr int kAttempts = 512;  // hashed descents before a deterministic scan
constexpr int kSpread = 24;     // attempts that also avoid targets the object already uses

// Descends host -> engine -> target by jump hash from `key0`, retrying with the next key of the
// sequence while the choice breaks a constraint: within a group, a different engine always and
// a different host while one is left; across the object, a different target for the first
// kSpread attempts. `need_available` also rejects targets that do not serve I/O (fallbacks).
std::optional<Pick> descend(const Tree& tree, uint64_t key0, const Used& used,
                            bool need_available) {
  auto ok_target = [&](const MapTarget* t) { return !need_available || is_available(t->state); };
  // Whether some host outside the group still has an eligible engine.
  bool free_host = false;
  for (uint32_t h = 0; h < tree.hosts.size() && !free_host; ++h) {
    if (used.host(h)) continue;
    for (uint32_t e : tree.hosts[h]) {
      for (const MapTarget* t : tree.engines[e].targets) free_host |= ok_target(t);
    }
  }
  const auto nhosts = static_cast<uint32_t>(tree.hosts.size());
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    uint64_t k = mix(key0 + static_cast<uint64_t>(attempt) * 0x9e3779b97f4a7c15ULL);
    uint32_t h = jump_hash(k, nhosts);
    if (free_host && used.host(h)) continue;
    const auto& engs = tree.hosts[h];
    uint32_t e =
        engs[jump_hash(mix(k ^ 0x5851f42d4c957f2dULL), static_cast<uint32_t>(engs.size()))];
    if (used.engine(e)) continue;
    const auto& tg = tree.engines[e].targets;
    const MapTarget* t =
        tg[jump_hash(mix(k ^ 0x14057b7ef767814fULL), static_cast<uint32_t>(tg.size()))];
    if (!ok_target(t)) continue;
    if (attempt < kSpread && used.target(t)) continue;
    return Pick{e, t};
  }
  // Deterministic scan: the first eligible target in tree order.
  for (uint32_t e = 0; e < tree.engines.size(); ++e) {
    if (used.engine(e) || (free_host && used.host(tree.engines[e].host))) continue;
    for (const MapTarget* t : tree.engines[e].targets) {
      if (ok_target(t)) return Pick{e, t};
    }
  }
  return std::nullopt;
}
}  // namespace

std::string_view state_name(TargetState s) {
  auto i = static_cast<size_t>(s);
  return i < kStateNames.size() ? kStateNames[i] : "?";
}

std::optional<TargetState> parse_state(std::string_view s) {
  for (size_t i = 0; i < kStateNames.size(); ++i) {
    if (kStateNames[i] == s) return static_cast<TargetState>(i);
  }
  return std::nullopt;
}

bool is_available(TargetState s) {
  return s == TargetState::up_in || s == TargetState::up;
}

bool is_serving(TargetState s) {
  return s == TargetState::up_in || s == TargetState::drain;
}

bool in_layout(TargetState s) {
  return s != TargetState::new_;
}

const MapEngine* PoolMap::engine(uint32_t rank) const {
  for (const auto& e : engines) {
    if (e.rank == rank) return &e;
  }
  return nullptr;
}

MapEngine* PoolMap::engine(uint32_t rank) {
  for (auto& e : engines) {
    if (e.rank == rank) return &e;
  }
  return nullptr;
}

std::optional<TargetState> PoolMap::state(uint32_t rank, uint32_t target) const {
  const MapEngine* e = engine(rank);
  if (e == nullptr) return std::nullopt;
  for (const auto& t : e->targets) {
    if (t.index == target) return t.state;
  }
  return std::nullopt;
}

PoolMap PoolMap::settled_map() const {
  PoolMap m;
  m.version = version;
  m.engines = moving() ? settled : engines;
  return m;
}

size_t PoolMap::layout_targets() const {
  size_t n = 0;
  for (const auto& e : engines) {
    for (const auto& t : e.targets) n += in_layout(t.state) ? 1 : 0;
  }
  return n;
}

size_t PoolMap::layout_engines() const {
  return Tree(*this).engines.size();
}

size_t PoolMap::layout_hosts() const {
  return Tree(*this).hosts.size();
}

std::span<const ObjectClass> object_classes() {
  return kClasses;
}

const ObjectClass* find_class(std::string_view name) {
  for (const auto& c : kClasses) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

const ObjectClass* find_class(uint16_t id) {
  for (const auto& c : kClasses) {
    if (c.id == id) return &c;
  }
  return nullptr;
}

Status check_oid(ObjectId oid) {
  if (((oid.hi >> 32) & 0xffff) != 0) {
    return Status(Errc::invalid_argument,
                  fmt::format("object id {:#x}.{:#x} sets reserved bits 32..47 of its high word",
                              oid.hi, oid.lo));
  }
  if (find_class(oid_class(oid)) == nullptr) {
    return Status(Errc::invalid_argument,
                  fmt::format("object id {:#x}.{:#x} names no known object class (id {})", oid.hi,
                              oid.lo, oid_class(oid)));
  }
  return Status();
}

Result<uint32_t> group_count(const ObjectClass& cls, const PoolMap& map) {
  Tree tree(map);
  size_t targets = 0;
  for (const auto& e : tree.engines) targets += e.targets.size();
  if (cls.group_size > tree.engines.size()) {
    return Status(Errc::unsatisfiable,
                  fmt::format("not enough fault domains for object class {}: it needs {} engines, "
                              "the pool has {}",
                              cls.name, cls.group_size, tree.engines.size()));
  }
  uint32_t groups = cls.groups;
  if (groups == 0) groups = static_cast<uint32_t>(std::max<size_t>(1, targets / cls.group_size));
  if (size_t{groups} * cls.group_size > targets) {
    return Status(Errc::unsatisfiable,
                  fmt::format("object class {} needs {} targets, the pool has {}", cls.name,
                              size_t{groups} * cls.group_size, targets));
  }
  return groups;
}

Result<Layout> compute_layout(ObjectId oid, const PoolMap& map) {
  const ObjectClass* cls = find_class(oid_class(oid));
  if (cls == nullptr) TESSERA_TRY(check_oid(oid));
  return compute_layout(oid, *cls, map);
}

Result<Layout> compute_layout(ObjectId oid, const ObjectClass& cls, const PoolMap& map) {
  auto groups = group_count(cls, map);
  if (!groups) return groups.status();
  Tree tree(map);
  Layout out;
  out.groups = *groups;
  out.group_size = cls.group_size;
  out.shards.resize(size_t{out.groups} * out.group_size);
  const uint64_t base = hash_oid(oid.hi, oid.lo);
  auto shard_key = [&](size_t i, uint64_t salt) {
    return mix(base + (i + 1) * 0xd1b54a32d192ed03ULL) ^ salt;
  };
  // Ideal homes: the whole layout set, whatever the states, so that a state change moves only
  // the shards whose ideal home it touches. Every pick joins the object's targets at once.
  TargetSet object_targets;
  object_targets.reserve(out.shards.size());
  std::vector<Pick> ideal(out.shards.size());
  for (uint32_t g = 0; g < out.groups; ++g) {
    Used used;
    used.object = &object_targets;
    for (uint32_t s = 0; s < out.group_size; ++s) {
      size_t i = size_t{g} * out.group_size + s;
      auto p = descend(tree, shard_key(i, 0), used, false);
      if (!p) return Status(Errc::internal, "placement found no target for a shard");
      ideal[i] = *p;
      used.add(tree, *p, false);
      object_targets.insert(p->target);
      const auto& eng = tree.engines[p->engine];
      out.shards[i] = {eng.e->rank, p->target->index, is_available(p->target->state), false};
    }
  }
  // Fallbacks for ideal homes that do not serve I/O, avoiding the group's live members.
  // A fallback depends only on its own group and the ideal homes, so one group's fallbacks do
  // not move when another group's change.
  for (uint32_t g = 0; g < out.groups; ++g) {
    Used used;
    used.object = &object_targets;  // the ideal homes; this group's fallbacks go to `extra`
    for (uint32_t s = 0; s < out.group_size; ++s) {
      size_t i = size_t{g} * out.group_size + s;
      if (out.shards[i].available) {
        used.group_engines.push_back(ideal[i].engine);
        used.group_hosts.push_back(tree.engines[ideal[i].engine].host);
      }
    }
    for (uint32_t s = 0; s < out.group_size; ++s) {
      size_t i = size_t{g} * out.group_size + s;
      if (out.shards[i].available) continue;
      auto p = descend(tree, shard_key(i, 0x6a09e667f3bcc908ULL), used, true);
      if (!p) continue;  // not enough healthy engines: the shard stays unavailable
      used.add(tree, *p, true);
      out.shards[i] = {tree.engines[p->engine].e->rank, p->target->index, true, true};
    }
  }
  return out;
}

bool same_target(const Shard& a, const Shard& b) {
  return a.rank == b.rank && a.target == b.target;
}

std::vector<Shard> Position::writers() const {
  std::vector<Shard> w;
  if (home.available) w.push_back(home);
  if (prev) w.push_back(*prev);
  return w;
}

int first_complete(const std::vector<Position>& pos) {
  for (size_t j = 0; j < pos.size(); ++j) {
    if (pos[j].complete) return static_cast<int>(j);
  }
  return -1;
}

int first_holder(const std::vector<Position>& pos) {
  for (size_t j = 0; j < pos.size(); ++j) {
    if (pos[j].reader() != nullptr) return static_cast<int>(j);
  }
  return -1;
}

bool settled(const std::vector<Position>& pos, const PoolMap& map) {
  for (const auto& p : pos) {
    const auto st = map.state(p.home.rank, p.home.target);
    if (!p.complete || p.prev || !st || *st != TargetState::up_in) return false;
  }
  return true;
}

FillBy fill_by(const std::vector<Position>& pos, size_t i) {
  const Position& p = pos.at(i);
  if (!p.home.available || p.complete) return FillBy::none;
  if (p.prev) return FillBy::prev;
  return first_holder(pos) < 0 ? FillBy::lost : FillBy::first_holder;
}

Result<Placement> place(ObjectId oid, const PoolMap& map) {
  Placement p;
  auto now = compute_layout(oid, map);
  if (!now) return now.status();
  p.now = std::move(*now);
  for (const auto& s : p.now.shards) {
    p.home_up_in.push_back(map.state(s.rank, s.target) == TargetState::up_in ? 1 : 0);
  }
  if (map.moving()) {
    auto old = compute_layout(oid, map.settled_map());
    // A settled map too small for the class (an extension grew the pool past it) holds no
    // data of this object: every home is new.
    p.settled = old ? std::move(*old) : Layout{};
    for (const auto& s : p.settled->shards) {
      auto st = map.state(s.rank, s.target);
      p.old_serving.push_back(s.available && st && is_serving(*st) ? 1 : 0);
    }
  }
  return p;
}

std::vector<Position> Placement::dkey(std::string_view dkey) const {
  const uint32_t g = dkey_group(dkey, now.groups);
  std::vector<Position> out(now.group_size);
  const bool has_old = settled && settled->groups > 0;
  const size_t old_base =
      has_old ? size_t{dkey_group(dkey, settled->groups)} * settled->group_size : 0;
  for (uint32_t i = 0; i < now.group_size; ++i) {
    Position& pos = out[i];
    const size_t idx = size_t{g} * now.group_size + i;
    pos.home = now.shards[idx];
    const bool home_up_in = home_up_in_at(idx);
    if (!settled) {
      pos.complete = pos.home.available && home_up_in;
      continue;
    }
    if (!has_old) continue;  // nothing settled: every home is being filled
    const Shard& s = settled->shards[old_base + i];
    if (same_target(s, pos.home)) {
      pos.complete = s.available && pos.home.available && home_up_in;
    } else if (old_serving[old_base + i] != 0) {
      pos.prev = s;
    }
  }
  return out;
}

void add_unique(std::vector<Shard>& v, const Shard& s) {
  for (const auto& x : v) {
    if (same_target(x, s)) return;
  }
  v.push_back(s);
}

std::vector<Shard> Placement::all_writers() const {
  std::vector<Shard> out;
  for (const auto& s : now.shards) {
    if (s.available) add_unique(out, s);
  }
  if (settled) {
    for (size_t i = 0; i < settled->shards.size(); ++i) {
      if (old_serving[i] != 0) add_unique(out, settled->shards[i]);
    }
  }
  return out;
}

std::vector<Shard> Placement::all_readers() const {
  std::vector<Shard> out;
  if (!settled) {
    for (size_t i = 0; i < now.shards.size(); ++i) {
      if (now.shards[i].available && home_up_in[i] != 0) add_unique(out, now.shards[i]);
    }
    return out;
  }
  for (size_t i = 0; i < settled->shards.size(); ++i) {
    if (old_serving[i] != 0) add_unique(out, settled->shards[i]);
  }
  return out;
}

uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return mix(h);
}

uint32_t dkey_group(std::string_view dkey, uint32_t groups) {
  return jump_hash(hash_bytes(dkey), groups);
}

}  // namespace tessera::placement

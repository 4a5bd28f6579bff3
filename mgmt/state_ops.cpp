// The management state machine's command handlers, one per command, and their dispatch
// (MgmtState::apply_op). Each handler changes the state or fails; MgmtState::apply restores the
// state when one fails (from a copy, except for the handlers marked in_place, which change
// nothing before they can no longer fail).
#include <fmt/format.h>

#include <algorithm>
#include <variant>

#include "mgmt/state.hpp"
#include "mgmt/state_detail.hpp"

namespace tessera::mgmt {

using nlohmann::json;
using placement::TargetState;
using namespace detail;

namespace {
// mark_targets in one pool; whether the map changed.
bool mark_pool_targets(Pool& p, uint32_t rank, int64_t target, TargetState to, uint64_t now_ms,
                       bool always) {
  placement::MapEngine* e = p.map.engine(rank);
  if (e == nullptr) return false;
  auto heal = p.props.find("self_heal");
  if (!always && (heal == p.props.end() || heal->second.find("exclude") == std::string::npos)) {
    return false;  // the pool keeps a failed engine in its map until an administrator acts
  }
  // An automatic exclusion that would leave some object without an up-to-date copy is not
  // taken: new writes would go to fallbacks while the only complete copies sit on the engines
  // already down, and nothing could be rebuilt. The targets stay in the map (unreachable until
  // the engine returns); an administrator may still exclude them.
  if (!always && exclusion_strands_data(p, rank)) return false;
  bool changed = false;
  for (auto& t : e->targets) {
    if (target >= 0 && t.index != static_cast<uint32_t>(target)) continue;
    if (t.state == TargetState::up_in || t.state == TargetState::drain ||
        t.state == TargetState::up) {
      if (!changed) begin_change(p);
      t.state = to;
      changed = true;
    }
  }
  if (changed) {
    ++p.map.version;
    plan_rebuild(p, now_ms, false);
  }
  return changed;
}
}  // namespace

void MgmtState::mark_targets(uint32_t rank, int64_t target, TargetState to, uint64_t now_ms,
                             bool always) {
  for (auto& [id, p] : pools_) mark_pool_targets(p, rank, target, to, now_ms, always);
}

Status MgmtState::op_join(const json& c) {
  Member m = member_from_json(c);
  if (m.fabric_addrs.empty()) return bad("an engine must join with at least one target");
  auto it = members_.find(m.rank);
  if (it != members_.end()) {
    if (it->second.fabric_addrs.size() != m.fabric_addrs.size()) {
      return bad(fmt::format("rank {} joined before with {} targets, now with {}", m.rank,
                             it->second.fabric_addrs.size(), m.fabric_addrs.size()));
    }
    m.incarnation = it->second.incarnation + 1;
    // New addresses: every pool that uses the rank gets a new map version so that clients
    // and engines refresh the addresses with the map.
    if (it->second.fabric_addrs != m.fabric_addrs || it->second.control_addr != m.control_addr) {
      for (auto& [id, p] : pools_) {
        if (p.map.engine(m.rank) != nullptr) bump_same_layout(p);
      }
    }
  }
  members_[m.rank] = std::move(m);
  return Status();
}

Status MgmtState::op_leave(const json& c) {
  uint32_t rank = c.at("rank").get<uint32_t>();
  auto it = members_.find(rank);
  if (it == members_.end()) return Status(Errc::not_found, fmt::format("no rank {}", rank));
  if (it->second.state == MemberState::excluded) return Status();  // stays out when it leaves
  bool dead = c.at("state").get<std::string>() == "dead";
  it->second.state = dead ? MemberState::dead : MemberState::stopped;
  if (dead) mark_targets(rank, -1, TargetState::down, c.value("now_ms", uint64_t{0}), false);
  return Status();
}

Status MgmtState::op_exclude(const json& c) {
  // Taken out by the administrator: its targets go down in every pool map, and it may not
  // join again until the exclusion is cleared.
  uint32_t rank = c.at("rank").get<uint32_t>();
  auto it = members_.find(rank);
  if (it == members_.end()) return Status(Errc::not_found, fmt::format("no rank {}", rank));
  it->second.state = MemberState::excluded;
  mark_targets(rank, -1, TargetState::down, c.value("now_ms", uint64_t{0}), true);
  return Status();
}

Status MgmtState::op_target_down(const json& c) {
  // One target failed (stopped by an administrator): down in every pool map that has it.
  uint32_t rank = c.at("rank").get<uint32_t>();
  if (members_.count(rank) == 0) return Status(Errc::not_found, fmt::format("no rank {}", rank));
  mark_targets(rank, c.at("target").get<int64_t>(), TargetState::down,
               c.value("now_ms", uint64_t{0}), true);
  return Status();
}

Status MgmtState::op_clear_exclude(const json& c) {
  uint32_t rank = c.at("rank").get<uint32_t>();
  auto it = members_.find(rank);
  if (it == members_.end()) return Status(Errc::not_found, fmt::format("no rank {}", rank));
  if (it->second.state != MemberState::excluded) {
    return bad(fmt::format("rank {} is not excluded", rank));
  }
  it->second.state = c.at("connected").get<bool>() ? MemberState::joined : MemberState::stopped;
  return Status();
}

Status MgmtState::op_pool_create(const json& c) {
  Pool p;
  p.id = next_pool_id_;
  p.uuid = c.at("uuid").get<std::string>();
  p.label = c.at("label").get<std::string>();
  p.target_bytes = c.at("target_bytes").get<uint64_t>();
  TESSERA_TRY(check_label(p.label, "pool"));
  if (pool(p.label) != nullptr) {
    return Status(Errc::exists, fmt::format("a pool labelled '{}' exists", p.label));
  }
  for (uint32_t r : c.at("ranks").get<std::vector<uint32_t>>()) {
    auto it = members_.find(r);
    if (it == members_.end()) return Status(Errc::not_found, fmt::format("no rank {}", r));
    placement::MapEngine e{r, it->second.host, {}};
    for (uint32_t t = 0; t < it->second.fabric_addrs.size(); ++t) {
      e.targets.push_back({t, TargetState::up_in});
    }
    p.map.engines.push_back(std::move(e));
  }
  if (p.map.engines.empty()) return bad("a pool needs at least one engine");
  auto acl = acl_from_json(c.at("acl"));
  if (!acl) return acl.status();
  p.acl = std::move(*acl);
  p.props["self_heal"] = "exclude;rebuild";
  ++next_pool_id_;
  pools_[p.id] = std::move(p);
  return Status();
}

Status MgmtState::op_pool_destroy(Pool* p, const json&) {
  for (auto it = handles_.begin(); it != handles_.end();) {
    auto next = std::next(it);
    if (it->second.pool == p->id) remove_handle(it);
    it = next;
  }
  pools_.erase(p->id);
  return Status();
}

Status MgmtState::op_shard_damaged(Pool* p, const json& c) {
  // An engine found its store of the pool on one target damaged when it opened it: the
  // target serves none of the pool's data. Recorded (pool query names it, and the engine
  // answers every request for it with the reason), and taken out of the map for a rebuild
  // from the other copies as a dead engine's targets are: when the pool's self_heal allows
  // it and no object would be left without an up-to-date copy. Otherwise it stays in the
  // map until an administrator excludes it (accepting the loss) or reintegrates it.
  const uint32_t rank = c.at("rank").get<uint32_t>();
  const uint32_t target = c.at("target").get<uint32_t>();
  const placement::MapEngine* e = p->map.engine(rank);
  if (e == nullptr || target >= e->targets.size()) {
    return Status(Errc::not_found,
                  fmt::format("pool '{}' has no target {}:{}", p->label, rank, target));
  }
  TargetDamage d{rank, target, c.at("reason").get<std::string>(), c.value("now_ms", uint64_t{0})};
  auto it = std::find_if(p->damaged.begin(), p->damaged.end(), [&](const TargetDamage& x) {
    return x.rank == rank && x.target == target;
  });
  if (it == p->damaged.end()) {
    p->damaged.push_back(std::move(d));
    bump_same_layout(*p);  // clients and engines learn it with the map
  } else {
    it->reason = std::move(d.reason);
  }
  mark_pool_targets(*p, rank, target, TargetState::down, c.value("now_ms", uint64_t{0}), false);
  return Status();
}

Status MgmtState::op_pool_acl(Pool* p, const json& c) {
  auto acl = acl_from_json(c.at("acl"));
  if (!acl) return acl.status();
  p->acl = std::move(*acl);
  return Status();
}

Status MgmtState::op_pool_set_prop(Pool* p, const json& c) {
  p->props[c.at("name").get<std::string>()] = c.at("value").get<std::string>();
  return Status();
}

Status MgmtState::op_target_state(Pool* p, const json& c) {
  uint32_t rank = c.at("rank").get<uint32_t>();
  int64_t target = c.at("target").get<int64_t>();
  auto st = placement::parse_state(c.at("state").get<std::string>());
  if (!st) return bad("unknown target state");
  placement::MapEngine* e = p->map.engine(rank);
  if (e == nullptr) return Status(Errc::not_found, fmt::format("rank {} is not in the pool", rank));
  // "targets": only these of the rank (a reintegration of its down targets alone).
  std::optional<std::vector<uint32_t>> only;
  if (c.contains("targets")) only = c.at("targets").get<std::vector<uint32_t>>();
  bool hit = false;
  begin_change(*p);
  for (auto& t : e->targets) {
    if (target >= 0 && t.index != static_cast<uint32_t>(target)) continue;
    if (only && std::find(only->begin(), only->end(), t.index) == only->end()) continue;
    t.state = *st;
    hit = true;
    // Reintegrated: its engine formatted the damaged store anew before this command.
    if (*st == TargetState::up) {
      std::erase_if(p->damaged,
                    [&](const TargetDamage& d) { return d.rank == rank && d.target == t.index; });
    }
  }
  if (!hit) return Status(Errc::not_found, fmt::format("no target {}:{}", rank, target));
  ++p->map.version;
  plan_rebuild(*p, c.value("now_ms", uint64_t{0}), c.value("rebuild", false));
  return Status();
}

Status MgmtState::op_pool_extend(Pool* p, const json& c) {
  begin_change(*p);
  for (uint32_t r : c.at("ranks").get<std::vector<uint32_t>>()) {
    auto it = members_.find(r);
    if (it == members_.end()) return Status(Errc::not_found, fmt::format("no rank {}", r));
    if (p->map.engine(r) != nullptr) {
      return Status(Errc::exists, fmt::format("rank {} is already in pool '{}'", r, p->label));
    }
    placement::MapEngine e{r, it->second.host, {}};
    for (uint32_t t = 0; t < it->second.fabric_addrs.size(); ++t) {
      e.targets.push_back({t, TargetState::up});
    }
    p->map.engines.push_back(std::move(e));
  }
  ++p->map.version;
  plan_rebuild(*p, c.value("now_ms", uint64_t{0}), true);
  return Status();
}

Status MgmtState::op_rebuild_start(Pool* p, const json& c) {
  if (!p->map.moving()) {
    return bad(fmt::format("pool '{}' has no data to move (map version {} is complete)", p->label,
                           p->map.version));
  }
  plan_rebuild(*p, c.value("now_ms", uint64_t{0}), true);
  return Status();
}

Status MgmtState::op_rebuild_end(Pool* p, const json& c) {
  const std::string op = c.at("op").get<std::string>();
  const uint32_t gen = c.at("gen").get<uint32_t>();
  if (p->rebuild.state != "busy" || gen != p->rebuild.gen) {
    return Status(Errc::stale,
                  fmt::format("rebuild generation {} of pool '{}' is not running", gen, p->label));
  }
  p->rebuild.end_ms = c.value("now_ms", uint64_t{0});
  if (op == "rebuild_failed") {
    p->rebuild.state = "failed";
    p->rebuild.error = c.at("error").get<std::string>();
    return Status();
  }
  if (p->map.version != p->rebuild.version) {
    return Status(Errc::stale, "the pool map changed during the rebuild");
  }
  // Containers that lost more engines than their redundancy factor lost data for good.
  for (auto& [cid, k] : p->containers) {
    if (container_health(*p, k).status == "UNCLEAN") k.lost_data = true;
  }
  for (auto& e : p->map.engines) {
    for (auto& t : e.targets) {
      if (t.state == TargetState::down || t.state == TargetState::drain) {
        t.state = TargetState::down_out;
      } else if (t.state == TargetState::up) {
        t.state = TargetState::up_in;
      }
    }
  }
  p->map.settled.clear();
  ++p->map.version;
  p->rebuild.state = "done";
  p->rebuild.objects = c.value("objects", uint64_t{0});
  p->rebuild.records = c.value("records", uint64_t{0});
  p->rebuild.bytes = c.value("bytes", uint64_t{0});
  p->rebuild.lost = c.value("lost", uint64_t{0});
  p->rebuild.planned = c.value("planned", uint64_t{0});
  return Status();
}

Status MgmtState::op_cont_create(Pool* p, const json& c) {
  Container k;
  k.uuid = c.at("uuid").get<std::string>();
  auto props = props_from_json(c.at("props"));
  if (!props) return props.status();
  k.props = std::move(*props);
  TESSERA_TRY(check_label(k.props.label, "container"));
  if (p->container(k.props.label) != nullptr) {
    return Status(Errc::exists, fmt::format("pool '{}' already has a container labelled '{}'",
                                            p->label, k.props.label));
  }
  auto acl = acl_from_json(c.at("acl"));
  if (!acl) return acl.status();
  k.acl = std::move(*acl);
  k.created_epoch = c.at("epoch").get<uint64_t>();
  // The lowest free id: it goes into 16 reserved OID bits.
  uint32_t id = 1;
  while (p->containers.count(id) != 0) ++id;
  if (id > 0xffff) return Status(Errc::no_space, "the pool has 65535 containers");
  k.id = id;
  p->containers[id] = std::move(k);
  return Status();
}

Status MgmtState::op_handle_close(Pool*, const json& c) {
  auto it = handles_.find(c.at("cookie").get<uint64_t>());
  if (it != handles_.end()) remove_handle(it);
  return Status();
}

Status MgmtState::op_cont_destroy(Pool* p, Container& k, const json&) {
  for (auto it = handles_.begin(); it != handles_.end();) {
    auto next = std::next(it);
    if (it->second.pool == p->id && it->second.cont == k.id) remove_handle(it);
    it = next;
  }
  const uint32_t id = k.id;
  p->containers.erase(id);
  return Status();
}

Status MgmtState::op_cont_set_prop(Pool* p, Container& k, const json& c) {
  auto props = props_from_json(c.at("props"));
  if (!props) return props.status();
  TESSERA_TRY(check_label(props->label, "container"));
  if (props->label != k.props.label && p->container(props->label) != nullptr) {
    return Status(Errc::exists, fmt::format("a container labelled '{}' exists", props->label));
  }
  k.props = std::move(*props);
  if (c.value("healthy", false) && k.lost_data) {
    k.lost_data = false;
    bump_same_layout(*p);  // engines learn it with the map, and take writes again
  }
  return Status();
}

Status MgmtState::op_cont_acl(Pool*, Container& k, const json& c) {
  auto acl = acl_from_json(c.at("acl"));
  if (!acl) return acl.status();
  k.acl = std::move(*acl);
  return Status();
}

Status MgmtState::op_cont_attr(Pool*, Container& k, const json& c) {
  const std::string name = c.at("name").get<std::string>();
  if (c.at("value").is_null()) {
    if (k.attrs.erase(name) == 0) {
      return Status(Errc::not_found, fmt::format("no attribute '{}'", name));
    }
  } else {
    std::string value = c.at("value").get<std::string>();  // before the change: it may throw
    k.attrs[name] = std::move(value);
  }
  return Status();
}

Status MgmtState::op_snap_create(Pool*, Container& k, const json& c) {
  k.snapshots.push_back({c.at("epoch").get<uint64_t>(), c.value("name", std::string())});
  return Status();
}

Status MgmtState::op_snap_destroy(Pool*, Container& k, const json& c) {
  uint64_t e = c.at("epoch").get<uint64_t>();
  auto it = std::find_if(k.snapshots.begin(), k.snapshots.end(),
                         [e](const Snapshot& s) { return s.epoch == e; });
  if (it == k.snapshots.end()) {
    return Status(Errc::not_found, fmt::format("no snapshot at epoch {}", e));
  }
  k.snapshots.erase(it);
  return Status();
}

Status MgmtState::op_handle_open(Pool* p, Container& k, const json& c) {
  Handle h = handle_from_json(c);
  h.pool = p->id;
  h.cont = k.id;
  add_handle(h);
  return Status();
}

// One handler per command; the command's scope (the system, a pool, a container of it) is
// found before its handler runs.
Status MgmtState::apply_op(const json& c, std::optional<MgmtState>& saved) {
  using OfSystem = Status (MgmtState::*)(const json&);
  using OfPool = Status (MgmtState::*)(Pool*, const json&);
  using OfCont = Status (MgmtState::*)(Pool*, Container&, const json&);
  using Handler = std::variant<OfSystem, OfPool, OfCont>;
  // in_place: the handler checks and reads everything it needs before its first change, and
  // no change of it can fail, so a failure leaves the state as it was without a copy of it.
  // These are the frequent commands (opening and closing handles, container commands): their
  // cost does not grow with the number of pools, containers and handles.
  struct Op {
    Handler handler;
    bool in_place = false;
  };
  static const std::map<std::string, Op, std::less<>> kOps = {
      {"join", {&MgmtState::op_join}},
      {"leave", {&MgmtState::op_leave}},
      {"exclude", {&MgmtState::op_exclude}},
      {"target_down", {&MgmtState::op_target_down}},
      {"clear_exclude", {&MgmtState::op_clear_exclude}},
      {"pool_create", {&MgmtState::op_pool_create}},
      {"pool_destroy", {&MgmtState::op_pool_destroy}},
      {"shard_damaged", {&MgmtState::op_shard_damaged}},
      {"pool_acl", {&MgmtState::op_pool_acl}},
      {"pool_set_prop", {&MgmtState::op_pool_set_prop}},
      {"target_state", {&MgmtState::op_target_state}},
      {"pool_extend", {&MgmtState::op_pool_extend}},
      {"rebuild_start", {&MgmtState::op_rebuild_start}},
      {"rebuild_done", {&MgmtState::op_rebuild_end}},
      {"rebuild_failed", {&MgmtState::op_rebuild_end}},
      {"cont_create", {&MgmtState::op_cont_create, true}},
      {"handle_close", {&MgmtState::op_handle_close, true}},
      {"cont_destroy", {&MgmtState::op_cont_destroy, true}},
      {"cont_set_prop", {&MgmtState::op_cont_set_prop, true}},
      {"cont_acl", {&MgmtState::op_cont_acl, true}},
      {"cont_attr", {&MgmtState::op_cont_attr, true}},
      {"snap_create", {&MgmtState::op_snap_create, true}},
      {"snap_destroy", {&MgmtState::op_snap_destroy, true}},
      {"handle_open", {&MgmtState::op_handle_open, true}},
  };
  const std::string op = c.at("op").get<std::string>();
  auto it = kOps.find(op);
  if (it == kOps.end()) return bad("unknown management command '" + op + "'");
  if (!it->second.in_place) saved.emplace(*this);
  const Handler& h = it->second.handler;
  if (const auto* f = std::get_if<OfSystem>(&h)) return (this->**f)(c);
  Pool* p = find_pool(pools_, c);
  if (p == nullptr) return Status(Errc::not_found, "no such pool");
  if (const auto* f = std::get_if<OfPool>(&h)) return (this->**f)(p, c);
  auto cit = p->containers.find(c.value("cont", 0u));
  if (cit == p->containers.end()) return Status(Errc::not_found, "no such container");
  return (this->*std::get<OfCont>(h))(p, cit->second, c);
}

}  // namespace tessera::mgmt

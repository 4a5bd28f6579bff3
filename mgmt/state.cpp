#include "mgmt/state.hpp"
#include "mgmt/state_detail.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <variant>

#include "core/actor.hpp"
#include "core/config.hpp"
#include "core/log.hpp"

namespace tessera::mgmt {

// Format 2: epochs count from 2021 (core/env.hpp).
constexpr int kStateFormat = 2;

using nlohmann::json;
using placement::TargetState;

// Helpers of the state machine; those its command handlers share are declared in
// state_detail.hpp (state_ops.cpp).
namespace detail {

Status bad(const std::string& why) {
  return Status(Errc::invalid_argument, why);
}

json engines_json(const std::vector<placement::MapEngine>& v) {
  json engines = json::array();
  for (const auto& e : v) {
    json ts = json::array();
    for (const auto& t : e.targets) ts.push_back(std::string(placement::state_name(t.state)));
    engines.push_back({{"rank", e.rank}, {"host", e.host}, {"targets", ts}});
  }
  return engines;
}

json map_json(const placement::PoolMap& m) {
  json j{{"version", m.version}, {"engines", engines_json(m.engines)}};
  if (m.moving()) j["settled"] = engines_json(m.settled);
  return j;
}

Result<std::vector<placement::MapEngine>> engines_from_json(const json& j) {
  std::vector<placement::MapEngine> out;
  for (const auto& e : j) {
    placement::MapEngine me{e.at("rank").get<uint32_t>(), e.at("host").get<std::string>(), {}};
    uint32_t i = 0;
    for (const auto& t : e.at("targets")) {
      auto s = placement::parse_state(t.get<std::string>());
      if (!s) return bad("unknown target state " + t.get<std::string>());
      me.targets.push_back({i++, *s});
    }
    out.push_back(std::move(me));
  }
  return out;
}

Result<placement::PoolMap> map_from_json(const json& j) {
  placement::PoolMap m;
  m.version = j.at("version").get<uint32_t>();
  auto e = engines_from_json(j.at("engines"));
  if (!e) return e.status();
  m.engines = std::move(*e);
  if (j.contains("settled")) {
    auto st = engines_from_json(j.at("settled"));
    if (!st) return st.status();
    m.settled = std::move(*st);
  }
  return m;
}

json rebuild_json(const RebuildState& r) {
  return {{"state", r.state},       {"gen", r.gen},       {"version", r.version},
          {"start_ms", r.start_ms}, {"end_ms", r.end_ms}, {"objects", r.objects},
          {"records", r.records},   {"bytes", r.bytes},   {"lost", r.lost},
          {"planned", r.planned},   {"error", r.error}};
}

RebuildState rebuild_from_json(const json& j) {
  RebuildState r;
  r.state = j.value("state", std::string("idle"));
  r.gen = j.value("gen", 0u);
  r.version = j.value("version", 0u);
  r.start_ms = j.value("start_ms", uint64_t{0});
  r.end_ms = j.value("end_ms", uint64_t{0});
  r.objects = j.value("objects", uint64_t{0});
  r.records = j.value("records", uint64_t{0});
  r.bytes = j.value("bytes", uint64_t{0});
  r.planned = j.value("planned", uint64_t{0});
  r.lost = j.value("lost", uint64_t{0});
  r.error = j.value("error", std::string());
  return r;
}

// A map change is about to move data: keep the map whose layouts are complete (once).
void begin_change(Pool& p) {
  if (!p.map.moving()) p.map.settled = p.map.engines;
}

// After a map change: a new rebuild generation when the pool's self_heal allows it or an
// administrator asked for the data movement.
void plan_rebuild(Pool& p, uint64_t now_ms, bool requested) {
  if (!p.map.moving()) return;
  auto it = p.props.find("self_heal");
  bool auto_heal = it != p.props.end() && it->second.find("rebuild") != std::string::npos;
  if (!requested && !auto_heal) return;
  if (p.rebuild.state != "busy") {
    p.rebuild.start_ms = now_ms;
    p.rebuild.end_ms = 0;
  }
  p.rebuild.state = "busy";
  ++p.rebuild.gen;
  p.rebuild.version = p.map.version;
  p.rebuild.error.clear();
}

// A new map version that changes no layout (new engine addresses, a damage recorded): a rebuild
// generation running for the previous version covers this one too. Without this its completion
// would be refused as stale, and the pool would stay rebuilding until the next map change.
void bump_same_layout(Pool& p) {
  const bool current = p.rebuild.state == "busy" && p.rebuild.version == p.map.version;
  ++p.map.version;
  if (current) p.rebuild.version = p.map.version;
}

std::vector<std::string> hex_list(const json& j) {
  std::vector<std::string> out;
  for (const auto& h : j) {
    auto raw = from_hex(h.get<std::string>());
    if (!raw) throw std::invalid_argument("a fabric address is not base-16 text");
    out.push_back(std::move(*raw));
  }
  return out;
}

json to_hex_list(const std::vector<std::string>& v) {
  json out = json::array();
  for (const auto& a : v) out.push_back(to_hex(a));
  return out;
}

Member member_from_json(const json& j) {
  Member m;
  m.rank = j.at("rank").get<uint32_t>();
  m.host = j.at("host").get<std::string>();
  m.control_addr = j.at("control_addr").get<std::string>();
  m.metrics_addr = j.value("metrics_addr", std::string());
  m.provider = j.at("provider").get<std::string>();
  m.fabric_addrs = hex_list(j.at("fabric_addrs"));
  m.pid = j.value("pid", uint64_t{0});
  return m;
}

Pool* find_pool(std::map<uint32_t, Pool>& pools, const json& c) {
  auto it = pools.find(c.at("pool").get<uint32_t>());
  return it == pools.end() ? nullptr : &it->second;
}
}  // namespace detail
using namespace detail;

std::string to_hex(std::string_view raw) {
  static const char* d = "0123456789abcdef";
  std::string h;
  h.reserve(raw.size() * 2);
  for (unsigned char c : raw) {
    h += d[c >> 4];
    h += d[c & 15];
  }
  return h;
}

std::optional<std::string> from_hex(std::string_view h) {
  if (h.size() % 2 != 0) return std::nullopt;
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string raw;
  for (size_t i = 0; i < h.size(); i += 2) {
    int a = nib(h[i]), b = nib(h[i + 1]);
    if (a < 0 || b < 0) return std::nullopt;
    raw += static_cast<char>(a * 16 + b);
  }
  return raw;
}

json acl_json(const Acl& a) {
  json es = json::array();
  for (const Ace& e : a.entries) {
    es.push_back(
        {{"who", static_cast<int>(e.who)}, {"id", e.id}, {"name", e.name}, {"perms", e.perms}});
  }
  return {{"owner_uid", a.owner_uid}, {"owner_gid", a.owner_gid}, {"entries", es}};
}

Result<Acl> acl_from_json(const json& j) {
  Acl a;
  a.owner_uid = j.at("owner_uid").get<uint32_t>();
  a.owner_gid = j.at("owner_gid").get<uint32_t>();
  for (const auto& e : j.at("entries")) {
    int who = e.at("who").get<int>();
    if (who < 0 || who > static_cast<int>(Principal::everyone)) return bad("bad ACL principal");
    a.entries.push_back({static_cast<Principal>(who), e.at("id").get<uint32_t>(),
                         e.at("name").get<std::string>(), e.at("perms").get<uint32_t>()});
  }
  return a;
}

// A handle as the state file and the handle_open command carry it (pool and cont apart).
json handle_json(const Handle& h) {
  return {{"cookie", h.cookie},
          {"id", h.id},
          {"pool", h.pool},
          {"cont", h.cont},
          {"perms", h.perms},
          {"uid", h.uid},
          {"gid", h.gid},
          {"groups", h.groups},
          {"host", h.host},
          {"pid", h.pid},
          {"opened_ms", h.opened_ms}};
}

Handle handle_from_json(const json& j) {
  Handle h;
  h.cookie = j.at("cookie").get<uint64_t>();
  h.id = j.value("id", uint64_t{0});
  h.perms = j.at("perms").get<uint32_t>();
  h.uid = j.at("uid").get<uint32_t>();
  h.gid = j.value("gid", uint32_t{0});
  h.groups = j.value("groups", std::vector<uint32_t>{});
  h.host = j.value("host", std::string());
  h.pid = j.value("pid", uint32_t{0});
  h.opened_ms = j.value("opened_ms", uint64_t{0});
  return h;
}

json props_json(const ContProps& p) {
  return {{"label", p.label},       {"type", std::string(cont_type_name(p.type))},
          {"oclass", p.oclass},     {"rf", p.rf},
          {"checksum", p.checksum}, {"cell_size", p.cell_size}};
}

Result<ContProps> props_from_json(const json& j) {
  ContProps p;
  p.label = j.at("label").get<std::string>();
  auto t = parse_cont_type(j.at("type").get<std::string>());
  if (!t) return bad("unknown container type " + j.at("type").get<std::string>());
  p.type = *t;
  p.oclass = j.at("oclass").get<uint16_t>();
  p.rf = j.at("rf").get<uint32_t>();
  p.checksum = j.at("checksum").get<std::string>();
  p.cell_size = j.at("cell_size").get<uint32_t>();
  return p;
}

const Pool* MgmtState::pool(const std::string& key) const {
  for (const auto& [id, p] : pools_) {
    if (p.label == key || p.uuid == key) return &p;
  }
  return nullptr;
}

const Pool* MgmtState::pool(uint32_t id) const {
  auto it = pools_.find(id);
  return it == pools_.end() ? nullptr : &it->second;
}

size_t MgmtState::open_handles(uint32_t pool, uint32_t cont) const {
  if (cont != UINT32_MAX) {
    auto it = handle_counts_.find({pool, cont});
    return it == handle_counts_.end() ? 0 : it->second;
  }
  size_t n = 0;
  for (auto it = handle_counts_.lower_bound({pool, 0});
       it != handle_counts_.end() && it->first.first == pool; ++it) {
    n += it->second;
  }
  return n;
}

Status MgmtState::apply(const json& cmd) {
  // A command that could fail half done works on the state with a copy kept (apply_op), so
  // that a failed or throwing command leaves nothing changed; the frequent ones (handles,
  // containers) check everything before they change anything, and need none.
  removed_.clear();
  std::optional<MgmtState> saved;
  Status st;
  try {
    st = apply_op(cmd, saved);
  } catch (const std::exception& e) {
    st = bad(std::string("malformed management command: ") + e.what());
  }
  if (!st.is_ok()) {
    if (saved) *this = std::move(*saved);
    removed_.clear();
    return st;
  }
  ++applied_;
  return st;
}

void MgmtState::uncount_handle(const Handle& h) {
  auto c = handle_counts_.find({h.pool, h.cont});
  if (c != handle_counts_.end() && --c->second == 0) handle_counts_.erase(c);
}

void MgmtState::remove_handle(std::map<uint64_t, Handle>::iterator it) {
  removed_.push_back(it->second);
  uncount_handle(it->second);
  handles_.erase(it);
}

void MgmtState::add_handle(const Handle& h) {
  if (auto old = handles_.find(h.cookie); old != handles_.end()) uncount_handle(old->second);
  handles_[h.cookie] = h;
  ++handle_counts_[{h.pool, h.cont}];
}

namespace {
// Engine failures a container survives: its object class's, else its redundancy factor.
uint32_t container_tolerance(const Container& c) {
  const auto* cls = placement::find_class(c.props.oclass);
  return cls != nullptr ? cls->tolerated() : c.props.rf;
}
}  // namespace

Status check_pool_prop(const std::string& name, const std::string& value) {
  if (name == "label") {
    if (value.empty()) return Status(Errc::invalid_argument, "label: a pool label cannot be empty");
    return Status();
  }
  if (name == "self_heal") {
    // "none", or words from exclude and rebuild joined by ';' (the default "exclude;rebuild").
    const std::string why = fmt::format(
        "self_heal: '{}' is not a valid value (none, exclude, or exclude;rebuild)", value);
    if (value == "none") return Status();
    std::stringstream in(value);
    std::string word;
    bool any = false;
    while (std::getline(in, word, ';')) {
      if (word != "exclude" && word != "rebuild") return Status(Errc::invalid_argument, why);
      any = true;
    }
    return any ? Status() : Status(Errc::invalid_argument, why);
  }
  if (name == "scrub") {
    if (value == "off" || value == "timed") return Status();
    return Status(Errc::invalid_argument,
                  fmt::format("scrub: '{}' is not a valid value (off, or timed: every scrub_freq "
                              "seconds)",
                              value));
  }
  if (name == "scrub_freq" || name == "scrub_share") {
    char* end = nullptr;
    const unsigned long long n = std::strtoull(value.c_str(), &end, 10);
    const unsigned long long hi = name == "scrub_freq" ? 366ull * 86400 : 100;
    if (value.empty() || *end != '\0' || n < 1 || n > hi) {
      return Status(Errc::invalid_argument,
                    fmt::format("{}: '{}' is not a whole number from 1 to {}{}", name, value, hi,
                                name == "scrub_freq" ? " (seconds)" : " (percent)"));
    }
    return Status();
  }
  return Status(Errc::invalid_argument,
                fmt::format("unknown pool property '{}' (label, self_heal, scrub, scrub_freq, "
                            "scrub_share)",
                            name));
}

uint32_t pool_tolerance(const Pool& p) {
  uint32_t tol = UINT32_MAX;  // a pool without containers holds no object
  for (const auto& [id, c] : p.containers) tol = std::min(tol, container_tolerance(c));
  return tol;
}

bool failed_target(const Pool& p, uint32_t rank, const placement::MapTarget& t) {
  if (t.state == TargetState::down) return true;
  // Damaged but kept in the map (taking it out would strand data): it serves nothing.
  if (placement::is_serving(t.state) && p.damage(rank, t.index) != nullptr) return true;
  if (t.state != TargetState::up) return false;
  for (const auto& se : p.map.settled) {
    if (se.rank != rank) continue;
    for (const auto& st : se.targets) {
      if (st.index == t.index) return placement::is_serving(st.state);
    }
  }
  return false;
}

std::string damage_text(const Pool& p) {
  std::string out;
  for (const auto& d : p.damaged) {
    out += fmt::format("{}target {}:{}: {}", out.empty() ? " (damaged: " : "; ", d.rank, d.target,
                       d.reason);
  }
  return out.empty() ? out : out + ")";
}

std::vector<std::pair<uint32_t, uint32_t>> reclaim_pending(const Pool& p,
                                                           const ReclaimReports& done) {
  std::vector<std::pair<uint32_t, uint32_t>> out;
  if (p.rebuild.gen == 0 || p.rebuild.state != "done" || p.map.moving()) return out;
  for (const auto& e : p.map.engines) {
    for (const auto& t : e.targets) {
      if (t.state == TargetState::down || t.state == TargetState::down_out ||
          t.state == TargetState::new_) {
        continue;  // serves nothing; a reintegration resets it or keeps it whole (rebuilt)
      }
      auto it = done.find({e.rank, t.index});
      if (it == done.end() || it->second <= p.rebuild.version) out.emplace_back(e.rank, t.index);
    }
  }
  return out;
}

std::string targets_text(const std::vector<std::pair<uint32_t, uint32_t>>& targets, size_t most) {
  std::string out;
  for (size_t i = 0; i < targets.size() && i < most; ++i) {
    out +=
        fmt::format("{}rank {} target {}", i == 0 ? "" : ", ", targets[i].first, targets[i].second);
  }
  if (targets.size() > most) out += fmt::format(" and {} more", targets.size() - most);
  return out;
}

uint32_t unrebuilt_failures(const Pool& p, uint32_t also) {
  uint32_t n = 0;
  for (const auto& e : p.map.engines) {
    bool down = e.rank == also;
    for (const auto& t : e.targets) down |= failed_target(p, e.rank, t);
    n += down ? 1 : 0;
  }
  return n;
}

bool exclusion_strands_data(const Pool& p, uint32_t rank) {
  if (unrebuilt_failures(p, rank) > pool_tolerance(p)) return true;
  // Also where the pool is already short of engines: targets out after a rebuild that had
  // nowhere to put their positions (a group as wide as the pool) still count against the
  // containers, as their health says.
  Pool after = p;
  if (placement::MapEngine* e = after.map.engine(rank)) {
    for (auto& t : e->targets) {
      if (placement::is_serving(t.state) || t.state == TargetState::up) t.state = TargetState::down;
    }
  }
  for (const auto& [id, c] : after.containers) {
    if (container_health(after, c).failed_engines > container_tolerance(c)) return true;
  }
  return false;
}

std::string Pool::redundancy(const std::set<uint32_t>& gone) const {
  // The worst of its containers': "normal" only when every object has all its copies.
  std::string worst = map.moving() ? "degraded" : "normal";
  for (const auto& e : map.engines) {
    for (const auto& t : e.targets) {
      if (t.state == TargetState::down || damage(e.rank, t.index) != nullptr ||
          (gone.count(e.rank) != 0 && placement::is_serving(t.state))) {
        worst = "degraded";
      }
    }
  }
  for (const auto& [id, c] : containers) {
    auto r = container_health(*this, c, gone).redundancy;
    if (r == "lost") return r;
    if (r == "degraded") worst = r;
  }
  return worst;
}

ContHealth container_health(const Pool& p, const Container& c, const std::set<uint32_t>& gone) {
  ContHealth h;
  // Failed engines: those with a target down that rebuild has not yet replaced, those that
  // are gone (stopped or dead) while their targets stay in the map, or, when the pool has too
  // few serving engines left to give every position of the container's object class its own
  // engine, the positions that have none.
  uint32_t serving = 0;
  for (const auto& e : p.map.engines) {
    bool failed = false, up = false;
    const bool away = gone.count(e.rank) != 0;
    for (const auto& t : e.targets) {
      failed |= failed_target(p, e.rank, t) || (away && placement::is_serving(t.state));
      up |= t.state == TargetState::up_in && !away;
    }
    h.failed_engines += failed ? 1 : 0;
    serving += up ? 1 : 0;
  }
  if (const auto* cls = placement::find_class(c.props.oclass); cls != nullptr) {
    if (serving < cls->group_size) {
      h.failed_engines = std::max(h.failed_engines, cls->group_size - serving);
    }
  }
  if (c.lost_data) {
    h.status = "UNCLEAN";
    h.redundancy = "lost";
  } else if (h.failed_engines == 0) {
    h.status = "HEALTHY";
    h.redundancy = "normal";
  } else if (h.failed_engines <= c.props.rf) {
    h.status = "HEALTHY";
    h.redundancy = "degraded";
  } else {
    h.status = "UNCLEAN";
    h.redundancy = "lost";
  }
  return h;
}

Status write_refusal(const Pool& p, const Container& c, const std::set<uint32_t>& gone) {
  const ContHealth h = container_health(p, c, gone);
  if (h.status != "UNCLEAN") return Status();
  if (c.lost_data) {
    return Status(Errc::rf_exceeded,
                  fmt::format("container '{}' is UNCLEAN: a rebuild of pool '{}' found it had "
                              "lost more engines than its redundancy factor {}, so some of its "
                              "data may be lost; it takes no write until an operator has "
                              "checked it and set status=healthy (reads go on)",
                              c.props.label, p.label, c.props.rf));
  }
  return Status(Errc::rf_exceeded,
                fmt::format("container '{}' is UNCLEAN: {} engines of pool '{}' have failed in "
                            "pool map version {}, more than its redundancy factor {}{}: it "
                            "takes no write until they are back (reads go on)",
                            c.props.label, h.failed_engines, p.label, p.map.version, c.props.rf,
                            damage_text(p)));
}

std::set<uint32_t> MgmtState::gone_ranks() const {
  std::set<uint32_t> out;
  for (const auto& [r, m] : members_) {
    if (m.state != MemberState::joined) out.insert(r);
  }
  return out;
}

json MgmtState::to_json() const {
  json ms = json::array();
  for (const auto& [r, m] : members_) {
    ms.push_back({{"rank", m.rank},
                  {"host", m.host},
                  {"control_addr", m.control_addr},
                  {"metrics_addr", m.metrics_addr},
                  {"provider", m.provider},
                  {"fabric_addrs", to_hex_list(m.fabric_addrs)},
                  {"state", std::string(member_state_name(m.state))},
                  {"incarnation", m.incarnation},
                  {"pid", m.pid}});
  }
  json ps = json::array();
  for (const auto& [id, p] : pools_) {
    json cs = json::array();
    for (const auto& [cid, k] : p.containers) {
      json snaps = json::array();
      for (const auto& s : k.snapshots) snaps.push_back({{"epoch", s.epoch}, {"name", s.name}});
      cs.push_back({{"id", k.id},
                    {"uuid", k.uuid},
                    {"props", props_json(k.props)},
                    {"acl", acl_json(k.acl)},
                    {"attrs", k.attrs},
                    {"snapshots", snaps},
                    {"created_epoch", k.created_epoch},
                    {"lost_data", k.lost_data}});
    }
    json pj{{"id", p.id},
            {"uuid", p.uuid},
            {"label", p.label},
            {"target_bytes", p.target_bytes},
            {"map", map_json(p.map)},
            {"acl", acl_json(p.acl)},
            {"props", p.props},
            {"rebuild", rebuild_json(p.rebuild)},
            {"containers", cs}};
    if (!p.damaged.empty()) {
      json ds = json::array();
      for (const auto& d : p.damaged) {
        ds.push_back(
            {{"rank", d.rank}, {"target", d.target}, {"reason", d.reason}, {"at_ms", d.at_ms}});
      }
      pj["damaged"] = ds;
    }
    ps.push_back(std::move(pj));
  }
  json hs = json::array();
  for (const auto& [k, h] : handles_) {
    hs.push_back(handle_json(h));
  }
  return {{"format", kStateFormat}, {"applied", applied_}, {"next_pool_id", next_pool_id_},
          {"members", ms},          {"pools", ps},         {"handles", hs}};
}

Result<MgmtState> MgmtState::from_json(const json& j) {
  try {
    const int format = j.at("format").get<int>();
    if (format == 1) {
      // Its snapshot and container epochs count microseconds since 1970 (core/env.hpp).
      return bad(
          "management state format 1 holds epochs of the clock that wraps in 2032; this release "
          "(format 2) counts epochs from 2021, and its engines refuse the targets written with "
          "the old clock too: copy the data out with the release that wrote it and start a new "
          "system");
    }
    if (format != kStateFormat) {
      return bad(fmt::format("unknown management state format {} (this release reads {})", format,
                             kStateFormat));
    }
    MgmtState s;
    s.applied_ = j.at("applied").get<uint64_t>();
    s.next_pool_id_ = j.at("next_pool_id").get<uint32_t>();
    for (const auto& m : j.at("members")) {
      Member x = member_from_json(m);
      std::string st = m.at("state").get<std::string>();
      auto ms = parse_member_state(st);
      if (!ms) return bad("unknown member state " + st);
      x.state = *ms;
      x.incarnation = m.at("incarnation").get<uint64_t>();
      s.members_[x.rank] = std::move(x);
    }
    for (const auto& pj : j.at("pools")) {
      Pool p;
      p.id = pj.at("id").get<uint32_t>();
      p.uuid = pj.at("uuid").get<std::string>();
      p.label = pj.at("label").get<std::string>();
      p.target_bytes = pj.at("target_bytes").get<uint64_t>();
      auto m = map_from_json(pj.at("map"));
      if (!m) return m.status();
      p.map = std::move(*m);
      auto acl = acl_from_json(pj.at("acl"));
      if (!acl) return acl.status();
      p.acl = std::move(*acl);
      p.props = pj.at("props").get<std::map<std::string, std::string>>();
      if (pj.contains("rebuild")) p.rebuild = rebuild_from_json(pj.at("rebuild"));
      if (pj.contains("damaged")) {
        for (const auto& dj : pj.at("damaged")) {
          p.damaged.push_back({dj.at("rank").get<uint32_t>(), dj.at("target").get<uint32_t>(),
                               dj.at("reason").get<std::string>(), dj.value("at_ms", uint64_t{0})});
        }
      }
      for (const auto& kj : pj.at("containers")) {
        Container k;
        k.id = kj.at("id").get<uint32_t>();
        k.uuid = kj.at("uuid").get<std::string>();
        auto props = props_from_json(kj.at("props"));
        if (!props) return props.status();
        k.props = std::move(*props);
        auto cacl = acl_from_json(kj.at("acl"));
        if (!cacl) return cacl.status();
        k.acl = std::move(*cacl);
        k.attrs = kj.at("attrs").get<std::map<std::string, std::string>>();
        for (const auto& sj : kj.at("snapshots")) {
          k.snapshots.push_back({sj.at("epoch").get<uint64_t>(), sj.at("name").get<std::string>()});
        }
        k.created_epoch = kj.at("created_epoch").get<uint64_t>();
        k.lost_data = kj.value("lost_data", false);
        p.containers[k.id] = std::move(k);
      }
      s.pools_[p.id] = std::move(p);
    }
    for (const auto& hj : j.at("handles")) {
      Handle h = handle_from_json(hj);
      h.pool = hj.at("pool").get<uint32_t>();
      h.cont = hj.at("cont").get<uint32_t>();
      s.add_handle(h);
    }
    return s;
  } catch (const std::exception& e) {
    return bad(std::string("malformed management state: ") + e.what());
  }
}

}  // namespace tessera::mgmt

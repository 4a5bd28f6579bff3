// tessera pool ...: pools of a system (create, list, query with space, destroy, ACLs, properties).
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <thread>

#include <unistd.h>

#include "apps/cli/common.hpp"
#include "apps/cli/progress.hpp"
#include "core/config.hpp"
#include "placement/layout.hpp"

namespace tessera::cli {

namespace {

struct PoolArgs {
  std::string pool;
  std::string size;
  std::string target_size;
  std::vector<uint32_t> ranks;
  bool force = false;
  bool recursive = false;
  bool no_space = false;
  std::string prop;
  std::string value;
  int32_t target = -1;
  double wait_s = 0;
  bool wait = false;  // exclude, drain, reintegrate, extend: until the rebuild is done
  std::string cont;    // evict: only this container's handles
  std::string handle;  // evict: only this handle (its id as `cont query` shows it)
};

constexpr uint64_t kDefaultTargetBytes = 256ull << 20;

int pool_create(Globals& g, const PoolArgs& a) {
  const char* what = "pool create";
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), what);
  if (!a.size.empty() && !a.target_size.empty()) {
    return fail(g, Status(Errc::invalid_argument, "give --size or --target-size, not both"), what);
  }
  // The engines the pool goes on: --size divides among their targets, and the bar asks them
  // how far their formatting is.
  auto members = mc->system_query();
  std::vector<std::string> engines;
  uint64_t chosen_targets = 0;
  if (members) {
    for (const auto& m : *members) {
      bool chosen = a.ranks.empty() ? m.state == mgmt::MemberState::joined
                                    : std::count(a.ranks.begin(), a.ranks.end(), m.rank) > 0;
      if (!chosen) continue;
      engines.push_back(m.control_addr);
      chosen_targets += m.fabric_addrs.size();
    }
  }
  uint64_t target_bytes = kDefaultTargetBytes;
  if (!a.target_size.empty()) {
    auto b = parse_size(a.target_size);
    if (!b) return fail(g, b.status(), what);
    target_bytes = *b;
  } else if (!a.size.empty()) {
    auto total = parse_size(a.size);
    if (!total) return fail(g, total.status(), what);
    if (!members) return fail(g, members.status(), what);
    if (chosen_targets == 0) {
      return fail(g, Status(Errc::unavailable, "no joined engine to put the pool on"), what);
    }
    // Whole MiB per target, rounded up: the pool holds at least the size asked for
    // (1G over 6 targets: 171 MiB each, 1026 MiB in all).
    constexpr uint64_t kMiB = 1u << 20;
    target_bytes = (*total + chosen_targets * kMiB - 1) / (chosen_targets * kMiB) * kMiB;
  }
  target_bytes &= ~uint64_t{(1u << 20) - 1};  // whole MiB per target
  // Every target formats its share (the whole file is written once): seconds for large pools.
  // The engines tell how far their targets are (system info); the bar adds them up.
  auto pending = std::async(std::launch::async, [&] {
    return mc->pool_create(a.pool, target_bytes, a.ranks);
  });
  Result<mgmt::PoolView> v = Status(Errc::internal, "no answer");
  {
    ProgressLine line(g);
    const auto t0 = std::chrono::steady_clock::now();
    auto secs = [&] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    // Per engine, the most it reported: one that finished reports 0 of 0 again.
    std::vector<std::pair<uint64_t, uint64_t>> seen(engines.size());
    uint64_t done_bytes = 0, total = 0;
    const std::string text = "formatting pool " + a.pool;
    while (pending.wait_for(line.poll()) != std::future_status::ready) {
      done_bytes = total = 0;
      for (size_t i = 0; i < engines.size(); ++i) {
        if (auto info = query_system(engines[i], std::chrono::milliseconds(2000))) {
          seen[i].first = std::max(seen[i].first, info->format_done);
          seen[i].second = std::max(seen[i].second, info->format_total);
        }
        done_bytes += seen[i].first;
        total += seen[i].second;
      }
      if (total == 0) {
        line.working(text);
      } else {
        line.bytes(done_bytes, total, static_cast<double>(done_bytes) / secs(), text);
      }
    }
    v = pending.get();
    if (v) {  // every target of the pool formatted its file
      uint64_t all = 0;
      for (const auto& e : v->pool.map.engines) all += e.targets.size() * v->pool.target_bytes;
      line.bytes(all, all, static_cast<double>(all) / secs(),
                 fmt::format("formatted in {}", duration_text(secs())), true);
    }
  }
  if (!v) return fail(g, v.status(), what);
  size_t targets = 0;
  for (const auto& e : v->pool.map.engines) targets += e.targets.size();
  return done(g, {{"pool", pool_json(*v)}}, [&] {
    std::printf("created pool %s (%s): %zu engines, %zu targets x %s = %s\n", v->pool.label.c_str(),
                v->pool.uuid.c_str(), v->pool.map.engines.size(), targets,
                human(v->pool.target_bytes).c_str(), human(v->pool.target_bytes * targets).c_str());
  });
}

int pool_list(Globals& g) {
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), "pool list");
  auto pools = mc->pool_list();
  if (!pools) return fail(g, pools.status(), "pool list");
  json arr = json::array();
  for (const auto& p : *pools) arr.push_back(pool_json(p));
  return done(g, {{"pools", arr}}, [&] {
    if (pools->empty()) {
      std::printf("no pools (tessera pool create LABEL)\n");
      return;
    }
    std::printf("%-16s %-36s %-8s %-8s %-10s %-6s %s\n", "label", "uuid", "engines", "targets",
                "per target", "map", "containers");
    for (const auto& v : *pools) {
      size_t targets = 0;
      for (const auto& e : v.pool.map.engines) targets += e.targets.size();
      std::printf("%-16s %-36s %-8zu %-8zu %-10s v%-5u %zu\n", v.pool.label.c_str(),
                  v.pool.uuid.c_str(), v.pool.map.engines.size(), targets,
                  human(v.pool.target_bytes).c_str(), v.pool.map.version, v.conts.size());
    }
  });
}

// Space of one tier summed over the targets that answered.
struct Tier {
  uint64_t total = 0, used = 0, min_free = UINT64_MAX, max_free = 0;
  void add(uint64_t cap, uint64_t use) {
    total += cap;
    used += use;
    uint64_t free = cap > use ? cap - use : 0;
    min_free = std::min(min_free, free);
    max_free = std::max(max_free, free);
  }
  json to_json(const char* name) const {
    return {{"tier", name},
            {"total", total},
            {"used", used},
            {"free", total - std::min(total, used)},
            {"min_target_free", min_free == UINT64_MAX ? 0 : min_free},
            {"max_target_free", max_free}};
  }
};

int pool_query(Globals& g, const PoolArgs& a) {
  const char* what = "pool query";
  auto addr = mgmt_address(g);
  if (!addr) return fail(g, addr.status(), what);
  MgmtClient mc(*addr, g.timeout());
  auto v = mc.pool_query(a.pool);
  if (!v) return fail(g, v.status(), what);
  json j = pool_json(*v);
  std::map<std::string, size_t> states;
  for (const auto& e : v->pool.map.engines) {
    for (const auto& t : e.targets) ++states[std::string(placement::state_name(t.state))];
  }
  j["target_states"] = states;
  Tier data, log;
  struct {
    uint64_t stripes = 0, bytes = 0;
  } reencoded;
  struct {
    uint64_t damaged = 0, repaired = 0, unrepaired = 0;
  } repair;
  struct {
    uint64_t passes = 0, scrubs = 0, inconsistent = 0, fixed = 0;
  } check;
  struct {
    uint64_t dkeys = 0, akeys = 0, bytes = 0;
  } reclaimed;
  std::vector<PoolTargetSpace> space;
  if (!a.no_space) {
    ClientOptions co;
    co.engine = *addr;
    co.timeout = std::chrono::milliseconds(std::min(g.timeout_ms, 5000));
    auto client = Client::connect_system(co);
    if (!client) return fail(g, client.status(), what);
    space = (*client)->pool_space(*v);
    json targets = json::array();
    for (const auto& s : space) {
      json t{{"rank", s.rank}, {"target", s.target}, {"state", s.state}};
      if (s.stats) {
        data.add(s.stats->capacity, s.stats->used);
        log.add(s.stats->wal_capacity, s.stats->wal_used);
        t["data_capacity"] = s.stats->capacity;
        t["data_used"] = s.stats->used;
        t["log_capacity"] = s.stats->wal_capacity;
        t["log_used"] = s.stats->wal_used;
        t["objects"] = s.stats->objects;
        t["reencode"] = {{"passes", s.stats->reencode_passes},
                         {"stripes", s.stats->reencode_stripes},
                         {"copy_bytes_released", s.stats->reencode_copy_bytes}};
        if (!s.stats->reencode_error.empty()) t["reencode"]["error"] = s.stats->reencode_error;
        t["repair"] = {{"damaged", s.stats->repair_damaged},
                       {"repaired", s.stats->repair_repaired},
                       {"unrepaired", s.stats->repair_unrepaired},
                       {"scrubs", s.stats->scrubs}};
        if (!s.stats->repair_error.empty()) t["repair"]["error"] = s.stats->repair_error;
        t["check"] = {{"passes", s.stats->check_passes},
                      {"scrubs", s.stats->check_scrubs},
                      {"running", s.stats->check_running},
                      {"dkeys_done", s.stats->check_done},
                      {"dkeys_total", s.stats->check_total},
                      {"inconsistent", s.stats->check_inconsistent},
                      {"fixed", s.stats->check_fixed}};
        if (!s.stats->check_error.empty()) t["check"]["error"] = s.stats->check_error;
        t["reclaim"] = {{"passes", s.stats->reclaim_passes},
                        {"dkeys", s.stats->reclaim_dkeys},
                        {"akeys", s.stats->reclaim_akeys},
                        {"bytes", s.stats->reclaim_bytes}};
        if (!s.stats->reclaim_error.empty()) t["reclaim"]["error"] = s.stats->reclaim_error;
        reclaimed.dkeys += s.stats->reclaim_dkeys;
        reclaimed.akeys += s.stats->reclaim_akeys;
        reclaimed.bytes += s.stats->reclaim_bytes;
        check.passes += s.stats->check_passes;
        check.scrubs += s.stats->check_scrubs;
        check.inconsistent += s.stats->check_inconsistent;
        check.fixed += s.stats->check_fixed;
        repair.damaged += s.stats->repair_damaged;
        repair.repaired += s.stats->repair_repaired;
        repair.unrepaired += s.stats->repair_unrepaired;
        reencoded.stripes += s.stats->reencode_stripes;
        reencoded.bytes += s.stats->reencode_copy_bytes;
      } else {
        t["error"] = s.stats.status().to_string();
      }
      targets.push_back(t);
    }
    j["space"] = {data.to_json("data"), log.to_json("log")};
    j["targets"] = targets;
    j["reencode"] = {{"stripes", reencoded.stripes}, {"copy_bytes_released", reencoded.bytes}};
    j["repair"] = {{"damaged", repair.damaged},
                   {"repaired", repair.repaired},
                   {"unrepaired", repair.unrepaired}};
    j["reclaim"] = {
        {"dkeys", reclaimed.dkeys}, {"akeys", reclaimed.akeys}, {"bytes", reclaimed.bytes}};
    j["check"] = {{"passes", check.passes},
                  {"scrubs", check.scrubs},
                  {"inconsistent", check.inconsistent},
                  {"fixed", check.fixed}};
  }
  return done(g, {{"pool", j}}, [&] {
    const auto& p = v->pool;
    size_t n = 0;
    for (const auto& e : p.map.engines) n += e.targets.size();
    std::string st;
    for (const auto& [s, c] : states) st += fmt::format("{}{} {}", st.empty() ? "" : ", ", c, s);
    std::printf("pool %s (%s), id %u, map version %u\n", p.label.c_str(), p.uuid.c_str(), p.id,
                p.map.version);
    std::printf("%zu engines, %zu targets (%s), %s per target\n", p.map.engines.size(), n,
                st.c_str(), human(p.target_bytes).c_str());
    if (!a.no_space) {
      std::printf("%-6s %-12s %-12s %-12s %s\n", "tier", "total", "used", "free",
                  "free per target (min .. max)");
      for (auto [name, t] : {std::pair{"data", &data}, std::pair{"log", &log}}) {
        std::printf("%-6s %-12s %-12s %-12s %s .. %s\n", name, human(t->total).c_str(),
                    human(t->used).c_str(), human(t->total - std::min(t->total, t->used)).c_str(),
                    human(t->min_free == UINT64_MAX ? 0 : t->min_free).c_str(),
                    human(t->max_free).c_str());
      }
    }
    std::printf("targets:\n");
    for (const auto& e : p.map.engines) {
      std::string line;
      for (const auto& t : e.targets) {
        line += fmt::format("  {}:{} {}{}", e.rank, t.index, placement::state_name(t.state),
                            p.damage(e.rank, t.index) != nullptr ? " DAMAGED" : "");
        for (const auto& s : space) {
          if (s.rank == e.rank && s.target == t.index && !s.stats) line += " (no answer)";
        }
      }
      std::printf("  rank %u on %s:%s\n", e.rank, e.host.c_str(), line.c_str());
    }
    for (const auto& d : p.damaged) {
      std::printf("damaged: target %u:%u does not serve the pool: %s\n", d.rank, d.target,
                  d.reason.c_str());
    }
    std::printf("redundancy: %s; rebuild: %s\n", v->redundancy.c_str(),
                rebuild_line(j["rebuild"]).c_str());
    if (!v->reclaim_pending.empty()) {
      std::printf(
          "aggregation held until former homes drop what they no longer hold: waiting "
          "for %s\n",
          v->reclaim_pending.c_str());
    }
    if (!a.no_space) {
      std::printf(
          "erasure coding: %llu stripes of partial-stripe copies re-encoded (%s of copies "
          "released)\n",
          static_cast<unsigned long long>(reencoded.stripes), human(reencoded.bytes).c_str());
      if (reclaimed.dkeys + reclaimed.akeys > 0) {
        std::printf(
            "reclaimed since the engines started (data the map no longer places on its "
            "target): %llu dkeys, %llu akeys, %s\n",
            static_cast<unsigned long long>(reclaimed.dkeys),
            static_cast<unsigned long long>(reclaimed.akeys), human(reclaimed.bytes).c_str());
      }
      if (repair.damaged > 0) {
        std::printf("damaged pieces met since the engines started: %llu, %llu repaired, %llu "
                    "with no good copy\n",
                    static_cast<unsigned long long>(repair.damaged),
                    static_cast<unsigned long long>(repair.repaired),
                    static_cast<unsigned long long>(repair.unrepaired));
      }
      const auto sp = p.props.find("scrub");
      const bool timed = sp != p.props.end() && sp->second == "timed";
      if (timed || check.passes > 0) {
        std::printf("consistency checks since the engines started: %llu container passes (%llu "
                    "by the scrubber%s), %llu copies found disagreeing, %llu made to agree\n",
                    static_cast<unsigned long long>(check.passes),
                    static_cast<unsigned long long>(check.scrubs),
                    timed ? ", every scrub_freq seconds" : ", off",
                    static_cast<unsigned long long>(check.inconsistent),
                    static_cast<unsigned long long>(check.fixed));
      }
    }
    std::string conts;
    for (const auto& c : v->conts) conts += (conts.empty() ? "" : ", ") + c.c.props.label;
    std::printf("containers: %zu%s%s%s; open handles %u\n", v->conts.size(),
                conts.empty() ? "" : " (", conts.c_str(), conts.empty() ? "" : ")",
                v->open_handles);
  });
}

// pool exclude | drain | reintegrate | extend | rebuild start.
int pool_op(Globals& g, const PoolArgs& a, const std::string& op) {
  const std::string what = "pool " + op;
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), what);
  auto v = mc->pool_op(a.pool, op, a.ranks, a.target);
  if (!v) return fail(g, v.status(), what);
  json j = pool_json(*v);
  if (a.wait) {
    // The change is made; what remains is the data it moves.
    if (!g.json) {
      std::printf("pool %s: %s; map version %u; waiting for its rebuild\n", v->pool.label.c_str(),
                  op.c_str(), v->pool.map.version);
      std::fflush(stdout);  // before the progress line (stderr)
    }
    return wait_rebuild(g, *mc, a.pool, a.wait_s, what, [&j](json& out) { out["pool"] = j; });
  }
  return done(g, {{"pool", j}}, [&] {
    std::string who;
    for (uint32_t r : a.ranks) who += (who.empty() ? "" : ",") + std::to_string(r);
    if (a.target >= 0) who += ":" + std::to_string(a.target);
    std::printf("pool %s: %s%s%s; map version %u; rebuild %s\n", v->pool.label.c_str(), op.c_str(),
                who.empty() ? "" : " ", who.c_str(), v->pool.map.version,
                rebuild_line(j["rebuild"]).c_str());
  });
}

int pool_rebuild_wait(Globals& g, const PoolArgs& a) {
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), "pool rebuild wait");
  return wait_rebuild(g, *mc, a.pool, a.wait_s, "pool rebuild wait");
}

int pool_destroy(Globals& g, const PoolArgs& a) {
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), "pool destroy");
  Status st = mc->pool_destroy(a.pool, a.force, a.recursive);
  if (!st.is_ok()) return fail(g, st, "pool destroy");
  return done(g, {{"destroyed", a.pool}},
              [&] { std::printf("destroyed pool %s\n", a.pool.c_str()); });
}

int pool_evict(Globals& g, const PoolArgs& a) {
  const char* what = "pool evict";
  uint64_t id = 0;
  if (!a.handle.empty()) {
    char* end = nullptr;
    errno = 0;
    id = std::strtoull(a.handle.c_str(), &end, 16);
    if (errno != 0 || end == a.handle.c_str() || *end != '\0' || id == 0) {
      return fail(g,
                  Status(Errc::invalid_argument,
                         fmt::format("--handle '{}' is not a handle id (16 hex digits, as `tessera "
                                     "cont query` shows them)",
                                     a.handle)),
                  what);
    }
  }
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), what);
  auto n = mc->pool_evict(a.pool, a.cont, id);
  if (!n) return fail(g, n.status(), what);
  return done(g, {{"pool", a.pool}, {"evicted", *n}}, [&] {
    std::printf("evicted %u container handle(s) of pool %s%s\n", *n, a.pool.c_str(),
                a.cont.empty() ? "" : fmt::format(" container {}", a.cont).c_str());
  });
}

int pool_get_prop(Globals& g, const PoolArgs& a) {
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), "pool get-prop");
  auto v = mc->pool_query(a.pool);
  if (!v) return fail(g, v.status(), "pool get-prop");
  // Typed as everywhere else: target_bytes is a number, as in `pool query`.
  json props = json::object();
  for (const auto& [k, val] : v->pool.props) props[k] = val;
  props["label"] = v->pool.label;
  props["target_bytes"] = v->pool.target_bytes;
  if (!a.prop.empty()) {
    if (!props.contains(a.prop)) {
      return fail(
          g, Status(Errc::not_found, fmt::format("pool '{}' has no property '{}'", a.pool, a.prop)),
          "pool get-prop");
    }
    props = json{{a.prop, props[a.prop]}};
  }
  return done(g, {{"props", props}}, [&] {
    for (const auto& [k, val] : props.items()) {
      std::printf("%-16s %s\n", k.c_str(),
                  val.is_string() ? val.get<std::string>().c_str() : val.dump().c_str());
    }
  });
}

int pool_set_prop(Globals& g, const PoolArgs& a) {
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), "pool set-prop");
  Status st = mc->pool_set_prop(a.pool, a.prop, a.value);
  if (!st.is_ok()) return fail(g, st, "pool set-prop");
  return done(g, {{"prop", a.prop}, {"value", a.value}}, [&] {
    std::printf("pool %s: %s = %s\n", a.pool.c_str(), a.prop.c_str(), a.value.c_str());
  });
}

}  // namespace

namespace {

// "OWNER@", "alice@", "G:staff@" or a whole ACE, as the entry whose principal to remove.
// A principal to remove (USER@, G:GROUP@, OWNER@, GROUP@, EVERYONE@, or a whole entry); an
// error names what was typed, never the entry made from it.
Result<mgmt::Ace> parse_principal(const std::string& s) {
  if (s.rfind("A:", 0) == 0) return mgmt::parse_ace(s);
  const std::string entry = s.rfind("G:", 0) == 0 ? "A:G:" + s.substr(2) + ":r" : "A::" + s + ":r";
  auto ace = mgmt::parse_ace(entry);
  if (ace) return ace;
  std::string why = ace.status().message();
  const std::string made = "bad ACL entry '" + entry + "'";
  if (why.rfind(made, 0) == 0) why = why.substr(made.size() + 2);  // past "': "
  if (auto cut = why.find(" (expected"); cut != std::string::npos) why.resize(cut);
  return Status(Errc::invalid_argument,
                fmt::format("bad principal '{}': {} (expected USER@, G:GROUP@, OWNER@, GROUP@ or "
                            "EVERYONE@)",
                            s, why));
}

struct AclArgs {
  std::vector<std::string> entries;
  std::vector<std::string> removals;
  std::string file;
  bool replace = false;
};

Result<AclChange> acl_change(const AclArgs& a) {
  AclChange ch;
  ch.replace = a.replace;
  std::vector<std::string> lines = a.entries;
  if (!a.file.empty()) {
    auto text = read_input(a.file);
    if (!text) return text.status();
    size_t pos = 0;
    while (pos < text->size()) {
      size_t nl = text->find('\n', pos);
      std::string line = text->substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      pos = nl == std::string::npos ? text->size() : nl + 1;
      while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
      if (!line.empty() && line[0] != '#') lines.push_back(line);
    }
  }
  for (const auto& l : lines) {
    auto ace = mgmt::parse_ace(l);
    if (!ace) return ace.status();
    ch.set.push_back(*ace);
  }
  for (const auto& r : a.removals) {
    auto ace = parse_principal(r);
    if (!ace) return ace.status();
    ch.remove.push_back(*ace);
  }
  if (ch.set.empty() && ch.remove.empty() && !a.replace) {
    return Status(Errc::invalid_argument, "nothing to change: give --entry, --remove or --file");
  }
  return ch;
}

// get-acl (change null) or update-acl of a pool (cont empty) or a container.
int acl_cmd(Globals& g, const std::string& pool, const std::string& cont, const AclArgs* change) {
  const std::string what = std::string(cont.empty() ? "pool " : "cont ") +
                           (change != nullptr ? "update-acl" : "get-acl");
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), what);
  Result<mgmt::Acl> acl = Status(Errc::internal, "no ACL operation");
  if (change != nullptr) {
    auto ch = acl_change(*change);
    if (!ch) return fail(g, ch.status(), what);
    acl = mc->update_acl(pool, cont, *ch);
  } else {
    acl = mc->get_acl(pool, cont);
  }
  if (!acl) return fail(g, acl.status(), what);
  return done(g, {{"acl", acl_json(*acl)}}, [&] { print_acl(*acl); });
}

}  // namespace

void add_acl_commands(CLI::App* parent, Globals& g, const std::function<void(CLI::App*)>& args,
                      const std::string& pool, const std::string* cont) {
  auto a = std::make_shared<AclArgs>();
  const std::string noun = cont != nullptr ? "container" : "pool";
  auto run = [&g, &pool, cont](const AclArgs* change) {
    return acl_cmd(g, pool, cont != nullptr ? *cont : std::string(), change);
  };
  args(leaf(parent, g, "get-acl", "show the " + noun + "'s access control list",
            [run] { return run(nullptr); }));
  auto* upd = leaf(parent, g, "update-acl",
                   "add, replace or remove entries of the " + noun + "'s access control list",
                   [run, a] { return run(a.get()); });
  args(upd);
  upd->add_option("--entry", a->entries,
                  "ACE to add or replace, e.g. A::alice@:rw, A:G:staff@:r, A::EVERYONE@:r "
                  "(repeatable)")
      ->allow_extra_args(false);
  upd->add_option("-r,--remove", a->removals,
                  "principal whose entry to remove: OWNER@, GROUP@, EVERYONE@, alice@, G:staff@ "
                  "(repeatable)")
      ->allow_extra_args(false);
  upd->add_option("-f,--file", a->file, "ACEs one per line ('#' comments), as get-acl prints them");
  upd->add_flag("--replace", a->replace, "the entries given become the whole ACL");
}

void add_pool_commands(CLI::App& app, Globals& g) {
  auto* pool = app.add_subcommand("pool", "pools: storage on a set of engines");
  pool->require_subcommand(1);
  auto a = std::make_shared<PoolArgs>();
  auto pool_arg = [&](CLI::App* c) {
    c->add_option("pool", a->pool, "pool label or UUID")->required();
  };

  // The commands that start a rebuild can wait for it with its progress bar.
  auto wait_flags = [a](CLI::App* c) {
    c->add_flag("-w,--wait", a->wait,
                "wait for the rebuild this starts, with a progress bar (as `pool rebuild wait`)");
    c->add_option("--timeout-s", a->wait_s, "with --wait: give up waiting after this long");
  };

  auto* create = leaf(pool, g, "create", "create a pool on every joined engine (or --ranks)",
                      [&g, a] { return pool_create(g, *a); });
  create->add_option("label", a->pool, "label of the new pool")->required();
  create->add_option("--size", a->size, "total size, split evenly over the targets (e.g. 4G)");
  create->add_option("--target-size", a->target_size,
                     "size of each target's share (default 256M; at least 64M)");
  create->add_option("--ranks", a->ranks, "engines to use (default: every joined engine)")
      ->delimiter(',');

  leaf(pool, g, "list", "pools you may read", [&g] { return pool_list(g); });

  auto* query =
      leaf(pool, g, "query", "map version, state of every target, space per tier, containers",
           [&g, a] { return pool_query(g, *a); });
  pool_arg(query);
  query->add_flag("--no-space", a->no_space, "skip asking the targets for their space");

  auto* destroy = leaf(pool, g, "destroy", "destroy a pool and all its data",
                       [&g, a] { return pool_destroy(g, *a); });
  pool_arg(destroy);
  destroy->add_flag("-f,--force", a->force, "even with open container handles");
  destroy->add_flag("-r,--recursive", a->recursive, "with the containers it still has");

  auto* evict = leaf(pool, g, "evict",
                     "close other clients' container handles: their I/O is refused from then on "
                     "(administrators)",
                     [&g, a] { return pool_evict(g, *a); });
  pool_arg(evict);
  evict->add_option("--cont", a->cont, "only the handles of this container");
  evict->add_option("--handle", a->handle, "only this handle (its id, as `cont query` shows it)");

  add_acl_commands(pool, g, pool_arg, a->pool, nullptr);

  add_pool_maintenance_commands(pool, g);

  struct Op {
    const char* name;
    const char* help;
  };
  for (auto op : {Op{"exclude",
                     "take ranks (or one target of each) out: down, then rebuilt "
                     "elsewhere (down-out)"},
                  Op{"drain",
                     "move the data of ranks (or one target of each) elsewhere, then "
                     "take them out (drain -> down-out)"},
                  Op{"reintegrate",
                     "bring repaired ranks back: stale data dropped, layout "
                     "restored by rebuild (down-out -> up -> up-in)"}}) {
    auto* c = leaf(pool, g, op.name, op.help,
                   [&g, a, name = std::string(op.name)] { return pool_op(g, *a, name); });
    pool_arg(c);
    c->add_option("--rank,--ranks", a->ranks, "ranks (comma separated)")
        ->delimiter(',')
        ->required();
    c->add_option("--target", a->target, "only this target of each rank (default: all)");
    wait_flags(c);
  }
  auto* extend = leaf(pool, g, "extend", "add joined engines to the pool; rebuild rebalances",
                      [&g, a] { return pool_op(g, *a, "extend"); });
  pool_arg(extend);
  extend->add_option("--rank,--ranks", a->ranks, "ranks to add (comma separated)")
      ->delimiter(',')
      ->required();
  wait_flags(extend);
  auto* rb = pool->add_subcommand("rebuild", "the pool's rebuild: start it again, wait for it");
  rb->require_subcommand(1);
  auto* rstart = leaf(rb, g, "start",
                      "start a rebuild of the pool's moving data (a failed one "
                      "retries)",
                      [&g, a] { return pool_op(g, *a, "rebuild"); });
  pool_arg(rstart);
  auto* rwait = leaf(rb, g, "wait", "block with a progress bar until the rebuild is not busy",
                     [&g, a] { return pool_rebuild_wait(g, *a); });
  pool_arg(rwait);
  rwait->add_option("--timeout-s", a->wait_s, "give up after this long (default: never)");

  auto* getprop = leaf(pool, g, "get-prop", "show the pool's properties",
                       [&g, a] { return pool_get_prop(g, *a); });
  pool_arg(getprop);
  getprop->add_option("name", a->prop, "only this property");
  auto* setprop = leaf(pool, g, "set-prop",
                       "set a pool property: self_heal (none | exclude | exclude;rebuild), scrub "
                       "(off | timed), scrub_freq (seconds), scrub_share (percent)",
                       [&g, a] { return pool_set_prop(g, *a); });
  pool_arg(setprop);
  setprop->add_option("name", a->prop, "property")->required();
  setprop->add_option("value", a->value, "value")->required();
}

}  // namespace tessera::cli

// tessera status: the whole system at a glance, as `ceph -s` or `dmg system query` with
// `dmg pool list` give it: engines up and down, every pool's space, health and rebuild,
// containers that are not healthy, and what needs the operator (each with the command to run).
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

#include "apps/cli/common.hpp"
#include "placement/layout.hpp"

namespace tessera::cli {

namespace {

int status_cmd(Globals& g) {
  const char* what = "status";
  auto addr = mgmt_address(g);
  if (!addr) return fail(g, addr.status(), what);
  MgmtClient mc(*addr, g.timeout());
  auto members = mc.system_query();
  if (!members) return fail(g, members.status(), what);
  auto pools = mc.pool_list();
  if (!pools) return fail(g, pools.status(), what);
  json attention = json::array();
  bool errors = false;  // data lost or unreadable, as opposed to reduced redundancy

  // Engines.
  json down = json::array();
  size_t joined = 0;
  for (const auto& m : *members) {
    if (m.state == mgmt::MemberState::joined) {
      ++joined;
      continue;
    }
    const std::string state(mgmt::member_state_name(m.state));
    down.push_back({{"rank", m.rank}, {"state", state}, {"host", m.host}});
    attention.push_back(fmt::format("rank {} is {}: start it (tessera system start --ranks {}){}",
                                    m.rank, state, m.rank,
                                    m.state == mgmt::MemberState::stopped
                                        ? ""
                                        : ", then reintegrate it into its pools"));
  }

  // Pools: space (asked of every target), health, rebuild; containers that are not healthy.
  ClientOptions co;
  co.engine = *addr;
  co.timeout = std::chrono::milliseconds(std::min(g.timeout_ms, 5000));
  auto client = Client::connect_system(co);
  json jpools = json::array();
  json unhealthy = json::array();
  for (const auto& v : *pools) {
    const auto& p = v.pool;
    uint64_t total = 0, used = 0, unrepaired = 0;
    size_t answered = 0, targets = 0;
    if (client) {
      for (const auto& s : (*client)->pool_space(v)) {
        ++targets;
        if (!s.stats) continue;
        ++answered;
        total += s.stats->capacity;
        used += s.stats->used;
        unrepaired += s.stats->repair_unrepaired;
      }
    }
    std::map<std::string, size_t> states;
    for (const auto& e : p.map.engines) {
      for (const auto& t : e.targets) ++states[std::string(placement::state_name(t.state))];
    }
    json jp{{"label", p.label},
            {"uuid", p.uuid},
            {"space", {{"total", total}, {"used", used}, {"targets_answered", answered},
                       {"targets", targets}}},
            {"redundancy", v.redundancy},
            {"target_states", states},
            {"rebuild", rebuild_json(v)},
            {"containers", v.conts.size()}};
    jpools.push_back(jp);
    if (v.redundancy == "lost") errors = true;
    if (v.redundancy != "normal") {
      attention.push_back(fmt::format(
          "pool {}: redundancy {}{}", p.label, v.redundancy,
          p.rebuild.state == "busy"
              ? fmt::format(" (a rebuild is running: tessera pool rebuild wait {})", p.label)
              : ""));
    }
    if (p.rebuild.state == "failed") {
      attention.push_back(fmt::format("pool {}: rebuild generation {} failed ({}); it is retried "
                                      "by itself, or now: tessera pool rebuild start {}",
                                      p.label, p.rebuild.gen, p.rebuild.error, p.label));
    }
    if (total > 0 && used * 100 >= total * 90) {
      attention.push_back(fmt::format("pool {}: {}% full (tessera pool aggregate {} reclaims "
                                      "deleted data now)",
                                      p.label, used * 100 / total, p.label));
    }
    for (const auto& d : p.damaged) {
      errors = true;
      const auto st = p.map.state(d.rank, d.target);
      const bool out = st && !placement::is_serving(*st);
      attention.push_back(fmt::format(
          "pool {}: target {}:{} is damaged and not served ({}); {}tessera pool reintegrate {} "
          "--rank {} --target {} formats it anew",
          p.label, d.rank, d.target, d.reason,
          out ? "" : "it holds data nothing else has: tessera pool exclude accepts the loss, then ",
          p.label, d.rank, d.target));
    }
    if (unrepaired > 0) {
      attention.push_back(fmt::format("pool {}: {} damaged pieces not repaired (tessera pool "
                                      "scrub {})",
                                      p.label, unrepaired, p.label));
    }
    if (answered < targets) {
      attention.push_back(fmt::format("pool {}: {} of {} targets did not answer", p.label,
                                      targets - answered, targets));
    }
    for (const auto& c : v.conts) {
      if (c.health.status == "HEALTHY" && c.health.redundancy == "normal") continue;
      unhealthy.push_back({{"pool", p.label},
                           {"container", c.c.props.label},
                           {"status", c.health.status},
                           {"redundancy", c.health.redundancy},
                           {"failed_engines", c.health.failed_engines}});
      if (c.health.status != "HEALTHY") {
        errors = true;
        attention.push_back(fmt::format("container {} of pool {} is {} ({} failed engines)",
                                        c.c.props.label, p.label, c.health.status,
                                        c.health.failed_engines));
      }
    }
  }
  const std::string health = attention.empty() ? "HEALTH_OK" : errors ? "HEALTH_ERR" : "HEALTH_WARN";
  json out{{"health", health},
           {"engines", {{"total", members->size()}, {"joined", joined}, {"down", down}}},
           {"pools", jpools},
           {"unhealthy_containers", unhealthy},
           {"attention", attention}};
  return done(g, out, [&] {
    std::printf("health: %s\n", health.c_str());
    std::string d;
    for (const auto& x : down) {
      d += fmt::format("{}rank {} ({})", d.empty() ? "" : ", ", x["rank"].get<uint32_t>(),
                       x["state"].get<std::string>());
    }
    std::printf("engines: %zu, %zu joined%s\n", members->size(), joined,
                d.empty() ? "" : ("; down: " + d).c_str());
    std::printf("pools: %zu\n", jpools.size());
    for (const auto& p : jpools) {
      const uint64_t total = p["space"]["total"], used = p["space"]["used"];
      const json& rb = p["rebuild"];
      std::string rebuild = rb["state"].get<std::string>();
      if (rebuild == "busy") {
        const uint64_t moved = rb["bytes"].get<uint64_t>();
        const uint64_t of = rb["bytes_total"].get<uint64_t>();
        rebuild += rb["total_known"].get<bool>()
                       ? fmt::format(": {} of {} moved ({}%)", human(moved), human(of),
                                     of == 0 ? 100 : 100 * moved / of)
                       : fmt::format(": {} moved (counting the total)", human(moved));
      }
      std::printf("  %-16s %s used of %s (%.0f%%), redundancy %s, rebuild %s\n",
                  p["label"].get<std::string>().c_str(), human(used).c_str(), human(total).c_str(),
                  total > 0 ? 100.0 * static_cast<double>(used) / total : 0.0,
                  p["redundancy"].get<std::string>().c_str(), rebuild.c_str());
    }
    std::printf("containers not healthy:%s\n", unhealthy.empty() ? " none" : "");
    for (const auto& c : unhealthy) {
      std::printf("  %s/%s: %s, redundancy %s\n", c["pool"].get<std::string>().c_str(),
                  c["container"].get<std::string>().c_str(), c["status"].get<std::string>().c_str(),
                  c["redundancy"].get<std::string>().c_str());
    }
    std::printf("needs attention:%s\n", attention.empty() ? " nothing" : "");
    for (const auto& a : attention) std::printf("  - %s\n", a.get<std::string>().c_str());
  });
}

}  // namespace

void add_status_command(CLI::App& app, Globals& g) {
  leaf(&app, g, "status",
       "the whole system at a glance: engines up and down, every pool's space, health and "
       "rebuild, containers that are not healthy, and what needs the operator",
       [&g] { return status_cmd(g); });
}

}  // namespace tessera::cli

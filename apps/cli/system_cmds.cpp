// tessera system start|stop|kill|query: the local system of engines, and the membership of any
// system.
#include <signal.h>

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>

#include "apps/cli/common.hpp"
#include "apps/local_system.hpp"

namespace tessera::cli {

namespace {

std::string ranks_text(const std::vector<uint32_t>& ranks) {
  std::string s;
  for (uint32_t r : ranks) s += (s.empty() ? "" : ",") + std::to_string(r);
  return s.empty() ? "none" : s;
}

local::Progress progress(const Globals& g) {
  return [&g](const std::string& line) {
    if (!g.json) std::fprintf(stderr, "tessera: %s\n", line.c_str());
  };
}

struct StartArgs {
  local::StartOptions o;
  int wait_s = 60;
  std::string log_level;
};

int system_start(Globals& g, StartArgs& a) {
  local::StartOptions o = a.o;
  o.wait = std::chrono::seconds(a.wait_s);
  o.log_level = a.log_level;
  const std::string pointer = local::system_path(g.system);
  if (o.dir.empty()) {
    // Restart the system the system file names.
    auto sys = local::SystemFile::load(pointer);
    if (!sys) {
      return fail(g,
                  Status(Errc::invalid_argument, fmt::format("give --dir DIR for a new system ({})",
                                                             sys.status().message())),
                  "system start");
    }
    o.dir = sys->dir;
  }
  // The link later commands follow: --system when given; else the default
  // ~/.tessera/system.json, which `system start --dir` always points at the system it started
  // (never at $TESSERA_SYSTEM's file: that names a system of its own).
  const char* env = std::getenv("TESSERA_SYSTEM");
  const bool env_set = env != nullptr && *env != '\0';
  o.pointer =
      !g.system.empty() || !env_set || a.o.dir.empty() ? pointer : local::default_system_path();
  auto rep = local::start(o, progress(g));
  if (!rep) return fail(g, rep.status(), "system start");
  const auto& s = rep->sys;
  std::string note;
  if (g.system.empty() && env_set && !a.o.dir.empty()) {
    // $TESSERA_SYSTEM names this system (its directory or its file) or another one.
    std::error_code ec;
    const auto named = std::filesystem::weakly_canonical(env, ec);
    if (named != std::filesystem::weakly_canonical(s.dir, ec) &&
        named != std::filesystem::weakly_canonical(s.path, ec)) {
      note = fmt::format(
          "note: $TESSERA_SYSTEM names another system ({}); commands in this "
          "shell go there until you unset it or export TESSERA_SYSTEM={}",
          pointer, s.dir);
    }
  }
  if (!note.empty()) std::fprintf(stderr, "%s\n", note.c_str());
  json engines = json::array();
  for (const auto& e : s.engines) {
    engines.push_back(
        {{"rank", e.rank}, {"control", e.control}, {"pid", e.pid}, {"dir", e.dir}, {"log", e.log}});
  }
  return done(g,
              {{"dir", s.dir},
               {"system_file", s.path},
               {"mgmt", s.mgmt},
               {"provider", s.provider},
               {"targets", s.targets},
               {"started", rep->started},
               {"running", rep->running},
               {"engines", engines},
               {"note", note.empty() ? json(nullptr) : json(note)}},
              [&] {
                std::printf(
                    "system in %s: %zu engines x %u targets (%s), management service %s\n"
                    "started ranks %s; already running: %s\nsystem file %s (found by later "
                    "commands through %s)\n",
                    s.dir.c_str(), s.engines.size(), s.targets, s.provider.c_str(), s.mgmt.c_str(),
                    ranks_text(rep->started).c_str(), ranks_text(rep->running).c_str(),
                    s.path.c_str(), o.pointer.c_str());
              });
}

int system_stop(Globals& g, int grace_s) {
  const std::string path = local::system_path(g.system);
  auto sys = local::SystemFile::load(path);
  if (!sys) return fail(g, sys.status(), "system stop");
  auto stopped = local::stop(*sys, std::chrono::seconds(grace_s), progress(g));
  if (!stopped) return fail(g, stopped.status(), "system stop");
  return done(g, {{"dir", sys->dir}, {"stopped", *stopped}}, [&] {
    std::printf(
        "stopped ranks %s of the system in %s (data kept; `tessera system start` "
        "restarts it)\n",
        ranks_text(*stopped).c_str(), sys->dir.c_str());
  });
}

int system_query(Globals& g) {
  if (g.engine_given()) return engine_query(g);
  auto addr = mgmt_address(g);
  if (!addr) return fail(g, addr.status(), "system query");
  MgmtClient mc(*addr, g.timeout());
  auto members = mc.system_query();
  if (!members) return fail(g, members.status(), "system query");
  // A client endpoint renders the provider's raw addresses as text.
  ClientOptions co;
  co.engine = *addr;
  co.timeout = g.timeout();
  auto client = Client::connect_system(co);
  auto text = [&](const std::string& raw) {
    return client ? (*client)->printable_address(raw) : std::string("?");
  };
  // A local system's file says where each engine logs (a system of other hosts has none).
  std::map<uint32_t, std::string> logs;
  if (auto sys = local::SystemFile::load(local::system_path(g.system)); sys && sys->mgmt == *addr) {
    for (const auto& e : sys->engines) logs[e.rank] = e.log;
  }
  json ranks = json::array();
  for (const auto& m : *members) {
    json fabric = json::array();
    for (const auto& f : m.fabric_addrs) fabric.push_back(text(f));
    ranks.push_back({{"rank", m.rank},
                     {"host", m.host},
                     {"state", mgmt::member_state_name(m.state)},
                     {"control", m.control_addr},
                     {"metrics", m.metrics_addr.empty() ? json(nullptr) : json(m.metrics_addr)},
                     {"provider", m.provider},
                     {"pid", m.pid},
                     {"incarnation", m.incarnation},
                     {"targets", m.fabric_addrs.size()},
                     {"fabric_addresses", fabric},
                     {"log", logs.count(m.rank) != 0 ? json(logs[m.rank]) : json(nullptr)}});
  }
  // The access points, each asked itself (a standalone service has none).
  json aps = json::array();
  json leader = nullptr;
  const auto listed = mgmt::split_addresses(*addr);
  for (const std::string& a : listed) {
    auto v = mc.replica_info(a);
    if (!v && v.status().code() == Errc::unsupported && listed.size() == 1) break;
    if (!v) {
      // Its rank from the members' list: the engine that registered this control address.
      json rank = nullptr;
      for (const auto& m : *members) {
        if (m.control_addr == a) rank = m.rank;
      }
      aps.push_back({{"control", a},
                     {"rank", rank},
                     {"state", "unreachable"},
                     {"error", v.status().message()}});
      continue;
    }
    if (v->serving) leader = v->rank;
    aps.push_back({{"control", a},
                   {"rank", v->rank},
                   {"state", v->serving ? "leader" : v->role},
                   {"leader_rank", v->leader_rank < 0 ? json(nullptr) : json(v->leader_rank)},
                   {"term", v->term},
                   {"last_index", v->last_index},
                   {"applied", v->applied}});
  }
  return done(
      g, {{"mgmt", *addr}, {"access_points", aps}, {"leader", leader}, {"ranks", ranks}}, [&] {
        std::printf("management service %s: %zu ranks\n", addr->c_str(), members->size());
        if (!aps.empty()) {
          std::printf(
              "%zu access points; leader: %s\n", aps.size(),
              leader.is_null() ? "none" : fmt::format("rank {}", leader.get<uint32_t>()).c_str());
          std::printf("  %-5s %-22s %-11s %-6s %-10s %s\n", "rank", "control", "state", "term",
                      "log index", "applied");
          for (const auto& ap : aps) {
            if (ap.contains("error")) {
              const std::string rank =
                  ap["rank"].is_null() ? "?" : std::to_string(ap["rank"].get<uint32_t>());
              std::printf("  %-5s %-22s %-11s %s\n", rank.c_str(),
                          ap["control"].get<std::string>().c_str(), "unreachable",
                          ap["error"].get<std::string>().c_str());
              continue;
            }
            std::printf("  %-5u %-22s %-11s %-6lu %-10lu %lu\n", ap["rank"].get<uint32_t>(),
                        ap["control"].get<std::string>().c_str(),
                        ap["state"].get<std::string>().c_str(), ap["term"].get<unsigned long>(),
                        ap["last_index"].get<unsigned long>(), ap["applied"].get<unsigned long>());
          }
        }
        std::printf("%-5s %-9s %-16s %-8s %-5s %-22s %-22s %s\n", "rank", "state", "host", "pid",
                    "inc", "control", "metrics", "fabric addresses (per target)");
        for (const auto& r : ranks) {
          std::string f;
          for (const auto& x : r["fabric_addresses"])
            f += (f.empty() ? "" : " ") + x.get<std::string>();
          std::printf("%-5u %-9s %-16s %-8lu %-5lu %-22s %-22s %s\n", r["rank"].get<uint32_t>(),
                      r["state"].get<std::string>().c_str(), r["host"].get<std::string>().c_str(),
                      r["pid"].get<unsigned long>(), r["incarnation"].get<unsigned long>(),
                      r["control"].get<std::string>().c_str(),
                      r["metrics"].is_null() ? "off" : r["metrics"].get<std::string>().c_str(),
                      f.c_str());
        }
        for (const auto& r : ranks) {
          if (!r["log"].is_null()) {
            std::printf("rank %u log: %s\n", r["rank"].get<uint32_t>(),
                        r["log"].get<std::string>().c_str());
          }
        }
      });
}

int system_kill(Globals& g, uint32_t rank, const std::string& signame, bool force) {
  static const std::map<std::string, int> kSignals = {
      {"KILL", SIGKILL}, {"TERM", SIGTERM}, {"STOP", SIGSTOP}, {"CONT", SIGCONT}};
  auto it = kSignals.find(signame);
  if (it == kSignals.end()) {
    return fail(g,
                Status(Errc::invalid_argument,
                       fmt::format("unknown signal '{}' (KILL, TERM, STOP or CONT)", signame)),
                "system kill");
  }
  auto sys = local::SystemFile::load(local::system_path(g.system));
  if (!sys) return fail(g, sys.status(), "system kill");
  // With access points, rank 0 is one of several: the others go on without it.
  const bool sole_host = sys->access_points.empty();
  if (sole_host && rank == 0 && (it->second == SIGKILL || it->second == SIGSTOP) && !force) {
    return fail(g,
                Status(Errc::invalid_argument,
                       "rank 0 hosts the management service: without it every pool and "
                       "container command, and failure handling, stop until it is back; add "
                       "--force to do it anyway"),
                "system kill");
  }
  if (sole_host && rank == 0 && it->second == SIGTERM && !g.json) {
    std::fprintf(stderr,
                 "stopping rank 0: the management service is unavailable until "
                 "`tessera system start --ranks 0`\n");
  }
  auto pid = local::kill_engine(*sys, rank, it->second);
  if (!pid) return fail(g, pid.status(), "system kill");
  return done(g, {{"rank", rank}, {"pid", *pid}, {"signal", signame}}, [&] {
    std::printf("sent SIG%s to rank %u (pid %d)%s\n", signame.c_str(), rank, *pid,
                it->second == SIGKILL ? "; it is gone" : "");
  });
}

int target_stop(Globals& g, uint32_t rank, uint32_t target) {
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), "system stop-target");
  Status st = mc->target_stop(rank, target);
  if (!st.is_ok()) return fail(g, st, "system stop-target");
  return done(g, {{"rank", rank}, {"target", target}, {"stopped", true}}, [&] {
    std::printf(
        "rank %u target %u stopped: it refuses I/O and is down in every pool map (`tessera pool "
        "reintegrate POOL --rank %u --target %u` brings it back)\n",
        rank, target, rank, target);
  });
}

int rank_exclude(Globals& g, uint32_t rank, bool exclude) {
  const char* what = exclude ? "system exclude" : "system clear-exclude";
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), what);
  Status st = mc->rank_exclude(rank, exclude);
  if (!st.is_ok()) return fail(g, st, what);
  return done(g, {{"rank", rank}, {"excluded", exclude}}, [&] {
    std::printf(exclude ? "rank %u excluded: its targets are down in every pool map\n"
                        : "rank %u may join again (its targets stay down until reintegrated)\n",
                rank);
  });
}

}  // namespace

void add_system_commands(CLI::App& app, Globals& g) {
  auto* sys = app.add_subcommand("system", "start, stop and query a system of engines");
  sys->require_subcommand(1);

  auto a = std::make_shared<StartArgs>();
  auto* start = leaf(sys, g, "start",
                     "start N engines on 127.0.0.1 in the background (or restart the missing "
                     "ones of an existing DIR) and wait until all joined",
                     [&g, a] { return system_start(g, *a); });
  start->add_option("-d,--dir", a->o.dir,
                    "directory of the system: data, logs, system.json (default: the system "
                    "file's, to restart it)");
  start->add_option("-n,--engines", a->o.engines, "engines (default 3, or as recorded)");
  start
      ->add_option("--access-points", a->o.access_points,
                   "a new system: replicate the management service on this many engines "
                   "(ranks 0..N-1; 3 or 5 survive the loss of 1 or 2; default: rank 0 alone)")
      ->check(CLI::Range(1, 7));
  start->add_option("--targets", a->o.targets, "targets per engine (default 2, or as recorded)");
  start->add_option("-p,--provider", a->o.provider,
                    "libfabric provider: tcp;ofi_rxm (default) or shm");
  start
      ->add_option("--scratch-size", a->o.scratch_size,
                   "each target's scratch store (engine mode; pools have their own)")
      ->capture_default_str();
  start->add_option("--server", a->o.server, "tessera-server binary (default: beside tessera)");
  start->add_option("--wait-s", a->wait_s, "seconds to wait for the engines to join")
      ->capture_default_str();
  start
      ->add_option("--ranks", a->o.only,
                   "start only these ranks of the recorded system (e.g. one a drill killed)")
      ->delimiter(',');
  start->add_option("--log-level", a->log_level, "engines' log level: debug, info, warn, error");
  start->add_flag("--insecure", a->o.insecure,
                  "a new system without keys or agent: nothing is authenticated (development "
                  "only; every engine logs it)");
  start
      ->add_option("--engine-arg", a->o.engine_args,
                   "one more tessera-server flag for every engine (repeatable; recorded: a "
                   "restart without it passes the recorded ones again, with it replaces them)")
      ->allow_extra_args(false);

  auto grace = std::make_shared<int>(30);
  auto* stop =
      leaf(sys, g, "stop", "stop every engine of the local system (data kept; start restarts it)",
           [&g, grace] { return system_stop(g, *grace); });
  stop->add_option("--grace-s", *grace, "seconds before a stopping engine is killed")
      ->capture_default_str();

  auto kill = std::make_shared<std::pair<uint32_t, std::string>>(0, "KILL");
  auto kill_force = std::make_shared<bool>(false);
  auto* killc = leaf(
      sys, g, "kill",
      "signal one engine of the local system (default SIGKILL, as a crash would; "
      "`system start --ranks R` restarts it)",
      [&g, kill, kill_force] { return system_kill(g, kill->first, kill->second, *kill_force); });
  killc->add_option("-r,--rank", kill->first, "the rank")->required();
  killc->add_option("--signal", kill->second, "KILL, TERM, STOP or CONT")->capture_default_str();
  killc->add_flag("--force", *kill_force,
                  "kill or pause rank 0, the management service's host, anyway");

  auto rt = std::make_shared<std::pair<uint32_t, uint32_t>>(0, 0);
  auto* stopt = leaf(sys, g, "stop-target",
                     "stop one target of an engine as a failed device would: it refuses I/O, "
                     "every pool map marks it down and the rebuild restores redundancy",
                     [&g, rt] { return target_stop(g, rt->first, rt->second); });
  stopt->add_option("-r,--rank", rt->first, "the rank")->required();
  stopt->add_option("-t,--target", rt->second, "the target index")->required();

  auto rank = std::make_shared<uint32_t>(0);
  for (bool exclude : {true, false}) {
    auto* c = leaf(sys, g, exclude ? "exclude" : "clear-exclude",
                   exclude ? "take a rank out of the system: its targets go down in every pool "
                             "map and it may not join again until clear-exclude"
                           : "let an excluded rank join again",
                   [&g, rank, exclude] { return rank_exclude(g, *rank, exclude); });
    c->add_option("-r,--rank", *rank, "the rank")->required();
  }

  leaf(sys, g, "query",
       "ranks, hosts, states and addresses of the system (with --engine: one engine)",
       [&g] { return system_query(g); });
  add_top_command(sys, g);
}

}  // namespace tessera::cli

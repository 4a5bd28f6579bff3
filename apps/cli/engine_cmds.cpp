// Engine mode: one engine's description and its targets' store maintenance.
#include <algorithm>
#include <fmt/format.h>

#include <cstdio>

#include "apps/cli/common.hpp"

namespace tessera::cli {

namespace {

Result<std::unique_ptr<Client>> connect_engine(const Globals& g) {
  ClientOptions o;
  o.engine = g.engine;
  o.timeout = g.timeout();
  return Client::connect(o);
}

json stats_json(uint32_t t, const StoreTargetStats& r) {
  return {{"target", t},
          {"capacity", r.capacity},
          {"used", r.used},
          {"checkpoint_bytes", r.checkpoint_bytes},
          {"pending_free", r.pending_free},
          {"reserve", r.reserve},
          {"wal_used", r.wal_used},
          {"wal_capacity", r.wal_capacity},
          {"objects", r.objects},
          {"versions", r.versions},
          {"updates", r.updates},
          {"fetches", r.fetches},
          {"checkpoints", r.checkpoints},
          {"aggregations", r.aggregations},
          {"aggregation_epoch", epoch_json(r.aggregation_epoch)},
          {"recovery_ms", r.recovery_ms},
          {"backend", r.backend}};
}

struct TargetArgs {
  int64_t rank = -1;  // find the engine through the system (its management service)
  uint32_t index = 0;
  bool all = false;
  uint64_t epoch = 0;
  std::vector<uint64_t> protect;
};

enum class TargetOp { stats, aggregate, checkpoint };

// `g` aimed at the engine of rank `rank` as the system's management service knows it (rank < 0:
// `g` as it is, the engine given by --engine or $TESSERA_ENGINE).
Result<Globals> engine_of_rank(const Globals& g, int64_t rank) {
  Globals eg = g;
  if (rank < 0) return eg;
  auto addr = mgmt_address(g);
  if (!addr) return addr.status();
  auto members = MgmtClient(*addr, g.timeout()).system_query();
  if (!members) return members.status();
  auto m = std::find_if(members->begin(), members->end(),
                        [&](const mgmt::Member& x) { return x.rank == rank; });
  if (m == members->end()) {
    return Status(Errc::not_found, fmt::format("the system has no rank {}", rank));
  }
  eg.engine = m->control_addr;
  return eg;
}

int target_cmd(Globals& g, const TargetArgs& a, TargetOp op) {
  const char* what = op == TargetOp::stats       ? "target stats"
                     : op == TargetOp::aggregate ? "target aggregate"
                                                 : "target checkpoint";
  auto eg = engine_of_rank(g, a.rank);
  if (!eg) return fail(g, eg.status(), what);
  auto client = connect_engine(*eg);
  if (!client) return fail(g, client.status(), "connect");
  Client& c = **client;
  std::vector<uint32_t> targets;
  if (a.all) {
    for (const auto& t : c.system().targets) targets.push_back(t.index);
  } else {
    if (a.index >= c.system().targets.size()) {
      return fail(g,
                  Status(Errc::invalid_argument,
                         fmt::format("the engine has {} targets; there is no target {}",
                                     c.system().targets.size(), a.index)),
                  what);
    }
    targets.push_back(a.index);
  }
  json out = json::array();
  for (uint32_t t : targets) {
    if (op == TargetOp::stats) {
      auto r = c.stats_async(t).get();
      if (!r) return fail(g, r.status(), what);
      if (!g.json) {
        std::printf(
            "target %u: data %s of %s used (checkpoint %s, awaiting checkpoint %s, reserve "
            "%s); log %s of %s; %lu objects, %lu versions; %lu checkpoints, %lu "
            "aggregations; recovered in %.0f ms\n",
            t, human(r->used).c_str(), human(r->capacity).c_str(),
            human(r->checkpoint_bytes).c_str(), human(r->pending_free).c_str(),
            human(r->reserve).c_str(), human(r->wal_used).c_str(), human(r->wal_capacity).c_str(),
            static_cast<unsigned long>(r->objects), static_cast<unsigned long>(r->versions),
            static_cast<unsigned long>(r->checkpoints), static_cast<unsigned long>(r->aggregations),
            r->recovery_ms);
      }
      out.push_back(stats_json(t, *r));
    } else if (op == TargetOp::aggregate) {
      auto r = c.aggregate_async(t, a.epoch, a.protect).get();
      if (!r) return fail(g, r.status(), what);
      if (!g.json) {
        std::printf(
            "target %u: aggregated to epoch %lu: %lu akeys scanned, %lu versions dropped, %lu "
            "trimmed, %s freed\n",
            t, static_cast<unsigned long>(r->epoch), static_cast<unsigned long>(r->akeys_scanned),
            static_cast<unsigned long>(r->versions_dropped),
            static_cast<unsigned long>(r->versions_trimmed), human(r->bytes_freed).c_str());
      }
      out.push_back({{"target", t},
                     {"epoch", epoch_json(r->epoch)},
                     {"akeys_scanned", r->akeys_scanned},
                     {"versions_dropped", r->versions_dropped},
                     {"versions_trimmed", r->versions_trimmed},
                     {"punches_dropped", r->punches_dropped},
                     {"keys_removed", r->keys_removed},
                     {"bytes_freed", r->bytes_freed}});
    } else {
      auto r = c.checkpoint_async(t).get();
      if (!r) return fail(g, r.status(), what);
      if (!g.json) std::printf("target %u: checkpoint written\n", t);
      out.push_back({{"target", t}, {"checkpoint", true}});
    }
  }
  return done(g, {{"targets", out}}, nullptr);
}

}  // namespace

int engine_query(const Globals& given, int64_t rank) {
  auto eg = engine_of_rank(given, rank);
  if (!eg) return fail(given, eg.status(), "engine query");
  const Globals& g = *eg;
  auto info = query_system(g.engine, g.timeout());
  if (!info) return fail(g, info.status(), "engine query");
  // Open a client only to render fabric addresses readably.
  auto c = connect_engine(g);
  const SystemInfo& s = c ? (*c)->system() : *info;
  json targets = json::array();
  for (const auto& t : s.targets) {
    targets.push_back({{"index", t.index},
                       {"cpu", t.cpu},
                       {"tid", t.tid},
                       {"fabric_address", t.fabric_addr_text},
                       {"backend", t.backend},
                       {"storage", t.storage_path},
                       {"capacity", t.capacity},
                       {"used", t.used}});
  }
  return done(g,
              {{"rank", s.rank},
               {"provider", s.provider},
               {"pid", s.pid},
               {"version", s.version},
               {"hostname", s.hostname},
               {"control", s.control_addr},
               {"metrics", s.metrics_addr.empty() ? json(nullptr) : json(s.metrics_addr)},
               {"uptime_ms", s.uptime_ms},
               {"pools_open", info->pools_open},
               {"targets", targets}},
              [&] {
                std::printf("engine rank %u on %s (pid %d, version %s, up %.1f s%s)\n", s.rank,
                            s.hostname.c_str(), s.pid, s.version.c_str(),
                            static_cast<double>(s.uptime_ms) / 1000,
                            info->pools_open ? "" : ", still opening its pools");
                std::printf("control %s, metrics %s, provider %s\n", s.control_addr.c_str(),
                            s.metrics_addr.empty() ? "off" : s.metrics_addr.c_str(),
                            s.provider.c_str());
                std::printf("%-6s %-4s %-8s %-7s %-34s %-12s %s\n", "target", "cpu", "tid", "queue",
                            "fabric address", "used", "storage");
                for (const auto& t : s.targets) {
                  std::printf("%-6u %-4d %-8d %-7s %-34s %-12s %s (%s)\n", t.index, t.cpu, t.tid,
                              t.backend.c_str(), t.fabric_addr_text.c_str(), human(t.used).c_str(),
                              t.storage_path.c_str(), human(t.capacity).c_str());
                }
              });
}

void add_engine_commands(CLI::App& app, Globals& g) {
  auto* eng = app.add_subcommand("engine", "one engine: --engine HOST:PORT, or --rank R of the system");
  eng->require_subcommand(1);
  auto rank = std::make_shared<int64_t>(-1);
  auto* q = leaf(eng, g, "query", "the engine's rank, targets, CPUs, provider and addresses",
                 [&g, rank] { return engine_query(g, *rank); });
  q->add_option("-r,--rank", *rank, "the engine of this rank of the system (default: --engine)");

  auto* tgt = app.add_subcommand(
      "target",
      "engine mode: per-target maintenance and counters of one engine's scratch store (pools: "
      "tessera pool query|aggregate|scrub)");
  tgt->require_subcommand(1);
  auto a = std::make_shared<TargetArgs>();
  auto add = [&](const char* name, const char* help, TargetOp op) {
    auto* sc = leaf(tgt, g, name, help, [&g, a, op] { return target_cmd(g, *a, op); });
    sc->add_option("-r,--rank", a->rank,
                   "the engine of this rank of the system (default: --engine)");
    sc->add_option("-t,--target", a->index, "target index (default 0)");
    sc->add_flag("--all", a->all, "every target of the engine");
    return sc;
  };
  add("stats", "space, log, checkpoint and aggregation counters", TargetOp::stats);
  auto* agg =
      add("aggregate", "merge old versions, drop what no reader sees any more, free the space",
          TargetOp::aggregate);
  agg->add_option("--epoch", a->epoch, "aggregate up to this epoch (default: now)");
  agg->add_option("--protect", a->protect, "snapshot epochs that stay readable");
  add("checkpoint", "write a checkpoint and release the log", TargetOp::checkpoint);
}

}  // namespace tessera::cli

// tessera pool aggregate / scrub: maintenance passes an operator runs on every serving target of
// a pool now, instead of waiting for the background ones.
#include <fmt/format.h>

#include <cstdio>

#include "apps/cli/common.hpp"

namespace tessera::cli {

namespace {

struct MaintArgs {
  std::string pool;
  double share_pct = 100;
};

// The pool's map and a client that can reach its targets.
struct PoolSession {
  mgmt::PoolView view;
  std::unique_ptr<Client> client;
};

Result<PoolSession> open_pool(Globals& g, const std::string& pool) {
  auto addr = mgmt_address(g);
  if (!addr) return addr.status();
  MgmtClient mc(*addr, g.timeout());
  auto v = mc.pool_query(pool);
  if (!v) return v.status();
  ClientOptions co;
  co.engine = *addr;
  co.timeout = g.timeout();
  auto client = Client::connect_system(co);
  if (!client) return client.status();
  return PoolSession{std::move(*v), std::move(*client)};
}

// Reclaims the pool's space now: aggregation to now (snapshots kept) and a checkpoint on every
// serving target, instead of waiting for the background pass.
int pool_aggregate(Globals& g, const MaintArgs& a) {
  const char* what = "pool aggregate";
  auto s = open_pool(g, a.pool);
  if (!s) return fail(g, s.status(), what);
  json targets = json::array();
  uint64_t freed = 0, dropped = 0;
  size_t ok = 0, kept = 0;
  Status first;
  std::string lines;
  for (const auto& r : s->client->pool_reclaim(s->view)) {
    json t{{"rank", r.rank}, {"target", r.target}, {"state", r.state}};
    Status st = !r.aggregated ? r.aggregated.status() : r.checkpoint;
    if (st.is_ok()) {
      ++ok;
      freed += r.aggregated->bytes_freed;
      dropped += r.aggregated->versions_dropped;
      t["bytes_freed"] = r.aggregated->bytes_freed;
      t["versions_dropped"] = r.aggregated->versions_dropped;
      t["versions_trimmed"] = r.aggregated->versions_trimmed;
      t["punches_dropped"] = r.aggregated->punches_dropped;
      t["punches_kept"] = r.aggregated->punches_kept;
      kept += r.aggregated->punches_kept ? 1 : 0;
      lines += fmt::format("  rank {} target {}: {} freed, {} versions dropped\n", r.rank,
                           r.target, human(r.aggregated->bytes_freed),
                           r.aggregated->versions_dropped);
    } else if (r.state == "down-out") {
      t["skipped"] = "down-out";  // holds nothing the pool uses
    } else {
      Status named = at_target(st, r.rank, r.target);
      t["error"] = named.to_string();
      if (first.is_ok()) first = named;
      lines += fmt::format("  {}\n", named.to_string());
    }
    targets.push_back(std::move(t));
  }
  if (!first.is_ok()) {
    return fail(g, Status(first.code(), fmt::format("{} (space reclaimed on {} targets)",
                                                    first.message(), ok)),
                what);
  }
  const std::string label = s->view.pool.label;
  return done(g,
              {{"pool", label},
               {"bytes_freed", freed},
               {"versions_dropped", dropped},
               {"punches_kept", kept > 0},
               {"targets", targets}},
              [&] {
                std::printf("pool %s: %s freed on %zu targets (%lu versions dropped); "
                            "checkpoints written, the space is free for new writes\n%s",
                            label.c_str(), human(freed).c_str(), ok,
                            static_cast<unsigned long>(dropped), lines.c_str());
                // docs/REBUILD.md, "Aggregation during a rebuild"
                if (kept > 0) {
                  std::printf(
                      "deletions kept as punches on %zu targets: the pool moves data, "
                      "or its former homes have not yet dropped what they no longer "
                      "hold (pool query names them)\n",
                      kept);
                }
              });
}

// Reads every stored piece of the pool back against its checksum on every serving target and
// repairs damaged pieces from other replicas. Fails when damage stays or a target did not scrub.
int pool_scrub(Globals& g, const MaintArgs& a) {
  const char* what = "pool scrub";
  if (!(a.share_pct > 0 && a.share_pct <= 100)) {
    return fail(g, Status(Errc::invalid_argument, "--share must be in (0, 100] percent"), what);
  }
  auto s = open_pool(g, a.pool);
  if (!s) return fail(g, s.status(), what);
  json targets = json::array();
  ScrubInfo total;
  size_t ok = 0;
  Status first;
  std::string lines;
  for (const auto& r : s->client->pool_scrub(s->view, a.share_pct / 100.0)) {
    json t{{"rank", r.rank}, {"target", r.target}, {"state", r.state}};
    if (r.answer) {
      const ScrubInfo& i = *r.answer;
      ++ok;
      total.akeys += i.akeys;
      total.extents += i.extents;
      total.bytes += i.bytes;
      total.damaged += i.damaged;
      total.repaired += i.repaired;
      total.unrepaired += i.unrepaired;
      t.update({{"akeys", i.akeys}, {"extents", i.extents}, {"bytes", i.bytes},
                {"damaged", i.damaged}, {"repaired", i.repaired}, {"unrepaired", i.unrepaired}});
      if (!i.last_error.empty()) {
        t["error"] = i.last_error;
        total.last_error = i.last_error;
      }
      if (i.damaged > 0) {
        lines += fmt::format("  rank {} target {}: {} damaged, {} repaired, {} not repaired{}\n",
                             r.rank, r.target, i.damaged, i.repaired, i.unrepaired,
                             i.last_error.empty() ? "" : " (" + i.last_error + ")");
      }
    } else if (r.state == "down-out") {
      t["skipped"] = "down-out";
    } else {
      Status named = at_target(r.answer.status(), r.rank, r.target);
      t["error"] = named.to_string();
      if (first.is_ok()) first = named;
      lines += fmt::format("  {}\n", named.to_string());
    }
    targets.push_back(std::move(t));
  }
  json j{{"pool", s->view.pool.label}, {"targets", targets},    {"akeys", total.akeys},
         {"extents", total.extents},   {"bytes", total.bytes},  {"damaged", total.damaged},
         {"repaired", total.repaired}, {"unrepaired", total.unrepaired}};
  if (!first.is_ok()) {
    return fail(g, Status(first.code(), fmt::format("{} (scrubbed {} targets)", first.message(),
                                                    ok)),
                what);
  }
  if (total.unrepaired > 0) {
    if (!g.json) std::fputs(lines.c_str(), stderr);
    return fail(g, Status(Errc::checksum,
                          fmt::format("{} damaged pieces have no good copy left: {}",
                                      total.unrepaired, total.last_error)),
                what);
  }
  const std::string label = s->view.pool.label;
  return done(g, j, [&] {
    std::printf("pool %s: %lu pieces (%s) checked on %zu targets; %lu damaged, %lu repaired\n%s",
                label.c_str(), static_cast<unsigned long>(total.extents),
                human(total.bytes).c_str(), ok, static_cast<unsigned long>(total.damaged),
                static_cast<unsigned long>(total.repaired), lines.c_str());
  });
}

}  // namespace

void add_pool_maintenance_commands(CLI::App* pool, Globals& g) {
  auto a = std::make_shared<MaintArgs>();
  auto* agg = leaf(pool, g, "aggregate",
                   "reclaim the pool's space now: merge old versions and drop deleted data on "
                   "every target (snapshots kept), then checkpoint so the space is reused",
                   [&g, a] { return pool_aggregate(g, *a); });
  agg->add_option("pool", a->pool, "pool label or UUID")->required();

  auto* scrub = leaf(pool, g, "scrub",
                     "read every stored piece back against its checksum on every target and "
                     "repair damaged ones from another replica; fails if damage stays",
                     [&g, a] { return pool_scrub(g, *a); });
  scrub->add_option("pool", a->pool, "pool label or UUID")->required();
  scrub->add_option("--share", a->share_pct,
                    "percent of each target's time the pass may use (default 100; foreground "
                    "I/O keeps the rest)");
}

}  // namespace tessera::cli

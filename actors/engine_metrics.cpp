// Engine::metrics: one scrape of the engine (telemetry/metrics.hpp). Each target copies its
// counters on its own thread (a posted fiber; nothing on the data path is shared or locked);
// the caller, the metrics server's thread, turns the copies into families.
#include <fmt/format.h>

#include <optional>

#include "actors/engine_internal.hpp"
#include "core/version.hpp"
#include "proto/protocol.hpp"
#include "telemetry/metrics.hpp"

namespace tessera {

namespace {

struct PoolSample {
  uint32_t id = 0;
  StoreStats st;
  std::optional<TargetPools::RebuildRun> rebuild;  // the latest generation run here
};

struct TargetSample {
  ObjectService::Stats ops;
  size_t queued = 0, pending_asks = 0;
  uint64_t refused_busy = 0;
  net::FabricStats fabric;
  std::vector<PoolSample> pools;
  std::vector<uint32_t> damaged;
  bool stopped = false;
  uint64_t views_fetched = 0, views_refetched = 0, props_fetched = 0;
  std::optional<std::array<uint64_t, 3>> swim;  // members alive, suspect, dead (target 0)
};

// On the slot's target thread.
TargetSample gather(Engine::Slot& s) {
  TargetSample t;
  t.ops = s.svc->stats();
  t.queued = s.rt->queued();
  t.pending_asks = s.rt->pending_asks();
  t.refused_busy = s.rt->refused_busy();
  if (s.ep) t.fabric = s.ep->stats();
  t.stopped = s.pools.stopped;
  t.views_fetched = s.pools.views_fetched;
  t.views_refetched = s.pools.views_refetched;
  t.props_fetched = s.pools.props_fetched;
  if (s.pools.scratch != nullptr) t.pools.push_back({0, s.pools.scratch->stats(), std::nullopt});
  for (const auto& [id, sh] : s.pools.shards) {
    if (!sh || !sh->store) continue;
    PoolSample p{id, sh->store->stats(), std::nullopt};
    if (auto r = s.pools.rebuilds.find(id); r != s.pools.rebuilds.end()) p.rebuild = r->second;
    t.pools.push_back(std::move(p));
  }
  for (const auto& [id, why] : s.pools.damaged) t.damaged.push_back(id);
  if (s.swim) {
    std::array<uint64_t, 3> n{};
    for (const auto& [rank, m] : s.swim->members()) ++n[static_cast<size_t>(m.state)];
    t.swim = n;
  }
  return t;
}

using telemetry::Labels;

// A family whose value is one integer field of a record.
template <typename Record>
struct Field {
  const char* name;
  const char* help;
  bool counter;  // else a gauge
  uint64_t Record::*field;
};

template <typename Record, size_t N>
void add_fields(telemetry::MetricSet& ms, const Labels& l, const Record& r,
                const Field<Record> (&fields)[N]) {
  for (const auto& f : fields) {
    const double v = static_cast<double>(r.*f.field);
    if (f.counter) {
      ms.counter(f.name, f.help, l, v);
    } else {
      ms.gauge(f.name, f.help, l, v);
    }
  }
}

constexpr Field<ObjectService::OpStats> kOpFields[] = {
    {"tessera_requests_total",
     "object requests served (source engine: engines and administrators)", true,
     &ObjectService::OpStats::count},
    {"tessera_request_errors_total", "object requests answered with an error", true,
     &ObjectService::OpStats::errors},
    {"tessera_request_bytes_in_total", "bulk bytes the requests carried", true,
     &ObjectService::OpStats::bytes_in},
    {"tessera_request_bytes_out_total", "bulk bytes the replies carried", true,
     &ObjectService::OpStats::bytes_out},
};

constexpr Field<StoreStats> kStoreFields[] = {
    {"tessera_space_pending_free_bytes",
     "freed by aggregation, reusable after the next checkpoint", false, &StoreStats::pending_free},
    {"tessera_store_objects", "objects in the store", false, &StoreStats::objects},
    {"tessera_store_versions", "stored versions (aggregation merges them)", false,
     &StoreStats::versions},
    {"tessera_store_updates_total", "changes applied since the store was opened", true,
     &StoreStats::updates},
    {"tessera_store_fetches_total", "reads since the store was opened", true,
     &StoreStats::fetches},
    {"tessera_wal_groups_total", "log groups written (each one write and one sync)", true,
     &StoreStats::wal_groups},
    {"tessera_wal_records_total", "records in the log groups written", true,
     &StoreStats::wal_records},
    {"tessera_wal_bytes_total", "bytes of log groups written", true, &StoreStats::wal_bytes},
    {"tessera_wal_full_waits_total", "times a log group waited for a checkpoint to free log space",
     true, &StoreStats::wal_full_waits},
    {"tessera_checkpoints_total", "checkpoints written since the open", true,
     &StoreStats::checkpoints},
    {"tessera_checkpoint_bytes", "bytes of the current checkpoint", false,
     &StoreStats::checkpoint_bytes},
    {"tessera_aggregations_total", "aggregation passes since the open", true,
     &StoreStats::aggregations},
    {"tessera_dtx_prepared", "distributed transactions prepared here, not yet decided", false,
     &StoreStats::dtx_open},
    {"tessera_dtx_committed_total", "prepared transactions committed here", true,
     &StoreStats::dtx_committed},
    {"tessera_dtx_aborted_total", "prepared transactions aborted here", true,
     &StoreStats::dtx_aborted},
};

constexpr Field<net::FabricStats> kFabricFields[] = {
    {"tessera_fabric_messages_in_total", "messages the target's fabric endpoint delivered", true,
     &net::FabricStats::messages_in},
    {"tessera_fabric_frames_dropped_total",
     "frames not delivered (malformed, failed, or of a message whose sender died)", true,
     &net::FabricStats::dropped},
    {"tessera_fabric_malformed_frames_total", "frames that did not decode", true,
     &net::FabricStats::malformed},
    {"tessera_fabric_receive_errors_total", "receives the provider completed with an error",
     true, &net::FabricStats::receive_errors},
    {"tessera_fabric_lost_receive_entries",
     "provider receive-queue entries lost to failed receives (it stops hearing at all of them)",
     false, &net::FabricStats::failed_posts},
    {"tessera_fabric_receive_entries", "entries of the provider's receive queue", false,
     &net::FabricStats::receive_entries},
};

using RebuildRun = TargetPools::RebuildRun;
constexpr Field<RebuildRun> kRebuildFields[] = {
    {"tessera_rebuild_planned_bytes", "bytes its scan counted to send", false,
     &RebuildRun::planned},
    {"tessera_rebuild_sent_bytes", "bytes it sent so far", false, &RebuildRun::bytes},
    {"tessera_rebuild_objects", "objects it sent so far", false, &RebuildRun::objects},
    {"tessera_rebuild_lost_records", "records it found no surviving copy of", false,
     &RebuildRun::lost},
};

void add_ops(telemetry::MetricSet& ms, const Labels& where, const ObjectService::Stats& st) {
  for (uint16_t m = 0; m < proto::kObjMethods; ++m) {
    for (int trusted = 0; trusted < 2; ++trusted) {
      const auto& op = st.ops[m][trusted];
      if (op.count == 0) continue;
      Labels l = where;
      l.emplace_back("op", std::string(proto::obj_method_name(m)));
      l.emplace_back("source", trusted != 0 ? "engine" : "client");
      add_fields(ms, l, op, kOpFields);
      ms.histogram("tessera_request_duration_seconds",
                   "time from a request's start on its target to its end", l, op.latency);
    }
  }
  ms.gauge("tessera_requests_inflight", "object requests running on the target", where,
           static_cast<double>(st.inflight));
}

void add_pool(telemetry::MetricSet& ms, Labels l, const PoolSample& p) {
  l.emplace_back("pool", std::to_string(p.id));
  const StoreStats& s = p.st;
  for (const char* tier : {"data", "wal"}) {
    Labels t = l;
    t.emplace_back("tier", tier);
    const bool data = tier[0] == 'd';
    ms.gauge("tessera_space_used_bytes", "bytes allocated (data: extents, checkpoint and what "
                                          "awaits one; wal: the log not yet released)",
             t, static_cast<double>(data ? s.used : s.wal_used));
    ms.gauge("tessera_space_capacity_bytes", "bytes of the region", t,
             static_cast<double>(data ? s.capacity : s.wal_capacity));
  }
  add_fields(ms, l, s, kStoreFields);
  ms.histogram("tessera_wal_commit_duration_seconds", "a log group's write and sync", l,
               s.wal_commit);
  if (p.rebuild) {
    const auto& r = *p.rebuild;
    ms.gauge("tessera_rebuild_generation", "the pool's latest rebuild generation run here", l,
             r.gen);
    ms.gauge("tessera_rebuild_running", "1 while that generation's work here is not finished", l,
             r.finished ? 0 : 1);
    add_fields(ms, l, r, kRebuildFields);
  }
}

}  // namespace

void Engine::metrics(telemetry::MetricSet& ms) {
  const std::string rank = std::to_string(cfg_.rank);
  ms.gauge("tessera_engine_info", "the engine's rank, version and provider (value 1)",
           {{"rank", rank}, {"version", version()}, {"provider", cfg_.provider}}, 1);
  ms.gauge("tessera_engine_uptime_seconds", "seconds since the engine started", {{"rank", rank}},
           std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
  ms.gauge("tessera_pool_format_done_bytes", "a pool create running here: bytes formatted",
           {{"rank", rank}}, static_cast<double>(format_done_.load()));
  ms.gauge("tessera_pool_format_total_bytes", "a pool create running here: bytes to format",
           {{"rank", rank}}, static_cast<double>(format_total_.load()));
  for (const auto& slot : slots_) {
    Slot* s = slot.get();
    const Labels where = {{"rank", rank}, {"target", std::to_string(s->target->index())}};
    auto r = post_wait(
        *s->target, [s]() -> Result<TargetSample> { return gather(*s); }, std::chrono::seconds(2));
    ms.gauge("tessera_target_up", "1: the target answered this scrape within 2 s", where,
             r ? 1 : 0);
    if (!r) continue;
    ms.gauge("tessera_target_stopped", "1: stopped by an administrator (refuses pool I/O)", where,
             r->stopped ? 1 : 0);
    add_ops(ms, where, r->ops);
    ms.gauge("tessera_requests_queued", "messages waiting in the target's mailboxes", where,
             static_cast<double>(r->queued));
    ms.gauge("tessera_asks_pending", "requests the target sent and awaits replies to", where,
             static_cast<double>(r->pending_asks));
    ms.counter("tessera_requests_refused_busy_total",
               "client requests refused at once by admission control", where,
               static_cast<double>(r->refused_busy));
    add_fields(ms, where, r->fabric, kFabricFields);
    ms.gauge("tessera_fabric_deaf",
             "1: no receive can be posted any more; the engine hears nothing (restart it)", where,
             r->fabric.deaf ? 1 : 0);
    for (const auto& p : r->pools) add_pool(ms, where, p);
    for (uint32_t id : r->damaged) {
      Labels l = where;
      l.emplace_back("pool", std::to_string(id));
      ms.gauge("tessera_pool_damaged", "1: the pool's store here failed its checks (not served)",
               l, 1);
    }
    if (s == slots_.front().get()) {
      static constexpr const char* kHelp =
          "pool views this engine asked the management service for (its first target fetches "
          "them for all): for a newer map, or the current one (a transaction's resolution)";
      ms.counter("tessera_pool_views_fetched_total", kHelp, {{"rank", rank}, {"for", "map"}},
                 static_cast<double>(r->views_fetched));
      ms.counter("tessera_pool_views_fetched_total", kHelp, {{"rank", rank}, {"for", "current"}},
                 static_cast<double>(r->views_refetched));
      ms.counter("tessera_pool_props_fetched_total",
                 "pool property lists this engine asked the management service for (the "
                 "scrubber's settings; its first target fetches them for all)",
                 {{"rank", rank}}, static_cast<double>(r->props_fetched));
    }
    if (r->swim) {
      static constexpr const char* kStates[] = {"alive", "suspect", "dead"};
      for (size_t i = 0; i < 3; ++i) {
        ms.gauge("tessera_swim_members", "other engines as this engine's failure detector sees "
                                          "them",
                 {{"rank", rank}, {"state", kStates[i]}}, static_cast<double>((*r->swim)[i]));
      }
    }
  }
}

}  // namespace tessera

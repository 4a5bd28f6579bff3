#include "rebuild/run.hpp"

#include "core/log.hpp"
#include "rebuild/rebuild.hpp"

namespace tessera::rebuild {

void run_generation(ActorRuntime& rt, TargetPools& pools, uint32_t rank, const RunOptions& ro,
                    const Report& report) {
  Target& t = rt.target();
  const auto index = static_cast<uint32_t>(t.index());
  const uint32_t pool = ro.pool, gen = ro.gen;
  auto& run = pools.rebuilds[pool];
  if (run.gen > gen) return;
  if (run.gen == gen) {
    if (run.finished) report(run, true);  // the service asks again (it restarted)
    return;
  }
  run = TargetPools::RebuildRun{};
  run.gen = gen;
  auto finish = [&](Status st, const Counters& c) {
    auto& cur = pools.rebuilds[pool];
    if (cur.gen != gen) return;  // replaced by a newer generation
    cur.finished = true;
    cur.objects = c.objects;
    cur.records = c.records;
    cur.bytes = c.bytes;
    cur.lost = c.lost;
    cur.planned = c.planned;
    cur.error = st.is_ok() ? std::string() : st.to_string();
    report(cur, true);
  };
  auto it = pools.shards.find(pool);
  // A stopped target's data is not used (the pool map has it down): nothing to send.
  if (it == pools.shards.end() || pools.stopped) return finish(Status(), {});
  if (it->second->closing) return finish(Status(Errc::unavailable, "shard closing"), {});
  // In use from before the first suspension to the end of the scan: a reintegration that
  // resets this shard meanwhile waits for the scan (which it cancels) to let go.
  ShardUse use(*it->second);
  PoolShard& sh = *use;
  if (!sh.view || sh.view->pool.map.version < ro.version) {
    if (!pools.fetch_view) return finish(Status(Errc::unavailable, "no pool map to fetch"), {});
    auto v = pools.fetch_view(pool, ro.version);
    if (!v) return finish(v.status(), {});
    sh.set_view(std::move(*v));
    if (pools.learn) pools.learn(*sh.view);
  }
  ScanOptions o;
  o.share = ro.share;
  o.cancelled = [&pools, &t, &sh, pool, gen] {
    return t.stopping() || sh.closing || pools.rebuilds[pool].gen != gen;
  };
  // A participant that does not answer yet (restarting) gets the scan's retry time.
  o.settle = [&] { return pools.settle_within(t, sh, o.retry, o.cancelled); };
  auto last = t.env().now();
  bool planned = false;
  o.progress = [&](const Counters& c) {
    // The plan goes at once (the bar's total); the rest at most once a second.
    if (planned && t.env().now() - last < std::chrono::seconds(1)) return;
    planned = true;
    last = t.env().now();
    TargetPools::RebuildRun r{gen, false, c.objects, c.records, c.bytes, c.lost, {}, c.planned};
    report(r, false);
  };
  // Requests admitted under an older map write only where it placed their data, and reach
  // the index this scan reads only once durable: the scan starts when none is left (new
  // ones under an older map are refused), so each of their values is in what it sends.
  if (!sh.wait_admitted_below(sh.view->pool.map.version, o.cancelled)) {
    if (pools.rebuilds[pool].gen != gen || t.stopping()) return;
    return finish(Status(Errc::unavailable, "shard closing"), {});
  }
  log::info("rebuild: pool {} generation {} (map version {}) scanning target {}", pool, gen,
            sh.view->pool.map.version, index);
  auto r = scan(rt, rank, static_cast<uint16_t>(index), sh, o);
  if (!r) {
    if (pools.rebuilds[pool].gen != gen || t.stopping()) return;
    log::warn("rebuild: pool {} generation {} target {}: {}", pool, gen, index,
              r.status().to_string());
    return finish(r.status(), {});
  }
  log::info(
      "rebuild: pool {} generation {} target {}: {} objects, {} records, {} bytes sent "
      "({} counted before sending)",
      pool, gen, index, r->objects, r->records, r->bytes, r->planned);
  finish(Status(), *r);
}

}  // namespace tessera::rebuild

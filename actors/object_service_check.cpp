// The object service's consistency-check requests (docs/TRANSACTIONS.md, "Consistency check"):
// what this target's copy of a dkey shows at an epoch (digests), one akey's history for a
// repair, and this target's part of a container's check (rebuild/check.hpp). Engines and
// administrators only: they address a pool's shard by store key, without a container handle.
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <map>

#include "actors/object_service.hpp"
#include "actors/object_service_util.hpp"
#include "core/log.hpp"
#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"
#include "proto/protocol.hpp"
#include "rebuild/check.hpp"

namespace tessera {

using capn::as_data;
using capn::BodyReader;
using capn::from_data;
using namespace objsvc;

Status ObjectService::on_digest(Message& m) {
  Ctx ctx;
  ObjectId key;
  std::string dkey, after;
  uint64_t epoch;
  bool probe;
  {
    capn::DecodeScope ds;
    BodyReader br(m.body);
    auto req = br.root<schema::DigestReq>();
    ctx = ctx_of(req.getCtx());
    key = oid_of(req.getOid());
    dkey = from_data(req.getDkey());
    after = from_data(req.getAfter());
    epoch = req.getEpoch();
    probe = req.getProbe();
    if (ds.failed()) return malformed(ds);
  }
  if (dkey.empty()) return Status(Errc::invalid_argument, "a digest names a dkey");
  auto use = shard_for(ctx.pool, ctx.map_version);
  if (!use) return use.status();
  PoolShard& sh = *use->get();
  rebuild::DkeyDigests d;
  if (probe) {
    d.known = !sh.store->akey_names(key, dkey).empty();
  } else {
    TESSERA_TRY(settle(sh, key, dkey, "", epoch));
    auto r = rebuild::dkey_digests(*sh.store, key, dkey, epoch, after);
    if (!r) return r.status();
    d = std::move(*r);
  }
  capnp::MallocMessageBuilder b(1024);
  auto rep = b.initRoot<schema::DigestRep>();
  rep.setKnown(d.known);
  rep.setMore(d.more);
  auto list = rep.initAkeys(static_cast<unsigned>(d.akeys.size()));
  for (size_t i = 0; i < d.akeys.size(); ++i) {
    auto a = list[static_cast<unsigned>(i)];
    const auto& [name, dg] = d.akeys[i];
    a.setAkey(as_data(name));
    a.setKind(dg.kind == storage::ValueKind::array ? schema::ValueKind::ARRAY
                                                   : schema::ValueKind::SINGLE);
    a.setRsize(dg.rsize);
    a.setExists(dg.exists);
    a.setSize(dg.size);
    a.setEpoch(dg.epoch);
    a.setDigest(dg.digest);
    a.setDamaged(dg.damaged);
  }
  return rt_.reply(m, Status(), capn::to_body(b));
}

Status ObjectService::on_shard_export(Message& m) {
  Ctx ctx;
  ObjectId key;
  std::string dkey, akey;
  uint64_t upto;
  {
    capn::DecodeScope ds;
    BodyReader br(m.body);
    auto req = br.root<schema::FetchReq>();
    ctx = ctx_of(req.getCtx());
    key = oid_of(req.getOid());
    dkey = from_data(req.getDkey());
    akey = from_data(req.getAkey());
    upto = req.getEpoch();
    if (ds.failed()) return malformed(ds);
  }
  if (dkey.empty() || akey.empty() || upto == 0) {
    return Status(Errc::invalid_argument, "an export names a dkey, an akey and an epoch");
  }
  auto use = shard_for(ctx.pool, ctx.map_version);
  if (!use) return use.status();
  PoolShard& sh = *use->get();
  if (sh.store->history_bytes(key, dkey, akey) > rebuild::kPushBytes) {
    return Status(Errc::too_big,
                  fmt::format("the history of akey '{}' holds more than {} bytes: too large to "
                              "repair in one piece",
                              akey, rebuild::kPushBytes));
  }
  TESSERA_TRY(settle(sh, key, dkey, akey, upto));
  auto x = rebuild::history_upto(*sh.store, key, dkey, akey, upto);
  if (!x) return x.status();
  Buffer body = rebuild::push_body(sh.id, ctx.map_version, key, dkey, akey, *x, 0);
  return reply_bulk(m, std::move(body), std::move(x->data));
}

Status ObjectService::on_check(Message& m) {
  uint32_t pool, version;
  rebuild::CheckOptions o;
  {
    capn::DecodeScope ds;
    BodyReader br(m.body);
    auto req = br.root<schema::CheckReq>();
    pool = req.getCtx().getPool();
    version = req.getCtx().getMapVersion();
    o.cont = req.getCont();
    o.repair = req.getRepair();
    o.share = req.getShare() > 0 ? req.getShare() : 1.0;
    if (ds.failed()) return malformed(ds);
  }
  if (pool == 0) return Status(Errc::invalid_argument, "check a pool's container, not pool 0");
  // Judged by the operator's map at least: a target no request reached since a move (a
  // stand-in that was filled, a former home) knows an older one, and would skip the dkeys it
  // now holds, or compare those it no longer does.
  auto w = maintenance_store(pool, version);
  if (!w) return w.status();
  auto r = check_pass(*w->shard, std::move(o));
  if (!r) return r.status();
  capnp::MallocMessageBuilder b(4096);
  auto rep = b.initRoot<schema::CheckRep>();
  rep.setObjects(r->objects);
  rep.setDkeys(r->dkeys);
  rep.setAkeys(r->akeys);
  rep.setExtents(r->extents);
  rep.setBytes(r->bytes);
  rep.setDamaged(r->damaged);
  rep.setRepaired(r->repaired);
  rep.setUnrepaired(r->unrepaired);
  rep.setCompared(r->compared);
  rep.setStripes(r->stripes);
  rep.setInconsistent(r->inconsistent);
  rep.setFixed(r->fixed);
  rep.setUnchecked(r->unchecked);
  rep.setLeftOff(r->left_off);
  rep.setLastError(r->last_error);
  auto list = rep.initFindings(static_cast<unsigned>(r->findings.size()));
  for (size_t i = 0; i < r->findings.size(); ++i) {
    const auto& f = r->findings[i];
    auto e = list[static_cast<unsigned>(i)];
    e.initOid().setHi(f.oid.hi);
    e.getOid().setLo(f.oid.lo);
    e.setDkey(as_data(f.dkey));
    e.setAkey(as_data(f.akey));
    e.setOffset(f.offset);
    e.setLength(f.length);
    e.setWhat(f.what);
    e.setCopies(f.copies);
    e.setRepaired(f.repaired);
  }
  return rt_.reply(m, Status(), capn::to_body(b));
}

Result<rebuild::CheckCounters> ObjectService::check_pass(PoolShard& sh, rebuild::CheckOptions o) {
  Target& t = rt_.target();
  while (sh.check.running && !t.stopping() && !sh.closing) {
    t.sleep_for(std::chrono::milliseconds(100));  // the scrubber's pass, or another check
  }
  o.cancelled = [&t, &sh] { return t.stopping() || sh.closing; };
  if (o.cancelled()) return Status(Errc::shutdown, "the target or its pool shard is closing");
  o.settle = [this, &sh](ObjectId key, const std::string& dkey, uint64_t epoch) {
    return settle(sh, key, dkey, "", epoch);
  };
  o.progress = [&sh](uint64_t done, uint64_t total) {
    sh.check.done = done;
    sh.check.total = total;
  };
  sh.check.running = true;
  sh.check.done = sh.check.total = 0;
  auto r = rebuild::check(rt_, rank_, target_, sh, o);
  sh.check.running = false;
  if (!r) {
    sh.check.last_error = r.status().to_string();
    return r.status();
  }
  ++sh.check.passes;
  sh.check.inconsistent += r->inconsistent;
  sh.check.fixed += r->fixed;
  if (!r->last_error.empty()) sh.check.last_error = r->last_error;
  sh.repair.damaged += r->damaged;
  if (o.repair) {  // a check without repair tried none: nothing to count as not repaired
    sh.repair.repaired += r->repaired;
    sh.repair.unrepaired += r->unrepaired;
  }
  return r;
}

namespace {

// The background scrubber's settings of a pool (its properties; docs/OPERATIONS.md).
struct ScrubProps {
  bool on = false;
  std::chrono::seconds freq{604800};
  double share = 0.1;
};

ScrubProps scrub_props(const std::map<std::string, std::string>& props) {
  ScrubProps p;
  if (auto it = props.find("scrub"); it != props.end()) p.on = it->second == "timed";
  if (auto it = props.find("scrub_freq"); it != props.end()) {
    p.freq = std::chrono::seconds(std::max<uint64_t>(1, std::strtoull(it->second.c_str(), nullptr, 10)));
  }
  if (auto it = props.find("scrub_share"); it != props.end()) {
    p.share = std::clamp(std::strtod(it->second.c_str(), nullptr), 1.0, 100.0) / 100.0;
  }
  return p;
}

}  // namespace

void ObjectService::run_scrubber() {
  Target& t = rt_.target();
  // Each pool's settings: its properties, which the engine asks the management service for
  // every few seconds (TargetPools::fetch_props); the last answer while it cannot.
  std::map<uint32_t, ScrubProps> props;
  while (!t.stopping()) {
    t.sleep_for(std::chrono::milliseconds(500));
    if (t.stopping() || pools_.stopped) continue;
    std::vector<uint32_t> ids;
    for (const auto& [id, sh] : pools_.shards) ids.push_back(id);
    for (uint32_t id : ids) {
      auto it = pools_.shards.find(id);
      if (t.stopping() || pools_.stopped || it == pools_.shards.end()) continue;
      PoolShard& sh = *it->second;
      if (!sh.view || sh.closing || sh.check.running) continue;
      auto known = props.try_emplace(id, scrub_props(sh.view->pool.props)).first;
      if (pools_.fetch_props) {
        ShardUse use(sh);
        if (auto r = pools_.fetch_props(id); r.is_ok()) known->second = scrub_props(*r);
        if (sh.closing) continue;
      }
      const auto now = t.env().now();
      const ScrubProps p = known->second;
      if (!p.on) {
        sh.check.next_scrub = Nanos(0);
        continue;
      }
      if (sh.check.next_scrub == Nanos(0)) {
        sh.check.next_scrub = now + p.freq;  // the first pass one period after it is turned on
        continue;
      }
      // Not while data moves: the rebuild fills the copies the check would compare.
      if (now < sh.check.next_scrub || sh.view->pool.map.moving()) continue;
      ShardUse use(sh);
      std::vector<uint32_t> conts;
      for (const auto& c : sh.view->conts) conts.push_back(c.c.id);
      for (uint32_t cont : conts) {
        rebuild::CheckOptions o;
        o.cont = cont;
        o.repair = true;
        o.share = p.share;
        auto r = check_pass(sh, o);
        if (!r) {
          if (r.status().code() == Errc::shutdown) break;
          log::warn("pool {} target {}: scrub of container {}: {}", id, target_, cont,
                    r.status().to_string());
          continue;
        }
        ++sh.check.scrubs;
        if (r->inconsistent + r->damaged > 0) {
          log::warn("pool {} target {}: scrub of container {}: {} copies disagreed ({} repaired), "
                    "{} damaged pieces ({} repaired)",
                    id, target_, cont, r->inconsistent, r->fixed, r->damaged, r->repaired);
        }
      }
      sh.check.next_scrub = t.env().now() + p.freq;
    }
  }
}

}  // namespace tessera

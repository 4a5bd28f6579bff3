// How an engine speaks to the management service: its targets' fetches of pool views and
// properties (the first target asks for all, Engine::attach), the background passes, SWIM's
// reports, damage reports and rebuild progress. Runs on the targets' fibers; the service's
// answers come back through the asking target's inbox.
#include <fmt/format.h>

#include <boost/fiber/future.hpp>

#include "actors/engine.hpp"
#include "actors/engine_internal.hpp"
#include "core/log.hpp"
#include "core/single_flight.hpp"
#include "mgmt/codec.hpp"
#include "proto/capnp_util.hpp"
#include "proto/protocol.hpp"
#include "rebuild/reclaim.hpp"
#include "rebuild/reencode.hpp"
#include "rebuild/run.hpp"

namespace tessera {

namespace {
// Decodes the answer to a handle query: the handle's container and rights (no pool: the
// engine has its map). Target thread, inside the fetch callbacks.
Result<mgmt::HandleView> decode_handle(const Message& m) {
  capn::DecodeScope ds;
  capn::BodyReader br(m.body);
  auto rep = br.root<schema::MgmtRep>();
  if (!rep.isHandle()) return Status(Errc::protocol, "management reply is not a handle");
  auto h = rep.getHandle();
  mgmt::HandleView v;
  v.cookie = h.getCookie();
  v.perms = h.getPerms();
  auto cont = mgmt::decode_cont(h.getCont());
  if (!cont) return cont.status();
  v.cont = std::move(*cont);
  if (ds.failed()) return Status(Errc::protocol, "malformed handle: " + ds.what());
  return v;
}

Result<mgmt::PoolView> decode_pool_rep(const Message& m) {
  capn::DecodeScope ds;
  capn::BodyReader br(m.body);
  auto rep = br.root<schema::MgmtRep>();
  if (!rep.isPool()) return Status(Errc::protocol, "management reply is not a pool");
  auto v = mgmt::decode_pool(rep.getPool());
  if (ds.failed()) return Status(Errc::protocol, "malformed pool: " + ds.what());
  return v;
}

// The reply to poolSnapshots: what the pool's aggregation must respect.
Result<storage::AggregationGuard> decode_guard_rep(uint32_t pool, const Message& m) {
  capn::DecodeScope ds;
  capn::BodyReader br(m.body);
  auto rep = br.root<schema::MgmtRep>();
  if (!rep.isEpochs()) return Status(Errc::protocol, "management reply is not a list of epochs");
  std::vector<uint64_t> epochs;
  for (uint64_t e : rep.getEpochs()) epochs.push_back(e);
  const bool moving = rep.getPoolMoving();
  const std::string pending = rep.getPoolReclaimPending();
  if (ds.failed()) return Status(Errc::protocol, "malformed epochs: " + ds.what());
  return aggregation_guard(pool, std::move(epochs), moving, pending);
}

// The reply to poolProps: the pool's properties.
Result<std::map<std::string, std::string>> decode_props_rep(const Message& m) {
  capn::DecodeScope ds;
  capn::BodyReader br(m.body);
  auto rep = br.root<schema::MgmtRep>();
  if (!rep.isProps()) return Status(Errc::protocol, "management reply is not a property list");
  std::map<std::string, std::string> props;
  for (auto kv : rep.getProps()) props[kv.getName()] = kv.getValue();
  if (ds.failed()) return Status(Errc::protocol, "malformed properties: " + ds.what());
  return props;
}

Buffer mgmt_request(const std::function<void(schema::MgmtReq::Builder)>& fill) {
  static const mgmt::Cred cred = mgmt::Cred::current();
  capnp::MallocMessageBuilder b(256);
  auto r = b.initRoot<schema::MgmtReq>();
  mgmt::encode_cred(r.initCred(), cred);
  fill(r);
  return capn::to_body(b);
}

// Runs `fn` on the engine's first target (`home`) for a fiber of `t` and waits for its answer,
// which comes back through t's inbox. Either target may stop meanwhile: the wait ends then (a
// stopped target runs no more of its inbox).
template <typename T>
Result<T> on_home(Target& t, Target& home, const std::function<Result<T>()>& fn) {
  if (&t == &home) return fn();
  auto p = std::make_shared<boost::fibers::promise<Result<T>>>();
  auto f = p->get_future();
  home.post([&t, p, fn] {
    auto r = std::make_shared<Result<T>>(fn());
    t.post([p, r] { p->set_value(std::move(*r)); });
  });
  while (f.wait_for(std::chrono::milliseconds(100)) != boost::fibers::future_status::ready) {
    if (t.stopping() || home.stopping()) return Status(Errc::shutdown, "the engine is stopping");
  }
  return f.get();
}

// Asks the management service from a fiber on `t`: the answer comes back through t's inbox.
template <typename T, typename Decode>
Result<T> ask_mgmt(mgmt::MgmtLink* link, Target& t, Buffer body, Decode decode) {
  auto p = std::make_shared<boost::fibers::promise<Result<T>>>();
  auto f = p->get_future();
  link->ask(std::move(body), [&t, p, decode](Result<Message> r) {
    auto res = std::make_shared<Result<Message>>(std::move(r));
    t.post([p, res, decode] {
      if (!*res) return p->set_value(res->status());
      p->set_value(decode(**res));
    });
  });
  return f.get();
}
}  // namespace

void Engine::attach(mgmt::MgmtLink* link) {
  link_ = link;
  // Pool views are fetched by the first target's fibers for every target of the engine, one
  // fetch per pool at a time (SingleFlight), and the newest view of each pool is kept there: a
  // target that needs map version V or newer gets it without a fetch once another target
  // brought it. (After a map change every target meets requests of the new version, and each
  // asked the management service for the whole view on its own: 16 fetches per engine and
  // change at 16 targets.) An ask for any version (min_version 0: the current map, for a
  // transaction's resolution on a shard that has none) always fetches.
  using View = std::shared_ptr<const mgmt::PoolView>;
  if (slots_.empty()) return;
  Target& home = *slots_.front()->target;
  TargetPools* home_pools = &slots_.front()->pools;
  auto flights = std::make_shared<SingleFlight<uint32_t, View>>();  // home's fibers only
  auto newest = std::make_shared<std::map<uint32_t, View>>();       // home's fibers only
  auto fetch_home = [link, &home, home_pools, flights, newest](
                        uint32_t pool, uint32_t min_version) -> Result<View> {
    if (auto it = newest->find(pool);
        min_version > 0 && it != newest->end() && it->second->pool.map.version >= min_version) {
      return it->second;
    }
    auto fetch = [&]() -> Result<View> {
      ++(min_version > 0 ? home_pools->views_fetched : home_pools->views_refetched);
      auto v = ask_mgmt<mgmt::PoolView>(
          link, home, mgmt_request([pool](schema::MgmtReq::Builder r) { r.setPoolMap(pool); }),
          decode_pool_rep);
      if (!v) return v.status();
      return std::make_shared<const mgmt::PoolView>(std::move(*v));
    };
    auto r = flights->get(
        pool, fetch, [min_version](const View& v) { return v->pool.map.version >= min_version; });
    if (r) {
      View& known = (*newest)[pool];
      if (!known || (*r)->pool.map.version >= known->pool.map.version) known = *r;
    }
    return r;
  };
  // The pool's properties (the scrubber's settings) are asked for alone, by the first target for
  // all, at most once per pool every few seconds: a property change does not change the map,
  // and each target asked for the whole view every 5 s (3,300 views of 674 KiB a second from
  // the management leader at 1,024 engines of 16 targets; docs/SCALE.md).
  using Props = std::map<std::string, std::string>;
  static constexpr auto kPropsAge = std::chrono::seconds(5);
  auto props_flights = std::make_shared<SingleFlight<uint32_t, Props>>();  // home's only
  auto props_known = std::make_shared<std::map<uint32_t, std::pair<Props, Nanos>>>();  // "
  auto props_home = [link, &home, home_pools, props_flights,
                     props_known](uint32_t pool) -> Result<Props> {
    if (auto it = props_known->find(pool);
        it != props_known->end() && home.env().now() - it->second.second < kPropsAge) {
      return it->second.first;
    }
    auto fetch = [&]() -> Result<Props> {
      ++home_pools->props_fetched;
      return ask_mgmt<Props>(
          link, home, mgmt_request([pool](schema::MgmtReq::Builder r) { r.setPoolProps(pool); }),
          decode_props_rep);
    };
    auto r = props_flights->get(pool, fetch, [](const Props&) { return true; });
    if (r) (*props_known)[pool] = {*r, home.env().now()};
    return r;
  };
  for (auto& sp : slots_) {
    Slot* s = sp.get();
    (void)run_on(*s->target, [this, s, link, &home, fetch_home, props_home] {
      s->pools.opening = true;  // until open_pools: the join names the shards to open
      Target& t = *s->target;
      s->pools.fetch_view = [&t, &home, fetch_home](uint32_t pool, uint32_t min_version) {
        return on_home<View>(t, home, [=] { return fetch_home(pool, min_version); });
      };
      s->pools.fetch_props = [&t, &home, props_home](uint32_t pool) {
        return on_home<Props>(t, home, [=] { return props_home(pool); });
      };
      s->pools.fetch_guard = [link, &t](uint32_t pool) {
        return ask_mgmt<storage::AggregationGuard>(
            link, t, mgmt_request([pool](schema::MgmtReq::Builder r) { r.setPoolSnapshots(pool); }),
            [pool](const Message& m) { return decode_guard_rep(pool, m); });
      };
      const uint32_t rank = cfg_.rank;
      s->pools.report_reclaimed = [link, &t, rank](uint32_t pool, uint32_t version) {
        auto r = ask_mgmt<bool>(link, t, mgmt_request([&](schema::MgmtReq::Builder q) {
                                  auto d = q.initReclaimDone();
                                  d.setPool(pool);
                                  d.setRank(rank);
                                  d.setTarget(static_cast<uint32_t>(t.index()));
                                  d.setVersion(version);
                                }),
                                [](const Message&) -> Result<bool> { return true; });
        return r.status();
      };
      s->pools.fetch_handle = [link, &t](uint32_t pool, uint64_t cookie) {
        return ask_mgmt<mgmt::HandleView>(link, t, mgmt_request([&](schema::MgmtReq::Builder r) {
                                            auto h = r.initHandleQuery();
                                            h.setPool(pool);
                                            h.setCookie(cookie);
                                          }),
                                          decode_handle);
      };
      ActorRuntime* rt = s->rt.get();
      uint32_t self = cfg_.rank;
      s->pools.learn = [rt, self](const mgmt::PoolView& v) { mgmt::learn_view(*rt, v, self); };
      return Status();
    });
  }
  start_background();
}

void Engine::start_background() {
  const auto reencode = std::chrono::milliseconds(cfg_.ec_reencode_interval_ms);
  const auto reclaim = std::chrono::milliseconds(cfg_.reclaim_interval_ms);
  const uint32_t rank = cfg_.rank;
  for (auto& sp : slots_) {
    Slot* s = sp.get();
    if (reencode.count() > 0) {
      s->target->post([s, rank, reencode] {
        rebuild::reencode_loop(*s->target, *s->rt, s->pools, rank, reencode);
      });
    }
    if (reclaim.count() > 0) {
      s->target->post(
          [s, rank, reclaim] { rebuild::reclaim_loop(*s->target, s->pools, rank, reclaim); });
    }
  }
}

static Result<std::vector<mgmt::Member>> decode_members_rep(const Message& m) {
  capn::DecodeScope ds;
  capn::BodyReader br(m.body);
  auto rep = br.root<schema::MgmtRep>();
  std::vector<mgmt::Member> out;
  for (auto x : rep.getMembers()) {
    auto d = mgmt::decode_member(x);
    if (!d) return d.status();
    out.push_back(std::move(*d));
  }
  if (ds.failed()) return Status(Errc::protocol, "malformed member list: " + ds.what());
  return out;
}

static Result<bool> decode_none(const Message&) {
  return true;
}

Status Engine::start_swim(const SwimOptions& opts) {
  if (link_ == nullptr || slots_.empty() || opts.period.count() == 0) return Status();
  Slot* s = slots_.front().get();
  mgmt::MgmtLink* link = link_;
  const uint32_t self = cfg_.rank;
  return run_on(*s->target, [s, link, self, opts] {
    Target& t = *s->target;
    auto members = [link, &t]() -> Result<std::vector<SwimActor::Peer>> {
      auto r = ask_mgmt<std::vector<mgmt::Member>>(
          link, t, mgmt_request([](schema::MgmtReq::Builder r) { r.setSystemQuery(); }),
          decode_members_rep);
      if (!r) return r.status();
      std::vector<SwimActor::Peer> out;
      for (const auto& m : *r) {
        if (m.state == mgmt::MemberState::joined && !m.fabric_addrs.empty()) {
          out.push_back({m.rank, m.fabric_addrs[0], m.incarnation});
        }
      }
      return out;
    };
    auto report = [link, &t, self](uint32_t rank, uint64_t life) -> Status {
      auto r = ask_mgmt<bool>(link, t, mgmt_request([&](schema::MgmtReq::Builder r) {
                                auto d = r.initRankDead();
                                d.setRank(rank);
                                d.setReporter(self);
                                d.setIncarnation(life);
                              }),
                              decode_none);
      return r ? Status() : r.status();
    };
    s->swim = std::make_unique<SwimActor>(*s->rt, self, opts, members, report);
    s->rt->register_actor(proto::kSwimActor, s->swim.get());
    s->swim->start();
    return Status();
  });
}

void Engine::report_damage(uint32_t pool, uint32_t target, const std::string& reason) {
  mgmt::MgmtLink* link = link_;
  if (link == nullptr) return;
  const uint32_t rank = cfg_.rank;
  link->ask(mgmt_request([&](schema::MgmtReq::Builder r) {
              auto d = r.initShardDamaged();
              d.setPool(pool);
              d.setRank(rank);
              d.setTarget(target);
              d.setReason(reason);
            }),
            [pool, target](Result<Message> m) {
              if (!m) {
                log::error(
                    "pool {} target {}: the management service did not take the damage "
                    "report: {}",
                    pool, target, m.status().to_string());
              }
            });
}

void Engine::start_rebuild(uint32_t pool, uint32_t gen, uint32_t version) {
  mgmt::MgmtLink* link = link_;
  if (link == nullptr) return;
  const uint32_t rank = cfg_.rank;
  const rebuild::RunOptions o{pool, gen, version,
                              static_cast<double>(cfg_.rebuild_share_pct) / 100.0};
  for (auto& sp : slots_) {
    Slot* s = sp.get();
    s->target->post([s, link, rank, o] {
      Target& t = *s->target;
      const auto index = static_cast<uint32_t>(t.index());
      // Progress and the end go to the management service (actors/mgmt/service.cpp).
      auto report = [&t, link, rank, index, &o](const TargetPools::RebuildRun& r, bool done) {
        auto a = ask_mgmt<bool>(link, t, mgmt_request([&](schema::MgmtReq::Builder m) {
                                  auto x = m.initRebuildReport();
                                  x.setPool(o.pool);
                                  x.setGen(o.gen);
                                  x.setRank(rank);
                                  x.setTarget(index);
                                  x.setDone(done);
                                  x.setError(r.error);
                                  x.setObjects(r.objects);
                                  x.setRecords(r.records);
                                  x.setBytes(r.bytes);
                                  x.setLost(r.lost);
                                  x.setPlanned(r.planned);
                                }),
                                decode_none);
        if (!a) log::warn("rebuild report for pool {}: {}", o.pool, a.status().to_string());
      };
      rebuild::run_generation(*s->rt, s->pools, rank, o, report);
    });
  }
}

}  // namespace tessera

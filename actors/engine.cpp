#include "actors/engine.hpp"
#include "actors/engine_internal.hpp"

#include <unistd.h>

#include <filesystem>
#include <future>

#include "actors/object_service.hpp"
#include "actors/swim.hpp"
#include "core/crash_point.hpp"
#include "core/log.hpp"
#include "core/single_flight.hpp"
#include "core/version.hpp"
#include "mgmt/codec.hpp"
#include "net/fabric.hpp"
#include "proto/capnp_util.hpp"
#include "proto/protocol.hpp"
#include "proto/system.capnp.h"
#include "rebuild/reclaim.hpp"
#include "rebuild/reencode.hpp"
#include "rebuild/run.hpp"
#include "security/names.hpp"
#include "storage/store.hpp"

namespace tessera {

namespace {

// Closes and forgets a target's shard of a pool (target thread, in a fiber). A background pass
// using the shard (re-encoding) is told to stop and ends its request first.
std::string shard_path(const std::string& pool_dir, uint32_t target) {
  return fmt::format("{}/target{}.dat", pool_dir, target);
}

std::string drop_shard(Target& t, TargetPools& pools, uint32_t id) {
  pools.damaged.erase(id);
  auto it = pools.shards.find(id);
  if (it == pools.shards.end()) return {};
  it->second->closing = true;
  while (it->second->users > 0) t.sleep_for(std::chrono::milliseconds(1));
  it = pools.shards.find(id);
  std::string path = it->second->path;
  it->second->store->close();
  pools.shards.erase(it);
  return path;
}

storage::StoreOptions store_options(const EngineConfig& cfg, uint32_t target, uint64_t bytes) {
  storage::StoreOptions so;
  so.target_index = target;
  so.name = fmt::format("rank {} target {}", cfg.rank, target);
  so.wal_bytes = bytes == cfg.storage_bytes ? cfg.wal_bytes : 0;
  so.checksum = cfg.checksum == "crc64" ? CsumType::crc64 : CsumType::crc32c;
  so.checkpoint_interval = std::chrono::milliseconds(cfg.checkpoint_interval_ms);
  so.aggregation_interval = std::chrono::milliseconds(cfg.aggregation_interval_ms);
  so.aggregation_delay = std::chrono::milliseconds(cfg.aggregation_delay_ms);
  return so;
}
}  // namespace

Engine::Engine(Env& env, EngineConfig cfg, std::shared_ptr<const security::SystemKey> key)
    : env_(env), cfg_(std::move(cfg)), key_(std::move(key)) {}

Engine::~Engine() {
  stop();
}

Status Engine::start() {
  started_ = std::chrono::steady_clock::now();
  std::error_code ec;
  std::filesystem::create_directories(cfg_.storage_dir, ec);
  if (ec) {
    return Status(Errc::permission, fmt::format("cannot create storage directory {}: {}",
                                                cfg_.storage_dir, ec.message()));
  }
  if (::access(cfg_.storage_dir.c_str(), W_OK) != 0) {
    return Status(Errc::permission,
                  fmt::format("storage directory {} is not writable", cfg_.storage_dir));
  }
  runtimes_ = std::make_shared<std::vector<ActorRuntime*>>(cfg_.targets, nullptr);
  for (uint32_t i = 0; i < cfg_.targets; ++i) {
    auto s = std::make_unique<Slot>();
    TargetOptions to;
    to.index = i;
    to.cpu = cfg_.cpus.at(i);
    to.busy_poll = cfg_.busy_poll;
    to.spin_window = std::chrono::microseconds(cfg_.spin_us);
    s->target = std::make_unique<Target>(env_, to);
    s->rt = std::make_unique<ActorRuntime>(*s->target, cfg_.rank);
    (*runtimes_)[i] = s->rt.get();
    s->path = fmt::format("{}/rank{}-target{}.dat", cfg_.storage_dir, cfg_.rank, i);
    slots_.push_back(std::move(s));
  }
  for (auto& sp : slots_) {
    Slot* s = sp.get();
    s->rt->set_local_peers(runtimes_);
    std::promise<Status> ready;
    auto fut = ready.get_future();
    Status st = s->target->start([this, s, &ready] {
      storage::BlockQueueOptions qo;
      qo.backend = cfg_.block_backend;
      qo.path = s->path;
      qo.size = cfg_.storage_bytes;
      auto q = storage::open_block_queue(qo);
      if (!q) return ready.set_value(q.status());
      s->backend = std::string((*q)->backend());
      auto so = store_options(cfg_, s->target->index(), cfg_.storage_bytes);
      auto store = storage::TargetStore::open(*s->target, std::move(*q), so);
      if (!store) {
        return ready.set_value(Status(store.status().code(),
                                      fmt::format("{}: {}", s->path, store.status().message())));
      }
      s->store = std::move(*store);
      net::FabricOptions fo;
      fo.provider = cfg_.provider;
      fo.node = cfg_.fabric_node;
      fo.max_message = cfg_.max_message_bytes;
      fo.key = key_;
      fo.trust_unauthenticated = cfg_.insecure;
      // Eight times the provider's default: each client or engine that dies while sending a
      // large message here costs some for the engine's life (net/fabric.hpp). About 7 MiB.
      fo.rx_queue = 16384;
      ActorRuntime* rt = s->rt.get();
      rt->require_trusted_replies(!cfg_.insecure);
      auto ep = net::FabricEndpoint::open(fo, [rt](Message&& m) { rt->deliver(std::move(m)); });
      if (!ep) return ready.set_value(ep.status());
      s->ep = std::move(*ep);
      s->fabric_addr = s->ep->address();
      s->target->add_poller(s->ep.get());
      rt->set_transport(s->ep.get());
      s->pools.scratch = s->store.get();
      s->pools.backend = s->backend;
      s->svc = std::make_unique<ObjectService>(*rt, s->pools, cfg_.rank,
                                               static_cast<uint16_t>(s->target->index()));
      rt->register_actor(proto::kObjectServiceActor, s->svc.get());
      ObjectService* svc = s->svc.get();
      s->pools.settle = [svc](PoolShard& sh) { return svc->settle_all(sh); };
      s->target->spawn([svc] { svc->run_dtx_background(); });
      s->target->spawn([svc] { svc->run_scrubber(); });
      log::info("target {} serving on CPU {} ({} queue, fabric {})", s->target->index(),
                s->target->cpu(), s->backend, s->ep->printable(s->fabric_addr));
      ready.set_value(Status());
    });
    if (st.is_ok()) st = fut.get();
    if (!st.is_ok()) {
      stop();
      return st;
    }
  }
  return Status();
}

void Engine::stop() {
  for (auto& s : slots_) {
    if (s->target) s->target->stop();
  }
  // The threads are gone; release what they owned in dependency order.
  for (auto& s : slots_) {
    s->svc.reset();
    s->swim.reset();
    s->pools.shards.clear();
    s->store.reset();
    s->ep.reset();
  }
  for (auto& s : slots_) s->rt.reset();
  slots_.clear();
}

Buffer Engine::system_info(const std::string& control_addr) {
  capnp::MallocMessageBuilder b(1024);
  auto info = b.initRoot<schema::SystemInfo>();
  info.setRank(cfg_.rank);
  info.setProvider(cfg_.provider);
  info.setPid(static_cast<int32_t>(::getpid()));
  info.setVersion(version());
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  info.setHostname(host);
  info.setControlAddr(control_addr);
  {
    std::lock_guard lk(metrics_mu_);
    info.setMetricsAddr(metrics_addr_);
  }
  info.setFormatDone(format_done_.load());
  info.setFormatTotal(format_total_.load());
  info.setPoolsOpen(pools_open_.load());
  info.setUptimeMs(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                             std::chrono::steady_clock::now() - started_)
                                             .count()));
  auto targets = info.initTargets(static_cast<unsigned>(slots_.size()));
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot* s = slots_[i].get();
    auto t = targets[i];
    t.setIndex(s->target->index());
    t.setCpu(s->target->cpu());
    t.setTid(s->target->tid());
    t.setFabricAddr(capn::as_data(s->fabric_addr));
    t.setBackend(s->backend);
    t.setStoragePath(s->path);
    auto p = std::make_shared<std::promise<storage::StoreStats>>();
    auto f = p->get_future();
    s->target->post([s, p] { p->set_value(s->store->stats()); });
    if (f.wait_for(std::chrono::seconds(5)) == std::future_status::ready) {
      auto st = f.get();
      t.setCapacity(st.capacity);
      t.setUsed(st.used);
    }
  }
  return capn::to_body(b);
}

std::vector<std::string> Engine::fabric_addrs() const {
  std::vector<std::string> out;
  for (const auto& s : slots_) out.push_back(s->fabric_addr);
  return out;
}

std::string Engine::host() const {
  if (!cfg_.host.empty()) return cfg_.host;
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  return host;
}

Result<std::string> Engine::pool_dir(uint32_t id, const std::string& uuid) const {
  // The UUID came over the network: it names a directory only in its canonical form.
  if (!security::is_uuid(uuid)) {
    return Status(Errc::invalid_argument, fmt::format("pool {}: '{}' is not a UUID", id, uuid));
  }
  return fmt::format("{}/pools/{}-{}", cfg_.storage_dir, id, uuid);
}

namespace {
// Decodes a MgmtRep carrying a pool or a handle (target thread, inside the fetch callbacks).
Result<mgmt::HandleView> decode_handle(const Message& m) {
  capn::DecodeScope ds;
  capn::BodyReader br(m.body);
  auto rep = br.root<schema::MgmtRep>();
  if (!rep.isHandle()) return Status(Errc::protocol, "management reply is not a handle");
  auto h = rep.getHandle();
  mgmt::HandleView v;
  v.cookie = h.getCookie();
  v.perms = h.getPerms();
  auto pool = mgmt::decode_pool(h.getPool());
  if (!pool) return pool.status();
  v.pool = std::move(*pool);
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

Status Engine::create_shards(uint32_t id, const std::string& uuid, uint64_t bytes) {
  auto where = pool_dir(id, uuid);
  if (!where) return where.status();
  const std::string& dir = *where;
  std::lock_guard lk(pools_mu_);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status(Errc::io_error, fmt::format("cannot create {}: {}", dir, ec.message()));
  // Size every file here (blocking calls belong on this control thread, not on a target)...
  std::vector<std::string> paths;
  uint64_t formatting = 0;
  for (auto& sp : slots_) {
    std::string path = shard_path(dir, static_cast<uint32_t>(sp->target->index()));
    auto f = storage::open_backing_file(path, bytes, false);
    if (!f) return Status(f.status().code(), fmt::format("{}: {}", path, f.status().message()));
    ::close(f->fd);
    if (f->created) formatting += bytes;
    paths.push_back(std::move(path));
  }
  // ... then every target opens its store at once, formatting a new file (it writes the whole
  // file once: the bulk of a pool create). How far they are is in the engine's system info.
  format_total_ = formatting;
  format_done_ = 0;
  std::vector<std::future<Status>> opened;
  // Per target: why its store of the pool is damaged (empty: it is not). Written by the
  // target before it sets its promise, read here after the future is ready.
  std::vector<std::string> damage(slots_.size());
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot* s = slots_[i].get();
    auto p = std::make_shared<std::promise<Status>>();
    opened.push_back(p->get_future());
    s->target->post([this, s, p, id, uuid, bytes, path = paths[i], why = &damage[i]] {
      p->set_value([&]() -> Status {
        if (s->pools.shards.count(id) != 0) return Status();  // already open
        if (auto d = s->pools.damaged.find(id); d != s->pools.damaged.end()) {
          *why = d->second;  // found before: reported again, not read again
          return Status();
        }
        storage::BlockQueueOptions qo;
        qo.backend = cfg_.block_backend;
        qo.path = path;
        qo.size = bytes;
        auto q = storage::open_block_queue(qo);
        if (!q) return q.status();
        auto so = store_options(cfg_, s->target->index(), bytes);
        so.formatted = [this](uint64_t n) { format_done_ += n; };
        // Background aggregation keeps every snapshot of the pool's containers readable, and
        // punches while a rebuild moves the pool's data or former homes keep copies: it asks the
        // management service (for the epochs and the map's state, not the whole pool) and the
        // shard before each pass (TargetPools::guard).
        so.guard = [s, id]() { return s->pools.guard(id); };
        auto store = storage::TargetStore::open(*s->target, std::move(*q), so);
        if (!store && store.status().code() == Errc::checksum) {
          // Damaged (the log, a checkpoint or the superblock fails its checks): this target
          // does not serve the pool; the others do, and the management service hears of it.
          *why = store.status().message();
          s->pools.damaged[id] = *why;
          log::error("pool {} target {}: {}: not served: {}", id, s->target->index(), path, *why);
          return Status();
        }
        if (!store) {
          return Status(store.status().code(),
                        fmt::format("{}: {}", path, store.status().message()));
        }
        auto sh = std::make_unique<PoolShard>();
        sh->id = id;
        sh->uuid = uuid;
        sh->path = path;
        sh->store = std::move(*store);
        s->pools.shards[id] = std::move(sh);
        return Status();
      }());
    });
  }
  Status first;
  for (size_t i = 0; i < opened.size(); ++i) {
    Status st = opened[i].wait_for(std::chrono::minutes(30)) == std::future_status::ready
                    ? opened[i].get()
                    : Status(Errc::timeout, fmt::format("target {} did not open pool {} within "
                                                        "30 minutes",
                                                        i, id));
    if (!st.is_ok() && first.is_ok()) first = st;
  }
  format_total_ = 0;
  format_done_ = 0;
  for (size_t i = 0; i < damage.size(); ++i) {
    if (!damage[i].empty()) report_damage(id, static_cast<uint32_t>(i), damage[i]);
  }
  TESSERA_TRY(first);
  log::info("pool {} ({}) shards open on {} targets", id, uuid, slots_.size());
  return Status();
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

Status Engine::destroy_shards(uint32_t id, const std::string& uuid) {
  auto dir = pool_dir(id, uuid);
  if (!dir) return dir.status();
  std::lock_guard lk(pools_mu_);
  for (auto& sp : slots_) {
    Slot* s = sp.get();
    TESSERA_TRY(run_on(*s->target, [s, id]() -> Status {
      drop_shard(*s->target, s->pools, id);
      return Status();
    }));
  }
  std::error_code ec;
  std::filesystem::remove_all(*dir, ec);
  if (ec) return Status(Errc::io_error, fmt::format("removing pool {}: {}", id, ec.message()));
  log::info("pool {} ({}) shards destroyed", id, uuid);
  return Status();
}

Status Engine::revoke_handles(uint32_t pool, const std::vector<uint64_t>& cookies) {
  for (auto& sp : slots_) {
    Slot* s = sp.get();
    // The fiber owns its copy of the cookies: a wait that times out leaves it nothing of ours.
    TESSERA_TRY(run_on(*s->target, [s, pool, cookies]() -> Status {
      auto it = s->pools.shards.find(pool);
      if (it == s->pools.shards.end()) return Status();
      for (uint64_t c : cookies) it->second->handles.erase(c);
      return Status();
    }));
  }
  log::info("pool {}: {} container handle(s) revoked", pool, cookies.size());
  return Status();
}

Status Engine::reset_shards(uint32_t id, const std::string& uuid, uint64_t bytes,
                            const std::vector<uint32_t>& targets) {
  auto dir = pool_dir(id, uuid);
  if (!dir) return dir.status();
  {
    std::lock_guard lk(pools_mu_);
    for (uint32_t ti : targets) {
      if (ti >= slots_.size())
        return Status(Errc::invalid_argument, fmt::format("no target {}", ti));
      Slot* s = slots_[ti].get();
      auto dropped = post_wait(*s->target, [s, id]() -> Result<std::string> {
        s->pools.stopped = false;  // reintegrated: it serves again, with fresh shards
        return drop_shard(*s->target, s->pools, id);
      });
      if (!dropped) return dropped.status();
      // The file goes whether or not a store was open on it (a damaged one never was).
      const std::string path = shard_path(*dir, ti);
      std::error_code ec;
      std::filesystem::remove(path, ec);
      if (ec) return Status(Errc::io_error, fmt::format("removing {}: {}", path, ec.message()));
    }
  }
  log::info("pool {} ({}): stale data of {} targets dropped for reintegration", id, uuid,
            targets.size());
  return create_shards(id, uuid, bytes);
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

void Engine::open_pools(const std::vector<mgmt::ShardInfo>& pools) {
  delay_point("engine.open_pools");  // (the link thread: a test makes the opening late)
  for (const auto& p : pools) {
    Status st = create_shards(p.id, p.uuid, p.target_bytes);
    // A snapshot taken while this engine was away may lie above its clocks: its targets issue
    // epochs above it before they serve, or a write after the snapshot would appear in it.
    if (st.is_ok()) st = fence_epochs(p.id, p.epoch_floor).status();
    if (!st.is_ok()) log::error("pool {} shards: {}", p.id, st.to_string());
  }
  for (auto& sp : slots_) {
    Slot* s = sp.get();
    (void)run_on(*s->target, [s] {
      s->pools.opening = false;
      return Status();
    });
  }
  pools_open_ = true;
}

Result<Buffer> Engine::control(const Message& m) {
  if (!m.trusted()) {
    return Status(Errc::unauthenticated,
                  "engine control requests are served only to engines and administrators (a "
                  "message authenticated with the system key)");
  }
  capn::DecodeScope ds;
  capn::BodyReader br(m.body);
  auto req = br.root<schema::EngineReq>();
  if (req.which() == schema::EngineReq::CONT_ROLLBACK) return on_rollback(req, ds);
  if (req.which() == schema::EngineReq::EPOCH_FENCE) return on_fence(req, ds);
  TESSERA_TRY(control_op(req, ds));
  return Buffer();
}

Status Engine::control_op(schema::EngineReq::Reader req, capn::DecodeScope& ds) {
  switch (req.which()) {
    case schema::EngineReq::POOL_SHARD_CREATE: {
      auto r = req.getPoolShardCreate();
      std::string uuid = r.getUuid();
      uint64_t bytes = r.getTargetBytes(), floor = r.getEpochFloor();
      uint32_t id = r.getId();
      if (ds.failed()) return Status(Errc::protocol, "malformed engine request: " + ds.what());
      TESSERA_TRY(create_shards(id, uuid, bytes));
      return fence_epochs(id, floor).status();
    }
    case schema::EngineReq::POOL_SHARD_DESTROY: {
      auto r = req.getPoolShardDestroy();
      std::string uuid = r.getUuid();
      uint32_t id = r.getId();
      if (ds.failed()) return Status(Errc::protocol, "malformed engine request: " + ds.what());
      return destroy_shards(id, uuid);
    }
    case schema::EngineReq::CONT_PURGE: {
      auto r = req.getContPurge();
      uint32_t pool = r.getPool(), cont = r.getCont();
      if (ds.failed()) return Status(Errc::protocol, "malformed engine request: " + ds.what());
      return purge_container(pool, cont);
    }
    case schema::EngineReq::CONT_ROLLBACK:
    case schema::EngineReq::EPOCH_FENCE:
      break;  // control() answers them
    case schema::EngineReq::SHUTDOWN:
      return Status(Errc::unsupported, "stop an engine with SIGTERM");
    case schema::EngineReq::REBUILD_START: {
      auto r = req.getRebuildStart();
      uint32_t pool = r.getPool(), gen = r.getGen(), version = r.getVersion();
      if (ds.failed()) return Status(Errc::protocol, "malformed engine request: " + ds.what());
      start_rebuild(pool, gen, version);
      return Status();
    }
    case schema::EngineReq::POOL_SHARD_RESET: {
      auto r = req.getPoolShardReset();
      uint32_t id = r.getShard().getId();
      std::string uuid = r.getShard().getUuid();
      uint64_t bytes = r.getShard().getTargetBytes(), floor = r.getShard().getEpochFloor();
      std::vector<uint32_t> targets, keep;
      for (uint32_t t : r.getTargets()) targets.push_back(t);
      for (uint32_t t : r.getKeep()) keep.push_back(t);
      if (ds.failed()) return Status(Errc::protocol, "malformed engine request: " + ds.what());
      for (uint32_t ti : keep) {
        if (ti >= slots_.size())
          return Status(Errc::invalid_argument, fmt::format("no target {}", ti));
        Slot* s = slots_[ti].get();
        TESSERA_TRY(run_on(*s->target, [s]() -> Status {
          s->pools.stopped = false;  // reintegrated with its data: it serves again
          return Status();
        }));
      }
      if (!targets.empty()) TESSERA_TRY(reset_shards(id, uuid, bytes, targets));
      return fence_epochs(id, floor).status();
    }
    case schema::EngineReq::HANDLE_REVOKE: {
      auto r = req.getHandleRevoke();
      const uint32_t pool = r.getPool();
      std::vector<uint64_t> cookies;
      for (uint64_t c : r.getCookies()) cookies.push_back(c);
      if (ds.failed()) return Status(Errc::protocol, "malformed engine request: " + ds.what());
      return revoke_handles(pool, cookies);
    }
    case schema::EngineReq::TARGET_STOP: {
      const uint32_t ti = req.getTargetStop();
      if (ti >= slots_.size())
        return Status(Errc::invalid_argument, fmt::format("no target {}", ti));
      Slot* s = slots_[ti].get();
      TESSERA_TRY(run_on(*s->target, [s]() -> Status {
        s->pools.stopped = true;
        return Status();
      }));
      log::warn("target {} stopped by the management service: it refuses I/O until reintegrated",
                ti);
      return Status();
    }
  }
  return Status(Errc::protocol, "unknown engine request");
}

}  // namespace tessera

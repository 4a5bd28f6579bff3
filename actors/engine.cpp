#include "actors/engine.hpp"
#include "actors/engine_internal.hpp"

#include <unistd.h>

#include <filesystem>
#include <future>

#include "actors/object_service.hpp"
#include "actors/swim.hpp"
#include "core/crash_point.hpp"
#include "core/log.hpp"
#include "core/version.hpp"
#include "net/fabric.hpp"
#include "proto/capnp_util.hpp"
#include "proto/protocol.hpp"
#include "proto/system.capnp.h"
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

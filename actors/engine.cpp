#include "actors/engine.hpp"

#include <unistd.h>

#include <filesystem>
#include <future>

#include "actors/object_service.hpp"
#include "actors/protocol.hpp"
#include "actors/schema/capnp_util.hpp"
#include "actors/schema/system.capnp.h"
#include "core/log.hpp"
#include "net/fabric.hpp"
#include "storage/store.hpp"

namespace tessera {

struct Engine::Slot {
  std::unique_ptr<Target> target;
  std::unique_ptr<ActorRuntime> rt;
  std::unique_ptr<storage::TargetStore> store;
  std::unique_ptr<net::FabricEndpoint> ep;
  std::unique_ptr<ObjectService> svc;
  std::string backend;
  std::string path;
  std::string fabric_addr;
};

Engine::Engine(Env& env, EngineConfig cfg) : env_(env), cfg_(std::move(cfg)) {}

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
      storage::StoreOptions so;
      so.target_index = s->target->index();
      so.wal_bytes = cfg_.wal_bytes;
      so.checksum = cfg_.checksum == "crc64" ? CsumType::crc64 : CsumType::crc32c;
      so.checkpoint_interval = std::chrono::milliseconds(cfg_.checkpoint_interval_ms);
      so.aggregation_interval = std::chrono::milliseconds(cfg_.aggregation_interval_ms);
      so.aggregation_delay = std::chrono::milliseconds(cfg_.aggregation_delay_ms);
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
      ActorRuntime* rt = s->rt.get();
      auto ep = net::FabricEndpoint::open(fo, [rt](Message&& m) { rt->deliver(std::move(m)); });
      if (!ep) return ready.set_value(ep.status());
      s->ep = std::move(*ep);
      s->fabric_addr = s->ep->address();
      s->target->add_poller(s->ep.get());
      rt->set_transport(s->ep.get());
      s->svc = std::make_unique<ObjectService>(*rt, *s->store, s->backend);
      rt->register_actor(proto::kObjectServiceActor, s->svc.get());
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
  info.setVersion(TESSERA_VERSION);
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  info.setHostname(host);
  info.setControlAddr(control_addr);
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

}  // namespace tessera

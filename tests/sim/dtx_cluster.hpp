// An in-process pool for the transaction simulation (dtx_sim_test.cpp): real engine code on
// simulated wires and disks.
//
// Real: every engine is a Target thread running the ObjectService (replication, distributed
// and user transactions, resolution, notices) over a TargetStore (WAL, checkpoints, recovery);
// clients speak the object protocol to them with ActorRuntime asks; placement decides groups
// and leaders. Simulated: the fabric (SimNet: a message is handed to the receiver's runtime, or
// dropped, or held back a little, as the seed draws), the management service (a fixed pool map
// and container handle), and the devices (storage::MemoryDisk, which knows what the last sync
// made durable).
//
// A death (SimEngine::die, on the engine's own thread) cuts the engine off the net at once and
// takes the image its disk shows then (kill -9: every completed write), or what a power loss
// leaves (durable blocks, and of the blocks written since the last sync a random choice of new
// or old contents). The old incarnation's fibers may run on until the supervisor stops its
// target, but nothing they send arrives and nothing they write reaches the next incarnation,
// which opens a new store on the image: the engine is dead from that instant, as a real one.
//
// A message to a dead engine fails at once (`unreachable`, as a connection to a closed port); one
// the draw drops is lost silently, and its asker waits out its timeout.
//
// Thread rules: SimNet is called from every target thread and the test's thread (a mutex: this
// is the test's wiring, not an engine's data path); a SimEngine's incarnation is replaced by the
// test's thread only, after its target stopped.
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "actors/object_service.hpp"
#include "core/actor.hpp"
#include "core/sim_env.hpp"
#include "core/target.hpp"
#include "mgmt/state.hpp"
#include "mgmt/types.hpp"
#include "placement/erasure.hpp"
#include "placement/layout.hpp"
#include "proto/protocol.hpp"
#include "rebuild/check.hpp"
#include "shard/pool_shard.hpp"
#include "storage/block_queue.hpp"
#include "storage/store.hpp"

namespace tessera::sim {

// The simulated fabric: addresses to runtimes, with seeded drops and delays.
class SimNet {
 public:
  explicit SimNet(uint64_t seed) : rng_(seed) {}
  struct Faults {
    // Per 100,000 messages: lost (the asker waits out its timeout), held back (reordered
    // behind later ones).
    uint32_t drop = 0;
    uint32_t delay = 0;
    uint32_t max_delay_us = 2000;
  };
  void set_faults(Faults f) {
    std::lock_guard lk(mu_);
    faults_ = f;
  }
  void add(const std::string& addr, ActorRuntime* rt) {
    std::lock_guard lk(mu_);
    nodes_[addr] = rt;
  }
  // Only if `addr` still names `rt` (a new incarnation may have taken it).
  void remove(const std::string& addr, ActorRuntime* rt) {
    std::lock_guard lk(mu_);
    auto it = nodes_.find(addr);
    if (it != nodes_.end() && it->second == rt) nodes_.erase(it);
  }
  // What happens to the next message: dropped, or delayed by this much (0: at once).
  struct Fate {
    bool drop = false;
    Nanos delay{0};
  };
  Fate draw(size_t bytes = 0) {
    std::lock_guard lk(mu_);
    ++sent_;
    bytes_ += bytes;
    Fate f;
    if (faults_.drop > 0 && rng_() % 100000 < faults_.drop) {
      ++dropped_;
      f.drop = true;
    } else if (faults_.delay > 0 && rng_() % 100000 < faults_.delay) {
      f.delay = std::chrono::microseconds(1 + rng_() % faults_.max_delay_us);
    }
    return f;
  }
  // Every runtime on the net fails its asks to `rank` (on its own thread): the rank died.
  void fail_asks_to(uint32_t rank) {
    std::lock_guard lk(mu_);
    for (const auto& [addr, rt] : nodes_) {
      rt->target().post([rt, rank] {
        rt->fail_asks_to(rank, -1, Status(Errc::unreachable, fmt::format("rank {} died", rank)));
      });
    }
  }
  // Hands `m` to the runtime at `addr` (its target thread takes it from there); false when no
  // live runtime has that address.
  bool deliver(const std::string& addr, Message&& m) {
    std::lock_guard lk(mu_);
    auto it = nodes_.find(addr);
    if (it == nodes_.end()) return false;
    if (watch_) watch_(m);
    ActorRuntime* rt = it->second;
    auto& c = counts_[&rt->target()];
    if (!c) c = std::make_shared<Counts>();
    ++c->delivered;
    rt->target().post([rt, c, m = std::move(m)]() mutable {
      rt->deliver(std::move(m));
      ++c->taken;
    });
    return true;
  }
  // Whether nothing moves: every target in `targets` sleeps and took every message delivered
  // to it, unchanged across the look (any thread). A simulation on virtual time moves its clock
  // only then (core/sim_env.hpp). A stopped target is left out by the caller: what it never took
  // stays untaken.
  bool quiet(const std::vector<const Target*>& targets) const {
    std::vector<std::shared_ptr<Counts>> cs;
    {
      std::lock_guard lk(mu_);
      for (const Target* t : targets) {
        auto it = counts_.find(t);
        if (it != counts_.end()) cs.push_back(it->second);
      }
    }
    std::vector<uint64_t> before;
    for (const auto& c : cs) {
      const uint64_t d = c->delivered.load();
      if (c->taken.load() != d) return false;
      before.push_back(d);
    }
    for (const Target* t : targets) {
      if (!t->idle()) return false;
    }
    for (size_t i = 0; i < cs.size(); ++i) {
      if (cs[i]->delivered.load() != before[i] || cs[i]->taken.load() != before[i]) return false;
    }
    return true;
  }
  // Shown every message delivered from now on (under the net's lock, on the sender's thread).
  void watch(std::function<void(const Message&)> w) {
    std::lock_guard lk(mu_);
    watch_ = std::move(w);
  }
  uint64_t sent() const {
    std::lock_guard lk(mu_);
    return sent_;
  }
  uint64_t dropped() const {
    std::lock_guard lk(mu_);
    return dropped_;
  }
  uint64_t bytes() const {  // of the messages' bodies and bulk, sent so far
    std::lock_guard lk(mu_);
    return bytes_;
  }

 private:
  mutable std::mutex mu_;
  std::mt19937_64 rng_;
  Faults faults_;
  std::map<std::string, ActorRuntime*> nodes_;
  uint64_t sent_ = 0, dropped_ = 0, bytes_ = 0;
  std::function<void(const Message&)> watch_;
  struct Counts {
    std::atomic<uint64_t> delivered{0}, taken{0};
  };
  std::map<const Target*, std::shared_ptr<Counts>> counts_;  // messages handed to each target
};

// One runtime's link to the SimNet. The receiver learns the sender's kind from the link (as
// the fabric learns it from the system key's MAC), never from the message.
class SimTransport final : public Transport {
 public:
  SimTransport(SimNet& net, std::string addr, bool engine)
      : net_(net), addr_(std::move(addr)), engine_(engine) {}
  Status send(const std::string& peer, Message&& m) override {
    if (dead) return Status();  // a dead engine's words vanish
    auto fate = net_.draw(m.body.size() + m.bulk.size());
    if (fate.drop) return Status();
    if (fate.delay.count() > 0) {
      Target::current()->sleep_for(fate.delay);
      if (dead) return Status();
    }
    m.origin = engine_ ? Origin::engine : Origin::peer;
    // Nobody there (a dead engine): refused at once, as a connection to a closed port is.
    if (!net_.deliver(peer, std::move(m))) {
      return Status(Errc::unreachable, fmt::format("{} does not answer", peer));
    }
    return Status();
  }
  const std::string& address() const override { return addr_; }
  std::atomic<bool> dead{false};

 private:
  SimNet& net_;
  std::string addr_;
  bool engine_;
};

// Gives one incarnation of an engine (any struct with `target`, `rt` and `tp`) its target on
// `env`, its runtime and its link to the net: the wiring every simulated engine starts with.
template <typename Life>
void wire_engine(Life& l, Env& env, SimNet& net, const std::string& thread, uint32_t rank,
                 const std::string& addr) {
  TargetOptions to;
  to.name = thread;
  to.spin_window = Nanos(0);
  l.target = std::make_unique<Target>(env, to);
  l.rt = std::make_unique<ActorRuntime>(*l.target, rank);
  l.tp = std::make_unique<SimTransport>(net, addr, true);
  l.rt->set_transport(l.tp.get());
}

// A client's own target on the net, its runtime speaking the object protocol as libtessera
// does: started when built, taken off the net and stopped when destroyed (test thread).
struct SimClientNode {
  SimClientNode(Env& env, SimNet& n, const std::string& thread, std::string address, uint32_t id)
      : net(n), addr(std::move(address)) {
    TargetOptions to;
    to.name = thread;
    to.spin_window = Nanos(0);
    target = std::make_unique<Target>(env, to);
    rt = std::make_unique<ActorRuntime>(*target, kClientRankBase | id);
    tp = std::make_unique<SimTransport>(net, addr, false);
    rt->set_transport(tp.get());
    EXPECT_TRUE(target->start().is_ok());
    net.add(addr, rt.get());
  }
  ~SimClientNode() {
    net.remove(addr, rt.get());
    target->stop();
  }
  SimNet& net;
  std::string addr;
  std::unique_ptr<Target> target;
  std::unique_ptr<ActorRuntime> rt;
  std::unique_ptr<SimTransport> tp;
};

// The pool this simulation serves (pool 1, one container), as the management service would
// describe it: the newest view it published (any thread; the test publishes a new one when the
// pool map changes).
class SimPool {
 public:
  std::shared_ptr<const mgmt::PoolView> view() const {
    std::lock_guard lk(mu_);
    return view_;
  }
  void publish(std::shared_ptr<const mgmt::PoolView> v) {
    std::lock_guard lk(mu_);
    view_ = std::move(v);
  }
  // The reclaim reports, as the management service keeps them (MgmtService::cmd_reclaim_done),
  // and the targets whose report the pool's aggregation still waits for.
  void reclaimed(uint32_t rank, uint32_t target, uint32_t version) {
    std::lock_guard lk(mu_);
    uint32_t& seen = reclaimed_[{rank, target}];
    seen = std::max(seen, version);
  }
  std::string reclaim_pending(const mgmt::Pool& p) const {
    std::lock_guard lk(mu_);
    return mgmt::targets_text(mgmt::reclaim_pending(p, reclaimed_));
  }
  uint32_t cont = 1;
  uint64_t cookie = 0x5eed;

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const mgmt::PoolView> view_;
  mgmt::ReclaimReports reclaimed_;
};

// The positions of a key's group that hold a single value: every replica; of an erasure-coded
// object, which keeps a single value whole, the dkey's first data position and its parity
// positions (they rotate with the dkey).
inline std::vector<uint32_t> holders(ObjectId oid, std::string_view dkey) {
  const placement::ObjectClass* cls = placement::find_class(placement::oid_class(oid));
  std::vector<uint32_t> out;
  if (cls->redundancy != placement::Redundancy::erasure) {
    for (uint32_t i = 0; i < cls->group_size; ++i) out.push_back(i);
    return out;
  }
  return placement::ec_geometry(cls->data, cls->parity, 128 * 1024, dkey).single_positions();
}
inline bool erasure_coded(ObjectId oid) {
  return placement::find_class(placement::oid_class(oid))->redundancy ==
         placement::Redundancy::erasure;
}

inline std::string engine_addr(uint32_t rank) {
  return fmt::format("sim-engine-{}", rank);
}

// The management service's command for engine `rank` (one target) joining.
inline nlohmann::json join_cmd(uint32_t rank) {
  return {{"op", "join"},
          {"rank", rank},
          {"host", fmt::format("h{}", rank)},
          {"control_addr", "sim"},
          {"provider", "sim"},
          {"fabric_addrs", nlohmann::json::array({fmt::format("{:02x}", rank)})}};
}

// Engines 0..engines-1 join `st`, which creates pool 1 over them with one container of class
// `oclass` and redundancy factor `rf`: the management service's own state machine.
inline Status create_pool(mgmt::MgmtState& st, uint32_t engines, const std::string& oclass,
                          uint32_t rf, uint32_t cell_size = 128 * 1024);

// The view of pool 1 of `st` the management service would give engines and clients.
inline std::shared_ptr<mgmt::PoolView> pool_view(const mgmt::MgmtState& st, uint32_t engines) {
  auto v = std::make_shared<mgmt::PoolView>();
  v->pool = *st.pool(1);
  v->provider = "sim";
  for (uint32_t r = 0; r < engines; ++r) {
    v->addrs[r] = mgmt::EngineAddr{"sim", {engine_addr(r)}, "joined"};
  }
  mgmt::ContView cv;
  cv.c = v->pool.containers.begin()->second;
  v->conts.push_back(cv);
  return v;
}

// One engine of one target: its incarnations come and go, its disk stays.
class SimEngine {
 public:
  static constexpr uint64_t kDiskBytes = 16ull << 20;
  SimEngine(Env& env, SimNet& net, SimPool& pool, uint32_t rank, uint64_t seed)
      : env_(env),
        net_(net),
        pool_(pool),
        rank_(rank),
        rng_(seed),
        disk_(std::make_shared<storage::MemoryDisk>(kDiskBytes)) {}
  ~SimEngine() {
    stop();
    for (auto& r : reapers_) r.join();
  }
  // Background aggregation of the engine's store (0: none, every version stays readable). Its
  // passes keep the snapshots of the published pool's containers readable, as an engine's do.
  // Set before start().
  std::chrono::milliseconds aggregation_interval{0};
  std::chrono::milliseconds aggregation_delay{0};
  // Background work each incarnation runs in a fiber of its target from its start, as an
  // engine's targets run theirs (e.g. rebuild::reencode_loop). Set before start().
  std::function<void(Target&, ActorRuntime&, TargetPools&, uint32_t rank)> background;

  // Starts an incarnation on the disk's current image (test thread).
  Status start() {
    auto l = std::make_unique<Life>();
    wire_engine(*l, env_, net_, fmt::format("sim-r{}", rank_), rank_, engine_addr(rank_));
    l->peers = std::make_shared<std::vector<ActorRuntime*>>(1, l->rt.get());
    l->rt->set_local_peers(l->peers);
    l->rt->require_trusted_replies(true);
    l->pools = std::make_unique<TargetPools>();
    {
      std::lock_guard lk(mu_);
      life_ = std::move(l);
      dead_ = false;
    }
    std::promise<Status> ready;
    auto fut = ready.get_future();
    TESSERA_TRY(life_->target->start([this, &ready] { ready.set_value(init(*life_)); }));
    Status st = fut.get();
    if (!st.is_ok()) return st;
    net_.add(engine_addr(rank_), life_->rt.get());
    current_ = life_->target.get();
    ++incarnation_;
    return Status();
  }

  // The engine dies now: on its own target thread (a crash point, or a task the test posted).
  // `power`: the disk keeps what a power loss leaves, else every completed write. The other
  // runtimes learn it at once (their asks to it fail), as a failure detector that never errs
  // would tell them.
  void die(bool power) {
    // Whole, and only for the living incarnation's own thread: a restart must not begin while
    // the disk is being taken, nor a late death reach the next incarnation.
    std::lock_guard lk(mu_);
    if (dead_ || !life_ || life_->target.get() != Target::current()) return;
    life_->tp->dead = true;
    net_.remove(engine_addr(rank_), life_->rt.get());
    net_.fail_asks_to(rank_);
    disk_ = disk_->after_crash(power, rng_);
    power_losses_ += power ? 1 : 0;
    dead_ = true;
  }
  // Makes the engine die from another thread (the test's): waits until it did.
  void kill(bool power) {
    std::promise<void> done;
    life_->target->post([&] {
      die(power);
      done.set_value();
    });
    done.get_future().wait();
  }
  bool dead() const { return dead_; }
  // Whether `t` is the target of the living incarnation (any thread).
  bool owns(const Target* t) const { return current_.load() == t; }

  // Ends the current incarnation and waits until its target stopped (test thread).
  void stop() {
    if (!life_) return;
    current_ = nullptr;
    net_.remove(engine_addr(rank_), life_->rt.get());
    end_life(std::move(life_));
  }
  // After a death: the next incarnation opens the image the death left at once; the dead one's
  // fibers are stopped in the background (they may wait out timeouts of requests nobody will
  // answer, but nothing they do reaches anyone).
  Status restart() {
    {
      std::lock_guard lk(mu_);
      current_ = nullptr;
      reapers_.emplace_back([l = std::move(life_)]() mutable { end_life(std::move(l)); });
    }
    return start();
  }

  // The next incarnation starts on an empty disk: the stale store is dropped, as an engine
  // drops a reintegrated target's (Engine::reset_shards). Test thread, while the engine is dead.
  void wipe() {
    std::lock_guard lk(mu_);
    disk_ = std::make_shared<storage::MemoryDisk>(kDiskBytes);
  }
  // Runs `fn(runtime, pools)` in a fiber on the living incarnation's target, without waiting
  // (test thread).
  template <typename F>
  void post(F fn) {
    Life* l = life_.get();
    l->target->post([l, fn = std::move(fn)]() mutable { fn(*l->rt, *l->pools); });
  }
  // Runs `fn(shard, service)` in a fiber on the engine's target (test thread; the engine must
  // be running) and returns what it returns.
  template <typename F>
  auto on_target(F fn) -> decltype(fn(std::declval<PoolShard&>(), std::declval<ObjectService&>())) {
    using R = decltype(fn(std::declval<PoolShard&>(), std::declval<ObjectService&>()));
    auto p = std::make_shared<std::promise<R>>();
    auto f = p->get_future();
    Life* l = life_.get();
    l->target->post([l, p, fn = std::move(fn)]() mutable {
      p->set_value(fn(*l->pools->shards.at(1), *l->svc));
    });
    return f.get();
  }
  // The same with the target's pool shards (TargetPools: its map fetches, every shard).
  template <typename F>
  auto on_pools(F fn) -> decltype(fn(std::declval<TargetPools&>())) {
    using R = decltype(fn(std::declval<TargetPools&>()));
    auto p = std::make_shared<std::promise<R>>();
    auto f = p->get_future();
    Life* l = life_.get();
    l->target->post([l, p, fn = std::move(fn)]() mutable { p->set_value(fn(*l->pools)); });
    return f.get();
  }
  // Wakes the living incarnation's target, to fire the timers a clock skip made due (any thread).
  void wake() {
    std::lock_guard lk(mu_);
    if (life_) life_->target->wake(true);
  }
  uint32_t rank() const { return rank_; }
  uint64_t incarnation() const { return incarnation_; }
  uint64_t power_losses() const { return power_losses_; }

 private:
  // What one incarnation owns.
  struct Life {
    std::unique_ptr<Target> target;
    std::unique_ptr<ActorRuntime> rt;
    std::unique_ptr<SimTransport> tp;
    std::shared_ptr<std::vector<ActorRuntime*>> peers;
    std::unique_ptr<TargetPools> pools;
    std::unique_ptr<ObjectService> svc;
  };
  static void end_life(std::unique_ptr<Life> l) {
    l->target->stop();
    l->svc.reset();
    l->pools.reset();
    l->rt.reset();
    l->tp.reset();
    l->target.reset();
  }

  Status init(Life& l) {
    storage::BlockQueueOptions qo;
    qo.backend = "memory";
    qo.size = kDiskBytes;
    qo.disk = disk_;
    auto q = storage::open_block_queue(qo);
    if (!q) return q.status();
    storage::StoreOptions so;
    so.name = fmt::format("rank {}", rank_);
    so.wal_bytes = 1ull << 20;
    so.zero_fill = false;
    so.checkpoint_interval = std::chrono::milliseconds(250);
    so.aggregation_interval = aggregation_interval;
    so.aggregation_delay = aggregation_delay;
    if (aggregation_interval.count() > 0) {
      // As an engine's store asks before each pass (actors/engine.cpp).
      TargetPools* pools = l.pools.get();
      const uint32_t id = pool_.view()->pool.id;
      so.guard = [pools, id]() { return pools->guard(id); };
    }
    auto store = storage::TargetStore::open(*l.target, std::move(*q), so);
    if (!store) return store.status();
    auto sh = std::make_unique<PoolShard>();
    const auto view = pool_.view();
    sh->id = view->pool.id;
    sh->uuid = view->pool.uuid;
    sh->path = "sim";
    sh->store = std::move(*store);
    // As an engine that joins: its clock moves past the pool's newest snapshot first.
    sh->store->observe_epoch(view->pool.newest_snapshot());
    sh->set_view(view);
    l.pools->shards[sh->id] = std::move(sh);
    l.pools->backend = "memory";
    const SimPool* pool = &pool_;
    l.pools->fetch_view = [pool](uint32_t id,
                                 uint32_t) -> Result<std::shared_ptr<const mgmt::PoolView>> {
      auto v = pool->view();
      if (id != v->pool.id) return Status(Errc::not_found, "no such pool");
      return v;
    };
    // What the management service answers an engine's poolSnapshots (actors/mgmt/pool_cmds.cpp).
    l.pools->fetch_guard = [pool](uint32_t id) -> Result<storage::AggregationGuard> {
      auto v = pool->view();
      if (id != v->pool.id) return Status(Errc::not_found, "no such pool");
      const auto e = v->pool.snapshot_epochs();
      return aggregation_guard(id, std::vector<uint64_t>(e.begin(), e.end()), v->pool.map.moving(),
                               pool->reclaim_pending(v->pool));
    };
    SimPool* reports = &pool_;
    const uint32_t me = rank_;
    l.pools->report_reclaimed = [reports, me](uint32_t, uint32_t version) {
      reports->reclaimed(me, 0, version);
      return Status();
    };
    l.pools->fetch_handle = [pool](uint32_t id, uint64_t cookie) -> Result<mgmt::HandleView> {
      auto v = pool->view();
      if (id != v->pool.id || cookie != pool->cookie) {
        return Status(Errc::permission, "no such container handle");
      }
      mgmt::HandleView h;
      h.cookie = cookie;
      h.perms = mgmt::kAllPerms;
      h.cont = v->conts.at(0);  // as the service answers an engine: no pool
      return h;
    };
    ActorRuntime* rt = l.rt.get();
    const uint32_t self = rank_;
    l.pools->learn = [rt, self](const mgmt::PoolView& v) { mgmt::learn_view(*rt, v, self); };
    mgmt::learn_view(*rt, *view, self);
    l.svc = std::make_unique<ObjectService>(*rt, *l.pools, rank_, 0);
    rt->register_actor(proto::kObjectServiceActor, l.svc.get());
    ObjectService* svc = l.svc.get();
    l.pools->settle = [svc](PoolShard& sh) { return svc->settle_all(sh); };
    l.target->spawn([svc] { svc->run_dtx_background(); });
    if (background) {
      l.target->spawn([bg = background, t = l.target.get(), rt, pools = l.pools.get(), self] {
        bg(*t, *rt, *pools, self);
      });
    }
    return Status();
  }

  Env& env_;
  SimNet& net_;
  SimPool& pool_;
  uint32_t rank_;
  std::mt19937_64 rng_;  // power-loss draws (the living incarnation's thread)
  std::shared_ptr<storage::MemoryDisk> disk_;
  std::unique_ptr<Life> life_;
  std::atomic<const Target*> current_{nullptr};
  std::vector<std::thread> reapers_;
  std::mutex mu_;  // die() against restart(): the incarnation and the disk change together
  std::atomic<bool> dead_{false};
  uint64_t incarnation_ = 0;
  std::atomic<uint64_t> power_losses_{0};
};

inline Status create_pool(mgmt::MgmtState& st, uint32_t engines, const std::string& oclass,
                          uint32_t rf, uint32_t cell_size) {
  std::vector<uint32_t> ranks;
  for (uint32_t r = 0; r < engines; ++r) {
    TESSERA_TRY(st.apply(join_cmd(r)));
    ranks.push_back(r);
  }
  TESSERA_TRY(st.apply({{"op", "pool_create"},
                        {"uuid", "00000000-0000-4000-8000-000000000001"},
                        {"label", "sim"},
                        {"target_bytes", SimEngine::kDiskBytes},
                        {"ranks", ranks},
                        {"acl", mgmt::acl_json(mgmt::Acl{})}}));
  mgmt::ContProps props;
  props.label = "sim";
  props.oclass = placement::find_class(oclass)->id;
  props.rf = rf;
  props.cell_size = cell_size;
  return st.apply({{"op", "cont_create"},
                   {"pool", 1},
                   {"uuid", "00000000-0000-4000-8000-000000000002"},
                   {"props", mgmt::props_json(props)},
                   {"acl", mgmt::acl_json(mgmt::Acl{})},
                   {"epoch", 1}});
}

// Every engine decides every transaction it holds prepared, retried while a participant is
// still busy (test thread; every engine running).
inline void settle_engines(const std::vector<std::unique_ptr<SimEngine>>& engines) {
  for (const auto& e : engines) {
    Status st;
    for (int i = 0; i < 600; ++i) {
      st = e->on_target([](PoolShard& sh, ObjectService& svc) { return svc.settle_all(sh); });
      if (st.is_ok() || st.code() != Errc::busy) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_TRUE(st.is_ok()) << "rank " << e->rank() << " settles: " << st.to_string();
  }
}

// `tessera cont check` without repair of container `cont`, run by the production code on every
// engine over the simulated fabric (ObjectService::check_pass: each target compares the copies
// of the dkeys it leads, and erasure-coded cells with their parity; test thread, every engine
// running and its transactions settled): no copy disagrees, nothing stored is damaged, and
// every dkey was checked.
inline void expect_checked_consistent(const std::vector<std::unique_ptr<SimEngine>>& engines,
                                      uint32_t cont) {
  uint64_t dkeys = 0, compared = 0, stripes = 0;
  for (const auto& e : engines) {
    auto r = e->on_target([cont](PoolShard& sh, ObjectService& svc) {
      rebuild::CheckOptions o;
      o.cont = cont;
      return svc.check_pass(sh, std::move(o));
    });
    ASSERT_TRUE(r) << "rank " << e->rank() << ": check: " << r.status().to_string();
    std::string findings;
    for (const auto& f : r->findings) {
      findings += fmt::format("\n  object {} dkey '{}' akey '{}' [{}, +{}): {} (copies {})",
                              f.oid.lo, f.dkey, f.akey, f.offset, f.length, f.what, f.copies);
    }
    EXPECT_EQ(r->inconsistent, 0u) << "rank " << e->rank() << ": copies disagree" << findings;
    EXPECT_EQ(r->damaged, 0u) << "rank " << e->rank() << ": damaged pieces" << findings;
    EXPECT_EQ(r->unchecked, 0u) << "rank " << e->rank() << ": dkeys not checked (" << r->last_error
                                << ")";
    dkeys += r->dkeys;
    compared += r->compared;
    stripes += r->stripes;
  }
  std::cout << fmt::format("  cont check: {} dkeys, {} akeys compared, {} stripes\n", dkeys,
                           compared, stripes);
  EXPECT_GT(dkeys, 0u) << "the check looked at nothing";
}

}  // namespace tessera::sim

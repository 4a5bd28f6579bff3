// Engine: one tessera-server process's worth of targets.
//
// Owns N Targets; on each, in its init fiber, it opens the target's block queue and scratch
// store, its fabric endpoint and its ActorRuntime, and registers the ObjectService. start()
// returns once every target is serving (or the first error); stop() stops the targets and then
// destroys what they owned.
//
// Pools: the management service asks the engine (control thread) to create or destroy a pool's
// shards; each target then opens one store per pool under storage_dir/pools/<id>-<uuid>/.
// attach() connects the targets to the management service (a MgmtLink): they fetch pool maps
// and container handles through it when a request needs one they do not know yet.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "actors/mgmt/link.hpp"
#include "core/actor.hpp"
#include "core/buffer.hpp"
#include "core/config.hpp"
#include "core/target.hpp"
#include "proto/capnp_util.hpp"
#include "proto/mgmt.capnp.h"
#include "security/system_key.hpp"
#include "storage/store.hpp"

namespace tessera {

namespace telemetry {
class MetricSet;
}
struct SwimOptions;

class Engine {
 public:
  // `key`: the system key (null only in insecure mode): the fabric endpoints MAC what they
  // send and check what they receive.
  Engine(Env& env, EngineConfig cfg, std::shared_ptr<const security::SystemKey> key = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  Status start();
  void stop();

  // SystemInfo (proto/system.capnp) as a message body; asks every target for its space.
  Buffer system_info(const std::string& control_addr);
  const EngineConfig& config() const { return cfg_; }
  size_t target_count() const { return slots_.size(); }
  // Raw fabric address of each target (valid after start()).
  std::vector<std::string> fabric_addrs() const;
  std::string host() const;

  // One scrape of every target's counters (actors/engine_metrics.cpp; any thread but a
  // target's: it waits up to 2 s for each target's copy).
  void metrics(telemetry::MetricSet& ms);
  // Where the metrics server listens (SystemInfo.metricsAddr; any thread).
  void set_metrics_address(std::string addr) {
    std::lock_guard lk(metrics_mu_);
    metrics_addr_ = std::move(addr);
  }

  // Targets ask `link` for pool maps and container handles from now on.
  void attach(mgmt::MgmtLink* link);
  // Starts failure detection among engines on target 0 (after attach).
  Status start_swim(const SwimOptions& opts);
  // An EngineReq from the management service (control worker thread; may take a while). The
  // reply body is empty but for the requests whose comment in proto/mgmt.capnp names a reply.
  Result<Buffer> control(const Message& m);
  // Opens (or creates) the shards of pools this rank serves; after a join.
  void open_pools(const std::vector<mgmt::ShardInfo>& pools);

  // One target's parts (actors/engine_internal.hpp).
  struct Slot;

 private:
  Status create_shards(uint32_t id, const std::string& uuid, uint64_t bytes);
  Status destroy_shards(uint32_t id, const std::string& uuid);
  // Tells the management service that this engine's store of `pool` on `target` is damaged
  // (asynchronous: the answer is only logged; every join reports it again).
  void report_damage(uint32_t pool, uint32_t target, const std::string& reason);
  // The requests answered with an empty body; a rollback (answered with RollbackDone) and an
  // epoch fence (EpochFenced), whose decoders are in actors/engine_cont.cpp.
  Status control_op(schema::EngineReq::Reader req, capn::DecodeScope& ds);
  Result<Buffer> on_rollback(schema::EngineReq::Reader req, capn::DecodeScope& ds);
  Result<Buffer> on_fence(schema::EngineReq::Reader req, capn::DecodeScope& ds);
  // Container-wide operations (actors/engine_cont.cpp).
  Status purge_container(uint32_t pool, uint32_t cont);
  // Every target's store of `pool` observes `observe` and issues one epoch; returns the highest
  // (above every epoch the targets issued before; 0 when none holds the pool).
  Result<uint64_t> fence_epochs(uint32_t pool, uint64_t observe);
  // `protect`: every snapshot epoch of the pool (the stores learn them before they check that
  // `snap` is still readable).
  Result<storage::RollbackStats> rollback_container(uint32_t pool, uint32_t cont, uint64_t snap,
                                                    uint64_t at, std::vector<uint64_t> protect);
  // Forgets container handles of a pool on every target (closed, evicted, ACL changed).
  Status revoke_handles(uint32_t pool, const std::vector<uint64_t>& cookies);
  // Drops the data of some targets' shards of a pool and opens them empty (reintegration).
  Status reset_shards(uint32_t id, const std::string& uuid, uint64_t bytes,
                      const std::vector<uint32_t>& targets);
  // Fibers on every target, now and then: re-encoding of erasure-coded partial-stripe copies,
  // and the reclaim of what the pool maps no longer place there (each when its interval > 0).
  void start_background();
  // Runs (or re-reports) a rebuild generation of a pool on every target.
  void start_rebuild(uint32_t pool, uint32_t gen, uint32_t version);
  // The directory of a pool's shards; refuses a `uuid` that is not a canonical UUID.
  Result<std::string> pool_dir(uint32_t id, const std::string& uuid) const;
  Env& env_;
  EngineConfig cfg_;
  std::shared_ptr<const security::SystemKey> key_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::shared_ptr<std::vector<ActorRuntime*>> runtimes_;
  std::chrono::steady_clock::time_point started_;
  std::mutex pools_mu_;  // one pool create/destroy at a time (control threads)
  // The pool create running now (pools_mu_): bytes of new shard files its targets have
  // formatted, of the bytes to format (both 0 when none runs). Read by the system info.
  std::atomic<uint64_t> format_done_{0};
  std::atomic<uint64_t> format_total_{0};
  // The pools named at the first join are open (or failed to open): the targets serve.
  std::atomic<bool> pools_open_{false};
  mgmt::MgmtLink* link_ = nullptr;
  std::mutex metrics_mu_;  // metrics_addr_ (main thread sets it, control threads read it)
  std::string metrics_addr_;
};

}  // namespace tessera

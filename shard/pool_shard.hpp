// A target's pool shards: the store of each pool on this target, the newest pool map it knows,
// the container handles it learnt, and what holds a shard in use across fiber suspensions.
// Shared by the object service (actors/) and the rebuild service (rebuild/), which run on the
// same target thread; nothing here is thread-safe.
#pragma once

#include <boost/fiber/condition_variable.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "mgmt/types.hpp"
#include "placement/cache.hpp"
#include "storage/store.hpp"

namespace tessera {

// One pool's shard on one target.
struct PoolShard {
  uint32_t id = 0;
  std::string uuid;
  std::string path;
  std::unique_ptr<storage::TargetStore> store;
  std::shared_ptr<const mgmt::PoolView> view;  // the newest pool map this target knows
  // Takes a pool map. A newer one may move a group's leadership: the read stamps that user
  // transactions left on the old leader are covered by raising this store's floor to its clock
  // (storage/read_stamps.hpp). Which containers take no client write in it is decided here, once
  // per map (write_refusals).
  void set_view(std::shared_ptr<const mgmt::PoolView> v);
  // The containers that are UNCLEAN in `view`, with the refusal their client writes get
  // (mgmt::write_refusal). A container created after the view is not here: its first map is
  // the one it was created in.
  std::unordered_map<uint32_t, Status> write_refusals;
  // The placement of `oid` in `view`, from the placements this target computed in it
  // (placement/cache.hpp: a new view empties them).
  Result<std::shared_ptr<const placement::Placement>> place(ObjectId oid) const {
    return placements.place(oid, view, view->pool.map);
  }
  mutable placement::PlacementCache placements;
  // Whether this target keeps all it holds of container `cont`, whatever `view` places here:
  // the map does not know the container (yet, or any more), or its data was not all rebuilt
  // (lost data, or its writes are refused): what it keeps may be the last copy. Reclaim leaves
  // such copies; aggregation keeps the container's punches (punches_to_keep), since such a copy
  // may be merged into a later fill of this target at any time.
  bool keeps_all_of(uint32_t cont) const;
  bool keeps_all_of(const mgmt::ContView& k) const;  // a container `view` knows
  // The store keys whose punches aggregation keeps now (AggregationGuard::keep_punches_of):
  // those of the containers keeps_all_of names, as `view` says when called.
  std::function<bool(const ObjectId& key)> punches_to_keep() const;
  // Container handles this target learnt from the management service. An entry is checked
  // with the service again once older than TargetPools::handle_recheck (the bound on how long
  // a revocation the engine missed stays unnoticed); a revocation erases it at once.
  struct HandleEntry {
    uint32_t cont = 0;
    uint32_t perms = 0;
    uint16_t csum = 0;      // CsumType of the container
    Nanos checked{0};       // Env time
    bool checking = false;  // a fiber is asking the service again (others use the entry)
  };
  std::unordered_map<uint64_t, HandleEntry> handles;
  // Epochs of the erasure-coded updates this target leads that are not finished yet: the
  // re-encoding of a stripe waits until none below its own epoch is in flight.
  std::multiset<uint64_t> ec_inflight;
  // Fibers holding the shard across a suspension (ShardUse), and the flag that asks them to
  // end and refuses new ones (drop/reset).
  uint32_t users = 0;
  bool closing = false;
  // Requests still running, by the pool map version they were admitted under (ShardUse::admit).
  // A request admitted under an older map writes only where that map placed the data, and its
  // value reaches the store (and the index a rebuild scan reads) only once durable: a scan on
  // a newer map starts when none of them is left (wait_admitted_below). New requests under an
  // older map than the shard's are refused (`stale`), so the wait ends.
  std::map<uint32_t, uint32_t> admitted;
  boost::fibers::condition_variable_any admitted_cv;
  bool admitted_below(uint32_t version) const {
    return !admitted.empty() && admitted.begin()->first < version;
  }
  // Suspends the calling fiber (on the shard's target) until no request admitted under a map
  // version below `version` runs, or `give_up()` holds; true when none runs.
  bool wait_admitted_below(uint32_t version, const std::function<bool()>& give_up);
  // Background re-encoding of erasure-coded partial-stripe copies (rebuild/reencode.hpp).
  struct Reencode {
    uint64_t passes = 0;
    uint64_t stripes = 0;     // stripes re-encoded into cells and parity
    uint64_t copy_bytes = 0;  // copy bytes those stripes no longer need (p + 1 per byte)
    std::string last_error;
  };
  Reencode reencode;
  // Reclaim of what the pool map no longer places on this target (rebuild/reclaim.hpp).
  struct Reclaim {
    uint64_t passes = 0;
    uint64_t dkeys = 0;  // whole dkeys dropped
    uint64_t akeys = 0;  // akeys dropped from dkeys held in part
    uint64_t bytes = 0;
    std::string last_error;
  };
  Reclaim reclaim;
  // Damaged stored pieces (rebuild/repair.hpp): akeys a read found damaged wait in `queue`
  // (bounded) for the shard's repair fiber; the counters add up every repair and scrub pass.
  struct Repair {
    std::set<std::tuple<ObjectId, std::string, std::string>> queue;
    bool running = false;
    uint64_t damaged = 0;
    uint64_t repaired = 0;
    uint64_t unrepaired = 0;
    uint64_t scrubs = 0;
    uint64_t overflow = 0;  // damaged akeys not queued (queue full); a scrub finds them
    std::string last_error;
  };
  Repair repair;
  // Consistency checks of its containers (rebuild/check.hpp), by `tessera cont check` and the
  // background scrubber (pool property `scrub`): what the running one has done, and counters
  // since the engine started.
  struct Check {
    uint64_t passes = 0;  // container passes run
    uint64_t scrubs = 0;  // ... of them by the background scrubber
    bool running = false;
    uint64_t done = 0, total = 0;  // dkeys of the running (or last) pass
    uint64_t inconsistent = 0, fixed = 0;
    std::string last_error;
    Nanos next_scrub{0};  // the scrubber's next pass (Env time; 0: none planned)
  };
  Check check;
  // Distributed transactions (actors/object_service_dtx.cpp, docs/TRANSACTIONS.md): those this
  // target leads that are not decided yet, those a fiber here is resolving, and the commits
  // decided here that other participants have not been told (sent with the next request to
  // each, or by the target's notice fiber; bounded per participant).
  std::set<storage::DtxId> dtx_leading;
  std::set<storage::DtxId> dtx_resolving;
  std::map<uint64_t, std::vector<storage::DtxId>> dtx_notices;
};

// Holds a pool shard in use across fiber suspensions (an ask, an I/O wait, a sleep): the shard
// is not closed or freed while a use is held. drop_shard (actors/engine.cpp) marks the shard
// `closing`, waits until no use is held, then closes its store and frees it; new requests see
// `closing` and are refused. A use that serves a request admitted under a pool map version also
// counts in the shard's `admitted` until it ends (admit). Target thread only; moves, never
// copies.
class ShardUse {
 public:
  ShardUse() = default;
  explicit ShardUse(PoolShard& s) : s_(&s) { ++s_->users; }
  ShardUse(ShardUse&& o) noexcept
      : s_(std::exchange(o.s_, nullptr)), version_(std::exchange(o.version_, std::nullopt)) {}
  ShardUse& operator=(ShardUse&& o) noexcept {
    if (this != &o) {
      release();
      s_ = std::exchange(o.s_, nullptr);
      version_ = std::exchange(o.version_, std::nullopt);
    }
    return *this;
  }
  // The request this use serves was admitted under pool map `version` (once per use).
  void admit(uint32_t version) {
    if (s_ == nullptr || version_) return;
    version_ = version;
    ++s_->admitted[version];
  }
  ShardUse(const ShardUse&) = delete;
  ShardUse& operator=(const ShardUse&) = delete;
  ~ShardUse() { release(); }
  PoolShard* get() const { return s_; }
  PoolShard* operator->() const { return s_; }
  PoolShard& operator*() const { return *s_; }

 private:
  void release() {
    if (s_ != nullptr && version_) {
      auto it = s_->admitted.find(*version_);
      if (it != s_->admitted.end() && --it->second == 0) {
        s_->admitted.erase(it);
        s_->admitted_cv.notify_all();
      }
    }
    if (s_ != nullptr) --s_->users;
    s_ = nullptr;
    version_.reset();
  }
  PoolShard* s_ = nullptr;
  std::optional<uint32_t> version_;
};

// What pool `pool`'s aggregation must respect (TargetPools::fetch_guard): its containers'
// snapshot epochs, and a hold (every punch kept) while its map is `moving` data. A rebuild
// pushes histories with their old epochs; the home they go to takes the pool's new writes
// meanwhile, and a punch among those that aggregation dropped (nothing below it yet) would not
// hide an older version that arrives after it. The hold ends when the last generation completed
// (every push imported) and every target that may keep a former home's copy of it has dropped
// that copy (`reclaim_pending` names those that have not: mgmt::reclaim_pending): a later fill of
// such a target merges into what it kept, and must bring every punch that hides it.
storage::AggregationGuard aggregation_guard(uint32_t pool, std::vector<uint64_t> snapshots,
                                            bool moving, const std::string& reclaim_pending);

// Everything a target serves, and how it asks the management service (both suspend the
// calling fiber; the Engine supplies them).
struct TargetPools {
  storage::TargetStore* scratch = nullptr;
  std::string backend;
  std::map<uint32_t, std::unique_ptr<PoolShard>> shards;
  // The pool's view, of map version `min_version` or newer when the service has it. The
  // engine's first target fetches views for all its targets and keeps the newest of each pool:
  // an ask it satisfies is answered from there, concurrent asks share one request
  // (core/single_flight.hpp, Engine::attach); min_version 0 always asks the service again.
  std::function<Result<std::shared_ptr<const mgmt::PoolView>>(uint32_t pool, uint32_t min_version)>
      fetch_view;
  // Pool views this target asked the service for (the first target only): for a map version,
  // and again for any (min_version 0: the current one).
  uint64_t views_fetched = 0, views_refetched = 0;
  // The pool's properties (the scrubber's settings), at most a few seconds old. The engine's
  // first target asks the service for them alone (not the view) for all its targets.
  std::function<Result<std::map<std::string, std::string>>(uint32_t pool)> fetch_props;
  uint64_t props_fetched = 0;  // asks of the service for them (the first target only)
  std::function<Result<mgmt::HandleView>(uint32_t pool, uint64_t cookie)> fetch_handle;
  // What the pool's aggregation must respect now: every snapshot epoch of its containers, and
  // a hold (punches kept) while a rebuild moves its data (aggregation_guard()).
  std::function<Result<storage::AggregationGuard>(uint32_t pool)> fetch_guard;
  // Tells the management service that this target's reclaim pass over pool map `version` (not
  // moving data) completed and its drops are durable (rebuild/reclaim.hpp; suspends).
  std::function<Status(uint32_t pool, uint32_t version)> report_reclaimed;
  // How long a cached container handle is trusted before the service is asked again.
  std::chrono::milliseconds handle_recheck{10000};
  // A new view arrived: learn the routes to its engines.
  std::function<void(const mgmt::PoolView&)> learn;
  // Decides every transaction prepared in a shard (the object service resolves them; suspends):
  // a rebuild scan calls it before it reads the shard's index.
  std::function<Status(PoolShard&)> settle;
  // settle(), waiting while a transaction cannot be decided yet (`busy`: a participant that is
  // restarting) for up to `limit` or until `cancelled`; ok when there is no settle hook. Runs
  // in a fiber of the shard's target (`t`).
  Status settle_within(Target& t, PoolShard& sh, std::chrono::milliseconds limit,
                       const std::function<bool()>& cancelled = {});
  // What pool `pool`'s aggregation must respect now: fetch_guard's answer, and the punches its
  // shard here keeps (PoolShard::punches_to_keep). Suspends.
  Result<storage::AggregationGuard> guard(uint32_t pool);
  // Rebuild generations this target ran, by pool (actors/engine.cpp).
  struct RebuildRun {
    uint32_t gen = 0;
    bool finished = false;
    uint64_t objects = 0, records = 0, bytes = 0, lost = 0;
    std::string error;
    uint64_t planned = 0;  // bytes the scan counted to send before it sent any
  };
  std::map<uint32_t, RebuildRun> rebuilds;
  // Stopped by an administrator (`tessera system stop-target`): refuses pool I/O (a failed
  // device) until a reintegration resets its shards or the engine restarts.
  bool stopped = false;
  // The engine has joined a management service but not yet opened the pool shards the join
  // named: a request for a pool it has no shard of is answered `unavailable` (retry), not
  // `not_found`, so a rebuild that starts as soon as the engine is back waits for its shards.
  bool opening = false;
  // Pools whose store on this target failed its checks when it was opened (a damaged log,
  // checkpoint or superblock), with the reason: not served (every request is answered with
  // it) until a reintegration formats the store anew or the pool is destroyed.
  std::map<uint32_t, std::string> damaged;
};

}  // namespace tessera

// libtessera: the embedded client.
//
// A Client owns one client target (a pinned-or-not thread with its own fiber scheduler and
// fabric endpoint) and talks to an engine's targets over the fabric. Every call is thread-safe:
// the *_async functions post the request to the client target and return a future that any
// thread (or fiber) may wait on; the plain functions wait for you. connect() asks the engine's
// control socket for its provider and target addresses, then opens a matching endpoint.
// Destroying the Client stops its thread; outstanding futures then complete with "shutdown".
#pragma once

#include <chrono>
#include <functional>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/buffer.hpp"
#include "core/future.hpp"
#include "core/object.hpp"
#include "core/status.hpp"

namespace tessera {

struct ClientOptions {
  std::string engine = "127.0.0.1:10001";  // engine control address
  std::string provider;                    // empty: use the engine's
  std::chrono::milliseconds timeout{30000};
  int cpu = -1;  // pin the client target thread (-1: no pinning)
};

struct TargetInfo {
  uint32_t index = 0;
  int cpu = -1;
  int tid = 0;
  std::string fabric_addr;  // raw
  std::string fabric_addr_text;
  std::string backend;
  std::string storage_path;
  uint64_t capacity = 0;
  uint64_t used = 0;
};

struct SystemInfo {
  uint32_t rank = 0;
  std::string provider;
  int pid = 0;
  std::string version;
  std::string hostname;
  std::string control_addr;
  std::string metrics_addr;  // GET /metrics (empty: off)
  uint64_t uptime_ms = 0;
  std::vector<TargetInfo> targets;
  // A pool create running on the engine: bytes of new shard files formatted, of the bytes to
  // format (0 of 0: none runs).
  uint64_t format_done = 0;
  uint64_t format_total = 0;
  // It joined the system and opened the pools the join named: its targets serve.
  bool pools_open = false;
};

struct FetchResult {
  Buffer data;
  bool exists = false;  // the akey has a visible value at the epoch
  uint64_t size = 0;
  std::vector<std::pair<uint64_t, uint64_t>> holes;
  uint64_t epoch = 0;
};

struct KeyEntry {
  std::string key;
  ObjectId oid;
  ValueKind kind = ValueKind::single;
  uint64_t size = 0;
  uint64_t offset = 0;  // ListScope::recx: a written run of records
  uint64_t length = 0;
};

struct UpdateFlags {
  Cond cond = Cond::none;  // insert: fail with `exists`; update: fail with `not_found`
  uint32_t rsize = 1;      // array record size; offsets count records
};

struct FetchFlags {
  bool must_exist = false;  // absent -> not_found (else exists = false, empty data)
  uint32_t rsize = 1;
};

struct MaxInfo {
  bool found = false;
  std::string dkey;       // the greatest dkey (query without dkey)
  uint64_t recx_end = 0;  // one past the highest record of (dkey, akey)
};

using AggregateInfo = AggregateStats;

struct StoreTargetStats : StoreStats {  // one target's store counters (stats_async)
  std::string backend;
  // A pool shard's background re-encoding of erasure-coded partial-stripe copies.
  uint64_t reencode_passes = 0;
  uint64_t reencode_stripes = 0;
  uint64_t reencode_copy_bytes = 0;
  std::string reencode_error;
  // Damaged stored pieces the shard's reads and scrubs met (since the engine started).
  uint64_t repair_damaged = 0;
  uint64_t repair_repaired = 0;
  uint64_t repair_unrepaired = 0;
  std::string repair_error;
  uint64_t scrubs = 0;
  // Consistency checks (Client::cont_check): passes, the running one's dkeys done of its total,
  // copies found to disagree and made to agree again (since the engine started).
  uint64_t check_passes = 0;
  uint64_t check_done = 0;
  uint64_t check_total = 0;
  uint64_t check_inconsistent = 0;
  uint64_t check_fixed = 0;
  bool check_running = false;
  uint64_t check_scrubs = 0;  // passes of the background scrubber
  std::string check_error;
  // Reclaim of what the pool map no longer places on the target (since the engine started).
  uint64_t reclaim_passes = 0;
  uint64_t reclaim_dkeys = 0;
  uint64_t reclaim_akeys = 0;
  uint64_t reclaim_bytes = 0;
  std::string reclaim_error;
};

// One target's scrub pass (Client::pool_scrub): what it read back and what it repaired.
struct ScrubInfo {
  uint64_t akeys = 0;
  uint64_t extents = 0;
  uint64_t bytes = 0;
  uint64_t damaged = 0;
  uint64_t repaired = 0;
  uint64_t unrepaired = 0;
  std::string last_error;
};

// One inconsistency a target's part of a container check found (Client::cont_check).
struct CheckFindingInfo {
  ObjectId oid;
  std::string dkey, akey;
  uint64_t offset = 0, length = 0;  // arrays: the bytes concerned
  std::string what;                 // what disagrees
  std::string copies;               // which copies
  bool repaired = false;
};

// One target's part of a container check (Client::cont_check; rebuild/check.hpp).
struct CheckInfo {
  uint64_t objects = 0, dkeys = 0, akeys = 0, extents = 0, bytes = 0;
  uint64_t damaged = 0, repaired = 0, unrepaired = 0;  // stored pieces failing their checksum
  uint64_t compared = 0, stripes = 0;                  // akeys compared, EC stripes checked
  uint64_t inconsistent = 0, fixed = 0;                // copies that disagree, made to agree
  uint64_t unchecked = 0;                              // dkeys that could not be checked
  uint64_t left_off = 0;                               // findings not listed
  std::string last_error;
  std::vector<CheckFindingInfo> findings;
};

// Asks an engine's control socket who it is (no fabric needed). Blocking.
Result<SystemInfo> query_system(const std::string& engine, std::chrono::milliseconds timeout);

class Container;
namespace mgmt {
struct PoolView;
}

// One target's share of a pool (Client::pool_space): its counters, or why it did not answer.
struct PoolTargetSpace {
  uint32_t rank = 0;
  uint32_t target = 0;
  std::string state;  // the target's state in the pool map
  Result<StoreTargetStats> stats = Status(Errc::unavailable, "not asked");
};

// One target's answer to a request every serving target of a pool gets (Client::pool_scrub),
// or why it was not asked or did not answer.
template <typename T>
struct PoolTargetAnswer {
  uint32_t rank = 0;
  uint32_t target = 0;
  std::string state;  // the target's state in the pool map
  Result<T> answer = Status(Errc::unavailable, "not asked");
};
using PoolTargetScrub = PoolTargetAnswer<ScrubInfo>;
using PoolTargetCheck = PoolTargetAnswer<CheckInfo>;

// One target's part in reclaiming a pool's space (Client::pool_reclaim).
struct PoolTargetReclaim {
  uint32_t rank = 0;
  uint32_t target = 0;
  std::string state;
  Result<AggregateInfo> aggregated = Status(Errc::unavailable, "not asked");
  Status checkpoint = Status(Errc::unavailable, "not asked");
};

class Client {
 public:
  // Single-engine mode: `opts.engine` is an engine's control address; requests go to its
  // scratch store (pool 0).
  static Result<std::unique_ptr<Client>> connect(const ClientOptions& opts);
  // System mode: `opts.engine` is the management service's address. Open containers to do I/O.
  static Result<std::unique_ptr<Client>> connect_system(const ClientOptions& opts);
  // Opens a container (read, or read-write) of a pool by label or UUID; the handle's
  // permissions were decided by the ACLs at open. The Container must not outlive the Client.
  Result<std::unique_ptr<Container>> open_container(const std::string& pool,
                                                    const std::string& cont, bool write);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  template <typename T>
  using Future = tessera::Future<T>;

  // Stores `data` under (oid, dkey, akey). single: replaces the value; array: writes bytes at
  // `offset`. Returns the epoch once the engine reports the data durable.
  Future<uint64_t> update_async(ObjectId oid, std::string dkey, std::string akey, ValueKind kind,
                                uint64_t offset, Buffer data, UpdateFlags flags = {});
  // epoch 0: newest; otherwise what was visible at that epoch.
  Future<FetchResult> fetch_async(ObjectId oid, std::string dkey, std::string akey, ValueKind kind,
                                  uint64_t offset = 0, uint64_t length = 0, uint64_t epoch = 0,
                                  FetchFlags flags = {});
  // Empty dkey: whole object; empty akey: whole dkey.
  Future<uint64_t> punch_async(ObjectId oid, std::string dkey = {}, std::string akey = {});
  // Punches records [offset, offset + length) of an array akey.
  Future<uint64_t> punch_range_async(ObjectId oid, std::string dkey, std::string akey,
                                     uint64_t offset, uint64_t length, uint32_t rsize = 1);
  // One page of keys; pass the returned anchor back for the next page (empty = done).
  // scope objects lists every object of one target (`target`); otherwise the object's target.
  // recx lists the written record runs of (dkey, akey). epoch 0: newest.
  Future<std::pair<std::vector<KeyEntry>, std::string>> list_async(
      ListScope scope, ObjectId oid, std::string dkey, std::string anchor, uint32_t limit = 1000,
      uint32_t target = 0, std::string akey = {}, uint64_t epoch = 0);
  // Empty dkey: the object's greatest dkey; else one past the highest record of (dkey, akey).
  Future<MaxInfo> query_max_async(ObjectId oid, std::string dkey = {}, std::string akey = {},
                                  uint64_t epoch = 0);
  // Maintenance of one target: aggregate up to `epoch` (0: now) keeping `protect` readable,
  // checkpoint, and read its counters.
  Future<AggregateInfo> aggregate_async(uint32_t target, uint64_t epoch = 0,
                                        std::vector<uint64_t> protect = {});
  Future<bool> checkpoint_async(uint32_t target);
  Future<StoreTargetStats> stats_async(uint32_t target);
  // System mode: the counters of every serving target's shard of a pool (the others report
  // `unavailable`), asked in parallel.
  std::vector<PoolTargetSpace> pool_space(const mgmt::PoolView& pool);
  // System mode: reclaims a pool's space now on every serving target, in parallel: aggregates
  // up to now (keeping every container's snapshots readable) and writes a checkpoint, after
  // which the freed extents are reused.
  std::vector<PoolTargetReclaim> pool_reclaim(const mgmt::PoolView& pool);
  // System mode: a scrub pass on every serving target, in parallel: every stored piece is read
  // back against its checksum and damaged ones are repaired from other replicas. `share`: the
  // share of each target's time the pass may use (1: all).
  std::vector<PoolTargetScrub> pool_scrub(const mgmt::PoolView& pool, double share = 1.0);
  // Checks container `cont` of the pool on every serving target (and with `repair` rewrites
  // bad copies from good ones), in parallel; `progress(done, total)` after each target answers.
  // Each target's answer is awaited for `wait` (the client's timeout when zero).
  std::vector<PoolTargetCheck> cont_check(const mgmt::PoolView& pool, uint32_t cont, bool repair,
                                          double share, std::chrono::milliseconds wait,
                                          const std::function<void(size_t, size_t)>& progress);
  // A provider address (raw, as engines publish them) as text.
  std::string printable_address(const std::string& raw);
  // Round trip through a target's object service: the payload comes back (benchmarks).
  Future<Buffer> ping_async(uint32_t target, Buffer payload);

  Result<uint64_t> update(ObjectId oid, std::string dkey, std::string akey, ValueKind kind,
                          uint64_t offset, std::span<const uint8_t> data, UpdateFlags flags = {}) {
    return update_async(oid, std::move(dkey), std::move(akey), kind, offset,
                        Buffer(data.data(), data.size()), flags)
        .get();
  }
  Result<FetchResult> fetch(ObjectId oid, std::string dkey, std::string akey, ValueKind kind,
                            uint64_t offset = 0, uint64_t length = 0, uint64_t epoch = 0,
                            FetchFlags flags = {}) {
    return fetch_async(oid, std::move(dkey), std::move(akey), kind, offset, length, epoch, flags)
        .get();
  }
  Result<uint64_t> punch(ObjectId oid, std::string dkey = {}, std::string akey = {}) {
    return punch_async(oid, std::move(dkey), std::move(akey)).get();
  }
  // Every key of a scope (pages through the anchors). For objects: across all targets.
  Result<std::vector<KeyEntry>> list_all(ListScope scope, ObjectId oid = {}, std::string dkey = {},
                                         std::string akey = {}, uint64_t epoch = 0);

  const SystemInfo& system() const { return sys_; }
  uint32_t target_of(ObjectId oid) const;
  // The options it was started with (the timeout every request is retried within).
  const ClientOptions& options() const;

  struct Impl;

 private:
  // Routes to every target of the pool's engines (before asking them directly).
  void learn_routes(const mgmt::PoolView& view);
  friend class Container;
  Client() = default;
  static Result<std::unique_ptr<Client>> start(const ClientOptions& opts,
                                               const std::string& provider, bool loopback);
  std::unique_ptr<Impl> impl_;
  SystemInfo sys_;
};

}  // namespace tessera

// Rebuild: how one target fills the homes that a pool map change gave new data to.
//
// A pool map that moves data keeps the last map whose layouts hold complete data
// (PoolMap::settled). For every dkey a target holds, the target computes the dkey's positions
// (placement::Placement) and, for each position whose home does not hold complete data yet, it
// decides by one deterministic rule whether it is the one to fill it:
//   * the position's former holder, still serving (drain, reintegration, extension), sends
//     its own history of the position;
//   * else, for replicated and plain objects, the first position that holds complete data
//     sends its history (every replica holds the same);
//   * else, for erasure-coded objects, the first complete position rebuilds the position's
//     cells stripe by stripe from k complete positions (ISA-L) and sends them; the
//     partial-stripe copies and single values go from the first complete position that holds
//     them.
// What is sent is the whole history of each akey (versions with their epochs, punches of the
// akey, dkey and object); the receiver imports it (TargetStore::import_akey), skipping what it
// holds: a scan may run again from the start (restart, a second failure) and converges.
// The design, the states and the second-failure cases: docs/REBUILD.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include "core/actor.hpp"
#include "core/status.hpp"
#include "shard/pool_shard.hpp"
#include "storage/store.hpp"

namespace tessera::rebuild {

struct Counters {
  uint64_t objects = 0;  // object shards scanned
  uint64_t records = 0;  // akeys (or reconstructed stripes) sent
  uint64_t bytes = 0;    // bytes sent
  uint64_t lost = 0;     // positions no complete holder could fill (beyond the redundancy)
  // Bytes this target plans to send: counted from its index before the first send (the
  // histories' sizes, a cell per stripe to rebuild). An estimate: writes during the scan add to
  // what is sent, a stripe that turns out lost or already covered is not sent. 0: not counted
  // yet.
  uint64_t planned = 0;
};

struct ScanOptions {
  // Share of the target's time the scan may use; it sleeps the rest (foreground I/O keeps the
  // rest of the bandwidth). 1: no throttling.
  double share = 0.5;
  // How long one send to a home is retried (the home may be restarting) before the scan fails.
  std::chrono::milliseconds retry{10000};
  // Dkeys whose histories are on their way at once, and the bytes they may hold together (a
  // larger dkey goes alone): reading, sending and the homes' imports overlap.
  uint32_t window = 8;
  uint64_t window_bytes = 64ull << 20;
  // Called once the plan is counted (`planned` set, nothing sent yet), then after every object
  // with the counters so far.
  std::function<void(const Counters&)> progress;
  // Checked between dkeys: a newer rebuild generation replaces this scan.
  std::function<bool()> cancelled;
  // Decides every transaction prepared in the shard before the scan reads its index: a change
  // still prepared is in no history (a new dkey is not even listed), and its commit would reach
  // only the targets it was prepared on. Those prepared under the new map already include every
  // new home; those prepared under an older one are all in (the scan starts once no request
  // admitted under an older map runs).
  std::function<Status()> settle;
};

// Scans `shard` (on its target's thread, in a fiber) against its pool map (shard.view) and sends
// every home this target must fill its data. A first pass over the index counts the bytes to
// send (Counters::planned) without reading or sending any. Returns the counters, or the first
// error.
Result<Counters> scan(ActorRuntime& rt, uint32_t rank, uint16_t target, PoolShard& shard,
                      const ScanOptions& opts);

// The receiver's side of a RebuildPush (kObjRebuildPush): imports one akey's history.
Status apply_push(storage::TargetStore& store, const Buffer& body, Buffer bulk);

}  // namespace tessera::rebuild

// Consistency check of a container's objects on one target (`tessera cont check`;
// docs/TRANSACTIONS.md, "Consistency check"). For every dkey of the container the target holds:
//   1. every stored piece is read back against its checksum (damaged ones healed in place from
//      a good copy of the same version with `repair`, as a scrub does; an erasure-coded cell
//      from the other cells of its stripe);
//   2. the group's copies are compared, by the target that holds its first position (or by any
//      other holder when that one does not know the dkey at all): replicas, and the erasure-coded
//      pieces kept whole on several positions (single values, partial-stripe copies, checksum
//      records), by their digests at one epoch; erasure-coded stripes by recomputing parity from
//      the data cells and checking both against the writer's checksum record. A difference is
//      read again a few times before it counts (an update may be in flight between the copies).
//   3. with `repair`, a bad copy's history at or below the compared epoch is replaced by a good
//      one's (storage::TargetStore::replace_history): the majority's copy (with two copies, the
//      first position's), or for a stripe the cells that agree with the writer's record.
// Runs on the shard's target thread, in a fiber; suspends on I/O and peer asks.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/actor.hpp"
#include "core/status.hpp"
#include "rebuild/peer.hpp"
#include "shard/pool_shard.hpp"
#include "storage/store.hpp"

namespace tessera::rebuild {

struct CheckFinding {
  ObjectId oid;  // the user's object id
  std::string dkey, akey;
  uint64_t offset = 0, length = 0;  // arrays: the bytes concerned
  std::string what;                 // what disagrees
  std::string copies;               // which copies disagree (rank and target of each side)
  bool repaired = false;
};

// The first so many findings are listed; the others only counted.
inline constexpr size_t kMaxFindings = 100;

struct CheckCounters {
  uint64_t objects = 0, dkeys = 0, akeys = 0;
  uint64_t extents = 0, bytes = 0;             // stored pieces read back, and their bytes
  uint64_t damaged = 0, repaired = 0, unrepaired = 0;  // ... failing their checksum
  uint64_t compared = 0;      // akeys compared across their copies (by this target)
  uint64_t stripes = 0;       // erasure-coded stripes checked against their parity
  uint64_t inconsistent = 0;  // copies found to disagree
  uint64_t fixed = 0;         // ... made to agree again
  uint64_t unchecked = 0;     // dkeys that could not be checked (a copy did not answer)
  std::vector<CheckFinding> findings;
  uint64_t left_off = 0;  // findings beyond kMaxFindings
  std::string last_error;
  void add(CheckFinding f);
};

struct CheckOptions {
  uint32_t cont = 0;
  bool repair = false;
  double share = 1.0;  // of the target's time (it sleeps the rest)
  std::function<bool()> cancelled;
  // Decides the prepared transactions that a read of (key, dkey) at `epoch` here must see
  // decided first (the object service's settle()).
  std::function<Status(ObjectId key, const std::string& dkey, uint64_t epoch)> settle;
  // Dkeys done of those the pass will look at, after each one.
  std::function<void(uint64_t done, uint64_t total)> progress;
};

Result<CheckCounters> check(ActorRuntime& rt, uint32_t rank, uint16_t target, PoolShard& shard,
                            const CheckOptions& opts);

// One page of what this target's copy of (key, dkey) shows at `epoch`, akey by akey, after
// `after` (what kObjDigest answers; the caller settled the dkey first).
struct DkeyDigests {
  bool known = false;  // the dkey is in the index at all
  std::vector<std::pair<std::string, storage::AkeyDigest>> akeys;
  bool more = false;
};
inline constexpr size_t kDigestPage = 1024;
Result<DkeyDigests> dkey_digests(storage::TargetStore& store, ObjectId key, const std::string& dkey,
                                 uint64_t epoch, const std::string& after,
                                 size_t limit = kDigestPage);

// One akey's history at or below `upto`, as an export (kObjShardExport answers with it).
Result<storage::AkeyExport> history_upto(storage::TargetStore& store, ObjectId key,
                                         const std::string& dkey, const std::string& akey,
                                         uint64_t upto);

}  // namespace tessera::rebuild

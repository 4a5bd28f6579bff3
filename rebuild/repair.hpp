// Repair: a stored piece whose bytes fail their checksum is rewritten in place with the bytes of
// the same version from another member of the object's group, checked against the checksum
// recorded when the piece was written (storage::TargetStore::rewrite_piece). Two callers: the
// object service, for the akeys a read found damaged (actors/object_service.cpp), and the scrub
// pass an operator starts over a whole pool shard (`tessera pool scrub`).
//
// Erasure-coded cells have no other copy of their own (their position is the only holder): a
// damaged cell's bytes are rebuilt from k other cells of its stripe at the piece's epoch (and
// rewritten only when they match the checksum recorded for the piece). Runs on the shard's
// target thread, in a fiber; suspends on I/O and peer asks.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "core/actor.hpp"
#include "core/status.hpp"
#include "placement/erasure.hpp"
#include "rebuild/peer.hpp"
#include "shard/pool_shard.hpp"

namespace tessera::rebuild {

// How long a repair retries a member that does not answer before it tries the next one.
inline constexpr std::chrono::milliseconds kRepairRetry{2000};

struct RepairCounters {
  uint64_t akeys = 0;       // akeys checked
  uint64_t extents = 0;     // stored pieces read back
  uint64_t bytes = 0;       // ... and their bytes
  uint64_t damaged = 0;     // pieces that failed their checksum (or could not be read)
  uint64_t repaired = 0;    // ... rewritten from a good copy
  uint64_t unrepaired = 0;  // ... for which no good copy was found: reads still fail there
  std::string last_error;   // why the last unrepaired piece stayed so
};

// The bytes of a damaged piece of an erasure-coded cell (position `j` of `pos`), rebuilt from
// k other cells of its stripes as they were at the piece's epoch.
Result<Buffer> ec_cell_piece(const Peer& peer, const placement::EcGeometry& g,
                             const std::vector<placement::Position>& pos, ObjectId key,
                             const std::string& dkey, const std::string& akey, uint32_t j,
                             const storage::TargetStore::DamagedPiece& p);

// Checks every stored piece of one akey of the shard and repairs the damaged ones (`peer`
// retries a silent member for its `retry`, kRepairRetry for both callers).
Status repair_akey(const Peer& peer, ObjectId key, const std::string& dkey, const std::string& akey,
                   RepairCounters& c);

struct ScrubOptions {
  // Share of the target's time the pass may use (it sleeps the rest); 1: no throttling.
  double share = 1.0;
  std::function<bool()> cancelled;
};

// Checks and repairs every akey of the shard (a scrub pass).
Result<RepairCounters> scrub(ActorRuntime& rt, uint32_t rank, uint16_t target, PoolShard& shard,
                             const ScrubOptions& opts);

}  // namespace tessera::rebuild

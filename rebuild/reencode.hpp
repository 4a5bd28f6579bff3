// Background re-encoding of erasure-coded partial-stripe copies.
//
// A partial-stripe write is stored as copies (a full copy on every parity position, each data
// position a copy of its own cells' bytes: p + 1 copies of every byte, docs/ERASURE_CODING.md).
// Once partial writes have filled a whole stripe with copies, the group's leader (the home of
// position 0, with every position of the group serving at its home) turns the stripe into k data
// cells and p parity cells:
//   1. it takes a fresh epoch E from its store's clock and waits until no erasure-coded update
//      it leads with an epoch below E is still in flight;
//   2. reads the stripe's copies at E from a parity position (their full copy), leaving a read
//      stamp there (a user transaction's change below E arriving later restarts), and keeps
//      the stripes that the copies cover completely;
//   3. phase one: writes every data cell and every parity cell (ISA-L) of those stripes at E
//      on every position, and waits until all are durable;
//   4. phase two: punches the copies of those stripes at E on every position.
// Writes with epochs above E (made while this ran) stay on top of the new cells. Until phase
// two, the copies still hold every byte, so a position lost in between costs nothing; a round
// that fails is dropped and the next pass starts the stripe again. Position requests carry the
// leader's pool map version and are refused by a position that knows another one.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include "shard/pool_shard.hpp"
#include "core/actor.hpp"
#include "core/status.hpp"

namespace tessera::rebuild {

struct ReencodeCounters {
  uint64_t stripes = 0;     // stripes turned into cells and parity
  uint64_t copy_bytes = 0;  // bytes of copies those stripes no longer need (per copy)
};

struct ReencodeOptions {
  // At most this many bytes of stripes per round (one epoch, two phases).
  uint64_t batch_bytes = 4u << 20;
  // Checked between dkeys: stop early (the target is stopping).
  std::function<bool()> cancelled;
};

// One pass over `shard` (on its target's thread, in a fiber): re-encodes the fully copied
// stripes of every erasure-coded dkey this target leads.
Result<ReencodeCounters> reencode(ActorRuntime& rt, uint32_t rank, uint16_t target,
                                  PoolShard& shard, const ReencodeOptions& opts);

// The background loop an engine runs on each target (and the rebuild simulation on its
// engines): every `interval`, one pass over each pool shard whose map has stayed the same for a
// whole interval (updates stamped under an older map have had time to finish); counters and the
// last error go to PoolShard::reencode. Runs in a fiber of `t` until the target stops.
void reencode_loop(Target& t, ActorRuntime& rt, TargetPools& pools, uint32_t rank,
                   std::chrono::milliseconds interval);

}  // namespace tessera::rebuild

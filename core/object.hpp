// The object vocabulary shared by the store, the services and the client API.
#pragma once

#include <compare>
#include <cstdint>

#include "core/histogram.hpp"

namespace tessera {

// 128-bit object id; the high bits will carry the object class.
struct ObjectId {
  uint64_t hi = 0;
  uint64_t lo = 0;
  auto operator<=>(const ObjectId&) const = default;
};

// An akey holds either one value replaced atomically, or a byte-granular array.
enum class ValueKind : uint8_t { single = 0, array = 1 };

// What a listing enumerates: objects, the dkeys of an object, the akeys of a dkey, or the
// written extents (record ranges) of an array akey.
enum class ListScope : uint8_t { objects, dkeys, akeys, recx };

// Conditions an update may carry: store only if the akey has no visible value (insert) or only
// if it has one (update). A failed condition is `exists` / `not_found` and changes nothing.
enum class Cond : uint8_t { none = 0, insert = 1, update = 2 };

// What one aggregation pass of a target's store did (store, service and client share it).
struct AggregateStats {
  uint64_t epoch = 0;  // the aggregation epoch actually used
  uint64_t akeys_scanned = 0;
  uint64_t versions_dropped = 0;
  uint64_t versions_trimmed = 0;
  uint64_t punches_dropped = 0;
  uint64_t keys_removed = 0;
  uint64_t bytes_freed = 0;
  // The pass dropped no punch (its pool's map moves data, or former homes have not reclaimed:
  // storage::AggregationGuard::hold); the versions punches hide went all the same.
  bool punches_kept = false;
};

// One target store's counters (store, service and client share it).
struct StoreStats {
  uint64_t capacity = 0;  // data region bytes
  uint64_t used = 0;      // allocated: live extents + checkpoint + awaiting checkpoint
  uint64_t checkpoint_bytes = 0;
  uint64_t pending_free = 0;  // freed by aggregation, reusable after the next checkpoint
  uint64_t reserve = 0;       // kept free so the next checkpoint always fits
  uint64_t wal_used = 0;
  uint64_t wal_capacity = 0;
  uint64_t objects = 0;
  uint64_t versions = 0;
  uint64_t updates = 0;
  uint64_t fetches = 0;
  uint64_t checkpoints = 0;
  uint64_t aggregations = 0;
  uint64_t aggregation_epoch = 0;
  double recovery_ms = 0;
  // Since the store was opened (its replay included): log groups, the records and bytes they
  // held, the times a group waited for log space, and each group's write + sync time.
  uint64_t wal_groups = 0;
  uint64_t wal_records = 0;
  uint64_t wal_bytes = 0;
  uint64_t wal_full_waits = 0;
  Histogram wal_commit;
  // Distributed transactions: prepared here and not yet decided; decided since the open.
  uint64_t dtx_open = 0;
  uint64_t dtx_committed = 0;
  uint64_t dtx_aborted = 0;
};

// Checksum kept with every stored extent (computed on arrival, verified on every read).
enum class CsumType : uint8_t { crc32c = 0, crc64 = 1 };

}  // namespace tessera

// TargetStore: the per-target object store (first cut of the versioned object store).
//
// One per target, created by open() inside a fiber on that target and used only there; it owns
// the target's BlockQueue, its WAL and its extent allocator. Lives until the target stops.
//
// Target file layout (details in docs/STORAGE_FORMAT.md):
//   [0, 4 KiB)              superblock
//   [4 KiB, 4 KiB + W)      write-ahead log (W = wal_bytes, default size/8 clamped 16 MiB..1 GiB)
//   [4 KiB + W, size)       data region, allocated in 4 KiB extents
//
// Index: object -> dkey -> akey -> versions, in memory, rebuilt on open by replaying the WAL.
// An update is acknowledged only after its data extents are written and its WAL record is
// durable (write + fdatasync), so a kill -9 after the reply never loses it.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "core/buffer.hpp"
#include "core/env.hpp"
#include "core/object.hpp"
#include "core/status.hpp"
#include "core/target.hpp"
#include "storage/allocator.hpp"
#include "storage/block_queue.hpp"
#include "storage/wal.hpp"

namespace tessera::storage {

using tessera::ListScope;
using tessera::ObjectId;
using tessera::ValueKind;

struct StoreOptions {
  uint32_t target_index = 0;
  uint64_t wal_bytes = 0;            // 0: size/8 clamped to [16 MiB, 1 GiB]
  uint64_t inline_threshold = 4096;  // values smaller than this live in the WAL
  uint64_t max_extent = 1u << 20;    // large values are stored as pieces of at most this
  uint64_t max_value = 1ull << 30;   // largest single update
  size_t max_key = 4096;             // longest dkey/akey
  // Write zeros over a freshly created file once at format. A preallocated but never-written
  // file has "unwritten" extents: the first write of each block then needs a metadata update
  // (io_uring punts it to a worker, fdatasync journals it), which halves write bandwidth.
  bool zero_fill = true;
};

struct FetchResult {
  Buffer data;
  uint64_t size = 0;                                 // single: value size; array: end
  std::vector<std::pair<uint64_t, uint64_t>> holes;  // (offset, length) never written
  uint64_t epoch = 0;
};

struct ListEntry {
  std::string key;
  ObjectId oid;
  ValueKind kind = ValueKind::single;
  uint64_t size = 0;
};

struct ListResult {
  std::vector<ListEntry> entries;
  std::string anchor;
  bool done = true;
};

struct StoreStats {
  uint64_t capacity = 0;
  uint64_t used = 0;
  uint64_t wal_used = 0;
  uint64_t wal_capacity = 0;
  uint64_t objects = 0;
  uint64_t updates = 0;
  uint64_t fetches = 0;
};

class TargetStore {
 public:
  // Formats a new file or recovers an existing one (replays its WAL). Runs in a fiber on `t`.
  static Result<std::unique_ptr<TargetStore>> open(Target& t, std::unique_ptr<BlockQueue> q,
                                                   const StoreOptions& opts);
  ~TargetStore();
  // Stops the log committer and detaches from the target (target thread). After close() the
  // store may be destroyed from any thread. Destroying an open store is allowed only once its
  // target has stopped.
  void close();

  // Stores `data` (crc32c `crc`, verified first) and returns its epoch once durable.
  Result<uint64_t> update(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                          ValueKind kind, uint64_t offset, std::span<const uint8_t> data,
                          uint32_t crc);
  // epoch 0 = newest. Array: length 0 = up to the highest written byte.
  Result<FetchResult> fetch(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                            ValueKind kind, uint64_t offset, uint64_t length, uint64_t epoch);
  // Empty dkey: the whole object; empty akey: the whole dkey. Idempotent.
  Result<uint64_t> punch(const ObjectId& oid, std::string_view dkey, std::string_view akey);
  Result<ListResult> list(ListScope scope, const ObjectId& oid, std::string_view dkey,
                          std::string_view anchor, uint32_t limit) const;

  StoreStats stats() const;
  BlockQueue& queue() { return *q_; }
  uint64_t data_offset() const { return data_off_; }
  uint64_t incarnation() const { return incarnation_; }

  struct Extent {
    uint64_t disk = 0;
    uint32_t len = 0;
    uint32_t crc = 0;
  };
  struct Version {
    uint64_t epoch = 0;
    uint64_t offset = 0;
    uint64_t length = 0;
    std::string inline_data;
    uint32_t crc = 0;
    std::vector<Extent> extents;
  };
  struct AkeyVal {
    ValueKind kind = ValueKind::single;
    std::vector<Version> versions;  // ascending epoch
  };
  using Dkey = std::map<std::string, AkeyVal, std::less<>>;
  struct Object {
    std::map<std::string, Dkey, std::less<>> dkeys;
  };

 private:
  TargetStore(Target& t, std::unique_ptr<BlockQueue> q, const StoreOptions& opts);
  Status format();
  Status recover();
  Status apply_record(std::span<const uint8_t> bytes, bool replaying);
  void apply_update(const ObjectId& oid, std::string dkey, std::string akey, ValueKind kind,
                    Version v, bool replaying);
  void apply_punch(const ObjectId& oid, std::string_view dkey, std::string_view akey);
  void release(const Version& v);
  void release_extents(const std::vector<Extent>& ex);
  void reclaim();
  Result<Buffer> read_extent(const Extent& e);
  Status write_superblock();
  Status zero_fill(uint64_t from, uint64_t to);

  Target& target_;
  std::unique_ptr<BlockQueue> q_;
  StoreOptions opts_;
  HybridClock hlc_;
  std::unique_ptr<Wal> wal_;
  ExtentAllocator alloc_;
  std::map<ObjectId, Object> objects_;
  uint64_t incarnation_ = 0;
  uint64_t wal_off_ = 0;
  uint64_t wal_len_ = 0;
  uint64_t data_off_ = 0;
  uint64_t updates_ = 0;
  mutable uint64_t fetches_ = 0;
  // Extents freed while reads that may still use them are in flight wait here, tagged with the
  // read generation current at free time, until every older read finished.
  uint64_t read_gen_ = 1;
  std::multiset<uint64_t> active_reads_;
  std::vector<std::pair<uint64_t, Extent>> deferred_free_;
};

}  // namespace tessera::storage

// TargetStore: the per-target versioned object store.
//
// One per target, created by open() inside a fiber on that target and used only there (no
// locks); it owns the target's BlockQueue, its WAL, its checkpoints and its extent allocator.
//
// Target file layout (details in docs/STORAGE_FORMAT.md):
//   [0, 4 KiB)        superblock
//   [4 KiB, 12 KiB)   two checkpoint header slots (4 KiB each; the valid one with the higher
//                     sequence number wins)
//   [12 KiB, +W)      circular write-ahead log (W = wal_bytes, default size/8, 16 MiB..1 GiB)
//   [12 KiB + W, end) data region, allocated in 4 KiB blocks: large values and checkpoint chunks
//
// Model: object -> dkey -> akey -> versions. Every change carries an epoch (hybrid logical
// clock); a fetch at epoch E sees, per byte, the newest version with epoch <= E that no punch
// at or below E hides. Punches (object, dkey, akey, array range) are versions too. Nothing is
// overwritten in place: aggregation later drops what no reader can see any more (keeping what
// protected snapshot epochs see) and frees its space.
//
// Durability: an update is acknowledged only after its data extents are written and its WAL
// record is durable; the committer then applies it to the in-memory index (in log order).
// Checkpoints write the whole index to the data region and let the log wrap; restart = load the
// newest checkpoint + replay the log from the checkpoint's mark (replay is idempotent). Space
// that aggregation frees is reused only after a checkpoint that no longer references it.
#pragma once

#include <fmt/format.h>

#include <boost/fiber/condition_variable.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/buffer.hpp"
#include "core/env.hpp"
#include "core/object.hpp"
#include "core/status.hpp"
#include "core/target.hpp"
#include "storage/allocator.hpp"
#include "storage/block_queue.hpp"
#include "storage/read_stamps.hpp"
#include "storage/wal.hpp"

namespace tessera::storage {

using tessera::Cond;
using tessera::CsumType;
using tessera::ListScope;
using tessera::ObjectId;
using tessera::ValueKind;

struct DtxStage;

// A distributed transaction's identity: the epoch its leader stamped and the leader
// (rank << 32 | target). docs/TRANSACTIONS.md.
struct DtxId {
  uint64_t epoch = 0;
  uint64_t leader = 0;
  auto operator<=>(const DtxId&) const = default;
};
struct DtxIdHash {
  size_t operator()(const DtxId& id) const {
    return std::hash<uint64_t>{}(id.epoch ^ (id.leader * 0x9e3779b97f4a7c15ull));
  }
};
inline uint64_t dtx_member(uint32_t rank, uint32_t target) {
  return (uint64_t{rank} << 32) | target;
}

// What a target knows of a transaction. `unknown`: never prepared here, or decided so long ago
// that it was forgotten.
enum class DtxState : uint8_t { unknown, prepared, committed, aborted };
std::string_view dtx_state_name(DtxState s);

// How dtx_prepare() checks a part against concurrent transactions once it is registered (so
// that a read arriving meanwhile either left its stamp before or meets the prepared change).
struct DtxChecks {
  // A user transaction over several groups (recorded: its participants are judged by the pool
  // map when they do not answer, not by one dkey's group).
  bool user = false;
  // Refuse (`restart`) a change under a transaction's read (ReadStamps): one above its epoch,
  // or at its epoch by another reader than `owner` (0: any).
  bool reads = false;
  uint64_t owner = 0;
  // Refuse (`restart`) a change under a newer one: the key holds a version or punch at or
  // above the change's epoch, or another transaction has one prepared there.
  bool newer = false;
};

// What a background aggregation pass must respect, learned before each pass.
struct AggregationGuard {
  std::vector<uint64_t> protect;  // snapshot epochs to keep readable
  // Non-empty: passes keep every punch now, and why. A rebuild moving data into this store
  // imports histories with their old epochs, and a former home's kept copy may be merged into a
  // later fill: a punch aggregated away before such an older version of its akey arrives would
  // no longer hide it (docs/REBUILD.md, "Aggregation during a rebuild"). A version hidden by a
  // newer one or by a punch goes as ever: whatever arrives below them stays hidden.
  std::string hold;
  // Objects whose punches stay whatever `hold` says (empty: none). A container whose former
  // homes keep their copies (the map does not know it, or its data was not all rebuilt) may see
  // such a copy merged into a later fill at any time; the punches that hide it must be there.
  std::function<bool(const ObjectId& key)> keep_punches_of;
};

struct StoreOptions {
  uint32_t target_index = 0;
  // How messages and errors name this store ("rank 2 target 0"; empty: "target N").
  std::string name;
  uint64_t wal_bytes = 0;            // 0: size/8 clamped to [16 MiB, 1 GiB]
  uint64_t inline_threshold = 4096;  // values smaller than this live in the metadata
  uint64_t max_extent = 1u << 20;    // large values are stored as pieces of at most this
  uint64_t max_value = 1ull << 30;   // largest single update
  size_t max_key = 4096;             // longest dkey/akey
  CsumType checksum = CsumType::crc32c;
  // Write zeros over a freshly created file once at format. A preallocated but never-written
  // file has "unwritten" extents: the first write of each block then needs a metadata update
  // (io_uring punts it to a worker, fdatasync journals it), which halves write bandwidth.
  bool zero_fill = true;
  // Told the bytes of the file a format has initialized as it goes (called on the target
  // thread; the calls of one format add up to the file's size). Empty: nobody asks.
  std::function<void(uint64_t)> formatted;
  // Background work. A checkpoint starts when the log is half full, when it is full, and at
  // least every checkpoint_interval if anything changed (0: only on log pressure).
  std::chrono::milliseconds checkpoint_interval{60000};
  // Every aggregation_interval, versions older than now - aggregation_delay are merged into the
  // state visible at that epoch (and at each protected epoch). 0: no background aggregation.
  std::chrono::milliseconds aggregation_interval{30000};
  std::chrono::milliseconds aggregation_delay{30000};
  uint32_t aggregation_batch = 256;  // akeys between yields
  // Where a background aggregation pass learns, before it runs, what it must respect (a pool's
  // shard: its containers' snapshots and whether a rebuild is moving the pool's data, from the
  // management service). A pass that cannot learn it does not run. Unset: set_protected_epochs()
  // alone decides.
  std::function<Result<AggregationGuard>()> guard;
};

struct UpdateOptions {
  Cond cond = Cond::none;
  uint32_t rsize = 1;            // array record size; offsets and lengths count records
  uint64_t epoch = 0;            // 0: the store assigns one (a replica forwards the leader's)
  std::optional<CsumType> csum;  // checksum of the stored extents (default: the store's option)
  // A rebuild import: the given epoch may lie at or below the aggregation epoch, and a version
  // the store already holds at that epoch is not stored again.
  bool import = false;
  // The caller checked the payload against its sender's checksum already (a rebuild push, whose
  // whole bulk is checked on arrival): `crc` is not given, not checked, and the stored extents'
  // checksums are computed from the bytes.
  bool verified = false;
  // Part of a transaction: the data is written but the change is handed to the stage instead
  // of being logged; dtx_prepare() logs the stage's changes at once.
  DtxStage* stage = nullptr;
};

// The whole history of one akey as rebuild moves it to another target: its versions and
// punches (with the punches of its dkey and object), epochs kept.
struct AkeyExport {
  struct Ver {
    uint64_t epoch = 0;
    uint64_t lo = 0;  // bytes [lo, hi) of the value (single: [0, size))
    uint64_t hi = 0;
    bool punch = false;    // array range punch
    uint64_t data_at = 0;  // where its bytes start in `data` (not for punches)
  };
  std::vector<uint64_t> object_punches, dkey_punches, akey_punches;
  ValueKind kind = ValueKind::single;
  uint32_t rsize = 1;
  std::vector<Ver> versions;
  Buffer data;  // the bytes of the versions, back to back
  // `data` was checked against its sender's checksum on arrival (a parsed rebuild push): the
  // import does not checksum it again.
  bool verified = false;
  uint64_t bytes() const { return data.size(); }
};

struct FetchOptions {
  bool must_exist = false;  // absent (at the epoch) -> not_found instead of an empty answer
  uint32_t rsize = 1;
};

struct FetchResult {
  Buffer data;
  bool exists = false;                               // the akey has a visible value
  uint64_t size = 0;                                 // single: value size; array: end (records)
  std::vector<std::pair<uint64_t, uint64_t>> holes;  // (offset, length) in records, reading 0
  uint64_t epoch = 0;                                // newest epoch among what was returned
};

struct ListEntry {
  std::string key;
  ObjectId oid;
  ValueKind kind = ValueKind::single;
  uint64_t size = 0;    // akeys: value size / array end (records)
  uint64_t offset = 0;  // recx: first record of a written run
  uint64_t length = 0;  // recx: records in the run
};

// What a snapshot rollback changed in one target's store (storage/store_rollback.cpp).
struct RollbackStats {
  uint64_t objects = 0;    // objects looked at
  uint64_t rewritten = 0;  // akeys written again as they were at the snapshot
  uint64_t punched = 0;    // objects, dkeys and akeys made after the snapshot, punched
  uint64_t bytes = 0;      // bytes written again
  RollbackStats& operator+=(const RollbackStats& o) {
    objects += o.objects;
    rewritten += o.rewritten;
    punched += o.punched;
    bytes += o.bytes;
    return *this;
  }
};

// What an akey shows at one epoch, reduced to a digest (storage/store_check.cpp): two copies
// of an akey hold the same visible state when their digests (and the other fields) agree.
struct AkeyDigest {
  ValueKind kind = ValueKind::single;
  uint32_t rsize = 1;
  bool exists = false;   // visible at the epoch
  uint64_t size = 0;     // single: value bytes; array: one past the highest visible record
  uint64_t epoch = 0;    // single: the visible version's epoch; array: 0 (aggregation merges)
  uint64_t digest = 0;   // crc64 of the visible bytes (arrays: and where the holes are)
  bool damaged = false;  // a piece failed its checksum (the digest means nothing then)
  bool operator==(const AkeyDigest&) const = default;
};

struct ListResult {
  std::vector<ListEntry> entries;
  std::string anchor;
  bool done = true;
};

using tessera::AggregateStats;

using tessera::StoreStats;

class TargetStore {
 public:
  // Formats a new file or recovers an existing one (checkpoint + log). Runs in a fiber on `t`.
  static Result<std::unique_ptr<TargetStore>> open(Target& t, std::unique_ptr<BlockQueue> q,
                                                   const StoreOptions& opts);
  ~TargetStore();
  // Stops the background fibers and the log committer and detaches from the target (target
  // thread). After close() the store may be destroyed from any thread.
  void close();

  // Stores `data` (crc32c `crc`, verified first) and returns its epoch once durable.
  // Arrays: `offset` counts records of opts.rsize bytes; data.size() must be a multiple.
  Result<uint64_t> update(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                          ValueKind kind, uint64_t offset, std::span<const uint8_t> data,
                          uint32_t crc, const UpdateOptions& opts = {});
  // epoch 0 = newest. Array: offset/length in records; length 0 = up to the highest record.
  Result<FetchResult> fetch(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                            ValueKind kind, uint64_t offset, uint64_t length, uint64_t epoch,
                            const FetchOptions& opts = {});
  // Empty dkey: the whole object; empty akey: the whole dkey. Versioned: fetches below the
  // returned epoch still see what was there.
  // `epoch` 0: the store assigns one; else the leader's epoch a replica applies.
  Result<uint64_t> punch(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                         uint64_t epoch = 0, bool import = false, DtxStage* stage = nullptr);
  // Punches records [offset, offset + length) of an array akey: they read as holes.
  Result<uint64_t> punch_range(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                               uint64_t offset, uint64_t length, uint32_t rsize = 1,
                               uint64_t epoch = 0, bool import = false, DtxStage* stage = nullptr);

  // ---- distributed transactions (storage/store_dtx.cpp, docs/TRANSACTIONS.md) ----
  // Logs the staged changes as transaction `id`, prepared: durable on return, invisible to
  // every read until dtx_commit(). Refused (`aborted`) when `id` was already decided aborted
  // here (a resolver gave up on it before its prepare arrived).
  Status dtx_prepare(const DtxId& id, std::vector<uint64_t> participants, DtxStage&& stage,
                     const DtxChecks& checks = {});
  // Stamps of the reads transactions made here (storage/read_stamps.hpp).
  ReadStamps& read_stamps() { return reads_; }
  // Observes an epoch a transaction reads at: later epochs of this store's clock order after it.
  void observe_epoch(uint64_t epoch) { hlc_.observe(epoch); }
  // Versions at or below it are merged: reads below it are not exact, changes are refused.
  uint64_t aggregation_epoch() const { return agg_epoch_; }
  // Applies a prepared transaction's changes to the index (visible at once; the decision is
  // logged with the next group, and replay or resolution redoes it if a crash loses it).
  // Committed already: ok. Never prepared here: not_found; aborted: `aborted`.
  Status dtx_commit(const DtxId& id);
  // Commits every one of `ids` prepared here (the others are left as they are: decided, or
  // never prepared here) and logs their decisions as one record: a participant told of a batch.
  void dtx_commit_prepared(std::span<const DtxId> ids);
  // Drops a prepared transaction's changes; an unknown id is remembered as aborted so that a
  // prepare arriving late is refused. Committed already: `exists`.
  Status dtx_abort(const DtxId& id);
  // The same, durable on return (the abort record is logged and synced, not posted).
  Status dtx_abort_durable(const DtxId& id);
  // Whether a prepare of `id` is still being logged or checked here (dtx_prepare has not
  // returned): not yet a part anyone may count as prepared.
  bool dtx_preparing(const DtxId& id) const { return dtx_preparing_.count(id) != 0; }
  DtxState dtx_state(const DtxId& id) const;
  // Gives back the extents of a stage that will not be prepared (a later change failed).
  void dtx_discard(DtxStage& stage);
  // A prepared transaction that changes (oid, dkey, akey) at or below `epoch`: a read there
  // must learn its outcome first. Empty dkey or akey: anything under the object or dkey.
  std::optional<DtxId> dtx_blocking(const ObjectId& oid, std::string_view dkey,
                                    std::string_view akey, uint64_t epoch) const;
  struct DtxInfo {
    DtxId id;
    std::vector<uint64_t> participants;
    Nanos prepared{0};  // when this target prepared (or recovered) it, in Env time
    ObjectId oid;       // its first change's object and dkey
    std::string dkey;
    bool user = false;  // a user transaction (DtxChecks::user)
  };
  std::vector<DtxInfo> dtx_prepared() const;
  // One prepared transaction's facts; none when it is not prepared here.
  std::optional<DtxInfo> dtx_info(const DtxId& id) const;
  // Notified whenever a transaction here is decided.
  boost::fibers::condition_variable_any& dtx_decided_cv() { return dtx_cv_; }
  // One page of a scope at `epoch` (0 = newest); resume with the returned anchor.
  Result<ListResult> list(ListScope scope, const ObjectId& oid, std::string_view dkey,
                          std::string_view akey, std::string_view anchor, uint32_t limit,
                          uint64_t epoch = 0) const;
  // The greatest visible dkey (byte order) of an object; not_found when it has none.
  Result<std::string> max_dkey(const ObjectId& oid, uint64_t epoch = 0) const;
  // One past the highest visible record of an array akey (0 when nothing is visible).
  Result<uint64_t> max_recx(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                            uint64_t epoch = 0) const;

  // Rebuild. Every object key the index holds, every dkey of an object and every akey of a
  // dkey with its kind, punched ones included (a punch is history to move too).
  std::vector<ObjectId> object_keys() const;
  std::vector<std::string> dkey_names(const ObjectId& oid) const;
  std::vector<std::pair<std::string, ValueKind>> akey_names(const ObjectId& oid,
                                                            std::string_view dkey) const;
  // The history of one akey (empty akey: only the punches of the dkey and object).
  Result<AkeyExport> export_akey(const ObjectId& oid, std::string_view dkey, std::string_view akey);
  // How many bytes of data export_akey would return, from the index alone (no reads).
  uint64_t history_bytes(const ObjectId& oid, std::string_view dkey, std::string_view akey) const;
  // Applies an export (epochs kept; what the store already holds is skipped). Durable on return.
  Status import_akey(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                     const AkeyExport& x);

  // Scrub and repair (storage/store_repair.cpp). A stored piece of an akey's value whose bytes
  // fail their checksum (or cannot be read): which version, where in the value, where on disk.
  struct DamagedPiece {
    uint64_t epoch = 0;
    ValueKind kind = ValueKind::single;
    uint32_t rsize = 1;
    uint64_t at = 0;  // byte offset of the piece in the value (arrays: in the array)
    uint32_t len = 0;
    uint64_t disk = 0;
    uint64_t csum = 0;
    CsumType csum_type = CsumType::crc32c;
    std::string error;  // what reading it said
  };
  struct VerifyResult {
    uint64_t extents = 0;  // stored pieces read and checked
    uint64_t bytes = 0;
    std::vector<DamagedPiece> damaged;
  };
  // Reads every stored piece of the akey's versions and checks it against its checksum
  // (inline values live in the checksummed metadata). Suspends on the reads.
  Result<VerifyResult> verify_akey(const ObjectId& oid, std::string_view dkey,
                                   std::string_view akey);
  // Rewrites a damaged piece in place with `bytes`, which must match the checksum recorded when
  // the piece was written (a good replica's copy of the same version), and syncs: durable on
  // return. Refuses (not_found) when the piece is no longer stored (aggregated away meanwhile);
  // never changes what the akey holds, only heals its bytes.
  Status rewrite_piece(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                       const DamagedPiece& p, std::span<const uint8_t> bytes);

  // Consistency check (storage/store_check.cpp): what the akey shows at `epoch` (0: newest),
  // as a digest; reads every visible byte (and fails where a piece fails its checksum).
  Result<AkeyDigest> akey_digest(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                                 uint64_t epoch);
  // Repair of a copy that diverged from the good ones: the akey's versions and punches at or
  // below `upto` become exactly `x`'s (a good copy's history up to `upto`, exported there);
  // what lies above `upto` stays. Durable on return (a checkpoint: the dropped versions are
  // not in the log). A crash before the checkpoint leaves the old history with `x`'s merged
  // in: nothing another copy holds is lost, and the next check repairs it again.
  Status replace_history(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                         uint64_t upto, const AkeyExport& x);
  // Reclaim of what this target no longer holds (rebuild/reclaim.hpp): physically drops `akeys`
  // of the dkey (every version and punch), or, with `akeys` empty, the whole dkey with its
  // punches. Never a punch: a later fill of the dkey brings its history into an empty place,
  // with nothing older for it to merge with. The extents are freed after the next checkpoint;
  // not durable on return: the caller checkpoints (a crash before that brings the dropped
  // history back from the log, and the next reclaim pass drops it again). Suspends while
  // another maintenance (aggregation, a checkpoint) runs; `still`, asked once nothing can
  // suspend any more, says whether the drop is still wanted (the caller's map may have moved
  // meanwhile). Returns the bytes of data dropped, none when `still` said no.
  uint64_t drop_keys(const ObjectId& oid, std::string_view dkey,
                     const std::vector<std::string>& akeys, const std::function<bool()>& still);

  // Snapshot rollback (storage/store_rollback.cpp, docs/TRANSACTIONS.md). rollback_begin
  // refuses a snapshot epoch aggregation no longer keeps readable, and an epoch `at` this store's
  // clock has reached (a change may already sit above it); then its clock moves past `at`.
  // From then on a change stamped below `at` is refused (`stale`: its sender retries it at a
  // new epoch, above the rollback), except imports.
  // rollback_object makes what `oid` showed at `snap` its newest state, as changes at `at`:
  // values written again, keys made since punched, nothing below `at` touched. Suspends.
  Status rollback_begin(uint64_t snap, uint64_t at);
  Result<RollbackStats> rollback_object(const ObjectId& oid, uint64_t snap, uint64_t at);

  // Merges every version at or below `epoch` into the state visible at `epoch` and at each of
  // `protect` (plus the store's own protected epochs), drops what nothing sees any more,
  // then checkpoints so the space is reused. With `keep_punches`, every punch stays (what it
  // hides goes): AggregationGuard::hold; `keep_punches_of` keeps those of the objects it names
  // (AggregationGuard::keep_punches_of). Yields between batches of akeys.
  Result<AggregateStats> aggregate(
      uint64_t epoch, std::vector<uint64_t> protect = {}, bool keep_punches = false,
      const std::function<bool(const ObjectId& key)>& keep_punches_of = {});
  // Writes the index as a new checkpoint and releases the log before it.
  Status checkpoint();
  // Snapshot epochs the background aggregation must keep visible.
  void set_protected_epochs(std::vector<uint64_t> epochs);

  StoreStats stats() const;
  BlockQueue& queue() { return *q_; }
  uint64_t data_offset() const { return data_off_; }
  uint64_t incarnation() const { return incarnation_; }
  uint64_t now_epoch() const { return hlc_.last(); }
  // A fresh epoch from the store's clock (a replication leader stamps its update with it).
  uint64_t new_epoch() { return hlc_.tick(); }

  struct Extent {
    uint64_t disk = 0;
    uint32_t len = 0;
    uint64_t csum = 0;
  };
  struct Version {
    uint64_t epoch = 0;
    uint64_t offset = 0;  // bytes: where the stored data starts
    uint64_t length = 0;  // bytes stored
    uint64_t lo = 0;      // bytes [lo, hi) of the array this version still covers
    uint64_t hi = 0;
    bool punch = false;  // array range punch: [lo, hi) reads as holes
    CsumType csum_type = CsumType::crc32c;
    std::string inline_data;
    std::vector<Extent> extents;
  };
  struct AkeyVal {
    ValueKind kind = ValueKind::single;
    uint32_t rsize = 1;
    std::vector<uint64_t> punches;  // ascending
    std::vector<Version> versions;  // ascending epoch
  };
  struct Dkey {
    std::vector<uint64_t> punches;
    std::map<std::string, AkeyVal, std::less<>> akeys;
  };
  struct Object {
    std::vector<uint64_t> punches;
    std::map<std::string, Dkey, std::less<>> dkeys;
  };

 private:
  TargetStore(Target& t, std::unique_ptr<BlockQueue> q, const StoreOptions& opts);
  // This store as messages and errors name it (StoreOptions::name).
  std::string who() const {
    return opts_.name.empty() ? fmt::format("target {}", opts_.target_index) : opts_.name;
  }
  Status format();
  Status recover();
  Status load_checkpoint(WalMark& from);
  Status apply_record(std::span<const uint8_t> bytes);
  // Transactions: a prepare record (replay, checkpoint load or dtx_prepare), and the outcome
  // records.
  struct Dtx;
  Status dtx_load(std::span<const uint8_t> prepare_record);
  void dtx_apply_outcome(const DtxId& id, bool commit);
  void dtx_remember(const DtxId& id, bool committed);
  // Logs decisions without waiting: aborts as a posted record, commits in the record the log
  // asks for when it forms its next group (dtx_unlogged_record, the log's group hook).
  void dtx_post(std::span<const DtxId> ids, bool commit);
  std::vector<uint8_t> dtx_unlogged_record();
  Status dtx_conflict(const Dtx& d, const DtxChecks& checks) const;
  // The newest epoch of a version or punch under (oid, dkey, akey) in the index (dkey or akey
  // empty: anything under the object or dkey), its dkey's and object's punches included.
  uint64_t newest_change(const ObjectId& oid, std::string_view dkey, std::string_view akey) const;
  Result<uint64_t> stage_record(DtxStage& stage, std::vector<uint8_t> record,
                                std::vector<Extent> extents, uint64_t epoch);
  void apply_version(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                     ValueKind kind, uint32_t rsize, Version v);
  // An akey's kind (single value or array, and the array's record size) is decided by its
  // first version. Updates not yet in the index (in flight, staged, prepared) hold the kind
  // they write from the moment they are checked, so that two of different kinds can never both
  // pass the check while one of them suspends: `invalid_argument` for the second.
  // `key`: busy_key(oid, dkey, akey), which the caller has at hand.
  Status hold_kind(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                   const std::string& key, ValueKind kind, uint32_t rsize);
  void release_kind(const std::string& key);
  void release_kinds(std::vector<std::string>& keys);
  struct KindGuard;
  friend struct DtxStage;
  void apply_punch(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                   uint64_t epoch);
  Result<uint64_t> log_version(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                               ValueKind kind, uint32_t rsize, Version v,
                               DtxStage* stage = nullptr);
  Status check_condition(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                         Cond cond) const;
  const AkeyVal* find(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                      const Object** o, const Dkey** d) const;
  // `given` 0: a fresh epoch; else `given` if above the aggregation epoch and not below a
  // rollback begun here (the clock observes it). `import`: any given epoch (rebuild moves old
  // history).
  Result<uint64_t> take_epoch(uint64_t given, bool import = false);
  // Whether the akey already holds a version at `epoch` that meets bytes [lo, hi).
  bool holds(const ObjectId& oid, std::string_view dkey, std::string_view akey, uint64_t epoch,
             uint64_t lo, uint64_t hi) const;
  bool akey_visible(const Object& o, const Dkey& d, const AkeyVal& a, uint64_t epoch) const;
  bool dkey_visible(const Object& o, const Dkey& d, uint64_t epoch) const;
  bool object_visible(const Object& o, uint64_t epoch) const;
  Result<Buffer> read_extent(const Extent& e, CsumType t);
  // Registers an in-flight read: extents freed meanwhile wait until it ends.
  class ReadGuard {
   public:
    explicit ReadGuard(TargetStore& s);
    ~ReadGuard();
    ReadGuard(const ReadGuard&) = delete;
    ReadGuard& operator=(const ReadGuard&) = delete;

   private:
    TargetStore& s_;
    uint64_t gen_;
  };
  Status verify_extent(const Extent& e, CsumType t, const uint8_t* bytes) const;
  static Status rsize_mismatch(const AkeyVal& a, uint32_t rsize);
  Status write_superblock();
  Status rollback_check(uint64_t snap, uint64_t at) const;
  Status zero_fill(uint64_t from, uint64_t to);

  // Space.
  void release_extents(const std::vector<Extent>& ex);
  void reclaim();
  uint64_t reserve() const;
  // Fails with no_space when `bytes` do not fit beside the reserve, even after a checkpoint
  // (taken here, in the caller's fiber, when the log grew since the last one), and asks the
  // background fiber for an aggregation pass under space pressure.
  Status need_space(uint64_t bytes);

  // Maintenance (checkpoint, aggregation) runs one at a time.
  void maintenance_lock();
  void maintenance_unlock();
  // Holds the maintenance lock for a scope (taking it may suspend).
  struct MaintenanceHold {
    explicit MaintenanceHold(TargetStore& s) : s_(s) { s_.maintenance_lock(); }
    ~MaintenanceHold() { s_.maintenance_unlock(); }
    MaintenanceHold(const MaintenanceHold&) = delete;
    MaintenanceHold& operator=(const MaintenanceHold&) = delete;

   private:
    TargetStore& s_;
  };
  Status checkpoint_locked();
  // Drops a version from the index: its extents are freed after the next checkpoint. Returns
  // the bytes they occupy.
  uint64_t drop_version(Version& v);
  // Erases the dkey `dit` of object `oit` once it holds no akey and no punch, then the object
  // once it holds no dkey and no punch.
  void erase_if_empty(std::map<ObjectId, Object>::iterator oit,
                      std::map<std::string, Dkey, std::less<>>::iterator dit);
  void aggregate_akey(const Object& o, const Dkey& d, AkeyVal& a,
                      const std::vector<uint64_t>& bounds, bool keep_punches, AggregateStats& st);
  void background();

  // Conditional operations wait for in-flight changes of the same keys.
  std::string busy_key(const ObjectId& oid, std::string_view dkey, std::string_view akey) const;
  bool busy(const ObjectId& oid, std::string_view dkey, std::string_view akey) const;

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
  uint64_t versions_ = 0;
  mutable uint64_t fetches_ = 0;
  double recovery_ms_ = 0;

  // Checkpoints.
  uint64_t ckpt_seq_ = 0;
  WalMark ckpt_mark_;
  std::vector<Extent> ckpt_extents_;  // chunks + directory of the current checkpoint
  uint64_t ckpt_bytes_ = 0;
  uint64_t checkpoints_ = 0;
  std::vector<Extent> pending_free_;  // dropped by aggregation, free after the next checkpoint
  uint64_t pending_bytes_ = 0;

  // Aggregation.
  uint64_t agg_epoch_ = 0;
  // The epoch of the last rollback begun here: a change stamped below it (by a leader before
  // the rollback) is refused, `stale`, so that it is retried above it instead of landing
  // beneath the rollback unseen. Not persisted: what was in flight ended with the process.
  uint64_t rollback_floor_ = 0;
  uint64_t aggregations_ = 0;
  uint64_t dtx_committed_ = 0;  // prepared transactions decided here since the open
  uint64_t dtx_aborted_ = 0;
  std::vector<uint64_t> protected_;
  std::set<uint64_t> inflight_epochs_;

  // Background fibers and maintenance exclusion.
  bool maint_busy_ = false;
  boost::fibers::condition_variable_any maint_cv_;
  bool bg_stop_ = false;
  bool bg_running_ = false;
  bool ckpt_wanted_ = false;
  bool space_wanted_ = false;  // a write found the data region full: aggregate now
  boost::fibers::condition_variable_any bg_cv_;
  boost::fibers::condition_variable_any bg_done_cv_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);

  std::unordered_map<std::string, int> busy_;
  boost::fibers::condition_variable_any busy_cv_;

  // Transactions prepared here (their keys are busy for conditional operations and block
  // reads until decided), and recent decisions (kept for kDtxRemember, at most kDtxRememberMax).
  std::map<DtxId, std::unique_ptr<Dtx>> dtx_;
  ReadStamps reads_;
  std::set<DtxId> dtx_preparing_;                  // prepares being logged
  std::unordered_map<std::string, int> dtx_keys_;  // busy_key -> prepared changes of it
  struct KindHold {
    ValueKind kind = ValueKind::single;
    uint32_t rsize = 1;
    uint32_t count = 0;
  };
  std::unordered_map<std::string, KindHold> kind_holds_;  // busy_key -> held kind
  std::map<ObjectId, int> dtx_objects_;                   // object -> prepared changes of it
  // Outcome and when it was remembered (Env time); the ids in the order remembered, to forget
  // the oldest first. A hash map: it holds up to kDtxRememberMax entries and every change and
  // every prepare looks in it.
  std::unordered_map<DtxId, std::pair<bool, Nanos>, DtxIdHash> dtx_decided_;
  std::deque<DtxId> dtx_decided_order_;
  std::vector<DtxId> dtx_unlogged_;  // commits decided, not yet handed to the log
  boost::fibers::condition_variable_any dtx_cv_;

  // Extents freed while reads that may still use them are in flight wait here, tagged with the
  // read generation current at free time, until every older read finished.
  uint64_t read_gen_ = 1;
  std::multiset<uint64_t> active_reads_;
  std::vector<std::pair<uint64_t, Extent>> deferred_free_;
};

// Changes staged for a transaction on one target: their log records (flat Cap'n Proto
// messages) and the data extents already written for them.
struct DtxStage {
  DtxStage() = default;
  DtxStage(const DtxStage&) = delete;
  DtxStage& operator=(const DtxStage&) = delete;
  ~DtxStage();  // releases the kind holds it still has (TargetStore::hold_kind)
  std::vector<std::vector<uint8_t>> records;
  std::vector<TargetStore::Extent> extents;
  bool empty() const { return records.empty(); }
  // The akeys whose kind its updates hold until they are prepared (the prepared transaction
  // holds them then) or dropped, and the store that keeps the holds.
  TargetStore* store = nullptr;
  std::vector<std::string> holds;
};

}  // namespace tessera::storage

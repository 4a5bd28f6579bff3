// Wal: the write-ahead log region of a target file — circular, with group commit.
//
// Owned by a TargetStore on its target thread. append() suspends the calling fiber until its
// record is durable: a committer fiber gathers every record queued meanwhile into one group,
// writes it at the log tail with one O_DIRECT write, syncs once, then runs each record's
// `on_durable` callback in log order (the store applies the change to its index there) and
// wakes the waiters. So the in-memory index always equals "checkpoint + every durable group".
//
// Group layout (every group starts on a 4 KiB boundary inside the region):
//   GroupHeader (32 bytes) | records: [u32 length][u32 zero][record, padded to 8] ... | zero pad
// A group is valid when its magic, incarnation and lsn (previous + 1) match and its crc32c
// (over header with crc=0, then payload) verifies. A group that does not fit before the end of
// the region is written at offset 0 instead (the end is skipped); replay, finding no valid
// successor at the current position, looks for it at 0. Replay stops at the first position where
// neither holds, so a torn last group is ignored as a whole: a record is replayed whole or not
// at all. Lsns only grow, so a stale group left from an earlier lap never passes for the next.
//
// Space: the log is needed from the oldest group a checkpoint has not yet covered (the head) to
// the tail. A checkpoint takes mark() before it starts and calls release(mark) once durable.
// When a group does not fit, the committer calls the full hook (the store starts a checkpoint)
// and waits for release(); fail_pending() ends the wait with an error instead.
#pragma once

#include <boost/fiber/condition_variable.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "core/histogram.hpp"
#include "core/buffer.hpp"
#include "core/status.hpp"
#include "core/target.hpp"
#include "storage/block_queue.hpp"

namespace tessera::storage {

struct GroupHeader {
  uint32_t magic;
  uint32_t crc;
  uint64_t incarnation;
  uint64_t lsn;
  uint32_t count;
  uint32_t payload_len;
};
static_assert(sizeof(GroupHeader) == 32);
inline constexpr uint32_t kGroupMagic = 0x4c415754;  // "TWAL"

// A position in the log: the next group's lsn, where it goes, and the running byte count.
struct WalMark {
  uint64_t lsn = 1;
  uint64_t pos = 0;
  uint64_t total = 0;  // bytes consumed since format (groups and skipped ends), never wraps
};

class Wal {
 public:
  Wal(Target& target, BlockQueue& q, uint64_t offset, uint64_t length, uint64_t incarnation);
  ~Wal();

  // Reads the log from `from` and calls apply() for every record of every valid group, in
  // order. Sets the tail after the last valid group. Call once, before start().
  Status replay(const WalMark& from, const std::function<Status(std::span<const uint8_t>)>& apply);
  // Zeroes the first block so a freshly formatted region replays as empty.
  Status format();
  // Starts the committer fiber; it stops with the target or at stop().
  void start();
  // Fails queued appends, ends the committer fiber and waits for it (target thread).
  void stop();

  // Durably appends one record (suspends the fiber); on success `on_durable` has run.
  Status append(std::span<const uint8_t> record, const std::function<void()>& on_durable);
  // Queues one record for the next group without waiting for it (nobody learns when it is
  // durable, or whether: a crash may lose it). It rides with the next append's group; without
  // appends, a group is written once kPostBatch records wait or the oldest waited kPostDelay.
  // For records whose loss recovery tolerates: the outcome of a transaction every participant
  // already holds prepared.
  void post(std::vector<uint8_t> record);
  // Records made as late as possible: the committer asks `hook` for one each time it forms a
  // group after hold() was called, and writes what it returns (if anything) in that group, as a
  // posted record. Many decisions taken while a group is written then cost one record in the
  // next: how a target logs the commits of its transactions.
  void set_group_hook(std::function<std::vector<uint8_t>()> hook) { group_hook_ = std::move(hook); }
  // The group hook has a record to give: it rides with the next group, as a posted record does.
  void hold();

  // Where the next group goes: a checkpoint that starts now covers every group before it.
  WalMark mark() const { return {lsn_ + 1, tail_, total_}; }
  // A checkpoint taken at `m` is durable: the groups before it may be overwritten.
  void release(const WalMark& m);
  // Fails every append waiting for log space (a checkpoint could not be written).
  void fail_pending(const Status& st);
  void set_full_hook(std::function<void()> hook) { full_hook_ = std::move(hook); }

  uint64_t used() const { return total_ - head_total_; }
  uint64_t capacity() const { return length_; }
  uint64_t groups() const { return lsn_; }
  uint64_t since(const WalMark& m) const { return total_ - m.total; }
  // What the committer wrote since start() (not replay): groups, records, bytes, the times a
  // group waited for log space, and each group's write + sync time.
  struct Activity {
    uint64_t groups = 0, records = 0, bytes = 0, full_waits = 0;
    Histogram commit;
  };
  const Activity& activity() const { return activity_; }

 private:
  struct Waiter {
    std::span<const uint8_t> record;
    const std::function<void()>* on_durable = nullptr;
    std::vector<uint8_t> owned;  // post(): the record's bytes; the committer deletes the waiter
    bool posted = false;
    Status result;
    bool done = false;
    boost::fibers::condition_variable_any cv;
  };
  // A waiter that owns `record` and that nobody waits for (post(), the group hook's record).
  static Waiter* posted_waiter(std::vector<uint8_t> record);
  void committer();
  // Hands a waiter its result: wakes its fiber, or deletes it when it was posted.
  static void finish(Waiter* w, const Status& st);
  Status write_group(std::vector<Waiter*>& batch);

  Target& target_;
  BlockQueue& q_;
  uint64_t offset_;
  uint64_t length_;
  uint64_t incarnation_;
  uint64_t tail_ = 0;        // where the next group goes, from the region start
  uint64_t lsn_ = 0;         // lsn of the last durable group
  uint64_t total_ = 0;       // running count of bytes consumed
  uint64_t head_total_ = 0;  // `total` at the oldest group still needed
  std::deque<Waiter*> pending_;
  // Posted records among `pending_`, and when the oldest of them was posted.
  size_t posted_ = 0;
  Nanos first_posted_{0};  // Env time
  static constexpr size_t kPostBatch = 256;
  static constexpr std::chrono::milliseconds kPostDelay{200};
  boost::fibers::condition_variable_any wake_;
  boost::fibers::condition_variable_any space_cv_;
  uint64_t space_epoch_ = 0;  // bumped by release() and fail_pending()
  Status space_error_;
  bool stopping_ = false;
  bool running_ = false;
  bool committer_done_ = false;
  boost::fibers::condition_variable_any done_cv_;
  std::function<void()> full_hook_;
  std::function<std::vector<uint8_t>()> group_hook_;
  bool held_ = false;  // hold() was called since the committer last asked group_hook_
  Activity activity_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // lets the stop hook outlive us
  Buffer staging_;
};

}  // namespace tessera::storage

// Wal: the write-ahead log region of a target file, with group commit.
//
// Owned by a TargetStore on its target thread. append() suspends the calling fiber until its
// record is durable: a committer fiber gathers every record queued meanwhile into one group,
// writes it at the log tail with one O_DIRECT write, syncs once, and wakes all of them.
//
// Group layout (every group starts on a 4 KiB boundary inside the region):
//   GroupHeader (32 bytes) | records: [u32 length][u32 zero][record, padded to 8] ... | zero pad
// A group is valid when its magic, incarnation and lsn (previous + 1) match and its crc32c
// (over header with crc=0, then payload) verifies. Replay stops at the first invalid group, so a
// torn last group is ignored as a whole: a record is either fully replayed or absent.
#pragma once

#include <boost/fiber/condition_variable.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <vector>

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

class Wal {
 public:
  Wal(Target& target, BlockQueue& q, uint64_t offset, uint64_t length, uint64_t incarnation);
  ~Wal();

  // Reads the log from its start and calls apply() for every record of every valid group, in
  // order. Sets the tail after the last valid group. Call once, before start().
  Status replay(const std::function<Status(std::span<const uint8_t>)>& apply);
  // Zeroes the first block so a freshly formatted region replays as empty.
  Status format();
  // Starts the committer fiber; it stops with the target or at stop().
  void start();
  // Fails queued appends, ends the committer fiber and waits for it (target thread).
  void stop();

  // Durably appends one record (suspends the fiber). Errors: no_space when the log is full.
  Status append(std::span<const uint8_t> record);

  uint64_t used() const { return tail_; }
  uint64_t capacity() const { return length_; }
  uint64_t groups() const { return lsn_; }

 private:
  struct Waiter {
    std::span<const uint8_t> record;
    Status result;
    bool done = false;
    boost::fibers::condition_variable_any cv;
  };
  void committer();
  Status write_group(std::vector<Waiter*>& batch);

  Target& target_;
  BlockQueue& q_;
  uint64_t offset_;
  uint64_t length_;
  uint64_t incarnation_;
  uint64_t tail_ = 0;  // bytes used from the region start
  uint64_t lsn_ = 0;   // lsn of the last durable group
  std::deque<Waiter*> pending_;
  boost::fibers::condition_variable_any wake_;
  bool stopping_ = false;
  bool running_ = false;
  bool committer_done_ = false;
  boost::fibers::condition_variable_any done_cv_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // lets the stop hook outlive us
  Buffer staging_;
};

}  // namespace tessera::storage

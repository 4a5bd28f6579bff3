// OutcomeMarks: how a mount learns whether a transaction whose commit went unanswered committed.
//
// A change that may not be applied twice (an append, link, unlink, rmdir, rename) writes, in its
// own transaction, a mark: its sequence number in a slot of this mount's marks object. When the
// commit's answer is lost (`uncertain`: the coordinator died after it may have committed), a new
// transaction at a later epoch reads the slot. The read either meets the change prepared and
// waits for its outcome, sees it committed, or leaves a read stamp above the change's epoch that
// refuses the change's prepare from then on: "absent" then means "never commits", and the change
// is run again as a new transaction. docs/POSIX.md, "What is atomic".
//
// Layout (fs/layout.hpp): object (marks, mount id) of the metadata class, dkey "/o", akey the
// slot (index_key: 8 bytes, big-endian), value the sequence number (encode_u64: 8 bytes,
// little-endian). A slot is held
// by one operation at a time; the mount's object is punched when the mount ends.
//
// Thread: the application's threads that call the namespace (never a target); slots are taken
// under a mutex.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <vector>

#include "client/container.hpp"
#include "client/transaction.hpp"

namespace tessera::fs {

class OutcomeMarks {
 public:
  OutcomeMarks(Container& c, uint16_t meta_class);
  // Punches the marks object if a mark was ever written (best effort).
  ~OutcomeMarks();
  OutcomeMarks(const OutcomeMarks&) = delete;
  OutcomeMarks& operator=(const OutcomeMarks&) = delete;

  // A slot held by one operation, for the attempts of its change.
  class Held {
   public:
    explicit Held(OutcomeMarks& m);
    ~Held();  // the slot is free again
    Held(const Held&) = delete;
    Held& operator=(const Held&) = delete;

    // A new sequence number: the next attempt's mark.
    void next();
    // Writes the current mark in `tx`.
    Status write(Transaction& tx) const;
    // Whether the transaction at `epoch` that wrote the current mark committed: read in a new
    // transaction at a later epoch, again (paced) while the read fails, until `until`.
    Result<bool> committed(uint64_t epoch, std::chrono::steady_clock::time_point until) const;

   private:
    OutcomeMarks& m_;
    uint32_t slot_;
    uint64_t seq_ = 0;
  };

 private:
  Container& c_;
  ObjectId oid_;
  std::mutex mu_;
  std::vector<uint32_t> free_;  // slots given back
  uint32_t slots_ = 0;          // slots ever handed out
  std::atomic<uint64_t> seq_{0};
  std::atomic<bool> written_{false};
};

}  // namespace tessera::fs

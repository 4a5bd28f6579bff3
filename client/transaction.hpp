// Transaction: a user transaction on an open container (docs/TRANSACTIONS.md, "User
// transactions").
//
// Reads happen at the transaction's epoch E and see what was committed at or below E, plus the
// transaction's own changes; the changes stay in the Transaction until commit(), which applies
// all of them at E on every target that holds them, or none. Serializable: commit fails with
// `restart` (Errc::restart) when another transaction read a key this one changes at a later
// epoch, or changed a key this one changes after E; the reads this one made stay valid because
// a later change under them is refused the same way. Run the transaction again from the start
// (Container::run_tx does). A transaction opened at a snapshot epoch is read-only and never
// conflicts.
//
// Objects of every class: a change of an erasure-coded akey is cut into its positions' pieces
// at commit (cells, parity, copies) and they commit with the rest; erasure-coded changes take
// no conditions and no range punches, as outside transactions. Within one transaction each key
// changes once: a single value's last update or punch wins, an array's updates and range
// punches must not overlap, and a dkey or object punched is not changed otherwise. At most
// 4096 changes and 64 MiB of data, an erasure-coded change counting as its pieces and their
// bytes.
//
// One thread at a time; the Transaction must not outlive its Container. Destroying it without
// commit() drops its changes (nothing was sent).
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "client/client.hpp"

namespace tessera {

class Container;

class Transaction {
 public:
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  uint64_t epoch() const;
  bool read_only() const;
  // Changes waiting for commit().
  size_t pending() const;

  Result<FetchResult> fetch(ObjectId oid, std::string dkey, std::string akey, ValueKind kind,
                            uint64_t offset = 0, uint64_t length = 0, FetchFlags flags = {});
  // As fetch(), started at once and ready when done. Until it is, the Transaction is not
  // called again and not destroyed.
  Client::Future<FetchResult> fetch_async(ObjectId oid, std::string dkey, std::string akey,
                                          ValueKind kind, uint64_t offset = 0, uint64_t length = 0,
                                          FetchFlags flags = {});
  // dkeys of `oid`, akeys of `dkey`, or recx of (dkey, akey), with this transaction's changes.
  Result<std::vector<KeyEntry>> list_all(ListScope scope, ObjectId oid, std::string dkey = {},
                                         std::string akey = {});

  // Conditions (flags.cond) are decided at commit: one that fails fails the commit (`exists`
  // or `not_found`), and nothing of the transaction applies.
  Status update(ObjectId oid, std::string dkey, std::string akey, ValueKind kind, uint64_t offset,
                std::span<const uint8_t> data, UpdateFlags flags = {});
  // Empty dkey: the whole object; empty akey: the whole dkey.
  Status punch(ObjectId oid, std::string dkey = {}, std::string akey = {});
  Status punch_range(ObjectId oid, std::string dkey, std::string akey, uint64_t offset,
                     uint64_t length, uint32_t rsize = 1);

  // Applies every change at the transaction's epoch, all or nothing, and returns the epoch.
  // Once: the transaction is finished afterwards, whatever the outcome.
  Result<uint64_t> commit();
  // As commit(), started at once; the same rule as fetch_async until it is ready.
  Client::Future<uint64_t> commit_async();
  // Drops the changes; the transaction is finished.
  void abort();

  struct State;

 private:
  friend class Container;
  Transaction() = default;
  std::unique_ptr<State> s_;
};

}  // namespace tessera

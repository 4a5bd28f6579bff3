// Container: an open container of a system pool, and the object API over it.
//
// Every call computes the object's layout from the cached pool map (no metadata RPC): updates
// and punches go to the leader of the dkey's redundancy group, which replicates them; fetches
// and listings go to any healthy replica, trying the next one if it fails. A reply saying the
// map is stale, or a target that does not answer, makes the container fetch the current map
// from the management service and retry, until the client's timeout.
//
// Thread-safe like the Client (the work runs on the client target). Destroying the Container
// closes its handle.
#pragma once

#include "mgmt/types.hpp"
#include "client/client.hpp"
#include "client/mgmt_client.hpp"
#include "client/transaction.hpp"

namespace tessera {

class Container {
 public:
  ~Container();
  Container(const Container&) = delete;
  Container& operator=(const Container&) = delete;

  template <typename T>
  using Future = Client::Future<T>;

  Future<uint64_t> update_async(ObjectId oid, std::string dkey, std::string akey, ValueKind kind,
                                uint64_t offset, Buffer data, UpdateFlags flags = {});
  Future<FetchResult> fetch_async(ObjectId oid, std::string dkey, std::string akey, ValueKind kind,
                                  uint64_t offset = 0, uint64_t length = 0, uint64_t epoch = 0,
                                  FetchFlags flags = {});
  // Empty dkey: the whole object (every group); empty akey: the whole dkey.
  Future<uint64_t> punch_async(ObjectId oid, std::string dkey = {}, std::string akey = {});
  // Records [offset, offset + length) of the array (dkey, akey).
  Future<uint64_t> punch_range_async(ObjectId oid, std::string dkey, std::string akey,
                                     uint64_t offset, uint64_t length, uint32_t rsize = 1);

  Result<uint64_t> update(ObjectId oid, std::string dkey, std::string akey, ValueKind kind,
                          uint64_t offset, std::span<const uint8_t> data, UpdateFlags flags = {}) {
    return update_async(oid, std::move(dkey), std::move(akey), kind, offset,
                        Buffer(data.data(), data.size()), flags)
        .get();
  }
  Result<FetchResult> fetch(ObjectId oid, std::string dkey, std::string akey, ValueKind kind,
                            uint64_t offset = 0, uint64_t length = 0, uint64_t epoch = 0,
                            FetchFlags flags = {}) {
    return fetch_async(oid, std::move(dkey), std::move(akey), kind, offset, length, epoch, flags)
        .get();
  }
  Result<uint64_t> punch(ObjectId oid, std::string dkey = {}, std::string akey = {}) {
    return punch_async(oid, std::move(dkey), std::move(akey)).get();
  }
  // objects: every object of the container; dkeys: of `oid` (all groups); akeys: of `dkey`;
  // recx: written runs of (dkey, akey). Sorted, without duplicates.
  Result<std::vector<KeyEntry>> list_all(ListScope scope, ObjectId oid = {}, std::string dkey = {},
                                         std::string akey = {}, uint64_t epoch = 0);

  // One page of list_all's listing: the entries after `anchor` (empty: from the first), at most
  // `limit` (> 0). Pass the page's anchor back for the next page; `done` once none follow.
  struct KeyPage {
    std::vector<KeyEntry> entries;
    std::string anchor;
    bool done = true;
  };
  Future<KeyPage> list_page_async(ListScope scope, ObjectId oid, std::string dkey,
                                  std::string akey, uint64_t epoch, std::string anchor,
                                  uint32_t limit);
  Result<KeyPage> list_page(ListScope scope, ObjectId oid, std::string dkey, std::string akey,
                            uint64_t epoch, std::string anchor, uint32_t limit) {
    return list_page_async(scope, oid, std::move(dkey), std::move(akey), epoch,
                           std::move(anchor), limit)
        .get();
  }
  // The anchor of the page that starts after entry `e` of a listing of `scope`: its key; for
  // objects its OID, and for records its offset, as bytes in the engines' own order (what they
  // take as an anchor).
  static std::string anchor_after(ListScope scope, const KeyEntry& e);

  // An OID of `oclass` (empty: the container's default class) from the application's 96 bits.
  Result<ObjectId> make_oid(uint32_t hi, uint64_t lo, const std::string& oclass = {}) const;

  // Key-value containers: one object (OID 0 of the default class) whose dkeys are the keys.
  Result<uint64_t> kv_put(const std::string& key, std::span<const uint8_t> value);
  Result<FetchResult> kv_get(const std::string& key);
  Result<std::vector<std::string>> kv_list();
  Result<uint64_t> kv_del(const std::string& key);

  // A user transaction (client/transaction.hpp): reads at one epoch, changes applied all
  // or nothing at commit. `snapshot` != 0: read-only, at that epoch (a snapshot's).
  Result<std::unique_ptr<Transaction>> tx_open(uint64_t snapshot = 0);
  // Runs `body` in a new transaction and commits it; a `restart` (from `body` or the commit)
  // runs it again in a fresh transaction, after a short random pause, at most `attempts`
  // times. Returns the commit's epoch, or the first other failure.
  Result<uint64_t> run_tx(const std::function<Status(Transaction&)>& body, int attempts = 64);

  // The handle as opened (permissions, container properties, pool map at open time).
  const mgmt::HandleView& handle() const { return opened_; }
  // The client the container was opened through (pool-wide queries: pool_space).
  Client& client() const { return *client_; }
  // The pool map version the container uses now.
  uint32_t map_version() const;
  Status close();

  struct State;

 private:
  friend class Client;
  Container() = default;
  Client* client_ = nullptr;
  mgmt::HandleView opened_;
  std::unique_ptr<MgmtClient> mgmt_;
  std::shared_ptr<State> st_;
  bool closed_ = false;
};

}  // namespace tessera

// Container internals shared by container.cpp and container_ec.cpp.
#pragma once

#include <fmt/format.h>

#include <boost/fiber/future.hpp>
#include <chrono>
#include <functional>
#include <map>

#include "client/client_impl.hpp"
#include "client/container.hpp"
#include "placement/cache.hpp"
#include "placement/erasure.hpp"
#include "placement/layout.hpp"
#include "proto/capnp_util.hpp"

namespace tessera {

struct Container::State {
  Client::Impl* im = nullptr;
  std::shared_ptr<const mgmt::PoolView> view;  // client target only
  std::atomic<uint32_t> version{0};
  uint32_t pool = 0;
  std::string pool_uuid;
  uint32_t cont = 0;
  uint64_t cookie = 0;
  uint16_t oclass = 0;
  std::string mgmt_addr;
  mgmt::Cred cred;
  std::chrono::milliseconds timeout{30000};
  uint64_t rotation = 0;
  uint64_t cell = 128 * 1024;  // EC cell size (container property)
  bool suspect = false;        // a target failed to answer: fetch the map before the next request
  // Leader attempts waiting for their answer (by attempt number: when each started), and
  // whether the one timer that watches them is armed (client target only; contimpl::op).
  std::map<uint64_t, std::chrono::steady_clock::time_point> waiting;
  uint64_t next_wait = 0;
  bool watch_armed = false;
  std::chrono::steady_clock::time_point watch_fetched;  // the watch's last map fetch
  // Where refresh() gets the pool's current view (client target fiber; it may suspend). Unset:
  // the management service at mgmt_addr, asked from a helper thread. The rebuild simulation sets
  // it to the view its state machine publishes.
  std::function<Result<mgmt::PoolView>()> map_source;
  // The placements computed in `view` (client target only; placement/cache.hpp).
  mutable placement::PlacementCache placements;
};

namespace contimpl {
using StatePtr = std::shared_ptr<Container::State>;

// Fetches the current pool map (client target fiber).
Status refresh(const StatePtr& st);
// The placement of `oid` in st.view, from the container's placements (client target only).
inline Result<std::shared_ptr<const placement::Placement>> placement_of(const Container::State& st,
                                                                        ObjectId oid) {
  return st.placements.place(oid, st.view, st.view->pool.map);
}
IoCtxValues ctx_of(const Container::State& st);

// Where a read happens: its epoch, and the transaction whose read it is (0: none), which every
// target read stamps (storage/read_stamps.hpp).
struct ReadAt {
  ReadAt(uint64_t e = 0, uint64_t o = 0) : epoch(e), owner(o) {}  // NOLINT: an epoch is one
  uint64_t epoch;
  uint64_t owner;
};
// The context of a read request: ctx_of, with the reading transaction's id.
IoCtxValues read_ctx(const Container::State& st, ReadAt at);
// Failures that a new pool map or another replica can cure.
bool retryable(Errc e);
// One request to one shard; a non-ok reply becomes its Status. `unanswered`: the request left
// but no answer came (lost, timed out, or failed when the pool map took the target down): the
// engine may have acted on it. False for an engine's answer and for a request that never left.
Result<Message> send(Container::State& st, const placement::Shard& s, uint16_t method, Buffer body,
                     Buffer bulk, Nanos timeout, bool* unanswered = nullptr);

enum class Pick { leader, replica };
// Runs one request against the group of (oid, dkey): the leader (writes) or any healthy
// replica (reads), refreshing the map and retrying while the failure is one a new map cures.
// `position` >= 0 narrows the group to that one position (the holder of an erasure-coded piece:
// a transaction's coordinator must hold a part of it).
Result<Message> op(const StatePtr& sp, ObjectId oid, const std::string& dkey, Pick pick,
                   uint16_t method, const std::function<Buffer()>& body, const Buffer& bulk,
                   int position = -1);

template <typename T>
Client::Future<T> submit(const StatePtr& st, std::function<Result<T>()> fn) {
  auto p = std::make_shared<Promise<T>>();
  auto f = p->get_future();
  st->im->target->post([p, fn = std::move(fn)] { p->set_value(fn()); });
  return f;
}

// A future that is ready already with `v` (a call that answers without asking anyone).
template <typename T>
Client::Future<T> ready_future(Result<T> v) {
  Promise<T> p;
  p.set_value(std::move(v));
  return p.get_future();
}

// Decodes a reply inside its own DecodeScope (which must never span a fiber switch).
template <typename T>
Result<T> decoded(Message& m, Result<T> (*decode)(Message&)) {
  try {
    capn::DecodeScope ds;
    auto r = decode(m);
    if (ds.failed()) return Status(Errc::protocol, "malformed reply: " + ds.what());
    return r;
  } catch (const kj::Exception& e) {
    return Status(Errc::protocol, fmt::format("malformed reply: {}", e.getDescription().cStr()));
  }
}

// One page of a listing (Container::list_page): the entries after `after` (a page anchor:
// Container::anchor_after()), at most `limit` of them; limit 0: every entry.
struct PageSpec {
  std::string after;
  uint32_t limit = 0;
};
// Every key of a scope (Container::list_all), or one page of them; `tx_read`: a transaction's
// read, stamped. With a page, *more says whether entries follow it; the engines are asked for one
// page each from the anchor on (replicated objects; erasure-coded ones and records are listed whole
// and cut: cut_page).
Result<std::vector<KeyEntry>> list_keys(const StatePtr& st, ListScope scope, ObjectId oid,
                                        const std::string& dkey, const std::string& akey,
                                        uint64_t epoch, uint64_t tx_read, const PageSpec& page = {},
                                        bool* more = nullptr);
// Keeps the entries of a sorted listing that come after page.after, at most page.limit of them;
// *more: entries were left off.
void cut_page(ListScope scope, const PageSpec& page, std::vector<KeyEntry>& all, bool* more);

// Punches an object as one transaction over every group (transaction.cpp).
Result<uint64_t> punch_object(const StatePtr& st, ObjectId oid);

// Erasure-coded objects (container_ec.cpp: reads; container_ec_write.cpp: writes).

// `invalid_argument` for an akey erasure coding reserves (cells, copies, checksum records).
Status ec_check_akey(const std::string& akey);
// The stripe geometry of `dkey`'s group in a container of class `cls`.
placement::EcGeometry ec_geometry_of(const Container::State& st, const placement::ObjectClass& cls,
                                     const std::string& dkey);

// Whether erasure coding takes an access of `akey` (a change with `cond`, a read or change of
// an array of record size `rsize`, a punch of a range): none of these, nor the akeys reserved
// for cells and copies. `unsupported` or `invalid_argument`, saying which.
Status ec_supported(const placement::ObjectClass& cls, const std::string& akey, ValueKind kind,
                    uint32_t rsize, Cond cond, bool range_punch);

// One position's part of a change of an erasure-coded akey: what `pos` stores under `akey`
// (the user's akey, or one of the internal cell, copy and checksum akeys). Its bytes, if it is
// no punch, lie at `bulk_offset` of the change's bulk.
struct EcPiece {
  uint32_t pos = 0;
  std::string akey;
  ValueKind kind = ValueKind::array;
  bool punch = false;
  uint64_t offset = 0;
  uint64_t length = 0;  // bytes; a punch: 0 is the whole akey
  uint64_t bulk_offset = 0;
  uint32_t crc = 0;
};
struct EcPieces {
  std::vector<EcPiece> pieces;
  Buffer bulk;
};
// The pieces of an update of (dkey, akey): cells, parity and checksums of the full stripes it
// covers, copies of its partial stripes; a single value whole on p + 1 positions.
Result<EcPieces> ec_update_pieces(const Container::State& st, const placement::ObjectClass& cls,
                                  const std::string& dkey, const std::string& akey, ValueKind kind,
                                  uint64_t offset, const Buffer& data, UpdateFlags flags);
// The body of a kObjEcUpdate sending `pieces` to the group's leader, which forwards each to its
// position.
Buffer ec_body(ObjectId oid, const std::string& dkey, const std::vector<EcPiece>& pieces,
               const IoCtxValues& ctx);
// The pieces of a punch of the whole akey: itself, its cells, copies and checksums everywhere.
Result<EcPieces> ec_punch_pieces(const Container::State& st, const placement::ObjectClass& cls,
                                 const std::string& dkey, const std::string& akey);

Result<uint64_t> ec_update(const StatePtr& st, const placement::ObjectClass& cls, ObjectId oid,
                           const std::string& dkey, const std::string& akey, ValueKind kind,
                           uint64_t offset, const Buffer& data, UpdateFlags flags);
Result<FetchResult> ec_fetch(const StatePtr& st, const placement::ObjectClass& cls, ObjectId oid,
                             const std::string& dkey, const std::string& akey, ValueKind kind,
                             uint64_t offset, uint64_t length, ReadAt at, FetchFlags flags);
// Punches an akey (both its cells and its partial-stripe copies) at every position.
Result<uint64_t> ec_punch_akey(const StatePtr& st, const placement::ObjectClass& cls, ObjectId oid,
                               const std::string& dkey, const std::string& akey);
// dkeys, akeys or recx of an erasure-coded object.
Result<std::vector<KeyEntry>> ec_list(const StatePtr& st, const placement::ObjectClass& cls,
                                      ListScope scope, ObjectId oid, const std::string& dkey,
                                      const std::string& akey, ReadAt at);
// The class of `oid` when it is erasure-coded, else null.
const placement::ObjectClass* ec_class(ObjectId oid);
// One fetch of at most what one reply carries (client target fiber): through ec_fetch for an
// erasure-coded class (`ec`, from ec_class), else from any healthy replica of the dkey's group.
Result<FetchResult> fetch_once(const StatePtr& st, const placement::ObjectClass* ec, ObjectId oid,
                               const std::string& dkey, const std::string& akey, ValueKind kind,
                               uint64_t offset, uint64_t length, uint64_t epoch, FetchFlags flags);

}  // namespace contimpl
}  // namespace tessera

// The client's private parts, shared by client.cpp and container.cpp.
#pragma once

#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "client/client.hpp"
#include "core/actor.hpp"
#include "core/target.hpp"
#include "net/fabric.hpp"
#include "proto/object.capnp.h"

namespace tessera {

// Keeps a client's open container handles alive: one thread renews every handle's lease with
// the management service, every quarter of the shortest lease (a tool thread: it blocks on the
// control connection, never on a target thread).
class LeaseKeeper {
 public:
  explicit LeaseKeeper(std::string mgmt) : mgmt_(std::move(mgmt)) {}
  ~LeaseKeeper();
  void add(uint64_t cookie, uint32_t lease_ms);
  void remove(uint64_t cookie);

 private:
  void run();
  std::string mgmt_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, uint32_t> leases_;  // cookie -> lease (ms)
  bool stop_ = false;
  std::thread th_;
};

struct Client::Impl {
  ClientOptions opts;
  std::unique_ptr<Target> target;
  std::unique_ptr<ActorRuntime> rt;
  std::unique_ptr<net::FabricEndpoint> ep;
  std::unique_ptr<LeaseKeeper> leases;  // system mode, from the first container opened
  ~Impl() {
    leases.reset();
    if (target) target->stop();
    ep.reset();
    rt.reset();
  }
};

// Reply decoders shared by the single-engine calls and containers (inside a DecodeScope).
using ListPage = std::pair<std::vector<KeyEntry>, std::string>;
Result<uint64_t> decode_epoch(Message& m);
Result<FetchResult> decode_fetch(Message& m);
Result<ListPage> decode_list(Message& m);
// A TxBeginRep: (epoch, reader id).
Result<std::pair<uint64_t, uint64_t>> decode_tx_begin(Message& m);

// Request bodies shared by the single-engine calls (ctx all zero: pool 0) and containers.
struct IoCtxValues {
  uint32_t pool = 0;
  uint32_t map_version = 0;
  uint64_t handle = 0;
  uint32_t cont = 0;
  uint64_t tx_read = 0;  // a user transaction's read: its reader id (IoCtx.txRead)
};
void set_ctx(schema::IoCtx::Builder b, const IoCtxValues& c);
Buffer update_body(ObjectId oid, std::string_view dkey, std::string_view akey, ValueKind kind,
                   uint64_t offset, uint32_t crc, UpdateFlags flags, const IoCtxValues& ctx = {});
Buffer fetch_body(ObjectId oid, std::string_view dkey, std::string_view akey, ValueKind kind,
                  uint64_t offset, uint64_t length, uint64_t epoch, FetchFlags flags,
                  const IoCtxValues& ctx = {});
Buffer punch_body(ObjectId oid, std::string_view dkey, std::string_view akey, uint64_t offset,
                  uint64_t length, uint32_t rsize, const IoCtxValues& ctx = {});
Buffer list_body(ListScope scope, ObjectId oid, std::string_view dkey, std::string_view akey,
                 std::string_view anchor, uint32_t limit, uint64_t epoch,
                 const IoCtxValues& ctx = {});

// Runs `fn` on the client target and waits (application threads only).
template <typename F>
void run_on_client(Client::Impl& im, F fn) {
  std::promise<void> p;
  auto f = p.get_future();
  im.target->post([&] {
    fn();
    p.set_value();
  });
  f.wait();
}

}  // namespace tessera

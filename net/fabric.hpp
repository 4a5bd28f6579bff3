// FabricEndpoint: one libfabric RDM endpoint owned by one target.
//
// Lifecycle: open() on the owning target's thread, register it with Target::add_poller and
// ActorRuntime::set_transport, destroy it on the same thread after the target stopped using it.
// It owns its fabric, domain, CQ, AV and the posted receive buffers; nothing is shared.
//
// Messages whose frame fits in max_frame bytes travel as one fi_send (header + bulk as a
// two-entry iovec, no copy); larger bulks are cut into chunks that the receiver reassembles
// before delivering one Message (see net/frame.hpp). Malformed frames are logged and dropped.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "core/actor.hpp"
#include "core/poller.hpp"
#include "net/frame.hpp"
#include "security/system_key.hpp"

namespace tessera::net {

struct FabricOptions {
  std::string provider = "tcp;ofi_rxm";  // or "shm"
  std::string node = "127.0.0.1";        // local address to bind (tcp); unused by shm
  size_t max_frame = (1u << 20) + 16 * 1024;
  size_t recv_slots = 16;
  // Entries of the provider's receive queue, rxm only (0: its default, 2,048). rxm
  // loses one for each receive it fails (a large message from a peer that died), and the
  // endpoint stops hearing once all are lost (FabricStats::deaf); about 0.45 KiB of memory each.
  size_t rx_queue = 0;
  uint64_t max_message = 256ull << 20;  // largest bulk accepted for one message
  // A send the provider keeps refusing (queue full, peer gone: rxm reconnecting to a dead
  // engine) for this long fails with `unreachable` instead of retrying forever.
  std::chrono::milliseconds send_stall{3000};
  // Engines and administrators: every message sent carries a MAC under this key, and received
  // messages are checked against it (Message::origin).
  std::shared_ptr<const security::SystemKey> key;
  // Insecure mode only: a message without a MAC counts as an engine's (Origin::engine).
  bool trust_unauthenticated = false;
};

struct FabricStats {
  uint64_t frames_in = 0;
  uint64_t frames_out = 0;
  uint64_t messages_in = 0;
  uint64_t dropped = 0;         // frames not delivered: malformed, failed, or of lost messages
  uint64_t malformed = 0;       // of them, frames that did not decode
  uint64_t receive_errors = 0;  // receives the provider completed with an error
  uint64_t stale_completions = 0;  // completions of receive buffers already retired
  uint64_t foreign_errors = 0;     // error completions naming no operation of this endpoint
  uint64_t failed_posts = 0;       // receive-queue entries the provider lost (fabric.cpp)
  uint64_t receive_entries = 0;    // entries of the provider's receive queue
  bool deaf = false;               // no receive could be posted: the endpoint hears nothing
  uint64_t send_retries = 0;
};

// Runs libfabric's one-time set-up (every built-in provider's initialization) for `provider`
// now, opening nothing: a process that forks children to talk to the fabric pays it once.
void warm_providers(const std::string& provider = "tcp;ofi_rxm");

class FabricEndpoint final : public Poller, public Transport {
 public:
  using DeliverFn = std::function<void(Message&&)>;

  static Result<std::unique_ptr<FabricEndpoint>> open(const FabricOptions& opts, DeliverFn deliver);
  ~FabricEndpoint() override;

  // Transport
  Status send(const std::string& peer, Message&& m) override;
  const std::string& address() const override { return addr_; }

  // Poller
  size_t poll() override;
  int wait_fd() override { return wait_fd_; }
  bool prepare_to_sleep() override;

  // Sends `bytes` to `peer` as one raw frame, unchecked: the fault hook that tests use to
  // inject garbage into a live engine.
  Status send_raw(const std::string& peer, Buffer bytes);

  const FabricStats& stats() const { return stats_; }
  const std::string& provider() const { return provider_; }
  // Human-readable form of a raw fabric address ("fi_sockaddr_in://127.0.0.1:4711").
  std::string printable(const std::string& raw) const;

  struct Impl;

 private:
  explicit FabricEndpoint(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::string addr_;
  std::string provider_;
  int wait_fd_ = -1;
  FabricStats stats_;
};

}  // namespace tessera::net

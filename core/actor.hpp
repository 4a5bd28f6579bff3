// Actors: addressed by (rank, target, actor id), reached only by messages.
//
// An ActorRuntime exists once per target and lives on that target's thread: it owns the
// mailboxes of the actors registered on the target, the table of outstanding asks and the
// route to other targets (in-process through their inboxes, remote through the target's
// fabric Transport). Nothing in it is locked: every call happens on the owning thread,
// except ActorRuntime::post_deliver, which goes through the target's lock-free inbox.
#pragma once

#include <boost/fiber/all.hpp>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/buffer.hpp"
#include "core/status.hpp"
#include "core/target.hpp"

namespace tessera {

struct ActorAddr {
  uint32_t rank = 0;
  uint16_t target = 0;
  uint16_t actor = 0;
  bool operator==(const ActorAddr&) const = default;
};

// Ranks at and above this value belong to clients, not engines.
inline constexpr uint32_t kClientRankBase = 0x8000'0000u;

enum MsgFlags : uint16_t {
  kMsgReply = 1,  // a reply to the ask whose corr it carries
};

// One message. `body` holds a Cap'n Proto flat-array message of the protocol's schema;
// `bulk` holds raw payload bytes that travel beside it (never copied into the schema).
// Who sent a message, as the receiving transport established it (never from what it claims).
enum class Origin : uint8_t {
  local,   // in-process: a mailbox of this process
  engine,  // carried a valid system-key MAC: an engine or an administrator of this system
  peer,    // no MAC: a client, known only by what its credential or container handle proves
  forged,  // carried a MAC that does not verify (another system's key, or tampering)
};

struct Message {
  ActorAddr src;
  ActorAddr dst;
  uint64_t corr = 0;
  uint16_t protocol = 0;
  uint16_t method = 0;
  uint16_t flags = 0;
  Errc status = Errc::ok;
  std::string error;     // text for a failed reply
  std::string reply_to;  // sender's fabric address; empty when sent in-process
  std::string cred;      // a user's signed credential (security/credential.hpp), or empty
  Buffer body;
  Buffer bulk;
  Origin origin = Origin::local;  // set by the transport that received it

  bool is_reply() const { return (flags & kMsgReply) != 0; }
  // Sent by this process, an engine or an administrator: may use engine-internal methods.
  bool trusted() const { return origin == Origin::local || origin == Origin::engine; }
};

// The reply to `req`: addressed back to its sender, carrying its corr, protocol and method.
Message make_reply(const Message& req, const Status& st, Buffer body = {}, Buffer bulk = {});

// A fabric (or simulated) link owned by one target. Called on that target's thread only.
class Transport {
 public:
  virtual ~Transport() = default;
  // Queues `m` for `peer`; may suspend the calling fiber while the fabric is congested.
  virtual Status send(const std::string& peer, Message&& m) = 0;
  virtual const std::string& address() const = 0;
};

class Actor {
 public:
  virtual ~Actor() = default;
  // Runs on the owning target's thread, inside a fiber that may suspend (I/O, ask).
  virtual void receive(Message& m) = 0;
  // true: each message gets its own fiber so requests overlap; false: strictly one at a time.
  virtual bool concurrent() const { return true; }
};

class ActorRuntime {
 public:
  // Construct before the target starts; the runtime must outlive the target's thread.
  ActorRuntime(Target& target, uint32_t rank);
  ~ActorRuntime();
  ActorRuntime(const ActorRuntime&) = delete;
  ActorRuntime& operator=(const ActorRuntime&) = delete;

  // Setup, before traffic (any thread while the target is idle, or the target thread).
  // `peers` lists the runtimes of all targets of this process, indexed by target.
  void set_local_peers(std::shared_ptr<const std::vector<ActorRuntime*>> peers) {
    peers_ = std::move(peers);
  }
  void set_transport(Transport* t) { transport_ = t; }
  void set_route(uint32_t rank, uint16_t target, std::string fabric_addr);
  // Engines: a reply counts only if it is trusted (an engine's, MAC verified); any other reply
  // to an ask is dropped and counted, so a client cannot answer for an engine.
  void require_trusted_replies(bool on) { trusted_replies_ = on; }
  // Admission control: requests from clients (Origin::peer, forged) queued or running on one
  // actor are bounded in number and in bytes (body + bulk); beyond either, a request is
  // answered `busy` at once (the client backs off and retries) and nothing is kept of it.
  void set_admission(uint32_t max_requests, uint64_t max_bytes) {
    max_requests_ = max_requests;
    max_bytes_ = max_bytes;
  }

  // --- target thread only ---
  void register_actor(uint16_t id, Actor* actor);
  // One-way send; src is filled from `from`.
  Status tell(Message m, uint16_t from_actor = 0);
  // Request/response: suspends the calling fiber until the reply or the timeout.
  // `sent` (when given): whether the request left (a failure before it did: it was never
  // delivered; after: it may have been, and acted on).
  Result<Message> ask(Message m, Nanos timeout, uint16_t from_actor = 0, bool* sent = nullptr);
  // Completes every outstanding ask addressed to a target of `rank` (`target` < 0: any) with
  // `st`: that target left the pool map, so its reply will not come or no longer matters, and
  // the asker retries against the new layout at once instead of waiting out its timeout.
  // Returns how many asks it completed.
  size_t fail_asks_to(uint32_t rank, int32_t target, const Status& st);
  // Answers `req` (the request's corr, addressed back to its sender).
  Status reply(const Message& req, Status st, Buffer body = {}, Buffer bulk = {});
  // Entry point for a message that arrived on this target (from fabric or an inbox task).
  void deliver(Message m);

  // Thread-safe: hands `m` to this runtime's target thread.
  void post_deliver(Message m);

  Target& target() { return target_; }
  uint32_t rank() const { return rank_; }
  uint64_t dropped() const { return dropped_; }
  uint64_t untrusted_replies() const { return untrusted_replies_; }
  uint64_t refused_busy() const { return refused_busy_; }
  // Messages waiting in this runtime's mailboxes for their actor to take them.
  size_t queued() const {
    size_t n = 0;
    for (const auto& [id, mb] : mailboxes_) n += mb->queue.size();
    return n;
  }
  // Asks waiting for their reply.
  size_t pending_asks() const { return pending_.size(); }

 private:
  struct Queued {
    Message m;
    uint64_t admitted = 0;  // bytes counted against admission (0: not a client's request)
  };
  struct Mailbox {
    Actor* actor = nullptr;
    std::deque<Queued> queue;
    uint32_t client_requests = 0;  // clients' requests queued or running
    uint64_t client_bytes = 0;
    boost::fibers::condition_variable_any cv;
    bool closed = false;
  };
  void run_mailbox(Mailbox* mb);
  Status route(Message&& m);
  void close();

  Target& target_;
  uint32_t rank_;
  std::shared_ptr<const std::vector<ActorRuntime*>> peers_;
  Transport* transport_ = nullptr;
  std::map<std::pair<uint32_t, uint16_t>, std::string> routes_;
  std::unordered_map<uint16_t, std::unique_ptr<Mailbox>> mailboxes_;
  struct Pending {
    boost::fibers::promise<Result<Message>>* promise = nullptr;
    ActorAddr dst;
  };
  std::unordered_map<uint64_t, Pending> pending_;
  uint64_t next_corr_;  // starts at a random value: a blind sender cannot guess a live one
  uint64_t dropped_ = 0;
  uint64_t untrusted_replies_ = 0;
  bool trusted_replies_ = false;
  uint32_t max_requests_ = 4096;
  uint64_t max_bytes_ = 1ull << 30;
  uint64_t refused_busy_ = 0;
  bool closed_ = false;
};

}  // namespace tessera

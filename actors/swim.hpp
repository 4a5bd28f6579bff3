// SwimActor: SWIM-style failure detection among engines (Das, Gupta, Motivala 2002), on target 0
// of every engine, over the fabric.
//
// Every `period` it pings one member. Rounds begin at the multiples of `period` on the wall
// clock, and in round p every engine probes the member 1 + p mod (N - 1) places after itself
// in the ring of all N ranks: every member is probed by exactly one other engine in every
// round (clocks within a fraction of a period of each other), so a dead one is probed within
// a round. (Each engine probing its own shuffled order left a member unprobed in a round with
// probability 1/e: a geometric wait, 3-4 rounds at worst over a few dozen deaths.) No ack within
// `ping_timeout`: it asks `indirect` other members to ping that member for it (ping-req) and
// waits for any of them until the period ends. Still nothing: the member is *suspect*. A suspect
// that does not refute within `suspicion` (by announcing a higher incarnation, which a member
// does as soon as it hears it is suspected; every engine that suspects a member pings it each
// period, so a live one hears of it within a period) is declared *dead*: reported to the
// management service, which takes the rank's targets out of every pool map (a new map version)
// unless it heard from the rank itself very recently. News of a member (a suspicion, a higher
// incarnation) travels piggybacked on pings and acks: each is sent on the next
// 3 * ceil(log2(members + 2)) messages, at most kMaxUpdates per message, newest first (infection-
// style dissemination: every engine hears it within O(log N) rounds, and a message stays a few
// hundred bytes however large the system). A message to a member this engine does not believe
// alive always carries that member's own entry, so a live suspect hears of its suspicion from
// every engine that holds it and refutes; every message names its sender's own incarnation.
// The member list (joined ranks and their fabric addresses) comes from the management service
// every `refresh`.
//
// Runs on its target's thread only; the protocol loop is one fiber, each ping-req another.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/actor.hpp"

namespace tessera {

struct SwimOptions {
  std::chrono::milliseconds period{500};        // one probe per period; 0: detection off
  std::chrono::milliseconds ping_timeout{250};  // direct ping's ack
  uint32_t indirect = 3;                        // members asked to ping a silent one
  std::chrono::milliseconds suspicion{3000};    // suspect -> dead without a refutation
  std::chrono::milliseconds refresh{2000};      // member list from the management service
};

class SwimActor final : public Actor {
 public:
  struct Peer {
    uint32_t rank = 0;
    std::string fabric_addr;  // target 0
    uint64_t life = 0;        // the rank's join count: which process of it this is
  };
  // Both run in a fiber of this actor's target and may suspend it. A report names the life
  // of the rank it probed: the management service ignores a verdict about an earlier one.
  using Members = std::function<Result<std::vector<Peer>>()>;
  using ReportDead = std::function<Status(uint32_t rank, uint64_t life)>;

  SwimActor(ActorRuntime& rt, uint32_t self, SwimOptions opts, Members members,
            ReportDead report_dead);
  // Spawns the protocol loop (call on the target's thread).
  void start();
  void stop() { stopping_ = true; }
  void receive(Message& m) override;

  enum class State : uint8_t { alive, suspect, dead };
  struct Member {
    State state = State::alive;
    uint64_t incarnation = 0;
    Nanos suspect_since{0};  // Env time
    bool reported = false;
    uint64_t life = 0;  // the process probed (Peer::life)
  };
  const std::map<uint32_t, Member>& members() const { return members_; }
  // News piggybacked on one message, at most.
  static constexpr size_t kMaxUpdates = 16;

 private:
  void loop();
  void refresh_members();
  bool ping(uint32_t rank, std::chrono::milliseconds timeout);
  bool ping_via(uint32_t helper, uint32_t rank, std::chrono::milliseconds timeout);
  // A ping or ack to rank `dst` (target: the member a ping-req names); takes one send from
  // each piece of news it carries.
  Buffer encode(uint32_t dst, uint32_t target = 0);
  // `rank`'s entry changed: it is news for the next sends_per_news() messages.
  void spread(uint32_t rank) { news_[rank] = sends_per_news(); }
  uint32_t sends_per_news() const;
  void absorb(const Message& m);
  void suspect(uint32_t rank, uint64_t incarnation);
  void check_suspects();
  Nanos next_deadline() const;
  uint32_t pick(uint64_t round) const;  // the member to probe in round `round` (UINT32_MAX: none)
                                        // // when the first suspicion runs out (Nanos::max(): none)
  Nanos now() const { return rt_.target().env().now(); }  // Env time

  ActorRuntime& rt_;
  uint32_t self_;
  SwimOptions opts_;
  Members fetch_members_;
  ReportDead report_dead_;
  uint64_t incarnation_ = 0;
  std::map<uint32_t, Member> members_;
  std::map<uint32_t, uint32_t> news_;  // rank -> messages that still carry its entry
  std::vector<uint32_t> ring_;         // every rank, this one included, ascending
  std::mt19937_64 rng_;                // seeded from the Env: a simulation replays the same helpers
  bool stopping_ = false;
};

}  // namespace tessera

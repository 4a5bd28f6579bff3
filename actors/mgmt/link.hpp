// MgmtLink: an engine's connection to the management service.
//
// A thread of its own (blocking sockets, never a target thread) that joins the system, sends a
// heartbeat every `heartbeat`, and carries the engine's questions (pool maps, container
// handles) in order on the same connection. If the connection breaks, or the access point it
// joined stops leading, it joins the leader (mgmt/leader.hpp) again. Answers are delivered by
// callback on the link thread; targets hand them back to their own thread with Target::post.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "core/actor.hpp"
#include "mgmt/leader.hpp"
#include "mgmt/types.hpp"

namespace tessera::mgmt {

struct ShardInfo {
  uint32_t id = 0;
  std::string uuid;
  uint64_t target_bytes = 0;
  uint64_t epoch_floor = 0;  // the pool's newest snapshot epoch
};

class MgmtLink {
 public:
  struct Options {
    std::string mgmt_addr;  // the access points' control addresses, comma-separated
    Member self;
    std::chrono::milliseconds heartbeat{1000};
    std::chrono::milliseconds timeout{10000};
  };
  // Called on the link thread after every successful join with the pools this rank serves.
  using OnJoined = std::function<void(const std::vector<ShardInfo>&)>;
  using Done = std::function<void(Result<Message>)>;

  // With several access points, a heartbeat unanswered this long means the leader is gone
  // (killed, or its host cut off: then nothing at all comes back) and the engine joins the
  // next one; a live leader answers a heartbeat without proposing anything.
  static constexpr std::chrono::milliseconds kBeatAnswer{4000};

  MgmtLink(Options opts, OnJoined on_joined);
  ~MgmtLink();
  void start();
  void stop();

  // Queues one MgmtReq body (the caller's credentials inside); `done` runs on the link thread.
  void ask(Buffer body, Done done);
  bool joined() const { return joined_.load(); }
  // Waits until the first join (true) or the timeout (false).
  bool wait_joined(std::chrono::milliseconds timeout);
  // Announces a clean stop of this engine (its targets stay in the pool maps while it
  // restarts) and waits at most `timeout` for the service to record it. Call before stop().
  // From then on the link sends no heartbeat, and once the stop is recorded it never joins
  // again: the service answers a stopped rank's heartbeat "join again", and a join from the
  // stopping process, whose connection then closes, would turn the clean stop into a death (an
  // exclusion, a rebuild).
  Status leave(std::chrono::milliseconds timeout);

 private:
  void run();
  Options opts_;
  OnJoined on_joined_;
  LeaderFinder service_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Buffer, Done>> queue_;
  bool quit_ = false;
  // The last join found no service (no leader, nothing reachable): questions fail at once.
  bool cut_off_ = false;
  std::atomic<bool> leaving_{false};  // leave() was called: no heartbeat
  std::atomic<bool> left_{false};     // the service recorded the stop: no join again
  std::atomic<bool> joined_{false};
  std::thread thread_;
};

}  // namespace tessera::mgmt

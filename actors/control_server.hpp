// ControlServer: the engine's TCP control socket (asio), on its own thread, not a target.
//
// Speaks the same frames as the fabric. Today it answers the system protocol's query (what a
// client needs to reach the targets over the fabric); anything else gets an error reply, and
// garbage is logged and the connection closed. Lifecycle: start() binds and spawns the thread,
// stop() closes the acceptor and every session and joins.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "core/actor.hpp"

namespace tessera {

class ControlServer {
 public:
  // `handler` answers one request message (returns the reply body or an error); runs on the
  // control thread.
  using Handler = std::function<Result<Buffer>(const Message&)>;

  ControlServer(std::string listen, Handler handler, uint64_t max_message);
  ~ControlServer();

  Status start();
  void stop();
  uint16_t port() const { return port_; }
  const std::string& address() const { return bound_; }
  uint64_t bad_frames() const { return bad_frames_.load(); }

  struct Impl;

 private:
  std::string listen_;
  Handler handler_;
  uint64_t max_message_;
  uint16_t port_ = 0;
  std::string bound_;
  std::atomic<uint64_t> bad_frames_{0};
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

}  // namespace tessera

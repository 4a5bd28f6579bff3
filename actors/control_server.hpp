// ControlServer: the engine's TCP control socket (asio), on its own thread, not a target.
//
// Speaks the same frames as the fabric, one request at a time per connection. The I/O runs on
// the control thread; each request is answered by the handler on a small worker pool (handlers
// may block: the management service persists its state and calls other engines), then the
// reply goes back on the same connection. Garbage is logged and the connection closed. Every
// connection has a session id; on_close tells when one ends (the management service notices a
// dead engine by its join connection closing). Lifecycle: start() binds and spawns the threads,
// stop() closes the acceptor and every session and joins.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "core/actor.hpp"
#include "security/system_key.hpp"

namespace tessera {

class ControlServer {
 public:
  // `handler` answers one request message of connection `session` (returns the reply body or an
  // error); runs on a worker thread.
  using Handler = std::function<Result<Buffer>(const Message&, uint64_t session)>;
  using CloseHook = std::function<void(uint64_t session)>;

  // With `key`, requests are checked against it (Message::origin) and replies carry its MAC.
  // `insecure`: a request without a MAC counts as an engine's (insecure mode only).
  ControlServer(std::string listen, Handler handler, uint64_t max_message, CloseHook on_close = {},
                std::shared_ptr<const security::SystemKey> key = {}, bool insecure = false);
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
  CloseHook on_close_;
  std::shared_ptr<const security::SystemKey> key_;
  bool insecure_ = false;
  uint16_t port_ = 0;
  std::string bound_;
  std::atomic<uint64_t> bad_frames_{0};
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

}  // namespace tessera

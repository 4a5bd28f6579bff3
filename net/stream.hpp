// Frames over a byte stream: the engine's control socket (asio, TCP) speaks the same frames as
// the fabric, one Message per frame, whole frames only. Used by the engine's control thread and
// by clients at connect time; blocking calls, never on a target thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <memory>

#include "net/frame.hpp"
#include "security/authority.hpp"

namespace tessera::net {

// Reads exactly one frame. Errors: protocol (garbage), too_big, unreachable (connection closed).
Result<Message> read_message(boost::asio::ip::tcp::socket& sock, uint64_t max_message,
                             const security::SystemKey* key = nullptr);
Status write_message(boost::asio::ip::tcp::socket& sock, const Message& m,
                     const security::SystemKey* key = nullptr);

// "host:port" -> endpoint; host must be a numeric IPv4/IPv6 address or "localhost".
Result<boost::asio::ip::tcp::endpoint> parse_endpoint(const std::string& hostport);

// A blocking request/response connection to a control socket (an engine's, or the management
// service's). Not thread-safe; never used on a target thread.
class ControlConn {
 public:
  // Connects within `timeout`; every later call waits at most `timeout` for its reply. Requests
  // are authenticated as `auth` says (a MAC, or a credential from the agent).
  static Result<std::unique_ptr<ControlConn>> open(
      const std::string& addr, std::chrono::milliseconds timeout,
      security::Authority auth = security::default_authority());
  // Sends one request and returns the reply; a failed reply (status != ok) becomes its Status.
  Result<Message> call(uint16_t protocol, uint16_t method, Buffer body, Buffer bulk = {});
  const std::string& address() const { return addr_; }
  // Later calls wait at most this for their reply.
  void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }

 private:
  using Clock = std::chrono::steady_clock;
  ControlConn() = default;
  // Runs the connection's I/O until `done` or `deadline`; false (and the connection abandoned)
  // when the deadline came first.
  bool run_until(const bool& done, Clock::time_point deadline);
  std::string addr_;
  security::Authority auth_;
  std::chrono::milliseconds timeout_{10000};
  bool broken_ = false;
  std::unique_ptr<boost::asio::io_context> io_;
  std::unique_ptr<boost::asio::ip::tcp::socket> sock_;
  uint64_t next_corr_ = 1;
};

// One request on a fresh connection to one of several places that may serve it (an access
// point, as mgmt::LeaderFinder::call tries them): connects within `connect_timeout`, then waits
// `timeout` for the reply. `reached` is set false when the request never left (no connection)
// and, for a request that may be sent twice (`resendable`: it changes nothing), when its
// connection broke; the caller may then try another place. After an answer, `keep` (optional)
// receives the connection for later requests.
Result<Message> control_attempt(const std::string& addr, std::chrono::milliseconds connect_timeout,
                                std::chrono::milliseconds timeout, uint16_t protocol,
                                uint16_t method, Buffer body, bool resendable, bool& reached,
                                std::unique_ptr<ControlConn>* keep = nullptr);

// One request on a fresh connection.
Result<Message> control_call(const std::string& addr, std::chrono::milliseconds timeout,
                             uint16_t protocol, uint16_t method, Buffer body,
                             security::Authority auth = security::default_authority());

}  // namespace tessera::net

// Frames over a byte stream: the engine's control socket (asio, TCP) speaks the same frames as
// the fabric, one Message per frame, whole frames only. Used by the engine's control thread and
// by clients at connect time; blocking calls, never on a target thread.
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include "net/frame.hpp"

namespace tessera::net {

// Reads exactly one frame. Errors: protocol (garbage), too_big, unreachable (connection closed).
Result<Message> read_message(boost::asio::ip::tcp::socket& sock, uint64_t max_message);
Status write_message(boost::asio::ip::tcp::socket& sock, const Message& m);

// "host:port" -> endpoint; host must be a numeric IPv4/IPv6 address or "localhost".
Result<boost::asio::ip::tcp::endpoint> parse_endpoint(const std::string& hostport);

}  // namespace tessera::net

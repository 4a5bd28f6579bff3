#include "net/stream.hpp"

#include <fmt/format.h>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <cstring>

namespace tessera::net {

namespace asio = boost::asio;

namespace {
// The bytes that follow a preamble, or why the frame is refused (before anything is
// allocated for it).
Result<uint64_t> frame_rest(const Preamble& pre, uint64_t max_message) {
  if (pre.magic != kFrameMagic) return Status(Errc::protocol, "bad frame magic");
  uint64_t rest = uint64_t{pre.env_len} + pre.body_len + pre.pad + pre.bulk_len;
  if (pre.kind != FrameKind::whole ||
      uint64_t{pre.env_len} + pre.body_len > kMaxControlHeaderBytes ||
      pre.bulk_len > max_message) {
    return Status(Errc::protocol, "stream frame too large or chunked");
  }
  return rest;
}

Result<Message> frame_message(const Buffer& frame, uint64_t max_message,
                              const security::SystemKey* key) {
  auto fr = decode_frame(frame.span(), max_message, Trust{key}, kMaxControlHeaderBytes);
  if (!fr) return fr.status();
  fr->msg.bulk = Buffer(fr->bulk.data(), fr->bulk.size());
  return std::move(fr->msg);
}
}  // namespace

Result<Message> read_message(asio::ip::tcp::socket& sock, uint64_t max_message,
                             const security::SystemKey* key) {
  Preamble pre;
  boost::system::error_code ec;
  asio::read(sock, asio::buffer(&pre, sizeof(pre)), ec);
  if (ec) return Status(Errc::unreachable, "connection closed: " + ec.message());
  auto rest = frame_rest(pre, max_message);
  if (!rest) return rest.status();
  Buffer frame(kPreambleSize + *rest);
  std::memcpy(frame.data(), &pre, sizeof(pre));
  asio::read(sock, asio::buffer(frame.data() + kPreambleSize, *rest), ec);
  if (ec) return Status(Errc::unreachable, "connection closed mid-frame: " + ec.message());
  return frame_message(frame, max_message, key);
}

Status write_message(asio::ip::tcp::socket& sock, const Message& m,
                     const security::SystemKey* key) {
  auto hdr = encode_header(m, 0, 0, m.bulk.size(), key, kMaxControlHeaderBytes);
  if (!hdr) return hdr.status();
  set_chunk(hdr->bytes, FrameKind::whole, 0, static_cast<uint32_t>(m.bulk.size()));
  boost::system::error_code ec;
  std::array<asio::const_buffer, 2> bufs{asio::buffer(hdr->bytes.data(), hdr->bytes.size()),
                                         asio::buffer(m.bulk.data(), m.bulk.size())};
  asio::write(sock, bufs, ec);
  if (ec) return Status(Errc::unreachable, "write: " + ec.message());
  return Status();
}

Result<asio::ip::tcp::endpoint> parse_endpoint(const std::string& hostport) {
  auto colon = hostport.rfind(':');
  if (colon == std::string::npos) {
    return Status(Errc::invalid_argument, fmt::format("'{}' is not host:port", hostport));
  }
  std::string host = hostport.substr(0, colon);
  std::string port = hostport.substr(colon + 1);
  if (host == "localhost") host = "127.0.0.1";
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return Status(Errc::invalid_argument, fmt::format("'{}' is not an IP address", host));
  char* end = nullptr;
  unsigned long p = std::strtoul(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p > 65535) {
    return Status(Errc::invalid_argument, fmt::format("'{}' is not a port number", port));
  }
  return asio::ip::tcp::endpoint(addr, static_cast<uint16_t>(p));
}

Result<std::unique_ptr<ControlConn>> ControlConn::open(const std::string& addr,
                                                       std::chrono::milliseconds timeout,
                                                       security::Authority auth) {
  auto ep = parse_endpoint(addr);
  if (!ep) return ep.status();
  std::unique_ptr<ControlConn> c(new ControlConn());
  c->addr_ = addr;
  c->auth_ = std::move(auth);
  c->io_ = std::make_unique<asio::io_context>();
  c->sock_ = std::make_unique<asio::ip::tcp::socket>(*c->io_);
  boost::system::error_code ec = asio::error::would_block;
  c->sock_->async_connect(*ep, [&](const boost::system::error_code& e) { ec = e; });
  c->io_->run_for(timeout);
  if (ec == asio::error::would_block) {
    return Status(Errc::timeout,
                  fmt::format("no answer from {} within {} ms", addr, timeout.count()));
  }
  if (ec) {
    return Status(Errc::unreachable, fmt::format("cannot reach {}: {} (is tessera-server running?)",
                                                 addr, ec.message()));
  }
  c->timeout_ = timeout;
  return c;
}

bool ControlConn::run_until(const bool& done, Clock::time_point deadline) {
  io_->restart();
  while (!done && Clock::now() < deadline) io_->run_one_until(deadline);
  if (done) return true;
  // Out of time: the pending operation is cancelled (its handler runs with an error) and the
  // connection is not used again, since a late reply would answer the wrong request.
  boost::system::error_code ignored;
  sock_->cancel(ignored);
  io_->restart();
  io_->run();
  broken_ = true;
  return false;
}

Result<Message> ControlConn::call(uint16_t protocol, uint16_t method, Buffer body, Buffer bulk) {
  if (broken_) return Status(Errc::unreachable, fmt::format("{}: connection abandoned", addr_));
  Message req;
  req.protocol = protocol;
  req.method = method;
  req.corr = next_corr_++;
  req.body = std::move(body);
  req.bulk = std::move(bulk);
  // Every step runs against one deadline: a peer that is stopped (SIGSTOP) or hung accepts
  // the connection and then answers nothing.
  const auto deadline = Clock::now() + timeout_;
  auto late = [&] {
    return Status(Errc::timeout,
                  fmt::format("no reply from {} within {} ms", addr_, timeout_.count()));
  };
  // A user's request carries the agent's credential for it; without one (no agent), the
  // request goes anyway and the reason is told if the service refuses it.
  Status no_cred = auth_.sign(req, timeout_);
  auto hdr = encode_header(req, 0, 0, req.bulk.size(), auth_.key().get(), kMaxControlHeaderBytes);
  if (!hdr) return hdr.status();
  set_chunk(hdr->bytes, FrameKind::whole, 0, static_cast<uint32_t>(req.bulk.size()));
  boost::system::error_code ec;
  bool done = false;
  std::array<asio::const_buffer, 2> out{asio::buffer(hdr->bytes.data(), hdr->bytes.size()),
                                        asio::buffer(req.bulk.data(), req.bulk.size())};
  asio::async_write(*sock_, out, [&](const boost::system::error_code& e, size_t) {
    ec = e;
    done = true;
  });
  if (!run_until(done, deadline)) return late();
  if (ec) return Status(Errc::unreachable, fmt::format("{}: write: {}", addr_, ec.message()));

  Preamble pre;
  done = false;
  asio::async_read(*sock_, asio::buffer(&pre, sizeof(pre)),
                   [&](const boost::system::error_code& e, size_t) {
                     ec = e;
                     done = true;
                   });
  if (!run_until(done, deadline)) return late();
  if (ec)
    return Status(Errc::unreachable, fmt::format("{}: connection closed: {}", addr_, ec.message()));
  constexpr uint64_t kMaxReply = 1ull << 30;
  auto rest = frame_rest(pre, kMaxReply);
  if (!rest)
    return Status(rest.status().code(), fmt::format("{}: {}", addr_, rest.status().message()));
  Buffer frame(kPreambleSize + *rest);
  std::memcpy(frame.data(), &pre, sizeof(pre));
  done = false;
  asio::async_read(*sock_, asio::buffer(frame.data() + kPreambleSize, *rest),
                   [&](const boost::system::error_code& e, size_t) {
                     ec = e;
                     done = true;
                   });
  if (!run_until(done, deadline)) return late();
  if (ec) {
    return Status(Errc::unreachable,
                  fmt::format("{}: connection closed mid-frame: {}", addr_, ec.message()));
  }
  auto rep = frame_message(frame, kMaxReply, nullptr);
  if (!rep)
    return Status(rep.status().code(), fmt::format("{}: {}", addr_, rep.status().message()));
  if (rep->corr != req.corr) return Status(Errc::protocol, "reply does not match the request");
  if (rep->status == Errc::unauthenticated && !no_cred.is_ok()) {
    return Status(rep->status, fmt::format("{} ({})", rep->error, no_cred.message()));
  }
  if (rep->status != Errc::ok) return Status(rep->status, rep->error);
  return rep;
}

Result<Message> control_attempt(const std::string& addr, std::chrono::milliseconds connect_timeout,
                                std::chrono::milliseconds timeout, uint16_t protocol,
                                uint16_t method, Buffer body, bool resendable, bool& reached,
                                std::unique_ptr<ControlConn>* keep) {
  auto c = ControlConn::open(addr, connect_timeout);
  if (!c) {
    reached = false;  // never sent
    return c.status();
  }
  (*c)->set_timeout(timeout);
  auto rep = (*c)->call(protocol, method, std::move(body));
  if (!rep && rep.status().code() == Errc::unreachable && resendable) reached = false;
  if (rep && keep != nullptr) *keep = std::move(*c);
  return rep;
}

Result<Message> control_call(const std::string& addr, std::chrono::milliseconds timeout,
                             uint16_t protocol, uint16_t method, Buffer body,
                             security::Authority auth) {
  auto c = ControlConn::open(addr, timeout, std::move(auth));
  if (!c) return c.status();
  return (*c)->call(protocol, method, std::move(body));
}

}  // namespace tessera::net

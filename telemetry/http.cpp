#include "telemetry/http.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include <pthread.h>

#include <optional>

#include "core/log.hpp"
#include "core/version.hpp"
#include "net/stream.hpp"

namespace tessera::telemetry {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {
constexpr size_t kMaxHeader = 8192;
}  // namespace

struct HttpServer::Impl {
  // Declared before `io`: sessions still queued in `io` end (and count themselves out) while it
  // is destroyed.
  Handler handler;
  Options opts;
  size_t live = 0;
  uint64_t refused = 0;
  asio::io_context io;
  tcp::acceptor acceptor{io};

  void accept();
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket s, HttpServer::Impl& srv) : stream_(std::move(s)), srv_(srv) { ++srv_.live; }
  ~Session() { --srv_.live; }
  void read() {
    parser_.emplace();
    parser_->header_limit(kMaxHeader);
    stream_.expires_after(srv_.opts.idle);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

 private:
  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::connection_reset || ec == asio::error::operation_aborted) {
      return close();
    }
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      return write({431, "text/plain; charset=utf-8", "request header too large\n"}, 11, false,
                   false);
    }
    const auto& req = parser_->get();
    const bool head = req.method() == http::verb::head;
    // A method that is not served (its body, if any, unread) or garbage.
    if (parser_->is_header_done() && req.method() != http::verb::get && !head) {
      return write({405, "text/plain; charset=utf-8", "only GET and HEAD are served\n"},
                   req.version(), false, false);
    }
    if (ec) return write({400, "text/plain; charset=utf-8", ec.message() + "\n"}, 11, false, false);
    if (req.method() != http::verb::get && !head) {
      return write({405, "text/plain; charset=utf-8", "only GET and HEAD are served\n"},
                   req.version(), false, false);
    }
    HttpResponse r;
    try {
      r = srv_.handler(std::string(req.target()));
    } catch (const std::exception& e) {
      r = {500, "text/plain; charset=utf-8", std::string(e.what()) + "\n"};
    }
    write(std::move(r), req.version(), req.keep_alive(), head);
  }

  void write(HttpResponse r, unsigned version, bool keep, bool head) {
    res_ = {};
    res_.result(r.status);
    res_.version(version);
    res_.set(http::field::server, "tessera-server " + version_string());
    res_.set(http::field::content_type, r.content_type);
    res_.keep_alive(keep);
    res_.body() = std::move(r.body);
    res_.prepare_payload();
    if (head) res_.body().clear();
    stream_.expires_after(srv_.opts.idle);
    http::async_write(stream_, res_, [self = shared_from_this(), keep](beast::error_code ec, size_t) {
      if (ec || !keep) return self->close();
      self->read();
    });
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

  static std::string version_string() { return std::string(tessera::version()); }

  beast::tcp_stream stream_;
  HttpServer::Impl& srv_;
  beast::flat_buffer buffer_{kMaxHeader};
  std::optional<http::request_parser<http::empty_body>> parser_;
  http::response<http::string_body> res_;
};

}  // namespace

void HttpServer::Impl::accept() {
  acceptor.async_accept([this](beast::error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
    if (!ec) {
      if (live >= opts.max_connections) {
        ++refused;
        beast::error_code ignore;
        s.close(ignore);
      } else {
        std::make_shared<Session>(std::move(s), *this)->read();
      }
    }
    accept();
  });
}

HttpServer::HttpServer(std::string listen, Handler handler, Options o)
    : listen_(std::move(listen)), handler_(std::move(handler)), opts_(o) {}

HttpServer::~HttpServer() { stop(); }

Status HttpServer::start() {
  auto ep = net::parse_endpoint(listen_);
  if (!ep) return Status(ep.status().code(), "metrics address: " + ep.status().message());
  impl_ = std::make_unique<Impl>();
  impl_->handler = handler_;
  impl_->opts = opts_;
  beast::error_code ec;
  impl_->acceptor.open(ep->protocol(), ec);
  // A fixed port is taken again at once after a restart; port 0 must not pick a port other
  // sockets still hold in TIME_WAIT (a control port its engine is about to take again).
  if (!ec && ep->port() != 0) {
    impl_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec) impl_->acceptor.bind(*ep, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    impl_.reset();
    return Status(Errc::unavailable,
                  fmt::format("cannot serve metrics on {}: {}", listen_, ec.message()));
  }
  auto local = impl_->acceptor.local_endpoint();
  bound_ = local.address().is_v6() ? fmt::format("[{}]:{}", local.address().to_string(), local.port())
                                   : fmt::format("{}:{}", local.address().to_string(), local.port());
  impl_->accept();
  thread_ = std::thread([this] {
    log::set_thread_name("metrics");
    pthread_setname_np(pthread_self(), "metrics");  // its CPU time: /proc/PID/task/*/comm
    impl_->io.run();
  });
  return Status();
}

void HttpServer::stop() {
  if (!impl_) return;
  asio::post(impl_->io, [this] {
    beast::error_code ec;
    impl_->acceptor.close(ec);
    impl_->io.stop();
  });
  if (thread_.joinable()) thread_.join();
  impl_.reset();
}

Result<std::string> http_get(const std::string& addr, const std::string& path,
                             std::chrono::milliseconds timeout, size_t max_body) {
  auto ep = net::parse_endpoint(addr);
  if (!ep) return ep.status();
  asio::io_context io;
  beast::tcp_stream s(io);
  s.expires_after(timeout);
  http::request<http::empty_body> req{http::verb::get, path, 11};
  req.set(http::field::host, addr);
  req.set(http::field::user_agent, "tessera");
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(max_body);
  beast::error_code result;
  s.async_connect(*ep, [&](beast::error_code ec) {
    if (ec) {
      result = ec;
      return;
    }
    http::async_write(s, req, [&](beast::error_code ec2, size_t) {
      if (ec2) {
        result = ec2;
        return;
      }
      http::async_read(s, buf, parser, [&](beast::error_code ec3, size_t) { result = ec3; });
    });
  });
  io.run();
  if (result == beast::error::timeout) {
    return Status(Errc::timeout, fmt::format("GET http://{}{}: no answer within {} ms", addr, path,
                                             timeout.count()));
  }
  if (result) {
    return Status(Errc::unreachable,
                  fmt::format("GET http://{}{}: {}", addr, path, result.message()));
  }
  const auto& res = parser.get();
  if (res.result_int() != 200) {
    std::string first = res.body().substr(0, res.body().find('\n'));
    return Status(Errc::unavailable, fmt::format("GET http://{}{}: HTTP {} {}", addr, path,
                                                 res.result_int(), first));
  }
  return res.body();
}

}  // namespace tessera::telemetry

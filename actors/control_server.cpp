#include "actors/control_server.hpp"

#include <algorithm>
#include <boost/asio.hpp>
#include <cstring>

#include "core/log.hpp"
#include "net/frame.hpp"
#include "net/stream.hpp"

namespace tessera {

namespace asio = boost::asio;
using asio::ip::tcp;

struct ControlServer::Impl {
  const security::SystemKey* key = nullptr;
  bool insecure = false;
  // Before `io`: sessions destroyed with io's pending handlers still count themselves out.
  std::atomic<uint64_t> next_session{1};
  std::atomic<size_t> sessions{0};  // open now
  std::atomic<uint64_t> refused{0};
  asio::io_context io;
  tcp::acceptor acceptor{io};
  asio::thread_pool workers{4};
};

namespace {
// Bounds of the control socket, whoever connects: sessions open at once (more are closed on
// accept), the bulk of one frame (control requests carry none; checked before allocating),
// how long a connection may stay silent before its first whole frame, and how long one frame
// may take to arrive once begun.
constexpr size_t kMaxSessions = 512;
constexpr uint64_t kMaxControlBulk = 64 * 1024;
constexpr auto kFirstFrameWithin = std::chrono::seconds(10);
constexpr auto kFrameWithin = std::chrono::seconds(30);
}  // namespace

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket sock, ControlServer::Impl& im, ControlServer::Handler& h,
          ControlServer::CloseHook& on_close, uint64_t max_message, std::atomic<uint64_t>& bad)
      : sock_(std::move(sock)),
        im_(im),
        handler_(h),
        on_close_(on_close),
        max_(std::min<uint64_t>(max_message, kMaxControlBulk)),
        bad_(bad),
        id_(im.next_session++),
        timer_(im.io) {
    ++im_.sessions;
  }
  ~Session() {
    --im_.sessions;
    if (on_close_) on_close_(id_);
  }

  void start() {
    deadline(kFirstFrameWithin, "sent no whole frame");
    read_preamble();
  }

 private:
  // Closes the connection unless the current wait ends within `d`.
  void deadline(std::chrono::seconds d, const char* what) {
    timer_.expires_after(d);
    std::weak_ptr<Session> weak = shared_from_this();
    timer_.async_wait([weak, what, d](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      static log::RateLimit limit(5);
      if (uint64_t skipped = 0; limit.allow(&skipped)) {
        log::warn("control socket: closing {}: {} within {} s ({} more not shown)", self->peer(),
                  what, d.count(), skipped);
      }
      boost::system::error_code ignored;
      self->sock_.close(ignored);
    });
  }

  void read_preamble() {
    auto self = shared_from_this();
    asio::async_read(sock_, asio::buffer(&pre_, sizeof(pre_)),
                     [self](boost::system::error_code ec, size_t) {
                       if (!ec) self->read_rest();
                     });
  }

  void fail(const std::string& why) {
    ++bad_;
    static log::RateLimit limit(5);
    if (uint64_t skipped = 0; limit.allow(&skipped)) {
      log::error("control socket: dropping malformed frame from {}: {} ({} more not shown)", peer(),
                 why, skipped);
    }
    boost::system::error_code ec;
    timer_.cancel();
    sock_.close(ec);
  }

  std::string peer() {
    boost::system::error_code ec;
    auto ep = sock_.remote_endpoint(ec);
    return ec ? "?" : ep.address().to_string() + ":" + std::to_string(ep.port());
  }

  void read_rest() {
    if (pre_.magic != net::kFrameMagic) return fail("bad magic");
    uint64_t rest = uint64_t{pre_.env_len} + pre_.body_len + pre_.pad + pre_.bulk_len;
    if (uint64_t{pre_.env_len} + pre_.body_len > net::kMaxControlHeaderBytes ||
        pre_.bulk_len > max_) {
      return fail("frame too large");
    }
    frame_.reset(net::kPreambleSize + rest);
    std::memcpy(frame_.data(), &pre_, sizeof(pre_));
    if (seen_frame_) deadline(kFrameWithin, "did not finish a frame it began");
    auto self = shared_from_this();
    asio::async_read(sock_, asio::buffer(frame_.data() + net::kPreambleSize, rest),
                     [self](boost::system::error_code ec, size_t) {
                       if (!ec) self->handle();
                     });
  }

  void handle() {
    auto fr = net::decode_frame(frame_.span(), max_, net::Trust{im_.key, im_.insecure},
                                net::kMaxControlHeaderBytes);
    if (!fr) return fail(fr.status().to_string());
    if (fr->pre.kind != net::FrameKind::whole) return fail("chunked frame on the control socket");
    // A whole, well-formed frame: the connection may now stay idle between requests (engines
    // keep theirs open for heartbeats).
    seen_frame_ = true;
    timer_.cancel();
    auto req = std::make_shared<Message>(std::move(fr->msg));
    req->bulk = Buffer(fr->bulk.data(), fr->bulk.size());
    auto self = shared_from_this();
    asio::post(im_.workers, [self, req] {
      auto r = self->handler_(*req, self->id_);
      auto rep = std::make_shared<Message>(r ? make_reply(*req, Status(), std::move(*r))
                                             : make_reply(*req, r.status()));
      asio::post(self->im_.io, [self, rep] { self->send(*rep); });
    });
  }

  void send(Message& rep) {
    rep.reply_to.clear();  // the answer goes back on this socket
    auto hdr = net::encode_header(rep, 0, 0, 0, im_.key, net::kMaxControlHeaderBytes);
    if (!hdr && rep.status == Errc::ok) {
      // A reply this socket cannot carry fails its request; the connection (an engine's join
      // connection, whose end the management service takes for the engine's death) stays.
      log::error("control socket: a reply to {} of {} bytes cannot be sent: {}", peer(),
                 rep.body.size(), hdr.status().to_string());
      rep.status = hdr.status().code();
      rep.error = "the reply cannot be sent: " + hdr.status().message();
      rep.body = {};
      hdr = net::encode_header(rep, 0, 0, 0, im_.key, net::kMaxControlHeaderBytes);
    }
    if (!hdr) return fail(hdr.status().to_string());
    net::set_chunk(hdr->bytes, net::FrameKind::whole, 0, 0);
    out_ = std::move(hdr->bytes);
    auto self = shared_from_this();
    asio::async_write(sock_, asio::buffer(out_.data(), out_.size()),
                      [self](boost::system::error_code ec, size_t) {
                        if (!ec) self->read_preamble();
                      });
  }

  tcp::socket sock_;
  ControlServer::Impl& im_;
  ControlServer::Handler& handler_;
  ControlServer::CloseHook& on_close_;
  uint64_t max_;
  std::atomic<uint64_t>& bad_;
  uint64_t id_;
  asio::steady_timer timer_;
  bool seen_frame_ = false;
  net::Preamble pre_{};
  Buffer frame_;
  Buffer out_;
};

void accept_loop(ControlServer::Impl* im, ControlServer::Handler* h, ControlServer::CloseHook* c,
                 uint64_t max, std::atomic<uint64_t>* bad) {
  im->acceptor.async_accept([im, h, c, max, bad](boost::system::error_code ec, tcp::socket sock) {
    if (ec == asio::error::operation_aborted) return;  // acceptor closed
    if (ec) {
      // Out of file descriptors or memory: try again shortly instead of spinning or giving up.
      auto t = std::make_shared<asio::steady_timer>(im->io, std::chrono::milliseconds(100));
      t->async_wait([t, im, h, c, max, bad](boost::system::error_code e) {
        if (!e) accept_loop(im, h, c, max, bad);
      });
      return;
    }
    if (im->sessions >= kMaxSessions) {
      ++im->refused;
      static log::RateLimit limit(1);
      if (uint64_t skipped = 0; limit.allow(&skipped)) {
        log::warn("control socket: {} connections open; refusing more ({} more not shown)",
                  kMaxSessions, skipped);
      }
      boost::system::error_code ignored;
      sock.close(ignored);
    } else {
      std::make_shared<Session>(std::move(sock), *im, *h, *c, max, *bad)->start();
    }
    accept_loop(im, h, c, max, bad);
  });
}

}  // namespace

ControlServer::ControlServer(std::string listen, Handler handler, uint64_t max_message,
                             CloseHook on_close, std::shared_ptr<const security::SystemKey> key,
                             bool insecure)
    : listen_(std::move(listen)),
      handler_(std::move(handler)),
      max_message_(max_message),
      on_close_(std::move(on_close)),
      key_(std::move(key)),
      insecure_(insecure) {}

ControlServer::~ControlServer() {
  stop();
}

Status ControlServer::start() {
  auto ep = net::parse_endpoint(listen_);
  if (!ep) return ep.status();
  impl_ = std::make_unique<Impl>();
  impl_->key = key_.get();
  impl_->insecure = insecure_;
  boost::system::error_code ec;
  impl_->acceptor.open(ep->protocol(), ec);
  if (!ec) impl_->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(*ep, ec);
  if (!ec) impl_->acceptor.listen(64, ec);
  if (ec) {
    return Status(ec == asio::error::address_in_use ? Errc::exists : Errc::unreachable,
                  fmt::format("cannot listen on {}: {}", listen_, ec.message()));
  }
  auto local = impl_->acceptor.local_endpoint();
  port_ = local.port();
  bound_ = local.address().to_string() + ":" + std::to_string(port_);
  accept_loop(impl_.get(), &handler_, &on_close_, max_message_, &bad_frames_);
  thread_ = std::thread([this] {
    log::set_thread_name("control");
    impl_->io.run();
  });
  return Status();
}

void ControlServer::stop() {
  if (!impl_) return;
  asio::post(impl_->io, [this] {
    boost::system::error_code ec;
    impl_->acceptor.close(ec);
    impl_->io.stop();
  });
  if (thread_.joinable()) thread_.join();
  impl_->workers.join();
  impl_.reset();  // destroys the queued handlers; their sessions close
}

}  // namespace tessera

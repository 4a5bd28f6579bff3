#include "mgmt/raft_transport.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/log.hpp"
#include "security/sodium_init.hpp"

namespace tessera::mgmt {

namespace {
constexpr std::string_view kDomain = "tessera raft connect";
constexpr size_t kNonce = 32;

std::string peer_of(uv_stream_t* s) {
  sockaddr_storage sa{};
  int len = sizeof(sa);
  if (uv_tcp_getpeername(reinterpret_cast<uv_tcp_t*>(s), reinterpret_cast<sockaddr*>(&sa), &len) !=
      0) {
    return "?";
  }
  char ip[64] = "?";
  if (sa.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&sa);
    uv_ip4_name(in, ip, sizeof(ip));
    return fmt::format("{}:{}", ip, ntohs(in->sin_port));
  }
  if (sa.ss_family == AF_INET6) {
    const auto* in = reinterpret_cast<const sockaddr_in6*>(&sa);
    uv_ip6_name(in, ip, sizeof(ip));
    return fmt::format("[{}]:{}", ip, ntohs(in->sin6_port));
  }
  return "?";
}

// What the connecting side tags: the challenge, then the raft id and address it claims.
std::vector<uint8_t> tagged(const std::array<uint8_t, kNonce>& nonce, raft_id id,
                            const std::string& address) {
  std::vector<uint8_t> d(nonce.begin(), nonce.end());
  const uint64_t v = id;
  d.insert(d.end(), reinterpret_cast<const uint8_t*>(&v), reinterpret_cast<const uint8_t*>(&v) + 8);
  d.insert(d.end(), address.begin(), address.end());
  return d;
}
}  // namespace

struct AuthTransport::Handshake {
  AuthTransport* t = nullptr;
  bool accepting = false;
  uv_stream_t* stream = nullptr;  // owned until handed to raft or closed
  uv_timer_t timer{};
  bool timer_init = false;
  uv_write_t write{};
  std::array<uint8_t, kNonce> nonce{};
  security::Mac answer{};
  size_t got = 0;  // bytes read of what this side waits for
  bool written = false, read = false;
  raft_id peer_id = 0;
  std::string peer_address;
  raft_uv_connect inner_req{};
  raft_uv_connect* outer_req = nullptr;
  int closes = 0;  // handle closes not yet called back
};

// The transport's callbacks (friend of AuthTransport).
struct AuthTransportImpl {
  using H = AuthTransport::Handshake;

  // raft keeps the outer transport's `data` for itself: this transport is its `impl`. The TCP
  // transport keeps its `impl`: this transport is its `data`.
  static AuthTransport* of(raft_uv_transport* outer) {
    return static_cast<AuthTransport*>(outer->impl);
  }
  static AuthTransport* of_inner(raft_uv_transport* inner) {
    return static_cast<AuthTransport*>(inner->data);
  }

  static void maybe_closed(AuthTransport* t) {
    if (t->closing_ && t->inner_closed_ && t->active_.empty() && t->close_cb_ != nullptr) {
      auto cb = t->close_cb_;
      t->close_cb_ = nullptr;
      cb(&t->outer_);
    }
  }

  static void handle_closed(uv_handle_t* h) {
    H* hs = static_cast<H*>(h->data);
    if (h != reinterpret_cast<uv_handle_t*>(&hs->timer)) raft_free(h);  // a refused stream
    if (--hs->closes == 0) delete hs;
  }

  // Releases the handshake: its timer closes; its stream is raft's (handed) or closed.
  static void release(H* hs, bool close_stream) {
    AuthTransport* t = hs->t;
    t->active_.erase(hs);
    if (close_stream && hs->stream != nullptr) {
      hs->stream->data = hs;
      ++hs->closes;
      uv_close(reinterpret_cast<uv_handle_t*>(hs->stream), handle_closed);
    }
    hs->stream = nullptr;
    if (hs->timer_init) {
      uv_timer_stop(&hs->timer);
      ++hs->closes;
      uv_close(reinterpret_cast<uv_handle_t*>(&hs->timer), handle_closed);
    }
    if (hs->closes == 0) delete hs;
    maybe_closed(t);
  }

  static void fail(H* hs, const char* why, int status = RAFT_NOCONNECTION) {
    AuthTransport* t = hs->t;
    if (t->active_.count(hs) == 0) return;
    if (status != RAFT_CANCELED) {
      ++t->refused_;
      if (hs->accepting) {
        log::warn("management replicas: refused a connection from {} claiming raft id {} ({}): {}",
                  hs->stream != nullptr ? peer_of(hs->stream) : "?", hs->peer_id, hs->peer_address,
                  why);
      } else {
        log::warn("management replicas: connection to raft id {} at {} failed: {}", hs->peer_id,
                  hs->peer_address, why);
      }
    }
    raft_uv_connect* req = hs->outer_req;
    release(hs, true);
    if (req != nullptr) req->cb(req, nullptr, status);
  }

  static void start_timer(H* hs) {
    uv_timer_init(hs->t->loop_, &hs->timer);
    hs->timer.data = hs;
    hs->timer_init = true;
    uv_timer_start(
        &hs->timer, [](uv_timer_t* tm) { fail(static_cast<H*>(tm->data), "no answer in time"); },
        static_cast<uint64_t>(kHandshakeTimeout.count()), 0);
  }

  // Reads exactly the bytes this side waits for: never one of raft's that follow.
  static void read_exact(H* hs) {
    hs->stream->data = hs;
    uv_read_start(
        hs->stream,
        [](uv_handle_t* h, size_t, uv_buf_t* buf) {
          H* x = static_cast<H*>(h->data);
          uint8_t* base = x->accepting ? x->answer.data() : x->nonce.data();
          *buf = uv_buf_init(reinterpret_cast<char*>(base + x->got),
                             static_cast<unsigned>(kNonce - x->got));
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t*) {
          H* x = static_cast<H*>(s->data);
          if (n < 0) {
            fail(x, n == UV_EOF ? "closed during the handshake" : uv_strerror(static_cast<int>(n)));
            return;
          }
          x->got += static_cast<size_t>(n);
          if (x->got < kNonce) return;
          uv_read_stop(s);
          x->read = true;
          x->accepting ? accept_step(x) : connect_answer(x);
        });
  }

  static void send(H* hs, const uint8_t* p) {
    uv_buf_t b = uv_buf_init(reinterpret_cast<char*>(const_cast<uint8_t*>(p)),
                             static_cast<unsigned>(kNonce));
    hs->write.data = hs;
    int rv = uv_write(&hs->write, hs->stream, &b, 1, [](uv_write_t* w, int status) {
      H* x = static_cast<H*>(w->data);
      if (status < 0) {
        fail(x, uv_strerror(status));
        return;
      }
      x->written = true;
      x->accepting ? accept_step(x) : connect_done(x);
    });
    if (rv != 0) fail(hs, uv_strerror(rv));
  }

  // --- accepting side ---------------------------------------------------------------------

  static void on_accept(raft_uv_transport* inner, raft_id id, const char* address,
                        uv_stream_t* stream) {
    AuthTransport* t = of_inner(inner);
    if (t->closing_ || t->active_.size() >= kMaxHandshakes) {
      if (!t->closing_) {
        ++t->refused_;
        log::warn(
            "management replicas: refused a connection from {}: {} handshakes already "
            "in progress",
            peer_of(stream), kMaxHandshakes);
      }
      stream->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(stream), [](uv_handle_t* h) { raft_free(h); });
      return;
    }
    H* hs = new H();
    hs->t = t;
    hs->accepting = true;
    hs->stream = stream;
    hs->peer_id = id;
    hs->peer_address = address != nullptr ? address : "";
    t->active_.insert(hs);
    start_timer(hs);
    randombytes_buf(hs->nonce.data(), hs->nonce.size());
    read_exact(hs);
    send(hs, hs->nonce.data());
  }

  // Both the challenge sent and the answer read: check the answer, hand the stream to raft.
  static void accept_step(H* hs) {
    if (!hs->written || !hs->read) return;
    AuthTransport* t = hs->t;
    const auto data = tagged(hs->nonce, hs->peer_id, hs->peer_address);
    if (!t->key_->check_tag(kDomain, data, hs->answer)) {
      fail(hs, "the answer does not prove the system key");
      return;
    }
    uv_stream_t* s = hs->stream;
    const raft_id id = hs->peer_id;
    const std::string address = hs->peer_address;
    release(hs, false);
    s->data = nullptr;
    t->accept_cb_(&t->outer_, id, address.c_str(), s);
  }

  // --- connecting side --------------------------------------------------------------------

  static void on_connect(raft_uv_connect* inner_req, uv_stream_t* stream, int status) {
    H* hs = static_cast<H*>(inner_req->data);
    AuthTransport* t = hs->t;
    if (status != 0) {
      raft_uv_connect* req = hs->outer_req;
      release(hs, false);
      req->cb(req, nullptr, status);
      return;
    }
    hs->stream = stream;
    if (t->closing_) {
      fail(hs, "closing", RAFT_CANCELED);
      return;
    }
    start_timer(hs);
    read_exact(hs);
  }

  static void connect_answer(H* hs) {
    const auto data = tagged(hs->nonce, hs->t->id_, hs->t->address_);
    hs->answer = hs->t->key_->tag(kDomain, data);
    send(hs, hs->answer.data());
  }

  static void connect_done(H* hs) {
    raft_uv_connect* req = hs->outer_req;
    uv_stream_t* s = hs->stream;
    release(hs, false);
    s->data = nullptr;
    req->cb(req, s, 0);
  }

  // --- the raft_uv_transport interface ----------------------------------------------------

  static int init(raft_uv_transport* o, raft_id id, const char* address) {
    AuthTransport* t = of(o);
    t->id_ = id;
    t->address_ = address;
    return t->inner_.init(&t->inner_, id, address);
  }

  static int listen(raft_uv_transport* o, raft_uv_accept_cb cb) {
    AuthTransport* t = of(o);
    t->accept_cb_ = cb;
    int rv = t->inner_.listen(&t->inner_, on_accept);
    if (rv != 0) {
      const std::string& where = t->bind_.empty() ? t->address_ : t->bind_;
      std::snprintf(o->errmsg, sizeof(o->errmsg), "listening on %s: %s", where.c_str(),
                    listen_error(where).c_str());
    }
    return rv;
  }

  // Why listening on `address` ("a.b.c.d:port") fails: the TCP transport does not say, so the
  // same bind and listen again, on a socket closed at once.
  static std::string listen_error(const std::string& address) {
    const auto colon = address.rfind(':');
    sockaddr_in a{};
    a.sin_family = AF_INET;
    if (colon == std::string::npos ||
        ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &a.sin_addr) != 1) {
      return "not an IPv4 address and port";
    }
    a.sin_port =
        htons(static_cast<uint16_t>(std::strtoul(address.c_str() + colon + 1, nullptr, 10)));
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return std::strerror(errno);
    int one = 1;
    std::string why = "unknown (it failed in the TCP transport)";
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(fd, 1) != 0) {
      why = std::strerror(errno);
    }
    ::close(fd);
    return why;
  }

  static int connect(raft_uv_transport* o, raft_uv_connect* req, raft_id id, const char* address,
                     raft_uv_connect_cb cb) {
    AuthTransport* t = of(o);
    if (t->closing_) return RAFT_CANCELED;
    req->cb = cb;
    H* hs = new H();
    hs->t = t;
    hs->peer_id = id;
    hs->peer_address = address;
    hs->outer_req = req;
    hs->inner_req.data = hs;
    int rv = t->inner_.connect(&t->inner_, &hs->inner_req, id, address, on_connect);
    if (rv != 0) {
      delete hs;
      return rv;
    }
    t->active_.insert(hs);
    return 0;
  }

  static void close(raft_uv_transport* o, raft_uv_transport_close_cb cb) {
    AuthTransport* t = of(o);
    t->closing_ = true;
    t->close_cb_ = cb;
    // Handshakes with a connection end now; connects still under way are cancelled by the TCP
    // transport's close, which calls them back.
    std::vector<H*> open;
    for (H* hs : t->active_) {
      if (hs->stream != nullptr) open.push_back(hs);
    }
    for (H* hs : open) fail(hs, "closing", RAFT_CANCELED);
    t->inner_.close(&t->inner_, [](raft_uv_transport* inner) {
      AuthTransport* x = of_inner(inner);
      x->inner_closed_ = true;
      maybe_closed(x);
    });
  }
};

Result<std::unique_ptr<AuthTransport>> AuthTransport::create(
    uv_loop_t* loop, std::shared_ptr<const security::SystemKey> key, const std::string& bind) {
  if (key == nullptr)
    return Status(Errc::invalid_argument, "the raft transport needs a system key");
  if (Status st = security::sodium_ready(); !st.is_ok()) return st;
  std::unique_ptr<AuthTransport> t(new AuthTransport());
  t->loop_ = loop;
  t->key_ = std::move(key);
  t->inner_.data = t.get();
  if (int rv = raft_uv_tcp_init(&t->inner_, loop); rv != 0) {
    return Status(Errc::internal, fmt::format("raft TCP transport: {}", raft_strerror(rv)));
  }
  t->inner_ready_ = true;
  t->inner_.data = t.get();  // the TCP transport keeps `data` for its user
  t->bind_ = bind;
  if (!bind.empty()) {
    if (int rv = raft_uv_tcp_set_bind_address(&t->inner_, bind.c_str()); rv != 0) {
      return Status(Errc::invalid_argument,
                    fmt::format("raft bind address '{}': {}", bind, raft_strerror(rv)));
    }
  }
  t->outer_.impl = t.get();
  t->outer_.init = AuthTransportImpl::init;
  t->outer_.listen = AuthTransportImpl::listen;
  t->outer_.connect = AuthTransportImpl::connect;
  t->outer_.close = AuthTransportImpl::close;
  return t;
}

AuthTransport::~AuthTransport() {
  if (inner_ready_) raft_uv_tcp_close(&inner_);
}

}  // namespace tessera::mgmt

// tessera-agent: vouches for the users of one node (docs/SECURITY.md).
//
// Listens on a Unix socket that every local user may reach. For each connection it asks the
// kernel who the peer is (SO_PEERCRED: uid, gid, pid), reads the 32-byte hash of the request
// the peer is about to send, and answers a credential for that request signed with the node's
// key (security/credential.hpp). The caller's own words about itself are never read.
// One thread (asio); every connection is bounded in bytes and time.
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>

#include "core/log.hpp"
#include "core/version.hpp"
#include "security/authority.hpp"
#include "security/credential.hpp"

using namespace tessera;
namespace asio = boost::asio;
using Local = asio::local::stream_protocol;

namespace {

constexpr auto kConnTimeout = std::chrono::seconds(5);
constexpr size_t kMaxConns = 256;  // connections served at once; more wait in the backlog

uint64_t wall_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

struct Agent {
  asio::io_context io;
  Local::acceptor acceptor{io};
  security::NodeSigner signer;
  size_t live = 0;
  uint64_t served = 0;
  explicit Agent(security::NodeSigner s) : signer(std::move(s)) {}
};

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(Agent& a, Local::socket s) : a_(a), sock_(std::move(s)), timer_(a.io) { ++a_.live; }
  ~Conn() { --a_.live; }

  void start() {
    auto self = shared_from_this();
    timer_.expires_after(kConnTimeout);
    timer_.async_wait([self](boost::system::error_code ec) {
      if (!ec) self->sock_.close();  // a peer that does not finish in time is dropped
    });
    asio::async_read(sock_, asio::buffer(req_), [self](boost::system::error_code ec, size_t) {
      if (!ec) self->answer();
    });
  }

 private:
  void answer() {
    uint32_t magic = 0;
    std::memcpy(&magic, req_.data(), 4);
    ucred peer{};
    socklen_t len = sizeof(peer);
    uint32_t code = 0;
    if (magic != security::kAgentMagic) {
      code = static_cast<uint32_t>(Errc::protocol);
      body_ = "not a credential request";
    } else if (::getsockopt(sock_.native_handle(), SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) {
      code = static_cast<uint32_t>(Errc::internal);
      body_ = std::string("SO_PEERCRED: ") + std::strerror(errno);
    } else {
      security::BodyHash h{};
      std::memcpy(h.data(), req_.data() + 4, h.size());
      auto c = security::credential_for(peer.uid, peer.gid, static_cast<uint32_t>(peer.pid),
                                        a_.signer.node(), h, wall_ms());
      body_ = a_.signer.sign(c);
      ++a_.served;
    }
    uint32_t head[2] = {code, static_cast<uint32_t>(body_.size())};
    std::memcpy(out_head_.data(), head, sizeof(head));
    auto self = shared_from_this();
    std::array<asio::const_buffer, 2> out{asio::buffer(out_head_), asio::buffer(body_)};
    asio::async_write(sock_, out, [self](boost::system::error_code, size_t) {
      self->timer_.cancel();
      boost::system::error_code ignored;
      self->sock_.close(ignored);
    });
  }

  Agent& a_;
  Local::socket sock_;
  asio::steady_timer timer_;
  std::array<uint8_t, 4 + sizeof(security::BodyHash)> req_{};
  std::array<uint8_t, 8> out_head_{};
  std::string body_;
};

void accept_loop(Agent& a) {
  a.acceptor.async_accept([&a](boost::system::error_code ec, Local::socket s) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      if (a.live >= kMaxConns) {
        boost::system::error_code ignored;
        s.close(ignored);  // shed load rather than grow without bound
      } else {
        std::make_shared<Conn>(a, std::move(s))->start();
      }
    }
    accept_loop(a);
  });
}

int die(const std::string& msg) {
  std::fprintf(stderr, "tessera-agent: %s\n", msg.c_str());
  return 2;
}

std::string host_name() {
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  return host;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "tessera-agent: vouches for the users of this node to Tessera (SO_PEERCRED + a "
      "signature with the node's key)"};
  app.set_version_flag("--version", fmt::format("tessera-agent {}", tessera::version()));
  app.option_defaults()->always_capture_default();
  std::string socket_path = security::kDefaultAgentSocket;
  std::string key_path = "/etc/tessera/node.key";
  std::string public_path;
  std::string node = host_name();
  bool keygen = false;
  std::string log_level = "info";
  app.add_option("--socket", socket_path, "Unix socket to listen on (users reach it)");
  app.add_option("--node-key", key_path, "this node's secret key (mode 0600)");
  app.add_option("--node", node, "this node's name (engines know its public key as NODE.pub)");
  app.add_flag("--keygen", keygen, "make a new key pair (--node-key and --public-key) and exit");
  app.add_option("--public-key", public_path,
                 "--keygen: where the public key goes (copy it to every management service "
                 "host's node_keys directory as NODE.pub)");
  app.add_option("--log-level", log_level, "debug, info, warn, error or off")
      ->check(CLI::IsMember({"debug", "info", "warn", "error", "off"}));
  CLI11_PARSE(app, argc, argv);
  log::set_level(log::parse_level(log_level));
  log::set_thread_name("agent");

  if (keygen) {
    if (public_path.empty()) return die("--keygen needs --public-key FILE");
    Status st = security::NodeSigner::generate(key_path, public_path);
    if (!st.is_ok()) return die(st.to_string());
    std::printf("node key pair made: secret %s, public %s\n", key_path.c_str(),
                public_path.c_str());
    return 0;
  }
  auto signer = security::NodeSigner::load(key_path, node);
  if (!signer) return die(signer.status().to_string());

  Agent a(std::move(*signer));
  // A socket file left by an earlier agent is replaced; anything else at the path is not.
  struct stat st {};
  if (::lstat(socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return die(socket_path + " exists and is not a socket");
    ::unlink(socket_path.c_str());
  }
  boost::system::error_code ec;
  a.acceptor.open(Local(), ec);
  if (!ec) a.acceptor.bind(Local::endpoint(socket_path), ec);
  if (!ec) a.acceptor.listen(128, ec);
  if (ec) return die("cannot listen on " + socket_path + ": " + ec.message());
  ::chmod(socket_path.c_str(), 0666);  // every user may ask; the kernel says who they are
  std::signal(SIGPIPE, SIG_IGN);
  asio::signal_set sigs(a.io, SIGINT, SIGTERM);
  sigs.async_wait([&a](boost::system::error_code, int) {
    boost::system::error_code ignored;
    a.acceptor.close(ignored);
    a.io.stop();
  });
  accept_loop(a);
  log::info("tessera-agent {}: node {} vouching on {}", version(), a.signer.node(), socket_path);
  a.io.run();
  ::unlink(socket_path.c_str());
  log::info("tessera-agent: stopped after {} credentials", a.served);
  return 0;
}

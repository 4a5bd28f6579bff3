#include "security/authority.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "core/log.hpp"

namespace tessera::security {

namespace {
std::mutex g_mu;
bool g_set = false;
Authority g_default;

Authority from_environment() {
  std::shared_ptr<const SystemKey> key;
  if (const char* p = std::getenv("TESSERA_SYSTEM_KEY"); p != nullptr && *p != '\0') {
    auto k = SystemKey::load(p);
    if (k) {
      key = std::move(*k);
    } else if (k.status().code() != Errc::permission) {
      log::warn("$TESSERA_SYSTEM_KEY: {}", k.status().to_string());
    }
  }
  const char* a = std::getenv("TESSERA_AGENT");
  return Authority(std::move(key), a != nullptr && *a != '\0' ? a : kDefaultAgentSocket);
}

// Waits until `fd` is ready for `events` or the deadline passes.
bool wait_fd(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

Status io_all(int fd, void* buf, size_t len, bool write,
              std::chrono::steady_clock::time_point deadline, const std::string& socket) {
  auto* p = static_cast<uint8_t*>(buf);
  size_t done = 0;
  while (done < len) {
    if (!wait_fd(fd, write ? POLLOUT : POLLIN, deadline)) {
      return Status(Errc::timeout, fmt::format("the tessera agent at {} did not answer", socket));
    }
    ssize_t n = write ? ::send(fd, p + done, len - done, MSG_NOSIGNAL)
                      : ::recv(fd, p + done, len - done, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      return Status(Errc::unreachable,
                    fmt::format("the tessera agent at {} closed the connection", socket));
    }
    done += static_cast<size_t>(n);
  }
  return Status();
}
}  // namespace

Authority default_authority() {
  std::lock_guard<std::mutex> g(g_mu);
  if (!g_set) {
    g_default = from_environment();
    g_set = true;
  }
  return g_default;
}

void set_default_authority(Authority a) {
  std::lock_guard<std::mutex> g(g_mu);
  g_default = std::move(a);
  g_set = true;
}

Status Authority::sign(Message& m, std::chrono::milliseconds timeout) const {
  if (key_ != nullptr || agent_.empty()) return Status();
  auto c = request_credential(agent_, hash_body(m.body.span()), timeout);
  if (!c) return c.status();
  m.cred = std::move(*c);
  return Status();
}

Result<std::string> request_credential(const std::string& socket, const BodyHash& h,
                                       std::chrono::milliseconds timeout) {
  sockaddr_un sa{};
  if (socket.size() >= sizeof(sa.sun_path)) {
    return Status(Errc::invalid_argument, fmt::format("agent socket path too long: {}", socket));
  }
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, socket.c_str(), socket.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Status(Errc::internal, fmt::format("socket: {}", std::strerror(errno)));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Status st;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 && errno != EINPROGRESS) {
    st = Status(Errc::unreachable, fmt::format("cannot reach the tessera agent at {}: {} (is "
                                               "tessera-agent running? $TESSERA_AGENT names "
                                               "its socket)",
                                               socket, std::strerror(errno)));
  }
  uint8_t req[4 + sizeof(BodyHash)];
  std::memcpy(req, &kAgentMagic, 4);
  std::memcpy(req + 4, h.data(), h.size());
  uint32_t head[2] = {0, 0};
  if (st.is_ok()) st = io_all(fd, req, sizeof(req), true, deadline, socket);
  if (st.is_ok()) st = io_all(fd, head, sizeof(head), false, deadline, socket);
  if (st.is_ok() && (head[1] > kAgentMaxReply || head[0] > static_cast<uint32_t>(Errc::kLast))) {
    st = Status(Errc::protocol,
                fmt::format("malformed answer from the tessera agent at {}", socket));
  }
  std::string body(st.is_ok() ? head[1] : 0, '\0');
  if (st.is_ok() && !body.empty())
    st = io_all(fd, body.data(), body.size(), false, deadline, socket);
  ::close(fd);
  if (!st.is_ok()) return st;
  if (head[0] != 0) {
    return Status(static_cast<Errc>(head[0]), fmt::format("tessera agent: {}", body));
  }
  return body;
}

}  // namespace tessera::security

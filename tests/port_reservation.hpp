// A TCP port held for a server that restarts on it (tests only).
//
// A server restarted on its old port finds it taken if, while it was down, anything on the
// machine was given that port by the kernel: a connection's local port, or a socket bound to
// port 0. So the port is held for the life of this object by a socket bound to it with
// SO_REUSEADDR that never listens: the kernel hands out no port so held, and the server, whose
// listening socket also sets SO_REUSEADDR, binds and listens beside it.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "core/status.hpp"

namespace tessera::testing {

class PortReservation {
 public:
  // A free port on `host` (an IPv4 address), held until this is destroyed.
  static Result<std::unique_ptr<PortReservation>> make(const std::string& host) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    if (::inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) {
      return Status(Errc::invalid_argument, "not an IPv4 address: " + host);
    }
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Status(Errc::io_error, std::string("socket: ") + std::strerror(errno));
    int one = 1;
    socklen_t len = sizeof(a);
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      Status st(Errc::io_error, std::string("cannot reserve a port: ") + std::strerror(errno));
      ::close(fd);
      return st;
    }
    return std::unique_ptr<PortReservation>(new PortReservation(fd, ntohs(a.sin_port)));
  }
  ~PortReservation() { ::close(fd_); }
  PortReservation(const PortReservation&) = delete;
  PortReservation& operator=(const PortReservation&) = delete;

  uint16_t port() const { return port_; }

 private:
  PortReservation(int fd, uint16_t port) : fd_(fd), port_(port) {}
  int fd_;
  uint16_t port_;
};

}  // namespace tessera::testing

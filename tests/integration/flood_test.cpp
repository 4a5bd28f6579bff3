// A flood against one engine: 300 connections of random bytes and huge length prefixes to its
// control port and to its fabric port, 300 connections that never speak, and 10,000 malformed
// frames on the fabric. The engine stays up, its resident memory and its log stay bounded,
// and valid requests are served during the flood.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>

#include "client/client.hpp"
#include "client/mgmt_client.hpp"
#include "net/frame.hpp"
#include "tests/integration/raw_peer.hpp"
#include "tests/integration/server_process.hpp"
#include "tests/integration/serving.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using namespace tessera::testing;

namespace {

// A field of /proc/PID/status in KiB ("VmRSS:", "VmSize:").
uint64_t status_kib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::stoull(line.substr(field.size()));
  }
  return 0;
}

int connect_to(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return fd;
}

// Random bytes, or a preamble that claims huge lengths (then a little garbage).
std::string hostile_bytes(std::mt19937_64& rng, bool huge) {
  std::string out;
  if (huge) {
    net::Preamble pre;
    if (rng() % 2 == 0) {  // absurd lengths
      pre.kind = static_cast<net::FrameKind>(rng() % 3);
      pre.env_len = 0xfffffff8u;
      pre.body_len = static_cast<uint32_t>(rng());
      pre.bulk_len = 0xffffffffu;
    } else {  // a plausible frame with a 200 MiB bulk that never comes
      pre.env_len = 64;
      pre.bulk_len = 200u << 20;
    }
    out.assign(reinterpret_cast<const char*>(&pre), sizeof(pre));
  }
  size_t n = 1 + rng() % 4096;
  for (size_t i = 0; i < n; ++i) out.push_back(static_cast<char>(rng()));
  return out;
}

// 300 connections to `port` (half random bytes, half huge length prefixes), held open.
std::vector<int> flood_connections(uint16_t port, std::mt19937_64& rng) {
  std::vector<int> fds;
  for (int i = 0; i < 300; ++i) {
    int fd = connect_to(port);
    if (fd < 0) continue;
    std::string b = hostile_bytes(rng, i % 2 == 1);
    (void)!::send(fd, b.data(), b.size(), MSG_NOSIGNAL);
    fds.push_back(fd);
  }
  return fds;
}

// The port of a raw tcp fabric address (a sockaddr_in).
uint16_t fabric_port(const std::string& raw) {
  sockaddr_in a{};
  if (raw.size() < sizeof(a)) return 0;
  std::memcpy(&a, raw.data(), sizeof(a));
  return a.sin_family == AF_INET ? ntohs(a.sin_port) : 0;
}

uint16_t port_of(const std::string& text) {
  std::smatch m;
  std::regex re(":([0-9]+)$");
  return std::regex_search(text, m, re) ? static_cast<uint16_t>(std::stoi(m[1])) : 0;
}

}  // namespace

TEST(Flood, TheEngineStaysUpBoundedAndServingUnderGarbage) {
  TempDir dir;
  auto o = ServerOptions::in(dir.path());
  o.storage_size = "128M";
  o.extra = {"--rank", "0", "--mgmt-host"};
  ServerProcess server(o);
  ASSERT_TRUE(server.start().is_ok());
  auto sys = query_system(server.address(), std::chrono::seconds(30));
  ASSERT_TRUE(sys.is_ok()) << sys.status().to_string();
  ASSERT_TRUE(serves(server.address(), true));
  const uint64_t rss_before = status_kib(server.pid(), "VmRSS:");
  const uint64_t vm_before = status_kib(server.pid(), "VmSize:");
  const auto log_before = server.log().size();

  std::mt19937_64 rng(2026);
  const uint16_t control = port_of(server.address());
  const uint16_t fabric = fabric_port(sys->targets[0].fabric_addr);
  ASSERT_NE(control, 0);
  ASSERT_NE(fabric, 0);
  auto control_fds = flood_connections(control, rng);
  auto fabric_fds = flood_connections(fabric, rng);
  std::vector<int> silent;
  for (int i = 0; i < 300; ++i) {
    int fd = connect_to(control);
    if (fd >= 0) silent.push_back(fd);
  }
  EXPECT_TRUE(serves(server.address(), true))
      << "not serving while 900 hostile connections are open";
  // Nothing is allocated for a frame before its lengths pass the control socket's bounds.
  const uint64_t vm_during = status_kib(server.pid(), "VmSize:");

  // 10,000 malformed frames on the fabric: random bytes, frames with the magic and garbage
  // after it, and chunks of messages in pieces that never complete.
  RawPeer peer("tcp;ofi_rxm");
  ASSERT_TRUE(peer.status.is_ok()) << peer.status.to_string();
  const std::string addr = sys->targets[0].fabric_addr;
  for (int round = 0; round < 10; ++round) {
    run_on(peer.target, [&] {
      for (int i = 0; i < 1000; ++i) {
        Buffer junk(net::kPreambleSize + rng() % 2048);
        for (size_t k = 0; k < junk.size(); ++k) junk.data()[k] = static_cast<uint8_t>(rng());
        if (i % 3 != 0) {
          net::Preamble pre;
          pre.kind = net::FrameKind::cont;
          pre.sender = rng();
          pre.msg_id = rng();
          pre.bulk_len = static_cast<uint32_t>(junk.size() - net::kPreambleSize);
          pre.crc = i % 3 == 1 ? 0 : static_cast<uint32_t>(rng());
          std::memcpy(junk.data(), &pre, sizeof(pre));
        }
        (void)peer.ep->send_raw(addr, std::move(junk));
        if (i % 64 == 0) boost::this_fiber::yield();
      }
    });
    EXPECT_TRUE(serves(server.address(), true)) << "not serving during the frame flood";
  }
  for (int fd : control_fds) ::close(fd);
  for (int fd : fabric_fds) ::close(fd);
  for (int fd : silent) ::close(fd);

  EXPECT_TRUE(serves(server.address(), true));
  ASSERT_TRUE(server.alive());
  const uint64_t rss_after = status_kib(server.pid(), "VmRSS:");
  const auto log_grew = server.log().size() - log_before;
  std::printf(
      "flood: engine resident %lu KiB before, %lu KiB after; virtual %lu KiB before, "
      "%lu KiB with 900 hostile connections open; log grew %zu bytes\n",
      static_cast<unsigned long>(rss_before), static_cast<unsigned long>(rss_after),
      static_cast<unsigned long>(vm_before), static_cast<unsigned long>(vm_during), log_grew);
  EXPECT_LT(vm_during, vm_before + 4 * 1024 * 1024) << "frames allocated before their bounds";
  // Bounded: the reassembly budget and the control socket's limits, not the flood's size.
  EXPECT_LT(rss_after, rss_before + 512 * 1024) << "resident memory grew without bound";
  EXPECT_LT(log_grew, 256u * 1024) << "the log grew with the flood";
}

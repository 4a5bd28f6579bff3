// A real tessera-server (2 targets on 127.0.0.1) driven through libtessera.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "client/client.hpp"
#include "tests/integration/server_process.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using namespace tessera::testing;

namespace {

// Deterministic value for key i: size and bytes derive from i.
std::string value_for(uint64_t i, size_t max = 2000) {
  std::mt19937_64 rng(i * 7919 + 1);
  std::string v(1 + rng() % max, '\0');
  for (auto& c : v) c = static_cast<char>(rng());
  return v;
}

ObjectId oid_for(uint64_t i) {
  return ObjectId{0x1000, i % 500};
}
std::string dkey_for(uint64_t i) {
  return "d" + std::to_string(i % 37);
}
std::string akey_for(uint64_t i) {
  return "a" + std::to_string(i);
}

struct Param {
  const char* provider;
  const char* backend;
};
[[maybe_unused]] void PrintTo(const Param& p, std::ostream* os) {
  *os << p.provider << "/" << p.backend;
}

class EngineTest : public ::testing::TestWithParam<Param> {};

}  // namespace

TEST_P(EngineTest, TenThousandSmallUpdatesAndA64MiBExtentReadBackExactly) {
  TempDir dir;
  ServerOptions so;
  so.dir = dir.path();
  so.provider = GetParam().provider;
  so.backend = GetParam().backend;
  ServerProcess server(so);
  ASSERT_TRUE(server.start().is_ok());
  ClientOptions co;
  co.engine = server.address();
  auto c = Client::connect(co);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  Client& cl = **c;
  ASSERT_EQ(cl.system().targets.size(), 2u);
  EXPECT_EQ(cl.system().provider, GetParam().provider);

  constexpr uint64_t kUpdates = 10000;
  constexpr size_t kWindow = 64;
  std::deque<Client::Future<uint64_t>> inflight;
  for (uint64_t i = 0; i < kUpdates; ++i) {
    std::string v = value_for(i);
    inflight.push_back(cl.update_async(oid_for(i), dkey_for(i), akey_for(i), ValueKind::single, 0,
                                       Buffer(v.data(), v.size())));
    if (inflight.size() == kWindow) {
      auto r = inflight.front().get();
      ASSERT_TRUE(r.is_ok()) << r.status().to_string();
      inflight.pop_front();
    }
  }
  for (auto& f : inflight) ASSERT_TRUE(f.get().is_ok());
  inflight.clear();

  // One 64 MiB array extent, written at an odd offset so it is not block aligned.
  constexpr size_t kBig = 64u << 20;
  Buffer big(kBig);
  std::mt19937_64 rng(99);
  for (size_t i = 0; i < kBig; i += 8) {
    uint64_t x = rng();
    std::memcpy(big.data() + i, &x, 8);
  }
  std::string big_copy(big.view());
  auto e =
      cl.update_async({0x2000, 1}, "big", "extent", ValueKind::array, 12345, std::move(big)).get();
  ASSERT_TRUE(e.is_ok()) << e.status().to_string();

  std::deque<std::pair<uint64_t, Client::Future<FetchResult>>> reads;
  auto check = [&](std::pair<uint64_t, Client::Future<FetchResult>>& p) {
    auto r = p.second.get();
    ASSERT_TRUE(r.is_ok()) << p.first << ": " << r.status().to_string();
    ASSERT_TRUE(r->data.view() == value_for(p.first)) << "value " << p.first << " differs";
  };
  for (uint64_t i = 0; i < kUpdates; ++i) {
    reads.emplace_back(i, cl.fetch_async(oid_for(i), dkey_for(i), akey_for(i), ValueKind::single));
    if (reads.size() == kWindow) {
      check(reads.front());
      reads.pop_front();
    }
  }
  for (auto& p : reads) check(p);

  auto rb = cl.fetch({0x2000, 1}, "big", "extent", ValueKind::array, 12345, kBig);
  ASSERT_TRUE(rb.is_ok()) << rb.status().to_string();
  ASSERT_EQ(rb->data.size(), kBig);
  EXPECT_TRUE(rb->data.view() == big_copy);
  EXPECT_TRUE(rb->holes.empty());
  auto head = cl.fetch({0x2000, 1}, "big", "extent", ValueKind::array, 0, 12345 + 10);
  ASSERT_TRUE(head.is_ok());
  ASSERT_EQ(head->holes.size(), 1u);
  EXPECT_EQ(head->holes[0], (std::pair<uint64_t, uint64_t>{0, 12345}));

  auto objects = cl.list_all(ListScope::objects);
  ASSERT_TRUE(objects.is_ok());
  EXPECT_EQ(objects->size(), 501u);
  auto dkeys = cl.list_all(ListScope::dkeys, oid_for(0));
  ASSERT_TRUE(dkeys.is_ok());
  EXPECT_EQ(dkeys->size(), 20u);  // keys i with i % 500 == 0 spread over d(i % 37)

  c->reset();
  EXPECT_EQ(server.terminate(), 0) << server.log();  // clean shutdown on SIGTERM
  EXPECT_NE(server.log().find("stopped"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Providers, EngineTest,
                         ::testing::Values(Param{"tcp;ofi_rxm", "uring"}, Param{"shm", "aio"}),
                         [](const auto& info) {
                           return std::string(info.param.provider[0] == 's' ? "shm" : "tcp_rxm") +
                                  "_" + info.param.backend;
                         });

// What a running 2-target engine looks like from the outside (/proc): each target thread pinned
// to its own CPU, one io_uring instance per target, libfabric mapped.
TEST(EngineShape, TargetsArePinnedAndOwnAnIoUringEach) {
  TempDir dir;
  ServerProcess server(ServerOptions::in(dir.path()));
  ASSERT_TRUE(server.start().is_ok());
  auto sys = query_system(server.address(), std::chrono::seconds(10));
  ASSERT_TRUE(sys.is_ok());
  const std::string proc = "/proc/" + std::to_string(server.pid());
  std::set<std::string> cpus;
  for (const auto& t : sys->targets) {
    std::ifstream comm(proc + "/task/" + std::to_string(t.tid) + "/comm");
    std::string name;
    std::getline(comm, name);
    EXPECT_EQ(name, "tgt-" + std::to_string(t.index));
    std::ifstream st(proc + "/task/" + std::to_string(t.tid) + "/status");
    std::string line, allowed;
    while (std::getline(st, line)) {
      if (line.rfind("Cpus_allowed_list:", 0) == 0) allowed = line.substr(line.find('\t') + 1);
    }
    EXPECT_EQ(allowed, std::to_string(t.cpu)) << "target " << t.index;
    cpus.insert(allowed);
    EXPECT_EQ(t.backend, "uring");
  }
  EXPECT_EQ(cpus.size(), 2u);  // one CPU each
  int rings = 0;
  for (const auto& e : std::filesystem::directory_iterator(proc + "/fd")) {
    std::error_code ec;
    auto target = std::filesystem::read_symlink(e.path(), ec);
    if (!ec && target.string() == "anon_inode:[io_uring]") ++rings;
  }
  EXPECT_EQ(rings, 2);
  std::ifstream maps(proc + "/maps");
  std::stringstream ss;
  ss << maps.rdbuf();
  EXPECT_NE(ss.str().find("libfabric"), std::string::npos);
}

// An engine restarted on its control port (engines and clients know it by that address) must
// find it free: while it is down nothing else may be given the port, neither a socket that
// binds it nor one the kernel gives any free port to (the engine's own fabric endpoints, which
// start before its control socket).
TEST(EngineRestart, AStoppedEnginesControlPortIsHeldForItsRestart) {
  TempDir dir;
  ServerOptions so = ServerOptions::in(dir.path());
  so.targets = 1;
  so.storage_size = "64M";
  ServerProcess server(so);
  ASSERT_TRUE(server.start().is_ok());
  const std::string addr = server.address();
  const auto port = static_cast<uint16_t>(std::stoi(addr.substr(addr.rfind(':') + 1)));
  ASSERT_EQ(server.terminate(), 0);

  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  const int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  const int err = errno;
  ::close(fd);
  EXPECT_NE(rc, 0) << "port " << port << " of a stopped engine could be bound by another socket";
  EXPECT_EQ(err, EADDRINUSE);

  Status st = server.start();
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(server.address(), addr);
  ClientOptions co;
  co.engine = server.address();
  auto c = Client::connect(co);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
}

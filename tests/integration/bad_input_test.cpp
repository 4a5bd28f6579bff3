// Bad input against a live engine: garbage frames, malformed bodies, unknown methods, bad
// config, a full device. Each gets a clear error and the engine keeps serving.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <fstream>
#include <random>

#include "proto/protocol.hpp"
#include "client/client.hpp"
#include "tests/integration/raw_peer.hpp"
#include "tests/integration/server_process.hpp"
#include "tests/integration/serving.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using namespace tessera::testing;


TEST(BadInput, GarbageFramesOnTheFabricAreLoggedAndTheEngineAnswersTheNextRequest) {
  TempDir dir;
  ServerProcess server(ServerOptions::in(dir.path()));
  ASSERT_TRUE(server.start().is_ok());
  auto sys = query_system(server.address(), std::chrono::seconds(10));
  ASSERT_TRUE(sys.is_ok());
  RawPeer peer("tcp;ofi_rxm");
  ASSERT_TRUE(peer.status.is_ok()) << peer.status.to_string();
  const std::string addr = sys->targets[0].fabric_addr;
  run_on(peer.target, [&] {
    std::mt19937_64 rng(17);
    for (int i = 0; i < 20; ++i) {
      Buffer junk(1 + rng() % 5000);
      for (size_t k = 0; k < junk.size(); ++k) junk.data()[k] = static_cast<uint8_t>(rng());
      if (i % 2 == 0 && junk.size() >= 4) std::memcpy(junk.data(), "TSRA", 4);
      ASSERT_TRUE(peer.ep->send_raw(addr, std::move(junk)).is_ok());
    }
  });
  // A well-framed request whose body is not the schema it claims, and an unknown method.
  peer.rt.set_route(sys->rank, 0, addr);
  auto bad_body = run_on(peer.target, [&] {
    Message m;
    m.dst = ActorAddr{sys->rank, 0, proto::kObjectServiceActor};
    m.protocol = proto::kProtoObject;
    m.method = proto::kObjUpdate;
    uint64_t words[3] = {~0ull, ~0ull, ~0ull};
    m.body = Buffer(words, sizeof(words));
    return peer.rt.ask(std::move(m), std::chrono::seconds(10));
  });
  ASSERT_TRUE(bad_body.is_ok()) << bad_body.status().to_string() << "\n" << server.log();
  EXPECT_EQ(bad_body->status, Errc::protocol);
  auto bad_method = run_on(peer.target, [&] {
    Message m;
    m.dst = ActorAddr{sys->rank, 0, proto::kObjectServiceActor};
    m.protocol = proto::kProtoObject;
    m.method = 999;
    return peer.rt.ask(std::move(m), std::chrono::seconds(10));
  });
  ASSERT_TRUE(bad_method.is_ok());
  EXPECT_EQ(bad_method->status, Errc::protocol);
  EXPECT_NE(bad_method->error.find("unknown object method 999"), std::string::npos);

  EXPECT_TRUE(serves(server.address()));
  EXPECT_TRUE(server.alive());
  std::string log = server.log();
  EXPECT_NE(log.find("dropping malformed frame"), std::string::npos) << log;
  EXPECT_NE(log.find("malformed request body"), std::string::npos) << log;
}

TEST(BadInput, GarbageOnTheControlSocketIsLoggedAndTheEngineKeepsServing) {
  TempDir dir;
  ServerProcess server(ServerOptions::in(dir.path()));
  ASSERT_TRUE(server.start().is_ok());
  for (int round = 0; round < 3; ++round) {
    boost::asio::io_context io;
    boost::asio::ip::tcp::socket s(io);
    s.connect({boost::asio::ip::make_address("127.0.0.1"),
               static_cast<uint16_t>(std::stoi(server.address().substr(10)))});
    std::string junk =
        round == 0 ? std::string(100, 'x') : std::string("TSRA") + std::string(60, '\xff');
    boost::asio::write(s, boost::asio::buffer(junk));
    char c;
    boost::system::error_code ec;
    s.read_some(boost::asio::buffer(&c, 1), ec);  // the engine closes the connection
    EXPECT_TRUE(ec);
  }
  EXPECT_TRUE(serves(server.address()));
  EXPECT_NE(server.log().find("control socket: dropping malformed frame"), std::string::npos);
}

TEST(BadInput, WrongConfigurationIsRefusedWithAClearMessage) {
  struct Case {
    std::vector<std::string> args;
    std::string expect;
  };
  TempDir dir;
  std::string cfg = dir.file("bad.yaml");
  { std::ofstream(cfg) << "targets: 2\nstorage_sise: 1G\n"; }
  std::vector<Case> cases = {
      {{"--provider", "carrier-pigeon"}, "provider 'carrier-pigeon' is not supported"},
      {{"--targets", "0"}, "targets must be between 1 and 64"},
      {{"--storage-size", "12Q"}, "unknown size suffix"},
      {{"--cpus", "0,77"}, "cpu 77 does not exist"},
      {{"--config", cfg}, "unknown config key 'storage_sise'"},
      {{"--config", dir.file("missing.yaml")}, "cannot read config file"},
      {{"--storage-dir", "/proc/tessera-nope"}, "cannot create storage directory"},
      {{"--listen", "not-an-address"}, "is not host:port"},
      {{"--metrics", "nowhere"}, "metrics: 'nowhere' is not host:port (or 'off')"},
      {{"--metrics", "10.255.255.1:9464"}, "cannot serve metrics on 10.255.255.1:9464"},
      {{"--no-key"}, "no system key"},
      {{"--system-key", dir.file("missing.key")}, "cannot open key file"},
  };
  for (auto& c : cases) {
    std::string cmd = std::string(TESSERA_SERVER_BIN);
    auto has = [&](const char* f) {
      return std::find(c.args.begin(), c.args.end(), f) != c.args.end();
    };
    if (!has("--listen")) cmd += " --listen 127.0.0.1:0";
    if (!has("--storage-dir")) cmd += " --storage-dir " + dir.path();
    if (!has("--storage-size")) cmd += " --storage-size 64M";
    if (!has("--system-key") && !has("--no-key")) cmd += " --system-key " + test_system_key();
    for (auto& a : c.args) {
      if (a != "--no-key") cmd += " '" + a + "'";
    }
    auto [code, out] = run_command({"/bin/sh", "-c", cmd + " 2>&1"});
    EXPECT_NE(code, 0) << cmd;
    EXPECT_NE(out.find(c.expect), std::string::npos) << cmd << "\n" << out;
  }
}

TEST(BadInput, FullDeviceSaysNoSpaceAndKeepsEarlierData) {
  TempDir dir;
  ServerOptions so = ServerOptions::in(dir.path());
  so.targets = 1;
  so.storage_size = "64M";
  so.extra = {"--wal-size", "16M"};
  ServerProcess server(so);
  ASSERT_TRUE(server.start().is_ok());
  ClientOptions co;
  co.engine = server.address();
  auto c = Client::connect(co);
  ASSERT_TRUE(c.is_ok());
  std::string mib(1 << 20, 'F');
  auto span = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(mib.data()), mib.size());
  uint64_t n = 0;
  Status last;
  for (; n < 200; ++n) {
    auto r = (*c)->update({1, n}, "d", "a", ValueKind::single, 0, span);
    if (!r) {
      last = r.status();
      break;
    }
  }
  EXPECT_EQ(last.code(), Errc::no_space) << last.to_string();
  EXPECT_NE(last.message().find("data region full"), std::string::npos) << last.message();
  for (uint64_t i = 0; i < n; ++i) {
    auto r = (*c)->fetch({1, i}, "d", "a", ValueKind::single);
    ASSERT_TRUE(r.is_ok());
    EXPECT_TRUE(r->data.view() == mib);
  }
  // Deleting frees nothing by itself (older epochs still see the data); aggregation does.
  ASSERT_TRUE((*c)->punch({1, 0}).is_ok());
  EXPECT_EQ((*c)->update({2, 0}, "d", "a", ValueKind::single, 0, span).status().code(),
            Errc::no_space);
  auto agg = (*c)->aggregate_async(0).get();
  ASSERT_TRUE(agg.is_ok()) << agg.status().to_string();
  EXPECT_EQ(agg->versions_dropped, 1u);
  EXPECT_TRUE((*c)->update({2, 0}, "d", "a", ValueKind::single, 0, span).is_ok());
  EXPECT_TRUE(server.alive());
}

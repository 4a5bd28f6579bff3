// Two fabric endpoints in one process, each on its own target, over every provider we support.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <thread>

#include "core/actor.hpp"
#include "net/fabric.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using tessera::testing::run_on;

namespace {

using Echo = tessera::testing::EchoActor;

struct Node {
  Node(uint32_t rank, const std::string& provider) {
    target = std::make_unique<Target>(RealEnv::instance(), TargetOptions{});
    rt = std::make_unique<ActorRuntime>(*target, rank);
    EXPECT_TRUE(target->start().is_ok());
    status = run_on(*target, [&] {
      net::FabricOptions fo;
      fo.provider = provider;
      fo.max_frame = 256 * 1024;  // small frames: large messages travel in chunks
      auto e = net::FabricEndpoint::open(fo, [this](Message&& m) { rt->deliver(std::move(m)); });
      if (!e) return e.status();
      ep = std::move(*e);
      target->add_poller(ep.get());
      rt->set_transport(ep.get());
      return Status();
    });
  }
  ~Node() {
    target->stop();
    ep.reset();
  }
  std::unique_ptr<Target> target;
  std::unique_ptr<ActorRuntime> rt;
  std::unique_ptr<net::FabricEndpoint> ep;
  Status status;
};

class FabricTest : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(FabricTest, SmallAndChunkedMessagesRoundTrip) {
  Node server(0, GetParam());
  ASSERT_TRUE(server.status.is_ok()) << server.status.to_string();
  Node client(kClientRankBase | 1, GetParam());
  ASSERT_TRUE(client.status.is_ok()) << client.status.to_string();
  Echo echo(*server.rt);
  run_on(*server.target, [&] { server.rt->register_actor(1, &echo); });
  std::string addr = server.ep->address();
  run_on(*client.target, [&] { client.rt->set_route(0, 0, addr); });

  std::mt19937_64 rng(1);
  for (size_t size : {size_t{0}, size_t{8}, size_t{4096}, size_t{200000}, size_t{5u << 20}}) {
    Buffer payload(size);
    for (size_t i = 0; i < size; ++i) payload.data()[i] = static_cast<uint8_t>(rng());
    std::string expect(payload.view());
    auto r = run_on(*client.target, [&] {
      Message m;
      m.dst = ActorAddr{0, 0, 1};
      m.bulk = std::move(payload);
      return client.rt->ask(std::move(m), std::chrono::seconds(20));
    });
    ASSERT_TRUE(r.is_ok()) << size << ": " << r.status().to_string();
    EXPECT_EQ(r->bulk.size(), size);
    EXPECT_TRUE(r->bulk.view() == expect) << "payload of " << size << " bytes differs";
  }
  if (size_t chunks = run_on(*server.target, [&] { return server.ep->stats().frames_in; });
      chunks) {
    EXPECT_GT(chunks, 5u);  // the 5 MiB message arrived in several frames
  }
}

TEST_P(FabricTest, GarbageIsDroppedAndTheEndpointKeepsServing) {
  Node server(0, GetParam());
  ASSERT_TRUE(server.status.is_ok()) << server.status.to_string();
  Node client(kClientRankBase | 2, GetParam());
  ASSERT_TRUE(client.status.is_ok());
  Echo echo(*server.rt);
  run_on(*server.target, [&] { server.rt->register_actor(1, &echo); });
  std::string addr = server.ep->address();
  run_on(*client.target, [&] {
    client.rt->set_route(0, 0, addr);
    std::mt19937_64 rng(3);
    for (int i = 0; i < 50; ++i) {
      Buffer junk(1 + rng() % 3000);
      for (size_t k = 0; k < junk.size(); ++k) junk.data()[k] = static_cast<uint8_t>(rng());
      ASSERT_TRUE(client.ep->send_raw(addr, std::move(junk)).is_ok());
    }
  });
  auto r = run_on(*client.target, [&] {
    Message m;
    m.dst = ActorAddr{0, 0, 1};
    m.bulk = Buffer("still alive", 11);
    return client.rt->ask(std::move(m), std::chrono::seconds(10));
  });
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->bulk.view(), "still alive");
  EXPECT_EQ(run_on(*server.target, [&] { return server.ep->stats().dropped; }), 50u);
}

INSTANTIATE_TEST_SUITE_P(Providers, FabricTest, ::testing::Values("tcp;ofi_rxm", "shm"),
                         [](const auto& info) { return info.param == "shm" ? "shm" : "tcp_rxm"; });

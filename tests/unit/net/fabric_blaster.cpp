// fabric_blaster: a sender for FabricKill tests. Opens a tcp;ofi_rxm endpoint and sends
// self-checking messages (net_test_payload.hpp) to one peer as fast as the provider takes them,
// keeping many in flight, until it is killed.
//
//   fabric_blaster PEER_HEX SENDER_INDEX SEED
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "net/fabric.hpp"
#include "tests/unit/net/net_test_payload.hpp"

using namespace tessera;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: fabric_blaster PEER_HEX SENDER_INDEX SEED\n");
    return 2;
  }
  std::string peer = testing::from_hex(argv[1]);
  uint32_t sender = static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 10));
  std::mt19937_64 rng(std::strtoull(argv[3], nullptr, 10));
  net::FabricOptions fo;
  auto ep = net::FabricEndpoint::open(fo, [](Message&&) {});
  if (!ep) {
    std::fprintf(stderr, "fabric_blaster: %s\n", ep.status().to_string().c_str());
    return 1;
  }
  for (uint32_t seq = 0;; ++seq) {
    Message m;
    m.dst = ActorAddr{0, 0, 1};
    m.bulk = testing::make_payload(sender, seq, testing::payload_size(rng, fo.max_frame));
    Status st = (*ep)->send(peer, std::move(m));
    if (!st.is_ok()) {
      std::fprintf(stderr, "fabric_blaster: %s\n", st.to_string().c_str());
      return 1;
    }
    (*ep)->poll();
  }
}

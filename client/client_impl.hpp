// The client's private parts, shared by client.cpp and container.cpp.
#pragma once

#include <future>

#include "client/client.hpp"
#include "core/actor.hpp"
#include "core/target.hpp"
#include "net/fabric.hpp"

namespace tessera {

struct Client::Impl {
  ClientOptions opts;
  std::unique_ptr<Target> target;
  std::unique_ptr<ActorRuntime> rt;
  std::unique_ptr<net::FabricEndpoint> ep;
  ~Impl() {
    if (target) target->stop();
    ep.reset();
    rt.reset();
  }
};

// Reply decoders shared by the single-engine calls and containers (inside a DecodeScope).
using ListPage = std::pair<std::vector<KeyEntry>, std::string>;
Result<uint64_t> decode_epoch(Message& m);
Result<FetchResult> decode_fetch(Message& m);
Result<ListPage> decode_list(Message& m);

// Runs `fn` on the client target and waits (application threads only).
template <typename F>
void run_on_client(Client::Impl& im, F fn) {
  std::promise<void> p;
  auto f = p.get_future();
  im.target->post([&] {
    fn();
    p.set_value();
  });
  f.wait();
}

}  // namespace tessera

// A bare fabric endpoint on its own target: lets a test speak raw frames and requests to
// engines, as a peer the engines do not know would (or, given the system key, as an engine). The
// runtime routes to the engines of a pool view the test teaches it (mgmt::learn_view).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "core/actor.hpp"
#include "net/fabric.hpp"
#include "tests/test_util.hpp"

namespace tessera::testing {

struct RawPeer {
  // Without `key`, a stranger (a client at most); with the engines' system key, it speaks as
  // one of them (fault injection that needs engine-internal methods).
  explicit RawPeer(const std::string& provider,
                   std::shared_ptr<const security::SystemKey> key = {}) {
    EXPECT_TRUE(target.start().is_ok());
    status = run_on(target, [&] {
      net::FabricOptions fo;
      fo.provider = provider;
      fo.key = key;
      auto e = net::FabricEndpoint::open(fo, [this](Message&& m) { rt.deliver(std::move(m)); });
      if (!e) return e.status();
      ep = std::move(*e);
      target.add_poller(ep.get());
      rt.set_transport(ep.get());
      return Status();
    });
  }
  ~RawPeer() {
    target.stop();
    ep.reset();
  }
  Target target{RealEnv::instance(), TargetOptions{}};
  ActorRuntime rt{target, kClientRankBase | 77};
  std::unique_ptr<net::FabricEndpoint> ep;
  Status status;
};

}  // namespace tessera::testing

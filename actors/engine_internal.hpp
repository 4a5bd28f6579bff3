// Private to the Engine's files (engine.cpp: targets, pools; engine_mgmt.cpp: its requests to
// the management service, rebuild; engine_cont.cpp: container-wide operations): one target's
// slot and the control threads' way into it.
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>

#include "actors/engine.hpp"
#include "actors/object_service.hpp"
#include "actors/swim.hpp"
#include "net/fabric.hpp"
#include "shard/pool_shard.hpp"
#include "storage/store.hpp"

namespace tessera {

struct Engine::Slot {
  std::unique_ptr<Target> target;
  std::unique_ptr<ActorRuntime> rt;
  std::unique_ptr<storage::TargetStore> store;
  std::unique_ptr<net::FabricEndpoint> ep;
  std::unique_ptr<ObjectService> svc;
  std::unique_ptr<SwimActor> swim;  // target 0 only
  TargetPools pools;                // target thread only
  std::string backend;
  std::string path;
  std::string fabric_addr;
};

// Runs `fn` in a fiber on a target and waits (control threads only) for what it returns. The
// fiber owns `fn`: a wait that times out leaves it nothing of the caller's to touch.
template <typename F>
auto post_wait(Target& t, F fn, std::chrono::seconds limit = std::chrono::minutes(10))
    -> decltype(fn()) {
  using R = decltype(fn());
  auto p = std::make_shared<std::promise<R>>();
  auto f = p->get_future();
  t.post([p, fn = std::move(fn)]() mutable { p->set_value(fn()); });
  if (f.wait_for(limit) != std::future_status::ready) {
    return Status(Errc::timeout, fmt::format("target {} did not answer", t.index()));
  }
  return f.get();
}

// The same for a fiber that returns a Status.
template <typename F>
Status run_on(Target& t, F fn) {
  return post_wait(t, std::move(fn));
}

}  // namespace tessera

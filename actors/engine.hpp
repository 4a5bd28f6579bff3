// Engine: one tessera-server process's worth of targets.
//
// Owns N Targets; on each, in its init fiber, it opens the target's block queue and store,
// its fabric endpoint and its ActorRuntime, and registers the ObjectService. start() returns
// once every target is serving (or the first error); stop() stops the targets and then
// destroys what they owned. The Engine object itself is used from the main/control threads;
// the per-target pieces are touched only by their target thread while it runs.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/actor.hpp"
#include "core/buffer.hpp"
#include "core/config.hpp"
#include "core/target.hpp"

namespace tessera {

class Engine {
 public:
  Engine(Env& env, EngineConfig cfg);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  Status start();
  void stop();

  // SystemInfo (actors/schema/system.capnp) as a message body; asks every target for its space.
  Buffer system_info(const std::string& control_addr);
  const EngineConfig& config() const { return cfg_; }
  size_t target_count() const { return slots_.size(); }

 private:
  struct Slot;
  Env& env_;
  EngineConfig cfg_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::shared_ptr<std::vector<ActorRuntime*>> runtimes_;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace tessera

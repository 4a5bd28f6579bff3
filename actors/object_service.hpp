// ObjectService: the actor on every engine target that serves the object protocol against the
// target's store. Created by the Engine inside the target's init fiber; runs on that target's
// thread only; lives as long as the target. Concurrent: every request gets its own fiber, so
// requests overlap while their I/O is in flight.
#pragma once

#include "core/actor.hpp"
#include "storage/store.hpp"

namespace tessera {

class ObjectService final : public Actor {
 public:
  ObjectService(ActorRuntime& rt, storage::TargetStore& store, std::string backend)
      : rt_(rt), store_(store), backend_(std::move(backend)) {}
  void receive(Message& m) override;
  uint64_t rejected() const { return rejected_; }

 private:
  Status handle(Message& m);
  ActorRuntime& rt_;
  storage::TargetStore& store_;
  std::string backend_;
  uint64_t rejected_ = 0;
};

}  // namespace tessera

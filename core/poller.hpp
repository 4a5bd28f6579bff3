// Poller: a completion source that a target reaps (its io_uring ring, its fabric CQ).
//
// Owned by whoever created it; registered with exactly one Target and called only on that
// target's thread. poll() must never block.
#pragma once

#include <cstddef>

namespace tessera {

class Poller {
 public:
  virtual ~Poller() = default;
  // Flushes batched submissions and reaps ready completions. Returns how many events it handled.
  virtual size_t poll() = 0;
  // A file descriptor that turns readable when poll() would find work, or -1 when the source
  // cannot signal (the target then backs off adaptively instead of sleeping indefinitely).
  virtual int wait_fd() = 0;
  // Called right before the target sleeps on wait_fd(); returns false if events are pending and
  // sleeping now could miss them (libfabric's fi_trywait contract).
  virtual bool prepare_to_sleep() { return true; }
};

}  // namespace tessera

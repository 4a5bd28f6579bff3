// BlockingWorkers: a few threads that run jobs which block (a management call over a socket, a
// round trip awaited with Future::get) for a caller that must not wait for them, such as the C
// API's calls started with an event. The queue is bounded: a job beyond it is refused at once,
// never queued. Never used on a target thread (its jobs block).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "core/status.hpp"

namespace tessera {

class BlockingWorkers {
 public:
  // `threads` threads (started at the first job), at most `queue_limit` jobs waiting.
  BlockingWorkers(size_t threads, size_t queue_limit);
  // Runs every job accepted so far to its end, then joins the threads.
  ~BlockingWorkers();
  BlockingWorkers(const BlockingWorkers&) = delete;
  BlockingWorkers& operator=(const BlockingWorkers&) = delete;

  // Queues `job` for a worker thread. Refused, `job` dropped: `busy` when queue_limit jobs wait;
  // `unavailable` when no worker runs and none can be started (the process's thread limit).
  Status submit(std::function<void()> job);
  // Jobs waiting (not yet taken by a thread).
  size_t waiting() const;

 private:
  void run();

  const size_t threads_;
  const size_t queue_limit_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  size_t idle_ = 0;  // threads waiting for a job
  std::vector<std::thread> pool_;
};

}  // namespace tessera

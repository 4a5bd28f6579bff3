#include "core/blocking_workers.hpp"

#include <fmt/format.h>

#include <system_error>
#include <utility>

namespace tessera {

BlockingWorkers::BlockingWorkers(size_t threads, size_t queue_limit)
    : threads_(threads == 0 ? 1 : threads), queue_limit_(queue_limit) {}

BlockingWorkers::~BlockingWorkers() {
  {
    std::lock_guard g(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : pool_) t.join();
}

Status BlockingWorkers::submit(std::function<void()> job) {
  {
    std::lock_guard g(mu_);
    if (stopping_) return Status(Errc::shutdown, "the workers are stopping");
    if (jobs_.size() >= queue_limit_) {
      return Status(Errc::busy,
                    fmt::format("{} calls wait for {} workers already", jobs_.size(), threads_));
    }
    jobs_.push_back(std::move(job));
    // A thread more while fewer run than there are jobs waiting, up to threads_.
    if (pool_.size() < threads_ && jobs_.size() > idle_) {
      try {
        pool_.emplace_back([this] { run(); });
      } catch (const std::system_error& e) {
        // The running workers take the job in turn; with none, nobody would.
        if (pool_.empty()) {
          jobs_.pop_back();
          return Status(Errc::unavailable,
                        fmt::format("cannot start a worker thread: {}", e.what()));
        }
      }
    }
  }
  cv_.notify_one();
  return Status();
}

size_t BlockingWorkers::waiting() const {
  std::lock_guard g(mu_);
  return jobs_.size();
}

void BlockingWorkers::run() {
  std::unique_lock lk(mu_);
  for (;;) {
    ++idle_;
    cv_.wait(lk, [this] { return stopping_ || !jobs_.empty(); });
    --idle_;
    if (jobs_.empty()) return;  // stopping, and every accepted job has run
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    lk.unlock();
    job();
    job = nullptr;  // what it holds goes before the lock is taken again
    lk.lock();
  }
}

}  // namespace tessera

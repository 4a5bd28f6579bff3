#include "core/blocking_workers.hpp"

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

bool BlockingWorkers::submit(std::function<void()> job) {
  {
    std::lock_guard g(mu_);
    if (stopping_ || jobs_.size() >= queue_limit_) return false;
    jobs_.push_back(std::move(job));
    // A thread more while fewer run than there are jobs waiting, up to threads_.
    if (pool_.size() < threads_ && jobs_.size() > idle_) pool_.emplace_back([this] { run(); });
  }
  cv_.notify_one();
  return true;
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

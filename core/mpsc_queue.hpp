// Lock-free multi-producer single-consumer queue of tasks (Vyukov's intrusive node queue).
//
// Any thread may push(); only the owning target thread pops. Used for the target inbox so
// that cross-thread posting never takes a lock.
#pragma once

#include <atomic>
#include <utility>

namespace tessera {

struct TaskNode {
  std::atomic<TaskNode*> next{nullptr};
  virtual ~TaskNode() = default;
  virtual void run() = 0;
};

template <typename F>
struct FnTask final : TaskNode {
  explicit FnTask(F&& f) : fn(std::move(f)) {}
  void run() override { fn(); }
  F fn;
};

class MpscQueue {
 public:
  MpscQueue() : head_(&stub_), tail_(&stub_) {}
  ~MpscQueue() {
    while (TaskNode* n = pop()) delete n;
  }
  MpscQueue(const MpscQueue&) = delete;
  MpscQueue& operator=(const MpscQueue&) = delete;

  void push(TaskNode* n) {
    n->next.store(nullptr, std::memory_order_relaxed);
    TaskNode* prev = head_.exchange(n, std::memory_order_acq_rel);
    prev->next.store(n, std::memory_order_release);
  }

  // Returns nullptr when empty or when a producer is mid-push (it will signal afterwards).
  TaskNode* pop() {
    TaskNode* tail = tail_;
    TaskNode* next = tail->next.load(std::memory_order_acquire);
    if (tail == &stub_) {
      if (next == nullptr) return nullptr;
      tail_ = next;
      tail = next;
      next = next->next.load(std::memory_order_acquire);
    }
    if (next != nullptr) {
      tail_ = next;
      return tail;
    }
    if (tail != head_.load(std::memory_order_acquire)) return nullptr;
    push(&stub_);
    next = tail->next.load(std::memory_order_acquire);
    if (next != nullptr) {
      tail_ = next;
      return tail;
    }
    return nullptr;
  }

  bool maybe_nonempty() const {
    return tail_->next.load(std::memory_order_acquire) != nullptr ||
           head_.load(std::memory_order_acquire) != tail_;
  }

 private:
  struct Stub final : TaskNode {
    void run() override {}
  };
  Stub stub_;
  std::atomic<TaskNode*> head_;
  TaskNode* tail_;
};

}  // namespace tessera

// Target: one OS thread, pinned to one CPU, running a Boost.Fiber scheduler.
//
// Lifecycle: construct, start() spawns and pins the thread and runs the init function in a
// fiber; stop() (or the destructor) asks every fiber loop to end and joins the thread.
// Everything registered with a target (pollers, timers, fibers) lives on its thread; only
// post() and stop() may be called from other threads.
//
// When no fiber is ready the scheduler's algorithm reaps every registered Poller (io_uring
// ring, fabric CQ), fires due timers and drains the inbox; if none has work it sleeps in
// epoll on their file descriptors until the next timer. An idle target therefore uses no CPU.
// busy_poll=true keeps it spinning instead (lower latency, one full core).
#pragma once

#include <boost/fiber/all.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "core/env.hpp"
#include "core/mpsc_queue.hpp"
#include "core/poller.hpp"
#include "core/status.hpp"

namespace tessera {

struct TargetOptions {
  uint32_t index = 0;
  int cpu = -1;  // -1: do not pin
  bool busy_poll = false;
  // After any event, keep polling this long before sleeping: a request that follows closely
  // (the next message of a conversation, a libfabric rendezvous step) then costs no wake-up.
  // An idle target still sleeps; 0 sleeps at once.
  Nanos spin_window = std::chrono::microseconds(100);
  std::string name;                       // thread name; default "tgt-<index>"
  size_t fiber_stack_bytes = 256 * 1024;  // per fiber
};

struct TargetStats {
  uint64_t sleeps = 0;  // times the thread slept in epoll
  uint64_t polls = 0;   // poller sweeps
  uint64_t fibers = 0;  // fibers spawned
  uint64_t tasks = 0;   // inbox tasks run
};

using TimerId = uint64_t;

// Fiber stacks of one target: fixed-size blocks with a guard page (under AddressSanitizer, its
// red zone instead), recycled through a free list
// (target thread only, no locks). A recycled block is unpoisoned for AddressSanitizer before reuse,
// since a finished fiber never unwinds its last frames and would otherwise leave stale poison
// behind.
class FiberStacks {
 public:
  explicit FiberStacks(size_t size) : pool_(std::make_shared<Pool>(size)) {}
  boost::context::stack_context allocate();
  void deallocate(boost::context::stack_context& sc) noexcept;

 private:
  struct Pool {
    explicit Pool(size_t s) : size(s) {}
    ~Pool();
    size_t size;
    std::vector<void*> free;
  };
  std::shared_ptr<Pool> pool_;
};

class Target {
 public:
  Target(Env& env, TargetOptions opts);
  ~Target();
  Target(const Target&) = delete;
  Target& operator=(const Target&) = delete;

  // Starts the thread; `init` runs in the first fiber. Returns once the thread is running.
  Status start(std::function<void()> init = {});
  // Ends the run loop and joins the thread. Idempotent; callable from any other thread.
  void stop();
  bool running() const { return running_.load(); }

  // Thread-safe: run `fn` in a new fiber on this target.
  template <typename F>
  void post(F&& fn) {
    inbox_.push(new FnTask<std::decay_t<F>>(std::forward<F>(fn)));
    wake(false);
  }

  // --- target thread only ---
  template <typename F>
  void spawn(F&& fn) {
    ++stats_.fibers;
    ++live_fibers_;
    boost::fibers::fiber(std::allocator_arg, stack_alloc(), guarded(std::forward<F>(fn))).detach();
  }
  void add_poller(Poller* p);
  void remove_poller(Poller* p);
  TimerId add_timer(Nanos delay, std::function<void()> fn);
  void cancel_timer(TimerId id);
  // Runs `fn` in the main fiber once stop() is requested, before the target waits for its fibers
  // to end: components close their mailboxes and fail pending requests here.
  void on_stop(std::function<void()> fn) { stop_hooks_.push_back(std::move(fn)); }
  // Suspends the calling fiber for `d` of Env time.
  void sleep_for(Nanos d);
  // Suspends the calling fiber on `cv` until it is notified or Env time reaches `deadline`;
  // true once the deadline has passed. As with any condition variable, callers wait in a loop
  // on their condition. Every timed wait on a target goes through here (or sleep_for), never a
  // steady_clock deadline, so a simulation's clock (core/sim_env.hpp) drives them all.
  template <typename Lock>
  bool wait_until(boost::fibers::condition_variable_any& cv, Lock& lk, Nanos deadline) {
    if (env_.now() >= deadline) return true;
    bool fired = false;
    TimerId id = add_timer(deadline - env_.now(), [&cv, &fired] {
      fired = true;
      cv.notify_all();
    });
    cv.wait(lk);
    if (!fired) cancel_timer(id);
    return env_.now() >= deadline;
  }
  bool stopping() const { return stop_.load(std::memory_order_relaxed); }
  // True while the thread sleeps in epoll (any thread): a simulation on
  // virtual time (core/sim_env.hpp) moves its clock only while every target is idle.
  bool idle() const { return sleeping_.load(); }
  // While idle: the Env time of its next timer (Nanos::max() if none), so that a simulation on
  // virtual time jumps to the next thing due instead of stepping through empty time.
  Nanos next_timer() const { return Nanos(next_timer_at_.load()); }

  Env& env() { return env_; }
  uint32_t index() const { return opts_.index; }
  int cpu() const { return opts_.cpu; }
  const std::string& name() const { return opts_.name; }
  pid_t tid() const { return tid_.load(); }
  const TargetStats& stats() const { return stats_; }
  // The target whose thread is calling, or nullptr.
  static Target* current();

  // Used by the scheduler algorithm.
  void reactor_sweep(bool may_sleep, std::chrono::steady_clock::time_point until);
  // Interrupts an epoll sleep. force=false skips the syscall when the target is awake.
  void wake(bool force = false);

 public:
  class Algo;

 private:
  template <typename F>
  auto guarded(F&& fn) {
    return [this, f = std::forward<F>(fn)]() mutable {
      run_guarded(f);
      --live_fibers_;
    };
  }
  template <typename F>
  static void run_guarded(F& f) {
    try {
      f();
    } catch (const std::exception& e) {
      report_fiber_exception(e.what());
    } catch (...) {
      report_fiber_exception("unknown exception");
    }
  }
  static void report_fiber_exception(const char* what);
  FiberStacks stack_alloc() { return *stack_; }
  void thread_main(std::function<void()> init);
  size_t poll_once();
  size_t fire_timers();
  size_t drain_inbox();
  void sleep_until_event(Nanos timeout);

  struct Timer {
    Nanos deadline;
    TimerId id;
    std::function<void()> fn;
    bool operator>(const Timer& o) const { return deadline > o.deadline; }
  };

  Env& env_;
  TargetOptions opts_;
  std::thread thread_;
  std::atomic<bool> running_{false};
  std::atomic<bool> stop_{false};
  std::atomic<bool> sleeping_{false};
  std::atomic<int64_t> next_timer_at_{Nanos::max().count()};  // set before each sleep
  std::atomic<pid_t> tid_{0};
  int epfd_ = -1;
  int wakefd_ = -1;
  MpscQueue inbox_;
  std::vector<Poller*> pollers_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::unordered_set<TimerId> cancelled_;
  TimerId next_timer_ = 1;
  unsigned idle_spins_ = 0;
  std::chrono::steady_clock::time_point last_event_{};  // real time: a CPU heuristic, not logic
  uint64_t live_fibers_ = 0;
  std::vector<std::function<void()>> stop_hooks_;
  std::unique_ptr<FiberStacks> stack_;
  TargetStats stats_;
};

}  // namespace tessera

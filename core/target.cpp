#include "core/target.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/fiber/algo/algorithm.hpp>
#include <boost/fiber/scheduler.hpp>
#include <boost/fiber/type.hpp>
#include <cerrno>
#include <cstring>
#include <future>
// AddressSanitizer, as gcc (__SANITIZE_ADDRESS__) and clang (__has_feature) say it.
#if defined(__SANITIZE_ADDRESS__)
#define TESSERA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TESSERA_ASAN 1
#endif
#endif
#if defined(TESSERA_ASAN)
#include <sanitizer/asan_interface.h>
#endif

#include "core/future.hpp"
#include "core/log.hpp"
#include "core/no_lock.hpp"

namespace tessera {
namespace {
thread_local Target* t_current = nullptr;

}  // namespace

// Round-robin ready queue; when nothing is ready, the dispatcher lands in suspend_until, which
// reaps the target's completion sources and sleeps on their fds. Boost keeps its dispatcher
// context in the ready queue whenever a worker runs, so "is any *worker* ready" is tracked
// separately: the reactor fiber parks only when no worker is.
class Target::Algo final : public boost::fibers::algo::algorithm {
 public:
  explicit Algo(Target* t) : t_(t) {}
  void awakened(boost::fibers::context* ctx) noexcept override {
    ctx->ready_link(rqueue_);
    if (!ctx->is_context(boost::fibers::type::dispatcher_context)) ++workers_ready_;
  }
  boost::fibers::context* pick_next() noexcept override {
    if (rqueue_.empty()) return nullptr;
    boost::fibers::context* ctx = &rqueue_.front();
    rqueue_.pop_front();
    if (!ctx->is_context(boost::fibers::type::dispatcher_context)) --workers_ready_;
    return ctx;
  }
  bool has_ready_fibers() const noexcept override { return !rqueue_.empty(); }
  bool has_ready_workers() const noexcept { return workers_ready_ > 0; }
  void suspend_until(std::chrono::steady_clock::time_point const& until) noexcept override {
    t_->reactor_sweep(true, until);
  }
  void notify() noexcept override { t_->wake(true); }

 private:
  Target* t_;
  boost::fibers::scheduler::ready_queue_type rqueue_;
  size_t workers_ready_ = 0;
};

namespace {
// Per-thread state that the fibers of one target share. Lives on the target thread's stack.
struct ThreadState {
  Target::Algo* algo = nullptr;
  boost::fibers::condition_variable_any reactor_cv;
  bool reactor_parked = false;
  boost::fibers::condition_variable_any main_cv;
};
thread_local ThreadState* t_state = nullptr;
}  // namespace

boost::context::stack_context FiberStacks::allocate() {
  void* base = nullptr;
  if (!pool_->free.empty()) {
    base = pool_->free.back();
    pool_->free.pop_back();
  } else {
    base = std::aligned_alloc(4096, pool_->size);
    if (base == nullptr) throw std::bad_alloc();
#if !defined(TESSERA_ASAN)
    // Guard page at the low end: an overflowing fiber faults instead of corrupting the heap.
    // Under AddressSanitizer the heap block's red zone below it reports an overflow instead,
    // and the block stays readable: the leak checker scans heap blocks, a guard page in one
    // made its scan fault (while a target ran).
    ::mprotect(base, 4096, PROT_NONE);
#endif
  }
#if defined(TESSERA_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(base, pool_->size);
#endif
  boost::context::stack_context sc;
  sc.size = pool_->size;
  sc.sp = static_cast<char*>(base) + pool_->size;
  return sc;
}

void FiberStacks::deallocate(boost::context::stack_context& sc) noexcept {
  void* base = static_cast<char*>(sc.sp) - sc.size;
  try {
    pool_->free.push_back(base);
  } catch (...) {
    std::free(base);
  }
}

FiberStacks::Pool::~Pool() {
  for (void* p : free) {
#if !defined(TESSERA_ASAN)
    ::mprotect(p, 4096, PROT_READ | PROT_WRITE);
#endif
    std::free(p);
  }
}

Target::Target(Env& env, TargetOptions opts) : env_(env), opts_(std::move(opts)) {
  if (opts_.name.empty()) opts_.name = "tgt-" + std::to_string(opts_.index);
}

Target::~Target() {
  stop();
  if (wakefd_ >= 0) ::close(wakefd_);
}

Target* Target::current() {
  return t_current;
}

bool detail::on_target_thread() noexcept {
  return t_current != nullptr;
}

void Target::report_fiber_exception(const char* what) {
  log::error("fiber ended with an exception: {}", what);
}

Status Target::start(std::function<void()> init) {
  if (thread_.joinable()) return Status(Errc::invalid_argument, "target already started");
  std::promise<Status> started;
  auto fut = started.get_future();
  thread_ = std::thread([this, init = std::move(init), p = std::move(started)]() mutable {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    wakefd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epfd_ < 0 || wakefd_ < 0) {
      p.set_value(Status(Errc::internal, fmt::format("epoll/eventfd: {}", strerror(errno))));
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 0;
    epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev);
    if (opts_.cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(opts_.cpu, &set);
      if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0) {
        p.set_value(Status(Errc::invalid_argument,
                           fmt::format("cannot pin {} to CPU {}", opts_.name, opts_.cpu)));
        return;
      }
    }
    pthread_setname_np(pthread_self(), opts_.name.substr(0, 15).c_str());
    log::set_thread_name(opts_.name);
    log::set_deferred(true);  // a target thread never blocks on its log
    tid_ = static_cast<pid_t>(syscall(SYS_gettid));
    p.set_value(Status());
    thread_main(std::move(init));
  });
  Status st = fut.get();
  if (!st.is_ok()) {
    thread_.join();
    return st;
  }
  running_ = true;
  return st;
}

void Target::stop() {
  stop_ = true;
  if (thread_.joinable()) {
    wake(true);
    thread_.join();
  }
  running_ = false;
}

void Target::wake(bool force) {
  if (force || sleeping_.load(std::memory_order_seq_cst)) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wakefd_, &one, sizeof(one));
  }
}

void Target::thread_main(std::function<void()> init) {
  t_current = this;
  ThreadState state;
  t_state = &state;
  auto* algo = new Algo(this);
  state.algo = algo;
  boost::fibers::context::active()->get_scheduler()->set_algo(
      boost::fibers::algo::algorithm::ptr_t(algo));
  stack_ = std::make_unique<FiberStacks>(opts_.fiber_stack_bytes);

  // The reactor fiber keeps completions flowing while other fibers stay ready (for example a
  // fiber yielding in a retry loop); when nothing else is ready it parks and the dispatcher
  // does the reaping (and sleeping) in suspend_until.
  bool reactor_done = false;
  boost::fibers::fiber reactor(std::allocator_arg, stack_alloc(), [this, &state, &reactor_done] {
    NoLock nl;
    while (!reactor_done) {
      size_t n = poll_once();
      if (n == 0 && !state.algo->has_ready_workers()) {
        state.reactor_parked = true;
        while (state.reactor_parked && !reactor_done) state.reactor_cv.wait(nl);
      } else {
        boost::this_fiber::yield();
      }
    }
  });

  if (init) spawn(std::move(init));

  NoLock nl;
  while (!stop_.load()) state.main_cv.wait(nl);
  for (auto& hook : stop_hooks_) hook();
  // Let every fiber notice the stop flag and finish; fibers blocked on I/O complete first.
  // Real time, not Env time: a test's manual clock must not be able to wedge shutdown.
  Nanos waited{0};
  while (live_fibers_ > 0) {
    boost::this_fiber::sleep_for(std::chrono::milliseconds(1));
    waited += std::chrono::milliseconds(1);
    if (waited == std::chrono::seconds(10)) {
      log::warn("{}: {} fibers still running 10 s after stop", opts_.name, live_fibers_);
    }
  }
  reactor_done = true;
  state.reactor_parked = false;
  state.reactor_cv.notify_all();
  reactor.join();
  for (Poller* p : pollers_) {
    if (p->wait_fd() >= 0) epoll_ctl(epfd_, EPOLL_CTL_DEL, p->wait_fd(), nullptr);
  }
  pollers_.clear();
  ::close(epfd_);
  epfd_ = -1;
  t_state = nullptr;
  t_current = nullptr;
}

void Target::add_poller(Poller* p) {
  pollers_.push_back(p);
  int fd = p->wait_fd();
  if (fd >= 0) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = p;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      log::error("{}: epoll_ctl add fd {}: {}", opts_.name, fd, strerror(errno));
    }
  }
}

void Target::remove_poller(Poller* p) {
  std::erase(pollers_, p);
  if (epfd_ >= 0 && p->wait_fd() >= 0) epoll_ctl(epfd_, EPOLL_CTL_DEL, p->wait_fd(), nullptr);
}

TimerId Target::add_timer(Nanos delay, std::function<void()> fn) {
  TimerId id = next_timer_++;
  timers_.push(Timer{env_.now() + delay, id, std::move(fn)});
  return id;
}

void Target::cancel_timer(TimerId id) {
  if (id != 0) cancelled_.insert(id);
}

void Target::sleep_for(Nanos d) {
  boost::fibers::promise<void> p;
  auto f = p.get_future();
  add_timer(d, [&p] { p.set_value(); });
  f.get();
}

size_t Target::fire_timers() {
  size_t n = 0;
  Nanos now = env_.now();
  while (!timers_.empty() && timers_.top().deadline <= now) {
    Timer t = timers_.top();
    timers_.pop();
    if (cancelled_.erase(t.id) != 0) continue;
    t.fn();
    ++n;
  }
  if (timers_.empty()) cancelled_.clear();
  return n;
}

size_t Target::drain_inbox() {
  size_t n = 0;
  while (TaskNode* t = inbox_.pop()) {
    ++stats_.tasks;
    ++n;
    // Each posted task gets its own fiber so it may block (wait on futures, do I/O).
    spawn([t] {
      std::unique_ptr<TaskNode> owned(t);
      owned->run();
    });
  }
  return n;
}

size_t Target::poll_once() {
  ++stats_.polls;
  size_t n = 0;
  for (Poller* p : pollers_) n += p->poll();
  n += fire_timers();
  n += drain_inbox();
  if (n > 0 && opts_.spin_window.count() > 0) last_event_ = std::chrono::steady_clock::now();
  if (stop_.load(std::memory_order_relaxed) && t_state != nullptr) {
    t_state->main_cv.notify_all();
  }
  return n;
}

void Target::reactor_sweep(bool may_sleep, std::chrono::steady_clock::time_point until) {
  size_t n = poll_once();
  if (n == 0 && may_sleep) {
    Nanos timeout = Nanos::max();
    if (until != std::chrono::steady_clock::time_point::max()) {
      timeout = std::chrono::duration_cast<Nanos>(until - std::chrono::steady_clock::now());
    }
    next_timer_at_.store(timers_.empty() ? Nanos::max().count() : timers_.top().deadline.count(),
                         std::memory_order_relaxed);
    if (!timers_.empty()) {
      Nanos t = timers_.top().deadline - env_.now();
      if (t < timeout) timeout = t;
    }
    if (timeout > Nanos(0)) sleep_until_event(timeout);
    n = poll_once();
  }
  if (n > 0) idle_spins_ = 0;
  if (t_state != nullptr && t_state->reactor_parked) {
    t_state->reactor_parked = false;
    t_state->reactor_cv.notify_all();
  }
}

void Target::sleep_until_event(Nanos timeout) {
  if (opts_.busy_poll) return;
  if (opts_.spin_window.count() > 0 &&
      std::chrono::steady_clock::now() - last_event_ < opts_.spin_window) {
    return;
  }
  sleeping_.store(true, std::memory_order_seq_cst);
  if (inbox_.maybe_nonempty() || stop_.load()) {
    sleeping_ = false;
    return;
  }
  bool need_backoff = false;
  for (Poller* p : pollers_) {
    if (p->wait_fd() < 0) {
      need_backoff = true;
    } else if (!p->prepare_to_sleep()) {
      sleeping_ = false;
      return;
    }
  }
  if (need_backoff) {
    // A source that cannot wake us (shm CQ): spin a little, then sleep in growing steps up to
    // 1 ms so an idle target costs almost nothing and a busy one still answers quickly.
    ++idle_spins_;
    if (idle_spins_ < 64) {
      sleeping_ = false;
      return;
    }
    unsigned shift = std::min(idle_spins_ - 64, 7u);
    Nanos cap = std::chrono::microseconds(8u << shift);  // 8 us .. 1 ms
    if (cap < timeout) timeout = cap;
  }
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout != Nanos::max()) {
    ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
    tsp = &ts;
  }
  epoll_event evs[16];
  ++stats_.sleeps;
  int n = epoll_pwait2(epfd_, evs, 16, tsp, nullptr);
  sleeping_.store(false, std::memory_order_seq_cst);
  for (int i = 0; i < n; ++i) {
    if (evs[i].data.u64 == 0) {
      uint64_t v;
      [[maybe_unused]] ssize_t r = ::read(wakefd_, &v, sizeof(v));
    }
  }
}

}  // namespace tessera

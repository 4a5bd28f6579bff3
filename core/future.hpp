// Future<T> and Promise<T>: Tessera's one-shot completion, handed from the thread that
// finishes a request (a client target) to the application thread that awaits it.
//
// Built on std::mutex and std::condition_variable, which every sanitizer understands, so the
// hand-off of the value is visible to ThreadSanitizer (Boost.Fiber's future shared state is
// not: Debian's libboost_fiber is not instrumented). Fibers on one target keep using
// Boost.Fiber's primitives among themselves; this type is for crossing threads.
//
// Threads: a Promise is fulfilled once, from any thread. A Future is awaited by one thread
// that is not a target thread (get, wait, wait_for); `ready()` never blocks and may be called
// from anywhere. Awaiting on a target thread would block every fiber of that target, so get()
// there answers `internal` instead of waiting.
//
// Lifetime: the shared state lives while either side holds it. A Promise destroyed without a
// value completes its Future with `shutdown` (the request's owner stopped first).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "core/status.hpp"

namespace tessera {

enum class FutureStatus { ready, timeout };

namespace detail {
// True on a thread that runs a Target's fibers (core/target.hpp), where blocking is forbidden.
bool on_target_thread() noexcept;

template <typename T>
struct FutureState {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Result<T>> value;  // set once, under mu
  std::function<void()> on_ready;  // called once, after value is set (Future::on_ready)

  void complete(Result<T> v) {
    std::function<void()> fn;
    {
      std::lock_guard lk(mu);
      if (value) return;
      value.emplace(std::move(v));
      fn = std::move(on_ready);
    }
    cv.notify_all();
    if (fn) fn();
  }
};
}  // namespace detail

template <typename T>
class Future {
 public:
  Future() = default;
  Future(Future&&) noexcept = default;
  Future& operator=(Future&&) noexcept = default;
  Future(const Future&) = delete;  // one owner: get() moves the value out
  Future& operator=(const Future&) = delete;
  // A future that is already complete.
  static Future ready_with(Result<T> v) {
    auto s = std::make_shared<detail::FutureState<T>>();
    s->value.emplace(std::move(v));
    return Future(std::move(s));
  }

  // False for a default-constructed future and after get().
  bool valid() const noexcept { return s_ != nullptr; }

  // Calls `fn` once the value is set: at once, on this thread, if it is; otherwise on the
  // thread that sets it, which may be a client target: `fn` must be short and never block or
  // wait (it may take a mutex held only briefly, as complete() does). One per future; the
  // value stays for get(). This is how one thread waits for many futures (the C API's event
  // queues, client/c_api_eq.cpp).
  void on_ready(std::function<void()> fn) {
    {
      std::lock_guard lk(s_->mu);
      if (!s_->value) {
        s_->on_ready = std::move(fn);
        return;
      }
    }
    fn();
  }

  // Whether the value is there (never blocks).
  bool ready() const {
    std::lock_guard lk(s_->mu);
    return s_->value.has_value();
  }

  void wait() const {
    if (detail::on_target_thread()) return;
    std::unique_lock lk(s_->mu);
    s_->cv.wait(lk, [this] { return s_->value.has_value(); });
  }

  template <typename Rep, typename Period>
  FutureStatus wait_for(std::chrono::duration<Rep, Period> d) const {
    std::unique_lock lk(s_->mu);
    if (s_->value) return FutureStatus::ready;
    if (detail::on_target_thread()) return FutureStatus::timeout;
    return s_->cv.wait_for(lk, d, [this] { return s_->value.has_value(); })
               ? FutureStatus::ready
               : FutureStatus::timeout;
  }

  // Waits for the value and moves it out; the future is then no longer valid.
  Result<T> get() {
    auto s = std::move(s_);
    std::unique_lock lk(s->mu);
    if (!s->value && detail::on_target_thread()) {
      return Status(Errc::internal, "a Tessera future was awaited on a target thread");
    }
    s->cv.wait(lk, [&s] { return s->value.has_value(); });
    return std::move(*s->value);
  }

 private:
  template <typename U>
  friend class Promise;
  explicit Future(std::shared_ptr<detail::FutureState<T>> s) : s_(std::move(s)) {}

  std::shared_ptr<detail::FutureState<T>> s_;
};

template <typename T>
class Promise {
 public:
  Promise() : s_(std::make_shared<detail::FutureState<T>>()) {}
  ~Promise() {
    if (s_) s_->complete(Status(Errc::shutdown, "the request ended before it completed"));
  }
  Promise(Promise&&) noexcept = default;
  Promise& operator=(Promise&&) noexcept = delete;
  Promise(const Promise&) = delete;
  Promise& operator=(const Promise&) = delete;

  // The one future of this promise.
  Future<T> get_future() const { return Future<T>(s_); }

  // Completes the future; later calls are ignored.
  void set_value(Result<T> v) { s_->complete(std::move(v)); }

 private:
  std::shared_ptr<detail::FutureState<T>> s_;
};

}  // namespace tessera

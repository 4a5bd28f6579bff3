// What the C API's files share (c_api.cpp: calls; c_api_eq.cpp: event queues): the handles
// behind tessera.h's opaque types, the thread-local error, start_event(), which runs a request
// through an event queue, and run_call(), which runs a blocking call (administration, opening and
// closing) on the client's workers when it is given an event. Not installed: tessera.h is the
// whole public surface.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "client/client.hpp"
#include "core/blocking_workers.hpp"
#include "client/container.hpp"
#include "client/tessera.h"
#include "client/transaction.hpp"

// Blocking calls given an event run on the client's workers: this many threads, this many calls
// waiting beyond them (more: -TESSERA_EBUSY). docs/API.md, "Event queues".
inline constexpr size_t kCallWorkers = 4;
inline constexpr size_t kCallQueue = 256;

struct tessera_client {
  std::unique_ptr<tessera::Client> impl;
  std::string mgmt;  // system mode: the management service's access points
  std::chrono::milliseconds timeout{30000};
  // Last: tessera_disconnect ends them (every accepted call run) before the rest goes.
  std::unique_ptr<tessera::BlockingWorkers> workers =
      std::make_unique<tessera::BlockingWorkers>(kCallWorkers, kCallQueue);
};
struct tessera_cont {
  std::unique_ptr<tessera::Container> impl;
  tessera_client* client = nullptr;  // whose workers run its blocking calls given an event
  std::atomic<size_t> inflight{0};   // calls started with an event whose request has not ended
};
struct tessera_tx {
  std::unique_ptr<tessera::Transaction> impl;
  tessera_cont* cont = nullptr;
  // Calls started with an event whose request has not ended: the transaction takes no other
  // call meanwhile (-TESSERA_EBUSY), and tessera_tx_close waits for them. Shared with the
  // calls' completions, which notify it after the count reached 0 and the transaction may be
  // gone.
  std::shared_ptr<std::atomic<size_t>> inflight = std::make_shared<std::atomic<size_t>>(0);
};
// Completed events wait in `done` (in the order they completed) until a poll hands them back.
// The client target that completes a request only appends the event here, under `mu`, held
// briefly on both sides; the call's result is copied out by the polling thread.
struct tessera_eq {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<tessera_event*> done;
  std::atomic<size_t> inflight{0};  // started, not yet polled
};

namespace tessera::capi {

// The calling thread's last error (tessera_last_error); returns the code to give back.
int fail(const Status& st);
inline int null_argument() {
  return fail({Errc::invalid_argument, "null argument"});
}
inline std::string str(const char* s) {
  return s != nullptr ? std::string(s) : std::string();
}
inline ValueKind kind_of(int k) {
  return k == TESSERA_ARRAY ? ValueKind::array : ValueKind::single;
}
// What tessera_connect_system's `system` names (empty: the CLI's discovery), as the management
// service's address.
Result<std::string> find_system(const std::string& arg);
// Returns rc with `message` as the thread's last error.
int fail_text(int rc, const std::string& message);
// -TESSERA_ERANGE (a buffer too small), `message` the thread's last error.
int fail_range(const std::string& message);
// A fetch's bytes into the caller's buffer; *out_len: the bytes (or those needed). 0 or
// -TESSERA_ERANGE (the message in *error; without `error`, the thread's last error).
int copy_out(const FetchResult& r, void* buf, size_t buflen, size_t* out_len, std::string* error);
int copy_out(const FetchResult& r, void* buf, size_t buflen, size_t* out_len);

// The library's part of a tessera_event (its internal_).
struct EventState {
  tessera_eq* eq = nullptr;
  std::atomic<bool> busy{false};               // started, not yet polled
  std::function<void(tessera_event*)> finish;  // sets the event's results, on the polling thread
  std::string error;
};
// Sets a completed event's failure.
void event_failed(tessera_event* ev, const Status& st);

// Claims `ev` (NULL: none) for a call, before its request is sent: an event that is not
// initialised or still in flight is refused and nothing is sent. 0, or the error.
inline int claim_event(tessera_event* ev) {
  if (ev == nullptr) return 0;
  auto* st = static_cast<EventState*>(ev->internal_);
  if (st == nullptr)
    return fail({Errc::invalid_argument, "event not initialised (tessera_event_init)"});
  if (st->busy.exchange(true)) return fail({Errc::busy, "the event is in flight"});
  return 0;
}

// Runs a call of `cont` whose request is `fut` through event `ev`, claimed before the request
// was sent (claim_event): when the request ends its event joins the queue's completed ones, and
// the poll that hands it back calls finish(ev, result) first.
// `tx`: a transaction's call, counted on the transaction too.
template <typename T, typename Finish>
int start_event(tessera_cont* cont, tessera_event* ev, Future<T> fut, Finish finish,
                tessera_tx* tx = nullptr) {
  auto* st = static_cast<EventState*>(ev->internal_);
  st->error.clear();
  ev->status = 0;
  ev->epoch = 0;
  ev->out_len = 0;
  auto f = std::make_shared<Future<T>>(std::move(fut));
  st->finish = [f, finish](tessera_event* e) { finish(e, f->get()); };
  tessera_eq* eq = st->eq;
  eq->inflight.fetch_add(1);
  cont->inflight.fetch_add(1);
  std::shared_ptr<std::atomic<size_t>> tx_calls = tx != nullptr ? tx->inflight : nullptr;
  if (tx_calls) tx_calls->fetch_add(1);
  f->on_ready([eq, ev, cont, tx_calls] {
    if (tx_calls && tx_calls->fetch_sub(1) == 1) tx_calls->notify_all();  // it may be closed now
    cont->inflight.fetch_sub(1);  // the last touch of the container: it may be closed now
    // Notified under the lock: once it is released the queue may be polled empty and destroyed.
    std::lock_guard g(eq->mu);
    eq->done.push_back(ev);
    eq->cv.notify_all();
  });
  return 0;
}

// What a blocking call run through an event hands to it: set by the call on a worker thread,
// copied into the event by the poll that hands it back.
struct Outcome {
  int rc = 0;
  std::string error;
  uint64_t epoch = 0;
  size_t out_len = 0;
};
using BlockingCall = std::function<int(Outcome&)>;

// Runs `call` (0 or -TESSERA_E*, the message in the running thread's last error): at once on
// this thread when `ev` is NULL, else on `c`'s workers through event `ev` (claimed here), whose
// poll then sets status, epoch, out_len and the message from the Outcome. `cont`: a call on that
// container handle, counted in its calls in flight until it ends. With an event, `call` must own
// copies of the caller's strings (it runs after the caller returned); the caller's output
// records stay the caller's to keep valid until the event is polled. 0 when started (or the
// call's result without an event); -TESSERA_EBUSY when kCallQueue calls wait already.
int run_call(tessera_client* c, tessera_event* ev, BlockingCall call,
             tessera_cont* cont = nullptr);

}  // namespace tessera::capi

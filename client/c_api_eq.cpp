// The C API's event queues (tessera.h, docs/API.md "Event queues"): calls started with an event
// complete into their queue; tessera_eq_poll hands completed events back to the polling
// thread, which copies each call's result out (start_event in c_api_impl.hpp). Blocking calls
// given an event run on the client's workers (run_call).

#include <chrono>
#include <memory>
#include <vector>

#include "client/c_api_impl.hpp"

using namespace tessera::capi;

namespace tessera::capi {

void event_failed(tessera_event* ev, const Status& st) {
  ev->status = -static_cast<int>(st.code());
  static_cast<EventState*>(ev->internal_)->error = st.to_string();
}

int run_call(tessera_client* c, tessera_event* ev, BlockingCall call, tessera_cont* cont) {
  if (ev == nullptr) {
    Outcome o;
    return call(o);
  }
  if (int rc = claim_event(ev); rc != 0) return rc;
  auto* st = static_cast<EventState*>(ev->internal_);
  st->error.clear();
  ev->status = 0;
  ev->epoch = 0;
  ev->out_len = 0;
  auto out = std::make_shared<Outcome>();
  st->finish = [out](tessera_event* e) {
    e->status = out->rc;
    e->epoch = out->epoch;
    e->out_len = out->out_len;
    static_cast<EventState*>(e->internal_)->error = out->error;
  };
  tessera_eq* eq = st->eq;
  eq->inflight.fetch_add(1);
  if (cont != nullptr) cont->inflight.fetch_add(1);
  Status queued = c->workers->submit([call = std::move(call), out, eq, ev, cont] {
    out->rc = call(*out);
    if (out->rc != 0) out->error = tessera_last_error();
    if (cont != nullptr) cont->inflight.fetch_sub(1);  // the handle may be closed from here on
    // Notified under the lock: once it is released the queue may be polled empty and destroyed.
    std::lock_guard g(eq->mu);
    eq->done.push_back(ev);
    eq->cv.notify_all();
  });
  if (queued.is_ok()) return 0;
  if (cont != nullptr) cont->inflight.fetch_sub(1);
  eq->inflight.fetch_sub(1);
  st->finish = nullptr;
  st->busy.store(false);
  if (queued.code() != Errc::busy) return fail(queued);
  return fail({Errc::busy, queued.message() + " (poll some events first)"});
}

}  // namespace tessera::capi

extern "C" {

int tessera_eq_create(tessera_eq** out) {
  if (out == nullptr) return null_argument();
  *out = new tessera_eq();
  return 0;
}

int tessera_eq_destroy(tessera_eq* eq) {
  if (eq == nullptr) return 0;
  if (eq->inflight.load() != 0) {
    return fail({tessera::Errc::busy, std::to_string(eq->inflight.load()) +
                                          " events of the queue are in flight (poll them first)"});
  }
  delete eq;
  return 0;
}

int tessera_event_init(tessera_event* ev, tessera_eq* eq, void* user) {
  if (ev == nullptr || eq == nullptr) return null_argument();
  ev->status = 0;
  ev->epoch = 0;
  ev->out_len = 0;
  ev->user = user;
  auto* st = new EventState();
  st->eq = eq;
  ev->internal_ = st;
  return 0;
}

int tessera_event_fini(tessera_event* ev) {
  if (ev == nullptr || ev->internal_ == nullptr) return 0;
  auto* st = static_cast<EventState*>(ev->internal_);
  if (st->busy.load()) return fail({tessera::Errc::busy, "the event is in flight"});
  delete st;
  ev->internal_ = nullptr;
  return 0;
}

const char* tessera_event_error(const tessera_event* ev) {
  if (ev == nullptr || ev->internal_ == nullptr) return "";
  return static_cast<const EventState*>(ev->internal_)->error.c_str();
}

int tessera_eq_poll(tessera_eq* eq, int64_t timeout_us, tessera_event** evs, size_t max) {
  if (eq == nullptr || (evs == nullptr && max > 0)) return null_argument();
  if (max == 0) return 0;
  std::vector<tessera_event*> got;
  {
    std::unique_lock lk(eq->mu);
    // Nothing in flight: nothing will complete, so the wait ends at once.
    auto any = [eq] { return !eq->done.empty() || eq->inflight.load() == 0; };
    if (timeout_us < 0) {
      eq->cv.wait(lk, any);
    } else if (timeout_us > 0) {
      eq->cv.wait_for(lk, std::chrono::microseconds(timeout_us), any);
    }
    while (!eq->done.empty() && got.size() < max) {
      got.push_back(eq->done.front());
      eq->done.pop_front();
    }
  }
  for (size_t i = 0; i < got.size(); ++i) {
    auto* st = static_cast<EventState*>(got[i]->internal_);
    st->finish(got[i]);
    st->finish = nullptr;
    st->busy.store(false);
    evs[i] = got[i];
    if (eq->inflight.fetch_sub(1) == 1) {
      // Another thread may wait for the last of them: nothing is in flight now.
      { std::lock_guard g(eq->mu); }
      eq->cv.notify_all();
    }
  }
  return static_cast<int>(got.size());
}

size_t tessera_eq_inflight(const tessera_eq* eq) {
  return eq != nullptr ? eq->inflight.load() : 0;
}

}  // extern "C"

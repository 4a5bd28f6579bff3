#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>

#include "client/c_api_impl.hpp"
#include "client/system_file.hpp"

namespace {
thread_local std::string t_last_error;

// 0, or -TESSERA_EBUSY while a call started with an event runs on the transaction.
int tx_idle(const tessera_tx* tx) {
  if (tx->inflight->load() == 0) return 0;
  return tessera::capi::fail(
      {tessera::Errc::busy, "a call on the transaction is in flight (poll its event first)"});
}

using tessera::capi::claim_event;
using tessera::capi::fail;
using tessera::capi::start_event;
using tessera::capi::str;

// A request whose answer is an epoch (an update, a punch): through `ev` (claimed), or awaited,
// the epoch then to *epoch_out (may be NULL).
int epoch_call(tessera_cont* cont, tessera_event* ev, tessera::Future<uint64_t> fut,
               uint64_t* epoch_out) {
  if (ev != nullptr) {
    return start_event(cont, ev, std::move(fut), [](tessera_event* e, tessera::Result<uint64_t> r) {
      if (!r) return tessera::capi::event_failed(e, r.status());
      e->epoch = *r;
    });
  }
  auto r = fut.get();
  if (!r) return fail(r.status());
  if (epoch_out != nullptr) *epoch_out = *r;
  return 0;
}

// An update of the container's object (arguments checked by the caller).
int update_call(tessera_cont* cont, tessera::ObjectId oid, const char* dkey, const char* akey,
                tessera::ValueKind kind, uint64_t offset, const void* buf, size_t len,
                tessera::UpdateFlags f, uint64_t* epoch_out, tessera_event* ev) {
  if (int rc = claim_event(ev); rc != 0) return rc;
  // The bytes are copied into the request here: the caller's buffer is free at once.
  return epoch_call(cont, ev,
                    cont->impl->update_async(oid, str(dkey), str(akey), kind, offset,
                                             tessera::Buffer(buf, len), f),
                    epoch_out);
}

// A fetch into the caller's buffer (arguments checked by the caller): copied when its event is
// polled, or at once.
int fetch_call(tessera_cont* cont, tessera::ObjectId oid, const char* dkey, const char* akey,
               tessera::ValueKind kind, uint64_t offset, uint64_t length, uint64_t epoch,
               tessera::FetchFlags f, void* buf, size_t buflen, size_t* out_len,
               tessera_event* ev) {
  if (int rc = claim_event(ev); rc != 0) return rc;
  auto fut = cont->impl->fetch_async(oid, str(dkey), str(akey), kind, offset, length, epoch, f);
  if (ev != nullptr) {
    return start_event(cont, ev, std::move(fut),
                       [buf, buflen](tessera_event* e, tessera::Result<tessera::FetchResult> r) {
                         if (!r) return tessera::capi::event_failed(e, r.status());
                         auto* st = static_cast<tessera::capi::EventState*>(e->internal_);
                         e->status =
                             tessera::capi::copy_out(*r, buf, buflen, &e->out_len, &st->error);
                       });
  }
  auto r = fut.get();
  if (!r) return fail(r.status());
  return tessera::capi::copy_out(*r, buf, buflen, out_len);
}

// The bytes of `nrec` records of `rsize` bytes, or why not.
tessera::Result<size_t> record_bytes(uint32_t rsize, uint64_t nrec) {
  if (rsize == 0) return tessera::Status(tessera::Errc::invalid_argument, "record size 0");
  if (nrec > std::numeric_limits<size_t>::max() / rsize) {
    return tessera::Status(tessera::Errc::invalid_argument,
                           fmt::format("{} records of {} bytes are too many", nrec, rsize));
  }
  return static_cast<size_t>(nrec * rsize);
}

}  // namespace

namespace tessera::capi {

int fail(const Status& st) {
  t_last_error = st.to_string();
  return -static_cast<int>(st.code());
}

int fail_text(int rc, const std::string& message) {
  t_last_error = message;
  return rc;
}

int fail_range(const std::string& message) {
  return fail_text(-TESSERA_ERANGE, "buffer too small: " + message);
}

int copy_out(const FetchResult& r, void* buf, size_t buflen, size_t* out_len) {
  std::string error;
  int rc = copy_out(r, buf, buflen, out_len, &error);
  if (rc != 0) t_last_error = error;
  return rc;
}

int copy_out(const FetchResult& r, void* buf, size_t buflen, size_t* out_len, std::string* error) {
  *out_len = r.data.size();
  if (r.data.size() > buflen) {
    *error = fmt::format("output buffer too small: {} bytes, {} needed", buflen, r.data.size());
    return -TESSERA_ERANGE;
  }
  if (!r.data.empty()) std::memcpy(buf, r.data.data(), r.data.size());
  return 0;
}

Result<std::string> find_system(const std::string& arg) {
  if (arg.empty()) return local::find_system({}, {});
  // A path names a system file (or its directory); anything else is an address.
  std::error_code ec;
  if (arg.find('/') != std::string::npos || std::filesystem::exists(arg, ec) ||
      arg.find(':') == std::string::npos) {
    return local::find_system({}, arg);
  }
  return local::find_system(arg, {});
}

}  // namespace tessera::capi

using namespace tessera::capi;

extern "C" {

int tessera_connect(const char* engine, tessera_client** out) {
  if (engine == nullptr || out == nullptr) return null_argument();
  tessera::ClientOptions o;
  o.engine = engine;
  auto c = tessera::Client::connect(o);
  if (!c) return fail(c.status());
  *out = new tessera_client{std::move(*c), {}, o.timeout};
  return 0;
}

void tessera_disconnect(tessera_client* c) {
  if (c == nullptr) return;
  c->workers.reset();  // every call given an event and accepted runs to its end first
  delete c;
}

int tessera_obj_update(tessera_client* c, uint64_t hi, uint64_t lo, const char* dkey,
                       const char* akey, int kind, uint64_t offset, const void* buf, size_t len,
                       uint64_t* epoch_out) {
  if (c == nullptr || (buf == nullptr && len > 0)) return null_argument();
  auto r = c->impl->update({hi, lo}, str(dkey), str(akey), kind_of(kind), offset,
                           {static_cast<const uint8_t*>(buf), len});
  if (!r) return fail(r.status());
  if (epoch_out != nullptr) *epoch_out = *r;
  return 0;
}

int tessera_obj_fetch(tessera_client* c, uint64_t hi, uint64_t lo, const char* dkey,
                      const char* akey, int kind, uint64_t offset, uint64_t length, void* buf,
                      size_t buflen, size_t* out_len) {
  if (c == nullptr || out_len == nullptr) return null_argument();
  auto r = c->impl->fetch({hi, lo}, str(dkey), str(akey), kind_of(kind), offset, length);
  if (!r) return fail(r.status());
  return copy_out(*r, buf, buflen, out_len);
}

int tessera_obj_punch(tessera_client* c, uint64_t hi, uint64_t lo, const char* dkey,
                      const char* akey) {
  if (c == nullptr) return null_argument();
  auto r = c->impl->punch({hi, lo}, str(dkey), str(akey));
  if (!r) return fail(r.status());
  return 0;
}

int tessera_connect_system(const char* system, tessera_client** out) {
  if (out == nullptr) return null_argument();
  auto mgmt = find_system(str(system));
  if (!mgmt) return fail(mgmt.status());
  tessera::ClientOptions o;
  o.engine = *mgmt;
  auto c = tessera::Client::connect_system(o);
  if (!c) return fail(c.status());
  *out = new tessera_client{std::move(*c), *mgmt, o.timeout};
  return 0;
}

int tessera_cont_open_ev(tessera_client* c, const char* pool, const char* cont, int write,
                         tessera_cont** out, tessera_event* ev) {
  if (c == nullptr || pool == nullptr || cont == nullptr || out == nullptr) return null_argument();
  return run_call(c, ev,
                  [c, pool = std::string(pool), cont = std::string(cont), write, out](Outcome&) {
                    auto h = c->impl->open_container(pool, cont, write != 0);
                    if (!h) return fail(h.status());
                    *out = new tessera_cont{std::move(*h), c};
                    return 0;
                  });
}

int tessera_cont_open(tessera_client* c, const char* pool, const char* cont, int write,
                      tessera_cont** out) {
  return tessera_cont_open_ev(c, pool, cont, write, out, nullptr);
}

int tessera_cont_close_ev(tessera_cont* cont, tessera_event* ev) {
  if (cont == nullptr) return 0;
  if (cont->inflight.load() != 0) {
    return fail({tessera::Errc::busy,
                 fmt::format("{} calls on the container are in flight", cont->inflight.load())});
  }
  // Not counted on the handle: the call frees it.
  return run_call(cont->client, ev, [cont](Outcome&) {
    tessera::Status st = cont->impl->close();
    delete cont;
    return st.is_ok() ? 0 : fail(st);
  });
}

int tessera_cont_close(tessera_cont* cont) {
  return tessera_cont_close_ev(cont, nullptr);
}

int tessera_cont_oid(tessera_cont* cont, uint32_t hi, uint64_t lo, const char* oclass,
                     uint64_t* oid_hi, uint64_t* oid_lo) {
  if (cont == nullptr || oid_hi == nullptr || oid_lo == nullptr) return null_argument();
  auto oid = cont->impl->make_oid(hi, lo, str(oclass));
  if (!oid) return fail(oid.status());
  *oid_hi = oid->hi;
  *oid_lo = oid->lo;
  return 0;
}

int tessera_cont_update(tessera_cont* cont, uint64_t hi, uint64_t lo, const char* dkey,
                        const char* akey, int kind, uint64_t offset, const void* buf, size_t len,
                        int cond, uint64_t* epoch_out, tessera_event* ev) {
  if (cont == nullptr || (buf == nullptr && len > 0)) return null_argument();
  if (cond < TESSERA_COND_NONE || cond > TESSERA_COND_UPDATE)
    return fail({tessera::Errc::invalid_argument, "unknown condition"});
  tessera::UpdateFlags f;
  f.cond = static_cast<tessera::Cond>(cond);
  return update_call(cont, {hi, lo}, dkey, akey, kind_of(kind), offset, buf, len, f, epoch_out, ev);
}

int tessera_cont_fetch(tessera_cont* cont, uint64_t hi, uint64_t lo, const char* dkey,
                       const char* akey, int kind, uint64_t offset, uint64_t length, uint64_t epoch,
                       void* buf, size_t buflen, size_t* out_len, tessera_event* ev) {
  if (cont == nullptr || (out_len == nullptr && ev == nullptr) || (buf == nullptr && buflen > 0))
    return null_argument();
  return fetch_call(cont, {hi, lo}, dkey, akey, kind_of(kind), offset, length, epoch, {}, buf,
                    buflen, out_len, ev);
}

int tessera_cont_punch(tessera_cont* cont, uint64_t hi, uint64_t lo, const char* dkey,
                       const char* akey, tessera_event* ev) {
  if (cont == nullptr) return null_argument();
  if (int rc = claim_event(ev); rc != 0) return rc;
  return epoch_call(cont, ev, cont->impl->punch_async({hi, lo}, str(dkey), str(akey)), nullptr);
}

int tessera_array_write(tessera_cont* cont, uint64_t oid_hi, uint64_t oid_lo, const char* dkey,
                        const char* akey, uint32_t rsize, uint64_t rec_offset, const void* buf,
                        uint64_t nrec, uint64_t* epoch_out, tessera_event* ev) {
  if (cont == nullptr || (buf == nullptr && nrec > 0)) return null_argument();
  auto bytes = record_bytes(rsize, nrec);
  if (!bytes) return fail(bytes.status());
  tessera::UpdateFlags f;
  f.rsize = rsize;
  return update_call(cont, {oid_hi, oid_lo}, dkey, akey, tessera::ValueKind::array, rec_offset, buf,
                     *bytes, f, epoch_out, ev);
}

int tessera_array_read(tessera_cont* cont, uint64_t oid_hi, uint64_t oid_lo, const char* dkey,
                       const char* akey, uint32_t rsize, uint64_t rec_offset, uint64_t nrec,
                       uint64_t epoch, void* buf, size_t buflen, size_t* out_len,
                       tessera_event* ev) {
  if (cont == nullptr || (out_len == nullptr && ev == nullptr) || (buf == nullptr && buflen > 0))
    return null_argument();
  auto bytes = record_bytes(rsize, nrec);
  if (!bytes) return fail(bytes.status());
  tessera::FetchFlags f;
  f.rsize = rsize;
  return fetch_call(cont, {oid_hi, oid_lo}, dkey, akey, tessera::ValueKind::array, rec_offset, nrec,
                    epoch, f, buf, buflen, out_len, ev);
}

int tessera_array_punch(tessera_cont* cont, uint64_t oid_hi, uint64_t oid_lo, const char* dkey,
                        const char* akey, uint32_t rsize, uint64_t rec_offset, uint64_t nrec,
                        tessera_event* ev) {
  if (cont == nullptr) return null_argument();
  if (nrec == 0) {
    return fail({tessera::Errc::invalid_argument,
                 "no records to punch (a whole akey: tessera_cont_punch)"});
  }
  auto bytes = record_bytes(rsize, nrec);
  if (!bytes) return fail(bytes.status());
  if (int rc = claim_event(ev); rc != 0) return rc;
  return epoch_call(cont, ev,
                    cont->impl->punch_range_async({oid_hi, oid_lo}, str(dkey), str(akey),
                                                  rec_offset, nrec, rsize),
                    nullptr);
}

int tessera_tx_open_ev(tessera_cont* cont, uint64_t snapshot_epoch, tessera_tx** out,
                       tessera_event* ev) {
  if (cont == nullptr || out == nullptr) return null_argument();
  return run_call(
      cont->client, ev,
      [cont, snapshot_epoch, out](Outcome& o) {
        auto tx = cont->impl->tx_open(snapshot_epoch);
        if (!tx) return fail(tx.status());
        *out = new tessera_tx{std::move(*tx), cont};
        o.epoch = (*out)->impl->epoch();
        return 0;
      },
      cont);
}

int tessera_tx_open(tessera_cont* cont, uint64_t snapshot_epoch, tessera_tx** out) {
  return tessera_tx_open_ev(cont, snapshot_epoch, out, nullptr);
}

uint64_t tessera_tx_epoch(const tessera_tx* tx) {
  return tx != nullptr ? tx->impl->epoch() : 0;
}

int tessera_tx_update(tessera_tx* tx, uint64_t hi, uint64_t lo, const char* dkey, const char* akey,
                      int kind, uint64_t offset, const void* buf, size_t len, int cond) {
  if (tx == nullptr || (buf == nullptr && len > 0)) return null_argument();
  if (int rc = tx_idle(tx); rc != 0) return rc;
  if (cond < TESSERA_COND_NONE || cond > TESSERA_COND_UPDATE)
    return fail({tessera::Errc::invalid_argument, "unknown condition"});
  tessera::UpdateFlags f;
  f.cond = static_cast<tessera::Cond>(cond);
  tessera::Status st = tx->impl->update({hi, lo}, str(dkey), str(akey), kind_of(kind), offset,
                                        {static_cast<const uint8_t*>(buf), len}, f);
  return st.is_ok() ? 0 : fail(st);
}

int tessera_tx_fetch(tessera_tx* tx, uint64_t hi, uint64_t lo, const char* dkey, const char* akey,
                     int kind, uint64_t offset, uint64_t length, void* buf, size_t buflen,
                     size_t* out_len) {
  if (out_len == nullptr) return null_argument();
  return tessera_tx_fetch_ev(tx, hi, lo, dkey, akey, kind, offset, length, buf, buflen, out_len,
                             nullptr);
}

int tessera_tx_fetch_ev(tessera_tx* tx, uint64_t hi, uint64_t lo, const char* dkey,
                        const char* akey, int kind, uint64_t offset, uint64_t length, void* buf,
                        size_t buflen, size_t* out_len, tessera_event* ev) {
  if (tx == nullptr || (out_len == nullptr && ev == nullptr) || (buf == nullptr && buflen > 0))
    return null_argument();
  if (int rc = tx_idle(tx); rc != 0) return rc;
  if (int rc = claim_event(ev); rc != 0) return rc;
  auto fut = tx->impl->fetch_async({hi, lo}, str(dkey), str(akey), kind_of(kind), offset, length);
  if (ev != nullptr) {
    return start_event(
        tx->cont, ev, std::move(fut),
        [buf, buflen](tessera_event* e, tessera::Result<tessera::FetchResult> r) {
          if (!r) return event_failed(e, r.status());
          auto* st = static_cast<EventState*>(e->internal_);
          e->status = tessera::capi::copy_out(*r, buf, buflen, &e->out_len, &st->error);
        },
        tx);
  }
  auto r = fut.get();
  if (!r) return fail(r.status());
  return copy_out(*r, buf, buflen, out_len);
}

int tessera_tx_punch(tessera_tx* tx, uint64_t hi, uint64_t lo, const char* dkey, const char* akey) {
  if (tx == nullptr) return null_argument();
  if (int rc = tx_idle(tx); rc != 0) return rc;
  tessera::Status st = tx->impl->punch({hi, lo}, str(dkey), str(akey));
  return st.is_ok() ? 0 : fail(st);
}

// Key-value calls in a transaction: the container's key-value object (id 0 of its default
// class, as tessera_kv_* use) with the key as dkey and the value under akey "value".
namespace {
int tx_kv_key(tessera_tx* tx, const char* key, tessera::ObjectId* oid) {
  if (tx == nullptr || key == nullptr) return null_argument();
  if (*key == '\0') return fail({tessera::Errc::invalid_argument, "an empty key"});
  if (int rc = tx_idle(tx); rc != 0) return rc;
  auto r = tx->cont->impl->make_oid(0, 0);
  if (!r) return fail(r.status());
  *oid = *r;
  return 0;
}
}  // namespace

int tessera_tx_kv_get(tessera_tx* tx, const char* key, void* buf, size_t buflen,
                      size_t* out_len) {
  if (out_len == nullptr || (buf == nullptr && buflen > 0)) return null_argument();
  tessera::ObjectId oid;
  if (int rc = tx_kv_key(tx, key, &oid); rc != 0) return rc;
  tessera::FetchFlags f;
  f.must_exist = true;  // a key not there: not_found, not an empty value
  auto r = tx->impl->fetch(oid, key, "value", tessera::ValueKind::single, 0, 0, f);
  if (!r) {
    return fail(r.status().code() == tessera::Errc::not_found
                    ? tessera::Status(tessera::Errc::not_found, fmt::format("no key '{}'", key))
                    : r.status());
  }
  return copy_out(*r, buf, buflen, out_len);
}

int tessera_tx_kv_put(tessera_tx* tx, const char* key, const void* buf, size_t len) {
  tessera::ObjectId oid;
  if (int rc = tx_kv_key(tx, key, &oid); rc != 0) return rc;
  return tessera_tx_update(tx, oid.hi, oid.lo, key, "value", TESSERA_SINGLE, 0, buf, len,
                           TESSERA_COND_NONE);
}

int tessera_tx_kv_remove(tessera_tx* tx, const char* key) {
  tessera::ObjectId oid;
  if (int rc = tx_kv_key(tx, key, &oid); rc != 0) return rc;
  return tessera_tx_punch(tx, oid.hi, oid.lo, key, nullptr);
}

int tessera_tx_commit(tessera_tx* tx, uint64_t* epoch_out) {
  if (tx == nullptr) return null_argument();
  if (int rc = tx_idle(tx); rc != 0) return rc;
  auto r = tx->impl->commit();
  if (!r) return fail(r.status());
  if (epoch_out != nullptr) *epoch_out = *r;
  return 0;
}

int tessera_tx_commit_ev(tessera_tx* tx, tessera_event* ev) {
  if (tx == nullptr || ev == nullptr) return null_argument();
  if (int rc = tx_idle(tx); rc != 0) return rc;
  if (int rc = claim_event(ev); rc != 0) return rc;
  return start_event(
      tx->cont, ev, tx->impl->commit_async(),
      [](tessera_event* e, tessera::Result<uint64_t> r) {
        if (!r) return event_failed(e, r.status());
        e->epoch = *r;
      },
      tx);
}

void tessera_tx_close(tessera_tx* tx) {
  if (tx == nullptr) return;
  // A call started with an event still uses the transaction: its request ends on its own
  // (bounded by the client's timeout), whether or not the event is polled.
  for (size_t n = tx->inflight->load(); n != 0; n = tx->inflight->load()) tx->inflight->wait(n);
  delete tx;
}

const char* tessera_strerror(int rc) {
  if (rc == -TESSERA_ERANGE) return "output buffer too small";
  static thread_local std::string s;
  s = std::string(tessera::errc_name(static_cast<tessera::Errc>(rc < 0 ? -rc : rc)));
  return s.c_str();
}

const char* tessera_last_error(void) {
  return t_last_error.c_str();
}

}  // extern "C"

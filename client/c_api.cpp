#include <cstring>
#include <string>

#include "client/client.hpp"
#include "client/container.hpp"
#include "client/tessera.h"

struct tessera_client {
  std::unique_ptr<tessera::Client> impl;
};
struct tessera_cont {
  std::unique_ptr<tessera::Container> impl;
};
struct tessera_tx {
  std::unique_ptr<tessera::Transaction> impl;
};

namespace {
thread_local std::string t_last_error;

int fail(const tessera::Status& st) {
  t_last_error = st.to_string();
  return -static_cast<int>(st.code());
}
std::string str(const char* s) {
  return s != nullptr ? std::string(s) : std::string();
}
// A fetch's bytes into the caller's buffer (or the size needed).
int copy_out(const tessera::FetchResult& r, void* buf, size_t buflen, size_t* out_len) {
  *out_len = r.data.size();
  if (r.data.size() > buflen) {
    t_last_error = "output buffer too small";
    return -TESSERA_ERANGE;
  }
  if (!r.data.empty()) std::memcpy(buf, r.data.data(), r.data.size());
  return 0;
}
tessera::ValueKind kind_of(int k) {
  return k == TESSERA_ARRAY ? tessera::ValueKind::array : tessera::ValueKind::single;
}
}  // namespace

extern "C" {

int tessera_connect(const char* engine, tessera_client** out) {
  if (engine == nullptr || out == nullptr)
    return fail({tessera::Errc::invalid_argument, "null argument"});
  tessera::ClientOptions o;
  o.engine = engine;
  auto c = tessera::Client::connect(o);
  if (!c) return fail(c.status());
  *out = new tessera_client{std::move(*c)};
  return 0;
}

void tessera_disconnect(tessera_client* c) {
  delete c;
}

int tessera_obj_update(tessera_client* c, uint64_t hi, uint64_t lo, const char* dkey,
                       const char* akey, int kind, uint64_t offset, const void* buf, size_t len,
                       uint64_t* epoch_out) {
  if (c == nullptr || (buf == nullptr && len > 0))
    return fail({tessera::Errc::invalid_argument, "null argument"});
  auto r = c->impl->update({hi, lo}, str(dkey), str(akey), kind_of(kind), offset,
                           {static_cast<const uint8_t*>(buf), len});
  if (!r) return fail(r.status());
  if (epoch_out != nullptr) *epoch_out = *r;
  return 0;
}

int tessera_obj_fetch(tessera_client* c, uint64_t hi, uint64_t lo, const char* dkey,
                      const char* akey, int kind, uint64_t offset, uint64_t length, void* buf,
                      size_t buflen, size_t* out_len) {
  if (c == nullptr || out_len == nullptr)
    return fail({tessera::Errc::invalid_argument, "null argument"});
  auto r = c->impl->fetch({hi, lo}, str(dkey), str(akey), kind_of(kind), offset, length);
  if (!r) return fail(r.status());
  return copy_out(*r, buf, buflen, out_len);
}

int tessera_obj_punch(tessera_client* c, uint64_t hi, uint64_t lo, const char* dkey,
                      const char* akey) {
  if (c == nullptr) return fail({tessera::Errc::invalid_argument, "null argument"});
  auto r = c->impl->punch({hi, lo}, str(dkey), str(akey));
  if (!r) return fail(r.status());
  return 0;
}

int tessera_connect_system(const char* mgmt, tessera_client** out) {
  if (mgmt == nullptr || out == nullptr)
    return fail({tessera::Errc::invalid_argument, "null argument"});
  tessera::ClientOptions o;
  o.engine = mgmt;
  auto c = tessera::Client::connect_system(o);
  if (!c) return fail(c.status());
  *out = new tessera_client{std::move(*c)};
  return 0;
}

int tessera_cont_open(tessera_client* c, const char* pool, const char* cont, int write,
                      tessera_cont** out) {
  if (c == nullptr || pool == nullptr || cont == nullptr || out == nullptr)
    return fail({tessera::Errc::invalid_argument, "null argument"});
  auto h = c->impl->open_container(pool, cont, write != 0);
  if (!h) return fail(h.status());
  *out = new tessera_cont{std::move(*h)};
  return 0;
}

int tessera_cont_close(tessera_cont* cont) {
  if (cont == nullptr) return 0;
  tessera::Status st = cont->impl->close();
  delete cont;
  return st.is_ok() ? 0 : fail(st);
}

int tessera_cont_oid(tessera_cont* cont, uint32_t hi, uint64_t lo, const char* oclass,
                     uint64_t* oid_hi, uint64_t* oid_lo) {
  if (cont == nullptr || oid_hi == nullptr || oid_lo == nullptr)
    return fail({tessera::Errc::invalid_argument, "null argument"});
  auto oid = cont->impl->make_oid(hi, lo, str(oclass));
  if (!oid) return fail(oid.status());
  *oid_hi = oid->hi;
  *oid_lo = oid->lo;
  return 0;
}

int tessera_cont_update(tessera_cont* cont, uint64_t hi, uint64_t lo, const char* dkey,
                        const char* akey, int kind, uint64_t offset, const void* buf, size_t len,
                        int cond, uint64_t* epoch_out) {
  if (cont == nullptr || (buf == nullptr && len > 0))
    return fail({tessera::Errc::invalid_argument, "null argument"});
  if (cond < TESSERA_COND_NONE || cond > TESSERA_COND_UPDATE)
    return fail({tessera::Errc::invalid_argument, "unknown condition"});
  tessera::UpdateFlags f;
  f.cond = static_cast<tessera::Cond>(cond);
  auto r = cont->impl->update({hi, lo}, str(dkey), str(akey), kind_of(kind), offset,
                              {static_cast<const uint8_t*>(buf), len}, f);
  if (!r) return fail(r.status());
  if (epoch_out != nullptr) *epoch_out = *r;
  return 0;
}

int tessera_cont_fetch(tessera_cont* cont, uint64_t hi, uint64_t lo, const char* dkey,
                       const char* akey, int kind, uint64_t offset, uint64_t length,
                       uint64_t epoch, void* buf, size_t buflen, size_t* out_len) {
  if (cont == nullptr || out_len == nullptr)
    return fail({tessera::Errc::invalid_argument, "null argument"});
  auto r =
      cont->impl->fetch({hi, lo}, str(dkey), str(akey), kind_of(kind), offset, length, epoch);
  if (!r) return fail(r.status());
  return copy_out(*r, buf, buflen, out_len);
}

int tessera_cont_punch(tessera_cont* cont, uint64_t hi, uint64_t lo, const char* dkey,
                       const char* akey) {
  if (cont == nullptr) return fail({tessera::Errc::invalid_argument, "null argument"});
  auto r = cont->impl->punch({hi, lo}, str(dkey), str(akey));
  return r ? 0 : fail(r.status());
}

int tessera_tx_open(tessera_cont* cont, uint64_t snapshot_epoch, tessera_tx** out) {
  if (cont == nullptr || out == nullptr)
    return fail({tessera::Errc::invalid_argument, "null argument"});
  auto tx = cont->impl->tx_open(snapshot_epoch);
  if (!tx) return fail(tx.status());
  *out = new tessera_tx{std::move(*tx)};
  return 0;
}

uint64_t tessera_tx_epoch(const tessera_tx* tx) {
  return tx != nullptr ? tx->impl->epoch() : 0;
}

int tessera_tx_update(tessera_tx* tx, uint64_t hi, uint64_t lo, const char* dkey, const char* akey,
                      int kind, uint64_t offset, const void* buf, size_t len, int cond) {
  if (tx == nullptr || (buf == nullptr && len > 0))
    return fail({tessera::Errc::invalid_argument, "null argument"});
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
  if (tx == nullptr || out_len == nullptr)
    return fail({tessera::Errc::invalid_argument, "null argument"});
  auto r = tx->impl->fetch({hi, lo}, str(dkey), str(akey), kind_of(kind), offset, length);
  if (!r) return fail(r.status());
  return copy_out(*r, buf, buflen, out_len);
}

int tessera_tx_punch(tessera_tx* tx, uint64_t hi, uint64_t lo, const char* dkey,
                     const char* akey) {
  if (tx == nullptr) return fail({tessera::Errc::invalid_argument, "null argument"});
  tessera::Status st = tx->impl->punch({hi, lo}, str(dkey), str(akey));
  return st.is_ok() ? 0 : fail(st);
}

int tessera_tx_commit(tessera_tx* tx, uint64_t* epoch_out) {
  if (tx == nullptr) return fail({tessera::Errc::invalid_argument, "null argument"});
  auto r = tx->impl->commit();
  if (!r) return fail(r.status());
  if (epoch_out != nullptr) *epoch_out = *r;
  return 0;
}

void tessera_tx_close(tessera_tx* tx) {
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

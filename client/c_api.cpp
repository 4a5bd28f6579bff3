#include <cstring>
#include <string>

#include "client/client.hpp"
#include "client/tessera.h"

struct tessera_client {
  std::unique_ptr<tessera::Client> impl;
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
  *out_len = r->data.size();
  if (r->data.size() > buflen) {
    t_last_error = "output buffer too small";
    return -TESSERA_ERANGE;
  }
  if (!r->data.empty()) std::memcpy(buf, r->data.data(), r->data.size());
  return 0;
}

int tessera_obj_punch(tessera_client* c, uint64_t hi, uint64_t lo, const char* dkey,
                      const char* akey) {
  if (c == nullptr) return fail({tessera::Errc::invalid_argument, "null argument"});
  auto r = c->impl->punch({hi, lo}, str(dkey), str(akey));
  if (!r) return fail(r.status());
  return 0;
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

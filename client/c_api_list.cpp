// The C API's listings (page by page, through tessera_anchor) and key-value calls (tessera.h).
// Each call blocks, or with an event completes through its queue like tessera_cont_update.
#include <fmt/format.h>

#include <cstring>
#include <functional>
#include <string>

#include "client/c_api_impl.hpp"

using namespace tessera::capi;

namespace {

using tessera::Container;
using tessera::Errc;
using tessera::ListScope;
using tessera::ObjectId;
using tessera::Result;

// Stores a page's entries into the caller's buffers: how many (at most the room), or
// -TESSERA_ERANGE with the message in *error.
using StoreFn = std::function<int(const Container::KeyPage&, uint32_t room, uint32_t* stored,
                                  std::string* error)>;

// Moves the anchor past entry `last` of a page (or to its end).
void advance(tessera_anchor* anchor, ListScope scope, const tessera::KeyEntry* last, bool eof) {
  anchor->eof = eof ? 1 : 0;
  if (last == nullptr) return;
  std::string pos = Container::anchor_after(scope, *last);
  anchor->len = static_cast<uint32_t>(pos.size());
  std::memcpy(anchor->pos, pos.data(), pos.size());
}

// A page's result into the caller's buffers, *n and the anchor (moved past the last entry
// stored): 0, or -TESSERA_E* with the message in *error. absent_is_empty: an object that is
// not there lists as empty.
int take_page(const Result<Container::KeyPage>& r, ListScope scope, tessera_anchor* anchor,
              uint32_t* n, uint32_t room, const StoreFn& store, bool absent_is_empty,
              std::string* error) {
  *n = 0;
  if (!r && absent_is_empty && r.status().code() == Errc::not_found) {
    anchor->eof = 1;
    return 0;
  }
  if (!r) {
    *error = r.status().to_string();
    return -static_cast<int>(r.status().code());
  }
  uint32_t stored = 0;
  if (int rc = store(*r, room, &stored, error); rc != 0) return rc;
  *n = stored;
  const bool all = stored == r->entries.size();
  advance(anchor, scope, stored > 0 ? &r->entries[stored - 1] : nullptr, all && r->done);
  return 0;
}

// Lists the page after `anchor` (room: *n) and stores it with `store`: now, or (ev) through
// the event's queue, the buffers, *n and the anchor then being filled when it is polled.
int list_call(tessera_cont* cont, ListScope scope, ObjectId oid, const char* dkey,
              const char* akey, uint64_t epoch, tessera_anchor* anchor, uint32_t* n,
              tessera_event* ev, StoreFn store, bool absent_is_empty = false) {
  const uint32_t room = *n;
  if (room == 0) return fail({Errc::invalid_argument, "*n: room for no entry"});
  if (anchor->len > sizeof anchor->pos) {
    return fail({Errc::invalid_argument, "anchor damaged (zero it to start again)"});
  }
  if (int rc = claim_event(ev); rc != 0) return rc;
  tessera::Future<Container::KeyPage> fut;
  if (anchor->eof != 0) {  // the listing is complete: an empty page
    tessera::Promise<Container::KeyPage> p;
    p.set_value(Container::KeyPage{});
    fut = p.get_future();
  } else {
    std::string after(reinterpret_cast<const char*>(anchor->pos), anchor->len);
    fut = cont->impl->list_page_async(scope, oid, str(dkey), str(akey), epoch, std::move(after),
                                      room);
  }
  if (ev != nullptr) {
    return start_event(cont, ev, std::move(fut),
                       [=](tessera_event* e, Result<Container::KeyPage> r) {
                         auto* st = static_cast<EventState*>(e->internal_);
                         e->status = take_page(r, scope, anchor, n, room, store, absent_is_empty,
                                               &st->error);
                         e->out_len = *n;
                       });
  }
  std::string error;
  int rc = take_page(fut.get(), scope, anchor, n, room, store, absent_is_empty, &error);
  return rc == 0 ? 0 : fail_text(rc, error);
}

// Keys packed into buf, lens[i] bytes each: as many as fit.
StoreFn keys_into(size_t* lens, void* buf, size_t buflen) {
  return [=](const Container::KeyPage& page, uint32_t, uint32_t* stored, std::string* error) {
    size_t used = 0;
    for (const auto& e : page.entries) {
      if (used + e.key.size() > buflen) break;
      std::memcpy(static_cast<char*>(buf) + used, e.key.data(), e.key.size());
      lens[(*stored)++] = e.key.size();
      used += e.key.size();
    }
    if (*stored == 0 && !page.entries.empty()) {
      lens[0] = page.entries.front().key.size();
      *error = fmt::format("buffer too small: a key of {} bytes does not fit the {} bytes given",
                           lens[0], buflen);
      return -TESSERA_ERANGE;
    }
    return 0;
  };
}

// Keys of a listing into buf/lens. absent_is_empty: as for take_page.
int list_keys(tessera_cont* cont, ListScope scope, ObjectId oid, const char* dkey,
              uint64_t epoch, tessera_anchor* anchor, uint32_t* n, size_t* lens, void* buf,
              size_t buflen, tessera_event* ev, bool absent_is_empty = false) {
  if (cont == nullptr || anchor == nullptr || n == nullptr || lens == nullptr ||
      (buf == nullptr && buflen > 0)) {
    return null_argument();
  }
  return list_call(cont, scope, oid, dkey, nullptr, epoch, anchor, n, ev,
                   keys_into(lens, buf, buflen), absent_is_empty);
}

Result<ObjectId> kv_object(tessera_cont* cont) {
  return cont->impl->make_oid(0, 0);
}

int check_key(const char* key) {
  if (key == nullptr) return null_argument();
  if (*key == '\0') return fail({Errc::invalid_argument, "an empty key"});
  return 0;
}

}  // namespace

extern "C" {

int tessera_cont_list_dkeys(tessera_cont* cont, uint64_t hi, uint64_t lo, uint64_t epoch,
                            tessera_anchor* anchor, uint32_t* n, size_t* lens, void* buf,
                            size_t buflen, tessera_event* ev) {
  return list_keys(cont, ListScope::dkeys, {hi, lo}, nullptr, epoch, anchor, n, lens, buf, buflen,
                   ev);
}

int tessera_cont_list_akeys(tessera_cont* cont, uint64_t hi, uint64_t lo, const char* dkey,
                            uint64_t epoch, tessera_anchor* anchor, uint32_t* n, size_t* lens,
                            void* buf, size_t buflen, tessera_event* ev) {
  if (dkey == nullptr) return null_argument();
  return list_keys(cont, ListScope::akeys, {hi, lo}, dkey, epoch, anchor, n, lens, buf, buflen,
                   ev);
}

int tessera_cont_list_recx(tessera_cont* cont, uint64_t hi, uint64_t lo, const char* dkey,
                           const char* akey, uint64_t epoch, tessera_anchor* anchor, uint32_t* n,
                           uint64_t* offsets, uint64_t* lengths, tessera_event* ev) {
  if (cont == nullptr || dkey == nullptr || akey == nullptr || anchor == nullptr || n == nullptr ||
      offsets == nullptr || lengths == nullptr) {
    return null_argument();
  }
  return list_call(cont, ListScope::recx, {hi, lo}, dkey, akey, epoch, anchor, n, ev,
                   [=](const Container::KeyPage& page, uint32_t room, uint32_t* stored,
                       std::string*) {
                     for (const auto& e : page.entries) {
                       if (*stored == room) break;
                       offsets[*stored] = e.offset;
                       lengths[(*stored)++] = e.length;
                     }
                     return 0;
                   });
}

int tessera_cont_list_objects(tessera_cont* cont, uint64_t epoch, tessera_anchor* anchor,
                              uint32_t* n, uint64_t* oid_hi, uint64_t* oid_lo,
                              tessera_event* ev) {
  if (cont == nullptr || anchor == nullptr || n == nullptr || oid_hi == nullptr ||
      oid_lo == nullptr) {
    return null_argument();
  }
  return list_call(cont, ListScope::objects, {}, nullptr, nullptr, epoch, anchor, n, ev,
                   [=](const Container::KeyPage& page, uint32_t room, uint32_t* stored,
                       std::string*) {
                     for (const auto& e : page.entries) {
                       if (*stored == room) break;
                       oid_hi[*stored] = e.oid.hi;
                       oid_lo[(*stored)++] = e.oid.lo;
                     }
                     return 0;
                   });
}

int tessera_kv_put(tessera_cont* cont, const char* key, const void* buf, size_t len,
                   tessera_event* ev) {
  if (cont == nullptr) return null_argument();
  if (int rc = check_key(key); rc != 0) return rc;
  auto oid = kv_object(cont);
  if (!oid) return fail(oid.status());
  return tessera_cont_update(cont, oid->hi, oid->lo, key, "value", TESSERA_SINGLE, 0, buf, len,
                             TESSERA_COND_NONE, nullptr, ev);
}

int tessera_kv_get(tessera_cont* cont, const char* key, void* buf, size_t buflen, size_t* out_len,
                   tessera_event* ev) {
  if (cont == nullptr || (out_len == nullptr && ev == nullptr) || (buf == nullptr && buflen > 0))
    return null_argument();
  if (int rc = check_key(key); rc != 0) return rc;
  auto oid = kv_object(cont);
  if (!oid) return fail(oid.status());
  if (int rc = claim_event(ev); rc != 0) return rc;
  tessera::FetchFlags f;
  f.must_exist = true;  // a key not there: not_found, not an empty value
  auto fut = cont->impl->fetch_async(*oid, key, "value", tessera::ValueKind::single, 0, 0, 0, f);
  // A key that is not there: named in the error.
  auto named = [k = std::string(key)](const tessera::Status& st) {
    return st.code() == Errc::not_found ? tessera::Status(Errc::not_found, "no key '" + k + "'")
                                        : st;
  };
  if (ev != nullptr) {
    return start_event(cont, ev, std::move(fut),
                       [buf, buflen, named](tessera_event* e, Result<tessera::FetchResult> r) {
                         if (!r) return event_failed(e, named(r.status()));
                         auto* st = static_cast<EventState*>(e->internal_);
                         e->status = copy_out(*r, buf, buflen, &e->out_len, &st->error);
                       });
  }
  auto r = fut.get();
  if (!r) return fail(named(r.status()));
  return copy_out(*r, buf, buflen, out_len);
}

int tessera_kv_remove(tessera_cont* cont, const char* key, tessera_event* ev) {
  if (cont == nullptr) return null_argument();
  if (int rc = check_key(key); rc != 0) return rc;
  auto oid = kv_object(cont);
  if (!oid) return fail(oid.status());
  return tessera_cont_punch(cont, oid->hi, oid->lo, key, nullptr, ev);
}

int tessera_kv_list(tessera_cont* cont, tessera_anchor* anchor, uint32_t* n, size_t* lens,
                    void* buf, size_t buflen, tessera_event* ev) {
  if (cont == nullptr) return null_argument();
  auto oid = kv_object(cont);
  if (!oid) return fail(oid.status());
  // Nothing stored yet (no object): no keys, not an error.
  return list_keys(cont, ListScope::dkeys, *oid, nullptr, 0, anchor, n, lens, buf, buflen, ev,
                   true);
}

}  // extern "C"

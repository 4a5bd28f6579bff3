// The C API's listings (page by page, through tessera_anchor) and key-value calls (tessera.h).
// A listing blocks; the key-value calls run through an event like tessera_cont_update's.
#include <fmt/format.h>

#include <cstring>
#include <string>

#include "client/c_api_impl.hpp"

using namespace tessera::capi;

namespace {

using tessera::Container;
using tessera::Errc;
using tessera::ListScope;
using tessera::ObjectId;
using tessera::Result;

// One page after `anchor` (moved on by the caller once the page is stored).
Result<Container::KeyPage> page_of(tessera_cont* cont, ListScope scope, ObjectId oid,
                                   const char* dkey, const char* akey, uint64_t epoch,
                                   const tessera_anchor* anchor, uint32_t room) {
  if (anchor->len > sizeof anchor->pos) {
    return tessera::Status(Errc::invalid_argument, "anchor damaged (zero it to start again)");
  }
  std::string after(reinterpret_cast<const char*>(anchor->pos), anchor->len);
  return cont->impl->list_page(scope, oid, str(dkey), str(akey), epoch, std::move(after), room);
}

// Moves the anchor past entry `last` of a page (or to its end).
void advance(tessera_anchor* anchor, ListScope scope, const tessera::KeyEntry* last, bool eof) {
  anchor->eof = eof ? 1 : 0;
  if (last == nullptr) return;
  std::string pos = Container::anchor_after(scope, *last);
  anchor->len = static_cast<uint32_t>(pos.size());
  std::memcpy(anchor->pos, pos.data(), pos.size());
}

// Keys of a page into buf/lens: as many as fit; the anchor moves past the last stored one.
int store_keys(tessera_cont* cont, ListScope scope, ObjectId oid, const char* dkey,
               uint64_t epoch, tessera_anchor* anchor, uint32_t* n, size_t* lens, void* buf,
               size_t buflen) {
  if (cont == nullptr || anchor == nullptr || n == nullptr || lens == nullptr ||
      (buf == nullptr && buflen > 0)) {
    return null_argument();
  }
  const uint32_t room = *n;
  *n = 0;
  if (anchor->eof != 0) return 0;
  if (room == 0) return fail({Errc::invalid_argument, "*n: room for no key"});
  auto page = page_of(cont, scope, oid, dkey, nullptr, epoch, anchor, room);
  if (!page) return fail(page.status());
  size_t used = 0;
  uint32_t stored = 0;
  for (const auto& e : page->entries) {
    if (used + e.key.size() > buflen) break;
    std::memcpy(static_cast<char*>(buf) + used, e.key.data(), e.key.size());
    lens[stored++] = e.key.size();
    used += e.key.size();
  }
  if (stored == 0 && !page->entries.empty()) {
    lens[0] = page->entries.front().key.size();
    return fail_range(
        fmt::format("a key of {} bytes does not fit the {} bytes given", lens[0], buflen));
  }
  *n = stored;
  const bool all = stored == page->entries.size();
  advance(anchor, scope, stored > 0 ? &page->entries[stored - 1] : nullptr, all && page->done);
  return 0;
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
                            size_t buflen) {
  return store_keys(cont, ListScope::dkeys, {hi, lo}, nullptr, epoch, anchor, n, lens, buf,
                    buflen);
}

int tessera_cont_list_akeys(tessera_cont* cont, uint64_t hi, uint64_t lo, const char* dkey,
                            uint64_t epoch, tessera_anchor* anchor, uint32_t* n, size_t* lens,
                            void* buf, size_t buflen) {
  if (dkey == nullptr) return null_argument();
  return store_keys(cont, ListScope::akeys, {hi, lo}, dkey, epoch, anchor, n, lens, buf, buflen);
}

int tessera_cont_list_recx(tessera_cont* cont, uint64_t hi, uint64_t lo, const char* dkey,
                           const char* akey, uint64_t epoch, tessera_anchor* anchor, uint32_t* n,
                           uint64_t* offsets, uint64_t* lengths) {
  if (cont == nullptr || dkey == nullptr || akey == nullptr || anchor == nullptr || n == nullptr ||
      offsets == nullptr || lengths == nullptr) {
    return null_argument();
  }
  const uint32_t room = *n;
  *n = 0;
  if (anchor->eof != 0) return 0;
  if (room == 0) return fail({Errc::invalid_argument, "*n: room for no extent"});
  auto page = page_of(cont, ListScope::recx, {hi, lo}, dkey, akey, epoch, anchor, room);
  if (!page) return fail(page.status());
  for (const auto& e : page->entries) {
    offsets[*n] = e.offset;
    lengths[*n] = e.length;
    ++*n;
  }
  advance(anchor, ListScope::recx, page->entries.empty() ? nullptr : &page->entries.back(),
          page->done);
  return 0;
}

int tessera_cont_list_objects(tessera_cont* cont, uint64_t epoch, tessera_anchor* anchor,
                              uint32_t* n, uint64_t* oid_hi, uint64_t* oid_lo) {
  if (cont == nullptr || anchor == nullptr || n == nullptr || oid_hi == nullptr ||
      oid_lo == nullptr) {
    return null_argument();
  }
  const uint32_t room = *n;
  *n = 0;
  if (anchor->eof != 0) return 0;
  if (room == 0) return fail({Errc::invalid_argument, "*n: room for no object"});
  auto page = page_of(cont, ListScope::objects, {}, nullptr, nullptr, epoch, anchor, room);
  if (!page) return fail(page.status());
  for (const auto& e : page->entries) {
    oid_hi[*n] = e.oid.hi;
    oid_lo[*n] = e.oid.lo;
    ++*n;
  }
  advance(anchor, ListScope::objects, page->entries.empty() ? nullptr : &page->entries.back(),
          page->done);
  return 0;
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
                    void* buf, size_t buflen) {
  if (cont == nullptr) return null_argument();
  auto oid = kv_object(cont);
  if (!oid) return fail(oid.status());
  int rc = tessera_cont_list_dkeys(cont, oid->hi, oid->lo, 0, anchor, n, lens, buf, buflen);
  if (rc == -TESSERA_ENOENT) {  // nothing stored yet: no keys
    *n = 0;
    anchor->eof = 1;
    return 0;
  }
  return rc;
}

}  // extern "C"

// The C API's administration calls (tessera.h): pools, containers and snapshots, through the
// management service the client was connected to. Any thread; each blocks, or, given an event,
// runs on the client's workers and completes through the event's queue (run_call). Each call
// is one body: its arguments are checked on the caller's thread, its strings copied for the
// body, which runs at once or later.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "client/c_api_impl.hpp"
#include "client/mgmt_client.hpp"
#include "placement/layout.hpp"

using namespace tessera::capi;

namespace {

using tessera::Errc;
using tessera::Result;
using tessera::Status;

// Copies `s` into a fixed field (the records' texts fit: labels are at most TESSERA_LABEL_MAX).
template <size_t N>
void put(char (&field)[N], const std::string& s) {
  const size_t n = std::min(s.size(), N - 1);
  std::memcpy(field, s.data(), n);
  field[n] = '\0';
}

// "name=value,name=value" (NULL or "": none), as the CLI's --property takes them.
Result<std::vector<std::pair<std::string, std::string>>> name_values(const char* props) {
  std::vector<std::pair<std::string, std::string>> out;
  const std::string text = str(props);
  for (size_t at = 0; at < text.size();) {
    size_t end = text.find(',', at);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(at, end - at);
    at = end + 1;
    if (item.empty()) continue;
    size_t eq = item.find('=');
    if (eq == std::string::npos) {
      return Status(Errc::invalid_argument,
                    fmt::format("container property '{}' is not name=value", item));
    }
    out.emplace_back(item.substr(0, eq), item.substr(eq + 1));
  }
  return out;
}

void fill(tessera_pool_info* out, const tessera::mgmt::PoolView& v) {
  *out = tessera_pool_info{};
  const auto& p = v.pool;
  put(out->uuid, p.uuid);
  put(out->label, p.label);
  out->id = p.id;
  out->map_version = p.map.version;
  out->target_bytes = p.target_bytes;
  out->engines = static_cast<uint32_t>(p.map.engines.size());
  for (const auto& e : p.map.engines) {
    for (const auto& t : e.targets) {
      ++out->targets;
      if (tessera::placement::is_serving(t.state)) ++out->targets_up;
    }
  }
  out->containers = static_cast<uint32_t>(p.containers.size());
  out->open_handles = v.open_handles;
  put(out->redundancy, v.redundancy);
  put(out->rebuild, p.rebuild.state);
}

void fill(tessera_cont_info* out, const tessera::mgmt::ContView& v) {
  *out = tessera_cont_info{};
  const auto& c = v.c;
  put(out->uuid, c.uuid);
  put(out->label, c.props.label);
  out->id = c.id;
  out->rf = c.props.rf;
  put(out->type, std::string(tessera::mgmt::cont_type_name(c.props.type)));
  const auto* cls = tessera::placement::find_class(c.props.oclass);
  put(out->oclass, cls != nullptr ? std::string(cls->name) : std::to_string(c.props.oclass));
  put(out->checksum, c.props.checksum);
  out->cell_size = c.props.cell_size;
  out->snapshots = static_cast<uint32_t>(c.snapshots.size());
  out->open_handles = v.open_handles;
  out->failed_engines = v.health.failed_engines;
  put(out->health, v.health.status);
  out->created_epoch = c.created_epoch;
}

void fill(tessera_snap_info* out, const tessera::mgmt::Snapshot& s) {
  *out = tessera_snap_info{};
  out->epoch = s.epoch;
  put(out->name, s.name);
}

// The records of a list into out[0..max): *n (and the event's out_len) the count;
// -TESSERA_ERANGE when max is short.
template <typename Info, typename Item>
int fill_list(const std::vector<Item>& items, Info* out, size_t max, size_t* n, Outcome& o) {
  *n = items.size();
  o.out_len = items.size();
  for (size_t i = 0; i < items.size() && i < max; ++i) fill(&out[i], items[i]);
  if (items.size() > max) {
    return fail_range(fmt::format("room for {} records, {} needed", max, items.size()));
  }
  return 0;
}

// Runs `body(mc, o)` against the client's management service `mc` as run_call runs a call (at
// once, or on a worker through `ev`); a client connected to one engine alone is refused there.
template <typename Body>
int admin_call(tessera_client* c, tessera_event* ev, Body body) {
  return run_call(c, ev, [c, body = std::move(body)](Outcome& o) {
    if (c->mgmt.empty()) {
      return fail({Errc::unsupported,
                   "connected to one engine (tessera_connect): administration needs a system "
                   "(tessera_connect_system)"});
    }
    tessera::MgmtClient mc(c->mgmt, c->timeout);
    return body(mc, o);
  });
}

int flags_ok(int flags) {
  if ((flags & ~(TESSERA_DESTROY_FORCE | TESSERA_DESTROY_RECURSIVE)) != 0) {
    return fail({Errc::invalid_argument, fmt::format("unknown destroy flags {:#x}", flags)});
  }
  return 0;
}

}  // namespace

extern "C" {

int tessera_pool_create_ev(tessera_client* c, const char* label, uint64_t target_bytes,
                           tessera_pool_info* out, tessera_event* ev) {
  if (c == nullptr || label == nullptr) return null_argument();
  return admin_call(
      c, ev, [label = std::string(label), target_bytes, out](tessera::MgmtClient& mc, Outcome&) {
        auto v = mc.pool_create(label, target_bytes);
        if (!v) return fail(v.status());
        if (out != nullptr) fill(out, *v);
        return 0;
      });
}

int tessera_pool_destroy_ev(tessera_client* c, const char* pool, int flags, tessera_event* ev) {
  if (c == nullptr || pool == nullptr) return null_argument();
  if (int rc = flags_ok(flags); rc != 0) return rc;
  return admin_call(c, ev, [pool = std::string(pool), flags](tessera::MgmtClient& mc, Outcome&) {
    Status st = mc.pool_destroy(pool, (flags & TESSERA_DESTROY_FORCE) != 0,
                                (flags & TESSERA_DESTROY_RECURSIVE) != 0);
    return st.is_ok() ? 0 : fail(st);
  });
}

int tessera_pool_query_ev(tessera_client* c, const char* pool, tessera_pool_info* out,
                          tessera_event* ev) {
  if (c == nullptr || pool == nullptr || out == nullptr) return null_argument();
  return admin_call(c, ev, [pool = std::string(pool), out](tessera::MgmtClient& mc, Outcome&) {
    auto v = mc.pool_query(pool);
    if (!v) return fail(v.status());
    fill(out, *v);
    return 0;
  });
}

int tessera_pool_list_ev(tessera_client* c, tessera_pool_info* out, size_t max, size_t* n,
                         tessera_event* ev) {
  if (c == nullptr || n == nullptr || (out == nullptr && max > 0)) return null_argument();
  return admin_call(c, ev, [out, max, n](tessera::MgmtClient& mc, Outcome& o) {
    auto v = mc.pool_list();
    if (!v) return fail(v.status());
    return fill_list(*v, out, max, n, o);
  });
}

int tessera_cont_create_ev(tessera_client* c, const char* pool, const char* label,
                           const char* props, tessera_cont_info* out, tessera_event* ev) {
  if (c == nullptr || pool == nullptr || label == nullptr) return null_argument();
  tessera::mgmt::ContProps p;
  p.label = label;
  auto changes = name_values(props);
  if (!changes) return fail(changes.status());
  for (const auto& [name, value] : *changes) {
    Status st = tessera::mgmt::set_cont_prop(p, name, value);
    if (!st.is_ok()) return fail(st);
  }
  if (p.label != label) {
    return fail({Errc::invalid_argument, "the label is given as an argument, not a property"});
  }
  return admin_call(c, ev, [pool = std::string(pool), p, out](tessera::MgmtClient& mc, Outcome&) {
    auto v = mc.cont_create(pool, p);
    if (!v) return fail(v.status());
    if (out != nullptr) fill(out, *v);
    return 0;
  });
}

int tessera_cont_destroy_ev(tessera_client* c, const char* pool, const char* cont, int flags,
                            tessera_event* ev) {
  if (c == nullptr || pool == nullptr || cont == nullptr) return null_argument();
  if (int rc = flags_ok(flags); rc != 0) return rc;
  return admin_call(c, ev,
                    [pool = std::string(pool), cont = std::string(cont), flags](
                        tessera::MgmtClient& mc, Outcome&) {
                      Status st = mc.cont_destroy(pool, cont, (flags & TESSERA_DESTROY_FORCE) != 0);
                      return st.is_ok() ? 0 : fail(st);
                    });
}

int tessera_cont_set_prop_ev(tessera_client* c, const char* pool, const char* cont,
                             const char* props, tessera_event* ev) {
  if (c == nullptr || pool == nullptr || cont == nullptr || props == nullptr) {
    return null_argument();
  }
  auto changes = name_values(props);
  if (!changes) return fail(changes.status());
  return admin_call(c, ev,
                    [pool = std::string(pool), cont = std::string(cont),
                     changes = std::move(*changes)](tessera::MgmtClient& mc, Outcome&) {
                      Status st = mc.cont_set_props(pool, cont, changes);
                      return st.is_ok() ? 0 : fail(st);
                    });
}

int tessera_cont_query_ev(tessera_client* c, const char* pool, const char* cont,
                          tessera_cont_info* out, tessera_event* ev) {
  if (c == nullptr || pool == nullptr || cont == nullptr || out == nullptr) return null_argument();
  return admin_call(
      c, ev,
      [pool = std::string(pool), cont = std::string(cont), out](tessera::MgmtClient& mc, Outcome&) {
        auto v = mc.cont_query(pool, cont);
        if (!v) return fail(v.status());
        fill(out, *v);
        return 0;
      });
}

int tessera_cont_list_ev(tessera_client* c, const char* pool, tessera_cont_info* out, size_t max,
                         size_t* n, tessera_event* ev) {
  if (c == nullptr || pool == nullptr || n == nullptr || (out == nullptr && max > 0)) {
    return null_argument();
  }
  return admin_call(c, ev,
                    [pool = std::string(pool), out, max, n](tessera::MgmtClient& mc, Outcome& o) {
                      auto v = mc.pool_query(pool);
                      if (!v) return fail(v.status());
                      return fill_list(v->conts, out, max, n, o);
                    });
}

int tessera_snap_create_ev(tessera_client* c, const char* pool, const char* cont, const char* name,
                           uint64_t* epoch_out, tessera_event* ev) {
  if (c == nullptr || pool == nullptr || cont == nullptr) return null_argument();
  return admin_call(c, ev,
                    [pool = std::string(pool), cont = std::string(cont), name = str(name),
                     epoch_out](tessera::MgmtClient& mc, Outcome& o) {
                      auto v = mc.snap_create(pool, cont, name);
                      if (!v) return fail(v.status());
                      // The new snapshot is the newest (of that name, when named).
                      for (const auto& s : v->c.snapshots) {
                        if ((name.empty() || s.name == name) && s.epoch > o.epoch)
                          o.epoch = s.epoch;
                      }
                      if (epoch_out != nullptr) *epoch_out = o.epoch;
                      return 0;
                    });
}

int tessera_snap_destroy_ev(tessera_client* c, const char* pool, const char* cont, uint64_t epoch,
                            tessera_event* ev) {
  if (c == nullptr || pool == nullptr || cont == nullptr) return null_argument();
  return admin_call(c, ev,
                    [pool = std::string(pool), cont = std::string(cont), epoch](
                        tessera::MgmtClient& mc, Outcome&) {
                      auto v = mc.snap_destroy(pool, cont, epoch);
                      return v ? 0 : fail(v.status());
                    });
}

int tessera_snap_list_ev(tessera_client* c, const char* pool, const char* cont,
                         tessera_snap_info* out, size_t max, size_t* n, tessera_event* ev) {
  if (c == nullptr || pool == nullptr || cont == nullptr || n == nullptr ||
      (out == nullptr && max > 0)) {
    return null_argument();
  }
  return admin_call(c, ev,
                    [pool = std::string(pool), cont = std::string(cont), out, max, n](
                        tessera::MgmtClient& mc, Outcome& o) {
                      auto v = mc.cont_query(pool, cont);
                      if (!v) return fail(v.status());
                      auto snaps = v->c.snapshots;
                      std::sort(snaps.begin(), snaps.end(),
                                [](const auto& a, const auto& b) { return a.epoch < b.epoch; });
                      return fill_list(snaps, out, max, n, o);
                    });
}

int tessera_cont_rollback_ev(tessera_client* c, const char* pool, const char* cont,
                             const char* snap, uint64_t epoch, int flags, uint64_t* epoch_out,
                             tessera_event* ev) {
  if (c == nullptr || pool == nullptr || cont == nullptr) return null_argument();
  if ((flags & ~TESSERA_ROLLBACK_FORCE) != 0) {
    return fail({Errc::invalid_argument, fmt::format("unknown rollback flags {:#x}", flags)});
  }
  const std::string name = str(snap);
  if (name.empty() == (epoch == 0)) {
    return fail({Errc::invalid_argument, "give one of a snapshot's name or an epoch"});
  }
  return admin_call(c, ev,
                    [pool = std::string(pool), cont = std::string(cont), name, epoch, flags,
                     epoch_out](tessera::MgmtClient& mc, Outcome& o) {
                      auto r = mc.cont_rollback(pool, cont, name, epoch,
                                                (flags & TESSERA_ROLLBACK_FORCE) != 0);
                      if (!r) return fail(r.status());
                      o.epoch = r->at;
                      if (epoch_out != nullptr) *epoch_out = r->at;
                      return 0;
                    });
}

// The blocking forms: the same calls without an event.

int tessera_pool_create(tessera_client* c, const char* label, uint64_t target_bytes,
                        tessera_pool_info* out) {
  return tessera_pool_create_ev(c, label, target_bytes, out, nullptr);
}

int tessera_pool_destroy(tessera_client* c, const char* pool, int flags) {
  return tessera_pool_destroy_ev(c, pool, flags, nullptr);
}

int tessera_pool_query(tessera_client* c, const char* pool, tessera_pool_info* out) {
  return tessera_pool_query_ev(c, pool, out, nullptr);
}

int tessera_pool_list(tessera_client* c, tessera_pool_info* out, size_t max, size_t* n) {
  return tessera_pool_list_ev(c, out, max, n, nullptr);
}

int tessera_cont_create(tessera_client* c, const char* pool, const char* label, const char* props,
                        tessera_cont_info* out) {
  return tessera_cont_create_ev(c, pool, label, props, out, nullptr);
}

int tessera_cont_destroy(tessera_client* c, const char* pool, const char* cont, int flags) {
  return tessera_cont_destroy_ev(c, pool, cont, flags, nullptr);
}

int tessera_cont_set_prop(tessera_client* c, const char* pool, const char* cont,
                          const char* props) {
  return tessera_cont_set_prop_ev(c, pool, cont, props, nullptr);
}

int tessera_cont_query(tessera_client* c, const char* pool, const char* cont,
                       tessera_cont_info* out) {
  return tessera_cont_query_ev(c, pool, cont, out, nullptr);
}

int tessera_cont_list(tessera_client* c, const char* pool, tessera_cont_info* out, size_t max,
                      size_t* n) {
  return tessera_cont_list_ev(c, pool, out, max, n, nullptr);
}

int tessera_snap_create(tessera_client* c, const char* pool, const char* cont, const char* name,
                        uint64_t* epoch_out) {
  return tessera_snap_create_ev(c, pool, cont, name, epoch_out, nullptr);
}

int tessera_snap_destroy(tessera_client* c, const char* pool, const char* cont, uint64_t epoch) {
  return tessera_snap_destroy_ev(c, pool, cont, epoch, nullptr);
}

int tessera_snap_list(tessera_client* c, const char* pool, const char* cont, tessera_snap_info* out,
                      size_t max, size_t* n) {
  return tessera_snap_list_ev(c, pool, cont, out, max, n, nullptr);
}

int tessera_cont_rollback(tessera_client* c, const char* pool, const char* cont, const char* snap,
                          uint64_t epoch, int flags, uint64_t* epoch_out) {
  return tessera_cont_rollback_ev(c, pool, cont, snap, epoch, flags, epoch_out, nullptr);
}

}  // extern "C"

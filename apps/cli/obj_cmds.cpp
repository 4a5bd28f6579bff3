// tessera obj ... (objects of a container with --pool/--cont, or of one engine's scratch store)
// and tessera kv ... (keys of a KV container).
#include <cstdlib>
#include <fmt/format.h>

#include <cstdio>
#include <iostream>

#include "apps/cli/common.hpp"
#include "placement/layout.hpp"

namespace tessera::cli {

namespace {

struct ObjArgs {
  std::string pool, cont, oclass;
  std::string oid, dkey, akey, file, out;
  bool array = false, if_absent = false, if_present = false;
  uint64_t offset = 0, length = 0, epoch = 0;
  uint32_t rsize = 1;
  std::string key, value;  // kv
  bool has_value = false;
};

enum class ObjOp { put, get, list, max, punch };

const char* op_name(ObjOp op) {
  switch (op) {
    case ObjOp::put:
      return "obj put";
    case ObjOp::get:
      return "obj get";
    case ObjOp::list:
      return "obj list";
    case ObjOp::max:
      return "obj max";
    case ObjOp::punch:
      return "obj punch";
  }
  return "obj";
}

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string scope_name(ListScope s) {
  return s == ListScope::objects ? "objects"
         : s == ListScope::dkeys ? "dkeys"
         : s == ListScope::akeys ? "akeys"
                                 : "recx";
}

// A container OID: one that names its class is taken as it is (as `obj list` prints them);
// otherwise the class comes from --oclass or the container's default.
Result<ObjectId> container_oid(const Container& c, ObjectId oid, const std::string& oclass) {
  uint16_t cls = placement::oid_class(oid);
  if (cls != 0) {
    const auto* want = oclass.empty() ? nullptr : placement::find_class(oclass);
    if (!oclass.empty() && (want == nullptr || want->id != cls)) {
      const auto* has = placement::find_class(cls);
      return Status(
          Errc::invalid_argument,
          fmt::format("the object id names class {}, not {}",
                      has != nullptr ? std::string(has->name) : std::to_string(cls), oclass));
    }
    TESSERA_TRY(placement::check_oid(oid));
    return oid;
  }
  if ((oid.hi >> 32) != 0) {
    return Status(Errc::invalid_argument,
                  "bits 32..47 of an object id are reserved (the high part is at most 32 bits)");
  }
  return c.make_oid(static_cast<uint32_t>(oid.hi), oid.lo, oclass);
}

std::string class_of(ObjectId oid) {
  const auto* c = placement::find_class(placement::oid_class(oid));
  return c != nullptr ? std::string(c->name) : std::string();
}

// The object commands over either API (Client: one engine; Container: a system container).
template <typename Api>
int obj_run(Globals& g, const ObjArgs& a, ObjOp op, Api& api, ObjectId oid) {
  const char* what = op_name(op);
  ValueKind kind = a.array ? ValueKind::array : ValueKind::single;
  switch (op) {
    case ObjOp::put: {
      auto data = read_input(a.file);
      if (!data) return fail(g, data.status(), what);
      if (a.if_absent && a.if_present) {
        return fail(
            g, Status(Errc::invalid_argument, "--if-absent and --if-present exclude each other"),
            what);
      }
      UpdateFlags uf;
      uf.cond = a.if_absent ? Cond::insert : a.if_present ? Cond::update : Cond::none;
      uf.rsize = a.rsize;
      auto r = api.update(oid, a.dkey, a.akey, kind, a.offset, bytes(*data), uf);
      if (!r) return fail(g, r.status(), what);
      return done(g,
                  {{"oid", oid_str(oid)},
                   {"dkey", a.dkey},
                   {"akey", a.akey},
                   {"bytes", data->size()},
                   {"epoch", epoch_json(*r)}},
                  [&] {
                    std::fprintf(stderr, "stored %zu bytes in %s/%s/%s (epoch %lu)\n", data->size(),
                                 oid_str(oid).c_str(), a.dkey.c_str(), a.akey.c_str(),
                                 static_cast<unsigned long>(*r));
                  });
    }
    case ObjOp::get: {
      auto r = api.fetch(oid, a.dkey, a.akey, kind, a.offset, a.length, a.epoch,
                         FetchFlags{.must_exist = true, .rsize = a.rsize});
      if (!r) return fail(g, r.status(), what);
      if (!a.out.empty()) {
        Status st = write_output(a.out, {r->data.data(), r->data.size()});
        if (!st.is_ok()) return fail(g, st, what);
      }
      json j{{"oid", oid_str(oid)},     {"dkey", a.dkey},  {"akey", a.akey},
             {"bytes", r->data.size()}, {"size", r->size}, {"epoch", epoch_json(r->epoch)}};
      j["holes"] = json::array();
      for (auto [o, l] : r->holes) j["holes"].push_back({{"offset", o}, {"length", l}});
      if (a.out.empty()) put_bytes(j, "data", r->data.view());
      return done(g, j, [&] {
        if (a.out.empty()) {
          std::fwrite(r->data.data(), 1, r->data.size(), stdout);
        } else {
          std::fprintf(stderr, "fetched %zu bytes into %s\n", r->data.size(), a.out.c_str());
        }
      });
    }
    case ObjOp::list: {
      ListScope scope = a.oid.empty()    ? ListScope::objects
                        : a.dkey.empty() ? ListScope::dkeys
                        : a.akey.empty() ? ListScope::akeys
                                         : ListScope::recx;
      auto r = api.list_all(scope, oid, a.dkey, a.akey, a.epoch);
      if (!r) return fail(g, r.status(), what);
      json entries = json::array();
      for (const auto& e : *r) {
        if (scope == ListScope::recx) {
          entries.push_back({{"offset", e.offset}, {"length", e.length}});
        } else if (scope == ListScope::objects) {
          json o{{"oid", oid_str(e.oid)}};
          if (auto c = class_of(e.oid); !c.empty()) o["oclass"] = c;
          entries.push_back(o);
        } else if (scope == ListScope::dkeys) {
          entries.push_back({{"dkey", e.key}});
        } else {
          entries.push_back({{"akey", e.key},
                             {"kind", e.kind == ValueKind::array ? "array" : "single"},
                             {"size", e.size}});
        }
      }
      return done(g, {{"scope", scope_name(scope)}, {"entries", entries}}, [&] {
        for (const auto& e : *r) {
          if (scope == ListScope::recx) {
            std::printf("%lu\t%lu\n", static_cast<unsigned long>(e.offset),
                        static_cast<unsigned long>(e.length));
          } else if (scope == ListScope::objects) {
            auto c = class_of(e.oid);
            std::printf("%s%s%s\n", oid_str(e.oid).c_str(), c.empty() ? "" : "\t", c.c_str());
          } else if (scope == ListScope::dkeys) {
            std::printf("%s\n", e.key.c_str());
          } else {
            std::printf("%s\t%s\t%lu\n", e.key.c_str(),
                        e.kind == ValueKind::array ? "array" : "single",
                        static_cast<unsigned long>(e.size));
          }
        }
      });
    }
    case ObjOp::punch: {
      if (!a.akey.empty() && a.dkey.empty()) {
        return fail(g, Status(Errc::invalid_argument, "--akey needs --dkey"), what);
      }
      if (a.length != 0 && a.akey.empty()) {
        return fail(g, Status(Errc::invalid_argument, "a range punch needs --dkey and --akey"),
                    what);
      }
      auto r = a.length != 0
                   ? api.punch_range_async(oid, a.dkey, a.akey, a.offset, a.length, a.rsize).get()
                   : api.punch(oid, a.dkey, a.akey);
      if (!r) return fail(g, r.status(), what);
      return done(g, {{"oid", oid_str(oid)}, {"epoch", epoch_json(*r)}}, [&] {
        std::fprintf(stderr, "punched %s%s%s (epoch %lu)\n", oid_str(oid).c_str(),
                     a.dkey.empty() ? "" : ("/" + a.dkey).c_str(),
                     a.akey.empty() ? "" : ("/" + a.akey).c_str(), static_cast<unsigned long>(*r));
      });
    }
    case ObjOp::max: {
      if constexpr (std::is_same_v<Api, Client>) {
        if (a.dkey.empty() != a.akey.empty()) {
          return fail(g, Status(Errc::invalid_argument, "give both --dkey and --akey, or neither"),
                      what);
        }
        auto r = api.query_max_async(oid, a.dkey, a.akey, a.epoch).get();
        if (!r) return fail(g, r.status(), what);
        json j{{"oid", oid_str(oid)}, {"found", r->found}};
        if (a.dkey.empty()) {
          j["max_dkey"] = r->dkey;
        } else {
          j["recx_end"] = r->recx_end;
        }
        return done(g, j, [&] {
          if (!r->found) {
            std::printf("(none)\n");
          } else if (a.dkey.empty()) {
            std::printf("%s\n", r->dkey.c_str());
          } else {
            std::printf("%lu\n", static_cast<unsigned long>(r->recx_end));
          }
        });
      } else {
        return fail(g,
                    Status(Errc::unsupported,
                           "obj max works on one engine's scratch store (--engine); on "
                           "containers use obj list"),
                    what);
      }
    }
  }
  return 0;
}

// The arguments with --pool and --cont taken from the environment where not given.
ObjArgs with_env(const ObjArgs& given) {
  ObjArgs a = given;
  auto env = [](std::string& v, const char* name) {
    const char* e = std::getenv(name);
    if (v.empty() && e != nullptr) v = e;
  };
  env(a.pool, "TESSERA_POOL");
  env(a.cont, "TESSERA_CONT");
  return a;
}

int obj_cmd(Globals& g, const ObjArgs& given, ObjOp op) {
  const ObjArgs a = with_env(given);
  const char* what = op_name(op);
  ObjectId oid;
  if (!a.oid.empty()) {
    auto o = parse_oid(a.oid);
    if (!o) return fail(g, o.status(), what);
    oid = *o;
  }
  if (a.pool.empty() != a.cont.empty()) {
    return fail(g, Status(Errc::invalid_argument, "give both --pool and --cont"), what);
  }
  if (a.pool.empty()) {  // engine mode
    if (!a.oclass.empty()) {
      return fail(g, Status(Errc::invalid_argument, "--oclass needs a container (--pool, --cont)"),
                  what);
    }
    ClientOptions o;
    o.engine = g.engine;
    o.timeout = g.timeout();
    auto client = Client::connect(o);
    if (!client) return fail(g, client.status(), "connect");
    return obj_run(g, a, op, **client, oid);
  }
  bool write = op == ObjOp::put || op == ObjOp::punch;
  auto opened = open_container(g, a.pool, a.cont, write);
  if (!opened) return fail(g, opened.status(), what);
  if (!a.oid.empty()) {
    auto o = container_oid(*opened->cont, oid, a.oclass);
    if (!o) return fail(g, o.status(), what);
    oid = *o;
  }
  return obj_run(g, a, op, *opened->cont, oid);
}

enum class KvOp { put, get, list, del };

int kv_cmd(Globals& g, const ObjArgs& given, KvOp op) {
  const ObjArgs a = with_env(given);
  const char* what = op == KvOp::put    ? "kv put"
                     : op == KvOp::get  ? "kv get"
                     : op == KvOp::list ? "kv list"
                                        : "kv del";
  if (a.pool.empty() || a.cont.empty()) {
    return fail(g,
                Status(Errc::invalid_argument,
                       fmt::format("{} is required (or set ${})", a.pool.empty() ? "--pool" : "--cont",
                                   a.pool.empty() ? "TESSERA_POOL" : "TESSERA_CONT")),
                what);
  }
  auto opened = open_container(g, a.pool, a.cont, op == KvOp::put || op == KvOp::del);
  if (!opened) return fail(g, opened.status(), what);
  Container& c = *opened->cont;
  if (c.handle().cont.c.props.type != mgmt::ContType::kv) {
    return fail(g,
                Status(Errc::invalid_argument,
                       fmt::format("container '{}' is of type {}; kv commands need a KV container",
                                   a.cont, mgmt::cont_type_name(c.handle().cont.c.props.type))),
                what);
  }
  switch (op) {
    case KvOp::put: {
      std::string value = a.value;
      if (!a.has_value) {
        auto in = read_input(a.file);
        if (!in) return fail(g, in.status(), what);
        value = std::move(*in);
      }
      auto r = c.kv_put(a.key, bytes(value));
      if (!r) return fail(g, r.status(), what);
      return done(g, {{"key", a.key}, {"bytes", value.size()}, {"epoch", epoch_json(*r)}}, [&] {
        std::fprintf(stderr, "stored %zu bytes under '%s'\n", value.size(), a.key.c_str());
      });
    }
    case KvOp::get: {
      auto r = c.kv_get(a.key);
      if (!r) return fail(g, r.status(), what);
      if (!a.out.empty()) {
        Status st = write_output(a.out, {r->data.data(), r->data.size()});
        if (!st.is_ok()) return fail(g, st, what);
      }
      json j{{"key", a.key}, {"bytes", r->data.size()}, {"epoch", epoch_json(r->epoch)}};
      if (a.out.empty()) put_bytes(j, "value", r->data.view());
      return done(g, j, [&] {
        if (a.out.empty()) std::fwrite(r->data.data(), 1, r->data.size(), stdout);
      });
    }
    case KvOp::list: {
      auto r = c.kv_list();
      if (!r) return fail(g, r.status(), what);
      return done(g, {{"keys", *r}}, [&] {
        for (const auto& k : *r) std::printf("%s\n", k.c_str());
      });
    }
    case KvOp::del: {
      auto r = c.kv_del(a.key);
      if (!r) return fail(g, r.status(), what);
      return done(g, {{"key", a.key}, {"epoch", epoch_json(*r)}},
                  [&] { std::fprintf(stderr, "deleted '%s'\n", a.key.c_str()); });
    }
  }
  return 0;
}

// --pool and --cont, defaulting to $TESSERA_POOL and $TESSERA_CONT. The environment is read
// after parsing (with_env), never by the parser: every leaf binds the same variables, and a
// parser that fills options of leaves not run from the environment would overwrite the flags.
void container_options(CLI::App* c, ObjArgs& a) {
  c->add_option("--pool", a.pool, "pool label or UUID (default: $TESSERA_POOL)");
  c->add_option("--cont", a.cont, "container label or UUID (default: $TESSERA_CONT)");
}

}  // namespace

void add_obj_commands(CLI::App& app, Globals& g) {
  auto* obj = app.add_subcommand(
      "obj",
      "objects of a container (--pool, --cont), or of one engine's scratch store (--engine)");
  obj->require_subcommand(1);
  auto a = std::make_shared<ObjArgs>();
  auto add = [&](const char* name, const char* help, ObjOp op) {
    auto* c = leaf(obj, g, name, help, [&g, a, op] { return obj_cmd(g, *a, op); });
    container_options(c, *a);
    c->add_option("--oclass", a->oclass,
                  "object class of the OID (containers; default: the container's)");
    return c;
  };
  auto* put = add("put", "store a value (from --file or stdin)", ObjOp::put);
  put->add_option("--oid", a->oid, "object id: LO, HI.LO or 0x<hex>")->required();
  put->add_option("--dkey", a->dkey, "distribution key")->required();
  put->add_option("--akey", a->akey, "attribute key")->required();
  put->add_flag("--array", a->array, "write an array extent at --offset instead of a single value");
  put->add_option("--offset", a->offset, "array: first record of the extent");
  put->add_option("--rsize", a->rsize, "array: record size in bytes (default 1)");
  put->add_option("-f,--file", a->file, "input file ('-' or omitted: stdin)");
  put->add_flag("--if-absent", a->if_absent, "store only if the akey has no value (else: exists)");
  put->add_flag("--if-present", a->if_present,
                "store only if the akey has a value (else: not found)");

  auto* get = add("get", "fetch a value (to --out or stdout)", ObjOp::get);
  get->add_option("--oid", a->oid, "object id")->required();
  get->add_option("--dkey", a->dkey, "distribution key")->required();
  get->add_option("--akey", a->akey, "attribute key")->required();
  get->add_flag("--array", a->array, "fetch an array range");
  get->add_option("--offset", a->offset, "array: first record");
  get->add_option("--length", a->length, "array: records (0: to the end)");
  get->add_option("--rsize", a->rsize, "array: record size in bytes (default 1)");
  get->add_option("--epoch", a->epoch, "read what was visible at this epoch (default: newest)");
  get->add_option("-o,--out", a->out, "output file (omitted: stdout)");

  auto* lst = add("list", "list objects, or the dkeys/akeys of one object", ObjOp::list);
  lst->add_option("--oid", a->oid, "object whose keys to list (omitted: list objects)");
  lst->add_option("--dkey", a->dkey, "with --oid: list the akeys of this dkey");
  lst->add_option("--akey", a->akey, "with --oid and --dkey: list the written extents");
  lst->add_option("--epoch", a->epoch, "list what was visible at this epoch (default: newest)");

  auto* mx =
      add("max", "engine mode: the greatest dkey of an object, or the end of an array", ObjOp::max);
  mx->add_option("--oid", a->oid, "object id")->required();
  mx->add_option("--dkey", a->dkey, "with --akey: report the end of this array");
  mx->add_option("--akey", a->akey, "array akey");
  mx->add_option("--epoch", a->epoch, "at this epoch (default: newest)");

  auto* pun =
      add("punch", "remove an object, a dkey, an akey or records of an array", ObjOp::punch);
  pun->add_option("--oid", a->oid, "object id")->required();
  pun->add_option("--dkey", a->dkey, "only this dkey");
  pun->add_option("--akey", a->akey, "only this akey (needs --dkey)");
  pun->add_option("--offset", a->offset, "with --length: punch records of an array akey");
  pun->add_option("--length", a->length, "records to punch (array range punch)");
  pun->add_option("--rsize", a->rsize, "array: record size in bytes (default 1)");
}

void add_kv_commands(CLI::App& app, Globals& g) {
  auto* kv = app.add_subcommand("kv", "keys and values of a KV container (--pool, --cont)");
  kv->require_subcommand(1);
  auto a = std::make_shared<ObjArgs>();
  auto* put = leaf(kv, g, "put", "store VALUE (or --file, or stdin) under KEY",
                   [&g, a] { return kv_cmd(g, *a, KvOp::put); });
  container_options(put, *a);
  put->add_option("key", a->key, "key")->required();
  put->add_option("value", a->value, "value (omitted: --file or stdin)")
      ->each([a](const std::string&) { a->has_value = true; });
  put->add_option("-f,--file", a->file, "read the value from this file ('-': stdin)");
  auto* get = leaf(kv, g, "get", "print the value of KEY (or --out FILE)",
                   [&g, a] { return kv_cmd(g, *a, KvOp::get); });
  container_options(get, *a);
  get->add_option("key", a->key, "key")->required();
  get->add_option("-o,--out", a->out, "write the value to this file");
  auto* list = leaf(kv, g, "list", "every key", [&g, a] { return kv_cmd(g, *a, KvOp::list); });
  container_options(list, *a);
  auto* del = leaf(kv, g, "del", "delete KEY", [&g, a] { return kv_cmd(g, *a, KvOp::del); });
  container_options(del, *a);
  del->add_option("key", a->key, "key")->required();
}

}  // namespace tessera::cli

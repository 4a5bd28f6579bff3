// tessera: the command-line client. Every command has --help; --json prints machine-readable
// output. The engine is found with --engine, else $TESSERA_ENGINE, else 127.0.0.1:10001.
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "client/client.hpp"

using namespace tessera;
using nlohmann::json;

namespace {

struct Globals {
  std::string engine;
  bool json = false;
  int timeout_ms = 30000;
};

int fail(const Globals& g, const Status& st, const std::string& what) {
  if (g.json) {
    json j{{"ok", false},
           {"error", std::string(errc_name(st.code()))},
           {"message", st.message()},
           {"operation", what}};
    std::cout << j.dump(2) << std::endl;
  } else {
    std::fprintf(stderr, "tessera: %s failed: %s\n", what.c_str(), st.to_string().c_str());
  }
  return 1;
}

Result<ObjectId> parse_oid(const std::string& s) {
  auto num = [](const std::string& t, uint64_t& out) {
    if (t.empty()) return false;
    char* end = nullptr;
    errno = 0;
    out = std::strtoull(t.c_str(), &end, 0);
    return errno == 0 && *end == '\0';
  };
  ObjectId oid;
  auto dot = s.find('.');
  if (dot != std::string::npos) {
    if (num(s.substr(0, dot), oid.hi) && num(s.substr(dot + 1), oid.lo)) return oid;
  } else if (s.size() > 18 && (s.rfind("0x", 0) == 0 || s.rfind("0X", 0) == 0)) {
    std::string hex = s.substr(2);
    if (hex.size() <= 32) {
      std::string hi = hex.substr(0, hex.size() - 16);
      std::string lo = hex.substr(hex.size() - 16);
      if (num("0x" + hi, oid.hi) && num("0x" + lo, oid.lo)) return oid;
    }
  } else if (num(s, oid.lo)) {
    return oid;
  }
  return Status(Errc::invalid_argument,
                fmt::format("'{}' is not an object id (use LO, HI.LO or 0x<32 hex digits>)", s));
}

std::string oid_str(ObjectId o) {
  return fmt::format("{}.{}", o.hi, o.lo);
}

Result<std::unique_ptr<Client>> connect(const Globals& g) {
  ClientOptions o;
  o.engine = g.engine;
  o.timeout = std::chrono::milliseconds(g.timeout_ms);
  return Client::connect(o);
}

Result<std::string> read_input(const std::string& file) {
  FILE* f = (file.empty() || file == "-") ? stdin : std::fopen(file.c_str(), "rb");
  if (f == nullptr) {
    return Status(Errc::not_found, fmt::format("cannot read '{}': {}", file, std::strerror(errno)));
  }
  std::string data;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) data.append(buf, n);
  bool err = std::ferror(f) != 0;
  if (f != stdin) std::fclose(f);
  if (err) return Status(Errc::io_error, fmt::format("error reading '{}'", file));
  return data;
}

std::string human(uint64_t b) {
  const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int i = 0;
  while (v >= 1024 && i < 4) {
    v /= 1024;
    ++i;
  }
  return i == 0 ? fmt::format("{} B", b) : fmt::format("{:.1f} {}", v, u[i]);
}

}  // namespace

int main(int argc, char** argv) {
  Globals g;
  const char* env_engine = std::getenv("TESSERA_ENGINE");
  g.engine = env_engine != nullptr ? env_engine : "127.0.0.1:10001";
  CLI::App app{"tessera: talk to a Tessera engine"};
  app.require_subcommand(1);
  app.add_option("-e,--engine", g.engine, "engine control address host:port ($TESSERA_ENGINE)")
      ->capture_default_str();
  app.add_flag("-j,--json", g.json, "machine-readable JSON output");
  app.add_option("--timeout-ms", g.timeout_ms, "per-request timeout")->capture_default_str();

  // --- system ---
  auto* sys = app.add_subcommand("system", "engine and system information");
  sys->require_subcommand(1);
  auto* sys_query =
      sys->add_subcommand("query", "show the engine: rank, targets, CPUs, provider, addresses");

  // --- obj ---
  auto* obj = app.add_subcommand("obj", "object operations (update, fetch, list, punch)");
  obj->require_subcommand(1);
  std::string oid_s, dkey, akey, file, out_file;
  bool array = false, if_absent = false, if_present = false;
  uint64_t offset = 0, length = 0, epoch = 0;
  uint32_t rsize = 1;

  auto* put = obj->add_subcommand("put", "store a value (from --file or stdin)");
  put->add_option("--oid", oid_s, "object id: LO, HI.LO or 0x<hex>")->required();
  put->add_option("--dkey", dkey, "distribution key")->required();
  put->add_option("--akey", akey, "attribute key")->required();
  put->add_flag("--array", array, "write an array extent at --offset instead of a single value");
  put->add_option("--offset", offset, "array: first record of the extent");
  put->add_option("--rsize", rsize, "array: record size in bytes (default 1)");
  put->add_option("-f,--file", file, "input file ('-' or omitted: stdin)");
  put->add_flag("--if-absent", if_absent, "store only if the akey has no value (else: exists)");
  put->add_flag("--if-present", if_present, "store only if the akey has a value (else: not found)");

  auto* get = obj->add_subcommand("get", "fetch a value (to --out or stdout)");
  get->add_option("--oid", oid_s, "object id")->required();
  get->add_option("--dkey", dkey, "distribution key")->required();
  get->add_option("--akey", akey, "attribute key")->required();
  get->add_flag("--array", array, "fetch an array range");
  get->add_option("--offset", offset, "array: first record");
  get->add_option("--length", length, "array: records (0: to the end)");
  get->add_option("--rsize", rsize, "array: record size in bytes (default 1)");
  get->add_option("--epoch", epoch, "read what was visible at this epoch (default: newest)");
  get->add_option("-o,--out", out_file, "output file (omitted: stdout)");

  auto* lst = obj->add_subcommand("list", "list objects, or the dkeys/akeys of one object");
  lst->add_option("--oid", oid_s, "object whose keys to list (omitted: list objects)");
  lst->add_option("--dkey", dkey, "with --oid: list the akeys of this dkey");
  lst->add_option("--akey", akey, "with --oid and --dkey: list the written extents of this array");
  lst->add_option("--epoch", epoch, "list what was visible at this epoch (default: newest)");

  auto* mx = obj->add_subcommand("max", "the greatest dkey of an object, or the end of an array");
  mx->add_option("--oid", oid_s, "object id")->required();
  mx->add_option("--dkey", dkey, "with --akey: report the end of this array");
  mx->add_option("--akey", akey, "array akey");
  mx->add_option("--epoch", epoch, "at this epoch (default: newest)");

  auto* pun = obj->add_subcommand("punch", "remove an object, a dkey or an akey");
  pun->add_option("--oid", oid_s, "object id")->required();
  pun->add_option("--dkey", dkey, "only this dkey");
  pun->add_option("--akey", akey, "only this akey (needs --dkey)");
  pun->add_option("--offset", offset, "with --length: punch records of an array akey");
  pun->add_option("--length", length, "records to punch (array range punch)");
  pun->add_option("--rsize", rsize, "array: record size in bytes (default 1)");

  // --- target maintenance ---
  auto* tgt = app.add_subcommand("target", "per-target store maintenance and counters");
  tgt->require_subcommand(1);
  uint32_t tindex = 0;
  std::vector<uint64_t> protect;
  auto* tstats = tgt->add_subcommand("stats", "space, log, checkpoint and aggregation counters");
  auto* tagg = tgt->add_subcommand(
      "aggregate", "merge old versions, drop what no reader sees any more, free the space");
  tagg->add_option("--epoch", epoch, "aggregate up to this epoch (default: now)");
  tagg->add_option("--protect", protect, "snapshot epochs that stay readable");
  auto* tckpt = tgt->add_subcommand("checkpoint", "write a checkpoint and release the log");
  for (auto* sc : {tstats, tagg, tckpt}) {
    sc->add_option("-t,--target", tindex, "target index (default 0; --all for every target)");
  }
  bool all_targets = false;
  for (auto* sc : {tstats, tagg, tckpt}) sc->add_flag("--all", all_targets, "every target");

  CLI11_PARSE(app, argc, argv);
  ValueKind kind = array ? ValueKind::array : ValueKind::single;

  if (sys_query->parsed()) {
    auto info = query_system(g.engine, std::chrono::milliseconds(g.timeout_ms));
    if (!info) return fail(g, info.status(), "system query");
    // Open a client only to render fabric addresses readably.
    auto c = connect(g);
    const SystemInfo& s = c ? (*c)->system() : *info;
    if (g.json) {
      json j{{"ok", true},
             {"rank", s.rank},
             {"provider", s.provider},
             {"pid", s.pid},
             {"version", s.version},
             {"hostname", s.hostname},
             {"control", s.control_addr},
             {"uptime_ms", s.uptime_ms}};
      j["targets"] = json::array();
      for (const auto& t : s.targets) {
        j["targets"].push_back({{"index", t.index},
                                {"cpu", t.cpu},
                                {"tid", t.tid},
                                {"fabric_address", t.fabric_addr_text},
                                {"backend", t.backend},
                                {"storage", t.storage_path},
                                {"capacity", t.capacity},
                                {"used", t.used}});
      }
      std::cout << j.dump(2) << std::endl;
    } else {
      std::printf("engine rank %u on %s (pid %d, version %s, up %.1f s)\n", s.rank,
                  s.hostname.c_str(), s.pid, s.version.c_str(),
                  static_cast<double>(s.uptime_ms) / 1000);
      std::printf("control %s, provider %s\n", s.control_addr.c_str(), s.provider.c_str());
      std::printf("%-6s %-4s %-8s %-7s %-34s %-12s %s\n", "target", "cpu", "tid", "queue",
                  "fabric address", "used", "storage");
      for (const auto& t : s.targets) {
        std::printf("%-6u %-4d %-8d %-7s %-34s %-12s %s (%s)\n", t.index, t.cpu, t.tid,
                    t.backend.c_str(), t.fabric_addr_text.c_str(), human(t.used).c_str(),
                    t.storage_path.c_str(), human(t.capacity).c_str());
      }
    }
    return 0;
  }

  ObjectId oid;
  if (!oid_s.empty()) {
    auto o = parse_oid(oid_s);
    if (!o) return fail(g, o.status(), "argument parsing");
    oid = *o;
  }
  auto client = connect(g);
  if (!client) return fail(g, client.status(), "connect");
  Client& c = **client;

  if (put->parsed()) {
    auto data = read_input(file);
    if (!data) return fail(g, data.status(), "obj put");
    if (if_absent && if_present) {
      return fail(g,
                  Status(Errc::invalid_argument, "--if-absent and --if-present exclude each other"),
                  "obj put");
    }
    UpdateFlags uf;
    uf.cond = if_absent ? Cond::insert : if_present ? Cond::update : Cond::none;
    uf.rsize = rsize;
    auto r = c.update(oid, dkey, akey, kind, offset,
                      {reinterpret_cast<const uint8_t*>(data->data()), data->size()}, uf);
    if (!r) return fail(g, r.status(), "obj put");
    if (g.json) {
      std::cout << json{{"ok", true},
                        {"oid", oid_str(oid)},
                        {"dkey", dkey},
                        {"akey", akey},
                        {"bytes", data->size()},
                        {"epoch", *r},
                        {"target", c.target_of(oid)}}
                       .dump(2)
                << std::endl;
    } else {
      std::fprintf(stderr, "stored %zu bytes in %s/%s/%s on target %u (epoch %lu)\n", data->size(),
                   oid_str(oid).c_str(), dkey.c_str(), akey.c_str(), c.target_of(oid),
                   static_cast<unsigned long>(*r));
    }
    return 0;
  }

  if (get->parsed()) {
    auto r = c.fetch(oid, dkey, akey, kind, offset, length, epoch,
                     FetchFlags{.must_exist = true, .rsize = rsize});
    if (!r) return fail(g, r.status(), "obj get");
    if (!out_file.empty()) {
      std::ofstream out(out_file, std::ios::binary);
      out.write(reinterpret_cast<const char*>(r->data.data()),
                static_cast<std::streamsize>(r->data.size()));
      if (!out) return fail(g, Status(Errc::io_error, "cannot write " + out_file), "obj get");
    }
    if (g.json) {
      json j{{"ok", true},       {"oid", oid_str(oid)},     {"dkey", dkey},
             {"akey", akey},     {"bytes", r->data.size()}, {"size", r->size},
             {"epoch", r->epoch}};
      j["holes"] = json::array();
      for (auto [o, l] : r->holes) j["holes"].push_back({{"offset", o}, {"length", l}});
      if (out_file.empty()) j["data"] = std::string(r->data.view());
      std::cout << j.dump(2) << std::endl;
    } else if (out_file.empty()) {
      std::fwrite(r->data.data(), 1, r->data.size(), stdout);
    } else {
      std::fprintf(stderr, "fetched %zu bytes into %s\n", r->data.size(), out_file.c_str());
    }
    return 0;
  }

  if (lst->parsed()) {
    ListScope scope = oid_s.empty()  ? ListScope::objects
                      : dkey.empty() ? ListScope::dkeys
                      : akey.empty() ? ListScope::akeys
                                     : ListScope::recx;
    auto r = c.list_all(scope, oid, dkey, akey, epoch);
    if (!r) return fail(g, r.status(), "obj list");
    if (g.json) {
      json j{{"ok", true},
             {"scope", scope == ListScope::objects ? "objects"
                       : scope == ListScope::dkeys ? "dkeys"
                       : scope == ListScope::akeys ? "akeys"
                                                   : "recx"}};
      j["entries"] = json::array();
      for (const auto& e : *r) {
        if (scope == ListScope::recx) {
          j["entries"].push_back({{"offset", e.offset}, {"length", e.length}});
        } else if (scope == ListScope::objects) {
          j["entries"].push_back({{"oid", oid_str(e.oid)}});
        } else if (scope == ListScope::dkeys) {
          j["entries"].push_back({{"dkey", e.key}});
        } else {
          j["entries"].push_back({{"akey", e.key},
                                  {"kind", e.kind == ValueKind::array ? "array" : "single"},
                                  {"size", e.size}});
        }
      }
      std::cout << j.dump(2) << std::endl;
    } else {
      for (const auto& e : *r) {
        if (scope == ListScope::recx)
          std::printf("%lu\t%lu\n", static_cast<unsigned long>(e.offset),
                      static_cast<unsigned long>(e.length));
        else if (scope == ListScope::objects)
          std::printf("%s\n", oid_str(e.oid).c_str());
        else if (scope == ListScope::dkeys)
          std::printf("%s\n", e.key.c_str());
        else
          std::printf("%s\t%s\t%lu\n", e.key.c_str(),
                      e.kind == ValueKind::array ? "array" : "single",
                      static_cast<unsigned long>(e.size));
      }
    }
    return 0;
  }

  if (pun->parsed()) {
    if (!akey.empty() && dkey.empty()) {
      return fail(g, Status(Errc::invalid_argument, "--akey needs --dkey"), "obj punch");
    }
    if (length != 0 && akey.empty()) {
      return fail(g, Status(Errc::invalid_argument, "a range punch needs --dkey and --akey"),
                  "obj punch");
    }
    auto r = length != 0 ? c.punch_range_async(oid, dkey, akey, offset, length, rsize).get()
                         : c.punch(oid, dkey, akey);
    if (!r) return fail(g, r.status(), "obj punch");
    if (g.json) {
      std::cout << json{{"ok", true}, {"oid", oid_str(oid)}, {"epoch", *r}}.dump(2) << std::endl;
    } else {
      std::fprintf(stderr, "punched %s%s%s (epoch %lu)\n", oid_str(oid).c_str(),
                   dkey.empty() ? "" : ("/" + dkey).c_str(),
                   akey.empty() ? "" : ("/" + akey).c_str(), static_cast<unsigned long>(*r));
    }
    return 0;
  }
  if (mx->parsed()) {
    if (dkey.empty() != akey.empty()) {
      return fail(g, Status(Errc::invalid_argument, "give both --dkey and --akey, or neither"),
                  "obj max");
    }
    auto r = c.query_max_async(oid, dkey, akey, epoch).get();
    if (!r) return fail(g, r.status(), "obj max");
    if (g.json) {
      json j{{"ok", true}, {"oid", oid_str(oid)}, {"found", r->found}};
      if (dkey.empty()) {
        j["max_dkey"] = r->dkey;
      } else {
        j["recx_end"] = r->recx_end;
      }
      std::cout << j.dump(2) << std::endl;
    } else if (!r->found) {
      std::printf("(none)\n");
    } else if (dkey.empty()) {
      std::printf("%s\n", r->dkey.c_str());
    } else {
      std::printf("%lu\n", static_cast<unsigned long>(r->recx_end));
    }
    return 0;
  }

  if (tstats->parsed() || tagg->parsed() || tckpt->parsed()) {
    std::vector<uint32_t> targets;
    if (all_targets) {
      for (const auto& t : c.system().targets) targets.push_back(t.index);
    } else {
      if (tindex >= c.system().targets.size()) {
        return fail(g,
                    Status(Errc::invalid_argument,
                           fmt::format("the engine has {} targets; there is no target {}",
                                       c.system().targets.size(), tindex)),
                    "target");
      }
      targets.push_back(tindex);
    }
    json out = json::array();
    for (uint32_t t : targets) {
      if (tstats->parsed()) {
        auto r = c.stats_async(t).get();
        if (!r) return fail(g, r.status(), "target stats");
        json j{{"target", t},
               {"capacity", r->capacity},
               {"used", r->used},
               {"checkpoint_bytes", r->checkpoint_bytes},
               {"pending_free", r->pending_free},
               {"reserve", r->reserve},
               {"wal_used", r->wal_used},
               {"wal_capacity", r->wal_capacity},
               {"objects", r->objects},
               {"versions", r->versions},
               {"updates", r->updates},
               {"fetches", r->fetches},
               {"checkpoints", r->checkpoints},
               {"aggregations", r->aggregations},
               {"aggregation_epoch", r->aggregation_epoch},
               {"recovery_ms", r->recovery_ms},
               {"backend", r->backend}};
        if (!g.json) {
          std::printf(
              "target %u: data %s of %s used (checkpoint %s, awaiting checkpoint %s, reserve "
              "%s); log %s of %s; %lu objects, %lu versions; %lu checkpoints, %lu "
              "aggregations; recovered in %.0f ms\n",
              t, human(r->used).c_str(), human(r->capacity).c_str(),
              human(r->checkpoint_bytes).c_str(), human(r->pending_free).c_str(),
              human(r->reserve).c_str(), human(r->wal_used).c_str(), human(r->wal_capacity).c_str(),
              static_cast<unsigned long>(r->objects), static_cast<unsigned long>(r->versions),
              static_cast<unsigned long>(r->checkpoints),
              static_cast<unsigned long>(r->aggregations), r->recovery_ms);
        }
        out.push_back(j);
      } else if (tagg->parsed()) {
        auto r = c.aggregate_async(t, epoch, protect).get();
        if (!r) return fail(g, r.status(), "target aggregate");
        json j{{"target", t},
               {"epoch", r->epoch},
               {"akeys_scanned", r->akeys_scanned},
               {"versions_dropped", r->versions_dropped},
               {"versions_trimmed", r->versions_trimmed},
               {"punches_dropped", r->punches_dropped},
               {"keys_removed", r->keys_removed},
               {"bytes_freed", r->bytes_freed}};
        if (!g.json) {
          std::printf(
              "target %u: aggregated to epoch %lu: %lu akeys scanned, %lu versions "
              "dropped, %lu trimmed, %s freed\n",
              t, static_cast<unsigned long>(r->epoch), static_cast<unsigned long>(r->akeys_scanned),
              static_cast<unsigned long>(r->versions_dropped),
              static_cast<unsigned long>(r->versions_trimmed), human(r->bytes_freed).c_str());
        }
        out.push_back(j);
      } else {
        auto r = c.checkpoint_async(t).get();
        if (!r) return fail(g, r.status(), "target checkpoint");
        if (!g.json) std::printf("target %u: checkpoint written\n", t);
        out.push_back(json{{"target", t}, {"checkpoint", true}});
      }
    }
    if (g.json) std::cout << json{{"ok", true}, {"targets", out}}.dump(2) << std::endl;
    return 0;
  }
  return 0;
}

#include "apps/cli/common.hpp"

#include <chrono>

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>

#include "apps/local_system.hpp"
#include "core/env.hpp"
#include "placement/layout.hpp"

namespace tessera::cli {

int fail(const Globals& g, const Status& st, const std::string& what) {
  if (g.json) {
    json j{{"ok", false},
           {"error", std::string(errc_name(st.code()))},
           {"message", st.message()},
           {"operation", what}};
    // Never abort on bytes that are not UTF-8 (a key, a message): they are replaced.
    std::cout << j.dump(2, ' ', false, json::error_handler_t::replace) << std::endl;
  } else {
    std::fprintf(stderr, "tessera: %s failed: %s\n", what.c_str(), st.to_string().c_str());
  }
  return 1;
}

int done(const Globals& g, json j, const std::function<void()>& text) {
  if (g.json) {
    json out{{"ok", true}};
    if (j.is_object()) out.update(j);
    std::cout << out.dump(2, ' ', false, json::error_handler_t::replace) << std::endl;
  } else if (text) {
    text();
  }
  return 0;
}

void put_bytes(json& j, const std::string& name, std::string_view bytes) {
  json text = std::string(bytes);
  try {
    (void)text.dump();  // throws on bytes that are not UTF-8
    j[name] = std::move(text);
  } catch (const json::type_error&) {
    std::string hex;
    hex.reserve(bytes.size() * 2);
    for (unsigned char c : bytes) hex += fmt::format("{:02x}", c);
    j[name + "_hex"] = std::move(hex);
  }
}

CLI::App* leaf(CLI::App* parent, Globals& g, const std::string& name, const std::string& help,
               std::function<int()> run) {
  auto* c = parent->add_subcommand(name, help);
  c->callback([&g, run = std::move(run)] { g.rc = run(); });
  // The global options work anywhere on the line: every command's help names them.
  c->footer(
      "\nGlobal options (anywhere on the line):\n"
      "  -j,--json          machine-readable JSON output\n"
      "  --timeout-ms MS    per-request timeout\n"
      "  -m,--mgmt, -s,--system   the system (default: $TESSERA_MGMT, $TESSERA_SYSTEM, "
      "~/.tessera/system.json)\n"
      "  -e,--engine        engine mode: one engine's control address");
  return c;
}

json epoch_json(uint64_t epoch) { return std::to_string(epoch); }

std::string epoch_time(uint64_t epoch) {
  const Nanos wall = wall_of_epoch(epoch);
  const auto secs = static_cast<time_t>(wall.count() / 1000000000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

std::string human(uint64_t b) {
  const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(b);
  int i = 0;
  while (v >= 1024 && i < 5) {
    v /= 1024;
    ++i;
  }
  return i == 0 ? fmt::format("{} B", b) : fmt::format("{:.1f} {}", v, u[i]);
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

Status write_output(const std::string& file, std::span<const uint8_t> data) {
  std::ofstream out(file, std::ios::binary);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (!out) return Status(Errc::io_error, fmt::format("cannot write '{}'", file));
  return Status();
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
  // An OID with class bits reads better (and parses back) with its high part in hex.
  if ((o.hi >> 32) != 0) return fmt::format("{:#x}.{}", o.hi, o.lo);
  return fmt::format("{}.{}", o.hi, o.lo);
}

Result<std::string> mgmt_address(const Globals& g) {
  return local::find_system(g.mgmt, g.system);
}

Result<MgmtClient> mgmt_client(const Globals& g) {
  auto addr = mgmt_address(g);
  if (!addr) return addr.status();
  return MgmtClient(*addr, g.timeout());
}

Result<Opened> open_container(const Globals& g, const std::string& pool, const std::string& cont,
                              bool write) {
  auto addr = mgmt_address(g);
  if (!addr) return addr.status();
  ClientOptions o;
  o.engine = *addr;
  o.timeout = g.timeout();
  Opened out;
  auto c = Client::connect_system(o);
  if (!c) return c.status();
  out.client = std::move(*c);
  auto k = out.client->open_container(pool, cont, write);
  if (!k) return k.status();
  out.cont = std::move(*k);
  return out;
}

json acl_json(const mgmt::Acl& a) {
  return {{"owner_uid", a.owner_uid}, {"owner_gid", a.owner_gid}, {"entries", a.text()}};
}

void print_acl(const mgmt::Acl& a) {
  std::printf("# owner uid %u, owner group gid %u\n", a.owner_uid, a.owner_gid);
  for (const auto& line : a.text()) std::printf("%s\n", line.c_str());
}

json pool_json(const mgmt::PoolView& v) {
  const auto& p = v.pool;
  json engines = json::array();
  for (const auto& e : p.map.engines) {
    json targets = json::array();
    for (const auto& t : e.targets) {
      json jt{{"index", t.index}, {"state", placement::state_name(t.state)}};
      if (const auto* d = p.damage(e.rank, t.index)) jt["damaged"] = d->reason;
      targets.push_back(std::move(jt));
    }
    json je{{"rank", e.rank}, {"host", e.host}, {"targets", targets}};
    if (auto it = v.addrs.find(e.rank); it != v.addrs.end()) je["member"] = it->second.state;
    engines.push_back(je);
  }
  json conts = json::array();
  for (const auto& c : v.conts) conts.push_back(c.c.props.label);
  json damaged = json::array();
  for (const auto& d : p.damaged) {
    damaged.push_back(
        {{"rank", d.rank}, {"target", d.target}, {"reason", d.reason}, {"at_ms", d.at_ms}});
  }
  return {{"id", p.id},
          {"uuid", p.uuid},
          {"label", p.label},
          {"target_bytes", p.target_bytes},
          {"map_version", p.map.version},
          {"engines", engines},
          {"props", p.props},
          {"containers", conts},
          {"open_handles", v.open_handles},
          {"acl", acl_json(p.acl)},
          {"redundancy", v.redundancy},
          {"damaged", damaged},
          {"rebuild", rebuild_json(v)}};
}

json rebuild_json(const mgmt::PoolView& v) {
  const auto& r = v.pool.rebuild;
  const bool busy = r.state == "busy";
  const uint64_t end =
      busy || r.end_ms == 0
          ? static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count())
          : r.end_ms;
  json j{{"state", r.state},
         {"generation", r.gen},
         {"map_version", r.version},
         {"objects", busy ? v.progress.objects : r.objects},
         {"records", busy ? v.progress.records : r.records},
         {"bytes", busy ? v.progress.bytes : r.bytes},
         {"lost", busy ? v.progress.lost : r.lost},
         {"elapsed_ms", r.start_ms == 0 || end < r.start_ms ? 0 : end - r.start_ms}};
  // What the targets counted to move before moving it (`bytes` may be more: writes during the
  // rebuild; or less: stripes found lost or already held).
  if (!busy && r.state != "idle") j["bytes_planned"] = r.planned;
  if (busy) {
    j["targets_done"] = v.progress.targets_done;
    j["targets_total"] = v.progress.targets_total;
    // The bytes to move as the targets counted them before sending (at least what moved),
    // known once every target has counted (`total_known`).
    j["bytes_total"] = v.progress.total();
    j["targets_reported"] = v.progress.targets_reported;
    j["total_known"] = v.progress.total_known();
  }
  if (!r.error.empty()) j["error"] = r.error;
  // Aggregation keeps punches until these targets' reclaim passes after the generation
  // (docs/REBUILD.md).
  if (!v.reclaim_pending.empty()) j["reclaim_pending"] = v.reclaim_pending;
  return j;
}

json cont_json(const mgmt::ContView& v) {
  const auto& c = v.c;
  const auto* cls = placement::find_class(c.props.oclass);
  json snaps = json::array();
  for (const auto& s : c.snapshots) {
    snaps.push_back({{"epoch", epoch_json(s.epoch)}, {"name", s.name}, {"time", epoch_time(s.epoch)}});
  }
  json handles = json::array();
  for (const auto& h : v.handles) {
    handles.push_back({{"id", fmt::format("{:016x}", h.id)},
                       {"uid", h.uid},
                       {"host", h.host},
                       {"pid", h.pid},
                       {"write", (h.perms & mgmt::kWrite) != 0},
                       {"opened_ms", h.opened_ms}});
  }
  return {{"id", c.id},
          {"uuid", c.uuid},
          {"label", c.props.label},
          {"type", mgmt::cont_type_name(c.props.type)},
          {"oclass", cls != nullptr ? std::string(cls->name) : std::to_string(c.props.oclass)},
          {"rf", c.props.rf},
          {"checksum", c.props.checksum},
          {"cell_size", c.props.cell_size},
          {"created_epoch", c.created_epoch},
          {"attrs", c.attrs},
          {"snapshots", snaps},
          {"open_handles", v.open_handles},
          {"handles", handles},
          {"health", v.health.status},
          {"redundancy", v.health.redundancy},
          {"failed_engines", v.health.failed_engines},
          {"lost_data", c.lost_data},
          {"acl", acl_json(c.acl)}};
}

}  // namespace tessera::cli

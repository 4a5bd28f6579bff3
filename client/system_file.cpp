#include "client/system_file.hpp"

#include <unistd.h>

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace tessera::local {

namespace fs = std::filesystem;
using nlohmann::json;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string default_system_path() {
  const char* home = std::getenv("HOME");
  if (home != nullptr && *home != '\0') return std::string(home) + "/.tessera/" + kSystemFileName;
  return fmt::format("/tmp/tessera-{}/{}", ::getuid(), kSystemFileName);
}

std::string system_path(const std::string& flag) {
  std::string p = flag;
  if (p.empty()) {
    const char* env = std::getenv("TESSERA_SYSTEM");
    p = env != nullptr ? env : "";
  }
  if (p.empty()) return default_system_path();
  std::error_code ec;
  if (fs::is_directory(p, ec)) return (fs::path(p) / kSystemFileName).string();
  return p;
}

json SystemFile::to_json() const {
  json j{{"version", 1},
         {"dir", dir},
         {"mgmt", mgmt},
         {"access_points", mgmt::access_points_text(access_points)},
         {"provider", provider},
         {"targets", targets},
         {"scratch_size", scratch_size},
         {"server", server},
         {"engine_args", engine_args},
         {"insecure", insecure},
         {"system_key", system_key},
         {"node_keys", node_keys},
         {"node_key", node_key},
         {"node", node},
         {"agent", agent},
         {"agent_pid", agent_pid}};
  j["engines"] = json::array();
  for (const auto& e : engines) {
    j["engines"].push_back(
        {{"rank", e.rank}, {"control", e.control}, {"pid", e.pid}, {"dir", e.dir}, {"log", e.log}});
  }
  return j;
}

Result<SystemFile> SystemFile::load(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    if (fs::is_symlink(fs::symlink_status(path, ec))) {
      return Status(Errc::not_found, fmt::format("system file {} links to {}, which is gone", path,
                                                 fs::read_symlink(path, ec).string()));
    }
    return Status(Errc::not_found, fmt::format("no system file at {}", path));
  }
  std::string text = read_file(path);
  SystemFile s;
  try {
    json j = json::parse(text);
    s.dir = j.at("dir").get<std::string>();
    s.mgmt = j.at("mgmt").get<std::string>();
    if (const std::string aps = j.value("access_points", std::string()); !aps.empty()) {
      auto l = mgmt::parse_access_points(aps);
      if (!l) throw std::runtime_error("access_points: " + l.status().message());
      s.access_points = std::move(*l);
    }
    s.provider = j.at("provider").get<std::string>();
    s.targets = j.at("targets").get<uint32_t>();
    s.scratch_size = j.value("scratch_size", std::string("64M"));
    s.server = j.value("server", std::string());
    s.engine_args = j.value("engine_args", std::vector<std::string>());
    s.insecure = j.value("insecure", false);
    s.system_key = j.value("system_key", std::string());
    s.node_keys = j.value("node_keys", std::string());
    s.node_key = j.value("node_key", std::string());
    s.node = j.value("node", std::string());
    s.agent = j.value("agent", std::string());
    s.agent_pid = j.value("agent_pid", pid_t{0});
    for (const auto& e : j.at("engines")) {
      EngineRecord r;
      r.rank = e.at("rank").get<uint32_t>();
      r.control = e.at("control").get<std::string>();
      r.pid = e.at("pid").get<pid_t>();
      r.dir = e.at("dir").get<std::string>();
      r.log = e.at("log").get<std::string>();
      s.engines.push_back(std::move(r));
    }
  } catch (const std::exception& e) {
    return Status(Errc::invalid_argument,
                  fmt::format("{} is not a Tessera system file: {}", path, e.what()));
  }
  s.path = path;
  return s;
}

Status SystemFile::save() const {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << to_json().dump(2) << "\n";
    out.flush();
    if (!out) return Status(Errc::io_error, fmt::format("cannot write {}", tmp));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return Status(Errc::io_error, fmt::format("cannot write {}: {}", path, ec.message()));
  return Status();
}

const EngineRecord* SystemFile::engine(uint32_t rank) const {
  for (const auto& e : engines) {
    if (e.rank == rank) return &e;
  }
  return nullptr;
}

security::Authority authority(const SystemFile& sys) {
  std::shared_ptr<const security::SystemKey> key;
  if (!sys.system_key.empty()) {
    auto k = security::SystemKey::load(sys.system_key);
    if (k) key = std::move(*k);  // readable: this process administers the system
  }
  const char* env = std::getenv("TESSERA_AGENT");
  return security::Authority(std::move(key),
                             env != nullptr && *env != '\0' ? std::string(env) : sys.agent);
}

Result<std::string> find_system(const std::string& mgmt, const std::string& system) {
  if (!mgmt.empty()) return mgmt;
  if (const char* env = std::getenv("TESSERA_MGMT"); env != nullptr && *env != '\0') {
    return std::string(env);
  }
  std::string path = system_path(system);
  auto sys = SystemFile::load(path);
  if (!sys) {
    return Status(Errc::not_found,
                  fmt::format("{}: start a system with `tessera system start --dir DIR`, or name "
                              "one with --system FILE, $TESSERA_SYSTEM or --mgmt HOST:PORT",
                              sys.status().message()));
  }
  // The system's keys and agent say how this process authenticates (an administrator if it
  // can read the system key, else a user vouched for by the agent).
  security::set_default_authority(authority(*sys));
  return sys->mgmt;
}

}  // namespace tessera::local

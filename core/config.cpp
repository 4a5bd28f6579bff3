#include "core/config.hpp"

#include <fmt/format.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace tessera {

Result<uint64_t> parse_size(const std::string& s) {
  if (s.empty()) return Status(Errc::invalid_argument, "empty size");
  size_t i = 0;
  uint64_t v = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
    uint64_t d = static_cast<uint64_t>(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10)
      return Status(Errc::invalid_argument, fmt::format("size '{}' overflows", s));
    v = v * 10 + d;
    ++i;
  }
  if (i == 0) return Status(Errc::invalid_argument, fmt::format("'{}' is not a size", s));
  std::string suf = s.substr(i);
  uint64_t mul = 1;
  if (!suf.empty()) {
    char c = static_cast<char>(std::toupper(static_cast<unsigned char>(suf[0])));
    std::string rest = suf.substr(1);
    if (rest != "" && rest != "B" && rest != "iB" && rest != "ib" && rest != "b") {
      return Status(Errc::invalid_argument, fmt::format("'{}' has an unknown size suffix", s));
    }
    switch (c) {
      case 'K':
        mul = 1ull << 10;
        break;
      case 'M':
        mul = 1ull << 20;
        break;
      case 'G':
        mul = 1ull << 30;
        break;
      case 'T':
        mul = 1ull << 40;
        break;
      case 'B':
        mul = 1;
        break;
      default:
        return Status(Errc::invalid_argument, fmt::format("'{}' has an unknown size suffix", s));
    }
  }
  if (v > UINT64_MAX / mul)
    return Status(Errc::invalid_argument, fmt::format("size '{}' overflows", s));
  return v * mul;
}

Result<std::vector<int>> parse_cpu_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    int v = -1;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < 0) {
      return Status(Errc::invalid_argument, fmt::format("'{}' is not a CPU number", item));
    }
    out.push_back(v);
  }
  if (out.empty()) return Status(Errc::invalid_argument, "no CPU given");
  return out;
}

namespace {

// One config value read as T; a failure names the key, its line and the type wanted.
template <typename T>
Result<T> read(const YAML::Node& n, const std::string& key, const char* type) {
  try {
    return n.as<T>();
  } catch (const YAML::Exception&) {
    const std::string got = n.IsScalar() ? n.Scalar() : YAML::Dump(n);
    return Status(Errc::invalid_argument, fmt::format("line {}: {} must be {}, not '{}'",
                                                      n.Mark().line + 1, key, type, got));
  }
}

}  // namespace

Result<EngineConfig> parse_engine_config(const std::string& text, EngineConfig cfg) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return Status(Errc::invalid_argument, fmt::format("config is not valid YAML: {}", e.what()));
  }
  if (!root || root.IsNull()) return cfg;
  if (!root.IsMap()) return Status(Errc::invalid_argument, "config must be a YAML mapping");
  static const std::set<std::string> known = {"rank",
                                              "listen",
                                              "metrics",
                                              "provider",
                                              "fabric_node",
                                              "targets",
                                              "cpus",
                                              "storage_dir",
                                              "storage_size",
                                              "wal_size",
                                              "block_backend",
                                              "busy_poll",
                                              "spin_us",
                                              "log_level",
                                              "port_file",
                                              "max_message",
                                              "checksum",
                                              "checkpoint_interval_ms",
                                              "aggregation_interval_ms",
                                              "aggregation_delay_ms",
                                              "mgmt",
                                              "mgmt_host",
                                              "access_points",
                                              "host",
                                              "mgmt_dead_after_ms",
                                              "mgmt_heartbeat_ms",
                                              "mgmt_stop_grace_ms",
                                              "mgmt_handle_lease_ms",
                                              "swim_period_ms",
                                              "swim_ping_timeout_ms",
                                              "swim_indirect",
                                              "swim_suspicion_ms",
                                              "rebuild_share_pct",
                                              "ec_reencode_interval_ms",
                                              "reclaim_interval_ms",
                                              "system_key",
                                              "node_keys",
                                              "insecure"};
  // Every key once: a second one would silently win or lose.
  std::map<std::string, int> seen;
  for (auto it = root.begin(); it != root.end(); ++it) {
    auto key = read<std::string>(it->first, "a key", "text");
    if (!key) return key.status();
    const int line = it->first.Mark().line + 1;
    if (!known.count(*key)) {
      return Status(Errc::invalid_argument,
                    fmt::format("line {}: unknown config key '{}'", line, *key));
    }
    if (auto [at, fresh] = seen.emplace(*key, line); !fresh) {
      return Status(
          Errc::invalid_argument,
          fmt::format("line {}: key '{}' given twice (first at line {})", line, *key, at->second));
    }
  }
  auto text_of = [&](const char* key, std::string& field) -> Status {
    if (!root[key]) return Status();
    TESSERA_ASSIGN_OR_RETURN(field, read<std::string>(root[key], key, "text"));
    return Status();
  };
  auto flag_of = [&](const char* key, bool& field) -> Status {
    if (!root[key]) return Status();
    TESSERA_ASSIGN_OR_RETURN(field, read<bool>(root[key], key, "true or false"));
    return Status();
  };
  for (auto [key, field] :
       {std::pair{"listen", &cfg.listen}, std::pair{"metrics", &cfg.metrics},
        std::pair{"provider", &cfg.provider}, std::pair{"fabric_node", &cfg.fabric_node},
        std::pair{"storage_dir", &cfg.storage_dir}, std::pair{"block_backend", &cfg.block_backend},
        std::pair{"log_level", &cfg.log_level}, std::pair{"port_file", &cfg.port_file},
        std::pair{"checksum", &cfg.checksum}, std::pair{"mgmt", &cfg.mgmt},
        std::pair{"host", &cfg.host}, std::pair{"system_key", &cfg.system_key},
        std::pair{"node_keys", &cfg.node_keys}}) {
    TESSERA_TRY(text_of(key, *field));
  }
  TESSERA_TRY(flag_of("busy_poll", cfg.busy_poll));
  TESSERA_TRY(flag_of("mgmt_host", cfg.mgmt_host));
  TESSERA_TRY(flag_of("insecure", cfg.insecure));
  if (const YAML::Node n = root["access_points"]) {
    // A list of {rank, control, raft}, or the flag's text form.
    if (n.IsSequence()) {
      cfg.access_points.clear();
      for (const auto& e : n) {
        const int line = e.Mark().line + 1;
        if (!e.IsMap() || !e["rank"] || !e["control"] || !e["raft"] || e.size() != 3) {
          return Status(
              Errc::invalid_argument,
              fmt::format("line {}: access_points: each entry is {{rank, control, raft}}", line));
        }
        auto rank = read<uint32_t>(e["rank"], "access_points: rank", "a whole number >= 0");
        if (!rank) return rank.status();
        auto control = read<std::string>(e["control"], "access_points: control", "host:port");
        if (!control) return control.status();
        auto raft = read<std::string>(e["raft"], "access_points: raft", "IPv4:port");
        if (!raft) return raft.status();
        if (!cfg.access_points.empty()) cfg.access_points += ',';
        cfg.access_points += fmt::format("{}@{}@{}", *rank, *control, *raft);
      }
    } else {
      TESSERA_ASSIGN_OR_RETURN(
          cfg.access_points,
          read<std::string>(n, "access_points", "a list of {rank, control, raft}"));
    }
  }
  if (root["rank"]) {
    TESSERA_ASSIGN_OR_RETURN(cfg.rank, read<uint32_t>(root["rank"], "rank", "a whole number >= 0"));
  }
  if (root["targets"]) {
    TESSERA_ASSIGN_OR_RETURN(cfg.targets,
                             read<uint32_t>(root["targets"], "targets", "a whole number 1..64"));
  }
  if (const YAML::Node n = root["cpus"]) {
    // A list of CPU numbers, or the flag's text form "0,1,2".
    if (n.IsSequence()) {
      TESSERA_ASSIGN_OR_RETURN(cfg.cpus,
                               read<std::vector<int>>(n, "cpus", "a list of CPU numbers"));
    } else {
      auto text = read<std::string>(n, "cpus", "a list of CPU numbers or text like 0,1");
      if (!text) return text.status();
      auto list = parse_cpu_list(*text);
      if (!list) {
        return Status(Errc::invalid_argument,
                      fmt::format("line {}: cpus: {}", n.Mark().line + 1, list.status().message()));
      }
      cfg.cpus = std::move(*list);
    }
  }
  for (auto [key, field] :
       {std::pair{"checkpoint_interval_ms", &cfg.checkpoint_interval_ms},
        std::pair{"aggregation_interval_ms", &cfg.aggregation_interval_ms},
        std::pair{"aggregation_delay_ms", &cfg.aggregation_delay_ms},
        std::pair{"mgmt_dead_after_ms", &cfg.mgmt_dead_after_ms},
        std::pair{"mgmt_heartbeat_ms", &cfg.mgmt_heartbeat_ms},
        std::pair{"mgmt_stop_grace_ms", &cfg.mgmt_stop_grace_ms},
        std::pair{"mgmt_handle_lease_ms", &cfg.mgmt_handle_lease_ms},
        std::pair{"swim_period_ms", &cfg.swim_period_ms},
        std::pair{"swim_ping_timeout_ms", &cfg.swim_ping_timeout_ms},
        std::pair{"swim_indirect", &cfg.swim_indirect},
        std::pair{"swim_suspicion_ms", &cfg.swim_suspicion_ms},
        std::pair{"rebuild_share_pct", &cfg.rebuild_share_pct}, std::pair{"spin_us", &cfg.spin_us},
        std::pair{"ec_reencode_interval_ms", &cfg.ec_reencode_interval_ms},
        std::pair{"reclaim_interval_ms", &cfg.reclaim_interval_ms}}) {
    if (!root[key]) continue;
    TESSERA_ASSIGN_OR_RETURN(*field, read<uint64_t>(root[key], key, "a whole number >= 0"));
  }
  for (auto [key, field] :
       {std::pair{"storage_size", &cfg.storage_bytes}, std::pair{"wal_size", &cfg.wal_bytes},
        std::pair{"max_message", &cfg.max_message_bytes}}) {
    if (!root[key]) continue;
    auto text = read<std::string>(root[key], key, "a size like 1G");
    if (!text) return text.status();
    auto v = parse_size(*text);
    if (!v) {
      return Status(
          Errc::invalid_argument,
          fmt::format("line {}: {}: {}", root[key].Mark().line + 1, key, v.status().message()));
    }
    *field = *v;
  }
  return cfg;
}

Result<EngineConfig> load_engine_config(const std::string& path, EngineConfig base) {
  std::ifstream in(path);
  if (!in) return Status(Errc::not_found, fmt::format("cannot read config file '{}'", path));
  std::stringstream ss;
  ss << in.rdbuf();
  auto r = parse_engine_config(ss.str(), std::move(base));
  if (!r) return Status(r.status().code(), fmt::format("{}: {}", path, r.status().message()));
  return r;
}

Status validate(EngineConfig& cfg) {
  if (cfg.targets == 0 || cfg.targets > 64) {
    return Status(Errc::invalid_argument, "targets must be between 1 and 64");
  }
  if (cfg.swim_period_ms != 0 &&
      (cfg.swim_ping_timeout_ms == 0 || cfg.swim_ping_timeout_ms >= cfg.swim_period_ms ||
       cfg.swim_suspicion_ms < cfg.swim_period_ms)) {
    return Status(Errc::invalid_argument,
                  fmt::format("swim: need 0 < swim_ping_timeout_ms ({}) < swim_period_ms ({}) <= "
                              "swim_suspicion_ms ({})",
                              cfg.swim_ping_timeout_ms, cfg.swim_period_ms, cfg.swim_suspicion_ms));
  }
  if (cfg.mgmt_heartbeat_ms == 0 || cfg.mgmt_heartbeat_ms * 2 > cfg.mgmt_dead_after_ms) {
    return Status(Errc::invalid_argument,
                  fmt::format("need 0 < 2 x mgmt_heartbeat_ms ({}) <= mgmt_dead_after_ms ({})",
                              cfg.mgmt_heartbeat_ms, cfg.mgmt_dead_after_ms));
  }
  if (cfg.spin_us > 10000) {
    return Status(Errc::invalid_argument,
                  fmt::format("spin_us must be 0..10000 (got {})", cfg.spin_us));
  }
  // Off is not offered: after a data movement a pool aggregates again only once every target
  // reported a reclaim pass (docs/REBUILD.md), so without them it would never aggregate again.
  if (cfg.reclaim_interval_ms == 0) {
    return Status(Errc::invalid_argument,
                  "reclaim_interval_ms must be above 0: after a rebuild, a pool's aggregation "
                  "keeps every punch until each target reported a reclaim pass");
  }
  if (cfg.rebuild_share_pct == 0 || cfg.rebuild_share_pct > 100) {
    return Status(Errc::invalid_argument,
                  fmt::format("rebuild_share_pct must be 1..100 (got {})", cfg.rebuild_share_pct));
  }
  if (cfg.provider != "tcp;ofi_rxm" && cfg.provider != "shm" && cfg.provider != "tcp" &&
      cfg.provider != "verbs;ofi_rxm" && cfg.provider != "cxi") {
    return Status(
        Errc::invalid_argument,
        fmt::format("provider '{}' is not supported (use tcp;ofi_rxm or shm)", cfg.provider));
  }
  if (cfg.block_backend != "auto" && cfg.block_backend != "uring" && cfg.block_backend != "aio") {
    return Status(
        Errc::invalid_argument,
        fmt::format("block_backend '{}' is unknown (use auto, uring or aio)", cfg.block_backend));
  }
  if (cfg.log_level != "debug" && cfg.log_level != "info" && cfg.log_level != "warn" &&
      cfg.log_level != "error" && cfg.log_level != "off") {
    return Status(Errc::invalid_argument,
                  fmt::format("log_level '{}' is unknown (use debug, info, warn, error or off)",
                              cfg.log_level));
  }
  if (cfg.checksum != "crc32c" && cfg.checksum != "crc64") {
    return Status(Errc::invalid_argument,
                  fmt::format("checksum '{}' is unknown (use crc32c or crc64)", cfg.checksum));
  }
  if (cfg.storage_bytes < (64ull << 20) || cfg.storage_bytes % 4096 != 0) {
    return Status(Errc::invalid_argument, "storage_size must be at least 64M and a multiple of 4K");
  }
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  if (cfg.cpus.empty()) {
    for (uint32_t i = 0; i < cfg.targets; ++i) cfg.cpus.push_back(static_cast<int>(i % ncpu));
  }
  if (cfg.cpus.size() != cfg.targets) {
    return Status(Errc::invalid_argument,
                  fmt::format("{} cpus given for {} targets", cfg.cpus.size(), cfg.targets));
  }
  for (int c : cfg.cpus) {
    if (c < 0 || c >= ncpu) {
      return Status(Errc::invalid_argument,
                    fmt::format("cpu {} does not exist (this host has {})", c, ncpu));
    }
  }
  if (cfg.storage_dir.empty()) return Status(Errc::invalid_argument, "storage_dir is empty");
  if (!cfg.insecure && cfg.system_key.empty()) {
    return Status(Errc::invalid_argument,
                  "no system key: give system_key (--system-key FILE; `tessera system start` "
                  "makes one), or run without authentication with "
                  "insecure: true (--insecure)");
  }
  return Status();
}

}  // namespace tessera

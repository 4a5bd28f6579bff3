#include "core/config.hpp"

#include <fmt/format.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <fstream>
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
                                              "provider",
                                              "fabric_node",
                                              "targets",
                                              "cpus",
                                              "storage_dir",
                                              "storage_size",
                                              "wal_size",
                                              "block_backend",
                                              "busy_poll",
                                              "log_level",
                                              "port_file",
                                              "max_message",
                                              "checksum",
                                              "checkpoint_interval_ms",
                                              "aggregation_interval_ms",
                                              "aggregation_delay_ms",
                                              "mgmt",
                                              "mgmt_host",
                                              "host",
                                              "mgmt_dead_after_ms",
                                              "mgmt_stop_grace_ms",
                                              "mgmt_handle_lease_ms",
                                              "swim_period_ms",
                                              "swim_ping_timeout_ms",
                                              "swim_indirect",
                                              "swim_suspicion_ms",
                                              "rebuild_share_pct",
                                              "ec_reencode_interval_ms"};
  try {
    for (auto it = root.begin(); it != root.end(); ++it) {
      std::string key = it->first.as<std::string>();
      if (!known.count(key)) {
        return Status(Errc::invalid_argument, fmt::format("unknown config key '{}'", key));
      }
    }
    if (root["rank"]) cfg.rank = root["rank"].as<uint32_t>();
    if (root["listen"]) cfg.listen = root["listen"].as<std::string>();
    if (root["provider"]) cfg.provider = root["provider"].as<std::string>();
    if (root["fabric_node"]) cfg.fabric_node = root["fabric_node"].as<std::string>();
    if (root["targets"]) cfg.targets = root["targets"].as<uint32_t>();
    if (root["cpus"]) cfg.cpus = root["cpus"].as<std::vector<int>>();
    if (root["storage_dir"]) cfg.storage_dir = root["storage_dir"].as<std::string>();
    if (root["block_backend"]) cfg.block_backend = root["block_backend"].as<std::string>();
    if (root["busy_poll"]) cfg.busy_poll = root["busy_poll"].as<bool>();
    if (root["log_level"]) cfg.log_level = root["log_level"].as<std::string>();
    if (root["port_file"]) cfg.port_file = root["port_file"].as<std::string>();
    if (root["checksum"]) cfg.checksum = root["checksum"].as<std::string>();
    if (root["mgmt"]) cfg.mgmt = root["mgmt"].as<std::string>();
    if (root["mgmt_host"]) cfg.mgmt_host = root["mgmt_host"].as<bool>();
    if (root["host"]) cfg.host = root["host"].as<std::string>();
    for (auto [key, field] : {std::pair{"checkpoint_interval_ms", &cfg.checkpoint_interval_ms},
                              std::pair{"aggregation_interval_ms", &cfg.aggregation_interval_ms},
                              std::pair{"aggregation_delay_ms", &cfg.aggregation_delay_ms},
                              std::pair{"mgmt_dead_after_ms", &cfg.mgmt_dead_after_ms},
                              std::pair{"mgmt_stop_grace_ms", &cfg.mgmt_stop_grace_ms},
                              std::pair{"mgmt_handle_lease_ms", &cfg.mgmt_handle_lease_ms},
                              std::pair{"swim_period_ms", &cfg.swim_period_ms},
                              std::pair{"swim_ping_timeout_ms", &cfg.swim_ping_timeout_ms},
                              std::pair{"swim_indirect", &cfg.swim_indirect},
                              std::pair{"swim_suspicion_ms", &cfg.swim_suspicion_ms},
                              std::pair{"rebuild_share_pct", &cfg.rebuild_share_pct},
                              std::pair{"ec_reencode_interval_ms", &cfg.ec_reencode_interval_ms}}) {
      if (root[key]) *field = root[key].as<uint64_t>();
    }
    for (auto [key, field] :
         {std::pair{"storage_size", &cfg.storage_bytes}, std::pair{"wal_size", &cfg.wal_bytes},
          std::pair{"max_message", &cfg.max_message_bytes}}) {
      if (!root[key]) continue;
      auto v = parse_size(root[key].as<std::string>());
      if (!v)
        return Status(Errc::invalid_argument, fmt::format("{}: {}", key, v.status().message()));
      *field = *v;
    }
  } catch (const YAML::Exception& e) {
    return Status(Errc::invalid_argument,
                  fmt::format("config value has the wrong type: {}", e.what()));
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
  return Status();
}

}  // namespace tessera

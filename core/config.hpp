// Engine configuration: a YAML file, overridden by command-line flags (apps/tessera_server).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.hpp"

namespace tessera {

struct EngineConfig {
  uint32_t rank = 0;
  std::string listen = "127.0.0.1:10001";  // control socket (host:port; port 0 = any free port)
  // Prometheus metrics over HTTP (`GET /metrics`; docs/OPERATIONS.md, "Telemetry"): host:port
  // (port 0 = any free port), or "off".
  std::string metrics = "127.0.0.1:0";
  std::string provider = "tcp;ofi_rxm";   // libfabric provider: tcp;ofi_rxm | shm
  std::string fabric_node = "127.0.0.1";  // local address the fabric endpoints bind (tcp)
  uint32_t targets = 2;
  std::vector<int> cpus;  // one CPU per target; empty: target i -> CPU i mod n
  std::string storage_dir = "/tmp/tessera";
  uint64_t storage_bytes = 1ull << 30;  // per target file
  uint64_t wal_bytes = 0;               // per target; 0 = size/8 clamped [16 MiB, 1 GiB]
  std::string block_backend = "auto";   // auto | uring | aio
  bool busy_poll = false;
  // After an event, a target keeps polling this long before it sleeps (a close follow-up costs
  // no wake-up). 0: sleep at once, for hosts where targets share their CPUs with other busy
  // threads (docs/OPERATIONS.md; docs/PERFORMANCE.md measures both).
  uint64_t spin_us = 100;
  std::string log_level = "info";
  std::string port_file;  // if set, the bound control port is written here
  uint64_t max_message_bytes = 256ull << 20;
  std::string checksum = "crc32c";           // crc32c | crc64: kept with every stored extent
  uint64_t checkpoint_interval_ms = 60000;   // 0: checkpoint only when the log fills
  uint64_t aggregation_interval_ms = 30000;  // 0: no background aggregation
  uint64_t aggregation_delay_ms = 30000;     // aggregate versions older than this
  // System membership. `mgmt`: the management service's control address (empty: this engine
  // stands alone, serving only its local scratch store). `mgmt_host`: this engine hosts the
  // management service (then `mgmt` may be empty: it joins itself). `host`: the fault domain
  // above this engine (default: the machine's host name).
  std::string mgmt;
  bool mgmt_host = false;
  // The replicated management service (docs/DEPLOY.md): every access point of the system as
  // "RANK@CONTROL@RAFT,..." (YAML: a list of {rank, control, raft}); the same list on every
  // engine. The engines it names run a replica; every engine finds the leader among their
  // control addresses. Excludes `mgmt` and `mgmt_host`.
  std::string access_points;
  std::string host;
  uint64_t mgmt_dead_after_ms = 10000;  // heartbeat silence after which an engine is dead
  uint64_t mgmt_heartbeat_ms = 1000;    // how often an engine tells the service it lives
  // An engine that stopped cleanly (SIGTERM) keeps its targets in the pool maps this long
  // while it restarts; then it is dead and rebuild refills its data.
  uint64_t mgmt_stop_grace_ms = 30000;
  uint64_t mgmt_handle_lease_ms = 60000;  // a container handle not renewed this long is closed
  // Failure detection among engines (SWIM, actors/swim.hpp); swim_period_ms 0: off.
  uint64_t swim_period_ms = 500;
  uint64_t swim_ping_timeout_ms = 250;
  uint64_t swim_indirect = 3;
  uint64_t swim_suspicion_ms = 3000;
  // Share of a target's time its rebuild scan may use (percent, 1..100); the rest is left to
  // foreground I/O.
  uint64_t rebuild_share_pct = 50;
  // Background re-encoding of erasure-coded partial-stripe copies into cells and parity
  // (rebuild/reencode.hpp): one pass over each pool shard per interval; 0: off. A shard is
  // re-encoded only once its pool map has stayed the same for a whole interval.
  uint64_t ec_reencode_interval_ms = 10000;
  // Reclaim of what the pool map no longer places on a target (a former home's data,
  // rebuild/reclaim.hpp): one pass over each pool shard per interval once its map has stayed
  // the same for a whole interval; 0: off.
  uint64_t reclaim_interval_ms = 10000;
  // Security (docs/SECURITY.md). `system_key`: the key file engines and administrators share;
  // required unless `insecure`. `node_keys`: the directory of the public keys (NODE.pub) of the
  // node agents whose users' credentials the management service accepts. `insecure`: nothing
  // is authenticated (a user's claimed uid is believed); logged at every start.
  std::string system_key;
  std::string node_keys;
  bool insecure = false;
};

// Parses YAML text (keys as in the struct; sizes accept K/M/G/T suffixes). Unknown keys are an
// error so typos do not pass silently.
Result<EngineConfig> parse_engine_config(const std::string& yaml_text, EngineConfig base = {});
Result<EngineConfig> load_engine_config(const std::string& path, EngineConfig base = {});
// Checks ranges and consistency; resolves default CPUs.
Status validate(EngineConfig& cfg);
// "64M" -> 67108864. Accepts K, M, G, T (powers of 1024), optional 'i'/'B'.
Result<uint64_t> parse_size(const std::string& s);
// "0,1,2": one CPU number per target (the --cpus flag and the text form of `cpus:`).
Result<std::vector<int>> parse_cpu_list(const std::string& s);

}  // namespace tessera

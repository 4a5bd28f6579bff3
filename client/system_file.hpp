// The system file: how programs find a Tessera system (docs/OPERATIONS.md). `tessera system
// start` (apps/local_system) writes DIR/system.json: the management service's address, the
// engines it started and the security set-up (the system key, the node agent's socket). The CLI
// and the C API (tessera_connect_system) read it to find the system and to choose how they
// authenticate. Plain blocking file reads: never called on a target thread.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.hpp"
#include "mgmt/leader.hpp"
#include "security/authority.hpp"

namespace tessera::local {

// The name of the system file in a system's directory.
inline constexpr const char* kSystemFileName = "system.json";

struct EngineRecord {
  uint32_t rank = 0;
  std::string control;  // host:port of its control socket
  pid_t pid = 0;
  std::string dir;  // storage directory
  std::string log;  // stdout + stderr of the engine
};

struct SystemFile {
  std::string path;  // where it was read from (not stored in the file)
  std::string dir;
  // The management service: rank 0's control address, or (replicated) every access point's,
  // comma-separated (what MgmtClient takes).
  std::string mgmt;
  // Replicated management service: ranks 0..n-1 are its access points, each on the control
  // and raft ports recorded here (the same on every start). Empty: rank 0 hosts it alone.
  std::vector<mgmt::AccessPoint> access_points;
  std::string provider;
  uint32_t targets = 0;
  std::string scratch_size;              // per-target scratch store of each engine
  std::string server;                    // tessera-server binary
  std::vector<std::string> engine_args;  // more flags every engine starts with (--engine-arg)
  std::vector<EngineRecord> engines;
  // Security (docs/SECURITY.md): the keys `system start` made, and the node agent it runs.
  bool insecure = false;
  std::string system_key;  // DIR/keys/system.key: engines and administrators
  std::string node_keys;   // DIR/keys/nodes: public keys of the node agents users are vouched by
  std::string node_key;    // DIR/keys/node.key: this node's agent's secret key
  std::string node;        // this node's name
  std::string agent;       // the agent's socket
  pid_t agent_pid = 0;

  static Result<SystemFile> load(const std::string& path);
  Status save() const;  // write-then-rename: a reader sees the old file or the new one
  nlohmann::json to_json() const;
  const EngineRecord* engine(uint32_t rank) const;
};

// The system file named by `flag` (may be empty), $TESSERA_SYSTEM or the default pointer.
std::string system_path(const std::string& flag);
std::string default_system_path();

// How a command reaches the system: as an administrator if it can read the system key, else
// as a user vouched for by the node agent ($TESSERA_AGENT, else the system's own).
security::Authority authority(const SystemFile& sys);

// A whole (small) file's text: a system file, a port file, /proc; "" when it cannot be read.
std::string read_file(const std::string& path);

// How a program finds the system, as the CLI does: `mgmt` (the management service's access
// points, host:port[,host:port...]) if not empty; else $TESSERA_MGMT; else the system file named
// by `system` (a file or a system's directory), $TESSERA_SYSTEM or ~/.tessera/system.json, whose
// keys and agent then become the process's default authority (security::set_default_authority).
// Returns the management service's address.
Result<std::string> find_system(const std::string& mgmt, const std::string& system);

}  // namespace tessera::local

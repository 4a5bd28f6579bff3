// A local Tessera system: N engines on 127.0.0.1 sharing one directory, as `tessera system
// start|stop|query` run it (and drills and tests after them).
//
// DIR/system.json records what was started: the management service's address (rank 0 hosts it),
// the provider, targets per engine, each engine's rank, control address, pid, directory and
// log, and the security set-up: the keys under DIR/keys (made at the first start, readable by
// the owner only) and the node agent (tessera-agent) on DIR/agent.sock that vouches for users.
// Every later `tessera` command finds the system through that file: the path given with
// --system, else $TESSERA_SYSTEM, else ~/.tessera/system.json, which `system start` makes a link
// to the newest started DIR/system.json. A path naming a directory means DIR/system.json.
//
// Starting on a DIR that has a system file restarts the engines that are not running (after a
// crash, a kill -9 or a `system stop`) on their existing data; rank 0 comes back on its recorded
// port because the other engines and clients know the management service by that address.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/system_file.hpp"
#include "core/status.hpp"

namespace tessera::local {

struct StartOptions {
  std::string dir;
  uint32_t engines = 0;  // 0: as recorded, else 3
  uint32_t targets = 0;  // 0: as recorded, else 2
  std::string provider;  // empty: as recorded, else tcp;ofi_rxm
  std::string scratch_size = "64M";
  std::string server;   // empty: tessera-server beside this program, else on $PATH
  std::string pointer;  // system file path to link to DIR/system.json (empty: none)
  std::chrono::seconds wait{60};
  // More tessera-server flags for every engine, recorded in the system file: a restart that
  // gives none passes the recorded ones again; given, they replace them.
  std::vector<std::string> engine_args;
  std::string log_level;  // the engines' --log-level this time (empty: theirs; not recorded)
  // Non-empty: start (and wait for) only these ranks of the recorded system, whatever else is
  // missing (a drill's `restart rank 3`).
  std::vector<uint32_t> only;
  // A new system: no keys, no agent, nothing authenticated (every engine logs it at start).
  bool insecure = false;
  // A new system: the management service replicated on this many access points (ranks
  // 0..n-1); 0: as recorded, else rank 0 alone.
  uint32_t access_points = 0;
};

struct StartReport {
  SystemFile sys;
  std::vector<uint32_t> started;  // ranks started by this call
  std::vector<uint32_t> running;  // ranks that were already running
};

using Progress = std::function<void(const std::string&)>;

// Starts (or completes) the system in opts.dir and waits until every engine has joined.
Result<StartReport> start(const StartOptions& opts, const Progress& progress);

// Asks the management service to stop the system, then stops every engine (rank 0 last):
// SIGTERM, and SIGKILL after `grace`. Returns the ranks that were running.
Result<std::vector<uint32_t>> stop(const SystemFile& sys, std::chrono::seconds grace,
                                   const Progress& progress);

// Sends `sig` to the engine of `rank` and, for SIGKILL, waits until its process is gone (a
// drill's `kill rank 3`, `tessera system kill`). Returns the pid it signalled.
Result<pid_t> kill_engine(const SystemFile& sys, uint32_t rank, int sig);

// The engine's process exists and is this engine's tessera-server (not a reused pid).
bool engine_alive(const EngineRecord& e);

}  // namespace tessera::local

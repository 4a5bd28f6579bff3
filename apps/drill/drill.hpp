// Failover drills: a YAML file that names a system, a pool, a container, a verified load and a
// list of steps (kill, restart, exclude, drain, reintegrate, extend, wait, assert, verify...),
// run by `tessera drill run FILE`. docs/DRILLS.md is the guide; tests/drills/ the shipped ones.
//
// The runner starts the system (or attaches to one), creates the pool and container, starts the
// load, runs the steps in order while a monitor thread polls the pool every 100 ms (map
// versions, target states, rebuild generations, the load's acknowledged bytes), and ends with a
// verification of every acknowledged write. Its report has the timeline and the summary:
// detection time of every killed rank, rebuild duration, bytes and rate, foreground throughput
// before/during/after the faults, acknowledged writes and lost writes.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/drill/load.hpp"
#include "core/status.hpp"

namespace tessera::drill {

using Millis = std::chrono::milliseconds;

struct Step {
  enum class Kind {
    sleep,
    kill,          // kill rank R (SIGKILL); term rank R (SIGTERM, a clean stop: waits until it
                   // is gone); hang rank R (SIGSTOP: only failure detection notices); resume
                   // rank R (SIGCONT)
    restart,       // restart rank R
    stop_target,   // stop target R:T (it refuses I/O; the pools take it out)
    pool_op,       // exclude|drain|reintegrate rank R [target T]; extend ranks R,..; rebuild
    wait_rebuild,  // wait rebuild [busy] [timeout D]
    wait_down,     // wait down rank R [timeout D]
    wait_joined,   // wait joined rank R [timeout D]: the rank is a joined member again
    assert_,       // assert health|redundancy|map-version|rebuild|target ...
    verify,        // every write acknowledged so far reads back (the load goes on)
    load,          // load stop|start
    set_prop,      // set-prop NAME VALUE (pool property)
    background,    // background STEP: runs STEP in its own thread; the next steps go on
    wait_background,  // wait background [timeout D]: every background step ended, all ok
    exec,          // exec COMMAND: a shell command (TESSERA_SYSTEM, _POOL, _CONT set)
    fill,          // fill pool to N%: 1 MiB values until the data tier is N% used
    unfill,        // delete fill: punches what the fills wrote
    corrupt,       // corrupt rank R target T [count N]: flips bytes in stored copies of the
                   // load's data in that target's pool file (the engine stopped)
  };
  Kind kind = Kind::sleep;
  int line = 0;
  std::string text;  // as written
  std::vector<uint32_t> ranks;
  int32_t target = -1;
  std::string op;   // kill signal; pool op; assert subject; load action; wait mode; property
  std::string cmp;  // assert comparison (map-version): == >= > <= <
  std::string value;
  Millis duration{0};  // sleep; wait timeout (0: default)
  uint64_t count = 0;  // corrupt: copies to damage (0: every one found)
  std::vector<Step> inner;  // background: the step it runs
};

struct DrillSpec {
  std::string path;
  std::string name;
  std::string description;
  // The system: attach to a system file, or start `engines` x `targets` in a directory.
  std::string attach;
  uint32_t engines = 6;
  uint32_t targets = 1;
  std::string provider;
  std::vector<std::string> engine_args;
  // Pool and container.
  std::string pool = "drill";
  std::string pool_size = "256M";    // per target
  std::vector<uint32_t> pool_ranks;  // empty: every engine
  std::map<std::string, std::string> pool_props;
  std::string cont = "data";
  std::map<std::string, std::string> cont_props;  // oclass (class), rf, type, cell_size...
  bool has_load = true;
  LoadSpec load;
  uint64_t seed = 1;
  bool allow_write_errors = false;
  std::vector<Step> steps;
};

// Reads and checks a drill file: every error names the file and line.
Result<DrillSpec> parse_drill(const std::string& path);

struct RunOptions {
  std::string dir;     // where a started system lives (empty: a new temporary directory)
  bool keep = false;   // keep the started system's directory (always kept on failure)
  std::string attach;  // overrides the drill's system: attach to this system file
  // Every wait's limit (given or default) is multiplied by this, and the load's rate divided
  // by it: a slow build (sanitizers) or machine gets longer limits, and about the same amount
  // of data in its pool, without editing the drill. At least 1.
  double time_scale = 1.0;
  // Called with every timeline event as it happens (text mode prints it).
  std::function<void(const nlohmann::json& event)> on_event;
  // Progress of long waits (a line, replaced in place by the text mode).
  std::function<void(const std::string&)> on_progress;
};

// Runs the drill; the report is {"drill", "passed", "failure", "timeline", "summary"}. A
// Status is returned only when the drill could not run at all (a bad file, no system).
Result<nlohmann::json> run_drill(const DrillSpec& spec, const RunOptions& opts);

}  // namespace tessera::drill

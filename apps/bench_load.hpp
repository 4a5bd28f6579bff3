// tessera-bench load (apps/bench_load.cpp): a steady foreground load that reports its rate as it
// goes, to run beside other work (a rebuild, a drill) and see what that work costs it.
#pragma once

#include <string>

#include "client/client.hpp"

namespace tessera {

struct LoadBenchArgs {
  std::string pool = "tank";
  std::string cont = "c";
  std::string bs = "1M";   // each update: one value of this size in an object of its own
  int qd = 8;              // updates in flight
  double seconds = 30;     // how long the load runs
  int interval_ms = 250;   // one line per interval
};

// Writes until `seconds` passed; prints, per interval, the Unix time at its end (ms) and the
// MiB/s completed in it; then a summary line. A failed update is reported on stderr and counted
// (the exit status is then 1); the load goes on.
int bench_load(const ClientOptions& co, const LoadBenchArgs& a);

}  // namespace tessera

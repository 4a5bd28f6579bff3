// Random drills: `tessera drill generate --seed S` writes a drill whose steps are a random
// sequence of faults (kill -9, clean restarts, restarts with reintegration, faults that land
// while a rebuild runs) that never takes more engines down at once than the container's object
// class survives. Run like any drill, it must end with every acknowledged write read back. The
// same seed and options give the same drill.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.hpp"

namespace tessera::drill {

struct GenerateOptions {
  uint64_t seed = 1;
  std::string oclass = "EC_4P2GX";
  uint32_t engines = 8;
  uint32_t faults = 6;  // fault events: kills and clean restarts
};

// The drill, as YAML text (the options and the seed are in its header comment).
Result<std::string> generate_drill(const GenerateOptions& o);

}  // namespace tessera::drill

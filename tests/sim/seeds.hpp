// The seeds a simulation runs, and what it prints when one fails. Each simulation names its
// variables TESSERA_<NAME>_SEED (run that one seed) and TESSERA_<NAME>_SEEDS (how many of its
// fixed seeds to run); a failing seed prints the command that runs it again and the faults it
// drew.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

namespace tessera::sim {

inline int env_int(const std::string& name, int dflt) {
  const char* v = std::getenv(name.c_str());
  return v != nullptr ? std::atoi(v) : dflt;
}

// TESSERA_<name>_SEED=S: S alone; else the first TESSERA_<name>_SEEDS (default `count`)
// multiples of `step`.
inline std::vector<uint64_t> seeds(const std::string& name, int count, uint64_t step) {
  if (const char* one = std::getenv(fmt::format("TESSERA_{}_SEED", name).c_str())) {
    return {std::strtoull(one, nullptr, 10)};
  }
  std::vector<uint64_t> out;
  const int n = env_int(fmt::format("TESSERA_{}_SEEDS", name), count);
  for (int s = 1; s <= n; ++s) out.push_back(static_cast<uint64_t>(s) * step);
  return out;
}

// A seed failed: the command that runs it again (`binary` with `args`), and the faults it drew.
inline void print_failed_seed(const std::string& name, uint64_t seed, const std::string& binary,
                              const std::vector<std::string>& log, const std::string& args = "") {
  std::cout << fmt::format(
      "seed {} failed; run it again with: TESSERA_{}_SEED={} build/release/tests/{}{}\nfaults:\n",
      seed, name, seed, binary, args.empty() ? "" : " " + args);
  for (const auto& l : log) std::cout << "  " << l << "\n";
}

}  // namespace tessera::sim

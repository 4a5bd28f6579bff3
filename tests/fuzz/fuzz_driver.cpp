// Standalone driver for a fuzz target when libFuzzer is not available: feeds the target's seeds
// (valid inputs), their mutations (bit flips, truncations, splices of two seeds, 4-byte fields
// set to random or boundary values, random runs) and random bytes. Deterministic:
// `fuzz_<target>_driver [iterations] [seed]`.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "tests/fuzz/fuzz_target.hpp"

namespace {
std::vector<uint8_t> mutate(std::vector<uint8_t> f, const std::vector<std::vector<uint8_t>>& seeds,
                            std::mt19937_64& rng) {
  const int rounds = 1 + static_cast<int>(rng() % 3);
  for (int r = 0; r < rounds; ++r) {
    switch (rng() % 7) {
      case 0:  // flip bits
        if (!f.empty()) {
          for (int k = 0, n = 1 + static_cast<int>(rng() % 8); k < n; ++k)
            f[rng() % f.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
        }
        break;
      case 1:  // truncate
        f.resize(f.empty() ? 0 : rng() % f.size());
        break;
      case 2:  // a 4-byte field set to a random or boundary value (lengths, offsets, counts)
        if (f.size() >= 4) {
          static const uint32_t kEdges[] = {0, 1, 7, 8, 0x7fffffff, 0x80000000, 0xffffffff,
                                            4096, 65536};
          uint32_t v = rng() % 2 ? static_cast<uint32_t>(rng()) : kEdges[rng() % 9];
          std::memcpy(f.data() + rng() % (f.size() - 3), &v, 4);
        }
        break;
      case 3:  // a run of random bytes
        if (!f.empty()) {
          size_t at = rng() % f.size();
          size_t n = std::min<size_t>(f.size() - at, 1 + rng() % 64);
          for (size_t k = 0; k < n; ++k) f[at + k] = static_cast<uint8_t>(rng());
        }
        break;
      case 4: {  // splice: the head of this input, the tail of another seed
        const auto& o = seeds[rng() % seeds.size()];
        size_t a = f.empty() ? 0 : rng() % f.size();
        size_t b = o.empty() ? 0 : rng() % o.size();
        f.resize(a);
        f.insert(f.end(), o.begin() + static_cast<long>(b), o.end());
        break;
      }
      case 5:  // pure noise
        f.resize(rng() % 1024);
        for (auto& b : f) b = static_cast<uint8_t>(rng());
        break;
      default:  // unmodified
        break;
    }
  }
  return f;
}
}  // namespace

int main(int argc, char** argv) {
  long iters = argc > 1 ? std::atol(argv[1]) : 100000;
  std::mt19937_64 rng(argc > 2 ? std::strtoull(argv[2], nullptr, 0) : 1);
  const auto seeds = tessera::fuzz::seeds();
  if (seeds.empty()) {
    std::fprintf(stderr, "fuzz driver: the target has no seeds\n");
    return 1;
  }
  for (const auto& s : seeds) LLVMFuzzerTestOneInput(s.data(), s.size());
  for (long i = 0; i < iters; ++i) {
    std::vector<uint8_t> f = mutate(seeds[rng() % seeds.size()], seeds, rng);
    LLVMFuzzerTestOneInput(f.data(), f.size());
  }
  std::printf("fuzz driver: %zu seeds and %ld mutated inputs, no crash\n", seeds.size(), iters);
  return 0;
}

// What every fuzz target provides: libFuzzer's entry point, and the valid inputs the
// standalone driver (fuzz_driver.cpp) mutates when libFuzzer is not available. A target must
// survive any input: decode it or refuse it with an error, never crash, hang or leak; where it
// has invariants of its own (bounds), it aborts when they break, so the fuzzer reports it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace tessera::fuzz {
// Valid inputs to start from (the driver mutates them; libFuzzer builds its own corpus).
std::vector<std::vector<uint8_t>> seeds();
}  // namespace tessera::fuzz

// libsodium must be initialized once per process before use; every entry point of this folder
// calls sodium_ready() first (thread-safe, cheap after the first call).
#pragma once

#include <cstdint>

#include "core/status.hpp"

namespace tessera::security {

Status sodium_ready();

// A random number from libsodium's CSPRNG (the kernel's getrandom): secrets such as container
// handle cookies. Never 0 (0 means "none" wherever such numbers travel).
uint64_t random_nonzero_u64();

}  // namespace tessera::security

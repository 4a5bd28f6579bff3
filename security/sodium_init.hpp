// libsodium must be initialized once per process before use; every entry point of this folder
// calls sodium_ready() first (thread-safe, cheap after the first call).
#pragma once

#include "core/status.hpp"

namespace tessera::security {

Status sodium_ready();

}  // namespace tessera::security

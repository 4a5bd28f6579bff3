#include "security/sodium_init.hpp"

#include <sodium.h>

namespace tessera::security {

Status sodium_ready() {
  static const int rc = sodium_init();  // 0 first time, 1 already done, -1 failed
  if (rc < 0) return Status(Errc::internal, "libsodium failed to initialize");
  return Status();
}

}  // namespace tessera::security

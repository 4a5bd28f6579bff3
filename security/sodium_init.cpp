#include "security/sodium_init.hpp"

#include <sodium.h>

#include <cstdlib>

namespace tessera::security {

Status sodium_ready() {
  static const int rc = sodium_init();  // 0 first time, 1 already done, -1 failed
  if (rc < 0) return Status(Errc::internal, "libsodium failed to initialize");
  return Status();
}

uint64_t random_nonzero_u64() {
  if (!sodium_ready().is_ok()) std::abort();  // no secure randomness: nothing safe to hand out
  uint64_t v = 0;
  while (v == 0) randombytes_buf(&v, sizeof(v));
  return v;
}

}  // namespace tessera::security

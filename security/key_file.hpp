// Key files: written once with mode 0600 (O_EXCL: never over an existing key), read back only
// when no one but the owner can read them (as ssh does for its private keys).
#pragma once

#include <span>
#include <string>

#include "core/buffer.hpp"
#include "core/status.hpp"

namespace tessera::security {

// Creates `path` with mode `mode` holding `bytes`, synced. Fails with `exists` if it exists.
Status write_key_file(const std::string& path, std::span<const uint8_t> bytes, unsigned mode);
// Reads a key of exactly `size` bytes. `secret`: refuse a file that group or others may read.
Result<Buffer> read_key_file(const std::string& path, size_t size, bool secret);

}  // namespace tessera::security

// Self-checking message payloads for the fabric tests: a 16-byte header (sender, sequence,
// size) and bytes that are a function of all three, so a receiver can tell a whole payload from
// a torn, mixed or overwritten one without knowing what was sent.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <string>

#include "core/buffer.hpp"

namespace tessera::testing {

inline uint64_t payload_word(uint64_t key, uint64_t i) {
  uint64_t z = key + (i + 1) * 0x9e3779b97f4a7c15ull;  // splitmix64
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline uint64_t payload_key(uint32_t sender, uint32_t seq, uint64_t size) {
  return (uint64_t{sender} << 32 | seq) ^ (size * 0xff51afd7ed558ccdull);
}

// A payload of `size` (≥ 16) bytes.
inline Buffer make_payload(uint32_t sender, uint32_t seq, uint64_t size) {
  Buffer b(size);
  uint8_t* p = b.data();
  std::memcpy(p, &sender, 4);
  std::memcpy(p + 4, &seq, 4);
  std::memcpy(p + 8, &size, 8);
  uint64_t key = payload_key(sender, seq, size);
  for (uint64_t off = 16; off < size; off += 8) {
    uint64_t w = payload_word(key, off / 8);
    std::memcpy(p + off, &w, std::min<uint64_t>(8, size - off));
  }
  return b;
}

struct PayloadId {
  uint32_t sender = 0;
  uint32_t seq = 0;
};

// The payload's sender and sequence if every byte is what make_payload wrote; false if not.
inline bool check_payload(const Buffer& b, PayloadId* id) {
  if (b.size() < 16) return false;
  const uint8_t* p = b.data();
  uint64_t size = 0;
  std::memcpy(&id->sender, p, 4);
  std::memcpy(&id->seq, p + 4, 4);
  std::memcpy(&size, p + 8, 8);
  if (size != b.size()) return false;
  uint64_t key = payload_key(id->sender, id->seq, size);
  for (uint64_t off = 16; off < size; off += 8) {
    uint64_t w = payload_word(key, off / 8);
    if (std::memcmp(p + off, &w, std::min<uint64_t>(8, size - off)) != 0) return false;
  }
  return true;
}

// Sizes that exercise every receive path: eager (small), the provider's rendezvous (a frame
// of up to max_frame bytes, the zero-copy hand-off above max_frame / 4) and chunked messages.
inline uint64_t payload_size(std::mt19937_64& rng, size_t max_frame) {
  switch (rng() % 4) {
    case 0:
      return 16 + rng() % 8192;
    case 1:
      return max_frame / 4 + rng() % (max_frame / 2);
    case 2:
      return max_frame - 8192 - rng() % 4096;
    default:
      return 2 * max_frame + rng() % max_frame;
  }
}

inline std::string to_hex(const std::string& raw) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (unsigned char c : raw) {
    s += digits[c >> 4];
    s += digits[c & 15];
  }
  return s;
}

inline std::string from_hex(const std::string& hex) {
  std::string raw;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    raw += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  }
  return raw;
}

}  // namespace tessera::testing

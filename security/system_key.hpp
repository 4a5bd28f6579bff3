// SystemKey: the secret that engines and administrators of one system share (32 random bytes,
// a file readable by its owner only). A message sent by a holder carries an HMAC-SHA-512-256
// (libsodium crypto_auth) of its routing fields, credential and body; a receiver that holds the
// key knows the message comes from an engine or an administrator of its own system.
//
// What the MAC covers: every Envelope field but `mac` (source, destination, corr, protocol,
// method, flags, status, error, replyTo, bulkTotal, cred) and the body. The bulk is not
// covered (its integrity is the checksums' business, and hashing every data byte would cost
// the data path what the disk costs); see docs/SECURITY.md.
//
// Thread-safe: a loaded key is immutable and shared.
#pragma once

#include <array>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "core/actor.hpp"

namespace tessera::security {

inline constexpr size_t kMacBytes = 32;
using Mac = std::array<uint8_t, kMacBytes>;

class SystemKey {
 public:
  static constexpr size_t kBytes = 32;

  // Makes a new random key file (mode 0600); refuses to replace an existing one.
  static Status generate(const std::string& path);
  // Loads a key file; refuses one that others may read.
  static Result<std::shared_ptr<const SystemKey>> load(const std::string& path);
  // A key from raw bytes (tests).
  static std::shared_ptr<const SystemKey> from_bytes(const std::array<uint8_t, kBytes>& k);
  ~SystemKey();

  // The authenticator of `m` as sent (bulk_total: the size of its whole bulk).
  Mac mac(const Message& m, uint64_t bulk_total) const;
  // Constant-time comparison of `tag` with mac(m).
  bool verify(const Message& m, uint64_t bulk_total, std::span<const uint8_t> tag) const;
  // The authenticator of a byte string of another protocol than messages (the management
  // replicas' connection handshake). `domain` names the use: a tag made for one use is never
  // valid for another, nor as a message's MAC (system_key.cpp says why).
  Mac tag(std::string_view domain, std::span<const uint8_t> data) const;
  // Constant-time comparison of `t` with tag(domain, data).
  bool check_tag(std::string_view domain, std::span<const uint8_t> data,
                 std::span<const uint8_t> t) const;
  const std::string& path() const { return path_; }

 private:
  struct Keyed;  // the HMAC state with the key absorbed (system_key.cpp)
  SystemKey();
  void absorb_key();
  std::array<uint8_t, kBytes> key_{};
  // Computed once per key: each MAC starts from a copy instead of hashing the key's two
  // padded blocks again (a third of an HMAC of a small message).
  std::unique_ptr<Keyed> keyed_;
  std::string path_;
};

}  // namespace tessera::security

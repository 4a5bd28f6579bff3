// Credentials: who a user is, as the node's agent (apps/agent) vouches for it.
//
// The agent learns the caller's uid, gid and pid from the kernel (SO_PEERCRED) and its groups
// from the group database, never from the caller. It signs a Credential with its node's Ed25519
// key (libsodium crypto_sign). Each credential authorizes one request: it carries the BLAKE2b
// hash of that request's body, a 16-byte random nonce and a validity of kCredentialLifetime.
// A verifier (the management service) checks, in order: the node is known, the signature, the
// validity window (with clock skew), the body hash, and that the nonce was not seen before.
//
// Keys: a node's secret key (64 bytes, mode 0600) signs; verifiers hold the public keys of the
// nodes they trust, one file NODE.pub (32 bytes) per node in a directory read at start. A node
// name from the network only selects among keys loaded at start: it never becomes a path.
//
// Threads: NodeSigner and NodeKeys are immutable after loading; CredentialVerifier locks its
// replay cache (control plane only, never a target thread).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/buffer.hpp"
#include "core/status.hpp"

namespace tessera::security {

inline constexpr std::chrono::milliseconds kCredentialLifetime{60000};
inline constexpr size_t kPublicKeyBytes = 32;
inline constexpr size_t kSecretKeyBytes = 64;
using BodyHash = std::array<uint8_t, 32>;
using Nonce = std::array<uint8_t, 16>;
using PublicKey = std::array<uint8_t, kPublicKeyBytes>;

BodyHash hash_body(std::span<const uint8_t> body);

struct Credential {
  std::string node;
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> groups;
  std::string user;
  uint32_t pid = 0;
  uint64_t issued_ms = 0;
  uint64_t expires_ms = 0;
  Nonce nonce{};
  BodyHash body_hash{};
};

// The credential the kernel's word gives for a peer process: its groups and user name from the
// group and password databases, a fresh nonce, valid from `now_ms` for kCredentialLifetime.
Credential credential_for(uint32_t uid, uint32_t gid, uint32_t pid, const std::string& node,
                          const BodyHash& body, uint64_t now_ms);

// A node's signing key (the agent's).
class NodeSigner {
 public:
  // Makes a key pair: the secret key at `secret_path` (0600), the public key at `public_path`
  // (0644). Refuses to replace existing files.
  static Status generate(const std::string& secret_path, const std::string& public_path);
  static Result<NodeSigner> load(const std::string& secret_path, std::string node);
  NodeSigner(NodeSigner&&) noexcept = default;
  ~NodeSigner();
  // A serialized SignedCredential (proto/auth.capnp).
  std::string sign(const Credential& c) const;
  const std::string& node() const { return node_; }

 private:
  NodeSigner() = default;
  std::string node_;
  std::array<uint8_t, kSecretKeyBytes> secret_{};
};

// The public keys of the nodes a verifier trusts.
class NodeKeys {
 public:
  // Every NODE.pub file of `dir` (other files are ignored; a malformed key fails the load).
  static Result<NodeKeys> load_dir(const std::string& dir);
  void add(std::string node, const PublicKey& key) { keys_[std::move(node)] = key; }
  const PublicKey* find(std::string_view node) const;
  size_t size() const { return keys_.size(); }

 private:
  std::map<std::string, PublicKey, std::less<>> keys_;
};

// Valid node names: what a host name may be (letters, digits, '-', '.', '_'), 1..255 bytes.
bool valid_node_name(std::string_view s);

class CredentialVerifier {
 public:
  struct Options {
    std::chrono::milliseconds max_skew{30000};       // clocks of nodes may differ this much
    std::chrono::milliseconds max_lifetime{300000};  // longer-lived credentials are refused
    size_t max_remembered = 1 << 20;                 // nonces held for replay detection
  };
  CredentialVerifier(NodeKeys keys, Options o) : keys_(std::move(keys)), opts_(o) {}
  explicit CredentialVerifier(NodeKeys keys) : CredentialVerifier(std::move(keys), Options{}) {}

  // The credential in `signed_cred` if it is valid for a request with body `body` at `now_ms`;
  // else `unauthenticated` saying why (or `busy` when the replay cache is full).
  Result<Credential> verify(std::string_view signed_cred, std::span<const uint8_t> body,
                            uint64_t now_ms);
  size_t remembered() const;

 private:
  Result<Credential> check(const Buffer& raw, std::span<const uint8_t> body, uint64_t now_ms);
  NodeKeys keys_;
  Options opts_;
  mutable std::mutex mu_;
  std::set<Nonce> seen_;
  std::multimap<uint64_t, Nonce> forget_at_;  // when each remembered nonce may be dropped
};

}  // namespace tessera::security

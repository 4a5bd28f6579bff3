// Authority: how this process proves who it is to what it calls.
//
// - An engine or an administrator holds the system key: every message it sends carries a MAC
//   (added when the message is framed, net/frame.hpp), and a receiver that verifies it trusts
//   the message entirely, including the user it acts for.
// - A user asks the node's agent (apps/agent) for a credential for each request it sends to the
//   management service (request_credential); the agent vouches for the caller's uid, gid and
//   groups as the kernel reports them.
//
// The process default (default_authority) comes from set_default_authority, or else from the
// environment: $TESSERA_SYSTEM_KEY names a system key file (this process is an administrator
// if it can read it), $TESSERA_AGENT the agent's socket (default kDefaultAgentSocket).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "core/actor.hpp"
#include "security/credential.hpp"
#include "security/system_key.hpp"

namespace tessera::security {

inline constexpr const char* kDefaultAgentSocket = "/run/tessera/agent.sock";

class Authority {
 public:
  Authority() = default;
  Authority(std::shared_ptr<const SystemKey> key, std::string agent)
      : key_(std::move(key)), agent_(std::move(agent)) {}

  const std::shared_ptr<const SystemKey>& key() const { return key_; }
  const std::string& agent() const { return agent_; }
  bool admin() const { return key_ != nullptr; }

  // Prepares `m` to be sent: a user's request gets a credential for its body from the agent
  // (m.cred). Nothing for an administrator (the frame's MAC speaks for it) or without an agent.
  // A failure says why no credential could be had; the caller may send without one.
  Status sign(Message& m, std::chrono::milliseconds timeout) const;

 private:
  std::shared_ptr<const SystemKey> key_;
  std::string agent_;
};

Authority default_authority();
void set_default_authority(Authority a);

// Asks the agent at `socket` for a credential for a request whose body hashes to `h`.
Result<std::string> request_credential(const std::string& socket, const BodyHash& h,
                                       std::chrono::milliseconds timeout);

// The agent's wire format, on a Unix stream socket: one request per connection.
//   request: kAgentMagic (4 bytes) + BodyHash (32 bytes)
//   reply:   status (uint32, tessera::Errc) + length (uint32) + that many bytes: the
//            SignedCredential, or the error text
inline constexpr uint32_t kAgentMagic = 0x31474154;  // "TAG1"
inline constexpr uint32_t kAgentMaxReply = 16384;

}  // namespace tessera::security

// The management replicas' connections: raft's TCP transport with a proof of the system key.
//
// raft (libraft) opens one TCP connection per direction between two access points and starts it
// with its own handshake, in which the connecting side names its raft id and address: words
// from the network, never proof. This transport wraps raft's TCP transport and adds, on every
// connection once raft's handshake is read, a challenge: the accepting side sends 32 random
// bytes, the connecting side answers with the system key's tag over them, the id and the
// address it claims (SystemKey::tag, domain "tessera raft connect"). Only a connection whose
// answer verifies reaches raft; any other is closed and logged. Raft's messages then flow on it.
//
// Bounds: at most kMaxHandshakes connections may be in their handshake at once (others are
// closed at once), and each must finish within kHandshakeTimeout.
//
// What it does not do: encrypt, or authenticate each message after the handshake. An attacker
// on the path between two access points could still read or change raft's traffic
// (docs/SECURITY.md).
//
// Thread: the uv loop's, as the rest of raft.
#pragma once

// libraft's headers declare no C linkage of their own.
extern "C" {
#include <raft.h>
#include <raft/uv.h>
}

#include <chrono>
#include <memory>
#include <set>
#include <string>

#include "security/system_key.hpp"

namespace tessera::mgmt {

inline constexpr size_t kMaxHandshakes = 64;
inline constexpr std::chrono::milliseconds kHandshakeTimeout{5000};

// Owns the outer transport given to raft_uv_init and the TCP one it wraps. Destroy it only
// after raft has closed (raft_close's callback) and the loop has run the transport's close.
class AuthTransport {
 public:
  // `bind`: the address to listen on when it differs from the raft address ("0.0.0.0:P").
  static Result<std::unique_ptr<AuthTransport>> create(
      uv_loop_t* loop, std::shared_ptr<const security::SystemKey> key,
      const std::string& bind = {});
  ~AuthTransport();
  AuthTransport(const AuthTransport&) = delete;
  AuthTransport& operator=(const AuthTransport&) = delete;

  raft_uv_transport* raft() { return &outer_; }
  // Connections refused so far (a wrong key, a short answer, a timeout, too many at once).
  uint64_t refused() const { return refused_; }
  // Why listening failed (a port in use...), once it did.
  const char* errmsg() const { return outer_.errmsg; }

  struct Handshake;  // raft_transport.cpp

 private:
  AuthTransport() = default;
  friend struct AuthTransportImpl;
  raft_uv_transport outer_{};
  raft_uv_transport inner_{};
  bool inner_ready_ = false;
  uv_loop_t* loop_ = nullptr;
  std::shared_ptr<const security::SystemKey> key_;
  raft_id id_ = 0;
  std::string address_;
  std::string bind_;  // where to listen when not address_
  raft_uv_accept_cb accept_cb_ = nullptr;
  raft_uv_transport_close_cb close_cb_ = nullptr;
  bool closing_ = false;
  bool inner_closed_ = false;
  std::set<Handshake*> active_;  // handshakes that still own their connection
  uint64_t refused_ = 0;
};

}  // namespace tessera::mgmt

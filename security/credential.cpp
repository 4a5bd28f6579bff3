#include "security/credential.hpp"

#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <sodium.h>
#include <unistd.h>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <fmt/format.h>

#include <cstring>

#include "proto/auth.capnp.h"
#include "proto/capnp_util.hpp"
#include "security/key_file.hpp"
#include "security/sodium_init.hpp"

namespace tessera::security {

namespace {
Status refused(const std::string& why) {
  return Status(Errc::unauthenticated, "credential refused: " + why);
}

capnp::Data::Reader as_data(const void* p, size_t n) {
  return capnp::Data::Reader(static_cast<const kj::byte*>(p), n);
}
}  // namespace

BodyHash hash_body(std::span<const uint8_t> body) {
  (void)sodium_ready();
  BodyHash h{};
  crypto_generichash(h.data(), h.size(), body.data(), body.size(), nullptr, 0);
  return h;
}

bool valid_node_name(std::string_view s) {
  if (s.empty() || s.size() > 255 || s == "." || s == "..") return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_';
    if (!ok) return false;
  }
  return true;
}

Credential credential_for(uint32_t uid, uint32_t gid, uint32_t pid, const std::string& node,
                          const BodyHash& body, uint64_t now_ms) {
  (void)sodium_ready();
  Credential c;
  c.node = node;
  c.uid = uid;
  c.gid = gid;
  c.pid = pid;
  c.issued_ms = now_ms;
  c.expires_ms = now_ms + static_cast<uint64_t>(kCredentialLifetime.count());
  c.body_hash = body;
  randombytes_buf(c.nonce.data(), c.nonce.size());
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr) {
    c.user = pw.pw_name;
    int n = 256;
    std::vector<gid_t> gs(static_cast<size_t>(n));
    // Too many groups: the first 256 are kept (the kernel's word on gid still stands).
    if (::getgrouplist(pw.pw_name, gid, gs.data(), &n) < 0) n = 256;
    for (int i = 0; i < n && i < 256; ++i) c.groups.push_back(gs[static_cast<size_t>(i)]);
  } else {
    c.user = std::to_string(uid);
    c.groups.push_back(gid);
  }
  return c;
}

Status NodeSigner::generate(const std::string& secret_path, const std::string& public_path) {
  if (Status st = sodium_ready(); !st.is_ok()) return st;
  std::array<uint8_t, kSecretKeyBytes> sk{};
  PublicKey pk{};
  crypto_sign_keypair(pk.data(), sk.data());
  Status st = write_key_file(secret_path, sk, 0600);
  sodium_memzero(sk.data(), sk.size());
  if (!st.is_ok()) return st;
  return write_key_file(public_path, pk, 0644);
}

Result<NodeSigner> NodeSigner::load(const std::string& secret_path, std::string node) {
  if (Status st = sodium_ready(); !st.is_ok()) return st;
  if (!valid_node_name(node)) {
    return Status(Errc::invalid_argument, fmt::format("'{}' is not a valid node name", node));
  }
  auto bytes = read_key_file(secret_path, kSecretKeyBytes, true);
  if (!bytes) return bytes.status();
  NodeSigner s;
  s.node_ = std::move(node);
  std::memcpy(s.secret_.data(), bytes->data(), kSecretKeyBytes);
  sodium_memzero(bytes->data(), bytes->size());
  return s;
}

NodeSigner::~NodeSigner() {
  sodium_memzero(secret_.data(), secret_.size());
}

std::string NodeSigner::sign(const Credential& c) const {
  capnp::MallocMessageBuilder b(256);
  auto r = b.initRoot<schema::Credential>();
  r.setNode(c.node);
  r.setUid(c.uid);
  r.setGid(c.gid);
  auto gs = r.initGroups(static_cast<unsigned>(c.groups.size()));
  for (size_t i = 0; i < c.groups.size(); ++i) gs.set(static_cast<unsigned>(i), c.groups[i]);
  r.setUser(c.user);
  r.setPid(c.pid);
  r.setIssuedMs(c.issued_ms);
  r.setExpiresMs(c.expires_ms);
  r.setNonce(as_data(c.nonce.data(), c.nonce.size()));
  r.setBodyHash(as_data(c.body_hash.data(), c.body_hash.size()));
  Buffer cred = capn::to_body(b);
  std::array<uint8_t, crypto_sign_BYTES> sig{};
  crypto_sign_detached(sig.data(), nullptr, cred.data(), cred.size(), secret_.data());
  capnp::MallocMessageBuilder sb(256);
  auto s = sb.initRoot<schema::SignedCredential>();
  s.setCredential(as_data(cred.data(), cred.size()));
  s.setSignature(as_data(sig.data(), sig.size()));
  Buffer out = capn::to_body(sb);
  return std::string(reinterpret_cast<const char*>(out.data()), out.size());
}

Result<NodeKeys> NodeKeys::load_dir(const std::string& dir) {
  if (Status st = sodium_ready(); !st.is_ok()) return st;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return Status(Errc::not_found,
                  fmt::format("cannot read node key directory {}: {}", dir, std::strerror(errno)));
  }
  NodeKeys out;
  Status st;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.size() <= 4 || name.substr(name.size() - 4) != ".pub") continue;
    std::string node = name.substr(0, name.size() - 4);
    if (!valid_node_name(node)) continue;
    auto bytes = read_key_file(dir + "/" + name, kPublicKeyBytes, false);
    if (!bytes) {
      st = bytes.status();
      break;
    }
    PublicKey pk{};
    std::memcpy(pk.data(), bytes->data(), pk.size());
    out.add(std::move(node), pk);
  }
  ::closedir(d);
  if (!st.is_ok()) return st;
  return out;
}

const PublicKey* NodeKeys::find(std::string_view node) const {
  auto it = keys_.find(node);
  return it == keys_.end() ? nullptr : &it->second;
}

Result<Credential> CredentialVerifier::verify(std::string_view signed_cred,
                                              std::span<const uint8_t> body, uint64_t now_ms) {
  if (signed_cred.empty()) return refused("the request carries none");
  // Decoded from a word-aligned copy (the envelope's bytes need not be aligned).
  Buffer raw(signed_cred.data(), signed_cred.size());
  if (raw.size() % 8 != 0) return refused("malformed (not a whole number of words)");
  try {
    return check(raw, body, now_ms);
  } catch (const kj::Exception& e) {
    return refused(fmt::format("malformed: {}", e.getDescription().cStr()));
  }
}

Result<Credential> CredentialVerifier::check(const Buffer& raw, std::span<const uint8_t> body,
                                             uint64_t now_ms) {
  Credential c;
  Buffer cred_bytes;
  std::array<uint8_t, crypto_sign_BYTES> sig{};
  {
    capn::DecodeScope ds;
    capn::BodyReader br(raw);
    auto s = br.root<schema::SignedCredential>();
    auto cb = s.getCredential();
    auto sb = s.getSignature();
    if (ds.failed()) return refused("malformed: " + ds.what());
    if (sb.size() != sig.size()) return refused("unsigned or malformed signature");
    std::memcpy(sig.data(), sb.begin(), sig.size());
    cred_bytes = Buffer(cb.begin(), cb.size());
  }
  if (cred_bytes.size() % 8 != 0 || cred_bytes.size() == 0) return refused("malformed body");
  {
    capn::DecodeScope ds;
    capn::BodyReader br(cred_bytes);
    auto r = br.root<schema::Credential>();
    c.node = r.getNode();
    c.uid = r.getUid();
    c.gid = r.getGid();
    for (auto g : r.getGroups()) c.groups.push_back(g);
    c.user = r.getUser();
    c.pid = r.getPid();
    c.issued_ms = r.getIssuedMs();
    c.expires_ms = r.getExpiresMs();
    auto n = r.getNonce();
    auto h = r.getBodyHash();
    if (ds.failed()) return refused("malformed: " + ds.what());
    if (n.size() != c.nonce.size() || h.size() != c.body_hash.size()) {
      return refused("malformed nonce or body hash");
    }
    std::memcpy(c.nonce.data(), n.begin(), c.nonce.size());
    std::memcpy(c.body_hash.data(), h.begin(), c.body_hash.size());
  }
  const PublicKey* pk = keys_.find(c.node);
  if (pk == nullptr) return refused(fmt::format("node '{}' is not trusted", c.node));
  if (crypto_sign_verify_detached(sig.data(), cred_bytes.data(), cred_bytes.size(), pk->data()) !=
      0) {
    return refused(fmt::format("signature does not verify with node '{}''s key", c.node));
  }
  const auto skew = static_cast<uint64_t>(opts_.max_skew.count());
  if (c.expires_ms < c.issued_ms ||
      c.expires_ms - c.issued_ms > static_cast<uint64_t>(opts_.max_lifetime.count())) {
    return refused("validity period out of bounds");
  }
  if (now_ms > c.expires_ms + skew) {
    return refused(fmt::format("expired {} ms ago", now_ms - c.expires_ms));
  }
  if (c.issued_ms > now_ms + skew) return refused("issued in the future (clock skew?)");
  BodyHash want = hash_body(body);
  if (sodium_memcmp(want.data(), c.body_hash.data(), want.size()) != 0) {
    return refused("it was issued for another request");
  }
  std::lock_guard<std::mutex> g(mu_);
  while (!forget_at_.empty() && forget_at_.begin()->first < now_ms) {
    seen_.erase(forget_at_.begin()->second);
    forget_at_.erase(forget_at_.begin());
  }
  if (seen_.count(c.nonce) != 0) return refused("replayed (its nonce was used before)");
  if (seen_.size() >= opts_.max_remembered) {
    return Status(Errc::busy, "too many credentials in their validity period: retry later");
  }
  seen_.insert(c.nonce);
  forget_at_.emplace(c.expires_ms + skew, c.nonce);
  return c;
}

size_t CredentialVerifier::remembered() const {
  std::lock_guard<std::mutex> g(mu_);
  return seen_.size();
}

}  // namespace tessera::security

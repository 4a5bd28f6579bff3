#include "security/system_key.hpp"

#include <sodium.h>

#include <cstring>

#include "security/key_file.hpp"
#include "security/sodium_init.hpp"

namespace tessera::security {

namespace {
// The fixed part of what the MAC covers, little-endian (the only byte order Tessera runs on).
struct Routing {
  uint32_t src_rank, dst_rank;
  uint16_t src_target, src_actor, dst_target, dst_actor;
  uint64_t corr;
  uint16_t protocol, method, flags, status;
  uint64_t bulk_total;
  uint32_t error_len, reply_to_len, cred_len, body_len;
};
static_assert(sizeof(Routing) == 56);
}  // namespace

struct SystemKey::Keyed {
  crypto_auth_hmacsha512256_state st;
};

SystemKey::SystemKey() : keyed_(std::make_unique<Keyed>()) {}

void SystemKey::absorb_key() {
  crypto_auth_hmacsha512256_init(&keyed_->st, key_.data(), key_.size());
}

Status SystemKey::generate(const std::string& path) {
  if (Status st = sodium_ready(); !st.is_ok()) return st;
  std::array<uint8_t, kBytes> k{};
  crypto_auth_keygen(k.data());
  Status st = write_key_file(path, k, 0600);
  sodium_memzero(k.data(), k.size());
  return st;
}

Result<std::shared_ptr<const SystemKey>> SystemKey::load(const std::string& path) {
  if (Status st = sodium_ready(); !st.is_ok()) return st;
  auto bytes = read_key_file(path, kBytes, true);
  if (!bytes) return bytes.status();
  std::shared_ptr<SystemKey> k(new SystemKey());
  std::memcpy(k->key_.data(), bytes->data(), kBytes);
  sodium_memzero(bytes->data(), bytes->size());
  k->absorb_key();
  k->path_ = path;
  return std::shared_ptr<const SystemKey>(std::move(k));
}

std::shared_ptr<const SystemKey> SystemKey::from_bytes(const std::array<uint8_t, kBytes>& b) {
  (void)sodium_ready();
  std::shared_ptr<SystemKey> k(new SystemKey());
  k->key_ = b;
  k->absorb_key();
  return k;
}

SystemKey::~SystemKey() {
  sodium_memzero(key_.data(), key_.size());
  sodium_memzero(keyed_.get(), sizeof(Keyed));
}

Mac SystemKey::mac(const Message& m, uint64_t bulk_total) const {
  Routing r{};
  r.src_rank = m.src.rank;
  r.dst_rank = m.dst.rank;
  r.src_target = m.src.target;
  r.src_actor = m.src.actor;
  r.dst_target = m.dst.target;
  r.dst_actor = m.dst.actor;
  r.corr = m.corr;
  r.protocol = m.protocol;
  r.method = m.method;
  r.flags = m.flags;
  r.status = static_cast<uint16_t>(m.status);
  r.bulk_total = bulk_total;
  r.error_len = static_cast<uint32_t>(m.error.size());
  r.reply_to_len = static_cast<uint32_t>(m.reply_to.size());
  r.cred_len = static_cast<uint32_t>(m.cred.size());
  r.body_len = static_cast<uint32_t>(m.body.size());
  crypto_auth_hmacsha512256_state st = keyed_->st;
  crypto_auth_hmacsha512256_update(&st, reinterpret_cast<const uint8_t*>(&r), sizeof(r));
  auto add = [&](const void* p, size_t n) {
    if (n > 0) crypto_auth_hmacsha512256_update(&st, static_cast<const uint8_t*>(p), n);
  };
  add(m.error.data(), m.error.size());
  add(m.reply_to.data(), m.reply_to.size());
  add(m.cred.data(), m.cred.size());
  add(m.body.data(), m.body.size());
  Mac out{};
  crypto_auth_hmacsha512256_final(&st, out.data());
  sodium_memzero(&st, sizeof(st));
  return out;
}

bool SystemKey::verify(const Message& m, uint64_t bulk_total, std::span<const uint8_t> tag) const {
  if (tag.size() != kMacBytes) return false;
  Mac want = mac(m, bulk_total);
  return sodium_memcmp(want.data(), tag.data(), kMacBytes) == 0;
}

// A tag's input starts with 56 bytes of 0xff: read as a message's Routing, every length field
// would claim 4 GiB - 1 bytes, more than the input holds, so no message's MAC input begins so
// and no tag is a message's MAC. The domain's length and bytes follow, then the data.
Mac SystemKey::tag(std::string_view domain, std::span<const uint8_t> data) const {
  std::array<uint8_t, sizeof(Routing)> marker;
  marker.fill(0xff);
  const uint32_t dlen = static_cast<uint32_t>(domain.size());
  crypto_auth_hmacsha512256_state st = keyed_->st;
  crypto_auth_hmacsha512256_update(&st, marker.data(), marker.size());
  crypto_auth_hmacsha512256_update(&st, reinterpret_cast<const uint8_t*>(&dlen), sizeof(dlen));
  crypto_auth_hmacsha512256_update(&st, reinterpret_cast<const uint8_t*>(domain.data()),
                                   domain.size());
  if (!data.empty()) crypto_auth_hmacsha512256_update(&st, data.data(), data.size());
  Mac out{};
  crypto_auth_hmacsha512256_final(&st, out.data());
  sodium_memzero(&st, sizeof(st));
  return out;
}

bool SystemKey::check_tag(std::string_view domain, std::span<const uint8_t> data,
                          std::span<const uint8_t> t) const {
  if (t.size() != kMacBytes) return false;
  Mac want = tag(domain, data);
  return sodium_memcmp(want.data(), t.data(), kMacBytes) == 0;
}

}  // namespace tessera::security

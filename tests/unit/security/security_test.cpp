// The security building blocks on their own: the system key's MAC, node keys and credentials,
// key files, and the names that may become paths.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fmt/format.h>
#include <filesystem>

#include "security/credential.hpp"
#include "security/key_file.hpp"
#include "security/names.hpp"
#include "security/system_key.hpp"
#include "tests/test_util.hpp"

namespace tessera::security {
namespace {

using tessera::testing::TempDir;

Message sample() {
  Message m;
  m.src = ActorAddr{1, 2, 3};
  m.dst = ActorAddr{4, 5, 6};
  m.corr = 77;
  m.protocol = 1;
  m.method = 1;
  m.reply_to = "addr";
  m.body = Buffer("0123456789abcdef", 16);
  return m;
}

TEST(SystemKey, MacCoversEveryRoutingFieldAndTheBody) {
  std::array<uint8_t, SystemKey::kBytes> raw{};
  raw[0] = 1;
  auto key = SystemKey::from_bytes(raw);
  Message m = sample();
  Mac tag = key->mac(m, 4096);
  EXPECT_TRUE(key->verify(m, 4096, tag));
  // Standard HMAC-SHA-512-256 of the routing fields (56 bytes, little-endian), error, reply
  // address, credential and body: computed independently (Python's hmac over the same bytes).
  std::string hex;
  for (uint8_t b : tag) hex += fmt::format("{:02x}", b);
  EXPECT_EQ(hex, "5ba00c7f619d7c2017e1e21b317f92f04ef2113b39ebe26307590f9f2e2e2110");
  // Each MAC starts from the keyed state; computing one never changes the next.
  Message other = sample();
  other.corr = 1;
  (void)key->mac(other, 1);
  EXPECT_EQ(key->mac(m, 4096), tag);
  EXPECT_FALSE(key->verify(m, 4097, tag));  // bulk size
  // Any change to what the receiver acts on breaks the tag.
  std::vector<std::function<void(Message&)>> changes = {
      [](Message& x) { x.src.rank = 9; },       [](Message& x) { x.dst.target = 9; },
      [](Message& x) { x.corr = 78; },          [](Message& x) { x.method = 10; },
      [](Message& x) { x.flags = 1; },          [](Message& x) { x.reply_to = "other"; },
      [](Message& x) { x.cred = "c"; },         [](Message& x) { x.error = "e"; },
      [](Message& x) { x.body.data()[3] ^= 1; }};
  for (size_t i = 0; i < changes.size(); ++i) {
    Message c = sample();
    changes[i](c);
    EXPECT_FALSE(key->verify(c, 4096, tag)) << "change " << i;
  }
  raw[0] = 2;
  EXPECT_FALSE(SystemKey::from_bytes(raw)->verify(m, 4096, tag));  // another system's key
  EXPECT_FALSE(key->verify(m, 4096, std::span<const uint8_t>(tag.data(), 16)));
}

TEST(SystemKey, TagsAreBoundToTheirDomainAndData) {
  std::array<uint8_t, SystemKey::kBytes> raw{};
  raw[0] = 1;
  auto key = SystemKey::from_bytes(raw);
  const std::array<uint8_t, 3> data{'a', 'b', 'c'};
  Mac t = key->tag("tessera raft connect", data);
  // HMAC-SHA-512-256 of 56 bytes of 0xff, the domain's length (4 bytes, little-endian), the
  // domain and the data: computed independently (Python's hmac over the same bytes).
  std::string hex;
  for (uint8_t b : t) hex += fmt::format("{:02x}", b);
  EXPECT_EQ(hex, "a076a4fd674348ede4b4665dacb8cbee8377c3e7796a95320730b904e415b06f");
  EXPECT_TRUE(key->check_tag("tessera raft connect", data, t));
  EXPECT_FALSE(key->check_tag("tessera raft connecT", data, t));  // another use
  const std::array<uint8_t, 3> other{'a', 'b', 'd'};
  EXPECT_FALSE(key->check_tag("tessera raft connect", other, t));
  raw[0] = 2;
  EXPECT_FALSE(SystemKey::from_bytes(raw)->check_tag("tessera raft connect", data, t));
  EXPECT_FALSE(key->check_tag("tessera raft connect", data, std::span<const uint8_t>(t.data(), 8)));
}

TEST(KeyFile, SecretKeysMustBeOwnerOnly) {
  TempDir dir;
  std::string p = dir.path() + "/system.key";
  ASSERT_TRUE(SystemKey::generate(p).is_ok());
  EXPECT_EQ(SystemKey::generate(p).code(), Errc::exists);  // never replaced
  struct stat st {};
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(SystemKey::load(p).is_ok() ? true : false);
  ::chmod(p.c_str(), 0644);
  auto k = SystemKey::load(p);
  ASSERT_FALSE(k.is_ok());
  EXPECT_EQ(k.status().code(), Errc::permission);
  EXPECT_NE(k.status().message().find("chmod 600"), std::string::npos);
  EXPECT_EQ(SystemKey::load(dir.path() + "/none").status().code(), Errc::not_found);
}

struct Node {
  TempDir dir;
  std::string secret = dir.path() + "/node.key";
  std::string pubdir = dir.path() + "/nodes";
  explicit Node(const std::string& name) {
    std::filesystem::create_directories(pubdir);
    EXPECT_TRUE(NodeSigner::generate(secret, pubdir + "/" + name + ".pub").is_ok());
  }
};

TEST(Credential, VerifiesOnceForItsOwnRequestWithinItsLifetime) {
  Node a("node-a");
  auto signer = NodeSigner::load(a.secret, "node-a");
  ASSERT_TRUE(signer.is_ok());
  auto keys = NodeKeys::load_dir(a.pubdir);
  ASSERT_TRUE(keys.is_ok());
  CredentialVerifier v(std::move(*keys));
  const uint64_t now = 1'800'000'000'000;
  Buffer body("request body bytes", 18);
  Credential c = credential_for(1234, 100, 42, "node-a", hash_body(body.span()), now);
  std::string signed_cred = signer->sign(c);

  auto ok = v.verify(signed_cred, body.span(), now + 10);
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(ok->uid, 1234u);
  EXPECT_EQ(ok->gid, 100u);
  EXPECT_EQ(ok->node, "node-a");

  auto again = v.verify(signed_cred, body.span(), now + 20);
  EXPECT_EQ(again.status().code(), Errc::unauthenticated);
  EXPECT_NE(again.status().message().find("replayed"), std::string::npos);

  Credential c2 = credential_for(1234, 100, 42, "node-a", hash_body(body.span()), now);
  Buffer other("another request!", 16);
  auto wrong_body = v.verify(signer->sign(c2), other.span(), now);
  EXPECT_NE(wrong_body.status().message().find("another request"), std::string::npos);

  Credential c3 = credential_for(1234, 100, 42, "node-a", hash_body(body.span()), now);
  auto late = v.verify(signer->sign(c3), body.span(), now + 10 * 60 * 1000);
  EXPECT_NE(late.status().message().find("expired"), std::string::npos);

  EXPECT_EQ(v.verify("", body.span(), now).status().code(), Errc::unauthenticated);
  EXPECT_EQ(v.verify("garbage!", body.span(), now).status().code(), Errc::unauthenticated);
}

TEST(Credential, AnotherNodesKeyOrATamperedCredentialIsRefused) {
  Node a("node-a");
  Node b("node-b");
  auto keys = NodeKeys::load_dir(a.pubdir);  // trusts node-a only
  ASSERT_TRUE(keys.is_ok());
  CredentialVerifier v(std::move(*keys));
  const uint64_t now = 1'800'000'000'000;
  Buffer body("x", 1);
  // node-b's key, naming itself: unknown node.
  auto sb = NodeSigner::load(b.secret, "node-b");
  ASSERT_TRUE(sb.is_ok());
  auto unknown = v.verify(sb->sign(credential_for(0, 0, 1, "node-b", hash_body(body.span()), now)),
                          body.span(), now);
  EXPECT_NE(unknown.status().message().find("not trusted"), std::string::npos);
  // node-b's key claiming to be node-a: the signature does not verify.
  auto sb_as_a = NodeSigner::load(b.secret, "node-a");
  ASSERT_TRUE(sb_as_a.is_ok());
  auto forged =
      v.verify(sb_as_a->sign(credential_for(0, 0, 1, "node-a", hash_body(body.span()), now)),
               body.span(), now);
  EXPECT_NE(forged.status().message().find("signature"), std::string::npos);
  // A flipped byte anywhere in a good one.
  auto sa = NodeSigner::load(a.secret, "node-a");
  ASSERT_TRUE(sa.is_ok());
  std::string good = sa->sign(credential_for(1000, 1000, 1, "node-a", hash_body(body.span()), now));
  size_t refused = 0;
  for (size_t i = 0; i < good.size(); ++i) {
    std::string t = good;
    t[i] = static_cast<char>(t[i] ^ 0x01);
    auto r = v.verify(t, body.span(), now);
    if (!r.is_ok()) ++refused;
    if (r.is_ok()) {
      EXPECT_EQ(r->uid, 1000u) << "byte " << i;  // only padding may change
    }
  }
  EXPECT_GT(refused, good.size() / 2);
}

TEST(Names, OnlyCanonicalUuidsBecomePaths) {
  EXPECT_TRUE(is_uuid("0f8fad5b-d9cb-469f-a165-70867728950e"));
  EXPECT_FALSE(is_uuid("../../../../../../etc/passwd/xxxxxxxx"));
  EXPECT_FALSE(is_uuid("0f8fad5b-d9cb-469f-a165-70867728950"));
  EXPECT_FALSE(is_uuid("0f8fad5b/d9cb-469f-a165-70867728950e"));
  EXPECT_FALSE(is_uuid("0f8fad5b-d9cb-469f-a165-7086772895.."));
  EXPECT_FALSE(is_uuid(""));
  EXPECT_TRUE(valid_node_name("node-1.example_x"));
  EXPECT_FALSE(valid_node_name("../x"));
  EXPECT_FALSE(valid_node_name(".."));
  EXPECT_FALSE(valid_node_name("a/b"));
}

}  // namespace
}  // namespace tessera::security

// Users as the kernel knows them: a local system started by the CLI (keys and agent made for
// it), used by root and by an unprivileged user (uid 65534 through setpriv). The user's
// identity comes from the agent (SO_PEERCRED), never from what its CLI claims.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "tests/integration/cli_system.hpp"

using namespace tessera::testing;
using nlohmann::json;

namespace {

constexpr const char* kNobody = "65534";

const std::vector<std::string> kAsNobody = {"/usr/bin/setpriv", "--reuid", kNobody,
                                            "--regid",          kNobody,   "--clear-groups"};

// `tessera --json ARGS` as uid/gid 65534 with no supplementary groups (and more `env`).
std::pair<int, json> run_as_nobody(const CliSystem& s, std::vector<std::string> args,
                                   std::vector<std::string> env = {}) {
  env.insert(env.begin(), "HOME=/nonexistent");
  return s.run_with(kAsNobody, env, std::move(args));
}

}  // namespace

TEST(SecurityCli, AnUnprivilegedUserIsVouchedForByTheAgentAndKeptToItsAcl) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as another user";
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "1", "--targets", "1"});
  // Others may reach the system file and the agent's socket; the keys stay owner-only.
  s.let_others_in();
  struct stat st {};
  ASSERT_EQ(::stat((s.dir() + "/keys").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat((s.dir() + "/keys/system.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  s.ok({"pool", "create", "P", "--target-size", "64M"});
  s.ok({"cont", "create", "P", "C", "--type", "KV", "--oclass", "S1"});
  s.ok({"kv", "put", "--pool", "P", "--cont", "C", "k", "secret value"});

  // The user cannot read the keys, nor administer, nor read what no ACL entry grants it.
  std::vector<std::string> cat = kAsNobody;
  cat.insert(cat.end(), {"/bin/cat", s.dir() + "/keys/system.key"});
  auto [cat_rc, cat_out] = run_command(cat);
  EXPECT_NE(cat_rc, 0) << cat_out;
  auto [crc, create] = run_as_nobody(s, {"pool", "create", "X", "--target-size", "64M"});
  EXPECT_EQ(crc, 1) << create.dump();
  EXPECT_EQ(create.value("error", ""), "permission denied") << create.dump();
  auto [grc, get] = run_as_nobody(s, {"kv", "get", "--pool", "P", "--cont", "C", "k"});
  EXPECT_EQ(grc, 1) << get.dump();
  EXPECT_EQ(get.value("error", ""), "permission denied") << get.dump();
  auto [drc, destroy] = run_as_nobody(s, {"pool", "destroy", "P", "--force"});
  EXPECT_EQ(drc, 1) << destroy.dump();
  EXPECT_EQ(destroy.value("error", ""), "permission denied") << destroy.dump();

  // With read entries for uid 65534 it reads, and still may not write.
  s.ok({"pool", "update-acl", "P", "--entry", "A::nobody@:r"});
  s.ok({"cont", "update-acl", "P", "C", "--entry", "A::nobody@:r"});
  auto [orc, got] = run_as_nobody(s, {"kv", "get", "--pool", "P", "--cont", "C", "k"});
  EXPECT_EQ(orc, 0) << got.dump();
  EXPECT_EQ(got.value("value", ""), "secret value") << got.dump();
  auto [prc, put] = run_as_nobody(s, {"kv", "put", "--pool", "P", "--cont", "C", "k", "mine"});
  EXPECT_EQ(prc, 1) << put.dump();
  EXPECT_EQ(put.value("error", ""), "permission denied") << put.dump();
  EXPECT_NE(put.value("message", "").find("lacks write on container 'C'"), std::string::npos)
      << put.dump();
  EXPECT_EQ(s.ok({"kv", "get", "--pool", "P", "--cont", "C", "k"})["value"], "secret value");
  // The pool still exists: the user's destroy changed nothing.
  EXPECT_EQ(s.ok({"pool", "list"})["pools"].size(), 1u);
}

TEST(SecurityCli, WithoutTheAgentAUserGetsAClearErrorNamingIt) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as another user";
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "1", "--targets", "1"});
  s.let_others_in();
  auto [rc, j] =
      run_as_nobody(s, {"pool", "list"}, {"TESSERA_AGENT=" + s.base() + "/no-agent.sock"});
  EXPECT_EQ(rc, 1) << j.dump();
  EXPECT_EQ(j.value("error", ""), "unauthenticated") << j.dump();
  EXPECT_NE(j.value("message", "").find("no-agent.sock"), std::string::npos) << j.dump();
}

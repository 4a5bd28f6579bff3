// Users as the kernel knows them: a local system started by the CLI (keys and agent made for
// it), used by root and by an unprivileged user (uid 65534 through setpriv). The user's
// identity comes from the agent (SO_PEERCRED), never from what its CLI claims.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fmt/format.h>

#include "client/mgmt_client.hpp"
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

// `tessera pool evict`: an administrator closes other clients' handles, by pool, container or
// public id; `cont query` shows that id, never the cookie; a user may not evict.
TEST(SecurityCli, AnAdministratorEvictsHandlesByPoolContainerOrId) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as another user";
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "1", "--targets", "1"});
  s.let_others_in();
  s.ok({"pool", "create", "P", "--target-size", "64M"});
  s.ok({"cont", "create", "P", "C", "--type", "KV", "--oclass", "S1"});
  s.ok({"cont", "create", "P", "D", "--type", "KV", "--oclass", "S1"});
  // Three long-lived handles held by this process for uid 4321 (as a running job would).
  tessera::MgmtClient admin(s.mgmt());
  tessera::mgmt::Cred job;
  job.uid = job.gid = 4321;
  tessera::MgmtClient as_job(admin.address(), std::chrono::milliseconds(30000), job);
  tessera::AclChange rw;
  rw.set.push_back({tessera::mgmt::Principal::user, 4321, "4321",
                    tessera::mgmt::kRead | tessera::mgmt::kWrite});
  ASSERT_TRUE(admin.update_acl("P", "", rw));
  ASSERT_TRUE(admin.update_acl("P", "C", rw));
  ASSERT_TRUE(admin.update_acl("P", "D", rw));
  auto c1 = as_job.cont_open("P", "C", true);
  auto c2 = as_job.cont_open("P", "C", false);
  auto d1 = as_job.cont_open("P", "D", true);
  ASSERT_TRUE(c1 && c2 && d1);

  const json q = s.ok({"cont", "query", "P", "C"})["container"];
  ASSERT_EQ(q.at("handles").size(), 2u) << q.dump();
  const std::string id = q.at("handles").at(0).at("id").get<std::string>();
  EXPECT_EQ(id.size(), 16u);
  EXPECT_FALSE(q.at("handles").at(0).contains("cookie")) << q.dump();
  for (uint64_t cookie : {c1->cookie, c2->cookie}) {
    EXPECT_EQ(q.dump().find(fmt::format("{:016x}", cookie)), std::string::npos)
        << "cont query shows a handle's cookie";
  }

  // A user may not evict; a bad or unknown id is a clear error.
  auto [nrc, denied] = run_as_nobody(s, {"pool", "evict", "P"});
  EXPECT_EQ(nrc, 1) << denied.dump();
  EXPECT_EQ(denied.value("error", ""), "permission denied") << denied.dump();
  EXPECT_NE(s.err({"pool", "evict", "P", "--handle", "xyz"}).find("not a handle id"),
            std::string::npos);
  EXPECT_NE(s.err({"pool", "evict", "P", "--handle", "1"}).find("has no open handle"),
            std::string::npos);

  // One by id, then a container's, then the pool's.
  EXPECT_EQ(s.ok({"pool", "evict", "P", "--handle", id})["evicted"], 1);
  EXPECT_EQ(s.ok({"cont", "query", "P", "C"})["container"]["handles"].size(), 1u);
  EXPECT_EQ(s.ok({"pool", "evict", "P", "--cont", "C"})["evicted"], 1);
  EXPECT_EQ(s.ok({"cont", "query", "P", "D"})["container"]["handles"].size(), 1u);
  EXPECT_EQ(s.ok({"pool", "evict", "P"})["evicted"], 1);
  EXPECT_EQ(s.ok({"cont", "query", "P", "D"})["container"]["open_handles"], 0);
  // Nothing is left to refuse a destroy.
  s.ok({"cont", "destroy", "P", "C"});
}

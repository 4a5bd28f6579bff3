// The tessera CLI against a live engine, as a user would run it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/integration/server_process.hpp"
#include "tests/test_util.hpp"

using namespace tessera::testing;
using nlohmann::json;

TEST(Cli, PutGetListPunchAndSystemQuery) {
  TempDir dir;
  ServerProcess server(ServerOptions::in(dir.path()));
  ASSERT_TRUE(server.start().is_ok());
  const std::string cli = TESSERA_CLI_BIN;
  const std::string e = server.address();

  auto [qc, qout] = run_command({cli, "-e", e, "--json", "system", "query"});
  ASSERT_EQ(qc, 0) << qout;
  json q = json::parse(qout);
  ASSERT_EQ(q["targets"].size(), 2u);
  EXPECT_EQ(q["provider"], "tcp;ofi_rxm");
  EXPECT_EQ(q["targets"][0]["cpu"], 0);
  EXPECT_NE(q["targets"][0]["fabric_address"].get<std::string>().find("127.0.0.1"),
            std::string::npos);

  std::string payload = "the quick brown fox\n";
  auto [pc, pout] = run_command(
      {cli, "-e", e, "--json", "obj", "put", "--oid", "3.14", "--dkey", "d", "--akey", "a"},
      payload);
  ASSERT_EQ(pc, 0) << pout;
  EXPECT_EQ(json::parse(pout)["bytes"], payload.size());
  auto [gc, gout] =
      run_command({cli, "-e", e, "obj", "get", "--oid", "3.14", "--dkey", "d", "--akey", "a"});
  ASSERT_EQ(gc, 0);
  EXPECT_EQ(gout, payload);

  auto [ac, aout] =
      run_command({cli, "-e", e, "obj", "put", "--oid", "0x00000000000000010000000000000002",
                   "--dkey", "d", "--akey", "arr", "--array", "--offset", "10"},
                  "ARRAY");
  ASSERT_EQ(ac, 0);
  auto [rc, rout] =
      run_command({cli, "-e", e, "--json", "obj", "get", "--oid", "1.2", "--dkey", "d", "--akey",
                   "arr", "--array", "--offset", "0", "--length", "15"});
  ASSERT_EQ(rc, 0) << rout;
  json r = json::parse(rout);
  EXPECT_EQ(r["holes"][0]["length"], 10);
  EXPECT_EQ(r["data"].get<std::string>().substr(10), "ARRAY");

  auto [lc, lout] = run_command({cli, "-e", e, "--json", "obj", "list"});
  ASSERT_EQ(lc, 0);
  EXPECT_EQ(json::parse(lout)["entries"].size(), 2u);

  auto [xc, xout] = run_command({cli, "-e", e, "obj", "punch", "--oid", "3.14"});
  EXPECT_EQ(xc, 0);
  auto [nc, nout] = run_command(
      {cli, "-e", e, "--json", "obj", "get", "--oid", "3.14", "--dkey", "d", "--akey", "a"});
  EXPECT_EQ(nc, 1);
  EXPECT_EQ(json::parse(nout)["error"], "not found");
}

TEST(Cli, EpochsConditionsRangePunchAndTargetMaintenance) {
  TempDir dir;
  ServerOptions so = ServerOptions::in(dir.path());
  so.targets = 1;
  ServerProcess server(so);
  ASSERT_TRUE(server.start().is_ok());
  const std::string cli = TESSERA_CLI_BIN;
  const std::string e = server.address();
  auto put = [&](const std::string& v, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{cli,     "-e", e,        "--json", "obj",    "put",
                                  "--oid", "9",  "--dkey", "d",      "--akey", "a"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run_command(argv, v);
  };
  auto [c1, o1] = put("first", {"--if-absent"});
  ASSERT_EQ(c1, 0) << o1;
  // Epochs are text in JSON (they exceed 2^53, which JSON tools round).
  const json j1 = json::parse(o1);
  ASSERT_TRUE(j1["epoch"].is_string()) << o1;
  const uint64_t e1 = std::stoull(j1["epoch"].get<std::string>());
  auto [c2, o2] = put("again", {"--if-absent"});
  EXPECT_NE(c2, 0);
  EXPECT_EQ(json::parse(o2)["error"], "already exists");
  auto [c3, o3] = put("second", {"--if-present"});
  ASSERT_EQ(c3, 0) << o3;
  // The first version is still there at its epoch.
  auto [g1, v1] = run_command({cli, "-e", e, "obj", "get", "--oid", "9", "--dkey", "d", "--akey",
                               "a", "--epoch", std::to_string(e1)});
  ASSERT_EQ(g1, 0);
  EXPECT_EQ(v1, "first");
  auto [g2, v2] =
      run_command({cli, "-e", e, "obj", "get", "--oid", "9", "--dkey", "d", "--akey", "a"});
  EXPECT_EQ(v2, "second");

  // Array range punch, extent listing and max.
  auto [ac, aout] = run_command(
      {cli, "-e", e, "obj", "put", "--oid", "9", "--dkey", "d", "--akey", "arr", "--array"},
      std::string(100, 'x'));
  ASSERT_EQ(ac, 0) << aout;
  auto [pc, pout] = run_command({cli, "-e", e, "obj", "punch", "--oid", "9", "--dkey", "d",
                                 "--akey", "arr", "--offset", "40", "--length", "20"});
  ASSERT_EQ(pc, 0) << pout;
  auto [lc, lout] = run_command(
      {cli, "-e", e, "--json", "obj", "list", "--oid", "9", "--dkey", "d", "--akey", "arr"});
  ASSERT_EQ(lc, 0) << lout;
  json runs = json::parse(lout)["entries"];
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0]["length"], 40);
  EXPECT_EQ(runs[1]["offset"], 60);
  auto [mc, mout] = run_command(
      {cli, "-e", e, "--json", "obj", "max", "--oid", "9", "--dkey", "d", "--akey", "arr"});
  ASSERT_EQ(mc, 0) << mout;
  EXPECT_EQ(json::parse(mout)["recx_end"], 100);

  // Aggregation drops the replaced version; stats show the counters.
  auto [tc, tout] = run_command({cli, "-e", e, "--json", "target", "aggregate", "--all"});
  ASSERT_EQ(tc, 0) << tout;
  EXPECT_GE(json::parse(tout)["targets"][0]["versions_dropped"].get<int>(), 1);
  auto [sc, sout] = run_command({cli, "-e", e, "--json", "target", "stats"});
  ASSERT_EQ(sc, 0) << sout;
  json st = json::parse(sout)["targets"][0];
  EXPECT_GE(st["checkpoints"].get<int>(), 1);
  EXPECT_GE(st["aggregations"].get<int>(), 1);
  auto [bc, bout] = run_command({cli, "-e", e, "--json", "target", "stats", "-t", "7"});
  EXPECT_NE(bc, 0);
  EXPECT_NE(bout.find("no target 7"), std::string::npos) << bout;
}

TEST(Cli, HelpAndClearErrors) {
  const std::string cli = TESSERA_CLI_BIN;
  for (auto args : std::vector<std::vector<std::string>>{
           {"--help"}, {"obj", "put", "--help"}, {"system", "query", "--help"}}) {
    args.insert(args.begin(), cli);
    auto [c, out] = run_command(args);
    EXPECT_EQ(c, 0);
    EXPECT_NE(out.find("Usage"), std::string::npos) << out;
  }
  auto [c1, o1] = run_command({"/bin/sh", "-c", cli + " -e 127.0.0.1:1 system query 2>&1"});
  EXPECT_EQ(c1, 1);
  EXPECT_NE(o1.find("cannot reach engine at 127.0.0.1:1"), std::string::npos) << o1;
  auto [c2, o2] = run_command(
      {"/bin/sh", "-c", cli + " -e 127.0.0.1:1 obj get --oid x.y --dkey d --akey a 2>&1"});
  EXPECT_EQ(c2, 1);
  EXPECT_NE(o2.find("is not an object id"), std::string::npos) << o2;
}

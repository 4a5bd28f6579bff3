// The tessera CLI against a local system it starts itself, as a user would run it: system
// start/query/stop and restart after kill -9, pools, containers, properties, attributes,
// snapshots, KV and objects with classes, clear errors, and a second user denied by the ACLs.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "tests/integration/cli_system.hpp"
#include "tests/integration/server_process.hpp"
#include "tests/test_util.hpp"

using namespace tessera::testing;
using nlohmann::json;

namespace fs = std::filesystem;

namespace {
// Pids of live processes whose command line names `text` (zombies have an empty one).
std::vector<pid_t> processes_naming(const std::string& text) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc", ec); !ec && it != fs::end(it); ++it) {
    const std::string name = it->path().filename();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(it->path() / "cmdline");
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmd.find(text) != std::string::npos) out.push_back(std::stoi(name));
  }
  return out;
}

std::vector<std::string> cont_args(std::vector<std::string> a) {
  a.insert(a.end(), {"--pool", "tank", "--cont", "kv"});
  return a;
}

}  // namespace

TEST(SystemCli, StartPoolsContainersDataRestartAndStop) {
  CliSystem s;
  json st = s.ok({"system", "start", "--dir", s.dir(), "--engines", "3", "--targets", "2"});
  EXPECT_EQ(st["started"], json({0, 1, 2}));
  ASSERT_EQ(st["engines"].size(), 3u);
  // A second start finds everything running.
  json again = s.ok({"system", "start"});
  EXPECT_EQ(again["running"], json({0, 1, 2}));
  EXPECT_TRUE(again["started"].empty());

  json q = s.ok({"system", "query"});
  ASSERT_EQ(q["ranks"].size(), 3u);
  for (const auto& r : q["ranks"]) {
    EXPECT_EQ(r["state"], "joined");
    EXPECT_EQ(r["targets"], 2);
    EXPECT_NE(r["fabric_addresses"][0].get<std::string>().find("127.0.0.1"), std::string::npos);
    EXPECT_NE(r["control"].get<std::string>().find("127.0.0.1:"), std::string::npos);
  }

  // Pools: create, list, query with space per tier and every target's state.
  json p = s.ok({"pool", "create", "tank", "--size", "384M"});
  EXPECT_EQ(p["pool"]["target_bytes"], 64u << 20);
  json pl = s.ok({"pool", "list"});
  ASSERT_EQ(pl["pools"].size(), 1u);
  json pq = s.ok({"pool", "query", "tank"});
  EXPECT_EQ(pq["pool"]["target_states"]["up-in"], 6);
  EXPECT_EQ(pq["pool"]["space"][0]["tier"], "data");
  EXPECT_GT(pq["pool"]["space"][0]["total"].get<uint64_t>(), 0u);
  EXPECT_EQ(pq["pool"]["targets"].size(), 6u);
  EXPECT_NE(s.err({"pool", "query", "nope"}).find("unknown pool 'nope'"), std::string::npos);
  EXPECT_NE(s.err({"pool", "create", "wee", "--target-size", "1M"}).find("at least 64 MiB"),
            std::string::npos);

  // Containers: classes, fault domains, properties, attributes, snapshots.
  s.ok({"cont", "create", "tank", "kv", "--type", "KV", "--oclass", "RP_3GX", "--rf", "2"});
  s.ok({"cont", "create", "tank", "arr", "--type", "ARRAY", "--oclass", "S1"});
  s.ok({"pool", "create", "pair", "--ranks", "0,1", "--target-size", "64M"});
  // Its own kind: no retry makes a class wider than the pool fit (not `unavailable`).
  EXPECT_NE(s.err({"cont", "create", "pair", "c", "--oclass", "RP_3G1"})
                .find("unsatisfiable: not enough fault domains"),
            std::string::npos);
  EXPECT_NE(s.err({"cont", "create", "tank", "ec", "--oclass", "EC_4P2G1"})
                .find("not enough fault domains"),
            std::string::npos);
  EXPECT_NE(s.err({"cont", "create", "tank", "ec", "--oclass", "EC_2P1G1", "--cell-size", "3K"})
                .find("power of two"),
            std::string::npos);
  s.ok({"cont", "create", "tank", "ec", "--type", "ARRAY", "--oclass", "EC_2P1G1", "--cell-size",
        "4K"});
  json cl = s.ok({"cont", "list", "tank"});
  ASSERT_EQ(cl["containers"].size(), 3u);
  json gp = s.ok({"cont", "get-prop", "tank", "kv"});
  EXPECT_EQ(gp["props"]["oclass"], "RP_3GX");
  EXPECT_EQ(gp["props"]["rf"], 2);
  EXPECT_EQ(gp["props"]["type"], "KV");
  EXPECT_NE(s.err({"cont", "set-prop", "tank", "arr", "rf=1"}).find("only the label"),
            std::string::npos);
  s.ok({"cont", "set-prop", "tank", "arr", "label=array"});
  s.ok({"cont", "query", "tank", "array"});
  EXPECT_NE(s.err({"cont", "set-prop", "tank", "array", "status=sick"})
                .find("status can only be set to 'healthy'"),
            std::string::npos);
  s.ok({"cont", "set-prop", "tank", "array", "status=healthy"});  // HEALTHY already: no change
  json cq = s.ok({"cont", "query", "tank", "array"})["container"];
  EXPECT_EQ(cq["health"], "HEALTHY");
  EXPECT_EQ(cq["lost_data"], false);
  EXPECT_EQ(s.ok({"cont", "get-prop", "tank", "array"})["props"]["status"], "HEALTHY");
  s.ok({"cont", "set-attr", "tank", "kv", "owner", "team-a"});
  EXPECT_EQ(s.ok({"cont", "get-attr", "tank", "kv", "owner"})["value"], "team-a");
  s.ok({"cont", "del-attr", "tank", "kv", "owner"});
  EXPECT_TRUE(s.ok({"cont", "list-attrs", "tank", "kv"})["attrs"].empty());
  s.ok({"cont", "snap", "create", "tank", "kv", "--name", "before"});
  json sl = s.ok({"cont", "snap", "list", "tank", "kv"});
  ASSERT_EQ(sl["snapshots"].size(), 1u);
  EXPECT_EQ(sl["snapshots"][0]["name"], "before");
  EXPECT_TRUE(sl["snapshots"][0]["epoch"].is_string()) << sl.dump();
  EXPECT_EQ(sl["snapshots"][0]["time"].get<std::string>().size(), 20u) << sl.dump();  // ISO 8601
  s.ok({"cont", "snap", "destroy", "tank", "kv", "--name", "before"});
  EXPECT_TRUE(s.ok({"cont", "snap", "list", "tank", "kv"})["snapshots"].empty());

  // KV on the replicated container; objects with a class on the array container.
  for (int i = 0; i < 20; ++i) {
    s.ok(cont_args({"kv", "put", "key" + std::to_string(i), "value-" + std::to_string(i)}));
  }
  EXPECT_EQ(s.ok(cont_args({"kv", "get", "key7"}))["value"], "value-7");
  EXPECT_EQ(s.ok(cont_args({"kv", "list"}))["keys"].size(), 20u);
  s.ok(cont_args({"kv", "del", "key7"}));
  EXPECT_NE(s.err(cont_args({"kv", "get", "key7"})).find("no key 'key7'"), std::string::npos);
  EXPECT_NE(s.err({"kv", "list", "--pool", "tank", "--cont", "array"}).find("KV container"),
            std::string::npos);
  std::string blob(300000, '\0');
  for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<char>('A' + (i * 7) % 26);
  s.ok({"obj", "put", "--pool", "tank", "--cont", "array", "--oid", "9", "--oclass", "SX", "--dkey",
        "d", "--akey", "a", "--array"},
       blob);
  json objs = s.ok({"obj", "list", "--pool", "tank", "--cont", "array"});
  ASSERT_EQ(objs["entries"].size(), 1u);
  EXPECT_EQ(objs["entries"][0]["oclass"], "SX");
  std::string listed = objs["entries"][0]["oid"];
  json got = s.ok({"obj", "get", "--pool", "tank", "--cont", "array", "--oid", listed, "--dkey",
                   "d", "--akey", "a", "--array"});
  EXPECT_EQ(got["data"], blob);
  EXPECT_NE(s.err({"obj", "get", "--pool", "tank", "--cont", "array", "--oid", listed, "--oclass",
                   "S1", "--dkey", "d", "--akey", "a"})
                .find("names class SX"),
            std::string::npos);
  EXPECT_NE(s.err({"obj", "get", "--pool", "tank", "--cont", "nope", "--oid", "1", "--dkey", "d",
                   "--akey", "a"})
                .find("no container 'nope'"),
            std::string::npos);

  // kill -9 every engine, the management service's first (so nobody is marked dead): `system
  // start` brings all of them back on their data and every acknowledged write reads back.
  for (const auto& e : st["engines"]) ASSERT_EQ(::kill(e["pid"].get<pid_t>(), SIGKILL), 0);
  json all = s.ok({"system", "start"});
  EXPECT_EQ(all["started"], json({0, 1, 2}));
  EXPECT_EQ(s.ok({"pool", "query", "tank", "--no-space"})["pool"]["target_states"]["up-in"], 6);
  json keys = s.ok(cont_args({"kv", "list"}));
  EXPECT_EQ(keys["keys"].size(), 19u);
  for (int i = 0; i < 20; ++i) {
    if (i == 7) continue;
    EXPECT_EQ(s.ok(cont_args({"kv", "get", "key" + std::to_string(i)}))["value"],
              "value-" + std::to_string(i));
  }
  EXPECT_EQ(s.ok({"obj", "get", "--pool", "tank", "--cont", "array", "--oid", listed, "--dkey", "d",
                  "--akey", "a", "--array"})["data"],
            blob);
  st = all;

  // kill -9 one engine: it is dead, but the pool holds an S1 container whose only copies it
  // may hold, so its targets stay in the map (new writes must not go to fallbacks) and the
  // pool says redundancy is lost; the replicated data stays readable, and `system start`
  // restarts only that engine, on its data.
  pid_t victim = st["engines"][1]["pid"];
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  bool dead = false;
  json members;
  for (int i = 0; i < 100 && !dead; ++i) {
    members = s.ok({"system", "query"});
    for (const auto& r : members["ranks"]) {
      dead |= r["rank"] == 1 && r["state"] == "dead";
    }
    if (!dead) usleep(100000);
  }
  EXPECT_TRUE(dead) << "rank 1 was never declared dead: " << members.dump();
  json t = s.ok({"pool", "query", "tank", "--no-space"});
  EXPECT_EQ(t["pool"]["target_states"]["up-in"], 6) << t.dump();
  EXPECT_EQ(t["pool"]["redundancy"], "lost") << t.dump();
  EXPECT_EQ(s.ok(cont_args({"kv", "get", "key3"}))["value"], "value-3");
  json re = s.ok({"system", "start"});
  EXPECT_EQ(re["started"], json({1}));
  EXPECT_EQ(re["running"], json({0, 2}));
  json q2 = s.ok({"system", "query"});
  for (const auto& r : q2["ranks"]) EXPECT_EQ(r["state"], "joined");
  s.ok(cont_args({"kv", "put", "after", "restart"}));

  // Stop everything, start again on the same data.
  json stop = s.ok({"system", "stop"});
  EXPECT_EQ(stop["stopped"], json({0, 1, 2}));
  EXPECT_EQ(s.run({"pool", "list"}).first, 1);
  json back = s.ok({"system", "start"});
  EXPECT_EQ(back["started"], json({0, 1, 2}));
  EXPECT_EQ(s.ok(cont_args({"kv", "get", "after"}))["value"], "restart");
  EXPECT_EQ(s.ok(cont_args({"kv", "get", "key19"}))["value"], "value-19");
  json got2 = s.ok({"obj", "get", "--pool", "tank", "--cont", "array", "--oid", listed, "--dkey",
                    "d", "--akey", "a", "--array"});
  EXPECT_EQ(got2["data"], blob);

  // Destroy refuses nothing here (no open handles) and takes the data with it.
  s.ok({"cont", "destroy", "tank", "array"});
  s.ok({"pool", "destroy", "pair"});
  EXPECT_EQ(s.ok({"pool", "list"})["pools"].size(), 1u);
}

// A second uid is denied reading until an ACL entry allows it, and a denied request changes
// nothing. Runs the CLI as uid/gid 65534 with setpriv (needs root).
TEST(SystemCli, SecondUserIsDeniedUntilTheAclAllows) {
  if (::geteuid() != 0 || ::access("/usr/bin/setpriv", X_OK) != 0) {
    GTEST_SKIP() << "needs root and setpriv to run a command as another uid";
  }
  CliSystem s;
  json st = s.ok({"system", "start", "--dir", s.dir(), "--engines", "3", "--targets", "1"});
  const std::string mgmt = st["mgmt"];
  s.ok({"pool", "create", "tank", "--target-size", "64M"});
  s.ok({"cont", "create", "tank", "kv", "--type", "KV", "--oclass", "RP_2GX", "--rf", "1"});
  s.ok(cont_args({"kv", "put", "secret", "42"}));

  // The test's directories are private: the other user runs a copy of the CLI from a public one.
  const std::string cli = s.let_others_in();
  auto as_nobody = [&](std::vector<std::string> args) {
    std::vector<std::string> argv{"/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                                  "--clear-groups", "/usr/bin/env", "HOME=/nonexistent",
                                  // No system file: the node's agent is named directly.
                                  "TESSERA_AGENT=" + s.dir() + "/agent.sock", cli, "--json",
                                  "--mgmt", mgmt};
    argv.insert(argv.end(), args.begin(), args.end());
    auto [rc, out] = run_command(argv);
    json j = json::parse(out, nullptr, false);
    if (j.is_discarded()) j = json{{"raw", out}};
    return std::pair{rc, j};
  };

  auto [qrc, qj] = as_nobody({"pool", "query", "tank"});
  EXPECT_EQ(qrc, 1) << qj.dump();
  EXPECT_EQ(qj["error"], "permission denied") << qj.dump();
  EXPECT_NE(qj["message"].get<std::string>().find("uid 65534"), std::string::npos);
  auto [grc, gj] = as_nobody(cont_args({"kv", "get", "secret"}));
  EXPECT_EQ(grc, 1);
  EXPECT_EQ(gj["error"], "permission denied") << gj.dump();
  auto [drc, dj] = as_nobody({"cont", "destroy", "tank", "kv"});
  EXPECT_EQ(drc, 1);
  EXPECT_EQ(dj["error"], "permission denied") << dj.dump();
  auto [arc, aj] = as_nobody({"pool", "update-acl", "tank", "--entry", "A::EVERYONE@:rw"});
  EXPECT_EQ(arc, 1);
  EXPECT_EQ(aj["error"], "permission denied") << aj.dump();
  // Nothing changed: the container and its data are there, the ACL is as created.
  EXPECT_EQ(s.ok(cont_args({"kv", "get", "secret"}))["value"], "42");
  json acl = s.ok({"pool", "get-acl", "tank"});
  for (const auto& e : acl["acl"]["entries"]) {
    EXPECT_EQ(e.get<std::string>().find("EVERYONE@"), std::string::npos) << e;
  }

  // The owner grants read to everyone on the pool and the container: now nobody can read, but
  // still not write.
  s.ok({"pool", "update-acl", "tank", "--entry", "A::EVERYONE@:r"});
  s.ok({"cont", "update-acl", "tank", "kv", "--entry", "A::EVERYONE@:r"});
  auto [g2, gj2] = as_nobody(cont_args({"kv", "get", "secret"}));
  EXPECT_EQ(g2, 0) << gj2.dump();
  EXPECT_EQ(gj2["value"], "42");
  auto [p2, pj2] = as_nobody(cont_args({"kv", "put", "secret", "43"}));
  EXPECT_EQ(p2, 1);
  EXPECT_EQ(pj2["error"], "permission denied") << pj2.dump();
  EXPECT_EQ(s.ok(cont_args({"kv", "get", "secret"}))["value"], "42");
  // Only the administrator excludes ranks.
  auto [xrc, xj] = as_nobody({"system", "exclude", "--rank", "2"});
  EXPECT_EQ(xrc, 1);
  EXPECT_EQ(xj["error"], "permission denied") << xj.dump();

  // And the owner takes it back.
  s.ok({"cont", "update-acl", "tank", "kv", "--remove", "EVERYONE@"});
  auto [g3, gj3] = as_nobody(cont_args({"kv", "get", "secret"}));
  EXPECT_EQ(g3, 1);
  EXPECT_EQ(gj3["error"], "permission denied") << gj3.dump();

  // The administrator excludes rank 2: it shows excluded, its target goes down, the replicated
  // data stays readable; a restarted rank 2 may not join until the exclusion is cleared.
  s.ok({"system", "exclude", "--rank", "2"});
  json q = s.ok({"system", "query"});
  EXPECT_EQ(q["ranks"][2]["state"], "excluded");
  // Down, or down-out once the pool's self-healing rebuild has run.
  json ts = s.ok({"pool", "query", "tank", "--no-space"})["pool"]["target_states"];
  EXPECT_EQ(ts.value("down", 0) + ts.value("down-out", 0), 1) << ts.dump();
  EXPECT_EQ(s.ok(cont_args({"kv", "get", "secret"}))["value"], "42");
  ASSERT_EQ(::kill(st["engines"][2]["pid"].get<pid_t>(), SIGKILL), 0);
  std::string refused = s.err({"system", "start", "--wait-s", "3"});
  EXPECT_NE(refused.find("did not join"), std::string::npos) << refused;
  std::ifstream log(s.dir() + "/rank2/engine.log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("rank 2 is excluded from the system"), std::string::npos);
  s.ok({"system", "clear-exclude", "--rank", "2"});
  json back = s.ok({"system", "start"});
  EXPECT_EQ(back["running"], json({0, 1, 2}));
  EXPECT_EQ(s.ok({"system", "query"})["ranks"][2]["state"], "joined");
}

// Bad starts say why and leave nothing running; a recorded system refuses a different shape.
TEST(SystemCli, StartExplainsFailuresAndKeepsTheRecordedShape) {
  CliSystem s;
  std::string e = s.err(
      {"system", "start", "--dir", s.base() + "/bad", "--engines", "1", "--scratch-size", "1M"});
  EXPECT_NE(e.find("rank 0 exited during start"), std::string::npos) << e;
  EXPECT_NE(e.find("at least 64M"), std::string::npos) << e;  // the engine's reason, from its log
  // Not even the node agent the failed start began is left running.
  EXPECT_TRUE(eventually([&] { return processes_naming(s.base() + "/bad").empty(); },
                         std::chrono::seconds(30)))
      << "a failed start left processes of its directory running";
  EXPECT_NE(s.err({"pool", "list"}).find("tessera system start"), std::string::npos);

  s.ok({"system", "start", "--dir", s.dir(), "--engines", "1", "--targets", "1"});
  EXPECT_NE(s.err({"system", "start", "--targets", "2"}).find("has 1 targets per engine"),
            std::string::npos);
  EXPECT_NE(s.err({"system", "start", "--provider", "shm"}).find("uses provider tcp;ofi_rxm"),
            std::string::npos);
  json again = s.ok({"system", "start"});  // as recorded: one engine, running
  EXPECT_EQ(again["running"], json({0}));
  EXPECT_EQ(again["engines"].size(), 1u);
}

// `system start` returns once every engine serves: joined, and its shards of every pool open.
// Here each engine opens its pools 2 s after it joined (a delay point, as a long log replay
// would); a container check at once after the start must reach every target (it does not
// retry: with the start returning at the join it failed with "rank N target 0 is still opening
// its pool shards").
TEST(SystemCli, StartReturnsOnceEveryEngineHasOpenedItsPools) {
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "2", "--targets", "1"});
  s.ok({"pool", "create", "tank", "--size", "128M"});
  s.ok({"cont", "create", "tank", "kv", "--type", "KV", "--oclass", "RP_2G1"});
  s.ok(cont_args({"kv", "put", "k"}), "v");
  s.ok({"system", "stop"});
  ::setenv("TESSERA_DELAY_AT", "engine.open_pools=2000", 1);
  s.ok({"system", "start"});
  ::unsetenv("TESSERA_DELAY_AT");
  for (const std::string rank : {"0", "1"}) {
    EXPECT_TRUE(s.ok({"engine", "query", "--rank", rank})["pools_open"].get<bool>()) << rank;
  }
  const json check = s.ok({"cont", "check", "tank", "kv"});
  EXPECT_TRUE(check.value("consistent", false)) << check.dump();
  EXPECT_EQ(s.ok(cont_args({"kv", "get", "k"}))["value"], "v");
}

// `--engine-arg` is recorded with the system: a restart without it passes the recorded flags
// again (a restart used to drop them silently); given again, they replace the recorded ones.
TEST(SystemCli, EngineArgsAreRecordedAndPassedAgainOnRestart) {
  CliSystem s;
  auto engine_cmdline = [&] {
    const json q = s.ok({"system", "query"});
    for (const auto& r : q["ranks"]) {
      if (r["rank"] != 0) continue;
      std::ifstream in("/proc/" + std::to_string(r["pid"].get<int>()) + "/cmdline");
      std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::replace(cmd.begin(), cmd.end(), '\0', ' ');
      return cmd;
    }
    return std::string();
  };
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "1", "--targets", "1",
        "--engine-arg=--aggregation-delay-ms=777"});
  EXPECT_NE(engine_cmdline().find("--aggregation-delay-ms=777"), std::string::npos);
  s.ok({"system", "stop"});
  s.ok({"system", "start", "--log-level", "debug"});
  std::string cmd = engine_cmdline();
  EXPECT_NE(cmd.find("--aggregation-delay-ms=777"), std::string::npos) << cmd;
  EXPECT_NE(cmd.find("--log-level debug"), std::string::npos) << cmd;
  s.ok({"system", "stop"});
  s.ok({"system", "start", "--engine-arg=--aggregation-delay-ms=888"});
  cmd = engine_cmdline();
  EXPECT_NE(cmd.find("--aggregation-delay-ms=888"), std::string::npos) << cmd;
  EXPECT_EQ(cmd.find("--aggregation-delay-ms=777"), std::string::npos) << cmd;
  EXPECT_EQ(cmd.find("--log-level"), std::string::npos) << cmd;  // (not recorded)
}

// The CLI and the configuration as an operator meets them: flags win over the environment,
// values are checked with the key and the expected type named, versions are printed.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "client/client.hpp"
#include "tests/integration/cli_system.hpp"

using namespace tessera::testing;
using nlohmann::json;

namespace {

// `tessera --json ARGS` for system `s` with more environment variables.
std::pair<int, json> run_env(CliSystem& s, const std::vector<std::string>& env,
                             const std::vector<std::string>& args) {
  return s.run_with({}, env, args);
}

}  // namespace

TEST(OperatorCli, FlagsWinOverTheEnvironmentAndPropertiesAreChecked) {
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "1", "--targets", "1"});
  s.ok({"pool", "create", "tank", "--size", "64M"});
  s.ok({"cont", "create", "tank", "files", "--type", "KV"});
  s.ok({"cont", "create", "tank", "final", "--type", "KV"});
  s.ok({"kv", "put", "--pool", "tank", "--cont", "files", "greeting", "hello"});
  s.ok({"kv", "put", "--pool", "tank", "--cont", "final", "greeting", "bye"});

  // The flag wins over $TESSERA_CONT and over $TESSERA_POOL.
  auto [rc1, a] = run_env(s, {"TESSERA_CONT=final"},
                          {"kv", "get", "--pool", "tank", "--cont", "files", "greeting"});
  EXPECT_EQ(rc1, 0) << a.dump();
  EXPECT_EQ(a.value("value", ""), "hello") << a.dump();
  auto [rc2, b] = run_env(s, {"TESSERA_POOL=nosuch"},
                          {"kv", "get", "--pool", "tank", "--cont", "files", "greeting"});
  EXPECT_EQ(rc2, 0) << b.dump();
  EXPECT_EQ(b.value("value", ""), "hello") << b.dump();
  // The environment serves where no flag is given; neither: a clear error.
  auto [rc3, c] =
      run_env(s, {"TESSERA_POOL=tank", "TESSERA_CONT=final"}, {"kv", "get", "greeting"});
  EXPECT_EQ(rc3, 0) << c.dump();
  EXPECT_EQ(c.value("value", ""), "bye") << c.dump();
  EXPECT_NE(s.err({"kv", "get", "greeting"}).find("--pool is required (or set $TESSERA_POOL)"),
            std::string::npos);

  // Pool properties are checked, with the property and the values it takes named.
  const std::string bad = s.err({"pool", "set-prop", "tank", "self_heal", "bogus"});
  EXPECT_NE(bad.find("self_heal: 'bogus' is not a valid value (none, exclude, or "
                     "exclude;rebuild)"),
            std::string::npos)
      << bad;
  EXPECT_NE(s.err({"pool", "set-prop", "tank", "colour", "blue"}).find("unknown pool property"),
            std::string::npos);
  json props = s.ok({"pool", "get-prop", "tank"});
  EXPECT_NE(props.dump().find("exclude;rebuild"), std::string::npos) << props.dump();
  s.ok({"pool", "set-prop", "tank", "self_heal", "exclude"});
  s.ok({"pool", "set-prop", "tank", "self_heal", "none"});

  // An ACL removal that cannot be made names what was typed.
  const std::string acl =
      s.err({"cont", "update-acl", "tank", "files", "--remove", "nosuchuser9@"});
  EXPECT_NE(acl.find("bad principal 'nosuchuser9@': no user named 'nosuchuser9'"),
            std::string::npos)
      << acl;

  // A pool that still has containers is destroyed only with --recursive.
  s.ok({"pool", "create", "scratch", "--size", "64M"});
  s.ok({"cont", "create", "scratch", "tmp", "--type", "KV"});
  EXPECT_NE(s.err({"pool", "destroy", "scratch"}).find("still has 1 container(s) (tmp)"),
            std::string::npos);
  s.ok({"pool", "destroy", "scratch", "--recursive"});

  // One type per field across commands: target_bytes is a number in get-prop as in query.
  EXPECT_TRUE(props["props"]["target_bytes"].is_number()) << props.dump();
  EXPECT_EQ(props["props"]["target_bytes"],
            s.ok({"pool", "query", "tank"})["pool"]["target_bytes"]);
  // Epochs are text: jq and other JSON tools keep every digit, and --epoch takes them back.
  json put = s.ok({"kv", "put", "--pool", "tank", "--cont", "files", "greeting", "hello again"});
  ASSERT_TRUE(put["epoch"].is_string()) << put.dump();
  EXPECT_GT(std::stoull(put["epoch"].get<std::string>()), uint64_t{1} << 53);
}

TEST(OperatorCli, VersionsAndCheckedEngineFlags) {
  auto [rc, out] = run_command({TESSERA_CLI_BIN, "--version"});
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(out.rfind("tessera ", 0), 0u) << out;
  auto [src, sout] = run_command({TESSERA_SERVER_BIN, "--version"});
  EXPECT_EQ(src, 0);
  EXPECT_EQ(sout.rfind("tessera-server ", 0), 0u) << sout;
  // --help shows defaults; an unknown log level is refused before anything starts.
  auto [hrc, help] = run_command({TESSERA_SERVER_BIN, "--help"});
  EXPECT_EQ(hrc, 0);
  EXPECT_NE(help.find("--rebuild-share-pct UINT=50"), std::string::npos) << help;
  auto [lrc, lout] = run_command({TESSERA_SERVER_BIN, "--log-level", "loud"});
  EXPECT_NE(lrc, 0);
  // Every command's help names the global options; -t is --target everywhere it exists.
  auto [prc, phelp] = run_command({TESSERA_CLI_BIN, "pool", "query", "--help"});
  EXPECT_EQ(prc, 0);
  EXPECT_NE(phelp.find("-j,--json"), std::string::npos) << phelp;
  auto [src2, shelp] = run_command({TESSERA_CLI_BIN, "system", "start", "--help"});
  EXPECT_EQ(shelp.find("-t,"), std::string::npos) << shelp;
}

// `system start` never half fails: starting a second system while $TESSERA_SYSTEM names the
// first succeeds, points the default link (~/.tessera/system.json) at the new one and says
// that $TESSERA_SYSTEM still names the other; a start of some ranks reports every rank that
// runs.
TEST(OperatorCli, SystemStartNeverHalfFailsAndReportsWhatRuns) {
  CliSystem s;
  // $TESSERA_SYSTEM names the directory of the system started: nothing to note.
  json a = s.ok({"system", "start", "--dir", s.dir(), "--engines", "2", "--targets", "1"});
  EXPECT_TRUE(a["note"].is_null()) << a.dump();
  const std::string other = s.base() + "/other";
  struct StopOther {
    std::string dir;
    ~StopOther() { (void)run_command({TESSERA_CLI_BIN, "--system", dir, "system", "stop"}); }
  } stop_other{other};
  json b = s.ok({"system", "start", "--dir", other, "--engines", "1", "--targets", "1"});
  EXPECT_EQ(b["started"], json({0})) << b.dump();
  EXPECT_NE(b["note"].get<std::string>().find("$TESSERA_SYSTEM names another system"),
            std::string::npos)
      << b.dump();
  std::error_code ec;
  const auto link = std::filesystem::path(s.base()) / ".tessera" / "system.json";
  EXPECT_TRUE(std::filesystem::is_symlink(link, ec)) << link;
  EXPECT_TRUE(std::filesystem::equivalent(link, other + "/system.json", ec)) << link;
  // $TESSERA_SYSTEM's system is untouched and still answers.
  EXPECT_EQ(s.ok({"system", "query"})["ranks"].size(), 2u);
  // A pool holds at least the size asked for: 129M over 2 targets is 65 MiB each.
  json sized = s.ok({"pool", "create", "sized", "--size", "129M"});
  EXPECT_EQ(sized["pool"]["target_bytes"], 65u << 20) << sized.dump();

  // A healthy system at a glance; every engine's log in system query.
  json healthy = s.ok({"status"});
  EXPECT_EQ(healthy["health"], "HEALTH_OK") << healthy.dump();
  EXPECT_EQ(healthy["engines"]["joined"], 2);
  ASSERT_EQ(healthy["pools"].size(), 1u);
  EXPECT_EQ(healthy["pools"][0]["label"], "sized");
  EXPECT_GT(healthy["pools"][0]["space"]["total"].get<uint64_t>(), 0u);
  const json ranks = s.ok({"system", "query"})["ranks"];  // kept: the loop reads into it
  for (const auto& rank : ranks) {
    EXPECT_NE(rank["log"].get<std::string>().find("engine.log"), std::string::npos) << rank.dump();
  }

  // One rank killed: status says so and what to do; started again, the report names the rank
  // that kept running.
  s.ok({"system", "kill", "--rank", "1", "--signal", "KILL"});
  json warn;
  for (int i = 0; i < 300; ++i) {  // until the service has seen the death
    warn = s.ok({"status"});
    if (warn["engines"]["joined"] == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(warn["health"], "HEALTH_WARN") << warn.dump();
  ASSERT_EQ(warn["engines"]["down"].size(), 1u) << warn.dump();
  EXPECT_EQ(warn["engines"]["down"][0]["rank"], 1);
  EXPECT_NE(warn["attention"].dump().find("rank 1 is dead"), std::string::npos) << warn.dump();
  json r = s.ok({"system", "start", "--ranks", "1"});
  EXPECT_EQ(r["started"], json({1})) << r.dump();
  EXPECT_EQ(r["running"], json({0})) << r.dump();
  // Killing the management service's host takes --force.
  EXPECT_NE(s.err({"system", "kill", "--rank", "0"}).find("add --force"), std::string::npos);
  EXPECT_EQ(s.ok({"system", "query"})["ranks"].size(), 2u);
}

// Rebuild progress counts bytes: before sending, every target counts what it will send, and a
// rebuild with no writes during it sends exactly that (replicas: whole histories; erasure
// coding: a rebuilt cell per stripe, the stripes' checksum records and copies). `--wait` on the
// command that starts the rebuild draws the bar and ends at 100%.
TEST(OperatorCli, RebuildProgressCountsTheBytesToMoveAndEndsAtThem) {
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "4", "--targets", "1"});
  s.ok({"pool", "create", "P", "--target-size", "128M"});
  s.ok({"cont", "create", "P", "R", "--type", "ARRAY", "--oclass", "RP_2GX", "--rf", "1"});
  s.ok({"cont", "create", "P", "E", "--type", "ARRAY", "--oclass", "EC_2P1GX", "--rf", "1",
        "--cell-size", "64K"});
  const std::string file = s.base() + "/data.bin";
  {
    std::ofstream out(file, std::ios::binary);
    std::string chunk(1 << 20, '\0');
    for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<char>((i * 131) >> 3);
    for (int i = 0; i < 3; ++i) out << chunk;  // 3 MiB: whole stripes and a partial one
    out << chunk.substr(0, 100000);
  }
  for (int oid = 1; oid <= 6; ++oid) {
    for (const char* cont : {"R", "E"}) {
      s.ok({"obj", "put", "--pool", "P", "--cont", cont, "--oid", std::to_string(oid), "--dkey",
            "d" + std::to_string(oid), "--akey", "a", "--array", "--file", file});
      s.ok({"obj", "put", "--pool", "P", "--cont", cont, "--oid", std::to_string(oid), "--dkey",
            "d" + std::to_string(oid), "--akey", "s", "--file", file});
    }
  }
  // Text: the bar ends at 100% of what moved (stderr, not a terminal: its last line is printed).
  auto [rc, text] = run_command({"/bin/sh", "-c",
                                 "HOME=" + s.base() + " TESSERA_SYSTEM=" + s.dir() + " " +
                                     TESSERA_CLI_BIN + " pool exclude P --rank 3 --wait 2>&1"});
  ASSERT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("100%"), std::string::npos) << text;
  EXPECT_NE(text.find("done in"), std::string::npos) << text;
  json r = s.ok({"pool", "query", "P"})["pool"]["rebuild"];
  EXPECT_EQ(r["state"], "done") << r.dump();
  EXPECT_GT(r["bytes"].get<uint64_t>(), 0u) << r.dump();
  EXPECT_EQ(r["bytes_planned"], r["bytes"]) << r.dump();
  // JSON with --wait: the pool as changed and the rebuild as it ended.
  json j = s.ok({"pool", "reintegrate", "P", "--rank", "3", "--wait"});
  EXPECT_EQ(j["rebuild"]["state"], "done") << j.dump();
  EXPECT_EQ(j["rebuild"]["bytes_planned"], j["rebuild"]["bytes"]) << j.dump();
  EXPECT_GT(j["rebuild"]["bytes"].get<uint64_t>(), 0u) << j.dump();
  EXPECT_TRUE(j.contains("pool")) << j.dump();
  for (int oid = 1; oid <= 6; ++oid) {
    for (const char* cont : {"R", "E"}) {
      for (const char* akey : {"a --array", "s"}) {
        auto [grc, got] = run_command(
            {"/bin/sh", "-c",
             "HOME=" + s.base() + " TESSERA_SYSTEM=" + s.dir() + " " + TESSERA_CLI_BIN +
                 " obj get --pool P --cont " + cont + " --oid " + std::to_string(oid) +
                 " --dkey d" + std::to_string(oid) + " --akey " + akey + " | cmp - " + file});
        EXPECT_EQ(grc, 0) << cont << " " << oid << " " << akey << ": " << got;
      }
    }
  }
}

// pool create formats every target's file at once and shows it in bytes: each engine's system
// info tells how far its targets are while the create runs (bytes formatted of the bytes to
// format, never more, and 0 of 0 once done), and the command's bar ends at the pool's size.
TEST(OperatorCli, PoolCreateShowsTheBytesItsTargetsFormat) {
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "2", "--targets", "2"});
  std::vector<std::string> engines;
  const json q = s.ok({"system", "query"});
  for (const auto& r : q["ranks"]) engines.push_back(r["control"]);
  ASSERT_EQ(engines.size(), 2u);
  std::atomic<bool> created{false};
  std::pair<int, std::string> out;
  std::thread create([&] {
    out = run_command({"/bin/sh", "-c",
                       "HOME=" + s.base() + " TESSERA_SYSTEM=" + s.dir() + " " + TESSERA_CLI_BIN +
                           " pool create P --target-size 512M 2>&1"});
    created = true;
  });
  // Formatting 512 MiB per target writes each file whole: polled until the command returns.
  uint64_t most = 0, midway = 0;
  while (!created) {
    for (const auto& e : engines) {
      auto i = tessera::query_system(e, std::chrono::milliseconds(5000));
      if (!i) continue;
      EXPECT_LE(i->format_done, i->format_total);
      most = std::max(most, i->format_total);
      if (i->format_done > 0 && i->format_done < i->format_total) ++midway;
    }
  }
  create.join();
  ASSERT_EQ(out.first, 0) << out.second;
  EXPECT_EQ(most, 2ull * (512ull << 20)) << "an engine's two targets format 512 MiB each";
  EXPECT_GT(midway, 0u) << "no engine was seen part of the way";
  EXPECT_NE(out.second.find("100%  2.0 GiB of 2.0 GiB"), std::string::npos) << out.second;
  EXPECT_NE(out.second.find("formatted in"), std::string::npos) << out.second;
  for (const auto& e : engines) {
    auto i = tessera::query_system(e, std::chrono::milliseconds(5000));
    ASSERT_TRUE(i) << i.status().to_string();
    EXPECT_EQ(i->format_total, 0u);
    EXPECT_EQ(i->format_done, 0u);
  }
  json p = s.ok({"pool", "query", "P"})["pool"];
  EXPECT_EQ(p["target_bytes"], 512ull << 20) << p.dump();
}

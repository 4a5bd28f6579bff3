// The CLI and the configuration as an operator meets them: flags win over the environment,
// values are checked with the key and the expected type named, versions are printed.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/integration/cli_system.hpp"

using namespace tessera::testing;
using nlohmann::json;

namespace {

// `tessera --json ARGS` for system `s` with more environment variables.
std::pair<int, json> run_env(CliSystem& s, const std::vector<std::string>& env,
                             const std::vector<std::string>& args) {
  std::vector<std::string> argv{"/usr/bin/env", "TESSERA_SYSTEM=" + s.dir(), "HOME=" + s.base()};
  argv.insert(argv.end(), env.begin(), env.end());
  argv.push_back(TESSERA_CLI_BIN);
  argv.push_back("--json");
  argv.insert(argv.end(), args.begin(), args.end());
  auto [rc, out] = run_command(argv);
  json j = json::parse(out, nullptr, false);
  if (j.is_discarded()) j = json{{"raw", out}};
  return {rc, j};
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
  auto [rc3, c] = run_env(s, {"TESSERA_POOL=tank", "TESSERA_CONT=final"}, {"kv", "get", "greeting"});
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
}

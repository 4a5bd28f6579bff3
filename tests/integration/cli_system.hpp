// CliSystem: a local system started through the `tessera` CLI in a temp dir, as a user would
// run it; every command runs `tessera --json` with this system as the default. Stopped (and,
// failing that, its engines killed) at scope exit. Test thread only.
#pragma once

#include <signal.h>

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "security/authority.hpp"
#include "tests/integration/server_process.hpp"
#include "tests/test_util.hpp"

namespace tessera::testing {

// A system started by `tessera system start` in a temp dir; stopped (and, failing that,
// killed) at scope exit.
class CliSystem {
 public:
  CliSystem() : sys_dir_(dir_.path() + "/sys") {}
  ~CliSystem() {
    (void)run({"system", "stop", "--grace-s", "10"});
    std::ifstream in(sys_dir_ + "/system.json");
    if (!in) return;
    nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded()) return;
    // Only processes that are still this system's engines (pids are reused quickly).
    for (const auto& e : j["engines"]) {
      pid_t pid = e["pid"].get<pid_t>();
      std::ifstream cmd("/proc/" + std::to_string(pid) + "/cmdline");
      std::string args((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
      if (args.find(e["dir"].get<std::string>()) != std::string::npos) ::kill(pid, SIGKILL);
    }
  }

  // Runs `tessera --json ARGS` with this system as the default; returns (exit code, JSON).
  std::pair<int, nlohmann::json> run(std::vector<std::string> args, const std::string& in = {}) {
    return run_with({}, {}, std::move(args), in);
  }
  // The same with more environment variables (`env`, "NAME=value"; later ones win) and the
  // command line run through `wrap` (e.g. setpriv, to run it as another user).
  std::pair<int, nlohmann::json> run_with(const std::vector<std::string>& wrap,
                                          const std::vector<std::string>& env,
                                          std::vector<std::string> args,
                                          const std::string& in = {}) const {
    std::vector<std::string> argv = wrap;
    argv.insert(argv.end(), {"/usr/bin/env", "TESSERA_SYSTEM=" + sys_dir_, "HOME=" + dir_.path()});
    argv.insert(argv.end(), env.begin(), env.end());
    argv.insert(argv.end(), {cli_, "--json"});
    argv.insert(argv.end(), args.begin(), args.end());
    auto [rc, out] = run_command(argv, in);
    nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
    if (j.is_discarded()) j = nlohmann::json{{"raw", out}};
    return {rc, j};
  }
  nlohmann::json ok(std::vector<std::string> args, const std::string& in = {}) {
    auto [rc, j] = run(args, in);
    EXPECT_EQ(rc, 0) << j.dump();
    EXPECT_EQ(j.value("ok", false), true) << j.dump();
    return j;
  }
  // Expects failure; returns the error message.
  std::string err(std::vector<std::string> args) {
    auto [rc, j] = run(args);
    EXPECT_EQ(rc, 1) << j.dump();
    EXPECT_EQ(j.value("ok", true), false) << j.dump();
    return j.value("error", std::string()) + ": " + j.value("message", std::string());
  }
  // The rank whose target of `pool` counts an object (a pool holding one S1 object: the engine
  // with its only copy); -1 when none does. Asks until every target answers.
  int rank_holding_objects(const std::string& pool) {
    for (int tries = 0; tries < 50; ++tries) {
      // Held in a local: a range-for over a member of the temporary would outlive it.
      const nlohmann::json q = ok({"pool", "query", pool});
      for (const auto& t : q["pool"]["targets"]) {
        if (t.value("objects", 0) > 0) return t["rank"].get<int>();
      }
    }
    return -1;
  }
  // The management service's address, as the system file records it. This process becomes the
  // system's administrator (its system key), for the clients a test makes in-process.
  std::string mgmt() const {
    std::ifstream in(sys_dir_ + "/system.json");
    const nlohmann::json j = nlohmann::json::parse(in);
    std::shared_ptr<const security::SystemKey> key;
    if (auto k = security::SystemKey::load(j.value("system_key", std::string())); k) {
      key = std::move(*k);
    }
    security::set_default_authority(security::Authority(key, j.value("agent", std::string())));
    return j.at("mgmt").get<std::string>();
  }
  // Another user may run commands: the base directory becomes traversable and commands run a
  // copy of the CLI from a public directory (the build tree may be private, as a clean clone in
  // a mktemp directory is).
  const std::string& let_others_in() {
    const std::string pub = dir_.path() + "/pub";
    std::filesystem::create_directories(pub);
    // The launcher and the CLI it runs (tessera-cli, beside it).
    const std::filesystem::path bin(TESSERA_CLI_BIN);
    for (const char* name : {"tessera", "tessera-cli"}) {
      std::filesystem::copy_file(bin.parent_path() / name, pub + "/" + name,
                                 std::filesystem::copy_options::overwrite_existing);
      ::chmod((pub + "/" + name).c_str(), 0755);
    }
    ::chmod(dir_.path().c_str(), 0755);
    ::chmod(pub.c_str(), 0755);
    ::chmod(sys_dir_.c_str(), 0755);
    cli_ = pub + "/tessera";
    return cli_;
  }
  const std::string& dir() const { return sys_dir_; }
  const std::string& base() const { return dir_.path(); }

 private:
  TempDir dir_;
  std::string sys_dir_;
  std::string cli_ = TESSERA_CLI_BIN;
};

}  // namespace tessera::testing

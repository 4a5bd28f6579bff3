// Clients killed (SIGKILL) in the middle of large transfers, again and again, as a batch system
// kills jobs at their time limit. The engines must keep serving: they read no malformed frame,
// still hear requests (no fabric endpoint deaf), every target answers, and every write
// acknowledged to a surviving client reads back whole. The killed clients are `tessera-bench
// load` (1 MiB or 256 KiB updates, 8 in flight: above the provider's eager limit, so each travels
// by rendezvous); the endpoint-level test of the same path is FabricKill (unit_net).
//
// Fixed seeds in every run; TESSERA_CLIENT_KILL_SEED=S runs one seed, TESSERA_CLIENT_KILL_SEEDS=N
// runs N more.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

#include "telemetry/http.hpp"
#include "tests/integration/cli_system.hpp"
#include "tests/integration/server_process.hpp"

extern char** environ;

using namespace tessera;
using namespace tessera::testing;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

size_t lines_in(const std::string& path) {
  std::ifstream in(path);
  size_t n = 0;
  for (std::string l; std::getline(in, l);) ++n;
  return n;
}

// A `tessera-bench load` against the system, its output in `out`.
pid_t spawn_load(const CliSystem& s, const std::string& mgmt, const std::string& bs,
                 const std::string& out) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, (out + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  std::vector<std::string> args = {TESSERA_BENCH_BIN,
                                   "-e",
                                   mgmt,
                                   "load",
                                   "--pool",
                                   "tank",
                                   "--cont",
                                   "c",
                                   "--bs",
                                   bs,
                                   "--qd",
                                   "8",
                                   "--seconds",
                                   "120",
                                   "--interval-ms",
                                   "50"};
  std::vector<std::string> env = {"TESSERA_AGENT=" + s.dir() + "/agent.sock"};
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, TESSERA_BENCH_BIN, &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

// The sum over the engines of a metric's samples (every label set).
double metric_sum(const std::vector<std::string>& text, const std::string& name) {
  const std::regex re("^" + name + R"((\{[^}]*\})? ([0-9.e+-]+)$)");
  double sum = 0;
  for (const auto& t : text) {
    std::istringstream in(t);
    for (std::string l; std::getline(in, l);) {
      std::smatch m;
      if (std::regex_match(l, m, re)) sum += std::stod(m[2]);
    }
  }
  return sum;
}

void run_seed(uint64_t seed, int kills) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "3", "--targets", "1"});
  s.ok({"pool", "create", "tank", "--target-size", "1G"});
  s.ok({"cont", "create", "tank", "c", "--oclass", "RP_2G1", "--rf", "1"});
  json sys = json::parse(std::ifstream(s.dir() + "/system.json"), nullptr, false);
  ASSERT_FALSE(sys.is_discarded());
  const std::string mgmt = sys.at("mgmt").get<std::string>();

  // Writes acknowledged to a client that lives: one before the kills and one after each.
  std::vector<std::pair<std::string, std::string>> acked;  // oid, file holding its value
  auto put_checked = [&](int i) {
    const std::string oid = std::to_string(1000000 + i);
    const std::string file = s.base() + "/v" + std::to_string(i);
    std::string v(256 * 1024 + rng() % (768 * 1024), '\0');
    for (auto& c : v) c = static_cast<char>(rng());
    std::ofstream(file, std::ios::binary) << v;
    s.ok({"obj", "put", "--pool", "tank", "--cont", "c", "--oid", oid, "--dkey", "d", "--akey", "a",
          "--array", "-f", file});
    acked.emplace_back(oid, file);
  };
  put_checked(0);
  for (int k = 1; k <= kills; ++k) {
    const std::string out = s.base() + "/load" + std::to_string(k);
    const pid_t pid = spawn_load(s, mgmt, rng() % 2 ? "1M" : "256K", out);
    ASSERT_GT(pid, 0) << "posix_spawn " << TESSERA_BENCH_BIN;
    // Killed after 1 to 4 of its 50 ms intervals: with updates in flight.
    const size_t after = 1 + rng() % 4;
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (lines_in(out) < after && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling a condition
    }
    ::kill(pid, SIGKILL);
    int ws = 0;
    ::waitpid(pid, &ws, 0);
    ASSERT_GE(lines_in(out), after) << "the load never got going: " << out << ".err";
    put_checked(k);
  }
  // Every acknowledged write reads back whole.
  for (const auto& [oid, file] : acked) {
    const std::string got = file + ".back";
    s.ok({"obj", "get", "--pool", "tank", "--cont", "c", "--oid", oid, "--dkey", "d", "--akey", "a",
          "--array", "-o", got});
    std::ifstream a(file, std::ios::binary), b(got, std::ios::binary);
    std::string va((std::istreambuf_iterator<char>(a)), {});
    std::string vb((std::istreambuf_iterator<char>(b)), {});
    EXPECT_TRUE(va == vb) << "object " << oid << ": " << vb.size() << " bytes back of "
                          << va.size();
  }
  // The engines: every target up and hearing, no malformed frame read.
  std::vector<std::string> text;
  const json q = s.ok({"system", "query"});
  for (const auto& r : q["ranks"]) {
    auto t =
        telemetry::http_get(r["metrics"].get<std::string>(), "/metrics", std::chrono::seconds(30));
    ASSERT_TRUE(t) << t.status().to_string();
    text.push_back(*t);
  }
  EXPECT_EQ(metric_sum(text, "tessera_target_up"), 3);
  EXPECT_EQ(metric_sum(text, "tessera_fabric_deaf"), 0);
  EXPECT_EQ(metric_sum(text, "tessera_fabric_malformed_frames_total"), 0);
  std::printf(
      "seed %lu: %d clients killed mid-transfer; the engines lost %.0f receive entries, "
      "saw %.0f failed receives, dropped %.0f frames\n",
      static_cast<unsigned long>(seed), kills,
      metric_sum(text, "tessera_fabric_lost_receive_entries"),
      metric_sum(text, "tessera_fabric_receive_errors_total"),
      metric_sum(text, "tessera_fabric_frames_dropped_total"));
}

}  // namespace

TEST(ClientKill, EnginesKeepServingWhenClientsDieMidTransfer) {
  if (const char* one = std::getenv("TESSERA_CLIENT_KILL_SEED")) {
    return run_seed(std::strtoull(one, nullptr, 10), 10);
  }
  std::vector<uint64_t> seeds{1};
  if (const char* n = std::getenv("TESSERA_CLIENT_KILL_SEEDS")) {
    for (uint64_t i = 0; i < std::strtoull(n, nullptr, 10); ++i) seeds.push_back(100 + i);
  }
  for (uint64_t seed : seeds) {
    run_seed(seed, 10);
    if (::testing::Test::HasFailure()) break;
  }
}

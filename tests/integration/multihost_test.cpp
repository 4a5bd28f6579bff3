// Six "hosts" on one machine: each a network namespace this test makes (a veth pair into a
// bridge that lives in a namespace of its own), with one engine started as a deployed host starts
// it, `tessera-server --config FILE` (docs/DEPLOY.md): its own address, its own fault domain,
// the system key and the list of three access points. A client namespace on the same bridge
// runs the CLI. Every address lives inside the test's namespaces; nothing is sent anywhere
// else, and the namespaces (with their links) are deleted at the end.
//
// The faults are the drills of tests/multihost/*.yaml, run by `tessera drill run --attach`
// inside the client namespace: a host's link is cut (the engine keeps running, its peers hear
// only silence), failure detection and rebuild follow, every acknowledged write reads back, the
// link comes back and the engine is reintegrated.
//
// Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) for `ip netns`; skipped, saying why, without it.
#include <unistd.h>

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>

#include "tests/integration/server_process.hpp"
#include "tests/test_util.hpp"

using namespace tessera::testing;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr int kHosts = 6;
constexpr int kAccessPoints = 3;
const char* const kIp = "/usr/sbin/ip";

// Runs `ip ARGS...`; returns its exit code and output (its errors go to the test's log).
std::pair<int, std::string> ip(std::vector<std::string> args) {
  args.insert(args.begin(), kIp);
  return run_command(args);
}

// The namespaces: PREFIX + "sw" holds the bridge, PREFIX + "c" the client, PREFIX + "h<i>"
// host i (address 10.77.0.<10+i>). Deleted, with every link in them, on destruction.
class Hosts {
 public:
  Hosts() : prefix_(fmt::format("ts{}-", ::getpid())) {}
  ~Hosts() {
    for (const auto& n : made_) ip({"netns", "del", n});
  }
  Hosts(const Hosts&) = delete;
  Hosts& operator=(const Hosts&) = delete;

  // Makes the bridge, the client and `n` hosts; a failure says which command failed.
  std::string make(int n) {
    if (auto e = add_ns(sw()); !e.empty()) return e;
    if (auto e = run({"-n", sw(), "link", "add", "br0", "type", "bridge"}); !e.empty()) return e;
    if (auto e = run({"-n", sw(), "link", "set", "br0", "up"}); !e.empty()) return e;
    if (auto e = attach(client(), "vc", client_addr()); !e.empty()) return e;
    for (int i = 0; i < n; ++i) {
      if (auto e = attach(host(i), fmt::format("v{}", i), addr(i)); !e.empty()) return e;
    }
    return {};
  }

  std::string prefix() const { return prefix_; }
  std::string sw() const { return prefix_ + "sw"; }
  std::string client() const { return prefix_ + "c"; }
  std::string host(int i) const { return fmt::format("{}h{}", prefix_, i); }
  static std::string addr(int i) { return fmt::format("10.77.0.{}", 10 + i); }
  static std::string client_addr() { return "10.77.0.200"; }

 private:
  std::string run(std::vector<std::string> args) {
    auto [rc, out] = ip(args);
    if (rc == 0) return {};
    std::string cmd = kIp;
    for (const auto& a : args) cmd += " " + a;
    return fmt::format("`{}` failed ({}): {}", cmd, rc, out);
  }
  std::string add_ns(const std::string& n) {
    if (auto e = run({"netns", "add", n}); !e.empty()) return e;
    made_.push_back(n);
    return run({"-n", n, "link", "set", "lo", "up"});
  }
  // A namespace with eth0 at `a`/24, its veth peer `port` on the bridge.
  std::string attach(const std::string& n, const std::string& port, const std::string& a) {
    if (auto e = add_ns(n); !e.empty()) return e;
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"-n", n, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", sw()},
             {"-n", sw(), "link", "set", port, "master", "br0"},
             {"-n", sw(), "link", "set", port, "up"},
             {"-n", n, "addr", "add", a + "/24", "dev", "eth0"},
             {"-n", n, "link", "set", "eth0", "up"}}) {
      if (auto e = run(args); !e.empty()) return e;
    }
    return {};
  }

  std::string prefix_;
  std::vector<std::string> made_;
};

// Why this process cannot make network namespaces (empty: it can).
std::string netns_unusable() {
  if (::geteuid() != 0) return "not root: `ip netns` needs CAP_SYS_ADMIN and CAP_NET_ADMIN";
  if (::access(kIp, X_OK) != 0) return std::string(kIp) + " is missing (Debian's iproute2)";
  const std::string probe = fmt::format("ts{}-probe", ::getpid());
  auto [rc, out] = ip({"netns", "add", probe});
  if (rc != 0) return "`ip netns add` failed: " + out;
  ip({"netns", "del", probe});
  return {};
}

std::string access_points_yaml() {
  std::string s = "access_points:\n";
  for (int i = 0; i < kAccessPoints; ++i) {
    s += fmt::format("  - {{rank: {}, control: \"{}:10001\", raft: \"{}:10101\"}}\n", i,
                     Hosts::addr(i), Hosts::addr(i));
  }
  return s;
}

std::string access_points_list() {
  std::string s;
  for (int i = 0; i < kAccessPoints; ++i) {
    s += fmt::format("{}{}:10001", s.empty() ? "" : ",", Hosts::addr(i));
  }
  return s;
}

// Host i's engine configuration, as docs/DEPLOY.md writes one.
std::string engine_yaml(int i, const std::string& dir) {
  return fmt::format(
             "rank: {0}\n"
             "listen: {1}:10001\n"
             "fabric_node: {1}\n"
             "host: host{0}\n"
             "provider: \"tcp;ofi_rxm\"\n"
             "targets: 1\n"
             "storage_dir: {2}\n"
             "storage_size: 512M\n"
             "system_key: {3}\n"
             "mgmt_dead_after_ms: 5000\n",
             i, Hosts::addr(i), dir, test_system_key()) +
         access_points_yaml();
}

// The system file `tessera drill run --attach` reads (apps/local_system.hpp): the access
// points, the engines and the key that makes the CLI an administrator.
json system_json(const std::string& dir, const std::vector<std::unique_ptr<ServerProcess>>& s,
                 const std::vector<std::string>& dirs) {
  std::string aps;
  for (int i = 0; i < kAccessPoints; ++i) {
    aps += fmt::format("{}{}@{}:10001@{}:10101", aps.empty() ? "" : ",", i, Hosts::addr(i),
                       Hosts::addr(i));
  }
  json j{{"version", 1},
         {"dir", dir},
         {"mgmt", access_points_list()},
         {"access_points", aps},
         {"provider", "tcp;ofi_rxm"},
         {"targets", 1},
         {"server", TESSERA_SERVER_BIN},
         {"insecure", false},
         {"system_key", test_system_key()}};
  j["engines"] = json::array();
  for (size_t i = 0; i < s.size(); ++i) {
    j["engines"].push_back({{"rank", i},
                            {"control", Hosts::addr(static_cast<int>(i)) + ":10001"},
                            {"pid", s[i]->pid()},
                            {"dir", dirs[i]},
                            {"log", s[i]->log_path()}});
  }
  return j;
}

// The six hosts with their engines, and the CLI in the client namespace.
class MultiHostSystem {
 public:
  // Makes the namespaces and starts every engine; a failure is the returned text.
  std::string start() {
    if (auto e = hosts.make(kHosts); !e.empty()) return e;
    for (int i = 0; i < kHosts; ++i) {
      dirs.push_back(tmp.path() + fmt::format("/host{}", i));
      fs::create_directories(dirs.back());
      const std::string cfg = dirs.back() + "/engine.yaml";
      std::ofstream(cfg) << engine_yaml(i, dirs.back());
      ServerOptions o = ServerOptions::in(dirs.back());
      o.config = cfg;
      o.netns = hosts.host(i);
      o.host = Hosts::addr(i);
      engines.push_back(std::make_unique<ServerProcess>(o));
    }
    // Access points first, then the others (docs/DEPLOY.md): every engine joins the leader.
    for (auto& e : engines) {
      if (auto st = e->start(); !st.is_ok()) return st.to_string() + "\n" + e->log();
    }
    system_file = tmp.path() + "/system.json";
    std::ofstream(system_file) << system_json(tmp.path(), engines, dirs).dump(2);
    ::setenv("TESSERA_NETNS", hosts.prefix().c_str(), 1);
    return {};
  }

  // `tessera ARGS` in the client namespace, against this system.
  std::pair<int, std::string> cli(std::vector<std::string> args) {
    args.insert(args.begin(),
                {kIp, "netns", "exec", hosts.client(), TESSERA_CLI_BIN, "--system", system_file});
    return run_command(args);
  }
  // `tessera --json ARGS`, parsed (null when the output is not JSON).
  json cli_json(std::vector<std::string> args) {
    args.insert(args.begin(), "--json");
    auto [rc, out] = cli(args);
    try {
      return json::parse(out);
    } catch (const std::exception&) {
      return nullptr;
    }
  }
  // Takes host i's link down (true) or up again, inside its namespace.
  bool cut(int i, bool down) {
    return ip({"-n", hosts.host(i), "link", "set", "eth0", down ? "down" : "up"}).first == 0;
  }

  Hosts hosts;  // destroyed last: the engines stop before their links go
  TempDir tmp;
  std::vector<std::unique_ptr<ServerProcess>> engines;
  std::vector<std::string> dirs;
  std::string system_file;
};

// Runs the drill FILE against the system from the client namespace; checks its report.
void run_drill(MultiHostSystem& m, const std::string& name, const std::string& file) {
  auto [rc, out] = m.cli({"--json", "drill", "run", "--attach", m.system_file, file});
  json r;
  ASSERT_NO_THROW(r = json::parse(out)) << "exit " << rc << ", output:\n" << out;
  const json& s = r["summary"];
  std::printf("%s: rebuild %s, %s acknowledged, %s failed, %s lost\n", name.c_str(),
              s["rebuild"]["seconds"].dump().c_str(), s["acknowledged_writes"].dump().c_str(),
              s["write_errors"].dump().c_str(), s["lost_writes"].dump().c_str());
  for (const auto& e : s["write_error_samples"])
    std::printf("  write error: %s\n", e.dump().c_str());
  for (const auto& ev : r["timeline"]) std::printf("  %s\n", ev.dump().c_str());
  // Last, so that a log cut to its head and tail still shows why (and the failed step's output).
  if (!r["passed"].get<bool>()) {
    for (const auto& ev : r["timeline"]) {
      if (ev.value("ok", true) == false) std::printf("failed step: %s\n", ev.dump(1).c_str());
    }
    for (const auto& e : s["lost_samples"]) std::printf("lost: %s\n", e.dump().c_str());
  }
  EXPECT_TRUE(r["passed"].get<bool>()) << r["failure"].dump();
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(s["lost_writes"].get<uint64_t>(), 0u);
  EXPECT_GT(s["acknowledged_writes"].get<uint64_t>(), 0u);
  for (auto& e : m.engines) EXPECT_TRUE(e->alive()) << e->log();
}

class MultiHost : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(MultiHost, DrillPassesWithNoLostWrite) {
  if (auto why = netns_unusable(); !why.empty()) GTEST_SKIP() << why;
  MultiHostSystem m;
  ASSERT_EQ(m.start(), "");
  run_drill(m, GetParam(), std::string(TESSERA_MULTIHOST_DIR) + "/" + GetParam() + ".yaml");
}

INSTANTIATE_TEST_SUITE_P(Drills, MultiHost, ::testing::Values("host-cut-off"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

namespace {

int leader_of(MultiHostSystem& m) {
  json q = m.cli_json({"system", "query"});
  if (q.is_null() || !q.contains("leader") || q["leader"].is_null()) return -1;
  return q["leader"].get<int>();
}

std::vector<std::string> pool_labels(MultiHostSystem& m) {
  std::vector<std::string> out;
  json l = m.cli_json({"pool", "list"});
  if (l.is_null() || !l.contains("pools")) return out;
  for (const auto& p : l["pools"]) out.push_back(p.value("label", std::string()));
  return out;
}

// Prints how long the test has run at each phase (for whoever reads a slow run's log).
struct Phases {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  void operator()(const char* what) const {
    std::printf("[%6.1f s] %s\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), what);
  }
};

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

// The leader's host is cut off the network (its engine and replica keep running, alone). The
// other two access points elect a new leader and management commands go on within the
// documented bound (15 s, docs/OPERATIONS.md); the cut-off old leader accepts nothing (a
// command given on its own host fails), so there is never a second leader. When the link comes
// back, the old leader follows the new one and holds every committed command.
TEST(MultiHostAccessPoints, CuttingTheLeadersHostElectsAnotherAndSplitsNoBrain) {
  if (auto why = netns_unusable(); !why.empty()) GTEST_SKIP() << why;
  Phases phase;
  MultiHostSystem m;
  ASSERT_EQ(m.start(), "");
  phase("six hosts started");
  int old = -1;
  ASSERT_TRUE(eventually([&] { return (old = leader_of(m)) >= 0; }, std::chrono::seconds(120)));
  phase("a leader serves");
  for (const char* p : {"before0", "before1"}) {
    auto [rc, out] = m.cli({"pool", "create", p, "--target-size", "64M"});
    ASSERT_EQ(rc, 0) << out;
  }

  phase("two pools created");
  ASSERT_TRUE(m.cut(old, true));
  const auto t0 = std::chrono::steady_clock::now();
  auto [rc, out] = m.cli({"pool", "create", "during", "--target-size", "64M"});
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("leader rank %d cut off: the next pool create took %.2f s\n", old, secs);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_LT(secs, 60.0) << "far beyond the documented 15 s";  // a backstop, not a timing test
  auto [crc, cout] = m.cli({"cont", "create", "during", "C", "--type", "KV"});
  EXPECT_EQ(crc, 0) << cout;
  phase("a container created");
  int now = leader_of(m);
  EXPECT_GE(now, 0);
  EXPECT_NE(now, old);

  phase("a container created under the new leader");
  // On the cut-off host, against its own access point only: refused, never applied.
  auto [src, sout] = run_command({kIp, "netns", "exec", m.hosts.host(old), TESSERA_CLI_BIN,
                                  "--mgmt", Hosts::addr(old) + ":10001", "--timeout-ms", "8000",
                                  "pool", "create", "split", "--target-size", "64M"});
  EXPECT_NE(src, 0) << "the cut-off old leader created a pool:\n" << sout;

  phase("the cut-off old leader refused a command");
  ASSERT_TRUE(m.cut(old, false));
  // The old leader catches up: every access point answers, one leads, all applied the same.
  json q;
  EXPECT_TRUE(eventually(
      [&] {
        q = m.cli_json({"system", "query"});
        if (q.is_null() || q["leader"].is_null()) return false;
        uint64_t applied = 0;
        int leaders = 0;
        for (const auto& ap : q["access_points"]) {
          if (!ap.contains("applied")) return false;
          if (ap["state"] == "leader") ++leaders;
          if (applied != 0 && ap["applied"].get<uint64_t>() != applied) return false;
          applied = ap["applied"].get<uint64_t>();
        }
        return leaders == 1;
      },
      // The replicas' links to the cut-off host wait out TCP's connect retries (up to about a
      // minute after the link is back, docs/DEPLOY.md).
      std::chrono::seconds(240)))
      << q.dump(1);
  phase("the old leader follows and has applied every command");
  const auto pools = pool_labels(m);
  for (const char* p : {"before0", "before1", "during"}) EXPECT_TRUE(has(pools, p)) << p;
  EXPECT_FALSE(has(pools, "split"));
  for (auto& e : m.engines) EXPECT_TRUE(e->alive()) << e->log();
}

// Seeded random sequences of link cuts and heals over the six hosts, under the drill's verified
// RP_3GX load (rf 2): at most two hosts cut at once and at most one access point, so the data
// and the management service always keep a majority. A healed host joins again and is
// reintegrated, sometimes while a rebuild still runs, sometimes just before the next cut.
// Every acknowledged write reads back after every fault and at the end, and every copy agrees.
// Writes may fail (never acknowledged, so never counted as lost): a fabric connection that
// carried messages while its link was down resumes only at TCP's next retransmission after the
// link is back, up to two minutes later (docs/OPERATIONS.md), and a write whose group needs
// that connection gives up after its 30 s. The shipped host-cut-off drill, whose cut is short,
// allows none.
// TESSERA_SEED=S runs seed S; CI runs seed 2.
namespace {

// The drill's last step. A check right after a cut heals can meet engine-to-engine connections
// that carried traffic during the cut and still wait out TCP's retransmission back-off (up to
// two minutes, docs/OPERATIONS.md): it then reports dkeys it could not check ("could not be
// checked", a timeout) and is run again, at most six times. Any other failure, an inconsistency
// first of all, fails the drill at once.
constexpr const char* kCheckAfterHeal = R"(
for attempt in 1 2 3 4 5 6; do
  if out=$(tessera cont check "$TESSERA_POOL" "$TESSERA_CONT" 2>&1); then echo "$out"; exit 0; fi
  echo "attempt $attempt: $out"
  case "$out" in *"could not be checked"*) sleep 20 ;; *) exit 1 ;; esac
done
exit 1
)";

std::string random_partition_drill(uint64_t seed, const std::string& check_script) {
  std::mt19937_64 rng(seed);
  std::string y = fmt::format(
      "# generated by tests/integration/multihost_test.cpp, seed {}\n"
      "name: random link cuts, seed {}\n"
      "pool: {{label: drill, size: 128M}}\n"
      "container: {{label: data, class: RP_3GX, rf: 2}}\n"
      "load: {{writers: 2, size: 4K, rate: 40, preload: 200, allow_errors: true}}\n"
      "steps:\n"
      "  - sleep 1s\n",
      seed, seed);
  auto step = [&](const std::string& s) { y += "  - " + s + "\n"; };
  std::vector<int> cut;
  auto is_ap = [](int h) { return h < kAccessPoints; };
  auto heal = [&](int h, bool wait) {
    step(fmt::format("exec ip -n \"${{TESSERA_NETNS}}h{}\" link set eth0 up", h));
    step(fmt::format("wait joined rank {} timeout 90s", h));
    step(fmt::format("reintegrate rank {}", h));
    if (wait) step("wait rebuild timeout 240s");
  };
  for (int event = 0; event < 5; ++event) {
    const bool can_cut = cut.size() < 2;
    if (can_cut && (cut.empty() || rng() % 2 == 0)) {
      std::vector<int> choices;
      const bool ap_cut = std::any_of(cut.begin(), cut.end(), is_ap);
      for (int h = 0; h < kHosts; ++h) {
        if (std::find(cut.begin(), cut.end(), h) == cut.end() && !(ap_cut && is_ap(h))) {
          choices.push_back(h);
        }
      }
      const int h = choices[rng() % choices.size()];
      cut.push_back(h);
      step(fmt::format("exec ip -n \"${{TESSERA_NETNS}}h{}\" link set eth0 down", h));
      step(fmt::format("wait down rank {} timeout 90s", h));
      if (rng() % 2 == 0) step("wait rebuild timeout 240s");
    } else {
      const size_t i = rng() % cut.size();
      const int h = cut[i];
      cut.erase(cut.begin() + static_cast<long>(i));
      heal(h, rng() % 2 == 0);
    }
    if (rng() % 2 == 0) step("verify");
  }
  for (int h : cut) heal(h, false);
  step("wait rebuild timeout 240s");
  step("assert redundancy normal");
  step("verify");
  step("exec sh " + check_script);
  return y;
}

}  // namespace

TEST(MultiHostRandom, SeededLinkCutsLoseNoAcknowledgedWrite) {
  if (auto why = netns_unusable(); !why.empty()) GTEST_SKIP() << why;
  std::vector<uint64_t> seeds = {2};  // the seed that found a leader change killing every engine
  if (const char* e = std::getenv("TESSERA_SEED")) seeds = {std::strtoull(e, nullptr, 10)};
  for (uint64_t seed : seeds) {
    SCOPED_TRACE(fmt::format("seed {} (TESSERA_SEED={} reruns it)", seed, seed));
    MultiHostSystem m;
    ASSERT_EQ(m.start(), "");
    const std::string file = m.tmp.file("drill.yaml");
    const std::string script = m.tmp.file("check-after-heal.sh");
    std::ofstream(script) << kCheckAfterHeal;
    std::ofstream(file) << random_partition_drill(seed, script);
    run_drill(m, fmt::format("random link cuts, seed {}", seed), file);
    if (HasFailure()) {
      std::ifstream in(file);
      std::printf("the drill:\n%s\n", std::string(std::istreambuf_iterator<char>(in), {}).c_str());
      return;
    }
  }
}

// The engines' metrics endpoints, read as Prometheus reads them (python3-prometheus-client's
// parser): after known work (replicated 4 KiB updates, reads), the counters, byte counts and
// latency histograms of the three engines add up to exactly that work; `system query` names
// every endpoint and `system top` shows the rates. A bad request harms nothing.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "telemetry/http.hpp"
#include "tests/integration/cli_system.hpp"
#include "tests/integration/server_process.hpp"

using namespace tessera;
using namespace tessera::testing;
using nlohmann::json;

namespace {

// Sums over the engines' /metrics, parsed by prometheus_client (tests/data/prometheus_sums.py).
json prometheus_sums(const std::vector<std::string>& addrs) {
  std::vector<std::string> argv = {"/usr/bin/python3",
                                   std::string(TESSERA_TEST_DATA) + "/prometheus_sums.py"};
  argv.insert(argv.end(), addrs.begin(), addrs.end());
  auto [rc, out] = run_command(argv);
  EXPECT_EQ(rc, 0) << out;
  json j = json::parse(out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << out;
  return j;
}

double delta(const json& a, const json& b, const std::string& key) {
  return b.value(key, 0.0) - a.value(key, 0.0);
}

}  // namespace

TEST(Metrics, PrometheusReadsWhatTheEnginesDid) {
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "3", "--targets", "1"});
  s.ok({"pool", "create", "tank", "--target-size", "64M"});
  s.ok({"cont", "create", "tank", "c", "--oclass", "RP_3G1", "--rf", "2"});
  json q = s.ok({"system", "query"});
  std::vector<std::string> addrs;
  for (const auto& r : q["ranks"]) {
    ASSERT_TRUE(r["metrics"].is_string()) << r.dump();
    addrs.push_back(r["metrics"].get<std::string>());
  }
  ASSERT_EQ(addrs.size(), 3u);
  // One engine's own view names the same address.
  json e = s.ok({"engine", "query", "--rank", "1"});
  EXPECT_EQ(e["metrics"], addrs[1]);

  const json before = prometheus_sums(addrs);
  EXPECT_EQ(before.value("engines", 0.0), 3);
  EXPECT_EQ(before.value("targets_up", 0.0), 3);
  constexpr int kPuts = 12, kGets = 5;
  const std::string value(4096, 'v');
  for (int i = 0; i < kPuts; ++i) {
    s.ok({"obj", "put", "--pool", "tank", "--cont", "c", "--oid", std::to_string(i + 1), "--dkey",
          "d", "--akey", "a"},
         value);
  }
  for (int i = 0; i < kGets; ++i) {
    s.ok({"obj", "get", "--pool", "tank", "--cont", "c", "--oid", std::to_string(i + 1), "--dkey",
          "d", "--akey", "a"});
  }
  const json after = prometheus_sums(addrs);
  // Every update lands on the three replicas: the leader's from the client, two forwarded.
  EXPECT_EQ(delta(before, after, "requests.update"), 3 * kPuts) << after.dump();
  EXPECT_EQ(delta(before, after, "errors.update"), 0);
  EXPECT_EQ(delta(before, after, "bytes_in.update"), 3.0 * kPuts * 4096);
  EXPECT_EQ(delta(before, after, "duration_count.update"), 3 * kPuts);
  EXPECT_EQ(after.value("duration_inf.update", -1.0), after.value("duration_count.update", -2.0));
  // A read goes to one replica and brings the value back.
  EXPECT_EQ(delta(before, after, "requests.fetch"), kGets);
  EXPECT_EQ(delta(before, after, "bytes_out.fetch"), 1.0 * kGets * 4096);
  // Each engine logged its share of each update (a prepare, at least) and committed it.
  EXPECT_GE(delta(before, after, "wal_records"), 3 * kPuts);
  EXPECT_EQ(delta(before, after, "wal_commits"), delta(before, after, "wal_groups"));
  EXPECT_GE(delta(before, after, "dtx_committed"), 3 * kPuts);
  EXPECT_GE(after.value("used_data", 0.0), 3.0 * kPuts * 4096);

  // The live view: one JSON line per refresh, a row per engine with its rates.
  auto [rc, top] = s.run({"system", "top", "--count", "1", "--interval", "0.5"});
  ASSERT_EQ(rc, 0) << top.dump();
  ASSERT_EQ(top["engines"].size(), 3u) << top.dump();
  for (const auto& row : top["engines"]) {
    EXPECT_TRUE(row.contains("ops_per_s")) << row.dump();
    EXPECT_GE(row.value("used", 0.0), kPuts * 4096.0) << row.dump();
  }

  // Requests the endpoint does not serve get an answer and change nothing.
  auto missing = telemetry::http_get(addrs[0], "/etc/passwd", std::chrono::seconds(30));
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.status().message().find("HTTP 404"), std::string::npos);
  auto [prc, post] = run_command({"/usr/bin/python3", "-c",
                                  "import urllib.request as u, urllib.error as e\n"
                                  "try: u.urlopen(u.Request('http://" + addrs[0] +
                                      "/metrics', data=b'x' * 100000), timeout=60)\n"
                                  "except e.HTTPError as x: print(x.code)"});
  EXPECT_EQ(prc, 0) << post;
  EXPECT_EQ(post, "405\n");
  const json last = prometheus_sums(addrs);
  EXPECT_EQ(delta(after, last, "requests.update"), 0);
  EXPECT_EQ(last.value("targets_up", 0.0), 3);

  // The shipped Grafana dashboard asks only for families an engine serves (the rebuild's
  // appear once a rebuild ran on the target).
  auto text = telemetry::http_get(addrs[0], "/metrics", std::chrono::seconds(30));
  ASSERT_TRUE(text) << text.status().to_string();
  std::ifstream in(std::string(TESSERA_TEST_DATA) + "/../../docs/grafana/tessera.json");
  ASSERT_TRUE(in);
  std::stringstream dash;
  dash << in.rdbuf();
  const std::string d = dash.str();
  std::set<std::string> names;
  const std::regex name_re("tessera_[a-z_]+");
  for (auto it = std::sregex_iterator(d.begin(), d.end(), name_re); it != std::sregex_iterator();
       ++it) {
    names.insert(std::regex_replace(it->str(), std::regex("_(bucket|sum|count)$"), ""));
  }
  EXPECT_GE(names.size(), 15u);
  // Each target's fabric endpoint: its receive queue, and none of it lost in a healthy run.
  EXPECT_NE(text->find("tessera_fabric_receive_entries{rank=\"0\",target=\"0\"} 16384"),
            std::string::npos)
      << *text;
  EXPECT_NE(text->find("tessera_fabric_lost_receive_entries{rank=\"0\",target=\"0\"} 0"),
            std::string::npos);
  EXPECT_NE(text->find("tessera_fabric_deaf{rank=\"0\",target=\"0\"} 0"), std::string::npos);
  for (const auto& n : names) {
    if (n.rfind("tessera_rebuild_", 0) == 0 || n == "tessera_engines") continue;
    EXPECT_NE(text->find("# TYPE " + n + " "), std::string::npos) << n;
  }
}

// The shipped failover drills (tests/drills/*.yaml), each run by the real CLI exactly as an
// operator runs it: `tessera --json drill run FILE` starts six engines on 127.0.0.1 in a
// temporary directory, writes a verified load, injects the drill's faults and verifies every
// acknowledged write. A drill passes with its steps done and 0 lost writes.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "tests/integration/server_process.hpp"

using namespace tessera::testing;
using nlohmann::json;

namespace {

std::vector<std::string> drill_files() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(TESSERA_DRILLS_DIR)) {
    if (e.path().extension() == ".yaml") out.push_back(e.path().stem().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

class Drill : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(Drill, PassesWithNoLostWrite) {
  const std::string file = std::string(TESSERA_DRILLS_DIR) + "/" + GetParam() + ".yaml";
  auto [rc, out] = run_command({TESSERA_CLI_BIN, "--json", "drill", "run", file});
  json r;
  ASSERT_NO_THROW(r = json::parse(out)) << "exit " << rc << ", output:\n" << out;
  const json& s = r["summary"];
  // The drill's own summary, for whoever reads the test log.
  std::printf("%s: detection %s, rebuild %s, foreground %s, %s acknowledged, %s lost\n",
              GetParam().c_str(), s["detection"].dump().c_str(),
              s["rebuild"]["seconds"].dump().c_str(), s["foreground"].dump().c_str(),
              s["acknowledged_writes"].dump().c_str(), s["lost_writes"].dump().c_str());
  EXPECT_TRUE(r["passed"].get<bool>()) << r["failure"].dump() << "\n" << r["timeline"].dump(1);
  EXPECT_EQ(rc, 0);
  EXPECT_GT(s["acknowledged_writes"].get<uint64_t>(), 0u);
  ASSERT_FALSE(s["lost_writes"].is_null()) << s.dump(1);
  EXPECT_EQ(s["lost_writes"].get<uint64_t>(), 0u) << s["lost_samples"].dump(1);
  EXPECT_EQ(s["verified_writes"], s["acknowledged_writes"]);
}

INSTANTIATE_TEST_SUITE_P(Shipped, Drill, ::testing::ValuesIn(drill_files()), [](const auto& info) {
  std::string n = info.param;
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
});

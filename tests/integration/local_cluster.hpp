// N real engines on loopback for tests: rank 0 hosts the management service, the others join
// it; every engine is stopped (SIGKILL) when the object goes.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "client/mgmt_client.hpp"
#include "tests/integration/server_process.hpp"

namespace tessera::testing {

class LocalSystem {
 public:
  LocalSystem(const std::string& dir, uint32_t engines, uint32_t targets) {
    for (uint32_t r = 0; r < engines; ++r) {
      auto o = ServerOptions::in(dir + "/rank" + std::to_string(r));
      std::filesystem::create_directories(o.dir);
      o.targets = targets;
      o.storage_size = "64M";
      o.extra = {"--rank", std::to_string(r), "--checkpoint-interval-ms", "1000"};
      if (r == 0) {
        o.extra.push_back("--mgmt-host");
      } else {
        o.extra.push_back("--mgmt");
        o.extra.push_back(engines_[0]->address());
      }
      engines_.push_back(std::make_unique<ServerProcess>(o));
      Status st = engines_.back()->start();
      EXPECT_TRUE(st.is_ok()) << st.to_string();
    }
  }
  std::string mgmt() const { return engines_[0]->address(); }
  ServerProcess& engine(uint32_t r) { return *engines_[r]; }

  // Waits until `n` engines are joined.
  bool wait_joined(size_t n) {
    MgmtClient mc(mgmt());
    for (int i = 0; i < 300; ++i) {
      auto m = mc.system_query();
      if (m) {
        size_t joined = 0;
        for (auto& x : *m) joined += x.state == mgmt::MemberState::joined ? 1 : 0;
        if (joined == n) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

 private:
  std::vector<std::unique_ptr<ServerProcess>> engines_;
};

}  // namespace tessera::testing

// N real engines on loopback for tests: rank 0 hosts the management service, the others join
// it; every engine is stopped (SIGKILL) when the object goes.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "client/client.hpp"
#include "client/container.hpp"
#include "client/mgmt_client.hpp"
#include "placement/layout.hpp"
#include "tests/integration/server_process.hpp"

namespace tessera::testing {

// Waits until `n` engines are joined in the system whose management service is at `mgmt`
// (an engine publishes its port before its join completes). A backstop of 5 minutes: engines
// under the sanitizers on a loaded machine may take that long to recover and join.
inline bool wait_joined_at(const std::string& mgmt, size_t n) {
  MgmtClient mc(mgmt);
  for (int i = 0; i < 3000; ++i) {
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

class LocalSystem {
 public:
  // `extra`: more tessera-server arguments for every engine.
  LocalSystem(const std::string& dir, uint32_t engines, uint32_t targets,
              const std::vector<std::string>& extra = {}) {
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
      o.extra.insert(o.extra.end(), extra.begin(), extra.end());
      engines_.push_back(std::make_unique<ServerProcess>(o));
      Status st = engines_.back()->start();
      EXPECT_TRUE(st.is_ok()) << st.to_string();
    }
  }
  std::string mgmt() const { return engines_[0]->address(); }
  ServerProcess& engine(uint32_t r) { return *engines_[r]; }

  // Waits until `n` engines are joined.
  bool wait_joined(size_t n) { return wait_joined_at(mgmt(), n); }

 private:
  std::vector<std::unique_ptr<ServerProcess>> engines_;
};

// Container properties for tests.
inline mgmt::ContProps cont_props(const std::string& label, const char* oclass, uint32_t rf,
                                  mgmt::ContType type = mgmt::ContType::kv,
                                  uint32_t cell = 128 * 1024) {
  mgmt::ContProps p;
  p.label = label;
  p.type = type;
  p.oclass = placement::find_class(oclass)->id;
  p.rf = rf;
  p.cell_size = cell;
  return p;
}

// A pool "tank" over every engine of a system (64 MiB per target), one container in it, and a
// client holding that container open for writing: what most system tests start from.
struct Tank {
  std::unique_ptr<MgmtClient> mc;
  std::unique_ptr<Client> client;
  std::unique_ptr<Container> cont;
};
// Waits for `engines` to join `sys`, then makes `out` with a container of `props` (fatal
// failures: ASSERT_NO_FATAL_FAILURE).
inline void open_tank(LocalSystem& sys, uint32_t engines, const mgmt::ContProps& props, Tank& out,
                      ClientOptions co = {}) {
  ASSERT_TRUE(sys.wait_joined(engines));
  out.mc = std::make_unique<MgmtClient>(sys.mgmt());
  ASSERT_TRUE(out.mc->pool_create("tank", engines * (64ull << 20)));
  auto made = out.mc->cont_create("tank", props);
  ASSERT_TRUE(made) << made.status().to_string();
  co.engine = sys.mgmt();
  auto cl = Client::connect_system(co);
  ASSERT_TRUE(cl) << cl.status().to_string();
  out.client = std::move(*cl);
  auto c = out.client->open_container("tank", props.label, true);
  ASSERT_TRUE(c) << c.status().to_string();
  out.cont = std::move(*c);
}
inline void open_tank(LocalSystem& sys, uint32_t engines, const std::string& cont,
                      const char* oclass, uint32_t rf, Tank& out, ClientOptions co = {}) {
  open_tank(sys, engines, cont_props(cont, oclass, rf), out, std::move(co));
}

// Restarts `rank` of `sys` cleanly (a clean stop keeps its targets in the pool map) with the
// crash points `spec` armed in that engine alone (core/crash_point.hpp).
inline void restart_armed(LocalSystem& sys, uint32_t rank, const std::string& spec) {
  ASSERT_EQ(sys.engine(rank).terminate(), 0);
  ::setenv("TESSERA_CRASH_AT", spec.c_str(), 1);
  Status st = sys.engine(rank).start();
  ::unsetenv("TESSERA_CRASH_AT");
  ASSERT_TRUE(st.is_ok()) << "rank " << rank << ": " << st.to_string();
}

// Polls pool `pool` until `done` holds for its view (or `limit` passes); returns the last view
// seen (a failed query is an empty view).
inline mgmt::PoolView wait_pool(const MgmtClient& mc, const std::string& pool,
                                const std::function<bool(const mgmt::PoolView&)>& done,
                                std::chrono::seconds limit = std::chrono::seconds(180)) {
  mgmt::PoolView last;
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    auto q = mc.pool_query(pool);
    if (q) {
      last = *q;
      if (done(last)) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return last;
}

// Waits until none of `ranks` is joined any more (dead, stopped or excluded).
inline bool wait_gone(const MgmtClient& mc, const std::vector<uint32_t>& ranks,
                      std::chrono::seconds limit = std::chrono::seconds(30)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    auto m = mc.system_query();
    if (m) {
      size_t gone = 0;
      for (auto& x : *m) {
        for (uint32_t r : ranks) gone += x.rank == r && x.state != mgmt::MemberState::joined;
      }
      if (gone == ranks.size()) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

// Connects a client to the system (kept in `cl`) and opens container `cont` of pool `pool`
// through it; null on failure (reported as a test failure).
inline std::unique_ptr<Container> open_container(const LocalSystem& sys,
                                                 std::unique_ptr<Client>& cl,
                                                 const std::string& pool, const std::string& cont,
                                                 bool write) {
  ClientOptions co;
  co.engine = sys.mgmt();
  co.timeout = std::chrono::milliseconds(30000);
  auto c = Client::connect_system(co);
  EXPECT_TRUE(c) << c.status().to_string();
  if (!c) return nullptr;
  cl = std::move(*c);
  auto k = cl->open_container(pool, cont, write);
  EXPECT_TRUE(k) << k.status().to_string();
  return k ? std::move(*k) : nullptr;
}

}  // namespace tessera::testing

// tessera-bench mgmt: the management service's rates, as a user sees them: container creates,
// container opens (each followed by its close) among many containers, and read-only queries,
// from several client threads at once (each its own connection).
#include "apps/bench_mgmt.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "client/mgmt_client.hpp"

namespace tessera {

namespace {

using Clock = std::chrono::steady_clock;

struct Pass {
  double per_s = 0, p50_us = 0, p99_us = 0;
};

// Runs `n` operations over `threads` threads; `op(thread, i)` is one of them.
Result<Pass> run_pass(int n, int threads,
                      const std::function<Status(MgmtClient&, int thread, int i)>& op,
                      const std::string& mgmt) {
  std::atomic<int> next{0};
  std::mutex mu;
  Status failed;
  std::vector<double> lat;
  std::vector<std::thread> th;
  const auto t0 = Clock::now();
  for (int w = 0; w < threads; ++w) {
    th.emplace_back([&, w] {
      MgmtClient mc(mgmt);
      std::vector<double> mine;
      for (int i = next++; i < n; i = next++) {
        const auto t = Clock::now();
        Status st = op(mc, w, i);
        mine.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
        if (!st.is_ok()) {
          std::lock_guard g(mu);
          failed = st;
          return;
        }
      }
      std::lock_guard g(mu);
      lat.insert(lat.end(), mine.begin(), mine.end());
    });
  }
  for (auto& t : th) t.join();
  if (!failed.is_ok()) return failed;
  Pass p;
  p.per_s = n / std::chrono::duration<double>(Clock::now() - t0).count();
  std::sort(lat.begin(), lat.end());
  if (!lat.empty()) {
    p.p50_us = lat[lat.size() / 2];
    p.p99_us = lat[std::min(lat.size() - 1, lat.size() * 99 / 100)];
  }
  return p;
}

nlohmann::json pass_json(const Pass& p, int n) {
  return {{"count", n}, {"per_s", p.per_s}, {"p50_us", p.p50_us}, {"p99_us", p.p99_us}};
}

}  // namespace

int bench_mgmt(const std::string& mgmt, const MgmtBenchArgs& a, bool as_json) {
  auto fail = [](const Status& st) {
    std::fprintf(stderr, "tessera-bench: %s\n", st.to_string().c_str());
    return 1;
  };
  nlohmann::json out = {{"pool", a.pool}, {"threads", a.threads}};
  // Containers m<first>.. up to `containers` in all (a second run adds to them).
  MgmtClient mc(mgmt);
  auto pv = mc.pool_query(a.pool);
  if (!pv) return fail(pv.status());
  int have = 0;
  for (; have < a.containers; ++have) {
    if (!mc.cont_query(a.pool, fmt::format("m{}", have))) break;
  }
  const int to_make = a.containers - have;
  if (to_make > 0) {
    auto p = run_pass(
        to_make, a.threads,
        [&](MgmtClient& c, int, int i) {
          mgmt::ContProps props;
          props.label = fmt::format("m{}", have + i);
          return c.cont_create(a.pool, props).status();
        },
        mgmt);
    if (!p) return fail(p.status());
    out["creates"] = pass_json(*p, to_make);
    out["created_from"] = have;
  }
  if (a.opens > 0) {
    auto p = run_pass(
        a.opens, a.threads,
        [&](MgmtClient& c, int w, int i) -> Status {
          std::mt19937 g(static_cast<uint32_t>(w * 1000003 + i));
          const std::string label =
              fmt::format("m{}", std::uniform_int_distribution<int>(0, a.containers - 1)(g));
          auto h = c.cont_open(a.pool, label, true);
          if (!h) return h.status();
          return c.cont_close(h->pool.pool.id, h->cookie);
        },
        mgmt);
    if (!p) return fail(p.status());
    out["open_close"] = pass_json(*p, a.opens);
  }
  if (a.queries > 0) {
    auto p = run_pass(
        a.queries, a.threads,
        [&](MgmtClient& c, int, int i) {
          return c.cont_query(a.pool, fmt::format("m{}", i % std::max(1, a.containers))).status();
        },
        mgmt);
    if (!p) return fail(p.status());
    out["queries"] = pass_json(*p, a.queries);
  }
  if (a.pool_queries > 0) {
    auto p = run_pass(
        a.pool_queries, a.threads,
        [&](MgmtClient& c, int, int) { return c.pool_query(a.pool).status(); }, mgmt);
    if (!p) return fail(p.status());
    out["pool_queries"] = pass_json(*p, a.pool_queries);
  }
  out["containers"] = a.containers;
  if (as_json) {
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  for (const char* k : {"creates", "open_close", "queries", "pool_queries"}) {
    if (!out.contains(k)) continue;
    std::printf("%-12s %8.0f /s  p50 %8.0f us  p99 %8.0f us  (%d)\n", k,
                out[k]["per_s"].get<double>(), out[k]["p50_us"].get<double>(),
                out[k]["p99_us"].get<double>(), out[k]["count"].get<int>());
  }
  return 0;
}

}  // namespace tessera

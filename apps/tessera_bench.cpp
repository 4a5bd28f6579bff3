// tessera-bench: load generator against a running engine, through the full client stack.
//   rtt: ping round trips through a target's object service (latency p50/p99 at queue depth 1,
//        then throughput with a window of requests in flight), payload sizes 8 B .. 1 MiB.
//   io:  update then fetch of fixed-size single values at a queue depth (MiB/s, IOPS).
//   cont: updates of fixed-size single values in a container of a system pool (replicated or
//        erasure-coded: each one a distributed transaction), latency at queue depth 1, then the
//        rate at a queue depth. -e names the management service.
//   load: updates in a container at a queue depth for a fixed time, the rate of each interval
//        printed as it ends (a foreground load beside other work: perf/rebuild.sh).
// Prints a table, or JSON with --json. perf/*.sh run it beside the physical baselines.
#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <atomic>
#include <deque>
#include <mutex>
#include <thread>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "apps/bench_load.hpp"
#include "apps/bench_mgmt.hpp"
#include "client/client.hpp"
#include "client/container.hpp"
#include "core/config.hpp"

using namespace tessera;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

double us_since(Clock::time_point t) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t).count();
}

double pct(std::vector<double>& v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

int die(const Status& st) {
  std::fprintf(stderr, "tessera-bench: %s\n", st.to_string().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tessera-bench: measure a running Tessera engine"};
  std::string engine = "127.0.0.1:10001";
  bool as_json = false;
  app.add_option("-e,--engine", engine, "engine control address")->capture_default_str();
  app.add_flag("-j,--json", as_json, "JSON output");
  app.require_subcommand(1);

  auto* rtt = app.add_subcommand("rtt", "ping round trips through the actor stack");
  std::string sizes = "8,64,512,4K,64K,1M";
  int iters = 2000, window = 16;
  rtt->add_option("--sizes", sizes, "payload sizes")->capture_default_str();
  rtt->add_option("--iters", iters, "round trips per size (latency)")->capture_default_str();
  rtt->add_option("--window", window, "requests in flight for the throughput pass")
      ->capture_default_str();

  auto* io = app.add_subcommand("io", "update then fetch fixed-size values");
  std::string bs = "1M", total = "1G";
  int qd = 4;
  bool random_fetch = false;
  io->add_option("--bs", bs, "value size")->capture_default_str();
  io->add_option("--total", total, "bytes to write (and read)")->capture_default_str();
  io->add_option("--qd", qd, "requests in flight")->capture_default_str();
  io->add_flag("--random", random_fetch, "fetch in random order");
  auto* cont = app.add_subcommand("cont", "updates in a container of a system pool");
  std::string pool_name = "tank", cont_name = "c", cbs = "4K";
  int citers = 2000, ccount = 20000, cqd = 32;
  cont->add_option("--pool", pool_name, "pool label")->capture_default_str();
  cont->add_option("--cont", cont_name, "container label")->capture_default_str();
  cont->add_option("--bs", cbs, "value size")->capture_default_str();
  cont->add_option("--iters", citers, "updates for the latency pass (queue depth 1)")
      ->capture_default_str();
  cont->add_option("--count", ccount, "updates for the rate pass")->capture_default_str();
  cont->add_option("--qd", cqd, "updates in flight for the rate pass")->capture_default_str();
  int tx_keys = 0, tx_threads = 8, tx_count = 2000;
  cont->add_option("--tx-keys", tx_keys,
                   "then commit transactions that each update this many keys (0: none)")
      ->capture_default_str();
  cont->add_option("--tx-threads", tx_threads, "transactions in flight (one thread each)")
      ->capture_default_str();
  cont->add_option("--tx-count", tx_count, "transactions for the rate pass")
      ->capture_default_str();
  auto* mg = app.add_subcommand(
      "mgmt",
      "management service rates: container creates, opens (+ close), container and pool queries");
  MgmtBenchArgs ma;
  mg->add_option("--pool", ma.pool, "pool label (must exist)")->capture_default_str();
  mg->add_option("--containers", ma.containers,
                 "containers m0.. the pool holds (those missing are created and timed)")
      ->capture_default_str();
  mg->add_option("--opens", ma.opens, "container open + close pairs")->capture_default_str();
  mg->add_option("--queries", ma.queries, "container queries")->capture_default_str();
  mg->add_option("--pool-queries", ma.pool_queries,
                 "pool queries (each answer lists every container of the pool)")
      ->capture_default_str();
  mg->add_option("--threads", ma.threads, "client threads")->capture_default_str();
  auto* ld = app.add_subcommand(
      "load", "updates in a container for a fixed time, printing the rate of each interval");
  LoadBenchArgs la;
  ld->add_option("--pool", la.pool, "pool label")->capture_default_str();
  ld->add_option("--cont", la.cont, "container label")->capture_default_str();
  ld->add_option("--bs", la.bs, "value size (each update an object of its own)")
      ->capture_default_str();
  ld->add_option("--qd", la.qd, "updates in flight")->capture_default_str();
  ld->add_option("--seconds", la.seconds, "how long the load runs")->capture_default_str();
  ld->add_option("--interval-ms", la.interval_ms,
                 "one line per interval: Unix time (ms) at its end, MiB/s in it")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (mg->parsed()) return bench_mgmt(engine, ma, as_json);

  ClientOptions co;
  co.engine = engine;
  if (ld->parsed()) return bench_load(co, la);
  if (cont->parsed()) {
    auto sys = Client::connect_system(co);
    if (!sys) return die(sys.status());
    auto k = (*sys)->open_container(pool_name, cont_name, true);
    if (!k) return die(k.status());
    auto sz = parse_size(cbs);
    if (!sz) return die(sz.status());
    Buffer value(*sz);
    std::memset(value.data(), 0x6b, value.size());
    auto oid = (*k)->make_oid(7, 7);
    if (!oid) return die(oid.status());
    uint64_t n = 0;
    auto key = [&n] { return fmt::format("k{}", n++); };
    for (int i = 0; i < 100; ++i) {  // warm-up
      auto r = (*k)->update_async(*oid, key(), "a", ValueKind::single, 0, value.clone()).get();
      if (!r) return die(r.status());
    }
    std::vector<double> lat;
    for (int i = 0; i < citers; ++i) {
      auto t = Clock::now();
      auto r = (*k)->update_async(*oid, key(), "a", ValueKind::single, 0, value.clone()).get();
      lat.push_back(us_since(t));
      if (!r) return die(r.status());
    }
    double mean = 0;
    for (double v : lat) mean += v;
    mean /= static_cast<double>(lat.size());
    const double p50 = pct(lat, 0.5), p99 = pct(lat, 0.99);
    std::deque<Container::Future<uint64_t>> fl;
    auto t0 = Clock::now();
    for (int i = 0; i < ccount; ++i) {
      fl.push_back((*k)->update_async(*oid, key(), "a", ValueKind::single, 0, value.clone()));
      if (static_cast<int>(fl.size()) >= cqd) {
        auto r = fl.front().get();
        if (!r) return die(r.status());
        fl.pop_front();
      }
    }
    for (auto& f : fl) {
      auto r = f.get();
      if (!r) return die(r.status());
    }
    const double rate = ccount / (us_since(t0) / 1e6);
    json o = {{"bs", *sz}, {"p50_us", p50}, {"p99_us", p99},   {"mean_us", mean},
              {"qd", cqd}, {"iops", rate},  {"count", ccount}, {"iters", citers}};
    json out = {{"cont", o}};
    if (tx_keys > 0) {
      // Transactions of `tx_keys` updates each (blind writes to keys no other transaction
      // touches: no conflicts), one at a time for the latency, then `tx_threads` at once.
      std::atomic<uint64_t> next{0};
      auto one = [&](int thread) -> Status {
        auto tx = (*k)->tx_open();
        if (!tx) return tx.status();
        const uint64_t base = next++;
        for (int i = 0; i < tx_keys; ++i) {
          TESSERA_TRY((*tx)->update(*oid, fmt::format("t{}-{}-{}", thread, base, i), "a",
                                    ValueKind::single, 0, value.span()));
        }
        return (*tx)->commit().status();
      };
      std::vector<double> tlat;
      for (int i = 0; i < std::max(50, tx_count / 20); ++i) {
        auto t = Clock::now();
        if (Status st = one(0); !st.is_ok()) return die(st);
        tlat.push_back(us_since(t));
      }
      const double tp50 = pct(tlat, 0.5);
      std::atomic<int> left{tx_count};
      Status failed;
      std::mutex mu;
      std::vector<std::thread> th;
      auto t1 = Clock::now();
      for (int w = 0; w < tx_threads; ++w) {
        th.emplace_back([&, w] {
          while (left-- > 0) {
            Status st = one(w + 1);
            if (!st.is_ok()) {
              std::lock_guard g(mu);
              failed = st;
              return;
            }
          }
        });
      }
      for (auto& t : th) t.join();
      if (!failed.is_ok()) return die(failed);
      const double tx_rate = tx_count / (us_since(t1) / 1e6);
      out["tx"] = {{"keys", tx_keys},       {"threads", tx_threads},
                   {"count", tx_count},     {"p50_us", tp50},
                   {"tx_per_s", tx_rate},   {"keys_per_s", tx_rate * tx_keys}};
    }
    if (as_json) {
      std::printf("%s\n", out.dump(2).c_str());
    } else {
      std::printf("%s updates: QD1 p50 %.1f us p99 %.1f us mean %.1f us; QD%d %.0f updates/s\n",
                  cbs.c_str(), p50, p99, mean, cqd, rate);
      if (out.contains("tx")) {
        const json& t = out["tx"];
        std::printf("transactions of %d updates: one at a time p50 %.1f us; %d at once %.0f/s "
                    "(%.0f updates/s)\n",
                    tx_keys, t["p50_us"].get<double>(), tx_threads, t["tx_per_s"].get<double>(),
                    t["keys_per_s"].get<double>());
      }
    }
    return 0;
  }
  auto cr = Client::connect(co);
  if (!cr) return die(cr.status());
  Client& c = **cr;
  json out;
  out["engine"] = engine;
  out["provider"] = c.system().provider;

  if (rtt->parsed()) {
    out["rtt"] = json::array();
    if (!as_json) {
      std::printf("%-9s %10s %10s %10s %12s\n", "size", "p50_us", "p99_us", "mean_us",
                  "window_MBps");
    }
    std::stringstream ss(sizes);
    std::string item;
    while (std::getline(ss, item, ',')) {
      auto sz = parse_size(item);
      if (!sz) return die(sz.status());
      Buffer payload(*sz);
      std::memset(payload.data(), 0x5a, payload.size());
      int n = *sz >= (1u << 20) ? std::max(200, iters / 10) : iters;
      for (int i = 0; i < 50; ++i) (void)c.ping_async(0, payload.clone()).get();  // warm-up
      std::vector<double> lat;
      lat.reserve(n);
      for (int i = 0; i < n; ++i) {
        auto t = Clock::now();
        auto r = c.ping_async(0, payload.clone()).get();
        lat.push_back(us_since(t));
        if (!r) return die(r.status());
        if (r->size() != *sz) return die(Status(Errc::protocol, "echo size mismatch"));
      }
      double mean = 0;
      for (double v : lat) mean += v;
      mean /= static_cast<double>(lat.size());
      double p50 = pct(lat, 0.50), p99 = pct(lat, 0.99);
      // Throughput: keep `window` pings in flight.
      std::deque<Client::Future<Buffer>> fl;
      auto t0 = Clock::now();
      for (int i = 0; i < n; ++i) {
        fl.push_back(c.ping_async(0, payload.clone()));
        if (static_cast<int>(fl.size()) >= window) {
          (void)fl.front().get();
          fl.pop_front();
        }
      }
      for (auto& f : fl) (void)f.get();
      double secs = us_since(t0) / 1e6;
      double mbps = 2.0 * static_cast<double>(*sz) * n / secs / 1e6;  // both directions
      out["rtt"].push_back({{"size", *sz},
                            {"p50_us", p50},
                            {"p99_us", p99},
                            {"mean_us", mean},
                            {"window_MBps", mbps},
                            {"iters", n}});
      if (!as_json)
        std::printf("%-9s %10.1f %10.1f %10.1f %12.1f\n", item.c_str(), p50, p99, mean, mbps);
    }
  }

  if (io->parsed()) {
    auto bsz = parse_size(bs);
    auto tot = parse_size(total);
    if (!bsz || !tot) return die(Status(Errc::invalid_argument, "bad --bs or --total"));
    uint64_t count = std::max<uint64_t>(1, *tot / *bsz);
    Buffer value(*bsz);
    std::mt19937_64 rng(1);
    for (size_t i = 0; i + 8 <= value.size(); i += 8) {
      uint64_t x = rng();
      std::memcpy(value.data() + i, &x, 8);
    }
    auto key = [](uint64_t i) { return ObjectId{0xBE4C, i}; };
    std::deque<Client::Future<uint64_t>> up;
    auto t0 = Clock::now();
    for (uint64_t i = 0; i < count; ++i) {
      up.push_back(c.update_async(key(i), "d", "a", ValueKind::single, 0, value.clone()));
      if (static_cast<int>(up.size()) >= qd) {
        auto r = up.front().get();
        if (!r) return die(r.status());
        up.pop_front();
      }
    }
    for (auto& f : up) {
      auto r = f.get();
      if (!r) return die(r.status());
    }
    double wsecs = us_since(t0) / 1e6;
    std::vector<uint64_t> order(count);
    for (uint64_t i = 0; i < count; ++i) order[i] = i;
    if (random_fetch) std::shuffle(order.begin(), order.end(), rng);
    std::deque<Client::Future<FetchResult>> rd;
    auto t1 = Clock::now();
    for (uint64_t i : order) {
      rd.push_back(c.fetch_async(key(i), "d", "a", ValueKind::single));
      if (static_cast<int>(rd.size()) >= qd) {
        auto r = rd.front().get();
        if (!r) return die(r.status());
        if (r->data.size() != *bsz) return die(Status(Errc::protocol, "short fetch"));
        rd.pop_front();
      }
    }
    for (auto& f : rd) {
      auto r = f.get();
      if (!r) return die(r.status());
    }
    double rsecs = us_since(t1) / 1e6;
    double bytes = static_cast<double>(count * *bsz);
    out["io"] = {{"bs", *bsz},
                 {"count", count},
                 {"qd", qd},
                 {"update_MiBps", bytes / wsecs / (1 << 20)},
                 {"update_iops", count / wsecs},
                 {"fetch_MiBps", bytes / rsecs / (1 << 20)},
                 {"fetch_iops", count / rsecs}};
    if (!as_json) {
      std::printf(
          "bs %s qd %d count %lu: update %.1f MiB/s (%.0f IOPS), fetch %.1f MiB/s (%.0f IOPS)\n",
          bs.c_str(), qd, static_cast<unsigned long>(count), bytes / wsecs / (1 << 20),
          count / wsecs, bytes / rsecs / (1 << 20), count / rsecs);
    }
  }
  if (as_json) std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

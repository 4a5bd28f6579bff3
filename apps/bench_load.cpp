// tessera-bench load: updates of fixed-size single values, each in an object of its own (so
// they spread over every group of the container), at a queue depth, for a fixed time; the rate
// of each interval is printed as it ends, so a script can read the rate before, during and after
// something it does to the system meanwhile (perf/rebuild.sh: a rebuild).
#include "apps/bench_load.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>

#include "client/container.hpp"
#include "core/config.hpp"

namespace tessera {

namespace {
using Clock = std::chrono::steady_clock;

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

int bench_load(const ClientOptions& co, const LoadBenchArgs& a) {
  auto fail = [](const Status& st) {
    std::fprintf(stderr, "tessera-bench: %s\n", st.to_string().c_str());
    return 1;
  };
  auto bs = parse_size(a.bs);
  if (!bs) return fail(bs.status());
  if (a.qd < 1 || a.interval_ms < 1 || a.seconds <= 0) {
    return fail(Status(Errc::invalid_argument, "--qd, --interval-ms and --seconds must be > 0"));
  }
  auto sys = Client::connect_system(co);
  if (!sys) return fail(sys.status());
  auto k = (*sys)->open_container(a.pool, a.cont, true);
  if (!k) return fail(k.status());
  Buffer value(*bs);
  std::memset(value.data(), 0x5a, value.size());
  std::deque<Client::Future<uint64_t>> inflight;
  uint64_t next = 0, failed = 0, done = 0, in_interval = 0;
  const auto t0 = Clock::now();
  const auto end = t0 + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(a.seconds));
  const auto step = std::chrono::milliseconds(a.interval_ms);
  auto tick = t0 + step;
  auto report = [&](Clock::time_point now) {
    while (now >= tick) {
      const double secs = std::chrono::duration<double>(step).count();
      std::printf("%lld %.1f\n", static_cast<long long>(unix_ms()),
                  static_cast<double>(in_interval * *bs) / secs / (1 << 20));
      std::fflush(stdout);
      in_interval = 0;
      tick += step;
    }
  };
  while (Clock::now() < end || !inflight.empty()) {
    while (Clock::now() < end && static_cast<int>(inflight.size()) < a.qd) {
      auto oid = (*k)->make_oid(0xB00C, next++);
      if (!oid) return fail(oid.status());
      inflight.push_back((*k)->update_async(*oid, "d", "a", ValueKind::single, 0, value.clone()));
    }
    auto r = inflight.front().get();
    inflight.pop_front();
    if (!r) {
      ++failed;
      std::fprintf(stderr, "tessera-bench: load: an update failed: %s\n",
                   r.status().to_string().c_str());
    } else {
      ++done;
      ++in_interval;
    }
    report(Clock::now());
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("# %llu updates of %s in %.1f s = %.1f MiB/s, qd %d, %llu failed\n",
              static_cast<unsigned long long>(done), a.bs.c_str(), secs,
              static_cast<double>(done * *bs) / secs / (1 << 20), a.qd,
              static_cast<unsigned long long>(failed));
  return failed == 0 ? 0 : 1;
}

}  // namespace tessera

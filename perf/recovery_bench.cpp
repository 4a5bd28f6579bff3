// recovery_bench: how long a target takes to come back after kill -9.
//
// A child process opens a store (io_uring, one pinned target), writes `data` bytes as 1 MiB
// values and `keys` small (64-byte) values from many fibers, tells the parent it is done, and
// keeps running; the parent kill -9s it, then opens the same file and times TargetStore::open
// (load the newest checkpoint + replay the log tail + rebuild the allocator), then checks a
// sample of keys. Usage: recovery_bench PATH [data=1G] [keys=1000000]
#include <isa-l/crc.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/fiber/future.hpp>
#include <chrono>
#include <cstdio>
#include <future>

#include "core/config.hpp"
#include "core/target.hpp"
#include "storage/store.hpp"

using namespace tessera;
using namespace tessera::storage;
using Clock = std::chrono::steady_clock;

namespace {

Result<std::unique_ptr<TargetStore>> open_store(Target& t, const std::string& path, uint64_t size) {
  BlockQueueOptions qo;
  qo.backend = "uring";
  qo.path = path;
  qo.size = size;
  auto q = open_block_queue(qo);
  if (!q) return q.status();
  StoreOptions so;
  so.aggregation_interval = std::chrono::milliseconds(0);
  return TargetStore::open(t, std::move(*q), so);
}

std::string small_value(uint64_t i) {
  std::string v(64, '\0');
  for (size_t k = 0; k < v.size(); k += 8) {
    uint64_t x = i * 0x9e3779b97f4a7c15ULL + k;
    std::memcpy(v.data() + k, &x, 8);
  }
  return v;
}

int child(const std::string& path, uint64_t size, uint64_t data, uint64_t keys, int ready_fd) {
  TargetOptions to;
  to.cpu = 0;
  Target t(RealEnv::instance(), to);
  if (!t.start().is_ok()) return 1;
  t.post([&] {
    auto s = open_store(t, path, size);
    if (!s) {
      std::fprintf(stderr, "%s\n", s.status().to_string().c_str());
      std::exit(1);
    }
    TargetStore& st = **s;
    auto fill = [&](uint64_t count, int qd, auto one) {
      uint64_t next = 0;
      int live = qd;
      boost::fibers::promise<void> all;
      for (int f = 0; f < qd; ++f) {
        t.spawn([&] {
          while (next < count) one(next++);
          if (--live == 0) all.set_value();
        });
      }
      all.get_future().get();
    };
    Buffer big(1u << 20);
    std::memset(big.data(), 0x5a, big.size());
    uint32_t big_crc = crc32_iscsi(big.data(), static_cast<int>(big.size()), 0);
    auto t0 = Clock::now();
    fill(data >> 20, 4, [&](uint64_t i) {
      auto r = st.update({1, i}, "d", "a", ValueKind::single, 0, big.span(), big_crc);
      if (!r) std::fprintf(stderr, "%s\n", r.status().to_string().c_str());
    });
    auto t1 = Clock::now();
    fill(keys, 256, [&](uint64_t i) {
      std::string v = small_value(i);
      auto r = st.update({2, i / 1000}, std::to_string(i % 1000), "a", ValueKind::single, 0,
                         {reinterpret_cast<const uint8_t*>(v.data()), v.size()},
                         crc32_iscsi(reinterpret_cast<unsigned char*>(v.data()), 64, 0));
      if (!r) std::fprintf(stderr, "%s\n", r.status().to_string().c_str());
    });
    auto t2 = Clock::now();
    auto s2 = st.stats();
    std::printf(
        "loaded %lu MiB in %.1f s and %lu small keys in %.1f s (%.0f/s); %lu checkpoints, "
        "log %lu MiB used\n",
        static_cast<unsigned long>(data >> 20), std::chrono::duration<double>(t1 - t0).count(),
        static_cast<unsigned long>(keys), std::chrono::duration<double>(t2 - t1).count(),
        static_cast<double>(keys) / std::chrono::duration<double>(t2 - t1).count(),
        static_cast<unsigned long>(s2.checkpoints), static_cast<unsigned long>(s2.wal_used >> 20));
    std::fflush(stdout);
    char c = 1;
    if (::write(ready_fd, &c, 1) != 1) std::exit(1);
    // Wait here to be killed, with the store live (nothing flushed or closed).
    boost::fibers::promise<void> never;
    never.get_future().get();
  });
  ::pause();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: recovery_bench PATH [data=1G] [keys=1000000]\n");
    return 2;
  }
  std::string path = argv[1];
  uint64_t data = *parse_size(argc > 2 ? argv[2] : "1G");
  uint64_t keys = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1000000;
  uint64_t size = data + data / 2 + (1ull << 30);
  int fds[2];
  if (::pipe(fds) != 0) return 1;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    return child(path, size, data, keys, fds[1]);
  }
  ::close(fds[1]);
  char c;
  if (::read(fds[0], &c, 1) != 1) {
    std::fprintf(stderr, "the loading child died\n");
    return 1;
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  std::printf("child killed with SIGKILL\n");

  TargetOptions to;
  to.cpu = 0;
  Target t(RealEnv::instance(), to);
  if (!t.start().is_ok()) return 1;
  std::promise<int> done;
  t.post([&] {
    auto t0 = Clock::now();
    auto s = open_store(t, path, size);
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (!s) {
      std::fprintf(stderr, "%s\n", s.status().to_string().c_str());
      return done.set_value(1);
    }
    auto st = (*s)->stats();
    uint64_t bad = 0;
    for (uint64_t i = 0; i < keys; i += 997) {
      auto r =
          (*s)->fetch({2, i / 1000}, std::to_string(i % 1000), "a", ValueKind::single, 0, 0, 0);
      if (!r || r->data.view() != small_value(i)) ++bad;
    }
    std::printf(
        "recovery after kill -9: %.0f ms (open to serving) for %lu objects, %lu versions, "
        "%lu MiB of data; sampled keys wrong: %lu\n",
        ms, static_cast<unsigned long>(st.objects), static_cast<unsigned long>(st.versions),
        static_cast<unsigned long>(st.used >> 20), static_cast<unsigned long>(bad));
    (*s)->close();
    s->reset();
    done.set_value(bad == 0 ? 0 : 1);
  });
  int rc = done.get_future().get();
  t.stop();
  std::remove(path.c_str());
  return rc;
}

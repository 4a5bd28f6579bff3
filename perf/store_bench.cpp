// store_bench: the per-target store alone (no network): update then fetch fixed-size values
// from `qd` fibers on one pinned target. Usage: store_bench PATH [bs] [total] [qd] [backend]
// [dtx]. With `dtx`, each update is also made the way a replica makes it (docs/TRANSACTIONS.md):
// staged, logged as a prepared transaction of one participant and committed, after the plain
// updates in the same run: what the transaction protocol costs the store.
#include <isa-l/crc.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <random>

#include "core/config.hpp"
#include "core/target.hpp"
#include "storage/store.hpp"

using namespace tessera;
using namespace tessera::storage;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: store_bench PATH [bs=1M] [total=1G] [qd=4] [backend=uring] [dtx]\n");
    return 2;
  }
  std::string path = argv[1];
  uint64_t bs = *parse_size(argc > 2 ? argv[2] : "1M");
  uint64_t total = *parse_size(argc > 3 ? argv[3] : "1G");
  int qd = argc > 4 ? std::atoi(argv[4]) : 4;
  std::string backend = argc > 5 ? argv[5] : "uring";
  const bool with_dtx = argc > 6 && std::string(argv[6]) == "dtx";
  TargetOptions to;
  to.cpu = 0;
  Target t(RealEnv::instance(), to);
  if (!t.start().is_ok()) return 1;
  std::promise<int> done;
  t.post([&] {
    BlockQueueOptions qo;
    qo.backend = backend;
    qo.path = path;
    // With `dtx`, four more passes of updates to new objects (two plain, two transactional).
    const uint64_t data = with_dtx ? 5 * total : total;
    qo.size = data + data / 4 + (256ull << 20);
    auto q = open_block_queue(qo);
    if (!q) {
      std::fprintf(stderr, "%s\n", q.status().to_string().c_str());
      return done.set_value(1);
    }
    StoreOptions so;
    so.wal_bytes = 128ull << 20;
    auto s = TargetStore::open(t, std::move(*q), so);
    if (!s) {
      std::fprintf(stderr, "%s\n", s.status().to_string().c_str());
      return done.set_value(1);
    }
    TargetStore& st = **s;
    Buffer value(bs);
    std::mt19937_64 rng(1);
    for (size_t i = 0; i + 8 <= bs; i += 8) {
      uint64_t x = rng();
      std::memcpy(value.data() + i, &x, 8);
    }
    uint32_t crc = crc32_iscsi(value.data(), static_cast<int>(bs), 0);
    uint64_t count = total / bs;
    // Prepared and committed: the change is staged, logged as a prepare record, then applied;
    // its commit is logged with the next log group.
    auto dtx_update = [&](ObjectId oid) -> Status {
      DtxStage stage;
      UpdateOptions uo;
      uo.stage = &stage;
      auto e = st.update(oid, "d", "a", ValueKind::single, 0, value.span(), crc, uo);
      if (!e) {
        st.dtx_discard(stage);
        return e.status();
      }
      const DtxId id{*e, dtx_member(0, 0)};
      if (Status p = st.dtx_prepare(id, {id.leader}, std::move(stage)); !p.is_ok()) return p;
      return st.dtx_commit(id);
    };
    auto run = [&](bool write, bool dtx, uint64_t hi, uint64_t base) {
      uint64_t next = 0;
      int live = qd;
      boost::fibers::promise<void> all;
      const auto s0 = st.stats();
      auto t0 = Clock::now();
      for (int f = 0; f < qd; ++f) {
        t.spawn([&] {
          while (true) {
            uint64_t i = next++;
            if (i >= count) break;
            if (write && dtx) {
              Status r = dtx_update({hi, base + i});
              if (!r.is_ok()) std::fprintf(stderr, "%s\n", r.to_string().c_str());
            } else if (write) {
              auto r = st.update({hi, base + i}, "d", "a", ValueKind::single, 0, value.span(), crc);
              if (!r) std::fprintf(stderr, "%s\n", r.status().to_string().c_str());
            } else {
              auto r = st.fetch({1, (i * 7919) % count}, "d", "a", ValueKind::single, 0, 0, 0);
              if (!r) std::fprintf(stderr, "%s\n", r.status().to_string().c_str());
            }
          }
          if (--live == 0) all.set_value();
        });
      }
      all.get_future().get();
      double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      std::printf("store %s bs %lu qd %d: %.1f MiB/s, %.0f IOPS\n",
                  dtx ? "dtx-update" : write ? "update" : "fetch ",
                  static_cast<unsigned long>(bs), qd,
                  static_cast<double>(count * bs) / secs / (1 << 20),
                  static_cast<double>(count) / secs);
      // What the pass wrote to the log, per update: the log's fill decides how often the index
      // is checkpointed.
      const auto s1 = st.stats();
      if (write) {
        std::printf("  log: %.1f bytes and %.2f groups per update, %lu checkpoints\n",
                    static_cast<double>(s1.wal_bytes - s0.wal_bytes) / static_cast<double>(count),
                    static_cast<double>(s1.wal_groups - s0.wal_groups) / static_cast<double>(count),
                    static_cast<unsigned long>(s1.checkpoints - s0.checkpoints));
      }
    };
    run(true, false, 1, 0);
    run(false, false, 1, 0);
    if (with_dtx) {
      // Plain and transactional updates of new objects, alternated, so that both meet the same
      // store (index size, log fill, checkpoints).
      for (int round = 0; round < 2; ++round) {
        const uint64_t base = static_cast<uint64_t>(round) * count;
        run(true, false, 2, base);
        run(true, true, 3, base);
      }
    }
    st.close();
    s->reset();
    done.set_value(0);
  });
  int rc = done.get_future().get();
  t.stop();
  std::remove(path.c_str());
  return rc;
}

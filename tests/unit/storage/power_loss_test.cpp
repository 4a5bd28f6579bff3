// Seeded sequences of crashes of one store: fibers update keys while the store checkpoints and
// its small log wraps; at a moment the seed draws (after an acknowledgement, or as a write or
// sync reaches the device) the device dies, either as kill -9 (every completed write stays) or
// as a power loss (what the last sync made durable stays, and of each
// block written since, the old or the new contents: storage::MemoryDisk). The next open recovers
// from what is left, is checked, and takes more updates and the next crash.
//
// Model: every update acknowledged before the crash must read back after it, or a value written
// later (an update in flight may land or not). A failure names its seed and round;
// TESSERA_POWER_SEEDS=N runs N seeds.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "core/checksum.hpp"
#include "core/no_lock.hpp"
#include "storage/block_queue.hpp"
#include "storage/store.hpp"
#include "storage/store_internal.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using namespace tessera::storage;
using tessera::testing::run_on;

namespace {

constexpr uint64_t kDisk = 32ull << 20;
constexpr int kKeys = 24;
constexpr int kFibers = 6;

std::string key_name(int k) {
  return fmt::format("k{}", k);
}

// A store on `disk` with a small log (256 blocks: it wraps within a round) and no background
// aggregation; checkpoints every `ckpt` (0: only under log pressure or when asked).
Result<std::unique_ptr<TargetStore>> open_on(Target& t, std::shared_ptr<MemoryDisk> disk,
                                             std::string name, std::chrono::milliseconds ckpt) {
  BlockQueueOptions qo;
  qo.backend = "memory";
  qo.size = disk->image.size();
  qo.disk = std::move(disk);
  auto q = open_block_queue(qo);
  if (!q) return q.status();
  StoreOptions so;
  so.name = std::move(name);
  so.wal_bytes = 256 * 4096;
  so.zero_fill = false;
  so.checkpoint_interval = ckpt;
  so.aggregation_interval = std::chrono::milliseconds(0);
  return TargetStore::open(t, std::move(*q), so);
}

struct KeyModel {
  std::vector<std::string> written;  // every value ever sent, in order
  size_t acked = 0;                  // written[0, acked) includes the newest acknowledged
  bool any_acked = false;
};

class PowerLossRun {
 public:
  explicit PowerLossRun(uint64_t seed) : seed_(seed), rng_(seed) {}

  void run(int rounds) {
    auto disk = std::make_shared<MemoryDisk>(kDisk);
    for (int round = 0; round < rounds && !::testing::Test::HasFailure(); ++round) {
      Target t(RealEnv::instance(), TargetOptions{});
      ASSERT_TRUE(t.start().is_ok());
      std::shared_ptr<MemoryDisk> next;
      Status st = run_on(t, [&]() -> Status { return one_round(t, disk, next, round); });
      t.stop();
      ASSERT_TRUE(st.is_ok()) << fmt::format("seed {} round {}: {}", seed_, round, st.to_string());
      ASSERT_TRUE(next) << "no crash";
      disk = next;
    }
  }

 private:
  Status one_round(Target& t, const std::shared_ptr<MemoryDisk>& disk,
                   std::shared_ptr<MemoryDisk>& next, int round) {
    auto opened = open_on(t, disk, fmt::format("seed {} round {}", seed_, round),
                          std::chrono::milliseconds(rng_() % 2 == 0 ? 0 : 5));
    if (!opened) return opened.status();
    TargetStore& store = **opened;
    // What the crash left: every acknowledged value, or one written after it.
    for (int k = 0; k < kKeys; ++k) {
      const KeyModel& m = model_[k];
      if (!m.any_acked) continue;
      auto r = store.fetch(ObjectId{1, 1}, "d", key_name(k), ValueKind::single, 0, 0, 0);
      if (!r) return r.status();
      const std::string got(reinterpret_cast<const char*>(r->data.data()), r->data.size());
      bool ok = false;
      for (size_t i = m.acked - 1; i < m.written.size(); ++i) ok |= m.written[i] == got;
      EXPECT_TRUE(ok) << fmt::format(
          "seed {} round {}: key {} reads \"{}\"; acknowledged \"{}\" ({} values written)", seed_,
          round, k, got, m.written[m.acked - 1], m.written.size());
    }
    // Updates from several fibers until the device dies: after a number of acknowledgements
    // the seed draws, or as a number of writes and syncs it draws reaches the device (so also
    // between a write and the sync that makes it durable, wherever the store issues them).
    const bool at_io = rng_() % 2 == 0;
    const int die_after = static_cast<int>(1 + rng_() % (at_io ? 1500 : 400));
    const bool power = rng_() % 2 == 0;
    int acks = 0, ios = 0;
    bool dead = false;
    if (at_io) {
      disk->before_write_or_sync = [&](IoOp, uint64_t) {
        if (!dead && ++ios == die_after) {
          dead = true;
          next = disk->after_crash(power, rng_);
        }
      };
    }
    int running = kFibers;
    boost::fibers::condition_variable_any done_cv;
    for (int f = 0; f < kFibers; ++f) {
      const uint64_t fseed = rng_();
      t.spawn([&, fseed, f] {
        std::mt19937_64 r(fseed);
        for (int i = 0; !dead && i < 1000; ++i) {
          const int k = static_cast<int>(r() % kKeys);
          // Small values stay in the index; large ones go to the data region.
          const size_t len = r() % 8 == 0 ? 5000 + r() % 9000 : 8 + r() % 40;
          std::string v = fmt::format("r{}f{}i{}:", round, f, i);
          v.resize(len, static_cast<char>('a' + r() % 26));
          KeyModel& m = model_[k];
          m.written.push_back(v);
          const size_t idx = m.written.size();
          std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(v.data()), v.size());
          auto u = store.update(ObjectId{1, 1}, "d", key_name(k), ValueKind::single, 0, bytes,
                                crc32c(bytes));
          if (dead) break;  // acknowledged after the device died: it counts for nothing
          EXPECT_TRUE(u.is_ok()) << u.status().to_string();
          if (!u) break;
          m.acked = std::max(m.acked, idx);
          m.any_acked = true;
          if (!at_io && ++acks == die_after) {
            dead = true;
            next = disk->after_crash(power, rng_);
          }
        }
        if (--running == 0) done_cv.notify_all();
      });
    }
    NoLock nl;
    done_cv.wait(nl, [&] { return running == 0; });
    if (!next) next = disk->after_crash(power, rng_);  // every fiber finished first
    store.close();
    disk->before_write_or_sync = nullptr;
    return Status();
  }

  uint64_t seed_;
  std::mt19937_64 rng_;
  std::map<int, KeyModel> model_;
};

}  // namespace

TEST(PowerLoss, AcknowledgedUpdatesSurviveKillsAndPowerLossesInAnyOrder) {
  const char* env = std::getenv("TESSERA_POWER_SEEDS");
  const int seeds = env != nullptr ? std::atoi(env) : 6;
  for (int s = 1; s <= seeds && !HasFailure(); ++s) {
    PowerLossRun run(static_cast<uint64_t>(s) * 7919);
    run.run(10);
  }
}

namespace {

// One seed of the checkpoint-window test below: returns the power-loss images taken at the
// drawn moment and, per key, the values written and how many were acknowledged then.
constexpr uint64_t kWindowDisk = 4ull << 20;

struct WindowCrash {
  std::vector<std::shared_ptr<MemoryDisk>> images;
  std::map<int, KeyModel> model;
};

WindowCrash crash_after_a_checkpoint_header(uint64_t seed) {
  std::mt19937_64 rng(seed);
  WindowCrash out;
  auto disk = std::make_shared<MemoryDisk>(kWindowDisk);
  Target t(RealEnv::instance(), TargetOptions{});
  EXPECT_TRUE(t.start().is_ok());
  Status st = run_on(t, [&]() -> Status {
    auto opened = open_on(t, disk, fmt::format("seed {}", seed), std::chrono::milliseconds(0));
    if (!opened) return opened.status();
    TargetStore& store = **opened;
    // The device dies as the `after`-th write or sync following the `nth` checkpoint header
    // write reaches it: 1 is that header's own sync.
    const int nth = static_cast<int>(1 + rng() % 4), after = static_cast<int>(1 + rng() % 3);
    int headers = 0, events = 0;
    bool armed = false, dead = false;
    disk->before_write_or_sync = [&](IoOp op, uint64_t off) {
      if (dead) return;
      if (armed && ++events == after) {
        dead = true;
        for (int i = 0; i < 6; ++i) out.images.push_back(disk->after_crash(true, rng));
        return;
      }
      const bool header =
          op == IoOp::write && (off == detail::kCkptSlot0 || off == detail::kCkptSlot0 + 4096);
      if (header && ++headers == nth) armed = true;
    };
    auto work = [&]() -> Status {
      for (int i = 0; !dead && i < 2000; ++i) {
        const int k = i % 12;
        // Values in the data region: they take the extents an earlier checkpoint gave back.
        std::string v = fmt::format("s{}i{}:", seed, i);
        v.resize(4096 + rng() % 9000, static_cast<char>('a' + rng() % 26));
        KeyModel& m = out.model[k];
        m.written.push_back(v);
        const size_t idx = m.written.size();
        std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(v.data()), v.size());
        auto u = store.update(ObjectId{1, 1}, "d", key_name(k), ValueKind::single, 0, bytes,
                              crc32c(bytes));
        if (dead) break;
        if (!u) return u.status();
        m.acked = idx;
        m.any_acked = true;
        if (i % 3 == 2) {
          Status c = store.checkpoint();
          if (dead) break;
          if (!c.is_ok()) return c;
        }
      }
      return Status();
    };
    Status worked = work();
    store.close();  // before the store goes: its background fiber ends with it
    disk->before_write_or_sync = nullptr;
    if (!worked.is_ok()) return worked;
    return dead ? Status() : Status(Errc::internal, "the device never died");
  });
  t.stop();
  EXPECT_TRUE(st.is_ok()) << fmt::format("seed {}: {}", seed, st.to_string());
  return out;
}

}  // namespace

// The two syncs of the checkpoint protocol, each at the moment it matters: the device dies
// (power loss) at the first, second or third write or sync after a checkpoint's header reaches
// it, while values keep going to the data region and a checkpoint is asked for every third
// update. The chunks must be durable before the header is written (else a kept header points at
// lost chunks), and the header before the checkpoint it replaces is given back (else the old
// header, still the newest durable one, points at chunks new values overwrote). Six images of
// each moment are opened; each must read every acknowledged value. Mutations: removing either
// sync makes it fail (docs/STORAGE_FORMAT.md).
TEST(PowerLoss, ACheckpointIsDurableBeforeItsHeaderAndItsHeaderBeforeWhatItReplacesIsReused) {
  const char* env = std::getenv("TESSERA_POWER_SEEDS");
  const int seeds = env != nullptr ? 3 * std::atoi(env) : 16;
  for (int s = 1; s <= seeds && !HasFailure(); ++s) {
    const uint64_t seed = static_cast<uint64_t>(s) * 104729;
    WindowCrash c = crash_after_a_checkpoint_header(seed);
    for (size_t i = 0; i < c.images.size() && !HasFailure(); ++i) {
      Target t(RealEnv::instance(), TargetOptions{});
      ASSERT_TRUE(t.start().is_ok());
      Status st = run_on(t, [&]() -> Status {
        auto opened = open_on(t, c.images[i], fmt::format("seed {} image {}", seed, i),
                              std::chrono::milliseconds(0));
        if (!opened) return opened.status();
        Status read = Status();
        for (const auto& [k, m] : c.model) {
          if (!m.any_acked) continue;
          auto r = (*opened)->fetch(ObjectId{1, 1}, "d", key_name(k), ValueKind::single, 0, 0, 0);
          if (!r) {
            read = r.status();
            break;
          }
          const std::string got(reinterpret_cast<const char*>(r->data.data()), r->data.size());
          bool ok = false;
          for (size_t j = m.acked - 1; j < m.written.size(); ++j) ok |= m.written[j] == got;
          EXPECT_TRUE(ok) << fmt::format("key {} reads \"{:.24}\"; acknowledged \"{:.24}\"", k, got,
                                         m.written[m.acked - 1]);
        }
        (*opened)->close();  // before the store goes: its background fiber ends with it
        return read;
      });
      t.stop();
      EXPECT_TRUE(st.is_ok()) << fmt::format("seed {} image {}: {}", seed, i, st.to_string());
    }
  }
}

// Randomized model test of the versioned store.
//
// A seeded random sequence of updates (single values and array extents, inline and in the data
// region), punches (object, dkey, akey, array range), fetches and listings at random epochs,
// aggregations with random protected epochs, checkpoints and restarts runs against a real
// TargetStore (io_uring, small log so it wraps) and against a trivial model: the list of every
// change with its epoch. Every fetch and listing must match what the model computes by replaying
// the changes up to the epoch. A failure names its seed; TESSERA_MODEL_SEEDS=N runs N seeds,
// TESSERA_MODEL_SEED=S runs one.
#include <gtest/gtest.h>
#include <isa-l/crc.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <set>

#include "storage/store.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using namespace tessera::storage;
using tessera::testing::run_on;
using tessera::testing::TempDir;

namespace {

constexpr int kObjects = 2;
constexpr int kDkeys = 3;
constexpr int kAkeys = 4;  // 0, 1: single values; 2, 3: arrays
constexpr uint64_t kArraySpan = 24000;

enum class OpType { single, array, punch_obj, punch_dkey, punch_akey, punch_range };

struct Change {
  uint64_t epoch;
  OpType type;
  int obj, dkey, akey;
  uint64_t off = 0, len = 0;
  std::string data;
};

std::string dkey_name(int d) {
  return "d" + std::to_string(d);
}
std::string akey_name(int a) {
  return (a < 2 ? "s" : "a") + std::to_string(a);
}
ObjectId oid_of(int o) {
  return ObjectId{7, static_cast<uint64_t>(o)};
}

struct Model {
  std::vector<Change> changes;  // store epochs only grow, so this is in epoch order

  uint64_t floor(int o, int d, int a, uint64_t e) const {
    uint64_t f = 0;
    for (const Change& c : changes) {
      if (c.epoch > e || c.obj != o) continue;
      bool hit = c.type == OpType::punch_obj || (c.type == OpType::punch_dkey && c.dkey == d) ||
                 (c.type == OpType::punch_akey && c.dkey == d && c.akey == a);
      if (hit) f = std::max(f, c.epoch);
    }
    return f;
  }
  std::optional<std::string> single(int o, int d, int a, uint64_t e) const {
    uint64_t f = floor(o, d, a, e);
    std::optional<std::string> v;
    for (const Change& c : changes) {
      if (c.epoch > e || c.epoch <= f) continue;
      if (c.type == OpType::single && c.obj == o && c.dkey == d && c.akey == a) v = c.data;
    }
    return v;
  }
  // Bytes [0, kArraySpan) and which of them were written.
  std::pair<std::string, std::vector<bool>> array(int o, int d, int a, uint64_t e) const {
    std::string bytes(kArraySpan, '\0');
    std::vector<bool> written(kArraySpan, false);
    uint64_t f = floor(o, d, a, e);
    for (const Change& c : changes) {
      if (c.epoch > e || c.epoch <= f || c.obj != o || c.dkey != d || c.akey != a) continue;
      if (c.type == OpType::array) {
        std::copy(c.data.begin(), c.data.end(), bytes.begin() + static_cast<long>(c.off));
        std::fill(written.begin() + static_cast<long>(c.off),
                  written.begin() + static_cast<long>(c.off + c.len), true);
      } else if (c.type == OpType::punch_range) {
        std::fill(bytes.begin() + static_cast<long>(c.off),
                  bytes.begin() + static_cast<long>(c.off + c.len), '\0');
        std::fill(written.begin() + static_cast<long>(c.off),
                  written.begin() + static_cast<long>(c.off + c.len), false);
      }
    }
    return {bytes, written};
  }
  bool akey_exists(int o, int d, int a, uint64_t e) const {
    if (a < 2) return single(o, d, a, e).has_value();
    auto w = array(o, d, a, e).second;
    return std::find(w.begin(), w.end(), true) != w.end();
  }
};

class ModelTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(target.start().is_ok()); }
  void TearDown() override {
    close();
    target.stop();
  }
  Status open() {
    return run_on(target, [&]() -> Status {
      BlockQueueOptions qo;
      qo.backend = "uring";
      qo.path = dir.file("model.dat");
      qo.size = 64ull << 20;
      auto q = open_block_queue(qo);
      if (!q) return q.status();
      StoreOptions so;
      so.wal_bytes = 512u << 10;  // wraps many times over a run
      so.inline_threshold = 2048;
      so.max_extent = 8192;  // big values become several pieces
      so.zero_fill = false;
      so.checkpoint_interval = std::chrono::milliseconds(0);
      so.aggregation_interval = std::chrono::milliseconds(0);
      so.aggregation_batch = 3;  // yield often
      auto s = TargetStore::open(target, std::move(*q), so);
      if (!s) return s.status();
      store = std::move(*s);
      return Status();
    });
  }
  void close() {
    if (!store) return;
    run_on(target, [&] {
      store->close();
      store.reset();
    });
  }

  void run_seed(uint64_t seed);

  TempDir dir;
  Target target{RealEnv::instance(), TargetOptions{}};
  std::unique_ptr<TargetStore> store;
};

uint32_t crc_of(const std::string& s) {
  return crc32_iscsi(reinterpret_cast<unsigned char*>(const_cast<char*>(s.data())),
                     static_cast<int>(s.size()), 0);
}

void ModelTest::run_seed(uint64_t seed) {
  std::mt19937_64 rng(seed);
  Model m;
  uint64_t min_epoch = 0;       // reads below it are only defined at protected epochs
  std::vector<uint64_t> snaps;  // protected epochs
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
  auto random_bytes = [&](size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>('A' + rng() % 26);
    return s;
  };
  // An epoch at which the model and the store must agree.
  auto read_epoch = [&]() -> uint64_t {
    int r = pick(4);
    if (r == 0 || m.changes.empty()) return 0;
    if (r == 1 && !snaps.empty())
      return snaps[static_cast<size_t>(pick(static_cast<int>(snaps.size())))];
    std::vector<uint64_t> ok;
    for (const Change& c : m.changes) {
      if (c.epoch >= min_epoch) ok.push_back(c.epoch);
    }
    if (ok.empty()) return 0;
    uint64_t e = ok[static_cast<size_t>(pick(static_cast<int>(ok.size())))];
    return pick(3) == 0 ? e - 1 >= min_epoch ? e - 1 : e : e;
  };
  auto model_epoch = [&](uint64_t e) { return e == 0 ? ~uint64_t{0} : e; };

  auto check_key = [&](int o, int d, int a, uint64_t e) {
    SCOPED_TRACE(::testing::Message()
                 << "obj " << o << " " << dkey_name(d) << "/" << akey_name(a) << " at epoch " << e);
    uint64_t me = model_epoch(e);
    if (a < 2) {
      auto want = m.single(o, d, a, me);
      auto r = run_on(target, [&] {
        return store->fetch(oid_of(o), dkey_name(d), akey_name(a), ValueKind::single, 0, 0, e);
      });
      ASSERT_TRUE(r.is_ok()) << r.status().to_string();
      ASSERT_EQ(r->exists, want.has_value());
      if (want) {
        ASSERT_EQ(std::string(r->data.view()), *want);
      }
      return;
    }
    auto [bytes, written] = m.array(o, d, a, me);
    uint64_t lo = rng() % kArraySpan;
    uint64_t len = 1 + rng() % (kArraySpan - lo);
    auto r = run_on(target, [&] {
      return store->fetch(oid_of(o), dkey_name(d), akey_name(a), ValueKind::array, lo, len, e);
    });
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    ASSERT_EQ(std::string(r->data.view()), bytes.substr(lo, len)) << "range " << lo << "+" << len;
    std::vector<std::pair<uint64_t, uint64_t>> holes;
    for (uint64_t i = lo; i < lo + len; ++i) {
      if (written[i]) continue;
      if (!holes.empty() && holes.back().first + holes.back().second == i) {
        ++holes.back().second;
      } else {
        holes.emplace_back(i, 1);
      }
    }
    ASSERT_EQ(r->holes, holes) << "range " << lo << "+" << len;
    uint64_t end = 0;
    for (uint64_t i = kArraySpan; i-- > 0;) {
      if (written[i]) {
        end = i + 1;
        break;
      }
    }
    ASSERT_EQ(r->size, end);
    ASSERT_EQ(r->exists, end != 0);
  };
  auto check_listing = [&](int o, uint64_t e) {
    uint64_t me = model_epoch(e);
    std::vector<std::string> want;
    for (int d = 0; d < kDkeys; ++d) {
      for (int a = 0; a < kAkeys; ++a) {
        if (m.akey_exists(o, d, a, me)) {
          want.push_back(dkey_name(d));
          break;
        }
      }
    }
    auto r = run_on(target,
                    [&] { return store->list(ListScope::dkeys, oid_of(o), "", "", "", 100, e); });
    std::vector<std::string> got;
    if (r) {
      for (auto& x : r->entries) got.push_back(x.key);
    } else {
      ASSERT_EQ(r.status().code(), Errc::not_found);
    }
    ASSERT_EQ(got, want) << "dkeys of obj " << o << " at epoch " << e;
  };

  const int kOps = 500;
  for (int step = 0; step < kOps; ++step) {
    SCOPED_TRACE(::testing::Message() << "step " << step);
    int o = pick(kObjects), d = pick(kDkeys), a = pick(kAkeys);
    int r = pick(100);
    if (r < 30) {
      a = pick(2);
      std::string v = random_bytes(pick(4) == 0 ? 2048 + rng() % 20000 : rng() % 300);
      auto e = run_on(target, [&] {
        return store->update(oid_of(o), dkey_name(d), akey_name(a), ValueKind::single, 0,
                             {reinterpret_cast<const uint8_t*>(v.data()), v.size()}, crc_of(v));
      });
      ASSERT_TRUE(e.is_ok()) << e.status().to_string();
      m.changes.push_back({*e, OpType::single, o, d, a, 0, v.size(), v});
    } else if (r < 55) {
      a = 2 + pick(2);
      uint64_t off = rng() % (kArraySpan - 1);
      uint64_t len = 1 + rng() % std::min<uint64_t>(kArraySpan - off, pick(3) == 0 ? 12000 : 600);
      std::string v = random_bytes(len);
      auto e = run_on(target, [&] {
        return store->update(oid_of(o), dkey_name(d), akey_name(a), ValueKind::array, off,
                             {reinterpret_cast<const uint8_t*>(v.data()), v.size()}, crc_of(v));
      });
      ASSERT_TRUE(e.is_ok()) << e.status().to_string();
      m.changes.push_back({*e, OpType::array, o, d, a, off, len, v});
    } else if (r < 62) {
      a = 2 + pick(2);
      uint64_t off = rng() % (kArraySpan - 1);
      uint64_t len = 1 + rng() % std::min<uint64_t>(kArraySpan - off, 5000);
      auto e = run_on(target, [&] {
        return store->punch_range(oid_of(o), dkey_name(d), akey_name(a), off, len);
      });
      ASSERT_TRUE(e.is_ok()) << e.status().to_string();
      m.changes.push_back({*e, OpType::punch_range, o, d, a, off, len, {}});
    } else if (r < 69) {
      OpType t = pick(5) == 0   ? OpType::punch_obj
                 : pick(2) == 0 ? OpType::punch_dkey
                                : OpType::punch_akey;
      std::string dk = t == OpType::punch_obj ? "" : dkey_name(d);
      std::string ak = t == OpType::punch_akey ? akey_name(a) : "";
      auto e = run_on(target, [&] { return store->punch(oid_of(o), dk, ak); });
      ASSERT_TRUE(e.is_ok()) << e.status().to_string();
      m.changes.push_back({*e, t, o, d, a, 0, 0, {}});
    } else if (r < 90) {
      check_key(o, d, a, read_epoch());
      if (::testing::Test::HasFatalFailure()) return;
    } else if (r < 94) {
      check_listing(o, read_epoch());
      if (::testing::Test::HasFatalFailure()) return;
    } else if (r < 97) {
      // Aggregate up to a recent change, keeping some snapshots and maybe adding one.
      std::erase_if(snaps, [&](uint64_t) { return pick(3) == 0; });
      if (!m.changes.empty() && pick(2) == 0) {
        uint64_t s = m.changes[static_cast<size_t>(pick(static_cast<int>(m.changes.size())))].epoch;
        if (s >= min_epoch) snaps.push_back(s);
      }
      uint64_t upto = m.changes.empty() ? 0 : m.changes[m.changes.size() * 3 / 4].epoch;
      auto st = run_on(target, [&] { return store->aggregate(upto, snaps); });
      ASSERT_TRUE(st.is_ok()) << st.status().to_string();
      min_epoch = std::max(min_epoch, st->epoch);
      std::erase_if(snaps, [&](uint64_t s) { return s >= min_epoch; });
    } else if (r < 99) {
      ASSERT_TRUE(run_on(target, [&] { return store->checkpoint(); }).is_ok());
    } else {
      close();
      ASSERT_TRUE(open().is_ok());
    }
  }
  // Finally every key at a few allowed epochs, after a restart.
  close();
  ASSERT_TRUE(open().is_ok());
  for (int i = 0; i < 4; ++i) {
    uint64_t e = read_epoch();
    for (int o = 0; o < kObjects; ++o) {
      check_listing(o, e);
      for (int d = 0; d < kDkeys; ++d) {
        for (int a = 0; a < kAkeys; ++a) {
          check_key(o, d, a, e);
          if (::testing::Test::HasFatalFailure()) return;
        }
      }
    }
  }
}

}  // namespace

TEST_F(ModelTest, RandomOperationsMatchTheModelForManySeeds) {
  std::vector<uint64_t> seeds;
  if (const char* one = std::getenv("TESSERA_MODEL_SEED")) {
    seeds.push_back(std::strtoull(one, nullptr, 10));
  } else {
    const char* n = std::getenv("TESSERA_MODEL_SEEDS");
    uint64_t count = n != nullptr ? std::strtoull(n, nullptr, 10) : 16;
    for (uint64_t s = 1; s <= count; ++s) seeds.push_back(s * 7919);
  }
  for (uint64_t seed : seeds) {
    SCOPED_TRACE(::testing::Message()
                 << "seed " << seed << " (rerun: TESSERA_MODEL_SEED=" << seed << ")");
    close();
    std::filesystem::remove(dir.file("model.dat"));
    ASSERT_TRUE(open().is_ok());
    run_seed(seed);
    if (HasFatalFailure()) return;
  }
}

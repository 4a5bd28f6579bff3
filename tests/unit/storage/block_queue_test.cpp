// One conformance suite, run against every BlockQueue backend.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <set>

#include "core/buffer.hpp"
#include "storage/block_queue.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using namespace tessera::storage;
using tessera::testing::run_on;
using tessera::testing::TempDir;

namespace {
class BlockQueueTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { ASSERT_TRUE(target.start().is_ok()); }
  void TearDown() override { target.stop(); }
  Result<std::unique_ptr<BlockQueue>> open(uint64_t size) {
    BlockQueueOptions o;
    o.backend = GetParam();
    o.path = dir.file("dev");
    o.size = size;
    return open_block_queue(o);
  }
  TempDir dir;
  Target target{RealEnv::instance(), TargetOptions{}};
};
}  // namespace

TEST_P(BlockQueueTest, WritesReadBackAndSync) {
  auto q = open(8 << 20);
  ASSERT_TRUE(q.is_ok()) << q.status().to_string();
  EXPECT_EQ((*q)->backend(), GetParam());
  Status st = run_on(target, [&]() -> Status {
    BlockQueue& bq = **q;
    target.add_poller(&bq);
    Buffer w(64 * 1024), r(64 * 1024);
    for (size_t i = 0; i < w.size(); ++i) w.data()[i] = static_cast<uint8_t>(i * 7);
    // Many writes in flight at once from separate fibers.
    auto done = std::make_shared<int>(0);
    boost::fibers::promise<void> all;
    for (int k = 0; k < 16; ++k) {
      target.spawn([&, k, done] {
        EXPECT_TRUE(bq.write(static_cast<uint64_t>(k) * w.size(), w.data(), w.size()).is_ok());
        if (++*done == 16) all.set_value();
      });
    }
    all.get_future().get();
    TESSERA_TRY(bq.sync());
    for (int k = 0; k < 16; ++k) {
      auto n = bq.read(static_cast<uint64_t>(k) * r.size(), r.data(), r.size());
      if (!n) return n.status();
      EXPECT_EQ(std::memcmp(w.data(), r.data(), w.size()), 0);
    }
    target.remove_poller(&bq);
    return Status();
  });
  EXPECT_TRUE(st.is_ok()) << st.to_string();
}

TEST_P(BlockQueueTest, RejectsUnalignedAndOutOfRangeIo) {
  auto q = open(1 << 20);
  ASSERT_TRUE(q.is_ok());
  run_on(target, [&] {
    BlockQueue& bq = **q;
    target.add_poller(&bq);
    Buffer b(8192);
    EXPECT_EQ(bq.write(100, b.data(), 4096).status().code(), Errc::internal);
    EXPECT_EQ(bq.write(0, b.data(), 100).status().code(), Errc::internal);
    EXPECT_EQ(bq.write(1 << 20, b.data(), 4096).status().code(), Errc::internal);
    bq.fail_next_writes(1);
    EXPECT_EQ(bq.write(0, b.data(), 4096).status().code(), Errc::io_error);
    EXPECT_TRUE(bq.write(0, b.data(), 4096).is_ok());
    target.remove_poller(&bq);
  });
}

class FileBlockQueueTest : public BlockQueueTest {};

TEST_P(FileBlockQueueTest, PersistsAcrossReopen) {
  {
    auto q = open(1 << 20);
    ASSERT_TRUE(q.is_ok());
    EXPECT_TRUE((*q)->created());
    run_on(target, [&] {
      target.add_poller(q->get());
      Buffer b(4096);
      std::memset(b.data(), 0xAB, 4096);
      EXPECT_TRUE((*q)->write(8192, b.data(), 4096).is_ok());
      EXPECT_TRUE((*q)->sync().is_ok());
      target.remove_poller(q->get());
    });
  }
  auto q = open(1 << 20);
  ASSERT_TRUE(q.is_ok());
  EXPECT_FALSE((*q)->created());
  run_on(target, [&] {
    target.add_poller(q->get());
    Buffer b(4096);
    EXPECT_TRUE((*q)->read(8192, b.data(), 4096).is_ok());
    EXPECT_EQ(b.data()[0], 0xAB);
    EXPECT_EQ(b.data()[4095], 0xAB);
    target.remove_poller(q->get());
  });
}

INSTANTIATE_TEST_SUITE_P(Backends, BlockQueueTest, ::testing::Values("uring", "aio", "memory"),
                         [](const auto& info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(Backends, FileBlockQueueTest, ::testing::Values("uring", "aio"),
                         [](const auto& info) { return info.param; });

TEST(BlockQueue, UnknownBackendAndBadPathFailClearly) {
  BlockQueueOptions o;
  o.backend = "floppy";
  o.size = 1 << 20;
  auto q = open_block_queue(o);
  ASSERT_FALSE(q.is_ok());
  EXPECT_NE(q.status().message().find("floppy"), std::string::npos);
  o.backend = "aio";
  o.path = "/nonexistent-dir/tessera/dev";
  auto q2 = open_block_queue(o);
  ASSERT_FALSE(q2.is_ok());
  EXPECT_NE(q2.status().message().find("/nonexistent-dir"), std::string::npos);
}

// A memory disk keeps what the last sync made durable; a power loss keeps that, and of each
// block written since, the old or the new contents, or some sectors of each (a torn block).
TEST(MemoryDisk, PowerLossKeepsSyncedBlocksAndEachUnsyncedBlockOldNewOrTorn) {
  Target target{RealEnv::instance(), TargetOptions{}};
  ASSERT_TRUE(target.start().is_ok());
  auto disk = std::make_shared<MemoryDisk>(64 * 4096);
  BlockQueueOptions o;
  o.backend = "memory";
  o.size = 64 * 4096;
  o.disk = disk;
  auto q = open_block_queue(o);
  ASSERT_TRUE(q.is_ok()) << q.status().to_string();
  Status st = run_on(target, [&]() -> Status {
    BlockQueue& bq = **q;
    target.add_poller(&bq);
    Buffer b(4096);
    for (uint64_t i = 0; i < 64; ++i) {  // every block: 1, synced
      std::memset(b.data(), 1, 4096);
      TESSERA_TRY(bq.write(i * 4096, b.data(), 4096).status());
    }
    TESSERA_TRY(bq.sync());
    for (uint64_t i = 0; i < 64; i += 2) {  // even blocks: 2, not synced
      std::memset(b.data(), 2, 4096);
      TESSERA_TRY(bq.write(i * 4096, b.data(), 4096).status());
    }
    target.remove_poller(&bq);
    return Status();
  });
  target.stop();
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(disk->dirty.size(), 32u);
  std::mt19937_64 rng(7);
  auto after = disk->after_power_loss(rng);
  size_t kept_new = 0, kept_old = 0, torn = 0;
  for (uint64_t i = 0; i < 64; ++i) {
    std::set<uint8_t> seen;
    for (uint64_t s = 0; s < 4096; s += 512) {
      const uint8_t v = after[i * 4096 + s];
      EXPECT_TRUE(std::all_of(after.begin() + static_cast<long>(i * 4096 + s),
                              after.begin() + static_cast<long>(i * 4096 + s + 512),
                              [v](uint8_t x) { return x == v; }))
          << "a sector is all old or all new";
      seen.insert(v);
    }
    if (i % 2 == 1) {
      EXPECT_EQ(seen, std::set<uint8_t>{1}) << "block " << i << " was synced";
      continue;
    }
    EXPECT_EQ(seen.count(1) + seen.count(2), seen.size()) << "block " << i;
    kept_new += seen == std::set<uint8_t>{2};
    kept_old += seen == std::set<uint8_t>{1};
    torn += seen.size() == 2;
  }
  // With this seed unsynced blocks kept their new contents, their old ones, or tore.
  EXPECT_GT(kept_new, 0u);
  EXPECT_GT(kept_old, 0u);
  EXPECT_GT(torn, 0u);
  EXPECT_EQ(disk->image[0], 2);  // what the device showed before the loss
}

// One device queue per target: every uring queue used on a thread submits to that thread's one
// io_uring (a target's scratch store and each pool shard's store), and I/O of several files
// interleaved on it lands in the right file; the ring goes when its last queue does.
TEST(UringRing, QueuesUsedOnOneTargetShareOneRing) {
  TempDir dir;
  Target target{RealEnv::instance(), TargetOptions{}};
  ASSERT_TRUE(target.start().is_ok());
  const size_t before = uring_rings_open();
  Status st = run_on(target, [&]() -> Status {
    std::vector<std::unique_ptr<BlockQueue>> qs;
    for (int i = 0; i < 4; ++i) {
      BlockQueueOptions o;
      o.backend = "uring";
      o.path = dir.file("dev" + std::to_string(i));
      o.size = 4 << 20;
      auto q = open_block_queue(o);
      if (!q) return q.status();
      qs.push_back(std::move(*q));
      target.add_poller(qs.back().get());
    }
    EXPECT_EQ(uring_rings_open(), before + 1) << "one ring for the target's four queues";
    // 4 files x 16 blocks written at once from separate fibers, each block naming its file.
    auto done = std::make_shared<int>(0);
    boost::fibers::promise<void> all;
    for (int f = 0; f < 4; ++f) {
      for (int k = 0; k < 16; ++k) {
        target.spawn([&, f, k, done] {
          Buffer b(4096);
          std::memset(b.data(), 'a' + f * 16 + k % 16, b.size());
          EXPECT_TRUE(qs[f]->write(static_cast<uint64_t>(k) * 4096, b.data(), b.size()).is_ok());
          if (++*done == 64) all.set_value();
        });
      }
    }
    all.get_future().get();
    for (auto& q : qs) TESSERA_TRY(q->sync());
    // One file closes; the others keep working on the same ring.
    target.remove_poller(qs[0].get());
    qs[0].reset();
    EXPECT_EQ(uring_rings_open(), before + 1);
    Buffer r(4096);
    for (int f = 1; f < 4; ++f) {
      for (int k = 0; k < 16; ++k) {
        auto n = qs[f]->read(static_cast<uint64_t>(k) * 4096, r.data(), r.size());
        if (!n) return n.status();
        EXPECT_EQ(r.data()[0], 'a' + f * 16 + k % 16) << "file " << f << " block " << k;
        EXPECT_EQ(r.data()[4095], 'a' + f * 16 + k % 16);
      }
    }
    for (size_t i = 1; i < qs.size(); ++i) target.remove_poller(qs[i].get());
    qs.clear();
    EXPECT_EQ(uring_rings_open(), before) << "the ring outlived its last queue";
    return Status();
  });
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  target.stop();
}

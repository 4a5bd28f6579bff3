// The TargetStore test fixture: a store on a temp file over each block-queue backend, driven
// from the test thread through run_on(). Shared by the store's unit tests.
#pragma once

#include <gtest/gtest.h>
#include <isa-l/crc.h>

#include <random>
#include <string>

#include "storage/store.hpp"
#include "tests/test_util.hpp"

namespace tessera::storage::testing {

using tessera::testing::run_on;
using tessera::testing::TempDir;

inline uint32_t crc(std::string_view s) {
  return crc32_iscsi(reinterpret_cast<unsigned char*>(const_cast<char*>(s.data())),
                     static_cast<int>(s.size()), 0);
}
inline std::span<const uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline std::string random_string(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { ASSERT_TRUE(target.start().is_ok()); }
  void TearDown() override {
    close();
    target.stop();
  }
  Status open(uint64_t size = 64ull << 20, uint64_t wal = 0, CsumType csum = CsumType::crc32c) {
    return run_on(target, [&]() -> Status {
      BlockQueueOptions qo;
      qo.backend = GetParam();
      qo.path = dir.file("target.dat");
      qo.size = size;
      auto q = open_block_queue(qo);
      if (!q) return q.status();
      StoreOptions so;
      so.wal_bytes = wal;
      so.checksum = csum;
      // Background work off: the tests call checkpoint() and aggregate() themselves, except
      // where the log fills (then a checkpoint starts on its own).
      so.checkpoint_interval = std::chrono::milliseconds(0);
      so.aggregation_interval = std::chrono::milliseconds(0);
      if (tweak) tweak(so);
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
  Result<uint64_t> put(ObjectId oid, std::string dk, std::string ak, std::string_view v,
                       ValueKind kind = ValueKind::single, uint64_t off = 0) {
    return run_on(target, [&] { return store->update(oid, dk, ak, kind, off, bytes(v), crc(v)); });
  }
  Result<FetchResult> get(ObjectId oid, std::string dk, std::string ak,
                          ValueKind kind = ValueKind::single, uint64_t off = 0, uint64_t len = 0,
                          uint64_t epoch = 0) {
    FetchOptions fo;
    fo.must_exist = true;
    return run_on(target, [&] { return store->fetch(oid, dk, ak, kind, off, len, epoch, fo); });
  }
  AggregateStats aggregate(uint64_t epoch = 0, std::vector<uint64_t> protect = {}) {
    auto r = run_on(target, [&] { return store->aggregate(epoch, protect); });
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r ? *r : AggregateStats{};
  }
  StoreStats stats() {
    return run_on(target, [&] { return store->stats(); });
  }
  std::string get_str(ObjectId oid, std::string dk, std::string ak) {
    auto r = get(oid, dk, ak);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r ? std::string(r->data.view()) : std::string();
  }

  TempDir dir;
  Target target{RealEnv::instance(), TargetOptions{}};
  std::unique_ptr<TargetStore> store;
  std::function<void(StoreOptions&)> tweak;  // options of the next open() beyond the defaults
};

}  // namespace tessera::storage::testing

#include <fcntl.h>
#include <gtest/gtest.h>
#include <isa-l/crc.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include "storage/store.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using namespace tessera::storage;
using tessera::testing::run_on;
using tessera::testing::TempDir;

namespace {

uint32_t crc(std::string_view s) {
  return crc32_iscsi(reinterpret_cast<unsigned char*>(const_cast<char*>(s.data())),
                     static_cast<int>(s.size()), 0);
}
std::span<const uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
std::string random_string(std::mt19937_64& rng, size_t n) {
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
  Status open(uint64_t size = 64ull << 20, uint64_t wal = 0,
              CsumType csum = CsumType::crc32c) {
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
};

}  // namespace

TEST_P(StoreTest, SingleValuesOfEverySizeRoundTripAndReplace) {
  ASSERT_TRUE(open().is_ok());
  std::mt19937_64 rng(5);
  for (size_t n :
       {size_t{0}, size_t{1}, size_t{4095}, size_t{4096}, size_t{70000}, size_t{3u << 20}}) {
    std::string v = random_string(rng, n);
    auto e = put({0, n}, "d", "a", v);
    ASSERT_TRUE(e.is_ok()) << n << ": " << e.status().to_string();
    EXPECT_EQ(get_str({0, n}, "d", "a"), v) << n;
  }
  auto before = stats();
  ASSERT_TRUE(put({0, 70000}, "d", "a", std::string(70000, 'z')).is_ok());
  EXPECT_EQ(get_str({0, 70000}, "d", "a"), std::string(70000, 'z'));
  // The replaced version stays until aggregation drops it; then usage is what it was.
  EXPECT_GT(stats().used, before.used);
  auto agg = aggregate();
  EXPECT_EQ(agg.versions_dropped, 1u);
  auto after = stats();
  EXPECT_EQ(after.used - after.checkpoint_bytes, before.used - before.checkpoint_bytes);
  EXPECT_EQ(get_str({0, 70000}, "d", "a"), std::string(70000, 'z'));
}

TEST_P(StoreTest, ArrayExtentsOverlayByEpochAndReportHoles) {
  ASSERT_TRUE(open().is_ok());
  ObjectId o{1, 2};
  ASSERT_TRUE(put(o, "d", "arr", std::string(100, 'a'), ValueKind::array, 0).is_ok());
  ASSERT_TRUE(put(o, "d", "arr", std::string(100, 'b'), ValueKind::array, 50).is_ok());
  ASSERT_TRUE(put(o, "d", "arr", std::string(10000, 'c'), ValueKind::array, 300).is_ok());
  auto r = get(o, "d", "arr", ValueKind::array, 0, 400);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  std::string expect =
      std::string(50, 'a') + std::string(100, 'b') + std::string(150, '\0') + std::string(100, 'c');
  EXPECT_EQ(std::string(r->data.view()), expect);
  ASSERT_EQ(r->holes.size(), 1u);
  EXPECT_EQ(r->holes[0], (std::pair<uint64_t, uint64_t>{150, 150}));
  EXPECT_EQ(r->size, 10300u);
  auto all = get(o, "d", "arr", ValueKind::array, 10250, 0);
  ASSERT_TRUE(all.is_ok());
  EXPECT_EQ(all->data.size(), 50u);
}

TEST_P(StoreTest, WrongKindMissingKeysAndBadInputAreTypedErrors) {
  ASSERT_TRUE(open().is_ok());
  ObjectId o{0, 9};
  ASSERT_TRUE(put(o, "d", "sv", "value").is_ok());
  EXPECT_EQ(put(o, "d", "sv", "x", ValueKind::array).status().code(), Errc::invalid_argument);
  EXPECT_EQ(get(o, "d", "sv", ValueKind::array).status().code(), Errc::invalid_argument);
  EXPECT_EQ(get(o, "d", "nope").status().code(), Errc::not_found);
  EXPECT_EQ(get(o, "nope", "sv").status().code(), Errc::not_found);
  EXPECT_EQ(get({7, 7}, "d", "sv").status().code(), Errc::not_found);
  EXPECT_EQ(put(o, "", "a", "v").status().code(), Errc::invalid_argument);
  auto bad_crc = run_on(
      target, [&] { return store->update(o, "d", "x", ValueKind::single, 0, bytes("abc"), 1234); });
  EXPECT_EQ(bad_crc.status().code(), Errc::checksum);
  EXPECT_EQ(get(o, "d", "x").status().code(), Errc::not_found);
}

TEST_P(StoreTest, PunchRemovesObjectDkeyOrAkey) {
  ASSERT_TRUE(open().is_ok());
  ObjectId o{0, 1};
  for (std::string d : {"d1", "d2"}) {
    for (std::string a : {"a1", "a2"}) ASSERT_TRUE(put(o, d, a, std::string(9000, 'v')).is_ok());
  }
  ASSERT_TRUE(run_on(target, [&] { return store->punch(o, "d1", "a1"); }).is_ok());
  EXPECT_EQ(get(o, "d1", "a1").status().code(), Errc::not_found);
  EXPECT_TRUE(get(o, "d1", "a2").is_ok());
  ASSERT_TRUE(run_on(target, [&] { return store->punch(o, "d2", ""); }).is_ok());
  EXPECT_EQ(get(o, "d2", "a1").status().code(), Errc::not_found);
  ASSERT_TRUE(run_on(target, [&] { return store->punch(o, "", ""); }).is_ok());
  EXPECT_EQ(get(o, "d1", "a2").status().code(), Errc::not_found);
  EXPECT_GT(stats().used, 0u);  // punched versions stay readable at older epochs...
  aggregate();                  // ...until aggregation drops them
  EXPECT_EQ(stats().used, stats().checkpoint_bytes);
  EXPECT_EQ(stats().objects, 0u);
  EXPECT_TRUE(run_on(target, [&] { return store->punch(o, "", ""); }).is_ok());  // idempotent
}

TEST_P(StoreTest, ListingPagesWithAnchors) {
  ASSERT_TRUE(open().is_ok());
  ObjectId o{0, 5};
  for (int i = 0; i < 25; ++i)
    ASSERT_TRUE(put(o, "dkey" + std::to_string(100 + i), "a", "v").is_ok());
  for (uint64_t k = 0; k < 7; ++k) ASSERT_TRUE(put({3, k}, "d", "a", "v").is_ok());
  std::vector<std::string> keys;
  std::string anchor;
  int pages = 0;
  while (true) {
    auto r = run_on(target, [&] { return store->list(ListScope::dkeys, o, "", "", anchor, 10); });
    ASSERT_TRUE(r.is_ok());
    ++pages;
    for (auto& e : r->entries) keys.push_back(e.key);
    if (r->done) break;
    anchor = r->anchor;
  }
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(keys.size(), 25u);
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  auto objs = run_on(target, [&] { return store->list(ListScope::objects, {}, "", "", "", 3); });
  ASSERT_TRUE(objs.is_ok());
  EXPECT_EQ(objs->entries.size(), 3u);
  EXPECT_FALSE(objs->done);
  auto rest =
      run_on(target, [&] { return store->list(ListScope::objects, {}, "", "", objs->anchor, 100); });
  ASSERT_TRUE(rest.is_ok());
  EXPECT_EQ(rest->entries.size(), 5u);  // 8 objects in all
  EXPECT_TRUE(rest->done);
}

TEST_P(StoreTest, RecoversEverythingAfterReopen) {
  ASSERT_TRUE(open().is_ok());
  std::mt19937_64 rng(9);
  std::map<uint64_t, std::string> expect;
  for (uint64_t i = 0; i < 300; ++i) {
    std::string v = random_string(rng, (i % 7 == 0) ? 20000 + rng() % 100000 : rng() % 3000);
    ASSERT_TRUE(put({0, i}, "d", "a", v).is_ok());
    expect[i] = v;
  }
  ASSERT_TRUE(run_on(target, [&] { return store->punch({0, 3}, "", ""); }).is_ok());
  expect.erase(3);
  ASSERT_TRUE(put({0, 1000}, "d", "arr", std::string(5000, 'x'), ValueKind::array, 0).is_ok());
  ASSERT_TRUE(put({0, 1000}, "d", "arr", std::string(5000, 'y'), ValueKind::array, 2500).is_ok());
  auto before = run_on(target, [&] { return store->stats(); });
  close();
  ASSERT_TRUE(open().is_ok());
  auto after = run_on(target, [&] { return store->stats(); });
  EXPECT_EQ(after.used, before.used);
  EXPECT_EQ(after.objects, before.objects);
  for (auto& [k, v] : expect) EXPECT_EQ(get_str({0, k}, "d", "a"), v) << k;
  EXPECT_EQ(get({0, 3}, "d", "a").status().code(), Errc::not_found);
  auto arr = get({0, 1000}, "d", "arr", ValueKind::array, 0, 7500);
  ASSERT_TRUE(arr.is_ok());
  EXPECT_EQ(std::string(arr->data.view()), std::string(2500, 'x') + std::string(5000, 'y'));
  // New writes after recovery go to free space and survive another reopen.
  ASSERT_TRUE(put({9, 9}, "d", "a", std::string(50000, 'n')).is_ok());
  close();
  ASSERT_TRUE(open().is_ok());
  EXPECT_EQ(get_str({9, 9}, "d", "a"), std::string(50000, 'n'));
  EXPECT_EQ(get_str({0, 0}, "d", "a"), expect[0]);
}

TEST_P(StoreTest, TornLogTailIsIgnoredAsAWhole) {
  ASSERT_TRUE(open().is_ok());
  for (uint64_t i = 0; i < 3; ++i)
    ASSERT_TRUE(put({0, i}, "d", "a", "value" + std::to_string(i)).is_ok());
  uint64_t tail = run_on(target, [&] { return store->stats().wal_used; });
  close();
  // Forge the start of a fourth group at the tail whose body never made it to disk.
  int fd = ::open(dir.file("target.dat").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  GroupHeader h{kGroupMagic, 0xdeadbeef, 0, 4, 1, 64};
  uint64_t inc = 0;
  constexpr off_t kWal = 3 * 4096;                // the log follows superblock + 2 slots
  ASSERT_EQ(::pread(fd, &inc, 8, kWal + 8), 8);  // incarnation of group 1
  h.incarnation = inc;
  ASSERT_EQ(::pwrite(fd, &h, sizeof(h), kWal + static_cast<off_t>(tail)),
            static_cast<ssize_t>(sizeof(h)));
  ::fsync(fd);
  ::close(fd);
  ASSERT_TRUE(open().is_ok());
  for (uint64_t i = 0; i < 3; ++i)
    EXPECT_EQ(get_str({0, i}, "d", "a"), "value" + std::to_string(i));
  EXPECT_EQ(run_on(target, [&] { return store->stats().wal_used; }), tail);
  ASSERT_TRUE(put({0, 3}, "d", "a", "after").is_ok());
  close();
  ASSERT_TRUE(open().is_ok());
  EXPECT_EQ(get_str({0, 3}, "d", "a"), "after");
}

TEST_P(StoreTest, CorruptedExtentFailsItsChecksum) {
  ASSERT_TRUE(open().is_ok());
  std::string v(64 * 1024, 'q');
  ASSERT_TRUE(put({0, 1}, "d", "a", v).is_ok());
  uint64_t data_off = run_on(target, [&] { return store->data_offset(); });
  close();
  int fd = ::open(dir.file("target.dat").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char flip = 'Q';
  ASSERT_EQ(::pwrite(fd, &flip, 1, static_cast<off_t>(data_off + 1000)), 1);
  ::fsync(fd);
  ::close(fd);
  ASSERT_TRUE(open().is_ok());
  auto r = get({0, 1}, "d", "a");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Errc::checksum);
}

TEST_P(StoreTest, FullDeviceSaysNoSpaceKeepsDataAndRecoversAfterDeleteAndAggregation) {
  ASSERT_TRUE(open(48ull << 20, 16ull << 20).is_ok());
  std::string mib(1 << 20, 'm');
  uint64_t n = 0;
  Status last;
  while (true) {
    auto r = put({0, n}, "d", "a", mib);
    if (!r) {
      last = r.status();
      break;
    }
    ++n;
    ASSERT_LT(n, 100u);
  }
  EXPECT_EQ(last.code(), Errc::no_space) << last.to_string();
  EXPECT_GT(n, 20u);
  for (uint64_t i = 0; i < n; ++i) EXPECT_EQ(get_str({0, i}, "d", "a"), mib);
  for (uint64_t i = 0; i < n; i += 2)
    ASSERT_TRUE(run_on(target, [&] { return store->punch({0, i}, "", ""); }).is_ok());
  // Punched data stays readable at older epochs until aggregation: still full.
  EXPECT_EQ(put({1, 0}, "d", "a", mib).status().code(), Errc::no_space);
  auto agg = aggregate();
  EXPECT_EQ(agg.versions_dropped, (n + 1) / 2);
  EXPECT_GE(agg.bytes_freed, (n + 1) / 2 * mib.size());
  ASSERT_TRUE(put({1, 0}, "d", "a", mib).is_ok());
  EXPECT_EQ(get_str({1, 0}, "d", "a"), mib);
  for (uint64_t i = 1; i < n; i += 2) EXPECT_EQ(get_str({0, i}, "d", "a"), mib);
  // And all of it after a restart.
  close();
  ASSERT_TRUE(open(48ull << 20, 16ull << 20).is_ok());
  for (uint64_t i = 1; i < n; i += 2) EXPECT_EQ(get_str({0, i}, "d", "a"), mib);
  EXPECT_EQ(get({0, 0}, "d", "a").status().code(), Errc::not_found);
  EXPECT_EQ(get_str({1, 0}, "d", "a"), mib);
}

TEST_P(StoreTest, RefusesToFormatAForeignFile) {
  {
    int fd = ::open(dir.file("target.dat").c_str(), O_RDWR | O_CREAT, 0600);
    ASSERT_GE(fd, 0);
    const char junk[] = "this is somebody else's data";
    ASSERT_EQ(::pwrite(fd, junk, sizeof(junk), 0), static_cast<ssize_t>(sizeof(junk)));
    ::close(fd);
  }
  Status st = open();
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("not a Tessera target"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, ::testing::Values("uring", "aio"),
                         [](const auto& info) { return info.param; });

// A target file written by this format (3) and kept in tests/data: every later release must
// open it and read back what it holds, from its checkpoint and from its log (versions, holes,
// punches, older epochs). TESSERA_GOLDEN_WRITE=1 writes the file again (only when the format
// changes on purpose, with a migration or a refusal for the old one).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "tests/unit/storage/store_fixture.hpp"

namespace tessera::storage::testing {
namespace {

namespace fs = std::filesystem;

const std::string kGolden = std::string(TESSERA_TEST_DATA) + "/store-format3.dat";
constexpr uint64_t kSize = 4ull << 20;
constexpr uint64_t kWal = 256ull << 10;
const ObjectId kA{0x1234, 1}, kB{0x1234, 2};

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7) % 26);
  return s;
}

}  // namespace

TEST_P(StoreTest, AFileOfFormat3OpensAndReadsBackFromItsCheckpointAndItsLog) {
  if (GetParam() != "uring") GTEST_SKIP() << "one backend reads the file";
  if (std::getenv("TESSERA_GOLDEN_WRITE") != nullptr) {
    ASSERT_TRUE(open(kSize, kWal).is_ok());
    auto run = [&](auto f) { return run_on(target, f); };
    // Checkpointed: versions, an array with a hole, a punched dkey, an extent, and the epochs
    // later reads go back to, stored as values.
    const uint64_t e1 = *put(kA, "d1", "s", "alpha-1");
    ASSERT_TRUE(put(kA, "d1", "s", "alpha-2"));
    ASSERT_TRUE(put(kA, "d1", "arr", "0123456789", ValueKind::array, 0));
    ASSERT_TRUE(put(kA, "d1", "arr", "ABC", ValueKind::array, 100));
    ASSERT_TRUE(put(kA, "d2", "s", "punched"));
    ASSERT_TRUE(run([&] { return store->punch(kA, "d2", ""); }));
    const uint64_t eb = *put(kB, "d", "big", pattern(9000));
    ASSERT_TRUE(put(kA, "meta", "e1", std::to_string(e1)));
    ASSERT_TRUE(put(kA, "meta", "eb", std::to_string(eb)));
    ASSERT_TRUE(run([&] { return store->checkpoint(); }).is_ok());
    // In the log only.
    ASSERT_TRUE(put(kA, "d1", "s", "alpha-3"));
    ASSERT_TRUE(put(kA, "d1", "arr", "XY", ValueKind::array, 5));
    ASSERT_TRUE(run([&] { return store->punch(kB, "d", "big"); }));
    ASSERT_TRUE(put(kA, "d3", "new", "log-only"));
    close();
    fs::copy_file(dir.file("target.dat"), kGolden, fs::copy_options::overwrite_existing);
    GTEST_SKIP() << "wrote " << kGolden;
  }
  ASSERT_TRUE(fs::exists(kGolden)) << kGolden;
  // A copy: opening replays and writes.
  fs::copy_file(kGolden, dir.file("target.dat"));
  Status st = open(kSize, kWal);
  ASSERT_TRUE(st.is_ok()) << "this release cannot open a file of format 3: " << st.to_string();
  EXPECT_EQ(get_str(kA, "d1", "s"), "alpha-3");
  const uint64_t e1 = std::stoull(get_str(kA, "meta", "e1"));
  auto old = get(kA, "d1", "s", ValueKind::single, 0, 0, e1);
  ASSERT_TRUE(old) << old.status().to_string();
  EXPECT_EQ(std::string(old->data.view()), "alpha-1");
  EXPECT_EQ(old->epoch, e1);
  auto arr = get(kA, "d1", "arr", ValueKind::array, 0, 103);
  ASSERT_TRUE(arr) << arr.status().to_string();
  std::string want = "01234XY789" + std::string(90, '\0') + "ABC";
  EXPECT_EQ(std::string(arr->data.view()), want);
  ASSERT_EQ(arr->holes.size(), 1u);
  EXPECT_EQ(arr->holes[0], (std::pair<uint64_t, uint64_t>{10, 90}));
  EXPECT_EQ(get(kA, "d2", "s").status().code(), Errc::not_found) << "a punched dkey came back";
  EXPECT_EQ(get(kB, "d", "big").status().code(), Errc::not_found) << "a punched akey came back";
  const uint64_t eb = std::stoull(get_str(kA, "meta", "eb"));
  auto big = get(kB, "d", "big", ValueKind::single, 0, 0, eb);
  ASSERT_TRUE(big) << big.status().to_string();
  EXPECT_EQ(std::string(big->data.view()), pattern(9000));
  EXPECT_EQ(get_str(kA, "d3", "new"), "log-only");
  // And it keeps working: a new version lands above the old ones.
  ASSERT_TRUE(put(kA, "d1", "s", "alpha-4"));
  EXPECT_EQ(get_str(kA, "d1", "s"), "alpha-4");
}

}  // namespace tessera::storage::testing

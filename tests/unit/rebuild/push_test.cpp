// A rebuild push on the wire: the receiver takes an akey's history only if its bulk matches the
// crc32c its sender computed, takes the bulk itself as the history's data (no copy), and marks it
// checked so that the import does not checksum it again (storage's AVerifiedImport... test).
#include <gtest/gtest.h>

#include <cstring>

#include "rebuild/peer.hpp"

using namespace tessera;

namespace {

storage::AkeyExport history() {
  storage::AkeyExport x;
  x.kind = storage::ValueKind::array;
  x.data = Buffer(3 * 4096);
  for (size_t i = 0; i < x.data.size(); ++i) x.data.data()[i] = static_cast<uint8_t>(i * 7);
  x.versions.push_back({100, 0, 8192, false, 0});
  x.versions.push_back({200, 8192, 12288, false, 8192});
  x.versions.push_back({300, 100, 200, true, 0});
  x.akey_punches.push_back(50);
  return x;
}

}  // namespace

TEST(RebuildPush, AGoodPushIsTakenWithItsBulkAndMarkedChecked) {
  const storage::AkeyExport x = history();
  const Buffer body = rebuild::push_body(1, 7, ObjectId{3, 4}, "dk", "ak", x, 0);
  Buffer bulk = x.data.clone();
  const uint8_t* where = bulk.data();
  auto p = rebuild::parse_push(body, std::move(bulk));
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_EQ(p->key, (ObjectId{3, 4}));
  EXPECT_EQ(p->dkey, "dk");
  EXPECT_EQ(p->akey, "ak");
  EXPECT_TRUE(p->x.verified);
  EXPECT_EQ(p->x.data.data(), where);  // the received buffer itself
  ASSERT_EQ(p->x.versions.size(), 3u);
  EXPECT_EQ(p->x.versions[1].epoch, 200u);
  EXPECT_TRUE(p->x.versions[2].punch);
  EXPECT_EQ(p->x.akey_punches, std::vector<uint64_t>{50});
  EXPECT_EQ(std::memcmp(p->x.data.data(), x.data.data(), x.data.size()), 0);
}

TEST(RebuildPush, ABulkThatDoesNotMatchItsSendersChecksumIsRefusedWhereverItDiffers) {
  const storage::AkeyExport x = history();
  const Buffer body = rebuild::push_body(1, 7, ObjectId{3, 4}, "dk", "ak", x, 0);
  for (size_t at : {size_t{0}, size_t{4095}, size_t{8192}, x.data.size() - 1}) {
    Buffer bulk = x.data.clone();
    bulk.data()[at] ^= 0x01;
    auto p = rebuild::parse_push(body, std::move(bulk));
    ASSERT_FALSE(p.is_ok()) << "a flipped bit at byte " << at;
    EXPECT_EQ(p.status().code(), Errc::checksum);
  }
  Buffer shorter(x.data.size() - 1);
  std::memcpy(shorter.data(), x.data.data(), shorter.size());
  EXPECT_EQ(rebuild::parse_push(body, std::move(shorter)).status().code(), Errc::checksum);
}

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "net/frame.hpp"

using namespace tessera;
using namespace tessera::net;

namespace {
Message sample() {
  Message m;
  m.src = {1, 2, 3};
  m.dst = {4, 5, 6};
  m.corr = 77;
  m.protocol = 1;
  m.method = 2;
  m.flags = kMsgReply;
  m.status = Errc::no_space;
  m.error = "full";
  m.reply_to = std::string("\x01\x02\x00\x03", 4);
  uint64_t words[2] = {0x1122334455667788ULL, 42};
  m.body = Buffer(words, sizeof(words));
  m.bulk = Buffer("bulkbytes", 9);
  return m;
}

Buffer whole_frame(const Message& m) {
  auto h = encode_header(m, 9, 10, m.bulk.size());
  EXPECT_TRUE(h.is_ok());
  set_chunk(h->bytes, FrameKind::whole, 0, static_cast<uint32_t>(m.bulk.size()));
  Buffer f(h->bytes.size() + m.bulk.size());
  std::memcpy(f.data(), h->bytes.data(), h->bytes.size());
  std::memcpy(f.data() + h->bytes.size(), m.bulk.data(), m.bulk.size());
  return f;
}
}  // namespace

TEST(Frame, RoundTripsEveryField) {
  Message m = sample();
  Buffer f = whole_frame(m);
  auto d = decode_frame(f.span(), 1 << 20);
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  EXPECT_EQ(d->msg.src, m.src);
  EXPECT_EQ(d->msg.dst, m.dst);
  EXPECT_EQ(d->msg.corr, 77u);
  EXPECT_EQ(d->msg.status, Errc::no_space);
  EXPECT_EQ(d->msg.error, "full");
  EXPECT_EQ(d->msg.reply_to, m.reply_to);
  EXPECT_EQ(d->msg.body.view(), m.body.view());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(d->bulk.data()), d->bulk.size()),
            "bulkbytes");
  EXPECT_EQ(d->pre.sender, 9u);
  EXPECT_EQ(d->pre.msg_id, 10u);
}

TEST(Frame, RejectsTruncatedFramesAtEveryLength) {
  Buffer f = whole_frame(sample());
  for (size_t n = 0; n < f.size(); ++n) {
    auto d = decode_frame({f.data(), n}, 1 << 20);
    EXPECT_FALSE(d.is_ok()) << "accepted a frame truncated to " << n;
  }
}

TEST(Frame, RejectsCorruptionAnywhereInTheHeader) {
  Buffer f = whole_frame(sample());
  size_t header = kPreambleSize;
  Preamble pre;
  std::memcpy(&pre, f.data(), sizeof(pre));
  header += pre.env_len + pre.body_len;
  for (size_t i = 0; i < header; ++i) {
    if (i >= 24 && i < 48) continue;  // sender, msg id, bulk offset: not covered by the crc
    Buffer g = f.clone();
    g.data()[i] ^= 0x40;
    EXPECT_FALSE(decode_frame(g.span(), 1 << 20).is_ok()) << "byte " << i;
  }
}

TEST(Frame, EnforcesTheMessageSizeLimit) {
  Message m = sample();
  m.bulk = Buffer(4096);
  std::memset(m.bulk.data(), 1, 4096);
  Buffer f = whole_frame(m);
  auto d = decode_frame(f.span(), 1024);
  ASSERT_FALSE(d.is_ok());
  EXPECT_EQ(d.status().code(), Errc::too_big);
}

TEST(Frame, ControlSocketsCarryLargerBodiesThanTheFabric) {
  Message m = sample();
  m.bulk = {};
  m.body = Buffer(200 * 1024);  // a pool view with many containers
  std::memset(m.body.data(), 0, m.body.size());
  auto fabric = encode_header(m, 1, 2, 0);
  ASSERT_FALSE(fabric.is_ok());
  EXPECT_EQ(fabric.status().code(), Errc::too_big);
  auto control = encode_header(m, 1, 2, 0, nullptr, kMaxControlHeaderBytes);
  ASSERT_TRUE(control.is_ok()) << control.status().to_string();
  set_chunk(control->bytes, FrameKind::whole, 0, 0);
  EXPECT_FALSE(decode_frame(control->bytes.span(), 1 << 20).is_ok());
  auto d = decode_frame(control->bytes.span(), 1 << 20, {}, kMaxControlHeaderBytes);
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  EXPECT_EQ(d->msg.body.size(), m.body.size());
  m.body = Buffer(kMaxControlHeaderBytes + 8);
  EXPECT_FALSE(encode_header(m, 1, 2, 0, nullptr, kMaxControlHeaderBytes).is_ok());
}

TEST(Frame, RandomBytesNeverDecode) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) {
    size_t n = rng() % 512;
    Buffer b(n);
    for (size_t k = 0; k < n; ++k) b.data()[k] = static_cast<uint8_t>(rng());
    if (n >= 4 && (i % 2) == 0) {  // half of them get a valid magic to go deeper
      uint32_t magic = kFrameMagic;
      std::memcpy(b.data(), &magic, 4);
    }
    EXPECT_FALSE(decode_frame(b.span(), 1 << 20).is_ok());
  }
}

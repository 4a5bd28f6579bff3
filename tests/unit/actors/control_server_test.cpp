// The control socket's replies: a body larger than a fabric frame carries (a pool view of many
// containers) goes through; one larger than a control frame carries fails its request with an
// error, and the connection stays (an engine's join connection: its end would count as the
// engine's death).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>

#include "actors/control_server.hpp"
#include "net/frame.hpp"
#include "net/stream.hpp"

using namespace tessera;

TEST(ControlServer, LargeRepliesPassAndTooLargeOnesFailWithoutClosingTheConnection) {
  std::atomic<int> closed{0};
  ControlServer srv(
      "127.0.0.1:0",
      [](const Message& req, uint64_t) -> Result<Buffer> {
        // method = the reply body's size in KiB
        Buffer body(static_cast<size_t>(req.method) * 1024);
        std::memset(body.data(), 0, body.size());
        return body;
      },
      1 << 20, [&](uint64_t) { ++closed; }, {}, /*insecure=*/true);
  ASSERT_TRUE(srv.start().is_ok());
  auto c = net::ControlConn::open(srv.address(), std::chrono::seconds(30));
  ASSERT_TRUE(c) << c.status().to_string();
  auto small = (*c)->call(1, 1, {});
  ASSERT_TRUE(small) << small.status().to_string();
  EXPECT_EQ(small->body.size(), 1024u);
  // Over the 64 KiB of a fabric frame.
  auto large = (*c)->call(1, 200, {});
  ASSERT_TRUE(large) << large.status().to_string();
  EXPECT_EQ(large->body.size(), 200u * 1024);
  // Over what a control frame carries: an error reply, on the same connection.
  const uint16_t too_large = static_cast<uint16_t>(net::kMaxControlHeaderBytes / 1024 + 1);
  auto refused = (*c)->call(1, too_large, {});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.status().code(), Errc::too_big) << refused.status().to_string();
  EXPECT_NE(refused.status().message().find("cannot be sent"), std::string::npos);
  auto again = (*c)->call(1, 2, {});
  ASSERT_TRUE(again) << again.status().to_string();
  EXPECT_EQ(again->body.size(), 2048u);
  EXPECT_EQ(closed.load(), 0);
  srv.stop();
}

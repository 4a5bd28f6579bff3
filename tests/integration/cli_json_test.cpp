// --json output never breaks on bytes that are not text: a binary value comes back in base 16
// (value_hex), and the command exits 0 instead of aborting (which used to leave the container
// handle open and a crash report behind).
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "tests/integration/cli_system.hpp"

using namespace tessera::testing;
using nlohmann::json;

TEST(CliJson, BinaryValuesComeBackInBase16) {
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "1", "--targets", "1"});
  s.ok({"pool", "create", "P", "--target-size", "64M"});
  s.ok({"cont", "create", "P", "C", "--type", "KV", "--oclass", "S1"});
  const std::string f = s.base() + "/bin";
  std::ofstream(f, std::ios::binary) << std::string("\xff\xfe\x00\x01 ok", 7);
  s.ok({"kv", "put", "--pool", "P", "--cont", "C", "b", "--file", f});
  json g = s.ok({"kv", "get", "--pool", "P", "--cont", "C", "b"});
  EXPECT_EQ(g.value("value_hex", std::string()), "fffe0001206f6b") << g.dump();
  EXPECT_FALSE(g.contains("value")) << g.dump();
  s.ok({"kv", "put", "--pool", "P", "--cont", "C", "t", "text"});
  EXPECT_EQ(s.ok({"kv", "get", "--pool", "P", "--cont", "C", "t"})["value"], "text");
  // No handle was left behind: the container can be destroyed.
  s.ok({"cont", "destroy", "P", "C"});
}

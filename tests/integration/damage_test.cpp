// Damaged copies on disk, through the CLI against a real local system: bytes of stored extents
// flipped in the engines' files while they are stopped. A replica whose copy fails its checksum
// is read around; without a good copy the checksum error is the answer, and it names the rank.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/integration/cli_system.hpp"

using namespace tessera::testing;
using nlohmann::json;

namespace {

// 256 KiB of a marker naming the object: found again in the engines' files to damage it.
std::string payload(int n) {
  std::string marker = "tessera-damage-" + std::to_string(n) + "|";
  std::string out;
  while (out.size() < (256u << 10)) out += marker;
  out.resize(256u << 10);
  return out;
}

// Flips 16 bytes 100 KiB into every stored copy of object `n` in the pool files of `rank`
// (the system stopped). Returns how many copies it damaged.
int damage(const std::string& sys_dir, int rank, int n) {
  const std::string marker = "tessera-damage-" + std::to_string(n) + "|";
  int hits = 0;
  const auto pools = std::filesystem::path(sys_dir) / ("rank" + std::to_string(rank)) / "pools";
  if (!std::filesystem::exists(pools)) return 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(pools)) {
    if (e.path().extension() != ".dat") continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // A copy starts where the marker appears at a 4 KiB boundary (extents are block aligned).
    for (size_t at = file.find(marker); at != std::string::npos;
         at = file.find(marker, at + (256u << 10))) {
      if (at % 4096 != 0) continue;
      int fd = ::open(e.path().c_str(), O_WRONLY);
      EXPECT_GE(fd, 0);
      std::string junk(16, '\xa5');
      EXPECT_EQ(::pwrite(fd, junk.data(), junk.size(), static_cast<off_t>(at + (100u << 10))),
                16);
      ::close(fd);
      ++hits;
    }
  }
  return hits;
}

std::vector<std::string> obj(const char* verb, const std::string& cont, int n) {
  return {"obj", verb, "--pool", "P", "--cont", cont, "--oid", std::to_string(n), "--dkey", "d",
          "--akey", "a"};
}

}  // namespace

TEST(Damage, ReplicaFailingItsChecksumIsReadAroundAndAnOnlyCopyNamesItsRank) {
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "3", "--targets", "1"});
  s.ok({"pool", "create", "P", "--size", "384M"});
  s.ok({"cont", "create", "P", "R", "--type", "KV", "--oclass", "RP_3G1", "--rf", "2"});
  s.ok({"cont", "create", "P", "S", "--type", "KV", "--oclass", "S1"});
  const int kObjects = 6;
  for (int n = 1; n <= kObjects; ++n) {
    const std::string f = s.base() + "/in" + std::to_string(n);
    std::ofstream(f, std::ios::binary) << payload(n);
    auto a = obj("put", "R", n);
    a.insert(a.end(), {"--file", f});
    s.ok(a);
  }
  {
    const std::string f = s.base() + "/in99";
    std::ofstream(f, std::ios::binary) << payload(99);
    auto a = obj("put", "S", 99);
    a.insert(a.end(), {"--file", f});
    s.ok(a);
  }
  s.ok({"system", "stop"});
  // Two of the three copies of every replicated object, and the only copy of the S1 one.
  int damaged = 0;
  for (int n = 1; n <= kObjects; ++n) damaged += damage(s.dir(), 1, n) + damage(s.dir(), 2, n);
  EXPECT_EQ(damaged, 2 * kObjects);
  int only = 0;
  for (int r = 0; r < 3; ++r) only += damage(s.dir(), r, 99);
  EXPECT_EQ(only, 1);
  s.ok({"system", "start"});

  for (int n = 1; n <= kObjects; ++n) {
    const std::string out = s.base() + "/out" + std::to_string(n);
    auto a = obj("get", "R", n);
    a.insert(a.end(), {"--out", out});
    s.ok(a);
    std::ifstream in(out, std::ios::binary);
    std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_TRUE(got == payload(n)) << "object " << n << " read back different bytes";
  }
  // The damaged copies were met (some group led with one) and logged by their engines.
  int logged = 0;
  for (int r = 1; r <= 2; ++r) {
    std::ifstream log(s.dir() + "/rank" + std::to_string(r) + "/engine.log");
    std::string l;
    while (std::getline(log, l)) {
      logged += l.find("rank " + std::to_string(r) + " target 0: extent") != std::string::npos &&
                l.find("fails its crc32c") != std::string::npos;
    }
  }
  EXPECT_GT(logged, 0) << "no read met a damaged copy: the read-around was not exercised";

  std::string e = s.err(obj("get", "S", 99));
  EXPECT_NE(e.find("checksum"), std::string::npos) << e;
  EXPECT_NE(e.find("rank "), std::string::npos) << "the error names the rank: " << e;
}

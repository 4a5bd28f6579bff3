// Damaged copies on disk, through the CLI against a real local system: bytes of stored extents
// flipped in the engines' files while they are stopped. A replica whose copy fails its checksum
// is read around; without a good copy the checksum error is the answer, and it names the rank.
// `pool scrub` and `cont check --repair` heal the damaged copies (an erasure-coded cell from the
// other cells of its stripe).
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "placement/erasure.hpp"
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

// A whole file in one read (the pool files are large; a byte-wise copy takes seconds).
std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::string out(std::filesystem::file_size(p), '\0');
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

// Calls `fn(path, offset, n)` for every stored copy of each object of `ns` in the pool files of
// `rank` (each file read once). A copy starts where the object's marker appears at a 4 KiB
// boundary (extents are block aligned).
template <typename Fn>
void each_copy(const std::string& sys_dir, int rank, const std::vector<int>& ns, Fn fn) {
  const auto pools = std::filesystem::path(sys_dir) / ("rank" + std::to_string(rank)) / "pools";
  if (!std::filesystem::exists(pools)) return;
  for (const auto& e : std::filesystem::recursive_directory_iterator(pools)) {
    if (e.path().extension() != ".dat") continue;
    const std::string file = slurp(e.path());
    for (int n : ns) {
      const std::string marker = "tessera-damage-" + std::to_string(n) + "|";
      for (size_t at = file.find(marker); at != std::string::npos;
           at = file.find(marker, at + (256u << 10))) {
        if (at % 4096 == 0) fn(e.path(), at, file);
      }
    }
  }
}

const std::string kJunk(16, '\xa5');
constexpr size_t kJunkAt = 100u << 10;

// Flips 16 bytes 100 KiB into every stored copy of the objects `ns` in the pool files of `rank`
// (the system stopped). Returns how many copies it damaged.
int damage(const std::string& sys_dir, int rank, const std::vector<int>& ns) {
  int hits = 0;
  each_copy(sys_dir, rank, ns, [&](const std::filesystem::path& p, size_t at, const std::string&) {
    int fd = ::open(p.c_str(), O_WRONLY);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::pwrite(fd, kJunk.data(), kJunk.size(), static_cast<off_t>(at + kJunkAt)), 16);
    ::close(fd);
    ++hits;
  });
  return hits;
}

// How many stored copies of the objects `ns` in the pool files of `rank` still carry the damage
// `damage()` wrote (read through the page cache, so a running engine's repairs show).
int still_damaged(const std::string& sys_dir, int rank, const std::vector<int>& ns) {
  int hits = 0;
  each_copy(sys_dir, rank, ns, [&](const std::filesystem::path&, size_t at, const std::string& f) {
    hits += f.compare(at + kJunkAt, kJunk.size(), kJunk) == 0;
  });
  return hits;
}

std::vector<int> objects(int n) {
  std::vector<int> out;
  for (int i = 1; i <= n; ++i) out.push_back(i);
  return out;
}

std::vector<std::string> obj(const char* verb, const std::string& cont, int n) {
  return {"obj", verb, "--pool", "P", "--cont", cont, "--oid", std::to_string(n), "--dkey", "d",
          "--akey", "a"};
}

// Writes objects 1..n into container R of pool P and object 99 into container S of `s_pool`,
// stops the system, damages two of the three copies of every replicated object (ranks 1 and 2)
// and the only copy of the S1 one, and starts it again.
void write_and_damage(CliSystem& s, int n, const std::string& s_pool) {
  for (int i = 1; i <= n; ++i) {
    const std::string f = s.base() + "/in" + std::to_string(i);
    std::ofstream(f, std::ios::binary) << payload(i);
    auto a = obj("put", "R", i);
    a.insert(a.end(), {"--file", f});
    s.ok(a);
  }
  const std::string f = s.base() + "/in99";
  std::ofstream(f, std::ios::binary) << payload(99);
  auto a = obj("put", "S", 99);
  a[3] = s_pool;
  a.insert(a.end(), {"--file", f});
  s.ok(a);
  s.ok({"system", "stop"});
  const std::vector<int> all = objects(n);
  ASSERT_EQ(damage(s.dir(), 1, all) + damage(s.dir(), 2, all), 2 * n);
  int only = 0;
  for (int r = 0; r < 3; ++r) only += damage(s.dir(), r, {99});
  ASSERT_EQ(only, 1);
  s.ok({"system", "start"});
}

// Reads objects 1..n of container R back: each must be exactly what was written.
void read_back(CliSystem& s, int n) {
  for (int i = 1; i <= n; ++i) {
    const std::string out = s.base() + "/out" + std::to_string(i);
    auto a = obj("get", "R", i);
    a.insert(a.end(), {"--out", out});
    s.ok(a);
    std::ifstream in(out, std::ios::binary);
    std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_TRUE(got == payload(i)) << "object " << i << " read back different bytes";
  }
}

}  // namespace

TEST(Damage, ReplicaFailingItsChecksumIsReadAroundAndAnOnlyCopyNamesItsRank) {
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "3", "--targets", "1"});
  s.ok({"pool", "create", "P", "--size", "384M"});
  s.ok({"cont", "create", "P", "R", "--type", "KV", "--oclass", "RP_3G1", "--rf", "2"});
  s.ok({"cont", "create", "P", "S", "--type", "KV", "--oclass", "S1"});
  const int kObjects = 6;
  ASSERT_NO_FATAL_FAILURE(write_and_damage(s, kObjects, "P"));
  read_back(s, kObjects);
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

namespace {

uint64_t pool_repaired(CliSystem& s, const std::string& pool) {
  const json q = s.ok({"pool", "query", pool});
  return q["pool"]["repair"].value("repaired", uint64_t{0});
}

}  // namespace

// A read that meets a damaged replica repairs it in the background; `pool scrub` finds and
// repairs every other damaged copy from a good replica, and a second pass finds none. Without a
// good copy (S1) the scrub fails and says so.
TEST(Damage, ReadsAndScrubRepairDamagedReplicasFromGoodOnes) {
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "3", "--targets", "1"});
  s.ok({"pool", "create", "P", "--size", "384M"});
  s.ok({"pool", "create", "Q", "--size", "384M"});
  s.ok({"cont", "create", "P", "R", "--type", "KV", "--oclass", "RP_3G1", "--rf", "2"});
  s.ok({"cont", "create", "Q", "S", "--type", "KV", "--oclass", "S1"});
  const int kObjects = 6;
  ASSERT_NO_FATAL_FAILURE(write_and_damage(s, kObjects, "Q"));
  const std::vector<int> all = objects(kObjects);
  // Reads: every one returns the written bytes; those that met a damaged copy queue its repair.
  read_back(s, kObjects);
  // At least one read met a damaged copy (two of three are): its repair completes.
  uint64_t by_reads = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while ((by_reads = pool_repaired(s, "P")) == 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_GT(by_reads, 0u) << "no read repaired the damaged copy it met";

  // The scrub repairs the rest; a second pass finds nothing.
  const json first = s.ok({"pool", "scrub", "P"});
  EXPECT_EQ(first.value("unrepaired", 1), 0) << first.dump();
  EXPECT_GE(first.value("extents", 0), 3 * kObjects) << first.dump();
  const json second = s.ok({"pool", "scrub", "P"});
  EXPECT_EQ(second.value("damaged", 1), 0) << second.dump();
  EXPECT_GE(pool_repaired(s, "P"), static_cast<uint64_t>(2 * kObjects));
  EXPECT_EQ(still_damaged(s.dir(), 1, all) + still_damaged(s.dir(), 2, all), 0)
      << "damaged copies still on disk after the scrub";

  // The only copy of the S1 object: the scrub finds it, cannot repair it, and fails.
  auto [rc, j] = s.run({"pool", "scrub", "Q"});
  EXPECT_NE(rc, 0) << j.dump();
  EXPECT_EQ(j.value("error", std::string()), "checksum mismatch") << j.dump();
  EXPECT_NE(j.value("message", std::string()).find("no good copy"), std::string::npos) << j.dump();
  s.ok({"system", "stop"});
  // Healed for good: the repairs were written to the devices, not only to memory.
  EXPECT_EQ(still_damaged(s.dir(), 1, all) + still_damaged(s.dir(), 2, all), 0);
}

namespace {

// Zeroes, in the pool files of every rank, the stored copy of `cell` (found by its bytes at a
// 4 KiB boundary). Returns how many it zeroed.
int zero_cell(const std::string& sys_dir, const std::string& cell) {
  int hits = 0;
  for (int rank = 0; rank < 8; ++rank) {
    const auto pools = std::filesystem::path(sys_dir) / ("rank" + std::to_string(rank)) / "pools";
    if (!std::filesystem::exists(pools)) continue;
    for (const auto& e : std::filesystem::recursive_directory_iterator(pools)) {
      if (e.path().extension() != ".dat") continue;
      const std::string file = slurp(e.path());
      for (size_t at = file.find(cell); at != std::string::npos; at = file.find(cell, at + 1)) {
        if (at % 4096 != 0) continue;
        const std::string zeros(cell.size(), '\0');
        int fd = ::open(e.path().c_str(), O_WRONLY);
        EXPECT_GE(fd, 0);
        EXPECT_EQ(::pwrite(fd, zeros.data(), zeros.size(), static_cast<off_t>(at)),
                  static_cast<ssize_t>(zeros.size()));
        ::close(fd);
        ++hits;
      }
    }
  }
  return hits;
}

}  // namespace

// `tessera cont check` reads every stored piece of a container back: copies damaged on disk
// while the engines were stopped (two replicas of each replicated object, and the parity cell of
// an erasure-coded stripe zeroed) are reported, and the command fails; `--repair` rewrites them
// from good copies (the parity cell from the stripe's data cells), and the next check finds
// nothing, through a restart.
TEST(Damage, ContCheckFindsDamagedCopiesAndAZeroedParityCellAndRepairsThem) {
  CliSystem s;
  s.ok({"system", "start", "--dir", s.dir(), "--engines", "3", "--targets", "1"});
  s.ok({"pool", "create", "P", "--size", "384M"});
  s.ok({"pool", "create", "Q", "--size", "192M"});
  s.ok({"cont", "create", "P", "R", "--type", "KV", "--oclass", "RP_3G1", "--rf", "2"});
  s.ok({"cont", "create", "P", "E", "--type", "KV", "--oclass", "EC_2P1G1", "--rf", "1",
        "--cell-size", "64K"});
  s.ok({"cont", "create", "Q", "S", "--type", "KV", "--oclass", "S1"});
  const int kObjects = 4;
  // One full stripe of the erasure-coded object: two data cells, and the parity the client
  // computes, which the test computes too to find it on disk.
  constexpr size_t kCell = 64u << 10;
  std::string stripe(2 * kCell, '\0');
  for (size_t i = 0; i < stripe.size(); ++i) stripe[i] = static_cast<char>((i * 131 + i / 977) & 0xff);
  std::string parity(kCell, '\0');
  {
    const uint8_t* d[2] = {reinterpret_cast<const uint8_t*>(stripe.data()),
                           reinterpret_cast<const uint8_t*>(stripe.data() + kCell)};
    uint8_t* p[1] = {reinterpret_cast<uint8_t*>(parity.data())};
    tessera::placement::erasure_code(2, 1).encode(kCell, d, p);
  }
  const std::string ef = s.base() + "/stripe";
  std::ofstream(ef, std::ios::binary) << stripe;
  s.ok({"obj", "put", "--pool", "P", "--cont", "E", "--oid", "7", "--dkey", "d", "--akey", "a",
        "--array", "--file", ef});
  ASSERT_NO_FATAL_FAILURE(write_and_damage(s, kObjects, "Q"));  // stops, damages, starts
  s.ok({"system", "stop"});
  ASSERT_EQ(zero_cell(s.dir(), parity), 1);
  s.ok({"system", "start"});

  // Found: each damaged copy, and the command fails.
  auto [rc, j] = s.run({"cont", "check", "P", "R"});
  EXPECT_NE(rc, 0) << j.dump();
  EXPECT_EQ(j.value("damaged", 0), 2 * kObjects) << j.dump();
  EXPECT_EQ(j.value("error", std::string()), "checksum mismatch") << j.dump();
  EXPECT_FALSE(j.value("consistent", true)) << j.dump();
  auto [erc, ej] = s.run({"cont", "check", "P", "E"});
  EXPECT_NE(erc, 0) << ej.dump();
  EXPECT_EQ(ej.value("damaged", 0), 1) << ej.dump();

  // Repaired from good copies; nothing left for the next check.
  const json fixed = s.ok({"cont", "check", "P", "R", "--repair"});
  EXPECT_EQ(fixed.value("repaired", 0), 2 * kObjects) << fixed.dump();
  const json efixed = s.ok({"cont", "check", "P", "E", "--repair"});
  EXPECT_EQ(efixed.value("repaired", 0), 1) << efixed.dump();
  s.ok({"system", "stop"});
  s.ok({"system", "start"});
  for (const char* c : {"R", "E"}) {
    const json again = s.ok({"cont", "check", "P", c});
    EXPECT_EQ(again.value("damaged", 1), 0) << again.dump();
    EXPECT_EQ(again.value("inconsistent", 1), 0) << again.dump();
    EXPECT_TRUE(again.value("consistent", false)) << again.dump();
  }
  EXPECT_EQ(still_damaged(s.dir(), 1, objects(kObjects)) + still_damaged(s.dir(), 2, objects(kObjects)), 0);
  read_back(s, kObjects);
  const std::string out = s.base() + "/stripe.out";
  s.ok({"obj", "get", "--pool", "P", "--cont", "E", "--oid", "7", "--dkey", "d", "--akey", "a",
        "--array", "--out", out});
  std::ifstream in(out, std::ios::binary);
  std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(got == stripe) << "the erasure-coded object read back different bytes";
}

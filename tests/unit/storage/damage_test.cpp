// Seeded sequences of damage to a closed target file, checked against a model. Each round opens
// the store, checks it against the model, makes a few updates (some values in the data region)
// and sometimes a checkpoint, closes it, and damages one piece of the file as the seed draws:
// nothing, the newest log group, an older log group, a checkpoint header slot, the checkpoint
// directory or one of its chunks, or the superblock.
//
// The property: the next open either refuses with `checksum` (the damage is named and nothing is
// served), or every acknowledged value reads back. The one exception is the newest log group:
// its damage is indistinguishable from a write torn by a crash, and the update it held may read
// as the value before it. A refusal is answered as a reintegration would answer it: a new file
// and an empty model. TESSERA_DAMAGE_SEEDS=N runs N seeds.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "storage/store_internal.hpp"
#include "tests/storage_files.hpp"
#include "tests/unit/storage/store_fixture.hpp"

using namespace tessera;
using namespace tessera::storage;
using namespace tessera::storage::testing;

namespace {

enum class Damage { none, newest_group, older_group, header_slot, directory, chunk, superblock };

const char* name(Damage d) {
  switch (d) {
    case Damage::none:
      return "nothing";
    case Damage::newest_group:
      return "the newest log group";
    case Damage::older_group:
      return "an older log group";
    case Damage::header_slot:
      return "a checkpoint header slot";
    case Damage::directory:
      return "the checkpoint directory";
    case Damage::chunk:
      return "a checkpoint chunk";
    case Damage::superblock:
      return "the superblock";
  }
  return "?";
}

// The newest valid checkpoint header of the file, if any.
std::optional<detail::CkptHeader> newest_header(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return std::nullopt;
  std::optional<detail::CkptHeader> best;
  detail::Superblock sb{};
  char block[4096];
  if (::pread(fd, block, sizeof(block), 0) == 4096) std::memcpy(&sb, block, sizeof(sb));
  for (int i = 0; i < 2; ++i) {
    if (::pread(fd, block, sizeof(block), static_cast<off_t>(detail::kCkptSlot0 + i * 4096)) !=
        4096) {
      continue;
    }
    detail::CkptHeader h;
    std::memcpy(&h, block, sizeof(h));
    if (std::memcmp(h.magic, detail::kCkptMagic, sizeof(detail::kCkptMagic)) != 0) continue;
    if (detail::struct_crc(h) != h.crc || h.incarnation != sb.incarnation) continue;
    if (!best || h.seq > best->seq) best = h;
  }
  ::close(fd);
  return best;
}

// Damages what `d` names; false when the file has no such piece (nothing was done).
bool damage(const std::string& path, Damage d, std::mt19937_64& rng) {
  auto groups = tessera::testing::log_groups(path);
  switch (d) {
    case Damage::none:
      return false;
    case Damage::newest_group:
      return !groups.empty() && tessera::testing::damage_group(path, groups.rbegin()->second);
    case Damage::older_group: {
      if (groups.size() < 2) return false;
      auto it = std::next(groups.begin(), static_cast<long>(rng() % (groups.size() - 1)));
      return tessera::testing::damage_group(path, it->second);
    }
    case Damage::header_slot:
      return tessera::testing::flip_byte(path,
                                         detail::kCkptSlot0 + (rng() % 2) * 4096 + 24 + rng() % 32);
    case Damage::directory: {
      auto h = newest_header(path);
      if (!h || h->chunks == 0) return false;
      return tessera::testing::flip_byte(path, h->dir_disk + rng() % h->dir_len);
    }
    case Damage::chunk: {
      auto h = newest_header(path);
      if (!h || h->chunks == 0) return false;
      char entry[sizeof(detail::DirEntry)];
      int fd = ::open(path.c_str(), O_RDONLY);
      const uint64_t i = rng() % h->chunks;
      bool ok = fd >= 0 && ::pread(fd, entry, sizeof(entry),
                                   static_cast<off_t>(h->dir_disk + i * sizeof(entry))) ==
                               static_cast<ssize_t>(sizeof(entry));
      if (fd >= 0) ::close(fd);
      if (!ok) return false;
      detail::DirEntry de;
      std::memcpy(&de, entry, sizeof(de));
      return tessera::testing::flip_byte(path, de.disk + rng() % de.len);
    }
    case Damage::superblock:
      return tessera::testing::flip_byte(path, 16 + rng() % 48);
  }
  return false;
}

class StoreDamageTest : public StoreTest {};

}  // namespace

TEST_P(StoreDamageTest, DamageIsRefusedOrHarmlessNeverServedAsLoss) {
  const char* env = std::getenv("TESSERA_DAMAGE_SEEDS");
  const int seeds = env != nullptr ? std::atoi(env) : 6;
  const std::string path = dir.file("target.dat");
  constexpr uint64_t kSize = 16ull << 20, kWal = 256ull << 10;
  int refused = 0, harmless = 0, torn = 0;
  for (int s = 1; s <= seeds && !HasFailure(); ++s) {
    const uint64_t seed = static_cast<uint64_t>(s) * 6151;
    std::mt19937_64 rng(seed);
    ::unlink(path.c_str());
    std::map<int, std::vector<std::string>> model;  // per key: the acknowledged values in order
    int tail_key = -1;                              // the key of the newest update
    Damage last = Damage::none;
    for (int round = 0; round < 16 && !HasFailure(); ++round) {
      const std::string where =
          fmt::format("seed {} round {} after damage to {}", seed, round, name(last));
      Status st = open(kSize, kWal);
      if (!st.is_ok()) {
        ASSERT_EQ(st.code(), Errc::checksum) << where << ": " << st.to_string();
        ASSERT_NE(last, Damage::none) << where << ": refused without damage: " << st.to_string();
        ++refused;
        ::unlink(path.c_str());  // formatted anew, as a reintegration does
        model.clear();
        ASSERT_TRUE(open(kSize, kWal).is_ok()) << where;
      } else {
        bool reverted = false;
        for (auto it = model.begin(); it != model.end();) {
          auto& [k, vals] = *it;
          auto r = get({0, 7}, "d", fmt::format("k{}", k));
          const std::string got = r ? std::string(r->data.view()) : std::string();
          if (r && got == vals.back()) {
            ++it;
            continue;
          }
          // Only the newest group's update may be gone, as a torn tail.
          const bool allowed =
              last == Damage::newest_group && k == tail_key &&
              ((vals.size() == 1 && !r) || (vals.size() > 1 && r && got == vals[vals.size() - 2]));
          ASSERT_TRUE(allowed) << where << ": key " << k << " reads "
                               << (r ? fmt::format("\"{:.20}\"", got) : r.status().to_string())
                               << ", acknowledged \"" << vals.back().substr(0, 20) << "\"";
          reverted = true;
          vals.pop_back();
          it = vals.empty() ? model.erase(it) : std::next(it);
        }
        torn += reverted ? 1 : 0;
        harmless += last != Damage::none && !reverted ? 1 : 0;
      }
      // Updates (one log group each), some in the data region, sometimes a checkpoint.
      const int n = 1 + static_cast<int>(rng() % 10);
      for (int i = 0; i < n; ++i) {
        const int k = static_cast<int>(rng() % 12);
        std::string v = fmt::format("s{}r{}i{}:", seed, round, i);
        v.resize(rng() % 4 == 0 ? 5000 + rng() % 8000 : 16 + rng() % 64,
                 static_cast<char>('a' + rng() % 26));
        auto u = put({0, 7}, "d", fmt::format("k{}", k), v);
        ASSERT_TRUE(u.is_ok()) << where << ": " << u.status().to_string();
        model[k].push_back(v);
        tail_key = k;
      }
      if (rng() % 3 == 0) {
        Status c = run_on(target, [&] { return store->checkpoint(); });
        ASSERT_TRUE(c.is_ok()) << where << ": " << c.to_string();
      }
      close();
      last = static_cast<Damage>(rng() % 7);
      if (!damage(path, last, rng)) last = Damage::none;
    }
  }
  // The draws reached every outcome (a seed set that never refused would test little).
  EXPECT_GT(refused, 0);
  EXPECT_GT(harmless, 0);
  std::printf("damage outcomes: %d refused, %d harmless, %d torn tails\n", refused, harmless, torn);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreDamageTest, ::testing::Values("aio"),
                         [](const auto& info) { return info.param; });

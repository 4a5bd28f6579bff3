// The standalone management service's state on disk (mgmt/state_file.hpp): a journal of
// commands and snapshots, read back after clean stops, crashes between a snapshot and emptying
// the journal, appends that never finished, and damage.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>

#include "mgmt/state_file.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using namespace tessera::mgmt;
using nlohmann::json;

namespace {

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
void write(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// The i-th command of a system that grows: two engines join, a pool, then containers and
// handles opened and closed.
json command(const MgmtState& s, int i) {
  if (i < 2) {
    return {{"op", "join"},        {"rank", i},         {"host", "h"},
            {"control_addr", "x"}, {"provider", "tcp"}, {"fabric_addrs", {"0a0b"}}};
  }
  Cred owner;
  if (i == 2) {
    return {{"op", "pool_create"}, {"uuid", "u1"},
            {"label", "p"},        {"target_bytes", 1 << 26},
            {"ranks", {0, 1}},     {"acl", acl_json(default_pool_acl(owner))}};
  }
  const uint32_t pool = s.pool("p")->id;
  if (i % 3 == 0) {
    ContProps props;
    props.label = "c" + std::to_string(i);
    return {{"op", "cont_create"},
            {"pool", pool},
            {"uuid", "cu" + std::to_string(i)},
            {"props", props_json(props)},
            {"acl", acl_json(default_cont_acl(owner))},
            {"epoch", i}};
  }
  if (i % 3 == 1) {
    return {{"op", "handle_open"}, {"pool", pool},
            {"cont", s.pool("p")->containers.begin()->first},
            {"cookie", 1000 + i},  {"perms", 3},
            {"uid", 0}};
  }
  return {{"op", "handle_close"}, {"pool", pool}, {"cookie", 1000 + i - 1}};
}

// Applies commands [from, to) to `s` and records each.
void run(MgmtState& s, StateFile& f, int from, int to) {
  for (int i = from; i < to; ++i) {
    json c = command(s, i);
    ASSERT_TRUE(s.apply(c).is_ok()) << c.dump();
    ASSERT_TRUE(f.record(s, c).is_ok());
  }
}

// The journal's entries: offset and size of each.
std::vector<std::pair<size_t, size_t>> entries(const std::string& journal) {
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t off = 0; off + 16 <= journal.size();) {
    uint32_t len = 0;
    std::memcpy(&len, journal.data() + off, 4);
    out.emplace_back(off, 16 + len);
    off += 16 + len;
  }
  return out;
}

}  // namespace

TEST(StateFile, EveryRecordedCommandIsThereAfterARestart) {
  tessera::testing::TempDir dir;
  const std::string path = dir.path() + "/state.json";
  MgmtState s;
  {
    StateFile f(path);
    run(s, f, 0, 40);
    EXPECT_EQ(f.stats().snapshots, 0u);  // 40 small commands: no snapshot yet
    EXPECT_EQ(f.stats().journal_entries, 40u);
  }
  EXPECT_FALSE(std::filesystem::exists(path));  // the journal alone so far
  StateFile f(path);
  auto back = f.load();
  ASSERT_TRUE(back) << back.status().to_string();
  EXPECT_EQ(back->to_json(), s.to_json());
  EXPECT_EQ(f.stats().replayed, 40u);
  // It goes on where it stopped.
  MgmtState t = std::move(*back);
  run(t, f, 40, 50);
  StateFile g(path);
  auto again = g.load();
  ASSERT_TRUE(again) << again.status().to_string();
  EXPECT_EQ(again->to_json(), t.to_json());
  EXPECT_EQ(again->applied(), 50u);
}

TEST(StateFile, SnapshotsBoundTheJournalARestartReplays) {
  tessera::testing::TempDir dir;
  const std::string path = dir.path() + "/state.json";
  MgmtState s;
  StateFile f(path, StateFile::Options{10, 1u << 20});
  run(s, f, 0, 35);
  EXPECT_EQ(f.stats().snapshots, 3u);
  EXPECT_EQ(f.stats().journal_entries, 5u);
  StateFile g(path);
  auto back = g.load();
  ASSERT_TRUE(back) << back.status().to_string();
  EXPECT_EQ(back->to_json(), s.to_json());
  EXPECT_EQ(g.stats().replayed, 5u);  // the rest came with the snapshot

  // A journal as large as the snapshot also calls for one, however few its entries.
  StateFile h(path, StateFile::Options{1000, 0});
  ASSERT_TRUE(h.load());
  run(s, h, 35, 36);
  EXPECT_EQ(h.stats().snapshots, 0u);
  const uint64_t snap = h.stats().snapshot_bytes;
  int i = 36;
  while (h.stats().snapshots == 0) run(s, h, i, i + 1), ++i;
  EXPECT_LE(i - 35, static_cast<int>(snap / 100));  // entries of 100+ bytes
  EXPECT_EQ(h.stats().journal_entries, 0u);
}

TEST(StateFile, ACrashBetweenASnapshotAndEmptyingTheJournalAppliesNothingTwice) {
  tessera::testing::TempDir dir;
  const std::string path = dir.path() + "/state.json";
  MgmtState s;
  StateFile f(path);
  run(s, f, 0, 12);
  const std::string journal = read(f.journal_path());
  ASSERT_TRUE(f.save(s).is_ok());
  EXPECT_EQ(read(f.journal_path()), "");
  write(f.journal_path(), journal);  // as if the crash came before the journal was emptied
  StateFile g(path);
  auto back = g.load();
  ASSERT_TRUE(back) << back.status().to_string();
  EXPECT_EQ(back->to_json(), s.to_json());
  EXPECT_EQ(g.stats().replayed, 0u);
}

TEST(StateFile, AnAppendThatNeverFinishedIsCutOffAndTheNextFollowsTheLastWholeEntry) {
  tessera::testing::TempDir dir;
  const std::string path = dir.path() + "/state.json";
  MgmtState s;
  StateFile f(path);
  run(s, f, 0, 8);
  const json before = s.to_json();
  const std::string whole = read(f.journal_path());
  // Torn inside its command, cut inside its header, or zeros the file system left.
  for (const std::string& tail :
       {whole.substr(entries(whole)[3].first, 30), whole.substr(entries(whole)[3].first, 7),
        std::string(64, '\0')}) {
    write(f.journal_path(), whole + tail);
    StateFile g(path);
    auto back = g.load();
    ASSERT_TRUE(back) << back.status().to_string();
    EXPECT_EQ(back->to_json(), before);
    EXPECT_EQ(g.stats().cut_bytes, tail.size());
    EXPECT_EQ(read(g.journal_path()), whole);  // cut off on disk
  }
  // A last entry whole in length but torn inside (its checksum fails): cut off too.
  std::string torn = whole;
  torn[entries(whole).back().first + 20] ^= 0x40;
  write(f.journal_path(), torn);
  MgmtState seven;
  {
    StateFile g(path);
    auto back = g.load();
    ASSERT_TRUE(back) << back.status().to_string();
    EXPECT_EQ(back->applied(), 7u);
    // The next command follows the seventh and reads back.
    seven = std::move(*back);
    run(seven, g, 7, 9);
  }
  StateFile h(path);
  auto back = h.load();
  ASSERT_TRUE(back) << back.status().to_string();
  EXPECT_EQ(back->to_json(), seven.to_json());
  EXPECT_EQ(h.stats().cut_bytes, 0u);
}

TEST(StateFile, DamageWithEntriesAfterItIsRefusedAndChangesNothing) {
  tessera::testing::TempDir dir;
  const std::string path = dir.path() + "/state.json";
  MgmtState s;
  StateFile f(path);
  run(s, f, 0, 8);
  std::string j = read(f.journal_path());
  const auto e = entries(j);
  std::string damaged = j;
  damaged[e[2].first + 20] ^= 0x01;
  write(f.journal_path(), damaged);
  StateFile g(path);
  auto back = g.load();
  ASSERT_FALSE(back);
  EXPECT_EQ(back.status().code(), Errc::io_error);
  EXPECT_NE(back.status().message().find(fmt::format("at byte {} is damaged", e[2].first)),
            std::string::npos)
      << back.status().message();
  EXPECT_EQ(read(f.journal_path()), damaged);

  // An entry missing from the middle: commands would be skipped.
  write(f.journal_path(), j.substr(0, e[2].first) + j.substr(e[3].first));
  StateFile h(path);
  auto gap = h.load();
  ASSERT_FALSE(gap);
  EXPECT_NE(gap.status().message().find("commands are missing"), std::string::npos)
      << gap.status().message();
}

// Seeded sequences of commands and crashes, checked against the state the acknowledged
// commands make: a crash during an append (the entry cut anywhere, or zeros where it was
// going), a crash between a snapshot and emptying the journal, or a plain restart, at random
// moments and with snapshot bounds drawn per seed. After every restart the state is exactly
// what the acknowledged commands made, and the next commands follow it.
TEST(StateFile, SeededCrashesKeepEveryAcknowledgedCommandAndNothingElse) {
  for (uint64_t seed = 1; seed <= 24 && !HasFailure(); ++seed) {
    SCOPED_TRACE(fmt::format("seed {}", seed));
    std::mt19937_64 rng(seed);
    tessera::testing::TempDir dir;
    const std::string path = dir.path() + "/state.json";
    const StateFile::Options opts{static_cast<uint32_t>(1 + rng() % 24),
                                  rng() % 2 == 0 ? 0u : 1u << 20};
    auto f = std::make_unique<StateFile>(path, opts);
    MgmtState s;
    json acked = s.to_json();
    int crashes = 0;
    for (int i = 0; i < 240 && !HasFailure(); ++i) {
      const json c = command(s, i);
      if (i < 8 || rng() % 8 != 0) {
        ASSERT_TRUE(s.apply(c).is_ok()) << c.dump();
        ASSERT_TRUE(f->record(s, c).is_ok());
        acked = s.to_json();
        continue;
      }
      ++crashes;
      switch (rng() % 4) {
        case 0:
        case 1: {  // the host dies during the append of `c`: it was never acknowledged
          const std::string before = read(f->journal_path());
          MgmtState next = s;
          ASSERT_TRUE(next.apply(c).is_ok());
          ASSERT_TRUE(f->record(next, c).is_ok());
          const std::string after = read(f->journal_path());
          if (after.size() <= before.size()) {  // it wrote a snapshot: acknowledged after all
            s = std::move(next);
            acked = s.to_json();
            break;
          }
          f.reset();
          const size_t keep = before.size() + 1 + rng() % (after.size() - before.size() - 1);
          std::string torn = after.substr(0, keep);
          if (rng() % 3 == 0) torn += std::string(after.size() - keep, '\0');
          write(path + ".journal", torn);
          break;
        }
        case 2: {  // dies after a snapshot, before the journal was emptied
          const std::string journal = read(f->journal_path());
          ASSERT_TRUE(f->save(s).is_ok());
          f.reset();
          write(path + ".journal", journal);
          break;
        }
        default:
          break;  // a plain restart
      }
      f = std::make_unique<StateFile>(path, opts);
      auto back = f->load();
      ASSERT_TRUE(back) << back.status().to_string();
      ASSERT_EQ(back->to_json(), acked) << "after crash " << crashes << " at command " << i;
      s = std::move(*back);
    }
    EXPECT_GT(crashes, 10);
  }
}

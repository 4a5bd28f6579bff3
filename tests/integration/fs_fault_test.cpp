// The POSIX namespace when the engine coordinating a change dies after the change is durable
// but before its answer leaves (crash point `dtx.leader.committed`, core/crash_point.hpp): the
// client cannot know whether it applied. A create whose conditional insert is sent again finds
// its own entry; an extending write (a transaction whose commit is `uncertain`) is run again,
// which writes the same bytes; an append, an unlink and a rename, which may not run twice, read
// their outcome marks (fs/outcome_marks.hpp) and learn that they committed. None reaches the
// caller as an error, and each is applied once.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>

#include "fs/layout.hpp"
#include "fs/namespace.hpp"
#include "placement/layout.hpp"
#include "tests/integration/local_cluster.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using namespace tessera::testing;
using tessera::fs::Ino;
using tessera::fs::Namespace;

namespace {

constexpr uint32_t kEngines = 4;

struct FaultFs {
  TempDir dir;
  std::unique_ptr<LocalSystem> sys;
  Tank tank;
  std::unique_ptr<Namespace> ns;

  FaultFs() {
    sys = std::make_unique<LocalSystem>(dir.path(), kEngines, 2);
    // Three copies, two failures allowed: both crashes below leave every group writable.
    open_tank(*sys, kEngines, cont_props("fs", "RP_3GX", 2, mgmt::ContType::posix, 4096), tank);
    if (!tank.cont) return;
    auto m = Namespace::mount(*tank.cont, fs::Cred{});
    EXPECT_TRUE(m) << m.error().msg;
    if (m) ns = std::move(*m);
  }

  // The rank leading (oid, dkey)'s group now: its first member holding complete data.
  int64_t leader(ObjectId oid, const std::string& dkey) {
    auto view = tank.mc->pool_query("tank");
    EXPECT_TRUE(view);
    if (!view) return -1;
    auto place = placement::place(oid, view->pool.map);
    EXPECT_TRUE(place);
    if (!place) return -1;
    for (const auto& p : place->dkey(dkey)) {
      if (p.complete && p.home.available) return p.home.rank;
    }
    return -1;
  }

  // Waits until `dead` is no longer joined and the pool map has settled around its death (no
  // rebuild running, nothing moving), so that the groups a test picks next keep their leaders.
  void settle(int64_t dead) {
    ASSERT_TRUE(wait_gone(*tank.mc, {static_cast<uint32_t>(dead)}));
    auto v = wait_pool(*tank.mc, "tank", [](const mgmt::PoolView& p) {
      return p.pool.rebuild.state != "busy" && !p.pool.map.moving();
    });
    ASSERT_FALSE(v.pool.map.moving()) << "the rebuild after the death did not finish";
  }

  // Restarts `rank` cleanly (its targets stay in the map) with `spec` armed in it alone, and
  // waits until `joined` engines are joined again.
  void arm(uint32_t rank, const std::string& spec, size_t joined) {
    ASSERT_NO_FATAL_FAILURE(restart_armed(*sys, rank, spec));
    ASSERT_TRUE(sys->wait_joined(joined));
  }
};

// "%hh" for every byte: the crash point's spelling of a binary key.
std::string escaped(const std::string& key) {
  std::string out;
  for (unsigned char ch : key) out += fmt::format("%{:02x}", ch);
  return out;
}

TEST(FsFault, ACreateAndAWriteWhoseCoordinatorDiesAfterCommittingSucceedOnce) {
  FaultFs f;
  ASSERT_TRUE(f.ns);
  const fs::Cred root{};

  // Names whose entry's group is led by an engine other than rank 0 (which hosts the
  // management service): the first of victim-0, victim-1, ...
  std::string name;
  int64_t entry_leader = -1;
  for (int i = 0; i < 64 && entry_leader <= 0; ++i) {
    name = fmt::format("victim-{}", i);
    entry_leader = f.leader(f.ns->inode_oid(fs::kRootIno), name);
  }
  ASSERT_GT(entry_leader, 0);
  ASSERT_NO_FATAL_FAILURE(
      f.arm(static_cast<uint32_t>(entry_leader), "dtx.leader.committed:" + name, kEngines));

  // The create: its entry's insert commits, the leader dies, the client sends it again to the
  // next leader, which finds the name taken by this very inode.
  auto a = f.ns->mknod(fs::kRootIno, name, S_IFREG | 0644, root);
  ASSERT_TRUE(a) << a.error().msg;
  EXPECT_FALSE(f.sys->engine(static_cast<uint32_t>(entry_leader)).alive())
      << "the crash point was not reached: the test did not test anything";
  auto l = f.ns->lookup(fs::kRootIno, name, root);
  ASSERT_TRUE(l) << l.error().msg;
  EXPECT_EQ(l->ino, a->ino);

  // The write: find a file whose first chunk is led by a live engine other than rank 0.
  Ino file = a->ino;
  int64_t data_leader = f.leader(f.ns->data_oid(file), fs::chunk_dkey(0));
  for (int i = 0; i < 64 && (data_leader <= 0 || data_leader == entry_leader); ++i) {
    auto b = f.ns->mknod(fs::kRootIno, fmt::format("data-{}", i), S_IFREG | 0644, root);
    ASSERT_TRUE(b) << b.error().msg;
    file = b->ino;
    data_leader = f.leader(f.ns->data_oid(file), fs::chunk_dkey(0));
  }
  ASSERT_GT(data_leader, 0);
  ASSERT_NE(data_leader, entry_leader);
  ASSERT_NO_FATAL_FAILURE(f.arm(static_cast<uint32_t>(data_leader),
                                "dtx.leader.committed:" + escaped(fs::chunk_dkey(0)),
                                kEngines - 1));

  // An extending write is one transaction (data and size); its coordinator dies once it is
  // committed. The caller sees success, and the bytes and the size are there once.
  std::string data(100 * 1024, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + i * 7 % 26);
  auto w = f.ns->write(file, 0, std::span<const char>(data));
  ASSERT_TRUE(w) << w.error().msg;
  EXPECT_EQ(*w, 0u);
  EXPECT_FALSE(f.sys->engine(static_cast<uint32_t>(data_leader)).alive())
      << "the crash point was not reached: the test did not test anything";
  auto st = f.ns->getattr(file);
  ASSERT_TRUE(st) << st.error().msg;
  EXPECT_EQ(st->size, data.size());
  std::string back(data.size() + 10, 'x');
  auto r = f.ns->read(file, 0, std::span<char>(back));
  ASSERT_TRUE(r) << r.error().msg;
  ASSERT_EQ(*r, data.size());
  back.resize(*r);
  EXPECT_TRUE(back == data) << "the file's bytes differ after the replay";
}

}  // namespace

namespace {

// An appending write whose coordinator dies may not simply be run again (if it committed, it
// would append twice). Dying right after committing, its outcome mark says it committed; dying
// once its own part is prepared and before asking the others, the mark's read finds it never
// commits, and it runs again. Either way the caller sees success with the bytes in the file
// exactly once.
TEST(FsFault, AnAppendWhoseCoordinatorDiesBeforeOrAfterCommittingIsAppliedOnce) {
  FaultFs f;
  ASSERT_TRUE(f.ns);
  const fs::Cred root{};
  int64_t dead = -1;
  size_t joined = kEngines;
  for (const char* point : {"dtx.leader.local", "dtx.leader.committed"}) {
    SCOPED_TRACE(point);
    if (dead >= 0) {
      ASSERT_NO_FATAL_FAILURE(f.settle(dead));
    }
    Ino file = 0;
    int64_t leader = -1;
    for (int i = 0; i < 64 && (leader <= 0 || leader == dead); ++i) {
      auto a = f.ns->mknod(fs::kRootIno, fmt::format("{}-log-{}", point, i), S_IFREG | 0644, root);
      ASSERT_TRUE(a) << a.error().msg;
      file = a->ino;
      leader = f.leader(f.ns->data_oid(file), fs::chunk_dkey(0));
    }
    ASSERT_GT(leader, 0);
    ASSERT_NE(leader, dead);
    const std::string head = "first line\n", tail = "second line\n";
    ASSERT_TRUE(f.ns->write(file, 0, std::span<const char>(head)));
    ASSERT_NO_FATAL_FAILURE(f.arm(static_cast<uint32_t>(leader),
                                  std::string(point) + ":" + escaped(fs::chunk_dkey(0)), joined));
    auto w = f.ns->write(file, 0, std::span<const char>(tail), true);
    EXPECT_FALSE(f.sys->engine(static_cast<uint32_t>(leader)).alive())
        << "the crash point was not reached: the test did not test anything";
    ASSERT_TRUE(w) << w.error().msg;
    EXPECT_EQ(*w, head.size());
    std::string back(256, 'x');
    auto r = f.ns->read(file, 0, std::span<char>(back));
    ASSERT_TRUE(r) << r.error().msg;
    back.resize(*r);
    EXPECT_EQ(back, head + tail) << "the append is in the file once";
    dead = leader;
    --joined;
  }
}

// An unlink and a rename whose coordinators die right after committing: run again, the unlink
// would find no name (ENOENT) or drop a second link, the rename would find no source. Their
// outcome marks say they committed: both succeed, each applied once.
TEST(FsFault, AnUnlinkAndARenameWhoseCoordinatorsDieAfterCommittingSucceedOnce) {
  FaultFs f;
  ASSERT_TRUE(f.ns);
  const fs::Cred root{};
  const ObjectId dir = f.ns->inode_oid(fs::kRootIno);

  // The unlink of one of a file's two names; the transaction's first change is the entry's
  // removal, so its coordinator leads the entry's group.
  std::string name;
  int64_t unlink_leader = -1;
  for (int i = 0; i < 64 && unlink_leader <= 0; ++i) {
    name = fmt::format("twice-{}", i);
    unlink_leader = f.leader(dir, name);
  }
  ASSERT_GT(unlink_leader, 0);
  auto a = f.ns->mknod(fs::kRootIno, name, S_IFREG | 0644, root);
  ASSERT_TRUE(a) << a.error().msg;
  ASSERT_TRUE(f.ns->link(a->ino, fs::kRootIno, name + ".keep", root));
  ASSERT_NO_FATAL_FAILURE(f.arm(static_cast<uint32_t>(unlink_leader),
                                "dtx.leader.committed:" + escaped(name), kEngines));
  auto u = f.ns->unlink(fs::kRootIno, name, root);
  EXPECT_FALSE(f.sys->engine(static_cast<uint32_t>(unlink_leader)).alive())
      << "the crash point was not reached: the test did not test anything";
  ASSERT_TRUE(u) << u.error().msg;
  EXPECT_EQ(u->ino, a->ino);
  EXPECT_FALSE(u->last_link) << "the other name still holds the inode";
  EXPECT_EQ(f.ns->lookup(fs::kRootIno, name, root).error().no, ENOENT);
  auto kept = f.ns->lookup(fs::kRootIno, name + ".keep", root);
  ASSERT_TRUE(kept) << kept.error().msg;
  EXPECT_EQ(kept->nlink, 1u) << "the link count dropped once";

  // The rename: its first change writes the source inode (its ctime), so its coordinator leads
  // that inode's group; a file whose group a live engine other than rank 0 leads.
  ASSERT_NO_FATAL_FAILURE(f.settle(unlink_leader));
  Ino src = 0;
  std::string from;
  int64_t rename_leader = -1;
  for (int i = 0; i < 64 && (rename_leader <= 0 || rename_leader == unlink_leader); ++i) {
    from = fmt::format("move-{}", i);
    auto m = f.ns->mknod(fs::kRootIno, from, S_IFREG | 0644, root);
    ASSERT_TRUE(m) << m.error().msg;
    src = m->ino;
    rename_leader = f.leader(f.ns->inode_oid(src), std::string(fs::kInodeDkey));
  }
  ASSERT_GT(rename_leader, 0);
  ASSERT_NE(rename_leader, unlink_leader);
  ASSERT_NO_FATAL_FAILURE(f.arm(static_cast<uint32_t>(rename_leader),
                                "dtx.leader.committed:" + escaped(std::string(fs::kInodeDkey)),
                                kEngines - 1));
  auto r = f.ns->rename(fs::kRootIno, from, fs::kRootIno, from + ".moved", 0, root);
  EXPECT_FALSE(f.sys->engine(static_cast<uint32_t>(rename_leader)).alive())
      << "the crash point was not reached: the test did not test anything";
  ASSERT_TRUE(r) << r.error().msg;
  EXPECT_EQ(f.ns->lookup(fs::kRootIno, from, root).error().no, ENOENT);
  auto moved = f.ns->lookup(fs::kRootIno, from + ".moved", root);
  ASSERT_TRUE(moved) << moved.error().msg;
  EXPECT_EQ(moved->ino, src);
  EXPECT_EQ(moved->nlink, 1u);
}

}  // namespace

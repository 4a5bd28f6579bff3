// The POSIX namespace (fs/namespace.hpp, docs/POSIX.md) on real engines: file and directory
// semantics, permissions as an unprivileged caller, paged listings, chunked files spread over
// targets, erasure-coded containers, a second mount seeing the first one's files, and a seeded
// random sequence of operations checked against the local file system doing the same.
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "client/tessera.h"
#include "fs/namespace.hpp"
#include "tests/integration/local_cluster.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using namespace tessera::testing;
using tessera::fs::Attr;
using tessera::fs::Cred;
using tessera::fs::Ino;
using tessera::fs::Namespace;

namespace {

// Three engines of two targets, pool "tank" over all of them.
struct FsSystem {
  TempDir dir;
  std::unique_ptr<LocalSystem> sys;
  std::unique_ptr<MgmtClient> mc;
  std::unique_ptr<Client> cl;

  FsSystem() {
    sys = std::make_unique<LocalSystem>(dir.path(), 3, 2);
    EXPECT_TRUE(sys->wait_joined(3));
    mc = std::make_unique<MgmtClient>(sys->mgmt());
    auto pool = mc->pool_create("tank", 64ull << 20);
    EXPECT_TRUE(pool) << pool.status().to_string();
    ClientOptions co;
    co.engine = sys->mgmt();
    auto k = Client::connect_system(co);
    EXPECT_TRUE(k) << k.status().to_string();
    if (k) cl = std::move(*k);
  }
  std::unique_ptr<Container> container(const std::string& label, const char* oclass,
                                       uint32_t rf = 1,
                                       mgmt::ContType type = mgmt::ContType::posix) {
    auto have = mc->cont_query("tank", label);
    if (!have) {
      auto made = mc->cont_create("tank", cont_props(label, oclass, rf, type, 4096));
      EXPECT_TRUE(made) << made.status().to_string();
    }
    auto c = cl->open_container("tank", label, true);
    EXPECT_TRUE(c) << c.status().to_string();
    return c ? std::move(*c) : nullptr;
  }
};

Cred root() {
  return {};
}
Cred user(uint32_t uid, uint32_t gid = 100) {
  return {uid, gid, {}};
}

std::string pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  std::minstd_rand r(seed + 1);
  for (auto& c : s) c = static_cast<char>('a' + r() % 26);
  return s;
}

std::string read_all(Namespace& ns, Ino ino) {
  auto a = ns.getattr(ino);
  EXPECT_TRUE(a) << a.error().msg;
  if (!a) return {};
  std::string buf(a->size, '\0');
  auto n = ns.read(ino, 0, buf);
  EXPECT_TRUE(n) << n.error().msg;
  if (!n) return {};
  buf.resize(*n);
  return buf;
}

#define ASSERT_FS_OK(r) ASSERT_TRUE(r) << (r).error().msg
#define EXPECT_ERRNO(r, e) \
  EXPECT_EQ((r).error().no, (e)) << "expected " << strerror(e) << ", got: " << (r).error().msg

TEST(Fs, FilesDirectoriesLinksAndRenames) {
  FsSystem h;
  ASSERT_TRUE(h.cl);
  auto c = h.container("fs", "RP_2G1");
  ASSERT_TRUE(c);
  auto m = Namespace::mount(*c, root(), {.chunk_size = 4096});
  ASSERT_FS_OK(m);
  Namespace& ns = **m;
  const Cred r = root();

  auto d = ns.mkdir(fs::kRootIno, "dir", 0755, r);
  ASSERT_FS_OK(d);
  EXPECT_TRUE(d->is_dir());
  EXPECT_ERRNO(ns.mkdir(fs::kRootIno, "dir", 0755, r), EEXIST);
  auto f = ns.mknod(d->ino, "file", S_IFREG | 0644, r);
  ASSERT_FS_OK(f);
  EXPECT_ERRNO(ns.mknod(d->ino, "file", S_IFREG | 0644, r), EEXIST);  // O_EXCL

  // Data across chunks (4 KiB), a sparse region read as zeros, truncate and extend.
  const std::string a = pattern(10000, 1);
  ASSERT_FS_OK(ns.write(f->ino, 0, a));
  EXPECT_EQ(read_all(ns, f->ino), a);
  ASSERT_FS_OK(ns.write(f->ino, 20000, std::string("tail")));
  auto st = ns.getattr(f->ino);
  ASSERT_FS_OK(st);
  EXPECT_EQ(st->size, 20004u);
  std::string all = read_all(ns, f->ino);
  EXPECT_EQ(all.substr(0, 10000), a);
  EXPECT_EQ(all.substr(10000, 10000), std::string(10000, '\0'));
  EXPECT_EQ(all.substr(20000), "tail");
  ASSERT_FS_OK(ns.setattr(f->ino, {.set_size = true, .size = 5000}, r));
  ASSERT_FS_OK(ns.setattr(f->ino, {.set_size = true, .size = 9000}, r));
  all = read_all(ns, f->ino);
  ASSERT_EQ(all.size(), 9000u);
  EXPECT_EQ(all.substr(0, 5000), a.substr(0, 5000));
  EXPECT_EQ(all.substr(5000), std::string(4000, '\0')) << "truncated bytes came back";

  // Appends from several threads never overwrite each other.
  auto log = ns.mknod(d->ino, "log", S_IFREG | 0644, r);
  ASSERT_FS_OK(log);
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < 8; ++i) {
        auto w = ns.write(log->ino, 0, fmt::format("{}{:02}\n", t, i), true);
        EXPECT_TRUE(w) << w.error().msg;
      }
    });
  }
  for (auto& t : ts) t.join();
  const std::string lines = read_all(ns, log->ino);
  EXPECT_EQ(lines.size(), 3u * 8u * 4u);
  for (int t = 0; t < 3; ++t) {
    for (int i = 0; i < 8; ++i) {
      EXPECT_NE(lines.find(fmt::format("{}{:02}\n", t, i)), std::string::npos) << t << " " << i;
    }
  }

  // Hard links count, and an inode outlives its last link until reclaimed.
  auto l = ns.link(f->ino, fs::kRootIno, "hard", r);
  ASSERT_FS_OK(l);
  EXPECT_EQ(l->nlink, 2u);
  EXPECT_ERRNO(ns.link(d->ino, fs::kRootIno, "dirlink", r), EPERM);
  auto u = ns.unlink(d->ino, "file", r);
  ASSERT_FS_OK(u);
  EXPECT_FALSE(u->last_link);
  EXPECT_EQ(ns.getattr(f->ino)->nlink, 1u);
  u = ns.unlink(fs::kRootIno, "hard", r);
  ASSERT_FS_OK(u);
  EXPECT_TRUE(u->last_link);
  EXPECT_EQ(read_all(ns, f->ino).size(), 9000u) << "an unlinked open file stays readable";
  ASSERT_TRUE(ns.reclaim(f->ino).ok());
  EXPECT_ERRNO(ns.getattr(f->ino), ENOENT);

  // Errors of the namespace.
  EXPECT_ERRNO(ns.lookup(fs::kRootIno, std::string(256, 'n'), r), ENAMETOOLONG);
  EXPECT_ERRNO(ns.mknod(fs::kRootIno, std::string(256, 'n'), S_IFREG | 0644, r), ENAMETOOLONG);
  EXPECT_ERRNO(ns.unlink(fs::kRootIno, "dir", r), EISDIR);
  EXPECT_ERRNO(ns.rmdir(d->ino, "log", r), ENOTDIR);
  EXPECT_ERRNO(ns.rmdir(fs::kRootIno, "dir", r), ENOTEMPTY);
  EXPECT_ERRNO(ns.mkdir(log->ino, "x", 0755, r), ENOTDIR);
  EXPECT_ERRNO(ns.read(d->ino, 0, std::span<char>()), EISDIR);
  EXPECT_ERRNO(ns.lookup(fs::kRootIno, "missing", r), ENOENT);

  // Symlinks: followed in the middle of a path, a loop is ELOOP.
  ASSERT_FS_OK(ns.symlink(fs::kRootIno, "to-dir", "dir", r));
  auto via = ns.resolve("/to-dir/log", r);
  ASSERT_FS_OK(via);
  EXPECT_EQ(via->ino, log->ino);
  ASSERT_FS_OK(ns.symlink(fs::kRootIno, "loop1", "loop2", r));
  ASSERT_FS_OK(ns.symlink(fs::kRootIno, "loop2", "/loop1", r));
  EXPECT_ERRNO(ns.resolve("/loop1", r), ELOOP);
  auto lnk = ns.resolve("/loop1", r, false);
  ASSERT_FS_OK(lnk);
  EXPECT_EQ(*ns.readlink(lnk->ino), "loop2");

  // Rename: across directories, over an existing file (its inode loses the link), over an
  // empty directory, never below itself.
  auto sub = ns.mkdir(d->ino, "sub", 0755, r);
  ASSERT_FS_OK(sub);
  auto g = ns.mknod(fs::kRootIno, "g", S_IFREG | 0600, r);
  ASSERT_FS_OK(g);
  ASSERT_FS_OK(ns.write(g->ino, 0, std::string("gee")));
  auto victim = ns.mknod(sub->ino, "v", S_IFREG | 0600, r);
  ASSERT_FS_OK(victim);
  auto rn = ns.rename(fs::kRootIno, "g", sub->ino, "v", 0, r);
  ASSERT_FS_OK(rn);
  EXPECT_EQ(rn->ino, victim->ino);
  EXPECT_TRUE(rn->last_link);
  EXPECT_ERRNO(ns.lookup(fs::kRootIno, "g", r), ENOENT);
  EXPECT_EQ(read_all(ns, ns.lookup(sub->ino, "v", r)->ino), "gee");
  ASSERT_FS_OK(ns.mkdir(fs::kRootIno, "other", 0755, r));
  EXPECT_ERRNO(ns.rename(sub->ino, "v", fs::kRootIno, "other", 0, r), EISDIR);
  // Over a directory holding the source: never empty (the kernel's answer too).
  EXPECT_ERRNO(ns.rename(sub->ino, "v", fs::kRootIno, "dir", 0, r), ENOTEMPTY);
  EXPECT_ERRNO(ns.rename(fs::kRootIno, "dir", sub->ino, "moved", 0, r), EINVAL);
  auto empty = ns.mkdir(fs::kRootIno, "empty", 0755, r);
  ASSERT_FS_OK(empty);
  ASSERT_FS_OK(ns.rename(d->ino, "sub", fs::kRootIno, "empty", 0, r));
  EXPECT_EQ(ns.lookup(fs::kRootIno, "empty", r)->ino, sub->ino);
  EXPECT_EQ(ns.getattr(sub->ino)->parent, fs::kRootIno);
  EXPECT_ERRNO(ns.rename(fs::kRootIno, "empty", fs::kRootIno, "to-dir", RENAME_NOREPLACE, r),
               EEXIST);

  // Extended attributes.
  ASSERT_TRUE(ns.setxattr(log->ino, "user.a", "1", fs::XattrMode::create, r).ok());
  EXPECT_ERRNO(ns.setxattr(log->ino, "user.a", "2", fs::XattrMode::create, r), EEXIST);
  EXPECT_ERRNO(ns.setxattr(log->ino, "user.b", "2", fs::XattrMode::replace, r), ENODATA);
  ASSERT_TRUE(ns.setxattr(log->ino, "user.empty", "", fs::XattrMode::any, r).ok());
  EXPECT_EQ(*ns.getxattr(log->ino, "user.a"), "1");
  EXPECT_EQ(*ns.getxattr(log->ino, "user.empty"), "");
  EXPECT_EQ(*ns.listxattr(log->ino), (std::vector<std::string>{"user.a", "user.empty"}));
  ASSERT_TRUE(ns.removexattr(log->ino, "user.a", r).ok());
  EXPECT_ERRNO(ns.getxattr(log->ino, "user.a"), ENODATA);
  EXPECT_ERRNO(ns.removexattr(log->ino, "user.a", r), ENODATA);

  // Times: an old mtime set by setattr moves to now with a write; a directory's with an entry.
  ASSERT_FS_OK(ns.setattr(log->ino, {.set_atime = true, .set_mtime = true,
                                     .atime_ns = 1'000'000'000, .mtime_ns = 1'000'000'000}, r));
  EXPECT_EQ(ns.getattr(log->ino)->mtime_ns, 1'000'000'000);
  ASSERT_FS_OK(ns.write(log->ino, 0, std::string("x")));
  EXPECT_GT(ns.getattr(log->ino)->mtime_ns, 1'000'000'000);
  ASSERT_FS_OK(ns.setattr(d->ino, {.set_mtime = true, .mtime_ns = 1'000'000'000}, r));
  ASSERT_FS_OK(ns.mknod(d->ino, "new", S_IFREG | 0644, r));
  EXPECT_GT(ns.getattr(d->ino)->mtime_ns, 1'000'000'000);

  auto sf = ns.statfs();
  ASSERT_FS_OK(sf);
  EXPECT_GT(sf->blocks, 0u);
  EXPECT_LE(sf->blocks_free, sf->blocks);
}

TEST(Fs, PermissionsAsAnUnprivilegedCaller) {
  FsSystem h;
  ASSERT_TRUE(h.cl);
  auto c = h.container("perm", "RP_2G1");
  ASSERT_TRUE(c);
  auto m = Namespace::mount(*c, root());
  ASSERT_FS_OK(m);
  Namespace& ns = **m;
  const Cred r = root(), alice = user(1000), bob = user(1001);

  // The root directory is root's, 0755: others cannot create in it.
  EXPECT_ERRNO(ns.mknod(fs::kRootIno, "x", S_IFREG | 0644, alice), EACCES);
  auto home = ns.mkdir(fs::kRootIno, "alice", 0700, r);
  ASSERT_FS_OK(home);
  ASSERT_FS_OK(ns.setattr(home->ino, {.set_uid = true, .set_gid = true, .uid = 1000, .gid = 100},
                          r));
  auto f = ns.mknod(home->ino, "mine", S_IFREG | 0600, alice);
  ASSERT_FS_OK(f);
  EXPECT_EQ(f->uid, 1000u);
  EXPECT_ERRNO(ns.lookup(home->ino, "mine", bob), EACCES);  // 0700 directory
  EXPECT_ERRNO(ns.access(f->ino, R_OK, bob), EACCES);
  EXPECT_TRUE(ns.access(f->ino, R_OK | W_OK, alice).ok());
  EXPECT_TRUE(ns.access(f->ino, R_OK | W_OK, r).ok());
  EXPECT_ERRNO(ns.setattr(f->ino, {.set_uid = true, .uid = 1001}, alice), EPERM);  // chown
  EXPECT_ERRNO(ns.setattr(f->ino, {.set_mode = true, .mode = 0777}, bob), EPERM);  // chmod
  ASSERT_FS_OK(ns.setattr(f->ino, {.set_mode = true, .mode = 0644}, alice));
  EXPECT_TRUE(ns.access(f->ino, R_OK, bob).ok());
  EXPECT_ERRNO(ns.access(f->ino, W_OK, bob), EACCES);
  EXPECT_ERRNO(ns.setattr(f->ino, {.set_size = true, .size = 0}, bob), EACCES);
  EXPECT_ERRNO(ns.setxattr(f->ino, "user.k", "v", fs::XattrMode::any, bob), EACCES);
  EXPECT_ERRNO(ns.setxattr(f->ino, "trusted.k", "v", fs::XattrMode::any, alice), EPERM);

  // A sticky, world-writable directory: bob cannot remove or rename alice's file.
  auto tmp = ns.mkdir(fs::kRootIno, "tmp", 01777, r);
  ASSERT_FS_OK(tmp);
  ASSERT_FS_OK(ns.mknod(tmp->ino, "a", S_IFREG | 0644, alice));
  EXPECT_ERRNO(ns.unlink(tmp->ino, "a", bob), EPERM);
  EXPECT_ERRNO(ns.rename(tmp->ino, "a", tmp->ino, "b", 0, bob), EPERM);
  ASSERT_FS_OK(ns.unlink(tmp->ino, "a", alice));
  // A set-group-ID directory hands its group down.
  auto shared = ns.mkdir(fs::kRootIno, "shared", 02777, r);
  ASSERT_FS_OK(shared);
  ASSERT_FS_OK(ns.setattr(shared->ino, {.set_gid = true, .gid = 500}, r));
  auto sf = ns.mknod(shared->ino, "s", S_IFREG | 0644, alice);
  ASSERT_FS_OK(sf);
  EXPECT_EQ(sf->gid, 500u);
}

TEST(Fs, LargeDirectoriesListInPagesAndFilesSpreadOverTargets) {
  FsSystem h;
  ASSERT_TRUE(h.cl);
  auto c = h.container("big", "RP_2G1");
  ASSERT_TRUE(c);
  auto m = Namespace::mount(*c, root(), {.chunk_size = 4096});
  ASSERT_FS_OK(m);
  Namespace& ns = **m;
  auto d = ns.mkdir(fs::kRootIno, "many", 0755, root());
  ASSERT_FS_OK(d);
  std::set<std::string> want;
  std::vector<std::thread> ts;
  std::mutex mu;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < 75; ++i) {
        const std::string n = fmt::format("f{}-{:03}", t, i);
        auto a = ns.mknod(d->ino, n, S_IFREG | 0644, root());
        EXPECT_TRUE(a) << a.error().msg;
        std::lock_guard lk(mu);
        want.insert(n);
      }
    });
  }
  for (auto& t : ts) t.join();
  std::multiset<std::string> seen;
  std::set<Ino> inos;
  std::string anchor;
  int pages = 0;
  for (;;) {
    auto pg = ns.readdir(d->ino, anchor, 32);
    ASSERT_FS_OK(pg);
    ++pages;
    for (const auto& e : pg->entries) {
      seen.insert(e.name);
      inos.insert(e.ino);
      EXPECT_EQ(e.type, static_cast<uint32_t>(S_IFREG));
    }
    if (pg->done) break;
    anchor = pg->anchor;
  }
  EXPECT_GE(pages, 300 / 32);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), want);
  EXPECT_EQ(seen.size(), want.size()) << "an entry listed twice";
  EXPECT_EQ(inos.size(), want.size()) << "two files got one inode number";

  // A file of 64 chunks: its data object is of the GX class, so its chunks land in several
  // redundancy groups, on more than one engine.
  auto f = ns.mknod(fs::kRootIno, "spread", S_IFREG | 0644, root());
  ASSERT_FS_OK(f);
  const std::string data = pattern(64 * 4096, 7);
  ASSERT_FS_OK(ns.write(f->ino, 0, data));
  EXPECT_EQ(read_all(ns, f->ino), data);
  auto view = h.mc->pool_query("tank");
  ASSERT_TRUE(view);
  const ObjectId doid = placement::with_class(
      ObjectId{static_cast<uint32_t>(fs::ObjTag::data), f->ino},
      placement::find_class("RP_2GX")->id);
  auto place = placement::place(doid, view->pool.map);
  ASSERT_TRUE(place);
  std::set<uint32_t> ranks;
  for (uint64_t k = 0; k < 64; ++k) {
    for (const auto& p : place->dkey(fs::chunk_dkey(k))) ranks.insert(p.home.rank);
  }
  EXPECT_EQ(ranks.size(), 3u) << "a 64-chunk file should reach every engine";
  auto chunks = c->list_all(ListScope::dkeys, doid);
  ASSERT_TRUE(chunks) << chunks.status().to_string();
  EXPECT_EQ(chunks->size(), 64u) << "the file's data is not where the layout says";
}

TEST(Fs, ErasureCodedContainersAndASecondMount) {
  FsSystem h;
  ASSERT_TRUE(h.cl);
  auto c = h.container("ec", "EC_2P1G1");
  ASSERT_TRUE(c);
  {
    auto m = Namespace::mount(*c, root(), {.chunk_size = 8192});
    ASSERT_FS_OK(m);
    Namespace& ns = **m;
    auto d = ns.mkdir(fs::kRootIno, "d", 0755, root());
    ASSERT_FS_OK(d);
    auto f = ns.mknod(d->ino, "f", S_IFREG | 0644, root());
    ASSERT_FS_OK(f);
    ASSERT_FS_OK(ns.write(f->ino, 0, pattern(50000, 3)));
    ASSERT_FS_OK(ns.setattr(f->ino, {.set_size = true, .size = 30001}, root()));
    ASSERT_FS_OK(ns.rename(d->ino, "f", fs::kRootIno, "g", 0, root()));
  }
  // Another client, another handle: the namespace is in the container, not the mount.
  ClientOptions co;
  co.engine = h.sys->mgmt();
  auto k = Client::connect_system(co);
  ASSERT_TRUE(k);
  auto c2 = (*k)->open_container("tank", "ec", false);
  ASSERT_TRUE(c2) << c2.status().to_string();
  auto m2 = Namespace::mount(**c2, root(), {.chunk_size = 1234});
  ASSERT_FS_OK(m2);
  EXPECT_EQ((*m2)->chunk_size(), 8192u) << "a second mount must not format again";
  auto g = (*m2)->resolve("/g", root());
  ASSERT_FS_OK(g);
  EXPECT_EQ(read_all(**m2, g->ino), pattern(50000, 3).substr(0, 30001));
  // Not a POSIX container: refused with a clear error.
  auto kv = h.container("kv", "RP_2G1", 1, mgmt::ContType::kv);
  ASSERT_TRUE(kv);
  auto bad = Namespace::mount(*kv, root());
  EXPECT_ERRNO(bad, EINVAL);
  EXPECT_NE(bad.error().msg.find("not POSIX"), std::string::npos) << bad.error().msg;
}

// The C API: path-based calls returning negative errnos.
TEST(Fs, TheCApiWorksByPathWithErrnos) {
  FsSystem h;
  ASSERT_TRUE(h.cl);
  ASSERT_TRUE(h.container("capi", "RP_2G1"));
  tessera_client* cl = nullptr;
  tessera_cont* co = nullptr;
  tessera_fs* fs = nullptr;
  ASSERT_EQ(tessera_connect_system(h.sys->mgmt().c_str(), &cl), 0) << tessera_last_error();
  ASSERT_EQ(tessera_cont_open(cl, "tank", "capi", 1, &co), 0) << tessera_last_error();
  ASSERT_EQ(tessera_fs_mount(co, &fs), 0) << tessera_last_error();

  EXPECT_EQ(tessera_fs_mkdir(fs, "/d", 0755), 0) << tessera_last_error();
  EXPECT_EQ(tessera_fs_mkdir(fs, "/d", 0755), -EEXIST);
  EXPECT_EQ(tessera_fs_mkdir(fs, "/missing/d", 0755), -ENOENT);
  tessera_fs_file* f = nullptr;
  ASSERT_EQ(tessera_fs_open(fs, "/d/f", O_CREAT | O_EXCL | O_RDWR, 0644, &f), 0)
      << tessera_last_error();
  tessera_fs_file* again = nullptr;
  EXPECT_EQ(tessera_fs_open(fs, "/d/f", O_CREAT | O_EXCL | O_RDWR, 0644, &again), -EEXIST);
  EXPECT_EQ(tessera_fs_pwrite(f, "hello world", 11, 0), 11);
  char buf[32] = {};
  EXPECT_EQ(tessera_fs_pread(f, buf, sizeof buf, 6), 5);
  EXPECT_EQ(std::string(buf, 5), "world");
  tessera_fs_attr at{};
  ASSERT_EQ(tessera_fs_fstat(f, &at), 0);
  EXPECT_EQ(at.size, 11u);
  EXPECT_TRUE(S_ISREG(at.mode));
  // By path, without a handle: a part, its attributes saying how much there is, the rest.
  tessera_fs_attr ra{};
  EXPECT_EQ(tessera_fs_read(fs, "/d/f", 0, buf, 5, &ra), 5) << tessera_last_error();
  EXPECT_EQ(std::string(buf, 5), "hello");
  EXPECT_EQ(ra.size, 11u);
  EXPECT_EQ(ra.ino, at.ino);
  EXPECT_EQ(tessera_fs_read(fs, "/d/f", 5, buf, sizeof buf, nullptr), 6);
  EXPECT_EQ(std::string(buf, 6), " world");
  EXPECT_EQ(tessera_fs_read(fs, "/d/f", 11, buf, sizeof buf, nullptr), 0);
  EXPECT_EQ(tessera_fs_read(fs, "/d/nope", 0, buf, sizeof buf, nullptr), -ENOENT);
  EXPECT_EQ(tessera_fs_read(fs, "/d", 0, buf, sizeof buf, nullptr), -EISDIR);
  // Read by path as the process's effective user: another user may not read a 0600 file.
  if (::geteuid() == 0) {
    tessera_fs_file* secret = nullptr;
    ASSERT_EQ(tessera_fs_open(fs, "/d/secret", O_CREAT | O_WRONLY, 0600, &secret), 0);
    EXPECT_EQ(tessera_fs_pwrite(secret, "s", 1, 0), 1);
    EXPECT_EQ(tessera_fs_close(secret), 0);
    ASSERT_EQ(::seteuid(65534), 0);
    const int64_t as_nobody = tessera_fs_read(fs, "/d/secret", 0, buf, sizeof buf, nullptr);
    const std::string why = tessera_last_error();
    ASSERT_EQ(::seteuid(0), 0);
    EXPECT_EQ(as_nobody, -EACCES) << why;
    EXPECT_EQ(tessera_fs_unlink(fs, "/d/secret"), 0);
  }
  EXPECT_EQ(tessera_fs_link(fs, "/d/f", "/g"), 0) << tessera_last_error();
  EXPECT_EQ(tessera_fs_stat(fs, "/g", 1, &at), 0);
  EXPECT_EQ(at.nlink, 2u);
  EXPECT_EQ(tessera_fs_rename(fs, "/g", "/d/h"), 0) << tessera_last_error();
  EXPECT_EQ(tessera_fs_symlink(fs, "d/h", "/s"), 0);
  EXPECT_EQ(tessera_fs_readlink(fs, "/s", buf, sizeof buf), 3);
  EXPECT_EQ(tessera_fs_stat(fs, "/s", 1, &at), 0);
  EXPECT_EQ(at.size, 11u);
  EXPECT_EQ(tessera_fs_setxattr(fs, "/d/h", "user.x", "1", 1, 1), 0) << tessera_last_error();
  EXPECT_EQ(tessera_fs_getxattr(fs, "/d/h", "user.x", buf, sizeof buf), 1);
  EXPECT_EQ(tessera_fs_getxattr(fs, "/d/h", "user.y", buf, sizeof buf), -ENODATA);
  EXPECT_EQ(tessera_fs_truncate(fs, "/d/h", 5), 0);
  EXPECT_EQ(tessera_fs_pread(f, buf, sizeof buf, 0), 5);
  EXPECT_EQ(tessera_fs_rmdir(fs, "/d"), -ENOTEMPTY);
  EXPECT_EQ(tessera_fs_unlink(fs, "/d"), -EISDIR);
  // A listing in pages of two.
  for (int i = 0; i < 5; ++i) {
    tessera_fs_file* x = nullptr;
    ASSERT_EQ(tessera_fs_open(fs, fmt::format("/d/x{}", i).c_str(), O_CREAT | O_WRONLY, 0600, &x), 0);
    EXPECT_EQ(tessera_fs_close(x), 0);
  }
  std::set<std::string> names;
  tessera_anchor anchor = TESSERA_ANCHOR_INIT;
  tessera_fs_dirent ents[2];
  while (anchor.eof == 0) {
    uint32_t n = 2;
    ASSERT_EQ(tessera_fs_readdir(fs, "/d", &anchor, ents, &n), 0) << tessera_last_error();
    for (uint32_t i = 0; i < n; ++i) EXPECT_TRUE(names.insert(ents[i].name).second);
  }
  EXPECT_EQ(names, (std::set<std::string>{"f", "h", "x0", "x1", "x2", "x3", "x4"}));
  // Unlinked while open: readable until closed.
  EXPECT_EQ(tessera_fs_unlink(fs, "/d/f"), 0);
  EXPECT_EQ(tessera_fs_unlink(fs, "/d/h"), 0);
  EXPECT_EQ(tessera_fs_pread(f, buf, sizeof buf, 0), 5);
  EXPECT_EQ(tessera_fs_close(f), 0);
  EXPECT_EQ(tessera_fs_stat(fs, "/d/h", 1, &at), -ENOENT);
  tessera_fs_umount(fs);
  EXPECT_EQ(tessera_cont_close(co), 0);
  tessera_disconnect(cl);
}

}  // namespace

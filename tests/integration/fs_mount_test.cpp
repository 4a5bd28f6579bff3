// POSIX containers through the kernel: `tessera fs mount` (tessera-fuse) on a system the CLI
// started, used by real programs and by this test's own system calls, as root and as an
// unprivileged user; `tessera fs copy` in and out; a remount; an engine killed while files are
// written. Needs root and /dev/fuse (skips without).
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "tests/integration/cli_system.hpp"

using namespace tessera::testing;
using nlohmann::json;

namespace {

bool can_mount() {
  return ::geteuid() == 0 && ::access("/dev/fuse", R_OK | W_OK) == 0;
}

// `sh -c CMD`; returns (exit code, output).
std::pair<int, std::string> sh(const std::string& cmd) {
  return run_command({"/bin/sh", "-c", cmd + " 2>&1"});
}

// A system of `engines` engines, pool "tank", a POSIX container "fs" of class `oclass`,
// mounted on a directory of the test; unmounted at scope exit.
struct MountedFs {
  CliSystem s;
  std::string mnt;
  pid_t daemon = -1;

  explicit MountedFs(const char* oclass = "RP_2G1", int engines = 3, const char* rf = "1") {
    s.ok({"system", "start", "--dir", s.dir(), "--engines", std::to_string(engines), "--targets",
          "2"});
    s.ok({"pool", "create", "tank", "--size", fmt::format("{}M", engines * 2 * 160)});
    s.ok({"cont", "create", "tank", "fs", "--type", "POSIX", "--oclass", oclass, "--rf", rf});
    mnt = s.base() + "/mnt";
    std::filesystem::create_directories(mnt);
    ::chmod(s.base().c_str(), 0755);
    mount();
  }
  ~MountedFs() { unmount(); }
  void mount() {
    json j = s.ok({"fs", "mount", "tank", "fs", mnt});
    daemon = j.value("pid", -1);
  }
  void unmount() {
    if (daemon < 0) return;
    auto [rc, j] = s.run({"fs", "umount", mnt});
    if (rc != 0) (void)sh("fusermount3 -uz " + mnt);
    // The daemon exits once unmounted; do not leave it behind in any case.
    for (int i = 0; i < 500 && ::kill(daemon, 0) == 0; ++i) ::usleep(10000);
    if (::kill(daemon, 0) == 0) ::kill(daemon, SIGKILL);
    daemon = -1;
  }
  std::string path(const std::string& p) const { return mnt + "/" + p; }
};

// A source tree to copy: some of the project's own folders (sources, docs, test data).
std::string make_tree(const std::string& base) {
  const std::string tree = base + "/tree";
  std::filesystem::create_directories(tree);
  for (const char* d : {"client", "fs", "docs", "tests/unit", "tests/drills"}) {
    const std::string to = tree + "/" + d;
    std::filesystem::create_directories(std::filesystem::path(to).parent_path());
    std::filesystem::copy(std::string(TESSERA_SOURCE_DIR) + "/" + d, to,
                          std::filesystem::copy_options::recursive);
  }
  // A symlink, a hard link, an empty file and a sparse one, with an odd mode.
  std::filesystem::create_symlink("docs/POSIX.md", tree + "/link");
  std::filesystem::create_hard_link(tree + "/fs/README.md", tree + "/hard");
  std::ofstream(tree + "/empty").close();
  const int fd = ::open((tree + "/sparse").c_str(), O_CREAT | O_WRONLY, 0640);
  EXPECT_EQ(::pwrite(fd, "end", 3, 5 << 20), 3);
  ::close(fd);
  return tree;
}

TEST(FsMount, CopyInDiffRemountAndCopyOut) {
  if (!can_mount()) GTEST_SKIP() << "needs root and /dev/fuse";
  MountedFs m;
  const std::string tree = make_tree(m.s.base());
  const json in = m.s.ok({"fs", "copy", tree, "tessera:tank/fs/tree", "--verify"});
  json c = in;
  EXPECT_GT(c["files"].get<int>(), 50) << c.dump();
  EXPECT_EQ(c["failed"].get<int>(), 0);
  EXPECT_EQ(c["mismatched"].get<int>(), 0);
  EXPECT_EQ(c["symlinks"].get<int>(), 1);
  auto [rc, out] = sh("diff -r --no-dereference " + tree + " " + m.path("tree"));
  EXPECT_EQ(rc, 0) << out;
  m.unmount();
  m.mount();
  std::tie(rc, out) = sh("diff -r --no-dereference " + tree + " " + m.path("tree"));
  EXPECT_EQ(rc, 0) << "after a remount: " << out;
  // Out again, and between containers.
  const std::string back = m.s.base() + "/back";
  c = m.s.ok({"fs", "copy", "tessera:tank/fs/tree", back, "-t", "4"});
  std::tie(rc, out) = sh("diff -r --no-dereference " + tree + " " + back);
  EXPECT_EQ(rc, 0) << out;
  m.s.ok({"cont", "create", "tank", "other", "--type", "POSIX", "--oclass", "RP_2G1", "--rf", "1"});
  c = m.s.ok({"fs", "copy", "tessera:tank/fs/tree/docs", "tessera:tank/other/docs"});
  const json ls = m.s.ok({"fs", "ls", "tank", "other", "/docs"});
  const auto docs = std::distance(std::filesystem::directory_iterator(tree + "/docs"),
                                  std::filesystem::directory_iterator());
  EXPECT_EQ(ls["entries"].size(), static_cast<size_t>(docs)) << ls.dump();
  // Into a whole container: the copy merges into its root, beside what is there.
  m.s.ok({"cont", "create", "tank", "third", "--type", "POSIX", "--oclass", "RP_2G1", "--rf", "1"});
  m.s.ok({"fs", "mkdir", "tank", "third", "/before"});
  c = m.s.ok({"fs", "copy", tree + "/docs", "tessera:tank/third"});
  const json root = m.s.ok({"fs", "ls", "tank", "third", "/"});
  EXPECT_EQ(root["entries"].size(), static_cast<size_t>(docs) + 1) << root.dump();
  // Errors: a missing source, a container path without a container.
  EXPECT_NE(m.s.err({"fs", "copy", tree + "/missing", "tessera:tank/fs/x"}).find("not found"),
            std::string::npos);
  EXPECT_NE(m.s.err({"fs", "copy", tree, "tessera:tank"}).find("tessera:POOL/CONT"),
            std::string::npos);
  // du counts what the first copy brought in (every directory below the top, and the top).
  const json du = m.s.ok({"fs", "du", "tank", "fs", "/tree"});
  EXPECT_EQ(du["files"], in["files"]) << du.dump();
  EXPECT_EQ(du["symlinks"], in["symlinks"]) << du.dump();
  EXPECT_EQ(du["dirs"], in["dirs"]) << du.dump();
  EXPECT_EQ(du["bytes"], in["bytes"]) << du.dump();
}

TEST(FsMount, RealProgramsWorkOnTheMount) {
  if (!can_mount()) GTEST_SKIP() << "needs root and /dev/fuse";
  MountedFs m;
  const std::string tree = make_tree(m.s.base());
  const std::string& mnt = m.mnt;
  struct Step {
    const char* what;
    std::string cmd;
  };
  const std::vector<Step> steps = {
      {"cp -a", fmt::format("cp -a {} {}/cp && diff -r --no-dereference {} {}/cp", tree, mnt, tree, mnt)},
      {"tar", fmt::format("tar -C {} -cf {}/t.tar . && mkdir {}/untar && tar -C {}/untar -xf "
                          "{}/t.tar && diff -r --no-dereference {} {}/untar",
                          tree, mnt, mnt, mnt, mnt, tree, mnt)},
      {"rsync -a", fmt::format("rsync -a {}/ {}/rs/ && diff -r --no-dereference {} {}/rs && "
                               "rsync -a {}/ {}/rs/",
                               tree, mnt, tree, mnt, tree, mnt)},
      {"git", fmt::format("cd {} && git init -q repo && cd repo && cp -r {}/fs . && git add . && "
                          "git -c user.name=t -c user.email=t@t commit -qm one && cd {} && "
                          "git clone -q {}/repo clone && cd clone && test -z \"$(git status "
                          "--porcelain)\" && echo x >> fs/README.md && git status --porcelain | "
                          "grep -q README",
                          m.s.base(), tree, mnt, m.s.base())},
      {"sqlite3", fmt::format("sqlite3 {}/db.sqlite 'create table t(k integer primary key, v "
                              "text); insert into t(v) values (\"a\"),(\"b\"),(\"c\");' && "
                              "test \"$(sqlite3 {}/db.sqlite 'select count(*) from t')\" = 3",
                              mnt, mnt)},
      {"fio psync", fmt::format("fio --name=p --directory={} --ioengine=psync --rw=randwrite "
                                "--bs=4k --size=2m --verify=crc32c --do_verify=1 "
                                "--output-format=terse > /dev/null",
                                mnt)},
      {"fio libaio", fmt::format("fio --name=a --directory={} --ioengine=libaio --iodepth=8 "
                                 "--rw=randrw --bs=16k --size=4m --verify=crc32c --do_verify=1 "
                                 "--output-format=terse > /dev/null",
                                 mnt)},
  };
  for (const auto& st : steps) {
    auto [rc, out] = sh(st.cmd);
    EXPECT_EQ(rc, 0) << st.what << ": " << st.cmd << "\n" << out;
  }
}

// errno of a system call that returns -1 on failure (0: it succeeded).
int err(long rc) {
  return rc < 0 ? errno : 0;
}

TEST(FsMount, PosixSemanticsThroughTheKernel) {
  if (!can_mount()) GTEST_SKIP() << "needs root and /dev/fuse";
  MountedFs m;
  auto p = [&](const std::string& x) { return m.path(x); };

  // O_EXCL, long names, EISDIR / ENOTDIR / ENOTEMPTY, symlink loops.
  int fd = ::open(p("f").c_str(), O_CREAT | O_EXCL | O_RDWR, 0644);
  ASSERT_GE(fd, 0) << strerror(errno);
  EXPECT_EQ(err(::open(p("f").c_str(), O_CREAT | O_EXCL | O_RDWR, 0644)), EEXIST);
  EXPECT_EQ(err(::open(p(std::string(256, 'n')).c_str(), O_CREAT | O_RDWR, 0644)), ENAMETOOLONG);
  ASSERT_EQ(::mkdir(p("d").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(p("d/sub").c_str(), 0755), 0);
  EXPECT_EQ(err(::open(p("d").c_str(), O_WRONLY)), EISDIR);
  EXPECT_EQ(err(::mkdir(p("f/x").c_str(), 0755)), ENOTDIR);
  EXPECT_EQ(err(::rmdir(p("d").c_str())), ENOTEMPTY);
  ASSERT_EQ(::symlink("l2", p("l1").c_str()), 0);
  ASSERT_EQ(::symlink("l1", p("l2").c_str()), 0);
  EXPECT_EQ(err(::open(p("l1").c_str(), O_RDONLY)), ELOOP);

  // Truncate, extend, sparse reads.
  ASSERT_EQ(::pwrite(fd, "hello", 5, 0), 5);
  ASSERT_EQ(::pwrite(fd, "tail", 4, 3 << 20), 4);
  struct stat st {};
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, (3 << 20) + 4);
  char buf[16] = {};
  ASSERT_EQ(::pread(fd, buf, 8, 1 << 20), 8);
  EXPECT_EQ(std::string(buf, 8), std::string(8, '\0'));
  ASSERT_EQ(::ftruncate(fd, 3), 0);
  ASSERT_EQ(::ftruncate(fd, 10), 0);
  ASSERT_EQ(::pread(fd, buf, 10, 0), 10);
  EXPECT_EQ(std::string(buf, 10), std::string("hel") + std::string(7, '\0'));

  // Unlink while open: the open file stays readable and writable until closed.
  ASSERT_EQ(::unlink(p("f").c_str()), 0);
  EXPECT_EQ(err(::access(p("f").c_str(), F_OK)), ENOENT);
  ASSERT_EQ(::pwrite(fd, "more", 4, 10), 4);
  ASSERT_EQ(::pread(fd, buf, 14, 0), 14);
  EXPECT_EQ(std::string(buf + 10, 4), "more");
  ::close(fd);

  // Hard links and rename over existing entries.
  ASSERT_EQ(::close(::open(p("a").c_str(), O_CREAT | O_WRONLY, 0644)), 0);
  ASSERT_EQ(::link(p("a").c_str(), p("d/b").c_str()), 0);
  ASSERT_EQ(::stat(p("a").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);
  ASSERT_EQ(::close(::open(p("c").c_str(), O_CREAT | O_WRONLY, 0644)), 0);
  ASSERT_EQ(::rename(p("c").c_str(), p("a").c_str()), 0);  // over a: its other link stays
  ASSERT_EQ(::stat(p("d/b").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 1u);
  ASSERT_EQ(::mkdir(p("e").c_str(), 0755), 0);
  ASSERT_EQ(::rename(p("d/sub").c_str(), p("e").c_str()), 0);  // over an empty directory
  EXPECT_EQ(err(::rename(p("d").c_str(), p("e/inside").c_str())), 0);
  EXPECT_EQ(err(::rename(p("e").c_str(), p("e/inside/x").c_str())), EINVAL);

  // Extended attributes and times.
  ASSERT_EQ(::setxattr(p("a").c_str(), "user.k", "v1", 2, XATTR_CREATE), 0);
  EXPECT_EQ(err(::setxattr(p("a").c_str(), "user.k", "v2", 2, XATTR_CREATE)), EEXIST);
  ASSERT_EQ(::getxattr(p("a").c_str(), "user.k", buf, sizeof buf), 2);
  EXPECT_EQ(std::string(buf, 2), "v1");
  EXPECT_EQ(err(::getxattr(p("a").c_str(), "user.none", buf, sizeof buf)), ENODATA);
  const timespec old[2] = {{1000, 0}, {1000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, p("a").c_str(), old, 0), 0);
  ASSERT_EQ(::stat(p("a").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, 1000);
  fd = ::open(p("a").c_str(), O_WRONLY);
  ASSERT_EQ(::write(fd, "x", 1), 1);
  ::close(fd);
  ASSERT_EQ(::stat(p("a").c_str(), &st), 0);
  EXPECT_GT(st.st_mtim.tv_sec, 1000) << "a write must move mtime";

  // O_APPEND from two processes: every record whole, none lost.
  auto appender = [&](char tag) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      const int f = ::open(p("log").c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
      const std::string rec = std::string(63, tag) + "\n";
      for (int i = 0; i < 100; ++i) {
        if (::write(f, rec.data(), rec.size()) != 64) ::_exit(1);
      }
      ::_exit(0);
    }
    return pid;
  };
  const pid_t a1 = appender('a'), a2 = appender('b');
  for (pid_t pid : {a1, a2}) {
    int ws = 0;
    ::waitpid(pid, &ws, 0);
    EXPECT_TRUE(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
  }
  std::ifstream log(p("log"));
  std::string line;
  int as = 0, bs = 0;
  while (std::getline(log, line)) {
    if (line == std::string(63, 'a')) ++as;
    else if (line == std::string(63, 'b')) ++bs;
    else ADD_FAILURE() << "a torn record: " << line.substr(0, 80);
  }
  EXPECT_EQ(as, 100);
  EXPECT_EQ(bs, 100);

  // As an unprivileged user (nobody): modes and ownership hold through the kernel.
  ASSERT_EQ(::mkdir(p("pub").c_str(), 01777), 0);
  ASSERT_EQ(::chmod(p("pub").c_str(), 01777), 0);
  ASSERT_EQ(::close(::open(p("pub/roots").c_str(), O_CREAT | O_WRONLY, 0644)), 0);
  auto as_nobody = [&](const std::string& cmd) {
    return sh("setpriv --reuid=65534 --regid=65534 --clear-groups sh -c '" + cmd + "'");
  };
  EXPECT_NE(as_nobody("echo x > " + p("pub/roots")).first, 0) << "nobody wrote root's 0644 file";
  EXPECT_NE(as_nobody("rm -f " + p("pub/roots")).first, 0) << "nobody removed in a sticky dir";
  EXPECT_NE(as_nobody("touch " + p("nope")).first, 0) << "nobody created in root's 0755 dir";
  auto [rc, out] = as_nobody("echo mine > " + p("pub/theirs") + " && chmod 600 " +
                             p("pub/theirs") + " && cat " + p("pub/theirs"));
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "mine\n");
  ASSERT_EQ(::stat(p("pub/theirs").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 65534u);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_NE(as_nobody("chown 0 " + p("pub/theirs")).first, 0);
}

TEST(FsMount, SharedFileAndManyFilesFromSeveralProcesses) {
  if (!can_mount()) GTEST_SKIP() << "needs root and /dev/fuse";
  MountedFs m;
  // N-to-1: four processes write interleaved 64 KiB blocks of one file, then each reads the
  // blocks of the next one.
  constexpr int kProcs = 4, kBlocks = 16, kBs = 64 << 10;
  const std::string shared = m.path("shared");
  ASSERT_EQ(::close(::open(shared.c_str(), O_CREAT | O_WRONLY, 0644)), 0);
  auto block = [&](int proc, int i) {
    return std::string(kBs, static_cast<char>('A' + proc * kBlocks % 26 + i % 7));
  };
  std::vector<pid_t> kids;
  for (int proc = 0; proc < kProcs; ++proc) {
    kids.push_back(::fork());
    if (kids.back() == 0) {
      const int f = ::open(shared.c_str(), O_RDWR);
      for (int i = 0; i < kBlocks; ++i) {
        const std::string b = block(proc, i);
        const off_t off = static_cast<off_t>(i * kProcs + proc) * kBs;
        if (::pwrite(f, b.data(), b.size(), off) != kBs) ::_exit(1);
      }
      ::_exit(0);
    }
  }
  for (pid_t k : kids) {
    int ws = 0;
    ::waitpid(k, &ws, 0);
    ASSERT_TRUE(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
  }
  kids.clear();
  for (int proc = 0; proc < kProcs; ++proc) {
    kids.push_back(::fork());
    if (kids.back() == 0) {
      const int other = (proc + 1) % kProcs;
      const int f = ::open(shared.c_str(), O_RDONLY);
      std::string b(kBs, '\0');
      for (int i = 0; i < kBlocks; ++i) {
        const off_t off = static_cast<off_t>(i * kProcs + other) * kBs;
        if (::pread(f, b.data(), b.size(), off) != kBs || b != block(other, i)) ::_exit(2);
      }
      ::_exit(0);
    }
  }
  for (pid_t k : kids) {
    int ws = 0;
    ::waitpid(k, &ws, 0);
    EXPECT_TRUE(WIFEXITED(ws) && WEXITSTATUS(ws) == 0) << "a reader saw wrong bytes";
  }

  // Many files in one directory, by two processes: created, stated, listed, removed
  // ($TESSERA_FS_FILES, default 2000; the benchmark runs 100000).
  int files = 2000;
  if (const char* n = ::getenv("TESSERA_FS_FILES")) files = std::atoi(n);
  const std::string dir = m.path("many");
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  auto worker = [&](int w, const char* phase) {
    const pid_t pid = ::fork();
    if (pid != 0) return pid;
    for (int i = w; i < files; i += 2) {
      const std::string f = fmt::format("{}/f{:06}", dir, i);
      struct stat st {};
      if (std::string(phase) == "create") {
        const int fd = ::open(f.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
        if (fd < 0) ::_exit(1);
        ::close(fd);
      } else if (std::string(phase) == "stat") {
        if (::stat(f.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) ::_exit(2);
      } else if (::unlink(f.c_str()) != 0) {
        ::_exit(3);
      }
    }
    ::_exit(0);
  };
  for (const char* phase : {"create", "stat", "remove"}) {
    const pid_t a = worker(0, phase), b = worker(1, phase);
    for (pid_t k : {a, b}) {
      int ws = 0;
      ::waitpid(k, &ws, 0);
      ASSERT_TRUE(WIFEXITED(ws) && WEXITSTATUS(ws) == 0) << phase << " failed";
    }
    if (std::string(phase) == "create") {
      auto [rc, out] = sh("ls " + dir + " | wc -l");
      EXPECT_EQ(std::atoi(out.c_str()), files) << out;
    }
  }
  auto [rc, out] = sh("ls -A " + dir + " | wc -l");
  EXPECT_EQ(std::atoi(out.c_str()), 0) << out;
}

// An engine killed (kill -9) while a writer process writes and closes files through the mount
// of a container of class `oclass` on four engines: the writer sees no error, and every file it
// closed, before and after the kill, is intact (read back while the engine is still dead:
// degraded reads of an erasure-coded container's cells rebuild them from the stripe).
void kill_while_writing(const char* oclass, const char* rf) {
  MountedFs m(oclass, 4, rf);
  const std::string dir = m.path("w");
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  const std::string done_file = m.s.base() + "/closed";
  auto content = [](int i) {
    std::string s(200 * 1024 + i * 37, '\0');
    std::mt19937 r(static_cast<uint32_t>(i));
    for (auto& c : s) c = static_cast<char>(r());
    return s;
  };
  constexpr int kFiles = 60;
  const pid_t writer = ::fork();
  if (writer == 0) {
    std::ofstream closed(done_file);
    for (int i = 0; i < kFiles; ++i) {
      const std::string f = fmt::format("{}/file{:03}", dir, i);
      const int fd = ::open(f.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
      if (fd < 0) ::_exit(10);
      const std::string c = content(i);
      for (size_t at = 0; at < c.size(); at += 64 * 1024) {
        const size_t n = std::min<size_t>(64 * 1024, c.size() - at);
        if (::pwrite(fd, c.data() + at, n, static_cast<off_t>(at)) != static_cast<ssize_t>(n)) {
          ::_exit(11);
        }
      }
      if (::close(fd) != 0) ::_exit(12);
      closed << i << std::endl;
    }
    ::_exit(0);
  }
  // Kill rank 2 once a few files are closed.
  for (int i = 0; i < 6000; ++i) {
    std::ifstream in(done_file);
    std::string l;
    int n = 0;
    while (std::getline(in, l)) ++n;
    if (n >= 10) break;
    ::usleep(10000);
  }
  pid_t victim = -1;
  {
    std::ifstream in(m.s.dir() + "/system.json");
    const json j = json::parse(in);
    for (const auto& e : j["engines"]) {
      if (e["rank"].get<int>() == 2) victim = e["pid"].get<pid_t>();
    }
  }
  ASSERT_GT(victim, 0);
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  int ws = 0;
  ::waitpid(writer, &ws, 0);
  ASSERT_TRUE(WIFEXITED(ws)) << "the writer died";
  EXPECT_EQ(WEXITSTATUS(ws), 0) << "the writer saw an error after the kill";
  std::ifstream in(done_file);
  std::string l;
  int checked = 0;
  while (std::getline(in, l)) {
    const int i = std::atoi(l.c_str());
    std::ifstream f(fmt::format("{}/file{:03}", dir, i), std::ios::binary);
    std::string got((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_TRUE(got == content(i)) << "file " << i << " differs after the kill";
    ++checked;
  }
  EXPECT_EQ(checked, kFiles);
}

TEST(FsMount, AnEngineKillWhileWritingLosesNoClosedFile) {
  if (!can_mount()) GTEST_SKIP() << "needs root and /dev/fuse";
  kill_while_writing("RP_3GX", "2");
}

TEST(FsMount, AnEngineKillWhileWritingAnErasureCodedContainerLosesNoClosedFile) {
  if (!can_mount()) GTEST_SKIP() << "needs root and /dev/fuse";
  kill_while_writing("EC_2P1GX", "1");
}

}  // namespace

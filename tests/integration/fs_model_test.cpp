// Seeded random sequences of namespace operations, each done both on a Tessera POSIX container
// (fs::Namespace) and on a directory of the local file system, whose kernel is the model: every
// operation must end with the same errno, and the two trees must hold the same entries, types,
// sizes, link counts, file bytes and symlink targets. Names come from a small alphabet over
// three levels, so renames over existing entries, moves into a directory's own subtree,
// hard links, dangling and looping symlinks and non-empty directories come up often.
#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <map>
#include <random>
#include <thread>

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

constexpr uint32_t kChunk = 1024;

struct Split {
  std::string parent, name;
};
Split split(const std::string& p) {
  const size_t at = p.rfind('/');
  return {at == 0 ? "/" : p.substr(0, at), p.substr(at + 1)};
}

class Pair {
 public:
  Pair(Namespace& ns, std::string root) : ns_(ns), root_(std::move(root)) {}

  // Each returns {local errno, tessera errno, tessera message}.
  struct Out {
    Out() = default;
    explicit Out(int l) : local(l) {}
    int local = 0, ours = 0;
    std::string msg;
  };

  Out mkdir(const std::string& p) {
    Out o(sys(::mkdir(local(p).c_str(), 0755)));
    at_parent(p, o,
              [&](Ino d, const std::string& n) { return ns_.mkdir(d, n, 0755, cred_).error(); });
    return o;
  }
  Out create(const std::string& p) {
    const int fd = ::open(local(p).c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
    Out o(fd < 0 ? errno : 0);
    if (fd >= 0) ::close(fd);
    at_parent(p, o, [&](Ino d, const std::string& n) {
      return ns_.mknod(d, n, S_IFREG | 0644, cred_).error();
    });
    return o;
  }
  Out symlink(const std::string& target, const std::string& p) {
    Out o(sys(::symlink(target.c_str(), local(p).c_str())));
    at_parent(p, o, [&](Ino d, const std::string& n) {
      return ns_.symlink(d, n, target, cred_).error();
    });
    return o;
  }
  Out write(const std::string& p, uint64_t off, const std::string& data, bool append) {
    const int fd = ::open(local(p).c_str(), O_WRONLY | (append ? O_APPEND : 0));
    Out o(fd < 0 ? errno : 0);
    if (fd >= 0) {
      const ssize_t n = append ? ::write(fd, data.data(), data.size())
                               : ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(off));
      if (n < 0) o.local = errno;
      ::close(fd);
    }
    auto a = ns_.resolve(p, cred_);
    if (!a) {
      set(o, a.error());
    } else if (a->is_dir()) {
      set(o, {EISDIR, "a directory"});
    } else {
      set(o, ns_.write(a->ino, off, data, append).error());
    }
    return o;
  }
  Out truncate(const std::string& p, uint64_t size) {
    Out o(sys(::truncate(local(p).c_str(), static_cast<off_t>(size))));
    auto a = ns_.resolve(p, cred_);
    if (!a) {
      set(o, a.error());
    } else {
      set(o, ns_.setattr(a->ino, {.set_size = true, .size = size}, cred_).error());
    }
    return o;
  }
  Out unlink(const std::string& p) {
    Out o(sys(::unlink(local(p).c_str())));
    at_parent(p, o, [&](Ino d, const std::string& n) {
      auto u = ns_.unlink(d, n, cred_);
      if (u && u->last_link) (void)ns_.reclaim(u->ino);
      return u.error();
    });
    return o;
  }
  Out rmdir(const std::string& p) {
    Out o(sys(::rmdir(local(p).c_str())));
    at_parent(p, o, [&](Ino d, const std::string& n) { return ns_.rmdir(d, n, cred_); });
    return o;
  }
  Out rename(const std::string& from, const std::string& to) {
    Out o(sys(::rename(local(from).c_str(), local(to).c_str())));
    auto f = split(from), t = split(to);
    auto fp = ns_.resolve(f.parent, cred_);
    if (!fp) return set(o, fp.error()), o;
    if (!fp->is_dir()) return set(o, {ENOTDIR, "parent"}), o;
    auto tp = ns_.resolve(t.parent, cred_);
    if (!tp) return set(o, tp.error()), o;
    if (!tp->is_dir()) return set(o, {ENOTDIR, "parent"}), o;
    auto r = ns_.rename(fp->ino, f.name, tp->ino, t.name, 0, cred_);
    if (r && r->last_link) (void)ns_.reclaim(r->ino);
    set(o, r.error());
    return o;
  }
  Out link(const std::string& from, const std::string& to) {
    Out o(sys(::link(local(from).c_str(), local(to).c_str())));
    auto src = ns_.resolve(from, cred_, false);
    if (!src) return set(o, src.error()), o;
    at_parent(to, o,
              [&](Ino d, const std::string& n) { return ns_.link(src->ino, d, n, cred_).error(); });
    return o;
  }

  // Both trees, from `p` down, entry by entry; "" when equal, else the first difference.
  std::string compare(const std::string& p = "/") {
    struct stat ls {};
    if (::lstat(local(p).c_str(), &ls) != 0)
      return fmt::format("{}: lstat: {}", p, strerror(errno));
    auto a = ns_.resolve(p, cred_, false);
    if (!a) return fmt::format("{}: {}", p, a.error().msg);
    if ((ls.st_mode & S_IFMT) != (a->mode & S_IFMT)) return fmt::format("{}: type differs", p);
    if (S_ISREG(ls.st_mode)) {
      if (static_cast<uint64_t>(ls.st_size) != a->size) {
        return fmt::format("{}: size {} here, {} in the model", p, a->size, ls.st_size);
      }
      if (ls.st_nlink != a->nlink) {
        return fmt::format("{}: nlink {} here, {} in the model", p, a->nlink, ls.st_nlink);
      }
      std::string mine(a->size, '\0'), theirs(a->size, '\0');
      auto n = ns_.read(a->ino, 0, mine);
      if (!n) return fmt::format("{}: {}", p, n.error().msg);
      const int fd = ::open(local(p).c_str(), O_RDONLY);
      const ssize_t got = ::pread(fd, theirs.data(), theirs.size(), 0);
      ::close(fd);
      if (got != static_cast<ssize_t>(theirs.size()) || *n != mine.size() || mine != theirs) {
        return fmt::format("{}: the bytes differ", p);
      }
    } else if (S_ISLNK(ls.st_mode)) {
      char buf[4096];
      const ssize_t n = ::readlink(local(p).c_str(), buf, sizeof buf);
      auto t = ns_.readlink(a->ino);
      if (!t || *t != std::string(buf, static_cast<size_t>(n))) {
        return fmt::format("{}: the link target differs", p);
      }
    } else if (S_ISDIR(ls.st_mode)) {
      std::map<std::string, uint32_t> theirs, mine;
      DIR* d = ::opendir(local(p).c_str());
      while (auto* e = ::readdir(d)) {
        const std::string n = e->d_name;
        if (n != "." && n != "..") theirs[n] = 0;
      }
      ::closedir(d);
      std::string anchor;
      for (;;) {
        auto pg = ns_.readdir(a->ino, anchor, 3);
        if (!pg) return fmt::format("{}: {}", p, pg.error().msg);
        for (const auto& e : pg->entries) {
          if (!mine.emplace(e.name, 0).second) return fmt::format("{}: '{}' twice", p, e.name);
        }
        if (pg->done) break;
        anchor = pg->anchor;
      }
      if (mine != theirs) {
        std::string m, t;
        for (auto& [k, v] : mine) m += k + " ";
        for (auto& [k, v] : theirs) t += k + " ";
        return fmt::format("{}: entries [{}] here, [{}] in the model", p, m, t);
      }
      for (const auto& [n, v] : theirs) {
        auto sub = compare(p == "/" ? "/" + n : p + "/" + n);
        if (!sub.empty()) return sub;
      }
    }
    return "";
  }

 private:
  static int sys(int rc) { return rc == 0 ? 0 : errno; }
  std::string local(const std::string& p) const { return root_ + p; }
  static void set(Out& o, const fs::Error& e) {
    o.ours = e.no;
    o.msg = e.msg;
  }
  template <typename Op>
  void at_parent(const std::string& p, Out& o, Op op) {
    auto s = split(p);
    auto d = ns_.resolve(s.parent, cred_);
    if (!d) return set(o, d.error());
    if (!d->is_dir()) return set(o, {ENOTDIR, "parent is not a directory"});
    set(o, op(d->ino, s.name));
  }

  Namespace& ns_;
  std::string root_;
  Cred cred_{};
};

// Engine kills during a run: before op `at`, a thread kills `rank` (kill -9) `delay_us` later,
// so that the kill lands inside an operation (a commit in flight, an insert sent) as often as
// between two. No operation may fail for it: one whose commit went unanswered is run again when
// that changes nothing, and otherwise learns its outcome from its mark (docs/POSIX.md), so every
// answer and the tree after it equal the model's.
struct Kill {
  int at;
  uint32_t rank;
  uint32_t delay_us;
};
struct Faults {
  LocalSystem* sys = nullptr;
  std::vector<Kill> kills;
};

void run_seed(Container& c, uint32_t seed, int ops, const Faults& faults = {},
              uint32_t chunk = kChunk) {
  auto m = Namespace::mount(c, Cred{}, {.chunk_size = chunk});
  ASSERT_TRUE(m) << m.error().msg;
  Namespace& ns = **m;
  TempDir model;
  // Each seed works under its own top directory in both.
  const std::string top = fmt::format("/s{}", seed);
  ASSERT_EQ(::mkdir((model.path() + top).c_str(), 0755), 0);
  ASSERT_TRUE(ns.mkdir(fs::kRootIno, top.substr(1), 0755, Cred{}));
  Pair pair(ns, model.path());

  std::mt19937 rng(seed);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  auto path = [&] {
    std::string p = top;
    const int depth = 1 + pick(3);
    for (int i = 0; i < depth; ++i) p += std::string("/") + "abc"[pick(3)];
    return p;
  };
  std::vector<std::thread> killers;
  for (int i = 0; i < ops; ++i) {
    for (const Kill& k : faults.kills) {
      if (k.at != i) continue;
      const pid_t pid = faults.sys->engine(k.rank).pid();
      killers.emplace_back([pid, k] {
        std::this_thread::sleep_for(std::chrono::microseconds(k.delay_us));
        ::kill(pid, SIGKILL);
      });
    }
    Pair::Out o;
    std::string what;
    switch (pick(11)) {
      case 0:
      case 1:
        what = "mkdir " + path();
        o = pair.mkdir(what.substr(6));
        break;
      case 2:
        what = "create " + path();
        o = pair.create(what.substr(7));
        break;
      case 3: {
        const std::string p = path();
        const uint64_t off = rng() % (3 * chunk);
        // Half the writes small (inside one cell of an erasure-coded chunk, mostly).
        const size_t len = 1 + (pick(2) == 0 ? rng() % 256 : rng() % (2 * chunk));
        const bool append = pick(3) == 0;
        what = fmt::format("write {} at {} len {}{}", p, off, len, append ? " append" : "");
        o = pair.write(p, off, std::string(len, static_cast<char>('A' + i % 26)), append);
        break;
      }
      case 4: {
        const std::string p = path();
        const uint64_t size = rng() % (4 * chunk);
        what = fmt::format("truncate {} {}", p, size);
        o = pair.truncate(p, size);
        break;
      }
      case 5:
        what = "unlink " + path();
        o = pair.unlink(what.substr(7));
        break;
      case 6:
        what = "rmdir " + path();
        o = pair.rmdir(what.substr(6));
        break;
      case 7:
      case 8: {
        const std::string a = path(), b = path();
        what = fmt::format("rename {} {}", a, b);
        o = pair.rename(a, b);
        break;
      }
      case 9: {
        const std::string a = path(), b = path();
        what = fmt::format("link {} {}", a, b);
        o = pair.link(a, b);
        break;
      }
      default: {
        // Relative targets one level up or beside, and absolute ones: dangling, looping or not.
        const std::string p = path();
        const std::string t =
            pick(2) == 0 ? std::string(1, "abc"[pick(3)]) : std::string("../") + "abc"[pick(3)];
        what = fmt::format("symlink {} -> {}", p, t);
        o = pair.symlink(t, p);
        break;
      }
    }
    if (o.ours != o.local && ::getenv("TESSERA_FS_DUMP") != nullptr) {
      (void)std::system(("ls -lR " + model.path()).c_str());
    }
    ASSERT_EQ(o.ours, o.local) << "seed " << seed << " op " << i << ": " << what
                               << "\n  model: " << strerror(o.local)
                               << "\n  tessera: " << strerror(o.ours) << " (" << o.msg << ")";
    if (i % 10 == 9 || i + 1 == ops) {
      const std::string diff = pair.compare(top);
      ASSERT_EQ(diff, "") << "seed " << seed << " after op " << i << ": " << what;
    }
  }
  for (auto& t : killers) t.join();
}

// Seeds of random operations on a container of `props` in a system of `engines` engines of
// `targets` targets each. TESSERA_FS_SEEDS="first count" widens the run (the default: three
// seeds of 150 operations).
void random_operations(uint32_t engines, uint32_t targets, const mgmt::ContProps& props,
                       uint32_t chunk) {
  uint32_t first = 1, count = 3;
  if (const char* s = ::getenv("TESSERA_FS_SEEDS")) {
    std::sscanf(s, "%u %u", &first, &count);
  }
  TempDir dir;
  LocalSystem sys(dir.path(), engines, targets);
  Tank tank;
  ASSERT_NO_FATAL_FAILURE(open_tank(sys, engines, props, tank));
  for (uint32_t s = first; s < first + count; ++s) {
    SCOPED_TRACE(fmt::format("seed {}", s));
    ASSERT_NO_FATAL_FAILURE(run_seed(*tank.cont, s, 150, {}, chunk));
  }
}

TEST(FsModel, RandomOperationsMatchTheLocalFileSystem) {
  random_operations(3, 1, cont_props("fs", "RP_2G1", 1, mgmt::ContType::posix), kChunk);
}

// The same sequences on an erasure-coded container (EC_2P1GX, 4 KiB cells, 16 KiB chunks:
// writes of whole stripes, of parts of one cell and across cells, on chunks whose positions
// rotate), on four engines of two targets so that a chunk's positions are not every target.
TEST(FsModel, RandomOperationsOnAnErasureCodedContainerMatchTheLocalFileSystem) {
  random_operations(4, 2, cont_props("fs", "EC_2P1GX", 1, mgmt::ContType::posix, 4096), 16384);
}

// The same sequences on RP_3G1 over five engines (two failures allowed) while two of ranks 1-4
// die: one at a seeded step of the transaction protocol, one killed (kill -9) at a seeded time:
// TESSERA_FS_FAULT_SEEDS="first count" (the default: seeds 3 and 4, 150 operations each).
TEST(FsModel, RandomOperationsThroughEngineKillsMatchTheLocalFileSystem) {
  // Seed 4 kills the coordinator of an unlink once all parts are prepared: the unlink learns
  // from its outcome mark that it committed.
  uint32_t first = 3, count = 2;
  if (const char* s = ::getenv("TESSERA_FS_FAULT_SEEDS")) {
    std::sscanf(s, "%u %u", &first, &count);
  }
  for (uint32_t seed = first; seed < first + count; ++seed) {
    SCOPED_TRACE(fmt::format("seed {}", seed));
    std::mt19937 rng(seed * 7919);
    std::vector<uint32_t> ranks = {1, 2, 3, 4};
    std::shuffle(ranks.begin(), ranks.end(), rng);
    // One engine dies at a step of the distributed-transaction protocol (crash points,
    // core/crash_point.hpp) the n-th time it gets there, whichever change it is: exactly inside
    // an operation. Another is killed at a seeded time.
    static constexpr const char* kPoints[] = {"dtx.leader.local", "dtx.leader.prepared",
                                              "dtx.leader.committed", "dtx.leader.replied",
                                              "dtx.participant.prepared"};
    // Every other seed narrows the point to changes whose first key is the entry "a", "b" or
    // "c" (creates, and the link, unlink, rmdir and rename that settle an unanswered commit by
    // their outcome marks), which the n-th change of any kind rarely is.
    const char* point = kPoints[rng() % std::size(kPoints)];
    const std::string crash =
        seed % 2 == 0 ? fmt::format("{}:{}@{}={}", point, "abc"[rng() % 3], 1 + rng() % 4, ranks[0])
                      : fmt::format("{}@{}={}", point, 2 + rng() % 30, ranks[0]);
    TempDir dir;
    ::setenv("TESSERA_CRASH_AT", crash.c_str(), 1);
    LocalSystem sys(dir.path(), 5, 1);
    ::unsetenv("TESSERA_CRASH_AT");
    Tank tank;
    ASSERT_NO_FATAL_FAILURE(
        open_tank(sys, 5, cont_props("fs", "RP_3G1", 2, mgmt::ContType::posix), tank));
    Faults f;
    f.sys = &sys;
    f.kills.push_back(
        {static_cast<int>(20 + rng() % 110), ranks[1], static_cast<uint32_t>(rng() % 20000)});
    ASSERT_NO_FATAL_FAILURE(run_seed(*tank.cont, seed, 150, f));
    EXPECT_FALSE(sys.engine(ranks[1]).alive()) << "rank " << ranks[1] << " was to be killed";
    fmt::print("seed {}: crash point {}: {}\n", seed, crash,
               sys.engine(ranks[0]).alive() ? "not reached" : "reached");
  }
}

}  // namespace

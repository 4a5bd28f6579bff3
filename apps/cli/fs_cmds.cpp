// tessera fs: POSIX containers (docs/POSIX.md). mount/umount run tessera-fuse; ls, stat, mkdir,
// rm and du work through the namespace in this process, with no mount.
#include "apps/cli/fs_cmds.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace tessera::cli {

Status fs_status(const fs::Error& e) {
  Errc c = Errc::invalid_argument;
  switch (e.no) {
    case ENOENT: c = Errc::not_found; break;
    case EEXIST: c = Errc::exists; break;
    case EACCES:
    case EPERM: c = Errc::permission; break;
    case ENOSPC: c = Errc::no_space; break;
    case EIO: c = Errc::io_error; break;
    case ETIMEDOUT: c = Errc::timeout; break;
    case EBUSY: c = Errc::busy; break;
    default: break;
  }
  return Status(c, fmt::format("{} ({})", e.msg, strerrorname_np(e.no)));
}

Result<OpenedFs> open_fs(const Globals& g, const std::string& pool, const std::string& cont,
                         bool write) {
  auto o = open_container(g, pool, cont, write);
  if (!o) return o.status();
  OpenedFs out;
  out.opened = std::move(*o);
  auto ns = fs::Namespace::mount(*out.opened.cont, fs::Cred::of_process());
  if (!ns) return fs_status(ns.error());
  out.ns = std::move(*ns);
  return out;
}

namespace {

struct FsArgs {
  std::string pool, cont, path = "/", dir;
  bool long_list = false, parents = false, recursive = false;
  uint32_t mode = 0755;
  // mount
  double attr_timeout = 5.0, entry_timeout = 5.0;
  std::string data_cache = "on";
  bool writeback = false, read_only = false;
  double wait_s = 30;
};

std::string mode_text(uint32_t mode) {
  std::string s = S_ISDIR(mode) ? "d" : S_ISLNK(mode) ? "l" : S_ISREG(mode) ? "-" : "?";
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) s += (mode & (0400u >> i)) != 0 ? rwx[i] : '-';
  return s;
}

std::string time_text(int64_t ns) {
  const time_t t = static_cast<time_t>(ns / 1'000'000'000);
  char buf[32];
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json attr_json(const fs::Attr& a) {
  return {{"ino", a.ino},           {"mode", fmt::format("{:o}", a.mode & 07777)},
          {"type", S_ISDIR(a.mode) ? "dir" : S_ISLNK(a.mode) ? "symlink" : "file"},
          {"uid", a.uid},           {"gid", a.gid},
          {"nlink", a.nlink},       {"size", a.size},
          {"mtime", time_text(a.mtime_ns)}, {"ctime", time_text(a.ctime_ns)},
          {"chunk_size", a.chunk_size}};
}

int ls_cmd(Globals& g, const FsArgs& a) {
  auto f = open_fs(g, a.pool, a.cont, false);
  if (!f) return fail(g, f.status(), "fs ls");
  fs::Namespace& ns = *f->ns;
  auto at = ns.resolve(a.path, fs::Cred::of_process());
  if (!at) return fail(g, fs_status(at.error()), "fs ls");
  json list = json::array();
  auto show = [&](const std::string& name, const fs::Attr& x) {
    if (g.json) {
      json j = attr_json(x);
      j["name"] = name;
      list.push_back(std::move(j));
    } else if (a.long_list) {
      fmt::print("{} {:>3} {:>5} {:>5} {:>12} {} {}\n", mode_text(x.mode), x.nlink, x.uid, x.gid,
                 x.size, time_text(x.mtime_ns), name);
    } else {
      fmt::print("{}{}\n", name, x.is_dir() ? "/" : "");
    }
  };
  if (!at->is_dir()) {
    show(a.path, *at);
  } else {
    std::string anchor;
    for (;;) {
      auto pg = ns.readdir(at->ino, anchor, 1024);
      if (!pg) return fail(g, fs_status(pg.error()), "fs ls");
      for (const auto& e : pg->entries) {
        auto x = ns.getattr(e.ino);
        if (x) show(e.name, *x);
      }
      if (pg->done) break;
      anchor = pg->anchor;
    }
  }
  if (g.json) return done(g, {{"entries", list}}, [] {});
  return 0;
}

int stat_cmd(Globals& g, const FsArgs& a) {
  auto f = open_fs(g, a.pool, a.cont, false);
  if (!f) return fail(g, f.status(), "fs stat");
  auto x = f->ns->resolve(a.path, fs::Cred::of_process(), false);
  if (!x) return fail(g, fs_status(x.error()), "fs stat");
  json j = attr_json(*x);
  j["path"] = a.path;
  return done(g, j, [&] {
    fmt::print("path   {}\ntype   {}\nmode   {} ({:o})\nowner  {}:{}\nlinks  {}\nsize   {} ({})\n"
               "mtime  {}\nctime  {}\ninode  {}\n",
               a.path, j["type"].get<std::string>(), mode_text(x->mode), x->mode & 07777, x->uid,
               x->gid, x->nlink, x->size, human(x->size), time_text(x->mtime_ns),
               time_text(x->ctime_ns), x->ino);
  });
}

int mkdir_cmd(Globals& g, const FsArgs& a) {
  auto f = open_fs(g, a.pool, a.cont, true);
  if (!f) return fail(g, f.status(), "fs mkdir");
  fs::Namespace& ns = *f->ns;
  const fs::Cred me = fs::Cred::of_process();
  fs::Ino cur = fs::kRootIno;
  std::vector<std::string> parts;
  for (const auto& p : std::filesystem::path(a.path)) {
    if (p != "/" && !p.empty()) parts.push_back(p.string());
  }
  if (parts.empty()) return fail(g, Status(Errc::exists, "'/' exists"), "fs mkdir");
  for (size_t i = 0; i < parts.size(); ++i) {
    const bool last = i + 1 == parts.size();
    if (!last || a.parents) {
      auto have = ns.lookup(cur, parts[i], me);
      if (have && have->is_dir()) {
        cur = have->ino;
        continue;
      }
      if (!last && !a.parents) return fail(g, fs_status(have.error()), "fs mkdir");
    }
    auto made = ns.mkdir(cur, parts[i], a.mode, me);
    if (!made) return fail(g, fs_status(made.error()), "fs mkdir");
    cur = made->ino;
  }
  return done(g, {{"path", a.path}, {"ino", cur}}, [&] { fmt::print("created {}\n", a.path); });
}

// Removes the entry `name` of `dir` (a directory's contents first, with `recursive`); counts
// what went.
fs::Error remove_tree(fs::Namespace& ns, fs::Ino dir, const std::string& name, bool recursive,
                      uint64_t& removed) {
  const fs::Cred me = fs::Cred::of_process();
  auto x = ns.lookup(dir, name, me);
  if (!x) return x.error();
  if (x->is_dir()) {
    if (!recursive) return {EISDIR, fmt::format("'{}' is a directory (use -r)", name)};
    for (;;) {
      auto pg = ns.readdir(x->ino, "", 256);
      if (!pg) return pg.error();
      for (const auto& e : pg->entries) {
        if (fs::Error err = remove_tree(ns, x->ino, e.name, true, removed); !err) return err;
      }
      if (pg->done) break;
    }
    if (fs::Error err = ns.rmdir(dir, name, me); !err) return err;
  } else {
    auto u = ns.unlink(dir, name, me);
    if (!u) return u.error();
    if (u->last_link) (void)ns.reclaim(u->ino);
  }
  ++removed;
  return {};
}

int rm_cmd(Globals& g, const FsArgs& a) {
  auto f = open_fs(g, a.pool, a.cont, true);
  if (!f) return fail(g, f.status(), "fs rm");
  auto p = f->ns->resolve_parent(a.path, fs::Cred::of_process());
  if (!p) return fail(g, fs_status(p.error()), "fs rm");
  uint64_t removed = 0;
  if (fs::Error e = remove_tree(*f->ns, p->dir.ino, p->name, a.recursive, removed); !e) {
    return fail(g, fs_status(e), "fs rm");
  }
  return done(g, {{"path", a.path}, {"removed", removed}},
              [&] { fmt::print("removed {} ({} entries)\n", a.path, removed); });
}

struct DuTotals {
  uint64_t files = 0, dirs = 0, symlinks = 0, bytes = 0;
};

fs::Error du_walk(fs::Namespace& ns, const fs::Attr& at, DuTotals& t) {
  if (at.is_link()) {
    t.symlinks += 1;
    return {};
  }
  if (!at.is_dir()) {
    t.files += 1;
    t.bytes += at.size;
    return {};
  }
  t.dirs += 1;
  std::string anchor;
  for (;;) {
    auto pg = ns.readdir(at.ino, anchor, 1024);
    if (!pg) return pg.error();
    for (const auto& e : pg->entries) {
      auto x = ns.getattr(e.ino);
      if (!x) continue;
      if (fs::Error err = du_walk(ns, *x, t); !err) return err;
    }
    if (pg->done) return {};
    anchor = pg->anchor;
  }
}

int du_cmd(Globals& g, const FsArgs& a) {
  auto f = open_fs(g, a.pool, a.cont, false);
  if (!f) return fail(g, f.status(), "fs du");
  auto at = f->ns->resolve(a.path, fs::Cred::of_process());
  if (!at) return fail(g, fs_status(at.error()), "fs du");
  DuTotals t;
  if (fs::Error e = du_walk(*f->ns, *at, t); !e) return fail(g, fs_status(e), "fs du");
  return done(g,
              {{"path", a.path},
               {"files", t.files},
               {"dirs", t.dirs},
               {"symlinks", t.symlinks},
               {"bytes", t.bytes}},
              [&] {
                fmt::print("{}  {} in {} files, {} directories, {} symlinks\n", a.path,
                           human(t.bytes), t.files, t.dirs, t.symlinks);
              });
}

// Whether `dir` is a mount point of a Tessera FUSE mount (/proc/self/mountinfo).
bool tessera_mounted(const std::string& dir) {
  std::error_code ec;
  const std::string want = std::filesystem::weakly_canonical(dir, ec).string();
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ... - FSTYPE SOURCE SUPER
    std::istringstream s(line);
    std::string id, parent, dev, root, point;
    s >> id >> parent >> dev >> root >> point;
    const size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream rest(line.substr(dash + 3));
    std::string type;
    rest >> type;
    if (point == want && type == "fuse.tessera") return true;
  }
  return false;
}

// tessera-fuse beside this program.
std::string fuse_binary() {
  char self[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "tessera-fuse";
  self[n] = '\0';
  return (std::filesystem::path(self).parent_path() / "tessera-fuse").string();
}

int mount_cmd(Globals& g, const FsArgs& a) {
  auto addr = mgmt_address(g);
  if (!addr) return fail(g, addr.status(), "fs mount");
  std::error_code ec;
  if (!std::filesystem::is_directory(a.dir, ec)) {
    return fail(g, Status(Errc::invalid_argument, fmt::format("'{}' is not a directory", a.dir)),
                "fs mount");
  }
  if (tessera_mounted(a.dir)) {
    return fail(g, Status(Errc::exists, fmt::format("a Tessera container is mounted on '{}'", a.dir)),
                "fs mount");
  }
  // The daemon's log, one per mount point, in the user's own ~/.tessera/fuse (never a shared
  // directory another user could have prepared).
  const char* home = ::getenv("HOME");
  if (home == nullptr || *home == '\0') {
    return fail(g, Status(Errc::invalid_argument, "$HOME is not set (the mount's log goes there)"),
                "fs mount");
  }
  const std::string logdir = std::string(home) + "/.tessera/fuse";
  std::filesystem::create_directories(logdir, ec);
  ::chmod(logdir.c_str(), 0700);
  const std::string log =
      fmt::format("{}/{}.log", logdir,
                  std::hash<std::string>{}(std::filesystem::weakly_canonical(a.dir, ec).string()));
  // tessera-fuse finds the system as this command did: the same flags, else the same
  // environment (the system file also says how to authenticate).
  std::vector<std::string> args = {fuse_binary(), a.pool, a.cont, a.dir,
                                   "--attr-timeout", fmt::format("{}", a.attr_timeout),
                                   "--entry-timeout", fmt::format("{}", a.entry_timeout),
                                   "--data-cache", a.data_cache};
  if (!g.mgmt.empty()) args.insert(args.end(), {"--mgmt", g.mgmt});
  if (!g.system.empty()) args.insert(args.end(), {"--system", g.system});
  if (a.writeback) args.push_back("--writeback");
  if (a.read_only) args.push_back("--read-only");
  const pid_t pid = ::fork();
  if (pid < 0) return fail(g, Status(Errc::internal, strerror(errno)), "fs mount");
  if (pid == 0) {
    // The daemon: its own session, stdin closed, its output in the log.
    ::setsid();
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const int null = ::open("/dev/null", O_RDONLY);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    if (null >= 0) ::dup2(null, 0);
    // Nothing else of ours: a caller reading our output to its end must not wait on the daemon.
    ::close_range(3, ~0u, 0);
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(a.wait_s);
  for (;;) {
    if (tessera_mounted(a.dir)) break;
    int st = 0;
    if (::waitpid(pid, &st, WNOHANG) == pid) {
      std::ifstream in(log);
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      while (!text.empty() && text.back() == '\n') text.pop_back();
      return fail(g, Status(Errc::unavailable, text.empty() ? "tessera-fuse exited" : text),
                  "fs mount");
    }
    if (std::chrono::steady_clock::now() > until) {
      ::kill(pid, SIGTERM);
      return fail(g, Status(Errc::timeout, fmt::format("not mounted after {} s (log: {})",
                                                       a.wait_s, log)),
                  "fs mount");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done(g, {{"pool", a.pool}, {"cont", a.cont}, {"dir", a.dir}, {"pid", pid}, {"log", log}},
              [&] {
                fmt::print("mounted {}/{} on {} (tessera-fuse pid {}, log {})\n", a.pool, a.cont,
                           a.dir, pid, log);
              });
}

int umount_cmd(Globals& g, const FsArgs& a) {
  if (!tessera_mounted(a.dir)) {
    return fail(g, Status(Errc::not_found, fmt::format("no Tessera mount on '{}'", a.dir)),
                "fs umount");
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    if (null >= 0) ::dup2(null, 1);
    ::execlp("fusermount3", "fusermount3", "-u", a.dir.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    return fail(g, Status(Errc::busy, fmt::format("fusermount3 -u {} failed (in use?)", a.dir)),
                "fs umount");
  }
  return done(g, {{"dir", a.dir}}, [&] { fmt::print("unmounted {}\n", a.dir); });
}

void pool_cont(CLI::App* c, FsArgs& a) {
  c->add_option("pool", a.pool, "pool label or uuid")->required();
  c->add_option("cont", a.cont, "container label or uuid (of type POSIX)")->required();
}

}  // namespace

void add_fs_commands(CLI::App& app, Globals& g) {
  auto* fsc = app.add_subcommand("fs", "POSIX containers: mount, copy, and files without a mount");
  fsc->require_subcommand(1);
  auto a = std::make_shared<FsArgs>();

  auto* mnt = leaf(fsc, g, "mount", "mount a POSIX container on DIR (runs tessera-fuse)",
                   [&g, a] { return mount_cmd(g, *a); });
  pool_cont(mnt, *a);
  mnt->add_option("dir", a->dir, "mount point (an existing directory)")->required();
  mnt->add_option("--attr-timeout", a->attr_timeout, "seconds the kernel keeps attributes")
      ->capture_default_str();
  mnt->add_option("--entry-timeout", a->entry_timeout, "seconds the kernel keeps names")
      ->capture_default_str();
  mnt->add_option("--data-cache", a->data_cache, "keep file pages across opens: on or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"on", "off"}));
  mnt->add_flag("--writeback", a->writeback,
                "the kernel gathers small writes (only when one client writes each file)");
  mnt->add_flag("--read-only", a->read_only, "mount for reading only");
  mnt->add_option("--wait-s", a->wait_s, "seconds to wait for the mount")->capture_default_str();

  auto* um = leaf(fsc, g, "umount", "unmount DIR", [&g, a] { return umount_cmd(g, *a); });
  um->add_option("dir", a->dir, "mount point")->required();

  auto* ls = leaf(fsc, g, "ls", "list a directory of a POSIX container (no mount)",
                  [&g, a] { return ls_cmd(g, *a); });
  pool_cont(ls, *a);
  ls->add_option("path", a->path, "path in the container (default /)");
  ls->add_flag("-l,--long", a->long_list, "mode, links, owner, size and mtime");

  auto* st = leaf(fsc, g, "stat", "attributes of a path (no mount)",
                  [&g, a] { return stat_cmd(g, *a); });
  pool_cont(st, *a);
  st->add_option("path", a->path, "path in the container")->required();

  auto* mk = leaf(fsc, g, "mkdir", "make a directory (no mount)",
                  [&g, a] { return mkdir_cmd(g, *a); });
  pool_cont(mk, *a);
  mk->add_option("path", a->path, "path in the container")->required();
  mk->add_flag("-p,--parents", a->parents, "make missing parents; an existing directory is fine");

  auto* rm = leaf(fsc, g, "rm", "remove a file, a symlink or (with -r) a directory tree (no mount)",
                  [&g, a] { return rm_cmd(g, *a); });
  pool_cont(rm, *a);
  rm->add_option("path", a->path, "path in the container")->required();
  rm->add_flag("-r,--recursive", a->recursive, "remove directories and their contents");

  auto* du = leaf(fsc, g, "du", "files, directories and bytes under a path (no mount)",
                  [&g, a] { return du_cmd(g, *a); });
  pool_cont(du, *a);
  du->add_option("path", a->path, "path in the container (default /)");

  add_fs_copy_command(fsc, g);
}

}  // namespace tessera::cli

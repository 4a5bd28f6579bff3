// tessera fs copy SRC DST: a parallel copy of a tree between the local file system and a POSIX
// container, or between containers (docs/POSIX.md). A path is local, or tessera:POOL/CONT/PATH.
// One walk counts what SRC holds, a second makes DST's directories and symlinks and queues the
// files; --threads workers copy them in 1 MiB blocks (and with --verify read DST back). The
// progress line shows files, bytes, rate and ETA; --json prints a summary.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "apps/cli/fs_cmds.hpp"
#include "apps/cli/progress.hpp"

namespace tessera::cli {
namespace {

constexpr size_t kBlock = 1u << 20;

struct Meta {
  enum Type { file, dir, link, other } type = other;
  uint64_t size = 0;
  uint32_t mode = 0;
  int64_t mtime_ns = 0, atime_ns = 0;
};

struct Handle {
  int fd = -1;
  fs::Ino ino = 0;
};

Status errno_status(int no, const std::string& what) {
  return fs_status({no, fmt::format("{}: {}", what, strerror(no))});
}

// One end of a copy: local paths or a container's namespace.
class Side {
 public:
  virtual ~Side() = default;
  virtual Result<Meta> stat(const std::string& p) = 0;  // does not follow a final symlink
  virtual Result<std::vector<std::string>> list(const std::string& dir) = 0;
  virtual Status mkdir(const std::string& p, uint32_t mode) = 0;  // an existing directory is fine
  virtual Result<std::string> readlink(const std::string& p) = 0;
  virtual Status symlink(const std::string& target, const std::string& p) = 0;
  virtual Result<Handle> open_read(const std::string& p) = 0;
  virtual Result<Handle> create(const std::string& p, uint32_t mode) = 0;  // empty, owned by us
  virtual Result<size_t> pread(Handle h, uint64_t off, std::span<char> buf) = 0;
  virtual Status pwrite(Handle h, uint64_t off, std::span<const char> data) = 0;
  virtual Status finish(Handle h, const Meta& m) = 0;  // times; closes
  virtual void close(Handle h) = 0;
};

class LocalSide final : public Side {
 public:
  Result<Meta> stat(const std::string& p) override {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) return errno_status(errno, p);
    Meta m;
    m.type = S_ISREG(st.st_mode) ? Meta::file : S_ISDIR(st.st_mode) ? Meta::dir
             : S_ISLNK(st.st_mode) ? Meta::link : Meta::other;
    m.size = static_cast<uint64_t>(st.st_size);
    m.mode = st.st_mode & 07777;
    m.mtime_ns = st.st_mtim.tv_sec * 1'000'000'000ll + st.st_mtim.tv_nsec;
    m.atime_ns = st.st_atim.tv_sec * 1'000'000'000ll + st.st_atim.tv_nsec;
    return m;
  }
  Result<std::vector<std::string>> list(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return errno_status(errno, dir);
    std::vector<std::string> out;
    while (auto* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != "..") out.push_back(n);
    }
    ::closedir(d);
    return out;
  }
  Status mkdir(const std::string& p, uint32_t mode) override {
    if (::mkdir(p.c_str(), mode) == 0) return Status();
    struct stat st {};
    if (errno == EEXIST && ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return Status();
    return errno_status(errno, p);
  }
  Result<std::string> readlink(const std::string& p) override {
    char buf[4096];
    const ssize_t n = ::readlink(p.c_str(), buf, sizeof buf);
    if (n < 0) return errno_status(errno, p);
    return std::string(buf, static_cast<size_t>(n));
  }
  Status symlink(const std::string& target, const std::string& p) override {
    ::unlink(p.c_str());
    return ::symlink(target.c_str(), p.c_str()) == 0 ? Status() : errno_status(errno, p);
  }
  Result<Handle> open_read(const std::string& p) override {
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno_status(errno, p);
    return Handle{fd, 0};
  }
  Result<Handle> create(const std::string& p, uint32_t mode) override {
    const int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return errno_status(errno, p);
    return Handle{fd, 0};
  }
  Result<size_t> pread(Handle h, uint64_t off, std::span<char> buf) override {
    size_t got = 0;
    while (got < buf.size()) {
      const ssize_t n = ::pread(h.fd, buf.data() + got, buf.size() - got,
                                static_cast<off_t>(off + got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_status(errno, "read");
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    return got;
  }
  Status pwrite(Handle h, uint64_t off, std::span<const char> data) override {
    size_t put = 0;
    while (put < data.size()) {
      const ssize_t n = ::pwrite(h.fd, data.data() + put, data.size() - put,
                                 static_cast<off_t>(off + put));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_status(errno, "write");
      put += static_cast<size_t>(n);
    }
    return Status();
  }
  Status finish(Handle h, const Meta& m) override {
    const timespec ts[2] = {{m.atime_ns / 1'000'000'000, m.atime_ns % 1'000'000'000},
                            {m.mtime_ns / 1'000'000'000, m.mtime_ns % 1'000'000'000}};
    const int rc = ::futimens(h.fd, ts);
    const int no = errno;
    ::close(h.fd);
    return rc == 0 ? Status() : errno_status(no, "set times");
  }
  void close(Handle h) override { ::close(h.fd); }
};

class TesseraSide final : public Side {
 public:
  explicit TesseraSide(OpenedFs f) : f_(std::move(f)), ns_(*f_.ns) {}

  Result<Meta> stat(const std::string& p) override {
    auto a = ns_.resolve(p, me_, false);
    if (!a) return fs_status(a.error());
    return meta(*a);
  }
  Result<std::vector<std::string>> list(const std::string& dir) override {
    auto d = ns_.resolve(dir, me_);
    if (!d) return fs_status(d.error());
    std::vector<std::string> out;
    std::string anchor;
    for (;;) {
      auto pg = ns_.readdir(d->ino, anchor, 1024);
      if (!pg) return fs_status(pg.error());
      for (auto& e : pg->entries) out.push_back(std::move(e.name));
      if (pg->done) return out;
      anchor = pg->anchor;
    }
  }
  Status mkdir(const std::string& p, uint32_t mode) override {
    // The root (a copy into the whole container) exists already: the copy merges into it.
    if (p.find_first_not_of('/') == std::string::npos) return Status();
    auto pn = parent(p);
    if (!pn) return pn.status();
    auto m = ns_.mkdir(pn->dir.ino, pn->name, mode, me_);
    if (m) return Status();
    if (m.error().no == EEXIST) {
      auto have = ns_.lookup(pn->dir.ino, pn->name, me_);
      if (have && have->is_dir()) return Status();
    }
    return fs_status(m.error());
  }
  Result<std::string> readlink(const std::string& p) override {
    auto a = ns_.resolve(p, me_, false);
    if (!a) return fs_status(a.error());
    auto t = ns_.readlink(a->ino);
    if (!t) return fs_status(t.error());
    return *t;
  }
  Status symlink(const std::string& target, const std::string& p) override {
    auto pn = parent(p);
    if (!pn) return pn.status();
    auto old = ns_.unlink(pn->dir.ino, pn->name, me_);
    if (old && old->last_link) (void)ns_.reclaim(old->ino);
    auto s = ns_.symlink(pn->dir.ino, pn->name, target, me_);
    return s ? Status() : fs_status(s.error());
  }
  Result<Handle> open_read(const std::string& p) override {
    auto a = ns_.resolve(p, me_);
    if (!a) return fs_status(a.error());
    return Handle{-1, a->ino};
  }
  Result<Handle> create(const std::string& p, uint32_t mode) override {
    auto pn = parent(p);
    if (!pn) return pn.status();
    auto a = ns_.mknod(pn->dir.ino, pn->name, S_IFREG | mode, me_);
    if (!a && a.error().no == EEXIST) {
      a = ns_.lookup(pn->dir.ino, pn->name, me_);
      if (a && a->is_reg()) a = ns_.setattr(a->ino, {.set_size = true, .size = 0}, me_);
    }
    if (!a) return fs_status(a.error());
    return Handle{-1, a->ino};
  }
  Result<size_t> pread(Handle h, uint64_t off, std::span<char> buf) override {
    auto n = ns_.read(h.ino, off, buf);
    if (!n) return fs_status(n.error());
    return *n;
  }
  Status pwrite(Handle h, uint64_t off, std::span<const char> data) override {
    auto w = ns_.write(h.ino, off, data);
    return w ? Status() : fs_status(w.error());
  }
  Status finish(Handle h, const Meta& m) override {
    auto a = ns_.setattr(h.ino, {.set_atime = true, .set_mtime = true, .atime_ns = m.atime_ns,
                                 .mtime_ns = m.mtime_ns}, me_);
    return a ? Status() : fs_status(a.error());
  }
  void close(Handle) override {}

 private:
  static Meta meta(const fs::Attr& a) {
    Meta m;
    m.type = a.is_reg() ? Meta::file : a.is_dir() ? Meta::dir : a.is_link() ? Meta::link
                                                                           : Meta::other;
    m.size = a.size;
    m.mode = a.mode & 07777;
    m.mtime_ns = a.mtime_ns;
    m.atime_ns = a.atime_ns;
    return m;
  }
  Result<fs::Namespace::Parent> parent(const std::string& p) {
    auto pn = ns_.resolve_parent(p, me_);
    if (!pn) return fs_status(pn.error());
    return std::move(*pn);
  }

  OpenedFs f_;
  fs::Namespace& ns_;
  fs::Cred me_ = fs::Cred::of_process();
};

struct CopyArgs {
  std::string src, dst;
  unsigned threads = 8;
  bool verify = false;
};

// "tessera:POOL/CONT/PATH" -> a container side and its path; else a local side.
Result<std::pair<std::unique_ptr<Side>, std::string>> side_of(const Globals& g,
                                                              const std::string& spec, bool write) {
  constexpr std::string_view kScheme = "tessera:";
  if (spec.rfind(kScheme, 0) != 0) {
    std::string p = spec;
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    return std::make_pair(std::unique_ptr<Side>(new LocalSide()), p);
  }
  std::string rest = spec.substr(kScheme.size());
  while (!rest.empty() && rest[0] == '/') rest.erase(0, 1);
  const size_t a = rest.find('/');
  if (a == std::string::npos || a == 0) {
    return Status(Errc::invalid_argument,
                  fmt::format("'{}': a container path is tessera:POOL/CONT[/PATH]", spec));
  }
  const size_t b = rest.find('/', a + 1);
  const std::string pool = rest.substr(0, a);
  const std::string cont = rest.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
  std::string path = b == std::string::npos ? "/" : rest.substr(b);
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  auto f = open_fs(g, pool, cont, write);
  if (!f) return f.status();
  return std::make_pair(std::unique_ptr<Side>(new TesseraSide(std::move(*f))), path);
}

std::string join(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

struct Totals {
  uint64_t files = 0, dirs = 0, links = 0, bytes = 0, skipped = 0;
};

Status count(Side& s, const std::string& p, Totals& t) {
  auto m = s.stat(p);
  if (!m) return m.status();
  switch (m->type) {
    case Meta::file: t.files += 1; t.bytes += m->size; return Status();
    case Meta::link: t.links += 1; return Status();
    case Meta::other: t.skipped += 1; return Status();
    case Meta::dir: break;
  }
  t.dirs += 1;
  auto names = s.list(p);
  if (!names) return names.status();
  for (const auto& n : *names) TESSERA_TRY(count(s, join(p, n), t));
  return Status();
}

struct Job {
  std::string from, to;
  Meta meta;
};

class Copier {
 public:
  Copier(Side& src, Side& dst, bool verify) : src_(src), dst_(dst), verify_(verify) {}

  // Makes directories and symlinks, queueing files.
  Status walk(const std::string& from, const std::string& to) {
    auto m = src_.stat(from);
    if (!m) return m.status();
    if (m->type == Meta::file) return queue({from, to, *m}), Status();
    if (m->type == Meta::link) {
      auto t = src_.readlink(from);
      if (!t) return t.status();
      TESSERA_TRY(dst_.symlink(*t, to));
      links_ += 1;
      return Status();
    }
    if (m->type != Meta::dir) return Status();
    TESSERA_TRY(dst_.mkdir(to, m->mode | 0700));
    dirs_ += 1;
    auto names = src_.list(from);
    if (!names) return names.status();
    for (const auto& n : *names) TESSERA_TRY(walk(join(from, n), join(to, n)));
    return Status();
  }

  void work() {
    std::vector<char> buf(kBlock), back(kBlock);
    for (;;) {
      Job j;
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [&] { return !jobs_.empty() || walked_; });
        if (jobs_.empty()) return;
        j = std::move(jobs_.front());
        jobs_.pop_front();
      }
      cv_.notify_all();
      Status st = copy_file(j, buf, back);
      std::lock_guard lk(mu_);
      if (st) {
        files_done_ += 1;
      } else if (errors_.size() < 20) {
        errors_.push_back(fmt::format("{}: {}", j.from, st.to_string()));
        ++failed_;
      } else {
        ++failed_;
      }
    }
  }

  void walked() {
    std::lock_guard lk(mu_);
    walked_ = true;
    cv_.notify_all();
  }

  std::atomic<uint64_t> bytes_done_{0};
  std::mutex mu_;
  uint64_t files_done_ = 0, failed_ = 0, dirs_ = 0, links_ = 0, mismatched_ = 0;
  std::vector<std::string> errors_;

 private:
  void queue(Job j) {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return jobs_.size() < 4096; });  // a bounded queue
    jobs_.push_back(std::move(j));
    cv_.notify_all();
  }

  Status copy_file(const Job& j, std::vector<char>& buf, std::vector<char>& back) {
    auto in = src_.open_read(j.from);
    if (!in) return in.status();
    auto out = dst_.create(j.to, j.meta.mode);
    if (!out) {
      src_.close(*in);
      return out.status();
    }
    Status st;
    uint64_t off = 0;
    while (st && off < j.meta.size) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(kBlock, j.meta.size - off));
      auto n = src_.pread(*in, off, {buf.data(), want});
      if (!n) {
        st = n.status();
        break;
      }
      if (*n == 0) break;  // it shrank meanwhile
      st = dst_.pwrite(*out, off, {buf.data(), *n});
      if (st && verify_) {
        auto m = dst_.pread(*out, off, {back.data(), *n});
        if (!m) {
          st = m.status();
        } else if (*m != *n || std::memcmp(buf.data(), back.data(), *n) != 0) {
          std::lock_guard lk(mu_);
          ++mismatched_;
          st = Status(Errc::checksum, fmt::format("read back differs at offset {}", off));
        }
      }
      off += *n;
      bytes_done_ += *n;
    }
    src_.close(*in);
    Status fin = dst_.finish(*out, j.meta);
    return st ? fin : st;
  }

  Side& src_;
  Side& dst_;
  bool verify_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool walked_ = false;
};

int copy_cmd(Globals& g, const CopyArgs& a) {
  auto src = side_of(g, a.src, false);
  if (!src) return fail(g, src.status(), "fs copy");
  auto dst = side_of(g, a.dst, true);
  if (!dst) return fail(g, dst.status(), "fs copy");
  Side& s = *src->first;
  Side& d = *dst->first;
  Totals t;
  if (Status st = count(s, src->second, t); !st) return fail(g, st, "fs copy");

  const auto start = std::chrono::steady_clock::now();
  Copier cp(s, d, a.verify);
  std::vector<std::thread> workers;
  for (unsigned i = 0; i < a.threads; ++i) workers.emplace_back([&] { cp.work(); });
  Status walked;
  std::thread walker([&] {
    walked = cp.walk(src->second, dst->second);
    cp.walked();
  });
  ProgressLine line(g);
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  auto draw = [&](bool last) {
    const double secs = elapsed();
    const uint64_t b = cp.bytes_done_.load();
    uint64_t files;
    {
      std::lock_guard lk(cp.mu_);
      files = cp.files_done_ + cp.failed_;
    }
    line.bytes(b, t.bytes, secs > 0 ? static_cast<double>(b) / secs : 0,
               fmt::format("{} of {} files", files, t.files), last);
  };
  std::atomic<bool> finished{false};
  std::thread drawer([&] {
    while (!finished.load()) {
      draw(false);
      std::this_thread::sleep_for(line.poll());
    }
  });
  walker.join();
  for (auto& w : workers) w.join();
  finished = true;
  drawer.join();
  draw(true);
  line.finish();
  const double secs = elapsed();
  if (!walked) return fail(g, walked, "fs copy");
  json j = {{"src", a.src},
            {"dst", a.dst},
            {"files", cp.files_done_},
            {"failed", cp.failed_},
            {"dirs", cp.dirs_},
            {"symlinks", cp.links_},
            {"skipped", t.skipped},
            {"bytes", cp.bytes_done_.load()},
            {"seconds", secs},
            {"bytes_per_second", secs > 0 ? static_cast<double>(cp.bytes_done_.load()) / secs : 0},
            {"verified", a.verify},
            {"mismatched", cp.mismatched_},
            {"errors", cp.errors_}};
  if (cp.failed_ > 0) {
    if (g.json) {
      j["ok"] = false;
      fmt::print("{}\n", j.dump(2));
    } else {
      for (const auto& e : cp.errors_) fmt::print(stderr, "tessera: fs copy: {}\n", e);
      fmt::print(stderr, "tessera: fs copy: {} of {} files failed\n", cp.failed_, t.files);
    }
    return 1;
  }
  return done(g, j, [&] {
    fmt::print("copied {} files ({}), {} directories, {} symlinks in {}: {}/s{}{}\n",
               cp.files_done_, human(cp.bytes_done_.load()), cp.dirs_, cp.links_,
               duration_text(secs),
               human(secs > 0 ? static_cast<uint64_t>(cp.bytes_done_.load() / secs) : 0),
               a.verify ? ", verified" : "",
               t.skipped > 0 ? fmt::format(" ({} special files skipped)", t.skipped) : "");
  });
}

}  // namespace

void add_fs_copy_command(CLI::App* fsc, Globals& g) {
  auto a = std::make_shared<CopyArgs>();
  auto* c = leaf(fsc, g, "copy",
                 "copy a tree: local <-> container or container -> container (tessera:POOL/CONT/PATH)",
                 [&g, a] { return copy_cmd(g, *a); });
  c->add_option("src", a->src, "what to copy: a local path or tessera:POOL/CONT/PATH")->required();
  c->add_option("dst", a->dst, "where the copy goes (made; an existing directory is merged into)")
      ->required();
  c->add_option("-t,--threads", a->threads, "files copied at once")
      ->capture_default_str()
      ->check(CLI::Range(1u, 256u));
  c->add_flag("--verify", a->verify, "read every block back from DST and compare");
}

}  // namespace tessera::cli

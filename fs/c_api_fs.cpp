// The C API of POSIX containers (tessera/tessera.h, "POSIX containers"): path-based calls over
// fs::Namespace, returning 0 or a negative POSIX errno, the message in tessera_last_error().
#include <fcntl.h>
#include <sys/xattr.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "client/c_api_impl.hpp"
#include "client/tessera.h"
#include "fs/namespace.hpp"
#include "fs/open_files.hpp"

using namespace tessera;
using fs::Cred;

struct tessera_fs {
  explicit tessera_fs(std::unique_ptr<fs::Namespace> n) : ns(std::move(n)), files(*ns) {}
  std::unique_ptr<fs::Namespace> ns;
  fs::OpenFiles files;  // handles of tessera_fs_open: unlinked inodes go at their last close
};
struct tessera_fs_file {
  tessera_fs* fs = nullptr;
  fs::Ino ino = 0;
  int flags = 0;
};

namespace {

int fail(const fs::Error& e) {
  return capi::fail_text(-e.no, e.msg);
}
int null_argument() {
  return capi::fail_text(-EINVAL, "null argument");
}
void fill(tessera_fs_attr* out, const fs::Attr& a) {
  out->ino = a.ino;
  out->mode = a.mode;
  out->uid = a.uid;
  out->gid = a.gid;
  out->nlink = a.nlink;
  out->size = a.size;
  out->atime_ns = a.atime_ns;
  out->mtime_ns = a.mtime_ns;
  out->ctime_ns = a.ctime_ns;
}
// Runs `op(ns, parent directory, name)` for the parent of `path`.
template <typename Op>
int at_parent(tessera_fs* fs, const char* path, Op op) {
  if (fs == nullptr || path == nullptr) return null_argument();
  auto p = fs->ns->resolve_parent(path, Cred::of_process());
  if (!p) return fail(p.error());
  fs::Error e = op(*fs->ns, p->dir.ino, p->name);
  return e ? 0 : fail(e);
}

}  // namespace

extern "C" {

int tessera_fs_mount(tessera_cont* cont, tessera_fs** out) {
  if (cont == nullptr || out == nullptr) return null_argument();
  auto ns = fs::Namespace::mount(*cont->impl, Cred::of_process());
  if (!ns) return fail(ns.error());
  *out = new tessera_fs(std::move(*ns));
  return 0;
}

void tessera_fs_umount(tessera_fs* fs) {
  delete fs;
}

int tessera_fs_stat(tessera_fs* fs, const char* path, int follow, tessera_fs_attr* attr) {
  if (fs == nullptr || path == nullptr || attr == nullptr) return null_argument();
  auto a = fs->ns->resolve(path, Cred::of_process(), follow != 0);
  if (!a) return fail(a.error());
  fill(attr, *a);
  return 0;
}

int tessera_fs_mkdir(tessera_fs* fs, const char* path, uint32_t mode) {
  return at_parent(fs, path, [&](fs::Namespace& ns, fs::Ino d, const std::string& n) {
    return ns.mkdir(d, n, mode, Cred::of_process()).error();
  });
}

int tessera_fs_open(tessera_fs* fs, const char* path, int flags, uint32_t mode,
                    tessera_fs_file** out) {
  if (fs == nullptr || path == nullptr || out == nullptr) return null_argument();
  const Cred me = Cred::of_process();
  auto a = fs->ns->resolve(path, me);
  if (!a && a.error().no == ENOENT && (flags & O_CREAT) != 0) {
    auto p = fs->ns->resolve_parent(path, me);
    if (!p) return fail(p.error());
    a = fs->ns->mknod(p->dir.ino, p->name, S_IFREG | (mode & 07777), me);
  } else if (a && (flags & O_CREAT) != 0 && (flags & O_EXCL) != 0) {
    return capi::fail_text(-EEXIST, std::string("'") + path + "' exists");
  }
  if (!a) return fail(a.error());
  if (a->is_dir() && (flags & O_ACCMODE) != O_RDONLY) {
    return capi::fail_text(-EISDIR, std::string("'") + path + "' is a directory");
  }
  const int acc = flags & O_ACCMODE;
  const int mask = acc == O_RDONLY ? R_OK : acc == O_WRONLY ? W_OK : R_OK | W_OK;
  if (fs::Error e = fs->ns->access(*a, mask, me); !e) return fail(e);
  if ((flags & O_TRUNC) != 0 && acc != O_RDONLY && a->size != 0) {
    auto t = fs->ns->setattr(a->ino, {.set_size = true, .size = 0}, me);
    if (!t) return fail(t.error());
  }
  fs->files.opened(a->ino);
  *out = new tessera_fs_file{fs, a->ino, flags};
  return 0;
}

int64_t tessera_fs_read(tessera_fs* fs, const char* path, uint64_t offset, void* buf, size_t len,
                        tessera_fs_attr* attr) {
  if (fs == nullptr || path == nullptr || (buf == nullptr && len > 0)) return null_argument();
  const Cred me = Cred::of_process();
  auto a = fs->ns->resolve(path, me);
  if (!a) return fail(a.error());
  if (a->is_dir()) return capi::fail_text(-EISDIR, std::string("'") + path + "' is a directory");
  if (fs::Error e = fs->ns->access(*a, R_OK, me); !e) return fail(e);
  auto n = fs->ns->read(*a, offset, {static_cast<char*>(buf), len});
  if (!n) return fail(n.error());
  if (attr != nullptr) fill(attr, *a);
  return static_cast<int64_t>(*n);
}

int tessera_fs_close(tessera_fs_file* f) {
  if (f == nullptr) return null_argument();
  f->fs->files.released(f->ino);
  delete f;
  return 0;
}

int64_t tessera_fs_pread(tessera_fs_file* f, void* buf, size_t len, uint64_t offset) {
  if (f == nullptr || (buf == nullptr && len > 0)) return null_argument();
  if ((f->flags & O_ACCMODE) == O_WRONLY) return capi::fail_text(-EBADF, "opened write-only");
  auto n = f->fs->ns->read(f->ino, offset, {static_cast<char*>(buf), len});
  if (!n) return fail(n.error());
  return static_cast<int64_t>(*n);
}

int64_t tessera_fs_pwrite(tessera_fs_file* f, const void* buf, size_t len, uint64_t offset) {
  if (f == nullptr || (buf == nullptr && len > 0)) return null_argument();
  if ((f->flags & O_ACCMODE) == O_RDONLY) return capi::fail_text(-EBADF, "opened read-only");
  auto w = f->fs->ns->write(f->ino, offset, {static_cast<const char*>(buf), len},
                            (f->flags & O_APPEND) != 0);
  if (!w) return fail(w.error());
  return static_cast<int64_t>(len);
}

int tessera_fs_fstat(tessera_fs_file* f, tessera_fs_attr* attr) {
  if (f == nullptr || attr == nullptr) return null_argument();
  auto a = f->fs->ns->getattr(f->ino);
  if (!a) return fail(a.error());
  fill(attr, *a);
  return 0;
}

int tessera_fs_truncate(tessera_fs* fs, const char* path, uint64_t size) {
  if (fs == nullptr || path == nullptr) return null_argument();
  auto a = fs->ns->resolve(path, Cred::of_process());
  if (!a) return fail(a.error());
  auto t = fs->ns->setattr(a->ino, {.set_size = true, .size = size}, Cred::of_process());
  return t ? 0 : fail(t.error());
}

int tessera_fs_chmod(tessera_fs* fs, const char* path, uint32_t mode) {
  if (fs == nullptr || path == nullptr) return null_argument();
  auto a = fs->ns->resolve(path, Cred::of_process());
  if (!a) return fail(a.error());
  auto t = fs->ns->setattr(a->ino, {.set_mode = true, .mode = mode}, Cred::of_process());
  return t ? 0 : fail(t.error());
}

int tessera_fs_unlink(tessera_fs* fs, const char* path) {
  return at_parent(fs, path, [&](fs::Namespace& ns, fs::Ino d, const std::string& n) {
    auto u = ns.unlink(d, n, Cred::of_process());
    if (u) fs->files.unlinked(*u);
    return u.error();
  });
}

int tessera_fs_rmdir(tessera_fs* fs, const char* path) {
  return at_parent(fs, path, [&](fs::Namespace& ns, fs::Ino d, const std::string& n) {
    return ns.rmdir(d, n, Cred::of_process());
  });
}

int tessera_fs_rename(tessera_fs* fs, const char* from, const char* to) {
  if (fs == nullptr || from == nullptr || to == nullptr) return null_argument();
  const Cred me = Cred::of_process();
  auto a = fs->ns->resolve_parent(from, me);
  if (!a) return fail(a.error());
  auto b = fs->ns->resolve_parent(to, me);
  if (!b) return fail(b.error());
  auto r = fs->ns->rename(a->dir.ino, a->name, b->dir.ino, b->name, 0, me);
  if (!r) return fail(r.error());
  fs->files.unlinked(*r);
  return 0;
}

int tessera_fs_link(tessera_fs* fs, const char* existing, const char* path) {
  if (fs == nullptr || existing == nullptr) return null_argument();
  auto src = fs->ns->resolve(existing, Cred::of_process(), false);
  if (!src) return fail(src.error());
  return at_parent(fs, path, [&](fs::Namespace& ns, fs::Ino d, const std::string& n) {
    return ns.link(src->ino, d, n, Cred::of_process()).error();
  });
}

int tessera_fs_symlink(tessera_fs* fs, const char* target, const char* path) {
  if (target == nullptr) return null_argument();
  return at_parent(fs, path, [&](fs::Namespace& ns, fs::Ino d, const std::string& n) {
    return ns.symlink(d, n, target, Cred::of_process()).error();
  });
}

int64_t tessera_fs_readlink(tessera_fs* fs, const char* path, char* buf, size_t len) {
  if (fs == nullptr || path == nullptr || (buf == nullptr && len > 0)) return null_argument();
  auto a = fs->ns->resolve(path, Cred::of_process(), false);
  if (!a) return fail(a.error());
  auto t = fs->ns->readlink(a->ino);
  if (!t) return fail(t.error());
  std::memcpy(buf, t->data(), std::min(len, t->size()));
  return static_cast<int64_t>(t->size());
}

int tessera_fs_readdir(tessera_fs* fs, const char* path, tessera_anchor* anchor,
                       tessera_fs_dirent* ents, uint32_t* n) {
  if (fs == nullptr || path == nullptr || anchor == nullptr || ents == nullptr || n == nullptr) {
    return null_argument();
  }
  if (anchor->len > fs::kNameMax) return capi::fail_text(-EINVAL, "a damaged anchor");
  auto d = fs->ns->resolve(path, Cred::of_process());
  if (!d) return fail(d.error());
  if (!d->is_dir()) return capi::fail_text(-ENOTDIR, std::string("'") + path + "' is not a directory");
  if (fs::Error e = fs->ns->access(*d, R_OK, Cred::of_process()); !e) return fail(e);
  const uint32_t room = *n;
  *n = 0;
  if (anchor->eof != 0 || room == 0) return 0;
  std::string after(reinterpret_cast<const char*>(anchor->pos), anchor->len);
  // Pages until `room` entries are stored (a page may hold reserved keys only).
  while (*n < room && anchor->eof == 0) {
    auto pg = fs->ns->readdir(d->ino, after, room - *n);
    if (!pg) return fail(pg.error());
    for (const auto& e : pg->entries) {
      tessera_fs_dirent& out = ents[(*n)++];
      out.ino = e.ino;
      out.type = e.type;
      std::memcpy(out.name, e.name.data(), e.name.size());
      out.name[e.name.size()] = '\0';
      after = e.name;
    }
    if (pg->done) {
      anchor->eof = 1;
    } else if (pg->entries.empty()) {
      after = pg->anchor;
    }
  }
  anchor->len = static_cast<uint32_t>(after.size());
  std::memcpy(anchor->pos, after.data(), after.size());
  return 0;
}

int tessera_fs_setxattr(tessera_fs* fs, const char* path, const char* name, const void* value,
                        size_t len, int flags) {
  if (fs == nullptr || path == nullptr || name == nullptr || (value == nullptr && len > 0)) {
    return null_argument();
  }
  auto a = fs->ns->resolve(path, Cred::of_process());
  if (!a) return fail(a.error());
  const fs::XattrMode m = (flags & XATTR_CREATE) != 0    ? fs::XattrMode::create
                          : (flags & XATTR_REPLACE) != 0 ? fs::XattrMode::replace
                                                         : fs::XattrMode::any;
  fs::Error e = fs->ns->setxattr(a->ino, name, {static_cast<const char*>(value), len}, m,
                                 Cred::of_process());
  return e ? 0 : fail(e);
}

int64_t tessera_fs_getxattr(tessera_fs* fs, const char* path, const char* name, void* buf,
                            size_t len) {
  if (fs == nullptr || path == nullptr || name == nullptr || (buf == nullptr && len > 0)) {
    return null_argument();
  }
  auto a = fs->ns->resolve(path, Cred::of_process());
  if (!a) return fail(a.error());
  auto v = fs->ns->getxattr(a->ino, name);
  if (!v) return fail(v.error());
  std::memcpy(buf, v->data(), std::min(len, v->size()));
  return static_cast<int64_t>(v->size());
}

}  // extern "C"

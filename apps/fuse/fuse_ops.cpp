#include "apps/fuse/fuse_ops.hpp"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/log.hpp"

namespace tessera::fusemount {

using fs::Attr;
using fs::Cred;
using fs::Ino;

namespace {

Mount& mount_of(fuse_req_t req) {
  return *static_cast<Mount*>(fuse_req_userdata(req));
}

// The request's kernel user.
Cred cred_of(fuse_req_t req) {
  const fuse_ctx* c = fuse_req_ctx(req);
  Cred out{c->uid, c->gid, {}};
  gid_t groups[64];
  const int n = fuse_req_getgroups(req, 64, groups);
  for (int i = 0; i < n && i < 64; ++i) out.groups.push_back(groups[i]);
  return out;
}

// Replies with the error's errno (0: success). Failures of the store rather than of the
// caller's request (EIO, ETIMEDOUT, EROFS, ENOSPC, EBUSY) go to the daemon's log with their
// cause: the application sees only the number.
void reply_error(fuse_req_t req, const fs::Error& e) {
  switch (e.no) {
    case EIO:
    case ETIMEDOUT:
    case EROFS:
    case ENOSPC:
    case EBUSY:
      log::warn("{} ({}): {}", std::strerror(e.no), e.no, e.msg);
      break;
    default:
      break;
  }
  fuse_reply_err(req, e.no);
}

void reply_entry(fuse_req_t req, const Attr& a) {
  const Mount& m = mount_of(req);
  fuse_entry_param e{};
  e.ino = a.ino;
  e.generation = 1;  // inode numbers are never reused
  e.attr = a.to_stat();
  e.attr_timeout = m.opt.attr_timeout;
  e.entry_timeout = m.opt.entry_timeout;
  fuse_reply_entry(req, &e);
}

template <typename R>
bool failed(fuse_req_t req, const R& r) {
  if (r.error().ok()) return false;
  reply_error(req, r.error());
  return true;
}

void op_init(void* userdata, fuse_conn_info* conn) {
  auto* m = static_cast<Mount*>(userdata);
  conn->max_write = 1u << 20;
  conn->max_readahead = 1u << 20;
  if (m->opt.writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE) != 0) {
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  }
  if ((conn->capable & FUSE_CAP_READDIRPLUS) != 0) conn->want |= FUSE_CAP_READDIRPLUS;
  // Cached pages go when the file's mtime or size changes (another client wrote it).
  if ((conn->capable & FUSE_CAP_AUTO_INVAL_DATA) != 0) conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  auto a = mount_of(req).ns.lookup(parent, name, cred_of(req));
  if (failed(req, a)) return;
  reply_entry(req, *a);
}

void op_forget(fuse_req_t req, fuse_ino_t, uint64_t) {
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  auto a = mount_of(req).ns.getattr(ino);
  if (failed(req, a)) return;
  const struct stat st = a->to_stat();
  fuse_reply_attr(req, &st, mount_of(req).opt.attr_timeout);
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  fs::SetAttr s;
  s.set_mode = (to_set & FUSE_SET_ATTR_MODE) != 0;
  s.mode = attr->st_mode;
  s.set_uid = (to_set & FUSE_SET_ATTR_UID) != 0;
  s.uid = attr->st_uid;
  s.set_gid = (to_set & FUSE_SET_ATTR_GID) != 0;
  s.gid = attr->st_gid;
  s.set_size = (to_set & FUSE_SET_ATTR_SIZE) != 0;
  s.size = static_cast<uint64_t>(attr->st_size);
  s.set_atime = (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)) != 0;
  s.atime_now = (to_set & FUSE_SET_ATTR_ATIME_NOW) != 0;
  s.atime_ns = attr->st_atim.tv_sec * 1'000'000'000ll + attr->st_atim.tv_nsec;
  s.set_mtime = (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) != 0;
  s.mtime_now = (to_set & FUSE_SET_ATTR_MTIME_NOW) != 0;
  s.mtime_ns = attr->st_mtim.tv_sec * 1'000'000'000ll + attr->st_mtim.tv_nsec;
  auto a = mount_of(req).ns.setattr(ino, s, cred_of(req));
  if (failed(req, a)) return;
  const struct stat st = a->to_stat();
  fuse_reply_attr(req, &st, mount_of(req).opt.attr_timeout);
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  auto t = mount_of(req).ns.readlink(ino);
  if (failed(req, t)) return;
  fuse_reply_readlink(req, t->c_str());
}

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  auto a = mount_of(req).ns.mknod(parent, name, mode, cred_of(req), rdev);
  if (failed(req, a)) return;
  reply_entry(req, *a);
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  auto a = mount_of(req).ns.mkdir(parent, name, mode, cred_of(req));
  if (failed(req, a)) return;
  reply_entry(req, *a);
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Mount& m = mount_of(req);
  auto u = m.ns.unlink(parent, name, cred_of(req));
  if (failed(req, u)) return;
  m.files.unlinked(*u);
  fuse_reply_err(req, 0);
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  reply_error(req, mount_of(req).ns.rmdir(parent, name, cred_of(req)));
}

void op_symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  auto a = mount_of(req).ns.symlink(parent, name, link, cred_of(req));
  if (failed(req, a)) return;
  reply_entry(req, *a);
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
               const char* newname, unsigned int flags) {
  Mount& m = mount_of(req);
  auto u = m.ns.rename(parent, name, newparent, newname, flags, cred_of(req));
  if (failed(req, u)) return;
  m.files.unlinked(*u);
  fuse_reply_err(req, 0);
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  auto a = mount_of(req).ns.link(ino, newparent, newname, cred_of(req));
  if (failed(req, a)) return;
  reply_entry(req, *a);
}

void set_open_flags(const Mount& m, fuse_file_info* fi) {
  fi->fh = static_cast<uint64_t>(fi->flags);
  fi->keep_cache = m.opt.data_cache ? 1 : 0;
  fi->direct_io = m.opt.data_cache ? 0 : 1;
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Mount& m = mount_of(req);
  auto a = m.ns.getattr(ino);
  if (failed(req, a)) return;
  if (a->is_dir()) return fuse_reply_err(req, EISDIR), void();
  set_open_flags(m, fi);
  m.files.opened(ino);
  if (fuse_reply_open(req, fi) != 0) m.files.released(ino);
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
               fuse_file_info* fi) {
  Mount& m = mount_of(req);
  auto a = m.ns.mknod(parent, name, S_IFREG | (mode & 07777), cred_of(req));
  if (failed(req, a)) return;
  set_open_flags(m, fi);
  m.files.opened(a->ino);
  fuse_entry_param e{};
  e.ino = a->ino;
  e.generation = 1;
  e.attr = a->to_stat();
  e.attr_timeout = m.opt.attr_timeout;
  e.entry_timeout = m.opt.entry_timeout;
  if (fuse_reply_create(req, &e, fi) != 0) m.files.released(a->ino);
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  std::vector<char> buf(size);
  auto n = mount_of(req).ns.read(ino, static_cast<uint64_t>(off), buf);
  if (failed(req, n)) return;
  fuse_reply_buf(req, buf.data(), *n);
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
              fuse_file_info* fi) {
  Mount& m = mount_of(req);
  // With the kernel's write-back cache it places appends itself (it knows the size).
  const bool append = (fi->fh & O_APPEND) != 0 && !m.opt.writeback;
  auto w = m.ns.write(ino, static_cast<uint64_t>(off), {buf, size}, append);
  if (failed(req, w)) return;
  fuse_reply_write(req, size);
}

void op_flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  // Every write was durable on the engines when it was acknowledged.
  fuse_reply_err(req, 0);
}

void op_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  mount_of(req).files.released(ino);
  fuse_reply_err(req, 0);
}

void op_fsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) {
  fuse_reply_err(req, 0);
}

// An open directory: a window of its entries, loaded a page at a time. Offsets are entry
// positions ("." is 0, ".." 1, the first entry 2); a seek back starts again from the first page.
struct DirHandle {
  std::mutex mu;
  Ino ino = 0, parent = 0;
  uint64_t base = 0;  // position of page[0] among the entries (without "." and "..")
  std::vector<fs::DirEntry> page;
  std::string next;  // anchor after `page`
  bool done = false;
  bool loaded = false;
};

constexpr uint32_t kDirPage = 512;

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Mount& m = mount_of(req);
  auto a = m.ns.getattr(ino);
  if (failed(req, a)) return;
  if (!a->is_dir()) return fuse_reply_err(req, ENOTDIR), void();
  if (fs::Error e = m.ns.access(*a, R_OK, cred_of(req)); !e) return reply_error(req, e);
  auto h = std::make_unique<DirHandle>();
  h->ino = ino;
  h->parent = a->parent;
  fi->fh = reinterpret_cast<uint64_t>(h.get());
  fi->cache_readdir = 0;
  if (fuse_reply_open(req, fi) == 0) h.release();
}

// Moves the window of `h` to hold entry `pos` (or to the end).
fs::Error seek(Mount& m, DirHandle& h, uint64_t pos) {
  if (!h.loaded || pos < h.base) {
    h.base = 0;
    h.page.clear();
    h.next.clear();
    h.done = false;
    h.loaded = true;
    auto pg = m.ns.readdir(h.ino, "", kDirPage);
    if (!pg) return pg.error();
    h.page = std::move(pg->entries);
    h.next = pg->anchor;
    h.done = pg->done;
  }
  while (pos >= h.base + h.page.size() && !h.done) {
    auto pg = m.ns.readdir(h.ino, h.next, kDirPage);
    if (!pg) return pg.error();
    h.base += h.page.size();
    h.page = std::move(pg->entries);
    h.next = pg->anchor;
    h.done = pg->done;
  }
  return {};
}

// Fills `buf` from position `off` of the open directory; the reply goes out after `h`'s lock
// is let go, since the kernel may release (free) the handle as soon as it has the reply.
fs::Error fill_dir(fuse_req_t req, DirHandle& h, size_t size, off_t off, bool plus,
                   std::vector<char>& buf, size_t& used) {
  Mount& m = mount_of(req);
  std::lock_guard lk(h.mu);
  buf.resize(size);
  used = 0;
  uint64_t pos = static_cast<uint64_t>(off);
  auto add = [&](const char* name, const struct stat& st, uint64_t next, const Attr* a) {
    size_t n;
    if (plus) {
      fuse_entry_param e{};
      e.attr = st;
      if (a != nullptr) {
        e.ino = a->ino;
        e.generation = 1;
        e.attr_timeout = m.opt.attr_timeout;
        e.entry_timeout = m.opt.entry_timeout;
      }
      n = fuse_add_direntry_plus(req, buf.data() + used, size - used, name, &e,
                                 static_cast<off_t>(next));
    } else {
      n = fuse_add_direntry(req, buf.data() + used, size - used, name, &st,
                            static_cast<off_t>(next));
    }
    if (n > size - used) return false;
    used += n;
    return true;
  };
  for (; pos < 2; ++pos) {
    struct stat st {};
    st.st_ino = pos == 0 ? h.ino : h.parent;
    st.st_mode = S_IFDIR;
    if (!add(pos == 0 ? "." : "..", st, pos + 1, nullptr)) break;
  }
  while (pos >= 2) {
    if (fs::Error e = seek(m, h, pos - 2); !e) {
      if (used == 0) return e;
      break;
    }
    if (pos - 2 >= h.base + h.page.size()) break;  // the end
    const fs::DirEntry& d = h.page[pos - 2 - h.base];
    struct stat st {};
    st.st_ino = d.ino;
    st.st_mode = d.type;
    if (plus) {
      auto a = m.ns.getattr(d.ino);
      if (!a) {  // removed since the listing
        ++pos;
        continue;
      }
      st = a->to_stat();
      if (!add(d.name.c_str(), st, pos + 1, &*a)) break;
    } else if (!add(d.name.c_str(), st, pos + 1, nullptr)) {
      break;
    }
    ++pos;
  }
  return {};
}

void readdir_common(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi, bool plus) {
  std::vector<char> buf;
  size_t used = 0;
  fs::Error e = fill_dir(req, *reinterpret_cast<DirHandle*>(fi->fh), size, off, plus, buf, used);
  if (!e) return reply_error(req, e);
  fuse_reply_buf(req, buf.data(), used);
}

void op_readdir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  readdir_common(req, size, off, fi, false);
}

void op_readdirplus(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  readdir_common(req, size, off, fi, true);
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  delete reinterpret_cast<DirHandle*>(fi->fh);
  fuse_reply_err(req, 0);
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) {
  fuse_reply_err(req, 0);
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  auto s = mount_of(req).ns.statfs();
  if (failed(req, s)) return;
  struct statvfs v {};
  v.f_bsize = s->block_size;
  v.f_frsize = s->block_size;
  v.f_blocks = s->blocks;
  v.f_bfree = s->blocks_free;
  v.f_bavail = s->blocks_free;
  v.f_files = s->files;
  v.f_ffree = s->files_free;
  v.f_favail = s->files_free;
  v.f_namemax = s->name_max;
  fuse_reply_statfs(req, &v);
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                 int flags) {
  const fs::XattrMode mode = (flags & XATTR_CREATE) != 0    ? fs::XattrMode::create
                             : (flags & XATTR_REPLACE) != 0 ? fs::XattrMode::replace
                                                            : fs::XattrMode::any;
  reply_error(req, mount_of(req).ns.setxattr(ino, name, {value, size}, mode, cred_of(req)));
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  auto v = mount_of(req).ns.getxattr(ino, name);
  if (failed(req, v)) return;
  if (size == 0) return fuse_reply_xattr(req, v->size()), void();
  if (v->size() > size) return fuse_reply_err(req, ERANGE), void();
  fuse_reply_buf(req, v->data(), v->size());
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  auto names = mount_of(req).ns.listxattr(ino);
  if (failed(req, names)) return;
  std::string all;
  for (const auto& n : *names) all.append(n).push_back('\0');
  if (size == 0) return fuse_reply_xattr(req, all.size()), void();
  if (all.size() > size) return fuse_reply_err(req, ERANGE), void();
  fuse_reply_buf(req, all.data(), all.size());
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  reply_error(req, mount_of(req).ns.removexattr(ino, name, cred_of(req)));
}

void op_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  reply_error(req, mount_of(req).ns.access(ino, mask, cred_of(req)));
}

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops o{};
  o.init = op_init;
  o.lookup = op_lookup;
  o.forget = op_forget;
  o.getattr = op_getattr;
  o.setattr = op_setattr;
  o.readlink = op_readlink;
  o.mknod = op_mknod;
  o.mkdir = op_mkdir;
  o.unlink = op_unlink;
  o.rmdir = op_rmdir;
  o.symlink = op_symlink;
  o.rename = op_rename;
  o.link = op_link;
  o.open = op_open;
  o.read = op_read;
  o.write = op_write;
  o.flush = op_flush;
  o.release = op_release;
  o.fsync = op_fsync;
  o.opendir = op_opendir;
  o.readdir = op_readdir;
  o.readdirplus = op_readdirplus;
  o.releasedir = op_releasedir;
  o.fsyncdir = op_fsyncdir;
  o.statfs = op_statfs;
  o.setxattr = op_setxattr;
  o.getxattr = op_getxattr;
  o.listxattr = op_listxattr;
  o.removexattr = op_removexattr;
  o.access = op_access;
  o.create = op_create;
  return o;
}

}  // namespace

const fuse_lowlevel_ops& operations() {
  static const fuse_lowlevel_ops ops = make_ops();
  return ops;
}

}  // namespace tessera::fusemount

// Namespace: mount, inode numbers, permissions and the calls that change directory entries.
// File data is in file_io.cpp, extended attributes and statfs in xattr.cpp.
#include "fs/namespace.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "fs/namespace_internal.hpp"
#include "placement/layout.hpp"

namespace tessera::fs {

using namespace detail;

namespace {

constexpr Ino kInoBatch = 1024;  // inode numbers one mount reserves at a time
constexpr int kMaxSymlinks = 40;

bool reserved_key(std::string_view k) {
  return !k.empty() && k[0] == '/';
}

// The class for metadata objects: the container's own, unless it is erasure-coded (entries need
// conditional inserts): then replication surviving as many failures.
uint16_t meta_class_for(uint16_t cls) {
  const auto* c = placement::find_class(cls);
  if (c == nullptr || c->redundancy != placement::Redundancy::erasure) return cls;
  const auto* rp = placement::find_class(c->parity >= 2 ? "RP_3G1" : "RP_2G1");
  return rp != nullptr ? rp->id : cls;
}

// The class for file data: the container's redundancy, with as many groups as the pool allows.
uint16_t data_class_for(uint16_t cls) {
  const auto* c = placement::find_class(cls);
  if (c == nullptr) return cls;
  for (const auto& o : placement::object_classes()) {
    if (o.redundancy == c->redundancy && o.group_size == c->group_size && o.data == c->data &&
        o.parity == c->parity && o.groups == 0) {
      return o.id;
    }
  }
  return cls;
}

}  // namespace

Error from_status(const Status& st, std::string_view what) {
  int no = EIO;
  switch (st.code()) {
    case Errc::ok:
      return {};
    case Errc::not_found:
      no = ENOENT;
      break;
    case Errc::exists:
      no = EEXIST;
      break;
    case Errc::permission:
    case Errc::unauthenticated:
      no = EACCES;
      break;
    case Errc::no_space:
      no = ENOSPC;
      break;
    case Errc::too_big:
      no = EFBIG;
      break;
    case Errc::invalid_argument:
      no = EINVAL;
      break;
    case Errc::unsupported:
      no = EOPNOTSUPP;
      break;
    case Errc::busy:
      no = EBUSY;
      break;
    case Errc::restart:
      return {EBUSY, fmt::format("{}: {}", what, st.to_string()), true};
    case Errc::rf_exceeded:
      no = EROFS;
      break;
    case Errc::timeout:
      no = ETIMEDOUT;
      break;
    default:
      no = EIO;
      break;
  }
  return {no, fmt::format("{}: {}", what, st.to_string())};
}

Cred Cred::of_process() {
  Cred c;
  c.uid = ::geteuid();
  c.gid = ::getegid();
  const int n = ::getgroups(0, nullptr);
  if (n > 0) {
    std::vector<gid_t> g(static_cast<size_t>(n));
    const int got = ::getgroups(n, g.data());
    for (int i = 0; i < got; ++i) c.groups.push_back(g[static_cast<size_t>(i)]);
  }
  return c;
}

bool Cred::in_group(uint32_t g) const {
  return g == gid || std::find(groups.begin(), groups.end(), g) != groups.end();
}

struct stat Attr::to_stat() const {
  struct stat st {};
  st.st_ino = ino;
  st.st_mode = mode;
  st.st_nlink = nlink;
  st.st_uid = uid;
  st.st_gid = gid;
  st.st_rdev = rdev;
  st.st_size = static_cast<off_t>(size);
  st.st_blksize = chunk_size != 0 ? std::min<uint32_t>(chunk_size, 1u << 20) : 4096;
  st.st_blocks = static_cast<blkcnt_t>((size + 511) / 512);
  st.st_atim = {atime_ns / 1'000'000'000, atime_ns % 1'000'000'000};
  st.st_mtim = {mtime_ns / 1'000'000'000, mtime_ns % 1'000'000'000};
  st.st_ctim = {ctime_ns / 1'000'000'000, ctime_ns % 1'000'000'000};
  return st;
}

ObjectId Namespace::inode_oid(Ino ino) const {
  return placement::with_class(ObjectId{static_cast<uint32_t>(ObjTag::inode), ino}, meta_class_);
}

ObjectId Namespace::data_oid(Ino ino) const {
  return placement::with_class(ObjectId{static_cast<uint32_t>(ObjTag::data), ino}, data_class_);
}

Namespace::Namespace(Container& c) : c_(c) {}
Namespace::~Namespace() = default;

Res<std::unique_ptr<Namespace>> Namespace::mount(Container& c, const Cred& cred, MountOptions opt) {
  if (c.handle().cont.c.props.type != mgmt::ContType::posix) {
    return Error{EINVAL, fmt::format("container '{}' is of type {}, not POSIX",
                                     c.handle().cont.c.props.label,
                                     mgmt::cont_type_name(c.handle().cont.c.props.type))};
  }
  if (opt.chunk_size == 0 || opt.chunk_size > (64u << 20)) {
    return Error{EINVAL, fmt::format("chunk size {} is not within 1 B..64 MiB", opt.chunk_size)};
  }
  std::unique_ptr<Namespace> ns(new Namespace(c));
  auto deflt = c.make_oid(0, 0);
  if (!deflt) return from_status(deflt.status(), "the container's object class");
  const uint16_t cls = placement::oid_class(*deflt);
  ns->meta_class_ = meta_class_for(cls);
  ns->data_class_ = data_class_for(cls);
  ns->marks_ = std::make_unique<OutcomeMarks>(c, ns->meta_class_);
  const ObjectId sb = placement::with_class(ObjectId{0, 0}, ns->meta_class_);

  auto have = get_single(c, sb, kSbDkey, kSbLayout);
  if (!have) return from_status(have.status(), "reading the superblock");
  if (!*have) {
    // Format: the root directory first, then the superblock (its presence says the format is
    // complete). Two mounts formatting at once: one of each conditional insert wins.
    const int64_t now = now_ns();
    DiskInode root;
    root.mode = S_IFDIR | 0755;
    root.uid = cred.uid;
    root.gid = cred.gid;
    root.nlink = 2;
    root.parent = kRootIno;
    root.atime_ns = root.mtime_ns = root.ctime_ns = now;
    auto r = c.update(ns->inode_oid(kRootIno), std::string(kInodeDkey), std::string(kAttrAkey),
                      ValueKind::single, 0, as_bytes(encode(root)), {.cond = Cond::insert});
    if (!r && r.status().code() != Errc::exists) return from_status(r.status(), "formatting");
    auto n = c.update(sb, std::string(kSbDkey), std::string(kSbNext), ValueKind::single, 0,
                      as_bytes(encode_u64(kRootIno + 1)), {.cond = Cond::insert});
    if (!n && n.status().code() != Errc::exists) return from_status(n.status(), "formatting");
    Superblock s;
    s.chunk_size = opt.chunk_size;
    s.created_ns = now;
    auto w = c.update(sb, std::string(kSbDkey), std::string(kSbLayout), ValueKind::single, 0,
                      as_bytes(encode(s)), {.cond = Cond::insert});
    if (!w && w.status().code() != Errc::exists) return from_status(w.status(), "formatting");
    have = get_single(c, sb, kSbDkey, kSbLayout);
    if (!have) return from_status(have.status(), "reading the superblock");
    if (!*have) return Error{EIO, "the superblock vanished after formatting"};
  }
  auto s = decode_superblock(**have);
  if (!s) return Error{EIO, "the superblock is damaged or of an unknown layout version"};
  ns->sb_ = *s;
  return ns;
}

Res<Ino> Namespace::next_ino() {
  std::lock_guard lk(ino_mu_);
  if (ino_next_ < ino_end_) return ino_next_++;
  const ObjectId sb = placement::with_class(ObjectId{0, 0}, meta_class_);
  Ino first = 0;
  Error failed = transact(
      c_, *marks_, "reserving inode numbers",
      [&](Transaction& tx, TxBody& b) -> Status {
        auto v = get_single(tx, sb, kSbDkey, kSbNext);
        if (!v) return b.store(v.status(), "reserving inode numbers");
        auto n = *v ? decode_u64(**v) : std::nullopt;
        if (!n) return b.fail(EIO, "the superblock's next inode number is missing or damaged");
        first = *n;
        return tx.update(sb, std::string(kSbDkey), std::string(kSbNext), ValueKind::single, 0,
                         as_bytes(encode_u64(first + kInoBatch)));
      },
      Replay::safe);  // a replay reserves the next batch: numbers are skipped, never shared
  if (!failed) return failed;
  ino_next_ = first + 1;
  ino_end_ = first + kInoBatch;
  return first;
}

Res<Attr> Namespace::getattr(Ino ino) {
  auto a = load_inode(c_, inode_oid(ino), ino);
  if (!a || !a->is_dir()) return a;
  // A directory's entries changed later than its attributes: the blind "m" stamp.
  auto m = get_single(c_, inode_oid(ino), kInodeDkey, kDirMtimeAkey);
  if (!m) return from_status(m.status(), fmt::format("inode {}", ino));
  if (*m) {
    if (auto t = decode_time(**m); t && *t > a->mtime_ns) a->mtime_ns = a->ctime_ns = *t;
  }
  return a;
}

Error Namespace::access(const Attr& a, int mask, const Cred& cred) const {
  if (mask == F_OK) return {};
  if (cred.uid == 0) {
    // Root reads and writes anything; it executes only what someone may execute.
    if ((mask & X_OK) != 0 && !a.is_dir() && (a.mode & 0111) == 0) {
      return {EACCES, fmt::format("inode {} is not executable", a.ino)};
    }
    return {};
  }
  uint32_t bits = a.mode & 07;
  if (cred.uid == a.uid) {
    bits = (a.mode >> 6) & 07;
  } else if (cred.in_group(a.gid)) {
    bits = (a.mode >> 3) & 07;
  }
  const uint32_t want =
      ((mask & R_OK) ? 4u : 0u) | ((mask & W_OK) ? 2u : 0u) | ((mask & X_OK) ? 1u : 0u);
  if ((bits & want) != want) {
    return {EACCES, fmt::format("permission denied: uid {} on inode {} (mode {:o}, owner {}:{})",
                                cred.uid, a.ino, a.mode & 07777, a.uid, a.gid)};
  }
  return {};
}

Error Namespace::access(Ino ino, int mask, const Cred& cred) {
  auto a = getattr(ino);
  if (!a) return a.error();
  return access(*a, mask, cred);
}

Res<Attr> Namespace::lookup(Ino parent, std::string_view name, const Cred& cred) {
  if (name.size() > kNameMax) {
    return Error{ENAMETOOLONG, fmt::format("name of {} bytes (at most {})", name.size(), kNameMax)};
  }
  auto p = getattr(parent);
  if (!p) return p.error();
  return lookup_in(*p, name, cred);
}

Res<Attr> Namespace::lookup_in(const Attr& dir, std::string_view name, const Cred& cred) {
  if (name.size() > kNameMax) {
    return Error{ENAMETOOLONG, fmt::format("name of {} bytes (at most {})", name.size(), kNameMax)};
  }
  const Ino parent = dir.ino;
  if (!dir.is_dir()) return Error{ENOTDIR, fmt::format("inode {} is not a directory", parent)};
  if (Error e = access(dir, X_OK, cred); !e) return e;
  if (name == ".") return dir;
  if (name == "..") return getattr(dir.parent);
  if (int no = check_name(name); no != 0) return Error{no, fmt::format("bad name '{}'", name)};
  auto e = load_entry(c_, inode_oid(parent), name);
  if (!e) return e.error();
  if (!*e) return Error{ENOENT, fmt::format("no entry '{}'", name)};
  return getattr((*e)->ino);
}

// The parent of a new or removed entry: a directory the caller may search and (mask) write.
Res<Attr> Namespace::check_parent(Ino parent, std::string_view name, int mask, const Cred& cred) {
  if (int no = check_name(name); no != 0) {
    return Error{no, no == ENAMETOOLONG
                         ? fmt::format("name of {} bytes (at most {})", name.size(), kNameMax)
                         : fmt::format("bad name '{}'", name)};
  }
  auto p = getattr(parent);
  if (!p) return p.error();
  if (!p->is_dir()) return Error{ENOTDIR, fmt::format("inode {} is not a directory", parent)};
  if (p->nlink == 0) return Error{ENOENT, fmt::format("directory {} was removed", parent)};
  if (Error e = access(*p, mask | X_OK, cred); !e) return e;
  return p;
}

void Namespace::touch_dir(Ino dir, int64_t now) {
  // Blind: entry changes never conflict over their directory's times.
  (void)c_.update(inode_oid(dir), std::string(kInodeDkey), std::string(kDirMtimeAkey),
                  ValueKind::single, 0, as_bytes(encode_time(now)));
}

Res<Attr> Namespace::new_inode(Ino parent, std::string_view name, DiskInode di, const Cred& cred,
                               std::string_view link_target) {
  auto p = check_parent(parent, name, W_OK, cred);
  if (!p) return p.error();
  auto ino = next_ino();
  if (!ino) return ino.error();
  const int64_t now = now_ns();
  di.uid = cred.uid;
  // A set-group-ID directory gives its group (and, to directories, the bit).
  di.gid = (p->mode & S_ISGID) != 0 ? p->gid : cred.gid;
  if ((p->mode & S_ISGID) != 0 && S_ISDIR(di.mode)) di.mode |= S_ISGID;
  di.atime_ns = di.mtime_ns = di.ctime_ns = now;
  const ObjectId io = inode_oid(*ino);
  if (!link_target.empty()) {
    auto l = c_.update(io, std::string(kInodeDkey), std::string(kLinkAkey), ValueKind::single, 0,
                       as_bytes(link_target));
    if (!l) return from_status(l.status(), fmt::format("creating '{}'", name));
  }
  auto w = c_.update(io, std::string(kInodeDkey), std::string(kAttrAkey), ValueKind::single, 0,
                     as_bytes(encode(di)));
  if (!w) return from_status(w.status(), fmt::format("creating '{}'", name));
  // The entry last, inserted only if the name is free: the inode is reachable once it is.
  auto e =
      c_.update(inode_oid(parent), std::string(name), std::string(kEntryAkey), ValueKind::single, 0,
                as_bytes(encode(DiskEntry{*ino, di.mode & S_IFMT})), {.cond = Cond::insert});
  if (!e) {
    if (e.status().code() == Errc::exists) {
      // The insert is sent again when its first answer is lost: the name found may be this
      // very inode's.
      auto have = load_entry(c_, inode_oid(parent), name);
      if (have && *have && (*have)->ino == *ino) {
        touch_dir(parent, now);
        return to_attr(*ino, di);
      }
      (void)c_.punch(io);
      return Error{EEXIST, fmt::format("'{}' exists", name)};
    }
    // Any other failure may have inserted the entry before its answer was lost: the inode is
    // kept (an orphan at worst, never an entry naming nothing).
    return from_status(e.status(), fmt::format("creating '{}'", name));
  }
  touch_dir(parent, now);
  return to_attr(*ino, di);
}

Res<Attr> Namespace::mkdir(Ino parent, std::string_view name, uint32_t mode, const Cred& cred) {
  DiskInode di;
  di.mode = S_IFDIR | (mode & 07777);
  di.nlink = 2;
  di.parent = parent;
  return new_inode(parent, name, di, cred);
}

Res<Attr> Namespace::mknod(Ino parent, std::string_view name, uint32_t mode, const Cred& cred,
                           uint64_t rdev, uint32_t chunk_size) {
  const uint32_t type = (mode & S_IFMT) == 0 ? S_IFREG : (mode & S_IFMT);
  if (type == S_IFDIR || type == S_IFLNK) {
    return Error{EINVAL,
                 "mknod makes files, FIFOs, sockets and devices (mkdir, symlink: the rest)"};
  }
  DiskInode di;
  di.mode = type | (mode & 07777);
  di.nlink = 1;
  di.rdev = rdev;
  di.chunk_size = chunk_size != 0 ? chunk_size : sb_.chunk_size;
  return new_inode(parent, name, di, cred);
}

Res<Attr> Namespace::symlink(Ino parent, std::string_view name, std::string_view target,
                             const Cred& cred) {
  if (target.empty()) return Error{ENOENT, "a symbolic link needs a target"};
  if (target.size() > kSymlinkMax) {
    return Error{ENAMETOOLONG,
                 fmt::format("link target of {} bytes (at most {})", target.size(), kSymlinkMax)};
  }
  DiskInode di;
  di.mode = S_IFLNK | 0777;
  di.nlink = 1;
  di.size = target.size();
  return new_inode(parent, name, di, cred, target);
}

Res<std::string> Namespace::readlink(Ino ino) {
  auto a = getattr(ino);
  if (!a) return a.error();
  if (!a->is_link()) return Error{EINVAL, fmt::format("inode {} is not a symbolic link", ino)};
  auto v = get_single(c_, inode_oid(ino), kInodeDkey, kLinkAkey);
  if (!v) return from_status(v.status(), fmt::format("inode {}", ino));
  if (!*v) return Error{EIO, fmt::format("symbolic link {} has no target", ino)};
  return **v;
}

Res<Attr> Namespace::link(Ino ino, Ino parent, std::string_view name, const Cred& cred) {
  auto p = check_parent(parent, name, W_OK, cred);
  if (!p) return p.error();
  Attr out;
  Error failed = transact(
      c_, *marks_, fmt::format("linking '{}'", name), [&](Transaction& tx, TxBody& b) -> Status {
        // The name first, as the kernel checks it: an existing name is EEXIST even for a directory.
        auto e = load_entry(tx, inode_oid(parent), name);
        if (!e) return b.fail(e.error());
        if (*e) return b.fail(EEXIST, fmt::format("'{}' exists", name));
        auto a = load_inode(tx, inode_oid(ino), ino);
        if (!a) return b.fail(a.error());
        if (a->is_dir()) return b.fail(EPERM, "a directory cannot have another link");
        if (a->nlink == 0) return b.fail(ENOENT, fmt::format("inode {} was removed", ino));
        a->nlink += 1;
        a->ctime_ns = now_ns();
        out = *a;
        TESSERA_TRY(put_inode(tx, inode_oid(ino), *a));
        return tx.update(inode_oid(parent), std::string(name), std::string(kEntryAkey),
                         ValueKind::single, 0, as_bytes(encode(DiskEntry{ino, a->mode & S_IFMT})));
      });
  if (!failed) return failed;
  touch_dir(parent, now_ns());
  return out;
}

namespace {

// The sticky-bit rule: in a sticky directory only the entry's owner, the directory's owner or
// root removes or renames an entry.
Error sticky_ok(const Attr& dir, const Attr& victim, const Cred& cred) {
  if ((dir.mode & S_ISVTX) == 0 || cred.uid == 0 || cred.uid == dir.uid || cred.uid == victim.uid) {
    return {};
  }
  return {EPERM, fmt::format("directory {} is sticky: uid {} owns neither it nor inode {}", dir.ino,
                             cred.uid, victim.ino)};
}

}  // namespace

Res<Unlinked> Namespace::unlink(Ino parent, std::string_view name, const Cred& cred) {
  auto p = check_parent(parent, name, W_OK, cred);
  if (!p) return p.error();
  Unlinked out;
  Error failed = transact(
      c_, *marks_, fmt::format("removing '{}'", name), [&](Transaction& tx, TxBody& b) -> Status {
        auto e = load_entry(tx, inode_oid(parent), name);
        if (!e) return b.fail(e.error());
        if (!*e) return b.fail(ENOENT, fmt::format("no entry '{}'", name));
        if ((*e)->type == S_IFDIR) return b.fail(EISDIR, fmt::format("'{}' is a directory", name));
        const Ino ino = (*e)->ino;
        auto a = load_inode(tx, inode_oid(ino), ino);
        if (!a) return b.fail(a.error());
        if (Error s = sticky_ok(*p, *a, cred); !s) return b.fail(s);
        a->nlink = a->nlink > 0 ? a->nlink - 1 : 0;
        a->ctime_ns = now_ns();
        out = {ino, a->nlink == 0};
        TESSERA_TRY(tx.punch(inode_oid(parent), std::string(name)));
        return put_inode(tx, inode_oid(ino), *a);
      });
  if (!failed) return failed;
  touch_dir(parent, now_ns());
  return out;
}

namespace {

// Whether the directory object `dir` holds any entry, by a page of its dkeys.
Res<bool> dir_has_entries(Container& c, ObjectId dir) {
  std::string anchor;
  for (;;) {
    auto pg = c.list_page(ListScope::dkeys, dir, "", "", 0, anchor, 8);
    if (!pg) return from_status(pg.status(), "listing a directory");
    for (const auto& k : pg->entries) {
      if (!reserved_key(k.key)) return true;
    }
    if (pg->done) return false;
    anchor = pg->anchor;
  }
}
Res<bool> dir_has_entries(Transaction& tx, ObjectId dir) {
  auto all = tx.list_all(ListScope::dkeys, dir);
  if (!all) return from_status(all.status(), "listing a directory");
  for (const auto& k : *all) {
    if (!reserved_key(k.key)) return true;
  }
  return false;
}

}  // namespace

Error Namespace::rmdir(Ino parent, std::string_view name, const Cred& cred) {
  auto p = check_parent(parent, name, W_OK, cred);
  if (!p) return p.error();
  Error failed = transact(
      c_, *marks_, fmt::format("removing directory '{}'", name),
      [&](Transaction& tx, TxBody& b) -> Status {
        auto e = load_entry(tx, inode_oid(parent), name);
        if (!e) return b.fail(e.error());
        if (!*e) return b.fail(ENOENT, fmt::format("no entry '{}'", name));
        if ((*e)->type != S_IFDIR)
          return b.fail(ENOTDIR, fmt::format("'{}' is not a directory", name));
        const Ino ino = (*e)->ino;
        auto a = load_inode(tx, inode_oid(ino), ino);
        if (!a) return b.fail(a.error());
        if (Error s = sticky_ok(*p, *a, cred); !s) return b.fail(s);
        // A quick look outside the transaction spares listing a large directory in it.
        auto quick = dir_has_entries(c_, inode_oid(ino));
        if (!quick) return b.fail(quick.error());
        if (*quick) return b.fail(ENOTEMPTY, fmt::format("directory '{}' is not empty", name));
        auto full = dir_has_entries(tx, inode_oid(ino));
        if (!full) return b.fail(full.error());
        if (*full) return b.fail(ENOTEMPTY, fmt::format("directory '{}' is not empty", name));
        TESSERA_TRY(tx.punch(inode_oid(parent), std::string(name)));
        return tx.punch(inode_oid(ino));
      });
  if (!failed) return failed;
  touch_dir(parent, now_ns());
  return {};
}

Res<Unlinked> Namespace::rename(Ino parent, std::string_view name, Ino new_parent,
                                std::string_view new_name, unsigned flags, const Cred& cred) {
  if ((flags & ~unsigned{RENAME_NOREPLACE}) != 0) {
    return Error{EINVAL, "rename: only RENAME_NOREPLACE is supported"};
  }
  auto p = check_parent(parent, name, W_OK, cred);
  if (!p) return p.error();
  auto np = check_parent(new_parent, new_name, W_OK, cred);
  if (!np) return np.error();
  Unlinked out;
  Error failed = transact(
      c_, *marks_, fmt::format("renaming '{}' to '{}'", name, new_name),
      [&](Transaction& tx, TxBody& b) -> Status {
        out = {};
        auto se = load_entry(tx, inode_oid(parent), name);
        if (!se) return b.fail(se.error());
        if (!*se) return b.fail(ENOENT, fmt::format("no entry '{}'", name));
        auto de = load_entry(tx, inode_oid(new_parent), new_name);
        if (!de) return b.fail(de.error());
        const DiskEntry src = **se;
        if (*de && (*de)->ino == src.ino) return Status();  // the same inode: nothing to do
        if (*de && (flags & RENAME_NOREPLACE) != 0) {
          return b.fail(EEXIST, fmt::format("'{}' exists", new_name));
        }
        auto sa = load_inode(tx, inode_oid(src.ino), src.ino);
        if (!sa) return b.fail(sa.error());
        if (Error s = sticky_ok(*p, *sa, cred); !s) return b.fail(s);
        if (src.type == S_IFDIR && new_parent != parent) {
          // A directory may not move below itself: walk up from the new parent to the root.
          Ino at = new_parent;
          for (int depth = 0; at != kRootIno; ++depth) {
            if (at == src.ino || depth > 4096) {
              return b.fail(EINVAL, fmt::format("cannot move directory '{}' below itself", name));
            }
            auto up = load_inode(tx, inode_oid(at), at);
            if (!up) return b.fail(up.error());
            at = up->parent;
          }
          sa->parent = new_parent;
        }
        if (*de && (*de)->type == S_IFDIR) {
          // Over a directory holding the source (its parent or above): never empty.
          for (Ino at = parent;;) {
            if (at == (*de)->ino) {
              return b.fail(ENOTEMPTY, fmt::format("'{}' holds '{}'", new_name, name));
            }
            if (at == kRootIno) break;
            auto up = load_inode(tx, inode_oid(at), at);
            if (!up) return b.fail(up.error());
            at = up->parent;
          }
        }
        if (*de) {
          const DiskEntry dst = **de;
          if (src.type == S_IFDIR && dst.type != S_IFDIR) {
            return b.fail(ENOTDIR, fmt::format("'{}' is not a directory", new_name));
          }
          if (src.type != S_IFDIR && dst.type == S_IFDIR) {
            return b.fail(EISDIR, fmt::format("'{}' is a directory", new_name));
          }
          auto da = load_inode(tx, inode_oid(dst.ino), dst.ino);
          if (!da) return b.fail(da.error());
          if (Error s = sticky_ok(*np, *da, cred); !s) return b.fail(s);
          if (dst.type == S_IFDIR) {
            auto full = dir_has_entries(tx, inode_oid(dst.ino));
            if (!full) return b.fail(full.error());
            if (*full)
              return b.fail(ENOTEMPTY, fmt::format("directory '{}' is not empty", new_name));
            TESSERA_TRY(tx.punch(inode_oid(dst.ino)));
            out = {dst.ino, false};
          } else {
            da->nlink = da->nlink > 0 ? da->nlink - 1 : 0;
            da->ctime_ns = now_ns();
            out = {dst.ino, da->nlink == 0};
            TESSERA_TRY(put_inode(tx, inode_oid(dst.ino), *da));
          }
        }
        sa->ctime_ns = now_ns();
        TESSERA_TRY(put_inode(tx, inode_oid(src.ino), *sa));
        TESSERA_TRY(tx.punch(inode_oid(parent), std::string(name)));
        return tx.update(inode_oid(new_parent), std::string(new_name), std::string(kEntryAkey),
                         ValueKind::single, 0, as_bytes(encode(src)));
      });
  if (!failed) return failed;
  const int64_t now = now_ns();
  touch_dir(parent, now);
  if (new_parent != parent) touch_dir(new_parent, now);
  return out;
}

Res<Attr> Namespace::setattr(Ino ino, const SetAttr& s, const Cred& cred) {
  Attr out;
  uint64_t old_size = 0;
  Error failed = transact(
      c_, *marks_, fmt::format("changing inode {}", ino),
      [&](Transaction& tx, TxBody& b) -> Status {
        auto a = load_inode(tx, inode_oid(ino), ino);
        if (!a) return b.fail(a.error());
        const bool owner = cred.uid == 0 || cred.uid == a->uid;
        const int64_t now = now_ns();
        // The largest size any run saw: a replay after an uncertain commit that did shrink
        // the file still punches the data beyond the new size.
        old_size = std::max(old_size, a->size);
        if (s.set_mode) {
          if (!owner)
            return b.fail(EPERM, fmt::format("uid {} does not own inode {}", cred.uid, ino));
          uint32_t m = s.mode & 07777;
          if (cred.uid != 0 && !cred.in_group(a->gid)) m &= ~uint32_t{S_ISGID};
          a->mode = (a->mode & S_IFMT) | m;
        }
        if (s.set_uid && s.uid != a->uid) {
          if (cred.uid != 0) return b.fail(EPERM, "only root changes a file's owner");
          a->uid = s.uid;
          if (!a->is_dir()) a->mode &= ~uint32_t{S_ISUID | S_ISGID};
        }
        if (s.set_gid && s.gid != a->gid) {
          if (cred.uid != 0 && !(cred.uid == a->uid && cred.in_group(s.gid))) {
            return b.fail(
                EPERM, fmt::format("uid {} may not give inode {} group {}", cred.uid, ino, s.gid));
          }
          a->gid = s.gid;
          if (cred.uid != 0 && !a->is_dir()) a->mode &= ~uint32_t{S_ISUID | S_ISGID};
        }
        if (s.set_size) {
          if (a->is_dir()) return b.fail(EISDIR, fmt::format("inode {} is a directory", ino));
          if (!a->is_reg()) return b.fail(EINVAL, fmt::format("inode {} is not a file", ino));
          if (Error e = access(*a, W_OK, cred); !e) return b.fail(e);
          a->size = s.size;
          a->mtime_ns = now;
        }
        for (auto [set, at_now, value, field] :
             {std::tuple{s.set_atime, s.atime_now, s.atime_ns, &a->atime_ns},
              std::tuple{s.set_mtime, s.mtime_now, s.mtime_ns, &a->mtime_ns}}) {
          if (!set) continue;
          if (!owner) {
            if (!at_now)
              return b.fail(EPERM, fmt::format("uid {} does not own inode {}", cred.uid, ino));
            if (Error e = access(*a, W_OK, cred); !e) return b.fail(e);
          }
          *field = at_now ? now : value;
        }
        a->ctime_ns = now;
        out = *a;
        return put_inode(tx, inode_oid(ino), *a);
      },
      Replay::safe);
  if (!failed) return failed;
  if (s.set_size && s.size < old_size) {
    if (Error e = data_punch_from(out, s.size, old_size); !e) return e;
  }
  if (out.is_dir()) return getattr(ino);
  return out;
}

Res<DirPage> Namespace::readdir(Ino dir, const std::string& anchor, uint32_t limit) {
  const ObjectId d = inode_oid(dir);
  auto pg = c_.list_page(ListScope::dkeys, d, "", "", 0, anchor, std::max<uint32_t>(limit, 1));
  if (!pg) return from_status(pg.status(), fmt::format("listing directory {}", dir));
  // Each entry's inode number and type, read in parallel.
  std::vector<std::pair<std::string, Container::Future<FetchResult>>> reads;
  for (const auto& k : pg->entries) {
    if (reserved_key(k.key)) continue;
    reads.emplace_back(k.key, c_.fetch_async(d, k.key, std::string(kEntryAkey), ValueKind::single));
  }
  DirPage out;
  out.anchor = pg->anchor;
  out.done = pg->done;
  for (auto& [name, f] : reads) {
    auto r = f.get();
    if (!r) return from_status(r.status(), fmt::format("entry '{}'", name));
    if (!r->exists) continue;  // removed since the listing
    auto e = decode_entry(r->data.view());
    if (!e) return Error{EIO, fmt::format("entry '{}' is damaged", name)};
    out.entries.push_back({name, e->ino, e->type});
  }
  return out;
}

Res<Attr> Namespace::resolve(std::string_view path, const Cred& cred, bool follow) {
  std::vector<std::string> todo;  // components still to walk, last first
  auto push_path = [&](std::string_view p) {
    std::vector<std::string> parts;
    size_t at = 0;
    while (at <= p.size()) {
      size_t end = p.find('/', at);
      if (end == std::string_view::npos) end = p.size();
      if (end > at) parts.emplace_back(p.substr(at, end - at));
      at = end + 1;
    }
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) todo.push_back(*it);
  };
  push_path(path);
  auto cur = getattr(kRootIno);
  if (!cur) return cur;
  int links = 0;
  while (!todo.empty()) {
    const std::string part = std::move(todo.back());
    todo.pop_back();
    auto next = lookup_in(*cur, part, cred);
    if (!next) return next;
    if (next->is_link() && (follow || !todo.empty())) {
      if (++links > kMaxSymlinks) {
        return Error{ELOOP, fmt::format("more than {} symbolic links in '{}'", kMaxSymlinks, path)};
      }
      auto target = readlink(next->ino);
      if (!target) return target.error();
      if (!target->empty() && (*target)[0] == '/') {
        cur = getattr(kRootIno);
        if (!cur) return cur;
      }
      push_path(*target);
      continue;
    }
    cur = std::move(next);
  }
  return cur;
}

Res<Namespace::Parent> Namespace::resolve_parent(std::string_view path, const Cred& cred) {
  std::string p(path);
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t at = p.rfind('/');
  std::string name = at == std::string::npos ? p : p.substr(at + 1);
  const std::string dir = at == std::string::npos || at == 0 ? "/" : p.substr(0, at);
  if (name.empty() || name == "/") return Error{EINVAL, "the root has no parent"};
  auto d = resolve(dir, cred);
  if (!d) return d.error();
  if (!d->is_dir()) return Error{ENOTDIR, fmt::format("'{}' is not a directory", dir)};
  return Parent{*d, std::move(name)};
}

}  // namespace tessera::fs

// Namespace: a POSIX file system in a container (docs/POSIX.md), the layer tessera-fuse, the
// `tessera fs` commands and the C API's tessera_fs_* calls stand on.
//
// Calls work on inode numbers, as a kernel file system does: lookup(parent, name) finds an
// entry, and every other call names the inode it changes. Each call checks permissions as the
// caller `cred` (mode bits, owner and group; uid 0 passes, as root does), and returns a POSIX
// errno on failure (Error::no, with a message naming the entry and, for a store failure, what
// the store said).
//
// What changes several keys is one user transaction (client/transaction.hpp): rename (across
// directories and over an existing entry), link, unlink, rmdir, and any write that extends a
// file or appends to it (the data and the new size commit together). A transaction that meets
// a concurrent one runs again. Creating an entry is a conditional insert of its key, so two
// creators of one name cannot both succeed (O_EXCL).
//
// An inode whose last link goes stays readable and writable through its number until
// reclaim(ino) removes it: the caller decides when (at once, or once no open handle is left).
//
// Thread-safe: any number of threads may call at once (the Container is; the inode-number
// reservation has its own lock). Blocking calls: never from a target thread.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "client/container.hpp"
#include "fs/layout.hpp"

namespace tessera::fs {

class OutcomeMarks;  // fs/outcome_marks.hpp

// A failure: `no` a POSIX errno (0: none).
struct Error {
  int no = 0;
  std::string msg;
  bool retry = false;  // the store said `restart`: a transaction meeting it runs again
  bool ok() const { return no == 0; }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return *this; }  // as Res<T>::error()
};

template <typename T>
class Res {
 public:
  Res(T v) : v_(std::move(v)) {}                 // NOLINT
  Res(Error e) : e_(std::move(e)) {}              // NOLINT
  bool ok() const { return e_.no == 0; }
  explicit operator bool() const { return ok(); }
  T& operator*() { return v_; }
  const T& operator*() const { return v_; }
  T* operator->() { return &v_; }
  const T* operator->() const { return &v_; }
  const Error& error() const { return e_; }

 private:
  T v_{};
  Error e_;
};

// Who asks: the kernel's uid and gids of a FUSE request, or the calling process.
struct Cred {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> groups;  // supplementary groups
  static Cred of_process();
  bool in_group(uint32_t g) const;
};

struct Attr {
  Ino ino = 0;
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t nlink = 0;
  uint64_t size = 0;
  uint32_t chunk_size = 0;
  Ino parent = 0;
  int64_t atime_ns = 0, mtime_ns = 0, ctime_ns = 0;
  uint64_t rdev = 0;
  bool is_dir() const { return S_ISDIR(mode); }
  bool is_reg() const { return S_ISREG(mode); }
  bool is_link() const { return S_ISLNK(mode); }
  struct stat to_stat() const;
};

// What setattr changes (each only when its flag is set).
struct SetAttr {
  bool set_mode = false, set_uid = false, set_gid = false, set_size = false;
  bool set_atime = false, set_mtime = false;
  bool atime_now = false, mtime_now = false;  // the caller's UTIME_NOW
  uint32_t mode = 0, uid = 0, gid = 0;
  uint64_t size = 0;
  int64_t atime_ns = 0, mtime_ns = 0;
};

struct DirEntry {
  std::string name;
  Ino ino = 0;
  uint32_t type = 0;  // S_IFMT bits
};

// One page of a directory: pass `anchor` back for the next; `done` once none follow.
struct DirPage {
  std::vector<DirEntry> entries;
  std::string anchor;
  bool done = true;
};

// What removing an entry did to the inode it named.
struct Unlinked {
  Ino ino = 0;            // 0: nothing was replaced (rename onto a free name)
  bool last_link = false;  // its last link went: reclaim() it once nothing has it open
};

struct StatFs {
  uint64_t block_size = 4096;
  uint64_t blocks = 0, blocks_free = 0;
  uint64_t files = 0, files_free = 0;
  uint32_t name_max = kNameMax;
};

struct MountOptions {
  uint32_t chunk_size = kDefaultChunk;  // for a container formatted by this mount
};

// setxattr flags, as XATTR_CREATE / XATTR_REPLACE.
enum class XattrMode { any, create, replace };

class Namespace {
 public:
  // Removes this mount's outcome marks (fs/outcome_marks.hpp), if it wrote any.
  ~Namespace();
  // Opens the namespace of a POSIX container, formatting it first when it holds none yet (the
  // superblock and the root directory, owned by `cred`, mode 0755). `c` must outlive it.
  static Res<std::unique_ptr<Namespace>> mount(Container& c, const Cred& cred,
                                               MountOptions opt = {});

  uint32_t chunk_size() const { return sb_.chunk_size; }

  Res<Attr> getattr(Ino ino);
  Res<Attr> lookup(Ino parent, std::string_view name, const Cred& cred);
  // The same in a directory just loaded (`dir`: its attributes): the parent is not fetched
  // again (a path walk loads each directory once).
  Res<Attr> lookup_in(const Attr& dir, std::string_view name, const Cred& cred);
  // `mask`: R_OK | W_OK | X_OK (F_OK: exists).
  Error access(Ino ino, int mask, const Cred& cred);
  Error access(const Attr& a, int mask, const Cred& cred) const;

  Res<Attr> mkdir(Ino parent, std::string_view name, uint32_t mode, const Cred& cred);
  // A regular file (or FIFO, socket, device by `mode`'s type); EEXIST when the name is taken.
  Res<Attr> mknod(Ino parent, std::string_view name, uint32_t mode, const Cred& cred,
                  uint64_t rdev = 0, uint32_t chunk_size = 0);
  Res<Attr> symlink(Ino parent, std::string_view name, std::string_view target,
                    const Cred& cred);
  Res<std::string> readlink(Ino ino);
  Res<Attr> link(Ino ino, Ino parent, std::string_view name, const Cred& cred);
  Res<Unlinked> unlink(Ino parent, std::string_view name, const Cred& cred);
  Error rmdir(Ino parent, std::string_view name, const Cred& cred);
  // RENAME_NOREPLACE / RENAME_EXCHANGE bits of renameat2 (only NOREPLACE is supported).
  Res<Unlinked> rename(Ino parent, std::string_view name, Ino new_parent,
                       std::string_view new_name, unsigned flags, const Cred& cred);
  // Removes the inode and its data (after its last link went).
  Error reclaim(Ino ino);

  Res<Attr> setattr(Ino ino, const SetAttr& s, const Cred& cred);
  Res<DirPage> readdir(Ino dir, const std::string& anchor, uint32_t limit);

  // Reads up to `buf.size()` bytes at `offset` (holes read as zeros; stops at the size).
  Res<size_t> read(Ino ino, uint64_t offset, std::span<char> buf);
  // The same for an inode just loaded (`a`: its attributes, as resolve or getattr gave them):
  // its size as loaded bounds the read, and the inode is not fetched again.
  Res<size_t> read(const Attr& a, uint64_t offset, std::span<char> buf);
  // Writes at `offset`, or at the end of the file when `append` (atomically: two appenders
  // never overwrite each other). Returns the offset written at.
  Res<uint64_t> write(Ino ino, uint64_t offset, std::span<const char> data, bool append = false);

  Error setxattr(Ino ino, std::string_view name, std::string_view value, XattrMode mode,
                 const Cred& cred);
  Res<std::string> getxattr(Ino ino, std::string_view name);
  Res<std::vector<std::string>> listxattr(Ino ino);
  Error removexattr(Ino ino, std::string_view name, const Cred& cred);

  Res<StatFs> statfs();

  // A path from the root ("/a/b"), following symlinks in the middle and, when `follow`, at the
  // end (ELOOP past 40). Permissions as `cred`.
  Res<Attr> resolve(std::string_view path, const Cred& cred, bool follow = true);

  // The directory holding the last name of `path` (symlinks before it followed), and that
  // name; ENOTDIR when it is not a directory, EINVAL for the root.
  struct Parent {
    Attr dir;
    std::string name;
  };
  Res<Parent> resolve_parent(std::string_view path, const Cred& cred);

  Container& container() { return c_; }
  // The object holding an inode's attributes (and a directory's entries), and a file's data
  // object (docs/POSIX.md).
  ObjectId inode_oid(Ino ino) const;
  ObjectId data_oid(Ino ino) const;

 private:
  explicit Namespace(Container& c);
  Res<Ino> next_ino();
  Res<Attr> new_inode(Ino parent, std::string_view name, DiskInode di, const Cred& cred,
                      std::string_view link_target = {});
  void touch_dir(Ino dir, int64_t now);
  Error data_punch_from(const Attr& a, uint64_t from, uint64_t old_size);
  Res<Attr> check_parent(Ino parent, std::string_view name, int mask, const Cred& cred);

  Container& c_;
  Superblock sb_;
  uint16_t meta_class_ = 0;
  uint16_t data_class_ = 0;
  std::mutex ino_mu_;
  Ino ino_next_ = 0, ino_end_ = 0;  // reserved, not yet used
  // This mount's outcome marks (made at mount, once the metadata class is known).
  std::unique_ptr<OutcomeMarks> marks_;
};

// A store failure as an errno, with the store's message.
Error from_status(const Status& st, std::string_view what);

}  // namespace tessera::fs

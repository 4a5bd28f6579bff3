// Namespace: extended attributes (dkey "/x" of the inode object, one akey per name, the value
// after a one-byte tag so an empty value is still a value) and statfs.
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>

#include "client/client.hpp"
#include "fs/namespace.hpp"
#include "fs/namespace_internal.hpp"

namespace tessera::fs {

using namespace detail;

namespace {

constexpr char kXattrTag = 'v';

Error check_xattr_name(std::string_view name) {
  if (name.empty()) return {EINVAL, "an extended attribute needs a name"};
  if (name.size() > kXattrNameMax) {
    return {ERANGE, fmt::format("extended attribute name of {} bytes (at most {})", name.size(),
                                kXattrNameMax)};
  }
  return {};
}

}  // namespace

Error Namespace::setxattr(Ino ino, std::string_view name, std::string_view value, XattrMode mode,
                          const Cred& cred) {
  if (Error e = check_xattr_name(name); !e) return e;
  if (value.size() > kXattrValueMax) {
    return {E2BIG, fmt::format("extended attribute value of {} bytes (at most {})", value.size(),
                               kXattrValueMax)};
  }
  if (name.starts_with("system.posix_acl_")) {
    // POSIX ACLs are not kept: refused, so tools (cp -a, rsync -A) fall back to the mode bits
    // instead of storing an ACL that would not change them.
    return {EOPNOTSUPP, "POSIX ACLs are not supported (the mode bits are)"};
  }
  auto a = getattr(ino);
  if (!a) return a.error();
  if (name.starts_with("trusted.") && cred.uid != 0) {
    return {EPERM, "trusted.* attributes are root's"};
  }
  if (Error e = access(*a, W_OK, cred); !e) return e;
  std::string v(1, kXattrTag);
  v.append(value);
  const Cond cond = mode == XattrMode::create    ? Cond::insert
                    : mode == XattrMode::replace ? Cond::update
                                                 : Cond::none;
  auto r = c_.update(inode_oid(ino), std::string(kXattrDkey), std::string(name), ValueKind::single,
                     0, as_bytes(v), {.cond = cond});
  if (!r) {
    if (r.status().code() == Errc::exists) return {EEXIST, fmt::format("'{}' exists", name)};
    if (r.status().code() == Errc::not_found) return {ENODATA, fmt::format("no '{}'", name)};
    return from_status(r.status(), fmt::format("setting '{}'", name));
  }
  return {};
}

Res<std::string> Namespace::getxattr(Ino ino, std::string_view name) {
  if (Error e = check_xattr_name(name); !e) return e;
  auto v = get_single(c_, inode_oid(ino), kXattrDkey, name);
  if (!v) return from_status(v.status(), fmt::format("reading '{}'", name));
  if (!*v || (*v)->empty()) {
    auto a = getattr(ino);  // ENOENT for a removed inode, else ENODATA
    if (!a) return a.error();
    return Error{ENODATA, fmt::format("no extended attribute '{}'", name)};
  }
  return (*v)->substr(1);
}

Res<std::vector<std::string>> Namespace::listxattr(Ino ino) {
  auto a = getattr(ino);
  if (!a) return a.error();
  auto all = c_.list_all(ListScope::akeys, inode_oid(ino), std::string(kXattrDkey));
  if (!all) return from_status(all.status(), fmt::format("listing attributes of inode {}", ino));
  std::vector<std::string> out;
  for (auto& k : *all) out.push_back(std::move(k.key));
  return out;
}

Error Namespace::removexattr(Ino ino, std::string_view name, const Cred& cred) {
  if (Error e = check_xattr_name(name); !e) return e;
  auto a = getattr(ino);
  if (!a) return a.error();
  if (Error e = access(*a, W_OK, cred); !e) return e;
  auto v = get_single(c_, inode_oid(ino), kXattrDkey, name);
  if (!v) return from_status(v.status(), fmt::format("reading '{}'", name));
  if (!*v) return {ENODATA, fmt::format("no extended attribute '{}'", name)};
  auto r = c_.punch(inode_oid(ino), std::string(kXattrDkey), std::string(name));
  return r ? Error{} : from_status(r.status(), fmt::format("removing '{}'", name));
}

Res<StatFs> Namespace::statfs() {
  StatFs out;
  uint64_t capacity = 0, used = 0;
  for (const auto& t : c_.client().pool_space(c_.handle().pool)) {
    if (!t.stats) continue;
    capacity += t.stats->capacity;
    used += std::min(t.stats->used, t.stats->capacity);
  }
  if (capacity == 0) return Error{EIO, "no target of the pool answered a space query"};
  out.blocks = capacity / out.block_size;
  out.blocks_free = (capacity - used) / out.block_size;
  // Inodes are not preallocated: as many as the space could hold at one block each.
  out.files = out.blocks;
  out.files_free = out.blocks_free;
  return out;
}

}  // namespace tessera::fs

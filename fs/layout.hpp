// The on-object layout of a POSIX container (docs/POSIX.md): which object holds what, under
// which keys, and how inodes, directory entries and the superblock are encoded.
//
//   superblock   OID (0, 0)    dkey "/sb":  akey "layout" (Superblock), "next" (next free ino)
//   inode N      OID (1, N)    dkey "/i":   akey "a" (DiskInode), "m" (a directory's content
//                                           mtime, put blindly by entry changes), "l" (symlink
//                                           target)
//                              dkey "/x":   one akey per extended attribute ("v" + value)
//   directory N  OID (1, N)    every other dkey is an entry name: akey "e" (DiskEntry)
//   file data N  OID (2, N)    dkey = chunk index (8 bytes, big-endian): akey "d", an array of
//                              bytes, offsets inside the chunk
//   outcome marks OID (3, M)   of the mount whose random id is M: dkey "/o", one akey per slot
//                              (8 bytes, big-endian), its last mark's sequence number (8 bytes,
//                              little-endian); punched when the mount ends (fs/outcome_marks.hpp)
//
// Names never contain '/', so the reserved dkeys ("/i", "/x", "/sb") never meet an entry.
// Metadata objects use the container's class (a replicated one in an erasure-coded container,
// since directory entries need conditional inserts); file data uses the GX class of the
// container's redundancy, so a large file's chunks spread over every target.
//
// Values are little-endian fixed records with a version byte first.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/object.hpp"

namespace tessera::fs {

using Ino = uint64_t;
inline constexpr Ino kRootIno = 1;
inline constexpr uint32_t kDefaultChunk = 1u << 20;
inline constexpr size_t kNameMax = 255;
inline constexpr size_t kSymlinkMax = 4095;
inline constexpr size_t kXattrNameMax = 255;
inline constexpr size_t kXattrValueMax = 64 * 1024;

// OID user bits: hi selects what the object is, lo the inode number.
enum class ObjTag : uint32_t { superblock = 0, inode = 1, data = 2, marks = 3 };

inline constexpr std::string_view kSbDkey = "/sb";
inline constexpr std::string_view kSbLayout = "layout";
inline constexpr std::string_view kSbNext = "next";
inline constexpr std::string_view kInodeDkey = "/i";
inline constexpr std::string_view kAttrAkey = "a";
inline constexpr std::string_view kDirMtimeAkey = "m";
inline constexpr std::string_view kLinkAkey = "l";
inline constexpr std::string_view kXattrDkey = "/x";
inline constexpr std::string_view kEntryAkey = "e";
inline constexpr std::string_view kDataAkey = "d";
inline constexpr std::string_view kMarksDkey = "/o";

struct Superblock {
  uint32_t version = 1;
  uint32_t chunk_size = kDefaultChunk;
  int64_t created_ns = 0;
};

struct DiskInode {
  uint32_t mode = 0;  // type and permission bits (S_IFMT | 07777)
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t nlink = 0;
  uint32_t chunk_size = kDefaultChunk;  // files: bytes per data chunk
  uint64_t size = 0;                    // files: bytes; symlinks: target length
  Ino parent = 0;                       // directories: the directory holding its entry
  int64_t atime_ns = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  uint64_t rdev = 0;
};

struct DiskEntry {
  Ino ino = 0;
  uint32_t type = 0;  // S_IFMT bits of the inode
};

std::string encode(const Superblock& s);
std::optional<Superblock> decode_superblock(std::string_view b);
std::string encode(const DiskInode& i);
std::optional<DiskInode> decode_inode(std::string_view b);
std::string encode(const DiskEntry& e);
std::optional<DiskEntry> decode_entry(std::string_view b);
std::string encode_time(int64_t ns);
std::optional<int64_t> decode_time(std::string_view b);

// A number as a value: 8 bytes, little-endian like every record (the next free inode number, an
// outcome mark's sequence number).
std::string encode_u64(uint64_t v);
std::optional<uint64_t> decode_u64(std::string_view b);

// A number as a key that lists in numeric order: 8 bytes, big-endian (chunk dkeys, mark slots).
std::string index_key(uint64_t index);
// The dkey of chunk `index` (index_key, so chunks list in file order).
inline std::string chunk_dkey(uint64_t index) {
  return index_key(index);
}
std::optional<uint64_t> chunk_index(std::string_view dkey);

// A name an entry may have: 1..255 bytes, no '/' or NUL, not "." or "..". Returns the errno
// refusing it (0: fine).
int check_name(std::string_view name);

}  // namespace tessera::fs

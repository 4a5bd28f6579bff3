// A target's storage file read and damaged from outside, while no engine has it open: where its
// write-ahead log groups are, and a flipped byte in one (tests of damage detection).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <iterator>
#include <map>
#include <string>

#include "storage/store_internal.hpp"
#include "storage/wal.hpp"

namespace tessera::testing {

// The log groups of the file's current incarnation found in its log region: lsn -> file offset.
inline std::map<uint64_t, uint64_t> log_groups(const std::string& path) {
  std::map<uint64_t, uint64_t> out;
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return out;
  storage::detail::Superblock sb{};
  char block[4096];
  if (::pread(fd, block, sizeof(block), 0) == static_cast<ssize_t>(sizeof(block))) {
    std::memcpy(&sb, block, sizeof(sb));
    for (uint64_t at = sb.wal_off; at < sb.wal_off + sb.wal_len; at += sizeof(block)) {
      if (::pread(fd, block, sizeof(block), static_cast<off_t>(at)) !=
          static_cast<ssize_t>(sizeof(block))) {
        break;
      }
      storage::GroupHeader h;
      std::memcpy(&h, block, sizeof(h));
      if (h.magic == storage::kGroupMagic && h.incarnation == sb.incarnation) out[h.lsn] = at;
    }
  }
  ::close(fd);
  return out;
}

// Flips the byte of the file at `at`; false when the file could not be written.
inline bool flip_byte(const std::string& path, uint64_t at) {
  int fd = ::open(path.c_str(), O_RDWR);
  if (fd < 0) return false;
  char c = 0;
  bool ok = ::pread(fd, &c, 1, static_cast<off_t>(at)) == 1;
  c = static_cast<char>(c ^ 0x5a);
  ok = ok && ::pwrite(fd, &c, 1, static_cast<off_t>(at)) == 1;
  ::close(fd);
  return ok;
}

// Flips a byte of the payload of the group at file offset `at`.
inline bool damage_group(const std::string& path, uint64_t at) {
  return flip_byte(path, at + 40);
}

// Damages the group before the last one of the log: damage in the middle, with an acknowledged
// group after it (not a torn tail). False when the log holds fewer than two groups.
inline bool damage_middle_of_log(const std::string& path) {
  auto groups = log_groups(path);
  if (groups.size() < 2) return false;
  return damage_group(path, std::prev(groups.end(), 2)->second);
}

}  // namespace tessera::testing

// OpenFiles: the inodes a process holds open, so that one whose last link goes while open is
// reclaimed at its last close instead (POSIX's "unlink while open"). Used by tessera-fuse (the
// kernel's opens) and the C API (tessera_fs_open). Thread-safe: one mutex, held briefly.
#pragma once

#include <mutex>
#include <unordered_map>

#include "fs/namespace.hpp"

namespace tessera::fs {

class OpenFiles {
 public:
  explicit OpenFiles(Namespace& ns) : ns_(ns) {}

  void opened(Ino ino) {
    std::lock_guard lk(mu_);
    open_[ino].count += 1;
  }
  // After an unlink or a rename over an entry: reclaims the inode now, or at its last release.
  void unlinked(const Unlinked& u) {
    if (!u.last_link) return;
    {
      std::lock_guard lk(mu_);
      auto it = open_.find(u.ino);
      if (it != open_.end() && it->second.count > 0) {
        it->second.doomed = true;
        return;
      }
    }
    (void)ns_.reclaim(u.ino);
  }
  void released(Ino ino) {
    bool reclaim = false;
    {
      std::lock_guard lk(mu_);
      auto it = open_.find(ino);
      if (it == open_.end()) return;
      if (--it->second.count == 0) {
        reclaim = it->second.doomed;
        open_.erase(it);
      }
    }
    if (reclaim) (void)ns_.reclaim(ino);
  }

 private:
  struct Open {
    uint32_t count = 0;
    bool doomed = false;
  };
  Namespace& ns_;
  std::mutex mu_;
  std::unordered_map<Ino, Open> open_;
};

}  // namespace tessera::fs

// tessera-fuse's operations: libfuse3's low-level API over fs::Namespace (docs/POSIX.md). Each
// handler runs on one of the session's worker threads (fuse_session_loop_mt), calls the
// namespace as the request's kernel user (uid, gid, supplementary groups) and replies; no
// handler runs on a Tessera target thread.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <mutex>
#include <unordered_map>

#include "fs/namespace.hpp"

namespace tessera::fusemount {

struct Options {
  double attr_timeout = 5.0;   // seconds the kernel keeps attributes
  double entry_timeout = 5.0;  // seconds the kernel keeps a name's inode
  bool data_cache = true;      // keep file pages across opens (invalidated when mtime changes)
  bool writeback = false;      // the kernel gathers writes (one writer per file only)
};

// What the handlers share (the session's userdata).
struct Mount {
  Mount(fs::Namespace& n, Options o) : ns(n), opt(o) {}
  fs::Namespace& ns;
  Options opt;
  // Open files: an inode whose last link went while open is reclaimed at its last release.
  struct Open {
    uint32_t count = 0;
    bool doomed = false;
  };
  std::mutex mu;
  std::unordered_map<fs::Ino, Open> open;

  void opened(fs::Ino ino);
  // After an unlink or a rename over an entry: reclaims now, or at the last release.
  void unlinked(const fs::Unlinked& u);
  void released(fs::Ino ino);
};

// The operation table for fuse_session_new.
const fuse_lowlevel_ops& operations();

}  // namespace tessera::fusemount

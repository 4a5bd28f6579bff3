// tessera-fuse's operations: libfuse3's low-level API over fs::Namespace (docs/POSIX.md). Each
// handler runs on one of the session's worker threads (fuse_session_loop_mt), calls the
// namespace as the request's kernel user (uid, gid, supplementary groups) and replies; no
// handler runs on a Tessera target thread.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "fs/namespace.hpp"
#include "fs/open_files.hpp"

namespace tessera::fusemount {

struct Options {
  double attr_timeout = 5.0;   // seconds the kernel keeps attributes
  double entry_timeout = 5.0;  // seconds the kernel keeps a name's inode
  bool data_cache = true;      // keep file pages across opens (invalidated when mtime changes)
  bool writeback = false;      // the kernel gathers writes (one writer per file only)
};

// What the handlers share (the session's userdata).
struct Mount {
  Mount(fs::Namespace& n, Options o) : ns(n), opt(o), files(n) {}
  fs::Namespace& ns;
  Options opt;
  fs::OpenFiles files;  // the kernel's opens: unlinked inodes go at their last release
};

// The operation table for fuse_session_new.
const fuse_lowlevel_ops& operations();

}  // namespace tessera::fusemount

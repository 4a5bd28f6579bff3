// What the `tessera fs` commands share (apps/cli/fs_cmds.cpp, fs_copy.cpp): a POSIX container
// opened with its namespace, and namespace errors as the CLI's.
#pragma once

#include <memory>
#include <string>

#include "apps/cli/common.hpp"
#include "fs/namespace.hpp"

namespace tessera::cli {

struct OpenedFs {
  Opened opened;
  std::unique_ptr<fs::Namespace> ns;
};
Result<OpenedFs> open_fs(const Globals& g, const std::string& pool, const std::string& cont,
                         bool write);
// A namespace failure as a Status (the errno's name and the message).
Status fs_status(const fs::Error& e);

// tessera fs copy (apps/cli/fs_copy.cpp), under `fs`.
void add_fs_copy_command(CLI::App* fsc, Globals& g);

}  // namespace tessera::cli

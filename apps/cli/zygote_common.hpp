// The CLI server ("zygote") and the `tessera` launcher: what both sides agree on.
//
// Loading libfabric costs every process ~0.3 s before main() does anything: the constructors of
// two provider libraries it links (PSM's clock calibration) and the verbs provider reading
// /proc/kallsyms at the first fi_getinfo (docs/PERFORMANCE.md, "CLI start-up"). `tessera` is
// therefore a launcher that links none of it: it hands its command to a per-user CLI server
// that paid that cost once and forks a child per command. The child runs the ordinary CLI
// (`tessera-cli`) with the launcher's arguments, environment, working directory, umask, limits,
// CPU set and standard descriptors, and the launcher exits with the child's status.
//
// Where: one directory per user, $XDG_RUNTIME_DIR/tessera or /tmp/tessera-UID, mode 0700 and
// owned by the user (otherwise not used); one socket and one lock per CLI binary in it.
//
// Framing on the stream socket (host byte order; both sides are the same build):
//   request:  Header, then `payload` bytes: argc NUL-terminated arguments, then envc
//             NUL-terminated environment entries; the 4 descriptors stdin, stdout, stderr and
//             the working directory ride on the header (SCM_RIGHTS).
//   replies:  Reply{started, pid}, then Reply{exited, wait status}; or Reply{refused, reason}.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace tessera::cli::zygote {

constexpr uint32_t kMagic = 0x315a5354;  // "TSZ1"
constexpr size_t kMaxPayload = 1 << 20;  // arguments + environment; larger runs directly
constexpr int kFdCount = 4;              // stdin, stdout, stderr, working directory

struct Header {
  uint32_t magic = kMagic;
  uint32_t umask = 0;
  uint32_t argc = 0;
  uint32_t envc = 0;
  uint32_t payload = 0;
  uint32_t pad = 0;
  uint64_t ignored = 0;  // bit s-1: signal s was ignored by the launcher's caller (nohup)
  uint64_t blocked = 0;  // bit s-1: signal s was blocked
};

enum class ReplyKind : int32_t { started = 1, exited = 2, refused = 3 };

// Why a request was turned down (the launcher then runs the command itself).
enum class Refusal : int32_t {
  malformed = 1,
  other_user = 2,     // uid, gid or groups differ
  other_world = 3,    // namespaces, root or cgroup differ
  loader_env = 4,     // FI_*, LD_*, sanitizer variables differ from the server's
  limits = 5,         // a resource limit above the server's hard limit
  stale = 6,          // the CLI binary or libtessera changed since the server started
  busy = 7,           // too many commands at once
  fork_failed = 8,
};

const char* refusal_name(Refusal r);

struct Reply {
  ReplyKind kind;
  int32_t value;
};

struct Paths {
  std::string socket;
  std::string lock;
};

// The socket and lock of the server for `cli_binary` (an absolute path): creates the per-user
// directory if missing; nullopt when it is not a directory of ours with mode 0700 or the path
// would not fit a socket address.
std::optional<Paths> paths_for(const std::string& cli_binary);

// True for environment entries that change what happens before main() or inside libfabric's
// one-time set-up: such variables must be equal in the server and in a command it runs.
bool loader_variable(const std::string& entry);

// Reads exactly `n` bytes; false on EOF or error.
bool read_full(int fd, void* buf, size_t n);
// Writes all `n` bytes (MSG_NOSIGNAL); false on error.
bool write_full(int fd, const void* buf, size_t n);

}  // namespace tessera::cli::zygote

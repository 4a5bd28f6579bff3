// The CLI server (apps/cli/zygote_common.hpp): `tessera-cli --zygote-serve SOCKET LOCK`.
//
// One thread, one poll loop, no requests served but those of its own user in its own world.
// It warms libfabric (the first fi_getinfo) before it binds, so a command that reaches it finds
// the providers loaded; it never opens a fabric, endpoint or store, so the children it forks
// start from a process that holds nothing but loaded libraries. Each child runs `run` (the
// CLI's main) with the request's arguments, then exits; the server reports its wait status.
// At most kMaxChildren commands run at once. It exits after $TESSERA_CLI_SERVER_IDLE_S seconds
// (default 600) with nothing to do, and once its binary or libtessera changes on disk or is
// deleted (checked at each request and every 5 s).
#pragma once

namespace tessera::cli::zygote {

using MainFn = int (*)(int argc, char** argv);

// Never returns to the caller of the server; a child returns run's exit code through exit().
int serve(const char* socket_path, const char* lock_path, void (*warm)(), MainFn run);

}  // namespace tessera::cli::zygote

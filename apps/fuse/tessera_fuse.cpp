// tessera-fuse: mounts a POSIX container (docs/POSIX.md) on a directory through libfuse3's
// low-level API, multi-threaded. Runs in the foreground until unmounted (`tessera fs umount
// DIR`, fusermount3 -u) or signalled; `tessera fs mount` starts it detached and waits for the
// mount to appear.
//
//   tessera-fuse POOL CONT DIR [--attr-timeout S] [--entry-timeout S] [--data-cache on|off]
//                [--writeback] [--threads N] [--mgmt ADDR | --system FILE]
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "apps/fuse/fuse_ops.hpp"
#include "client/client.hpp"
#include "client/container.hpp"
#include "client/system_file.hpp"
#include "core/version.hpp"
#include "fs/namespace.hpp"

using namespace tessera;

namespace {

int fail(const std::string& what) {
  std::fprintf(stderr, "tessera-fuse: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tessera-fuse: mount a Tessera POSIX container (docs/POSIX.md)"};
  std::string pool, cont, dir, mgmt, system, data_cache = "on";
  fusemount::Options opt;
  bool read_only = false;
  unsigned threads = 16;
  uint32_t chunk_kib = 1024;
  app.add_option("pool", pool, "pool label or uuid")->required();
  app.add_option("cont", cont, "container label or uuid (of type POSIX)")->required();
  app.add_option("dir", dir, "the directory to mount on")->required()->check(CLI::ExistingDirectory);
  app.add_option("--mgmt", mgmt, "the management service (host:port[,...])");
  app.add_option("--system", system, "the system file (or its directory)");
  app.add_option("--attr-timeout", opt.attr_timeout, "seconds the kernel keeps attributes")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--entry-timeout", opt.entry_timeout, "seconds the kernel keeps names")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--data-cache", data_cache,
                 "keep file pages in the kernel across opens (dropped when a file changes)")
      ->capture_default_str()
      ->check(CLI::IsMember({"on", "off"}));
  app.add_flag("--writeback", opt.writeback,
               "the kernel gathers small writes (only when one client writes each file)");
  app.add_option("--threads", threads, "FUSE worker threads")
      ->capture_default_str()
      ->check(CLI::Range(1u, 256u));
  app.add_option("--chunk-kib", chunk_kib, "chunk size of files, when this mount formats")
      ->capture_default_str()
      ->check(CLI::Range(4u, 65536u));
  app.add_flag("--read-only", read_only, "open the container for reading only");
  app.set_version_flag("--version", std::string(version()));
  CLI11_PARSE(app, argc, argv);
  opt.data_cache = data_cache == "on";

  auto addr = local::find_system(mgmt, system);
  if (!addr) return fail(addr.status().to_string());
  ClientOptions co;
  co.engine = *addr;
  auto client = Client::connect_system(co);
  if (!client) return fail(client.status().to_string());
  auto c = (*client)->open_container(pool, cont, !read_only);
  if (!c) return fail(c.status().to_string());
  auto ns = fs::Namespace::mount(**c, fs::Cred::of_process(), {.chunk_size = chunk_kib * 1024});
  if (!ns) return fail(ns.error().msg);

  fusemount::Mount m(**ns, opt);
  fuse_args args = FUSE_ARGS_INIT(0, nullptr);
  std::string mount_opts = "default_permissions,fsname=tessera:" + pool + "/" + cont +
                           ",subtype=tessera";
  if (::geteuid() == 0) mount_opts += ",allow_other";  // a multi-user mount
  if (read_only) mount_opts += ",ro";
  fuse_opt_add_arg(&args, "tessera-fuse");
  fuse_opt_add_arg(&args, "-o");
  fuse_opt_add_arg(&args, mount_opts.c_str());
  fuse_session* se =
      fuse_session_new(&args, &fusemount::operations(), sizeof(fuse_lowlevel_ops), &m);
  fuse_opt_free_args(&args);
  if (se == nullptr) return fail("cannot start a FUSE session");
  int rc = 1;
  if (fuse_set_signal_handlers(se) == 0) {
    if (fuse_session_mount(se, dir.c_str()) == 0) {
      std::fprintf(stderr, "tessera-fuse: %s/%s mounted on %s\n", pool.c_str(), cont.c_str(),
                   dir.c_str());
      fuse_loop_config* cfg = fuse_loop_cfg_create();
      fuse_loop_cfg_set_max_threads(cfg, threads);
      fuse_loop_cfg_set_idle_threads(cfg, std::min(threads, 8u));
      rc = fuse_session_loop_mt(se, cfg) == 0 ? 0 : 1;
      fuse_loop_cfg_destroy(cfg);
      fuse_session_unmount(se);
    } else {
      std::fprintf(stderr, "tessera-fuse: cannot mount on %s\n", dir.c_str());
    }
    fuse_remove_signal_handlers(se);
  }
  fuse_session_destroy(se);
  return rc;
}

// ThreadSanitizer's built-in suppressions, compiled into every executable of a TSan build
// (cmake/TesseraOptions.cmake adds this file only there), so `ctest` needs no TSAN_OPTIONS.
//
// libuv (under the management replica's Raft) is not instrumented. Its file operations run on
// its process-wide thread pool (open), and each loop's thread then drops file descriptors from
// its epoll set by number (epoll_ctl): with several replicas in one process (the replica unit
// tests), TSan sees a thread-pool `open` of a descriptor number and another loop's `epoll_ctl`
// on the same number without a synchronisation it can follow. The kernel keys epoll entries by
// open file, not by number, so such a call on a reused number touches nothing of the other
// loop. Only reports with a frame inside libuv itself are suppressed; a race in Tessera's code
// (including its libuv callbacks, which are instrumented) is still reported.
extern "C" const char* __tsan_default_suppressions() {
  return "race:libuv.so\n";
}

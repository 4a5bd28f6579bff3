# Compiler warnings and sanitizer wiring shared by every Tessera target.
add_library(tessera_options INTERFACE)
target_compile_options(tessera_options INTERFACE -Wall -Wextra)
if(TESSERA_WERROR)
  target_compile_options(tessera_options INTERFACE -Werror)
endif()

if(TESSERA_SANITIZE)
  string(REPLACE ";" "," _san "${TESSERA_SANITIZE}")
  message(STATUS "Tessera: sanitizers ${_san}")
  target_compile_options(tessera_options INTERFACE -fsanitize=${_san} -fno-omit-frame-pointer)
  target_link_options(tessera_options INTERFACE -fsanitize=${_san})
  if(_san MATCHES "address")
    # Boost.Context switches stacks; tell ASan so it does not report false overflows.
    target_compile_definitions(tessera_options INTERFACE BOOST_USE_ASAN)
  endif()
  # TSan: Boost.Context switches fiber stacks without telling TSan (Debian's Boost 1.74 has no
  # TSan fiber annotations), so with function entry/exit instrumented, the fibers of a target
  # shared one shadow call stack that drifted with every switch, and the unique stacks TSan
  # records grew by gigabytes a minute until the kernel killed the test. Without entry/exit
  # events race detection is unchanged (shadow memory and vector clocks); a report names the
  # two racing accesses' functions, without their callers. See docs/DEVELOPMENT.md.
  # Boost.Fiber's headers use std::atomic_thread_fence, which GCC warns about under TSan.
  if(_san MATCHES "thread")
    target_compile_options(tessera_options INTERFACE -Wno-tsan
                                                     --param=tsan-instrument-func-entry-exit=0)
    # Suppressions for uninstrumented libraries, built into every executable (read it for why);
    # executables only: libtessera.so, made of several libraries, would hold it more than once.
    target_sources(tessera_options INTERFACE
      $<$<STREQUAL:$<TARGET_PROPERTY:TYPE>,EXECUTABLE>:${PROJECT_SOURCE_DIR}/core/tsan_suppressions.cpp>)
  endif()
endif()

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
  # TSan: Debian's Boost 1.74 context switches (fcontext) carry no TSan fiber annotations, so
  # TSan cannot follow Tessera's fibers yet; see docs/DEVELOPMENT.md. Boost.Fiber's headers use
  # std::atomic_thread_fence, which GCC warns about under TSan.
  if(_san MATCHES "thread")
    target_compile_options(tessera_options INTERFACE -Wno-tsan)
  endif()
endif()

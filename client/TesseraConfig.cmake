# find_package(Tessera) gives the imported target Tessera::tessera (libtessera.so and
# tessera/tessera.h), docs/API.md.
include("${CMAKE_CURRENT_LIST_DIR}/TesseraTargets.cmake")

# Tessera::tessera_static: libtessera.a, linked against the system's shared libraries of its
# dependencies (their -dev packages: docs/API.md).
if(NOT TARGET Tessera::tessera_static)
  get_target_property(_tessera_include Tessera::tessera INTERFACE_INCLUDE_DIRECTORIES)
  find_library(_tessera_static NAMES libtessera.a
    PATHS "${CMAKE_CURRENT_LIST_DIR}/../.." NO_DEFAULT_PATH)
  if(_tessera_static)
    add_library(Tessera::tessera_static STATIC IMPORTED)
    set_target_properties(Tessera::tessera_static PROPERTIES
      IMPORTED_LOCATION "${_tessera_static}"
      INTERFACE_INCLUDE_DIRECTORIES "${_tessera_include}"
      INTERFACE_LINK_LIBRARIES
        "fabric;isal;sodium;capnp;kj;yaml-cpp;fmt;boost_fiber;boost_context;stdc++;m;pthread")
  endif()
endif()

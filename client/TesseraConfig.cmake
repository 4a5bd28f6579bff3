# find_package(Tessera) gives the imported target Tessera::tessera (libtessera.so and
# tessera/tessera.h), docs/API.md.
include("${CMAKE_CURRENT_LIST_DIR}/TesseraTargets.cmake")

// The library's version, for programs that check at run time what they were linked against.
#include "client/tessera.h"

extern "C" const char* tessera_version(void) {
  return TESSERA_VERSION_STRING;
}

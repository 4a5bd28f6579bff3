/* libtessera.so's one source of its own (its code is libtessera.a's, linked whole): the public
 * header compiled as strict C11, so a C program can always include it. */
#include "client/tessera.h"

_Static_assert(TESSERA_ERANGE == 100, "tessera.h's error codes are part of the ABI");

/* put_get: stores N values in a container through libtessera's C API, reads each back and
 * compares. Built out of tree against an installed SDK (examples/README.md):
 *
 *   cc put_get.c $(pkg-config --cflags --libs tessera) -o put_get
 *   ./put_get POOL CONT [N]
 *
 * The system is found as the tessera CLI finds it: $TESSERA_MGMT (the management service's
 * address), else the system file of $TESSERA_SYSTEM or ~/.tessera/system.json. With
 * $TESSERA_MGMT the caller's identity is vouched for by the node's tessera-agent
 * ($TESSERA_AGENT, or its default socket). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tessera/tessera.h>

static int fail(const char* what, int rc) {
  fprintf(stderr, "put_get: %s: %s (%s)\n", what, tessera_strerror(rc), tessera_last_error());
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s POOL CONT [N]\n", argv[0]);
    return 2;
  }
  const int n = argc > 3 ? atoi(argv[3]) : 64;

  tessera_client* client = NULL;
  int rc = tessera_connect_system(NULL, &client);
  if (rc != 0) return fail("connect", rc);
  tessera_cont* cont = NULL;
  rc = tessera_cont_open(client, argv[1], argv[2], 1, &cont);
  if (rc != 0) return fail("open the container", rc);
  uint64_t hi = 0, lo = 0;
  rc = tessera_cont_oid(cont, 0, 42, NULL, &hi, &lo);
  if (rc != 0) return fail("make an object id", rc);

  char key[32], value[64], back[64];
  for (int i = 0; i < n; ++i) {
    snprintf(key, sizeof key, "key-%d", i);
    int len = snprintf(value, sizeof value, "value %d of libtessera %s", i, tessera_version());
    uint64_t epoch = 0;
    rc = tessera_cont_update(cont, hi, lo, key, "v", TESSERA_SINGLE, 0, value, (size_t)len,
                             TESSERA_COND_NONE, &epoch, NULL);
    if (rc != 0) return fail("update", rc);
  }
  for (int i = 0; i < n; ++i) {
    snprintf(key, sizeof key, "key-%d", i);
    int len = snprintf(value, sizeof value, "value %d of libtessera %s", i, tessera_version());
    size_t got = 0;
    rc = tessera_cont_fetch(cont, hi, lo, key, "v", TESSERA_SINGLE, 0, 0, 0, back, sizeof back,
                            &got, NULL);
    if (rc != 0) return fail("fetch", rc);
    if (got != (size_t)len || memcmp(back, value, got) != 0) {
      fprintf(stderr, "put_get: %s read back %.*s, not %s\n", key, (int)got, back, value);
      return 1;
    }
  }
  rc = tessera_cont_close(cont);
  if (rc != 0) return fail("close the container", rc);
  tessera_disconnect(client);
  printf("put_get: %d values stored and read back through libtessera %s\n", n, tessera_version());
  return 0;
}

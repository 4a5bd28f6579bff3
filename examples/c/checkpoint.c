/* checkpoint: a parallel checkpoint writer and reader over libtessera's asynchronous C API.
 * One thread keeps up to QD chunk writes in flight on one event queue to store SIZE MiB as an
 * array (the checkpoint), then reads it back the same way and checks every byte.
 *
 *   ./checkpoint POOL CONT [SIZE_MIB [QD [CHUNK_KIB]]]
 *
 * The system is found as the tessera CLI finds it (put_get.c). Defaults: 64 MiB, 16 in flight, 1024 KiB chunks. Prints each phase's rate. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tessera/tessera.h>

static int fail(const char* what, int rc) {
  fprintf(stderr, "checkpoint: %s: %s (%s)\n", what, tessera_strerror(rc), tessera_last_error());
  return 1;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The checkpoint's byte at `off`: what a reader must find. */
static unsigned char pattern(uint64_t off) {
  return (unsigned char)((off * 2654435761u) >> 13);
}

struct slot {
  tessera_event ev;
  unsigned char* buf;
  uint64_t off; /* the chunk's offset in the checkpoint */
};

/* Writes (write != 0) or reads and checks every chunk with up to qd in flight. */
static int run(tessera_cont* cont, uint64_t hi, uint64_t lo, uint64_t total, size_t chunk,
               int qd, int write, tessera_eq* eq, struct slot* slots) {
  uint64_t next = 0;
  int inflight = 0, bad = 0;
  for (int i = 0; i < qd; ++i) slots[i].off = UINT64_MAX; /* free */
  while (next < total || inflight > 0) {
    for (int i = 0; i < qd && next < total; ++i) {
      struct slot* s = &slots[i];
      if (s->off != UINT64_MAX) continue;
      s->off = next;
      size_t n = total - next < chunk ? (size_t)(total - next) : chunk;
      int rc;
      if (write) {
        for (size_t k = 0; k < n; ++k) s->buf[k] = pattern(next + k);
        rc = tessera_cont_update(cont, hi, lo, "ckpt", "data", TESSERA_ARRAY, next, s->buf, n,
                                 TESSERA_COND_NONE, NULL, &s->ev);
      } else {
        rc = tessera_cont_fetch(cont, hi, lo, "ckpt", "data", TESSERA_ARRAY, next, n, 0, s->buf,
                                chunk, NULL, &s->ev);
      }
      if (rc != 0) return fail(write ? "start a write" : "start a read", rc);
      next += n;
      ++inflight;
    }
    tessera_event* done[64];
    int got = tessera_eq_poll(eq, -1, done, 64);
    if (got < 0) return fail("poll", got);
    for (int j = 0; j < got; ++j) {
      struct slot* s = (struct slot*)done[j]->user;
      if (done[j]->status != 0) {
        fprintf(stderr, "checkpoint: chunk at %llu: %s\n", (unsigned long long)s->off,
                tessera_event_error(done[j]));
        return 1;
      }
      if (!write) {
        for (size_t k = 0; k < done[j]->out_len; ++k) {
          if (s->buf[k] != pattern(s->off + k)) {
            ++bad;
            break;
          }
        }
      }
      s->off = UINT64_MAX;
      --inflight;
    }
  }
  if (bad != 0) {
    fprintf(stderr, "checkpoint: %d chunks read back wrong\n", bad);
    return 1;
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s POOL CONT [SIZE_MIB [QD [CHUNK_KIB]]]\n", argv[0]);
    return 2;
  }
  const uint64_t total = (uint64_t)(argc > 3 ? atoi(argv[3]) : 64) << 20;
  int qd = argc > 4 ? atoi(argv[4]) : 16;
  const size_t chunk = (size_t)(argc > 5 ? atoi(argv[5]) : 1024) << 10;
  if (qd < 1 || qd > 1024 || chunk == 0 || total == 0) {
    fprintf(stderr, "checkpoint: SIZE_MIB, QD (1-1024) and CHUNK_KIB must be positive\n");
    return 2;
  }

  tessera_client* client = NULL;
  int rc = tessera_connect_system(NULL, &client);
  if (rc != 0) return fail("connect", rc);
  tessera_cont* cont = NULL;
  rc = tessera_cont_open(client, argv[1], argv[2], 1, &cont);
  if (rc != 0) return fail("open the container", rc);
  uint64_t hi = 0, lo = 0;
  rc = tessera_cont_oid(cont, 0, 7, NULL, &hi, &lo);
  if (rc != 0) return fail("make an object id", rc);
  tessera_eq* eq = NULL;
  rc = tessera_eq_create(&eq);
  if (rc != 0) return fail("create an event queue", rc);
  struct slot* slots = calloc((size_t)qd, sizeof *slots);
  for (int i = 0; i < qd; ++i) {
    slots[i].buf = malloc(chunk);
    rc = tessera_event_init(&slots[i].ev, eq, &slots[i]);
    if (rc != 0 || slots[i].buf == NULL) return fail("set up the events", rc);
  }

  double t0 = now_s();
  if (run(cont, hi, lo, total, chunk, qd, 1, eq, slots) != 0) return 1;
  double t1 = now_s();
  if (run(cont, hi, lo, total, chunk, qd, 0, eq, slots) != 0) return 1;
  double t2 = now_s();
  printf("checkpoint: %llu MiB in %zu KiB chunks, %d in flight: written at %.1f MiB/s, read back "
         "and checked at %.1f MiB/s\n",
         (unsigned long long)(total >> 20), chunk >> 10, qd, (double)(total >> 20) / (t1 - t0),
         (double)(total >> 20) / (t2 - t1));

  for (int i = 0; i < qd; ++i) {
    tessera_event_fini(&slots[i].ev);
    free(slots[i].buf);
  }
  free(slots);
  if ((rc = tessera_eq_destroy(eq)) != 0) return fail("destroy the event queue", rc);
  if ((rc = tessera_cont_close(cont)) != 0) return fail("close the container", rc);
  tessera_disconnect(client);
  return 0;
}

/* libtessera C API: for C programs and foreign-function interfaces (Python ctypes, Fortran).
 *
 * Every function returns 0 on success or a negative error code (-TESSERA_E*); the text of the
 * calling thread's last error is available from tessera_last_error(). A tessera_client may be
 * used from several threads at once. */
#ifndef TESSERA_H
#define TESSERA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tessera_client tessera_client;
typedef struct tessera_cont tessera_cont;
typedef struct tessera_tx tessera_tx;

enum tessera_kind { TESSERA_SINGLE = 0, TESSERA_ARRAY = 1 };

enum tessera_error {
  TESSERA_EINVAL = 1,
  TESSERA_ENOENT = 2,
  TESSERA_ENOSPC = 3,
  TESSERA_EIO = 4,
  TESSERA_ECSUM = 5,
  TESSERA_ETIMEDOUT = 6,
  TESSERA_EUNREACH = 7,
  TESSERA_EPROTO = 8,
  TESSERA_ESHUTDOWN = 9,
  TESSERA_E2BIG = 10,
  TESSERA_EEXIST = 11,       /* a conditional insert found a value */
  TESSERA_ENOTSUP = 12,      /* not supported (here, or in a transaction) */
  TESSERA_EPERM = 13,        /* the container handle or credential lacks a permission */
  TESSERA_EUNAVAIL = 16,     /* not enough healthy targets */
  TESSERA_EBUSY = 17,        /* busy: retry */
  TESSERA_EABORTED = 20,     /* the transaction was aborted: none of it applied */
  TESSERA_ERESTART = 21,     /* the transaction conflicts with another: run it again */
  TESSERA_EUNCERTAIN = 22,   /* the transaction's outcome is unknown (it may have committed) */
  TESSERA_ERANGE = 100 /* output buffer too small; *out_len holds the size needed */
};

/* engine: "host:port" of the engine's control socket. */
int tessera_connect(const char* engine, tessera_client** out);
void tessera_disconnect(tessera_client* c);

int tessera_obj_update(tessera_client* c, uint64_t oid_hi, uint64_t oid_lo, const char* dkey,
                       const char* akey, int kind, uint64_t offset, const void* buf, size_t len,
                       uint64_t* epoch_out);
/* Fetches into buf (capacity buflen). *out_len receives the bytes returned (or needed). For
 * arrays, length 0 means "up to the highest written byte". */
int tessera_obj_fetch(tessera_client* c, uint64_t oid_hi, uint64_t oid_lo, const char* dkey,
                      const char* akey, int kind, uint64_t offset, uint64_t length, void* buf,
                      size_t buflen, size_t* out_len);
/* dkey NULL/"": whole object; akey NULL/"": whole dkey. */
int tessera_obj_punch(tessera_client* c, uint64_t oid_hi, uint64_t oid_lo, const char* dkey,
                      const char* akey);

/* ---- system mode: pools, containers and transactions ---- */

enum tessera_cond { TESSERA_COND_NONE = 0, TESSERA_COND_INSERT = 1, TESSERA_COND_UPDATE = 2 };

/* mgmt: "host:port" of the management service. */
int tessera_connect_system(const char* mgmt, tessera_client** out);
/* Opens a container of a pool (labels or UUIDs) for reading, or reading and writing. */
int tessera_cont_open(tessera_client* c, const char* pool, const char* cont, int write,
                      tessera_cont** out);
/* Closes the handle and frees `cont` (its transactions must be closed first); -TESSERA_EBUSY,
 * and nothing closed, while a call on it is in flight. */
int tessera_cont_close(tessera_cont* cont);
/* An object id of class `oclass` (NULL or "": the container's default) from the
 * application's 96 bits (hi: 32 of them). */
int tessera_cont_oid(tessera_cont* cont, uint32_t hi, uint64_t lo, const char* oclass,
                     uint64_t* oid_hi, uint64_t* oid_lo);

/* ---- event queues: many calls in flight from one thread ----
 *
 * A call given an event (not NULL) starts and returns at once: 0 when it started, or the error
 * that kept it from starting. Its result arrives later through the event's queue:
 * tessera_eq_poll() hands back completed events, with status (0 or -TESSERA_E*), epoch (an
 * update's) and out_len (a fetch's bytes, or the bytes needed when status is -TESSERA_ERANGE)
 * set, and a fetch's bytes in its buffer. Until then the call's buffers must stay valid and
 * the event untouched. Completions are handed back only by tessera_eq_poll, on the thread that
 * polls: no callback ever runs on a library thread. */
typedef struct tessera_eq tessera_eq;
typedef struct tessera_event {
  int status;       /* the call's result, once polled */
  uint64_t epoch;   /* an update's epoch */
  size_t out_len;   /* a fetch's bytes (or the bytes needed) */
  void* user;       /* the caller's own, never touched by the library */
  void* internal_;  /* the library's */
} tessera_event;

int tessera_eq_create(tessera_eq** out);
/* -TESSERA_EBUSY while an event of the queue is in flight (started, not yet polled). */
int tessera_eq_destroy(tessera_eq* eq);
/* Binds `ev` to `eq`; an event is reused for call after call (one at a time). */
int tessera_event_init(tessera_event* ev, tessera_eq* eq, void* user);
/* Frees what tessera_event_init took; -TESSERA_EBUSY while the event is in flight. */
int tessera_event_fini(tessera_event* ev);
/* The message of a completed event's failure ("" if it succeeded); valid until its next call. */
const char* tessera_event_error(const tessera_event* ev);
/* Waits up to timeout_us (0: not at all; negative: until one completes) for completed events
 * and stores up to `max` of them in evs, in the order they completed. Returns how many (0 when
 * the wait ended with none), or a negative error. */
int tessera_eq_poll(tessera_eq* eq, int64_t timeout_us, tessera_event** evs, size_t max);
/* Events of the queue started and not yet polled. */
size_t tessera_eq_inflight(const tessera_eq* eq);

/* Object I/O in the container, each call its own update (replicated or erasure-coded by the
 * object's class); arguments as tessera_obj_update/fetch/punch. cond: TESSERA_COND_*. A fetch
 * reads the newest value (epoch 0) or the one at `epoch` (a snapshot's). ev NULL: the call
 * returns when done; otherwise it starts and completes through ev's queue (then out_len and
 * epoch_out are not used: the event carries them). */
int tessera_cont_update(tessera_cont* cont, uint64_t oid_hi, uint64_t oid_lo, const char* dkey,
                        const char* akey, int kind, uint64_t offset, const void* buf, size_t len,
                        int cond, uint64_t* epoch_out, tessera_event* ev);
int tessera_cont_fetch(tessera_cont* cont, uint64_t oid_hi, uint64_t oid_lo, const char* dkey,
                       const char* akey, int kind, uint64_t offset, uint64_t length,
                       uint64_t epoch, void* buf, size_t buflen, size_t* out_len,
                       tessera_event* ev);
int tessera_cont_punch(tessera_cont* cont, uint64_t oid_hi, uint64_t oid_lo, const char* dkey,
                       const char* akey, tessera_event* ev);

/* A transaction on the container: snapshot_epoch 0 reads and writes at a new epoch;
 * otherwise read-only at that epoch. Its changes apply at tessera_tx_commit(), all or none;
 * -TESSERA_ERESTART from the commit means run the whole transaction again (a new one). */
int tessera_tx_open(tessera_cont* cont, uint64_t snapshot_epoch, tessera_tx** out);
uint64_t tessera_tx_epoch(const tessera_tx* tx);
/* cond: TESSERA_COND_*, decided at commit. */
int tessera_tx_update(tessera_tx* tx, uint64_t oid_hi, uint64_t oid_lo, const char* dkey,
                      const char* akey, int kind, uint64_t offset, const void* buf, size_t len,
                      int cond);
/* As tessera_obj_fetch, at the transaction's epoch, with its own changes. */
int tessera_tx_fetch(tessera_tx* tx, uint64_t oid_hi, uint64_t oid_lo, const char* dkey,
                     const char* akey, int kind, uint64_t offset, uint64_t length, void* buf,
                     size_t buflen, size_t* out_len);
/* dkey NULL/"": whole object; akey NULL/"": whole dkey. */
int tessera_tx_punch(tessera_tx* tx, uint64_t oid_hi, uint64_t oid_lo, const char* dkey,
                     const char* akey);
int tessera_tx_commit(tessera_tx* tx, uint64_t* epoch_out);
/* Frees the transaction; one not committed changes nothing. */
void tessera_tx_close(tessera_tx* tx);

const char* tessera_strerror(int rc);
const char* tessera_last_error(void);
/* The library's version ("MAJOR.MINOR.PATCH"); the soname carries MAJOR. */
const char* tessera_version(void);

#ifdef __cplusplus
}
#endif

#endif /* TESSERA_H */

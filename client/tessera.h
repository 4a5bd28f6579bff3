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
  TESSERA_ERF = 24,          /* the container lost more engines than its redundancy factor: it
                              * takes no write until they are back (reads go on) */
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

/* Connects to a system, found as the tessera CLI finds it. `system`:
 *  - NULL or "": $TESSERA_MGMT if set, else the system file named by $TESSERA_SYSTEM, else
 *    ~/.tessera/system.json (the one `tessera system start` made last);
 *  - the path of a system file, or of a system's directory (one holding system.json);
 *  - else the management service's access points, "host:port[,host:port...]".
 * A system file also says how the process authenticates: as an administrator when it can read
 * the system key, else as the user the node agent vouches for ($TESSERA_AGENT, else the
 * system's agent). Calls on pools and containers are allowed or refused (-TESSERA_EPERM) by
 * their ACLs for that identity. */
int tessera_connect_system(const char* system, tessera_client** out);

/* ---- administration: pools, containers and snapshots (system mode) ----
 *
 * Pools and containers are named by label or UUID. Labels are 1 to TESSERA_LABEL_MAX bytes. */
#define TESSERA_LABEL_MAX 127
#define TESSERA_UUID_LEN 36

typedef struct tessera_pool_info {
  char uuid[TESSERA_UUID_LEN + 1];
  char label[TESSERA_LABEL_MAX + 1];
  uint32_t id;            /* system-wide, never reused */
  uint32_t map_version;   /* the pool map's version */
  uint64_t target_bytes;  /* store size per target */
  uint32_t engines;       /* engines in the pool map */
  uint32_t targets;       /* targets in the pool map */
  uint32_t targets_up;    /* of them, serving I/O */
  uint32_t containers;
  uint32_t open_handles;  /* open container handles */
  char redundancy[16];    /* "normal", "degraded" or "lost" */
  char rebuild[16];       /* the rebuild: "idle", "busy", "done" or "failed" */
} tessera_pool_info;

typedef struct tessera_cont_info {
  char uuid[TESSERA_UUID_LEN + 1];
  char label[TESSERA_LABEL_MAX + 1];
  uint32_t id;            /* unique inside the pool */
  uint32_t rf;            /* redundancy factor: engine failures it survives */
  char type[16];          /* "KV", "ARRAY" or "POSIX" */
  char oclass[32];        /* the default object class, e.g. "RP_3G1", "EC_2P1G1" */
  char checksum[16];      /* "crc32c", "crc64", ... */
  uint32_t cell_size;     /* erasure-coding cell bytes */
  uint32_t snapshots;
  uint32_t open_handles;
  uint32_t failed_engines; /* engines with a target not serving I/O */
  char health[16];         /* "HEALTHY" (within rf) or "UNCLEAN" (beyond it) */
  uint64_t created_epoch;
} tessera_cont_info;

typedef struct tessera_snap_info {
  uint64_t epoch;
  char name[TESSERA_LABEL_MAX + 1];
} tessera_snap_info;

enum tessera_destroy_flags {
  TESSERA_DESTROY_FORCE = 1,     /* even with open container handles */
  TESSERA_DESTROY_RECURSIVE = 2  /* a pool with the containers it still has */
};

/* Creates a pool of target_bytes per target on every joined engine (administrators); `out`
 * (may be NULL) receives its record. */
int tessera_pool_create(tessera_client* c, const char* label, uint64_t target_bytes,
                        tessera_pool_info* out);
int tessera_pool_destroy(tessera_client* c, const char* pool, int flags);
int tessera_pool_query(tessera_client* c, const char* pool, tessera_pool_info* out);
/* Lists the pools into out[0..max). *n receives how many there are; when more than max, the
 * first max are stored and -TESSERA_ERANGE returned (call again with room for *n). */
int tessera_pool_list(tessera_client* c, tessera_pool_info* out, size_t max, size_t* n);

/* Creates a container. props: NULL, or "name=value" pairs separated by commas, as the CLI's
 * --property takes them: type (kv, array, posix), oclass, rf, checksum, cell_size. */
int tessera_cont_create(tessera_client* c, const char* pool, const char* label,
                        const char* props, tessera_cont_info* out);
int tessera_cont_destroy(tessera_client* c, const char* pool, const char* cont, int flags);
/* Changes properties, "name=value" pairs separated by commas: label, and status=healthy, which
 * clears UNCLEAN once a rebuild found the container beyond its redundancy factor (the operator
 * accepts that some of its data may be lost; refused, -TESSERA_ERF, while more engines than
 * its rf are still failed). The layout's properties are fixed at create (-TESSERA_EINVAL). */
int tessera_cont_set_prop(tessera_client* c, const char* pool, const char* cont,
                          const char* props);
int tessera_cont_query(tessera_client* c, const char* pool, const char* cont,
                       tessera_cont_info* out);
/* As tessera_pool_list, for the containers of a pool. */
int tessera_cont_list(tessera_client* c, const char* pool, tessera_cont_info* out, size_t max,
                      size_t* n);

/* Takes a snapshot of the container now (its newest epoch, kept readable until destroyed);
 * name may be NULL. *epoch_out (may be NULL) receives its epoch, which reads take. */
int tessera_snap_create(tessera_client* c, const char* pool, const char* cont, const char* name,
                        uint64_t* epoch_out);
int tessera_snap_destroy(tessera_client* c, const char* pool, const char* cont, uint64_t epoch);
/* Makes the state of snapshot `snap` (by name), or else of `epoch` (one of the two: snap NULL
 * or "" with epoch > 0), the container's newest state, as a new epoch: later snapshots stay
 * readable (docs/TRANSACTIONS.md). Refused (-TESSERA_EBUSY) while the container has open
 * handles, unless flags holds TESSERA_ROLLBACK_FORCE. *epoch_out (may be NULL): the new epoch. */
#define TESSERA_ROLLBACK_FORCE 1
int tessera_cont_rollback(tessera_client* c, const char* pool, const char* cont, const char* snap,
                          uint64_t epoch, int flags, uint64_t* epoch_out);
/* As tessera_pool_list, for the snapshots of a container (oldest first). */
int tessera_snap_list(tessera_client* c, const char* pool, const char* cont,
                      tessera_snap_info* out, size_t max, size_t* n);
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

/* Administration, opening and closing through an event: the calls above with an event last
 * (NULL: the call blocks, as its form without _ev). A blocking call given an event runs on one
 * of the client's 4 worker threads; up to 256 more wait their turn, and a call beyond them is
 * refused with -TESSERA_EBUSY (nothing started). Strings are copied before the call returns;
 * output records (out, n, epoch_out, the handle pointers) are written by the time the event is
 * polled and must stay valid until then. The event's out_len holds a list's count and its epoch
 * a snapshot's or a transaction's epoch. tessera_disconnect waits for the calls it started. */
int tessera_pool_create_ev(tessera_client* c, const char* label, uint64_t target_bytes,
                           tessera_pool_info* out, tessera_event* ev);
int tessera_pool_destroy_ev(tessera_client* c, const char* pool, int flags, tessera_event* ev);
int tessera_pool_query_ev(tessera_client* c, const char* pool, tessera_pool_info* out,
                          tessera_event* ev);
int tessera_pool_list_ev(tessera_client* c, tessera_pool_info* out, size_t max, size_t* n,
                         tessera_event* ev);
int tessera_cont_create_ev(tessera_client* c, const char* pool, const char* label,
                           const char* props, tessera_cont_info* out, tessera_event* ev);
int tessera_cont_destroy_ev(tessera_client* c, const char* pool, const char* cont, int flags,
                            tessera_event* ev);
int tessera_cont_set_prop_ev(tessera_client* c, const char* pool, const char* cont,
                             const char* props, tessera_event* ev);
int tessera_cont_query_ev(tessera_client* c, const char* pool, const char* cont,
                          tessera_cont_info* out, tessera_event* ev);
int tessera_cont_list_ev(tessera_client* c, const char* pool, tessera_cont_info* out, size_t max,
                         size_t* n, tessera_event* ev);
int tessera_snap_create_ev(tessera_client* c, const char* pool, const char* cont,
                           const char* name, uint64_t* epoch_out, tessera_event* ev);
int tessera_snap_destroy_ev(tessera_client* c, const char* pool, const char* cont,
                            uint64_t epoch, tessera_event* ev);
int tessera_snap_list_ev(tessera_client* c, const char* pool, const char* cont,
                         tessera_snap_info* out, size_t max, size_t* n, tessera_event* ev);
int tessera_cont_rollback_ev(tessera_client* c, const char* pool, const char* cont,
                             const char* snap, uint64_t epoch, int flags, uint64_t* epoch_out,
                             tessera_event* ev);
int tessera_cont_open_ev(tessera_client* c, const char* pool, const char* cont, int write,
                         tessera_cont** out, tessera_event* ev);
/* The handle is not to be used once its close started; -TESSERA_EBUSY, nothing started, while a
 * call on it is in flight. */
int tessera_cont_close_ev(tessera_cont* cont, tessera_event* ev);

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

/* ---- arrays of fixed-size records ----
 *
 * An array akey holds records of rsize bytes, a size its first write fixes (a later write with
 * another is refused, -TESSERA_EINVAL); offsets and counts are in records. tessera_cont_update
 * with TESSERA_ARRAY is the same with records of one byte. Records never written read as zeros.
 * Erasure-coded objects keep arrays of one-byte records only (-TESSERA_ENOTSUP). ev as for
 * tessera_cont_update. */
int tessera_array_write(tessera_cont* cont, uint64_t oid_hi, uint64_t oid_lo, const char* dkey,
                        const char* akey, uint32_t rsize, uint64_t rec_offset, const void* buf,
                        uint64_t nrec, uint64_t* epoch_out, tessera_event* ev);
/* Records [rec_offset, rec_offset + nrec) into buf; nrec 0: up to the highest record written.
 * *out_len: the bytes (nrec * rsize), or those needed with -TESSERA_ERANGE. */
int tessera_array_read(tessera_cont* cont, uint64_t oid_hi, uint64_t oid_lo, const char* dkey,
                       const char* akey, uint32_t rsize, uint64_t rec_offset, uint64_t nrec,
                       uint64_t epoch, void* buf, size_t buflen, size_t* out_len,
                       tessera_event* ev);
/* Removes records [rec_offset, rec_offset + nrec) (nrec > 0): they read as zeros again. */
int tessera_array_punch(tessera_cont* cont, uint64_t oid_hi, uint64_t oid_lo, const char* dkey,
                        const char* akey, uint32_t rsize, uint64_t rec_offset, uint64_t nrec,
                        tessera_event* ev);

/* ---- listing, page by page ----
 *
 * An anchor holds where a listing stands: zero it (TESSERA_ANCHOR_INIT) to list from the start,
 * then pass it to each call, which lists the page after it and moves it on; anchor.eof is set
 * once nothing follows. Each call fills up to *n entries (in: the room; out: how many). Keys
 * are stored one after another in buf, lens[i] bytes each; a call stores fewer keys when buf
 * is full, and answers -TESSERA_ERANGE with lens[0] = the size needed when not even one fits.
 * A listing at epoch 0 sees the newest keys; one at a snapshot's epoch, that state.
 * ev as for tessera_cont_update: with an event, the anchor, *n, lens and buf are filled when
 * the event is polled (its out_len also holds the count), and must stay valid until then. */
#define TESSERA_KEY_MAX 4096
typedef struct tessera_anchor {
  uint32_t len;                    /* the library's: bytes of pos in use */
  uint32_t eof;                    /* set when the listing is complete */
  uint8_t pos[TESSERA_KEY_MAX + 8]; /* the library's */
} tessera_anchor;
#define TESSERA_ANCHOR_INIT {0, 0, {0}}

/* The dkeys of an object; the akeys of one of its dkeys. -TESSERA_ENOENT: no such object. */
int tessera_cont_list_dkeys(tessera_cont* cont, uint64_t oid_hi, uint64_t oid_lo, uint64_t epoch,
                            tessera_anchor* anchor, uint32_t* n, size_t* lens, void* buf,
                            size_t buflen, tessera_event* ev);
int tessera_cont_list_akeys(tessera_cont* cont, uint64_t oid_hi, uint64_t oid_lo,
                            const char* dkey, uint64_t epoch, tessera_anchor* anchor, uint32_t* n,
                            size_t* lens, void* buf, size_t buflen, tessera_event* ev);
/* The written extents of an array akey, in records of its size (bytes for one-byte records):
 * offsets[i], lengths[i]. */
int tessera_cont_list_recx(tessera_cont* cont, uint64_t oid_hi, uint64_t oid_lo,
                           const char* dkey, const char* akey, uint64_t epoch,
                           tessera_anchor* anchor, uint32_t* n, uint64_t* offsets,
                           uint64_t* lengths, tessera_event* ev);
/* The objects of the container (their ids), in id order. */
int tessera_cont_list_objects(tessera_cont* cont, uint64_t epoch, tessera_anchor* anchor,
                              uint32_t* n, uint64_t* oid_hi, uint64_t* oid_lo, tessera_event* ev);

/* ---- key-value calls ----
 *
 * A container as a map from keys (NUL-terminated, up to TESSERA_KEY_MAX bytes) to values: one
 * object (id 0 of the container's default class) whose dkeys are the keys. ev as for
 * tessera_cont_update. A get of a key that is not there: -TESSERA_ENOENT. */
int tessera_kv_put(tessera_cont* cont, const char* key, const void* buf, size_t len,
                   tessera_event* ev);
int tessera_kv_get(tessera_cont* cont, const char* key, void* buf, size_t buflen, size_t* out_len,
                   tessera_event* ev);
int tessera_kv_remove(tessera_cont* cont, const char* key, tessera_event* ev);
/* The keys, page by page, as tessera_cont_list_dkeys (none stored: *n = 0, eof set). */
int tessera_kv_list(tessera_cont* cont, tessera_anchor* anchor, uint32_t* n, size_t* lens,
                    void* buf, size_t buflen, tessera_event* ev);

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
/* The key-value calls (tessera_kv_*) in a transaction: at its epoch, with its own changes; a
 * get of a key that is not there answers -TESSERA_ENOENT. */
int tessera_tx_kv_get(tessera_tx* tx, const char* key, void* buf, size_t buflen,
                      size_t* out_len);
int tessera_tx_kv_put(tessera_tx* tx, const char* key, const void* buf, size_t len);
int tessera_tx_kv_remove(tessera_tx* tx, const char* key);
int tessera_tx_commit(tessera_tx* tx, uint64_t* epoch_out);
/* The transaction's reads and its commit through an event (ev as for tessera_cont_update; the
 * commit's epoch arrives in the event's epoch). While such a call is in flight, the
 * transaction's other calls answer -TESSERA_EBUSY. */
int tessera_tx_fetch_ev(tessera_tx* tx, uint64_t oid_hi, uint64_t oid_lo, const char* dkey,
                        const char* akey, int kind, uint64_t offset, uint64_t length, void* buf,
                        size_t buflen, size_t* out_len, tessera_event* ev);
int tessera_tx_commit_ev(tessera_tx* tx, tessera_event* ev);
/* As tessera_tx_open, through an event (as tessera_cont_open_ev; the event's epoch: the
 * transaction's). Counted on the container handle until it ends. */
int tessera_tx_open_ev(tessera_cont* cont, uint64_t snapshot_epoch, tessera_tx** out,
                       tessera_event* ev);
/* Frees the transaction; one not committed changes nothing. A call started with an event is
 * waited for first (its event still completes through its queue). */
void tessera_tx_close(tessera_tx* tx);

/* ---- POSIX containers (docs/POSIX.md) ----------------------------------------------------
 * A file system in a container of type POSIX. Unlike the calls above, tessera_fs_* return 0 (or
 * a count) on success and a negative POSIX errno on failure (-ENOENT, -EEXIST, -EACCES, ...),
 * as system calls do; tessera_last_error() holds the message. Paths start at the container's
 * root ("/a/b"); calls act as the calling process's effective uid and groups. A tessera_fs and
 * its files are used by any thread (one call at a time per file); they must be closed before
 * their container. */
typedef struct tessera_fs tessera_fs;
typedef struct tessera_fs_file tessera_fs_file;

typedef struct tessera_fs_attr {
  uint64_t ino;
  uint32_t mode; /* type and permission bits, as st_mode */
  uint32_t uid, gid, nlink;
  uint64_t size;
  int64_t atime_ns, mtime_ns, ctime_ns;
} tessera_fs_attr;

typedef struct tessera_fs_dirent {
  uint64_t ino;
  uint32_t type; /* the S_IFMT bits */
  char name[256];
} tessera_fs_dirent;

/* Opens the namespace of a POSIX container (formatting it when it holds none yet). */
int tessera_fs_mount(tessera_cont* cont, tessera_fs** out);
void tessera_fs_umount(tessera_fs* fs);
/* follow: follow a final symbolic link (stat) or not (lstat). */
int tessera_fs_stat(tessera_fs* fs, const char* path, int follow, tessera_fs_attr* attr);
int tessera_fs_mkdir(tessera_fs* fs, const char* path, uint32_t mode);
/* flags: O_RDONLY/O_WRONLY/O_RDWR with O_CREAT, O_EXCL, O_TRUNC, O_APPEND (fcntl.h values). */
int tessera_fs_open(tessera_fs* fs, const char* path, int flags, uint32_t mode,
                    tessera_fs_file** out);
/* Frees the handle; a file whose last link went while it was open is removed now. */
int tessera_fs_close(tessera_fs_file* f);
/* Reads up to len bytes of the file at `path` from `offset` in one call, without a handle (the
 * path resolved, the file read at the size resolving found): bytes read (0 at the end), or a
 * negative errno. attr (may be NULL) receives the file's attributes as read; its size tells
 * whether more follows. What a whole-file reader (a dataset's sample) needs in the fewest round
 * trips. */
int64_t tessera_fs_read(tessera_fs* fs, const char* path, uint64_t offset, void* buf, size_t len,
                        tessera_fs_attr* attr);
/* Bytes read (0 at the end; holes read as zeros), or a negative errno. */
int64_t tessera_fs_pread(tessera_fs_file* f, void* buf, size_t len, uint64_t offset);
/* Bytes written, or a negative errno; opened with O_APPEND, at the end, atomically. */
int64_t tessera_fs_pwrite(tessera_fs_file* f, const void* buf, size_t len, uint64_t offset);
int tessera_fs_fstat(tessera_fs_file* f, tessera_fs_attr* attr);
int tessera_fs_truncate(tessera_fs* fs, const char* path, uint64_t size);
int tessera_fs_chmod(tessera_fs* fs, const char* path, uint32_t mode);
int tessera_fs_unlink(tessera_fs* fs, const char* path);
int tessera_fs_rmdir(tessera_fs* fs, const char* path);
/* Atomic, over an existing file or empty directory. */
int tessera_fs_rename(tessera_fs* fs, const char* from, const char* to);
int tessera_fs_link(tessera_fs* fs, const char* existing, const char* path);
int tessera_fs_symlink(tessera_fs* fs, const char* target, const char* path);
/* The target's length (bytes copied: at most len, not NUL-terminated), or a negative errno. */
int64_t tessera_fs_readlink(tessera_fs* fs, const char* path, char* buf, size_t len);
/* Up to *n entries of the directory after `anchor` (start: TESSERA_ANCHOR_INIT; anchor->eof
 * once the listing is complete); *n: the entries stored. No "." or "..". */
int tessera_fs_readdir(tessera_fs* fs, const char* path, tessera_anchor* anchor,
                       tessera_fs_dirent* ents, uint32_t* n);
/* flags: 0, XATTR_CREATE (1) or XATTR_REPLACE (2). */
int tessera_fs_setxattr(tessera_fs* fs, const char* path, const char* name, const void* value,
                        size_t len, int flags);
/* The value's length (bytes copied: at most len), or a negative errno (-ENODATA: none). */
int64_t tessera_fs_getxattr(tessera_fs* fs, const char* path, const char* name, void* buf,
                            size_t len);

const char* tessera_strerror(int rc);
const char* tessera_last_error(void);
/* The library's version ("MAJOR.MINOR.PATCH"); the soname carries MAJOR. */
const char* tessera_version(void);

#ifdef __cplusplus
}
#endif

#endif /* TESSERA_H */

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

const char* tessera_strerror(int rc);
const char* tessera_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* TESSERA_H */

/*
 * sluice/common.h - error codes, version, callbacks and the string buffer
 * shared by every sluice object.
 *
 * Conventions used by every header (see docs/abi.md):
 *  - Functions return int: 0 on success, a negative SLUICE_E* code on error.
 *    The codes below are stable: a code's value and name never change.
 *  - When a function fails, a message saying what was wrong is available
 *    from sluice_error_message() on the same thread until the next failing
 *    sluice call on that thread.
 *  - Options structs begin with `unsigned int version`; fill them with
 *    SLUICE_X_OPTIONS_INIT or sluice_x_options_init(&opts, version).
 *    Fields are only ever appended, and the version tells the library which
 *    fields a caller compiled against.
 *  - Stats structs begin with `size_t size`, set by the caller to
 *    sizeof(struct); the library fills no more than that.
 *  - A waiting operation takes (cb, user_data, free_user_data). If the call
 *    that starts it returns an error, nothing was taken: cb never runs and
 *    free_user_data is not called. Otherwise cb runs exactly once on the
 *    loop thread, then free_user_data(user_data) if it is not NULL.
 */
#ifndef SLUICE_COMMON_H
#define SLUICE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SLUICE_STATIC)
#define SLUICE_EXTERN
#elif defined(__GNUC__) || defined(__clang__)
#define SLUICE_EXTERN __attribute__((visibility("default")))
#else
#define SLUICE_EXTERN
#endif

/* ---- version -------------------------------------------------------- */

/* SLUICE_VERSION_MAJOR/MINOR/PATCH/STRING/HEX, generated from CMakeLists.txt
 * (the one version source). SLUICE_VERSION_HEX is 0xMMmmpp. */
#include "sluice/version.h"

/*
 * The version of the library actually loaded, as SLUICE_VERSION_HEX would
 * spell it. A caller built against headers of major M works with any
 * library of major M whose minor is at least the headers' minor.
 * Any thread. Never fails.
 */
SLUICE_EXTERN unsigned int sluice_version(void);

/* The loaded library's version as "MAJOR.MINOR.PATCH" (static string). */
SLUICE_EXTERN const char *sluice_version_string(void);

/* ---- errors --------------------------------------------------------- */

/*
 * XX(name, value, message). Values are stable and only ever appended.
 */
#define SLUICE_ERRNO_MAP(XX)                                                 \
  XX(EINVAL, -1, "invalid argument")                                         \
  XX(ENOMEM, -2, "out of memory")                                            \
  XX(EVERSION, -3, "unsupported struct version")                             \
  XX(ECLOSED, -4, "closed or shutting down")                                 \
  XX(ECANCELED, -5, "operation canceled")                                    \
  XX(ETIMEDOUT, -6, "deadline expired")                                      \
  XX(EDEADLK, -7, "blocking call on the loop thread would deadlock")         \
  XX(EAGAIN, -8, "not available now, try again")                             \
  XX(ELIMIT, -9, "configured limit reached")                                 \
  XX(ESTATE, -10, "invalid state for this operation")                        \
  XX(ERANGE, -11, "value out of range")                                      \
  XX(ENOTSUP, -12, "operation not supported")                                \
  XX(EINTERNAL, -13, "internal error")                                       \
  XX(EUV, -14, "event loop error")                                           \
  XX(EREJECTED, -15, "rejected by rate limit")                               \
  XX(EFULL, -16, "queue full")                                               \
  XX(EOPEN, -17, "circuit breaker open")                                     \
  XX(EBUDGET, -18, "retry budget exhausted")                                 \
  XX(EEXHAUSTED, -19, "pool exhausted")                                      \
  XX(EUNREACHABLE, -20, "database unreachable")                              \
  XX(EAMBIGUOUS, -21, "statement sent, outcome unknown")                     \
  XX(EPG, -22, "database server error")

typedef enum sluice_errno {
  SLUICE_OK = 0,
#define SLUICE_ERRNO_ENUM_(name, value, msg) SLUICE_##name = (value),
  SLUICE_ERRNO_MAP(SLUICE_ERRNO_ENUM_)
#undef SLUICE_ERRNO_ENUM_
  SLUICE_ERRNO_LAST_ = -22
} sluice_errno;

/*
 * A static, human-readable description of `code` ("success" for 0,
 * "unknown error" for a code this library does not know). Any thread.
 */
SLUICE_EXTERN const char *sluice_strerror(int code);

/*
 * The code's name as a static string ("SLUICE_ETIMEDOUT"; "SLUICE_OK" for
 * 0; "SLUICE_EUNKNOWN" for a code this library does not know). Any thread.
 */
SLUICE_EXTERN const char *sluice_err_name(int code);

/*
 * Detail of the last sluice call that failed on the calling thread (which
 * option was bad, which handle was NULL), or "" if none has failed there.
 * Successful calls leave it alone. The string belongs to the library and
 * stays valid until the next failing sluice call on this thread. Bindings whose threads move between
 * calls (Go) read it inside the same foreign call as the failing function.
 */
SLUICE_EXTERN const char *sluice_error_message(void);

/* ---- string buffer -------------------------------------------------- */

/*
 * A string the library hands out. `ptr` is NUL-terminated and `size`
 * excludes the NUL. The caller owns it and releases it with
 * sluice_buf_free. Initialise with SLUICE_BUF_INIT before passing it in.
 */
typedef struct sluice_buf {
  char *ptr;
  size_t size;
} sluice_buf;

#define SLUICE_BUF_INIT {NULL, 0}

/*
 * Releases the memory of `buf` and resets it to SLUICE_BUF_INIT.
 * sluice_buf_free(NULL) and freeing an empty buffer are no-ops. Any thread.
 */
SLUICE_EXTERN void sluice_buf_free(sluice_buf *buf);

/*
 * Copies sluice_error_message() of the calling thread into `out` (which is
 * freed first if it holds a string). Errors: SLUICE_EINVAL (out is NULL),
 * SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_error_message_copy(sluice_buf *out);

/* ---- callbacks and time --------------------------------------------- */

/* Releases a user_data pointer once the library is done with it. */
typedef void (*sluice_free_cb)(void *user_data);

/*
 * Completion of a waiting operation that yields only a status: 0, or a
 * negative SLUICE_E* code. Runs on the loop thread, exactly once.
 */
typedef void (*sluice_status_cb)(void *user_data, int status);

/* Monotonic time in nanoseconds (never wall time). Any thread. */
SLUICE_EXTERN uint64_t sluice_now_ns(void);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_COMMON_H */

/*
 * sluice/runtime.h - the event loop every sluice object lives on.
 *
 * A runtime either starts its own loop thread (sluice_runtime_new, what Go,
 * Rust and Python callers use) or attaches to a libuv loop the caller
 * already runs (sluice_runtime_attach in sluice/uv.h). All callbacks of
 * waiting operations run on that loop's thread.
 *
 * Threads: every function here may be called from any thread unless it
 * says otherwise.
 */
#ifndef SLUICE_RUNTIME_H
#define SLUICE_RUNTIME_H

#include "common.h"
#include "op.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sluice_runtime sluice_runtime;

/* ---- options -------------------------------------------------------- */

#define SLUICE_RUNTIME_OPTIONS_VERSION 1

typedef struct sluice_runtime_options {
  unsigned int version; /* SLUICE_RUNTIME_OPTIONS_VERSION */
  /* Name of the loop thread (own-thread mode; at most 15 bytes are shown
   * by the OS). NULL: "sluice-loop". Copied; need not outlive the call. */
  const char *thread_name;
  /* How often loop lag is sampled, in milliseconds. 0 turns sampling off.
   * Default 100. At most 60000. */
  uint32_t lag_interval_ms;
} sluice_runtime_options;

#define SLUICE_RUNTIME_OPTIONS_INIT {SLUICE_RUNTIME_OPTIONS_VERSION, NULL, 100}

/*
 * Fills `opts` with the defaults of options version `version` (pass
 * SLUICE_RUNTIME_OPTIONS_VERSION). Only the fields that exist in that
 * version are written, so a caller compiled against older headers is safe
 * with a newer library.
 * Errors: SLUICE_EINVAL (opts is NULL), SLUICE_EVERSION (unknown version).
 */
SLUICE_EXTERN int sluice_runtime_options_init(sluice_runtime_options *opts,
                                              unsigned int version);

/* ---- life cycle ----------------------------------------------------- */

/*
 * Creates a runtime with its own loop thread, running when this returns.
 * `opts` may be NULL for the defaults. On success *out owns the runtime;
 * release it with sluice_runtime_free.
 * Errors: SLUICE_EINVAL (out is NULL, an option out of range),
 * SLUICE_EVERSION (opts->version unknown), SLUICE_ENOMEM, SLUICE_EUV (the
 * loop or its thread could not be started; see sluice_error_message).
 */
SLUICE_EXTERN int sluice_runtime_new(sluice_runtime **out,
                                     const sluice_runtime_options *opts);

/*
 * Shuts the runtime down in order: new work is refused with SLUICE_ECLOSED;
 * every posted item and pending operation completes exactly once with
 * SLUICE_ECLOSED (its callback runs on the loop thread); the loop thread
 * ends. Returns when all of that is done. Calling it again returns 0.
 * Own-thread mode only: an attached runtime is shut down by
 * sluice_runtime_free on its loop thread.
 * Must not be called on the loop thread.
 * Errors: SLUICE_EINVAL (rt is NULL or attached), SLUICE_EDEADLK (called on
 * the loop thread).
 */
SLUICE_EXTERN int sluice_runtime_close(sluice_runtime *rt);

/*
 * Shuts down (as sluice_runtime_close) if that has not happened, then
 * releases the runtime. sluice_runtime_free(NULL) is a no-op.
 * Own-thread mode: call it from any thread but the loop thread; if it is
 * called on the loop thread anyway, the shutdown is started and the loop
 * thread releases the runtime itself when it ends.
 * Attached mode: call it on the loop thread. Pending work completes with
 * SLUICE_ECLOSED at once; the memory is released once the loop has run the
 * close callbacks of the runtime's handles, so run the loop once more
 * (uv_run returns when they are done) before uv_loop_close.
 * Objects created on the runtime must be freed before it.
 */
SLUICE_EXTERN void sluice_runtime_free(sluice_runtime *rt);

/* 1 if the calling thread is the runtime's loop thread, else 0 (also for
 * NULL). */
SLUICE_EXTERN int sluice_runtime_is_loop_thread(const sluice_runtime *rt);

/* ---- work on the loop ----------------------------------------------- */

/*
 * Queues cb(user_data, 0) to run on the loop thread, then
 * free_user_data(user_data) if not NULL. Items posted from threads other
 * than the loop thread run in the order the calls returned; items the loop
 * thread posts to itself run in their own order. Called on
 * the loop thread itself, it never runs cb inline: cb runs on a later turn. Work accepted
 * before shutdown began always runs (before any pending operation is
 * completed with SLUICE_ECLOSED); after that, posting fails. The status is
 * 0 today; a non-zero status would mean the work did not run.
 * Errors (nothing taken, cb never runs): SLUICE_EINVAL (rt or cb NULL),
 * SLUICE_ECLOSED (the runtime is shutting down), SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_runtime_post(sluice_runtime *rt, sluice_status_cb cb,
                                      void *user_data,
                                      sluice_free_cb free_user_data);

/*
 * Starts a one-shot timer: after `delay_ms` milliseconds cb runs on the
 * loop thread with 0; with SLUICE_ECANCELED if cancelled first through
 * *op_out; with SLUICE_ECLOSED if the runtime shuts down first. Exactly
 * once in every case, then free_user_data(user_data) if not NULL.
 * `op_out` may be NULL; if not, *op_out receives a handle the caller must
 * release with sluice_op_free.
 * Errors (nothing taken): SLUICE_EINVAL (rt or cb NULL, delay_ms above
 * 2^40), SLUICE_ECLOSED, SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_runtime_timer(sluice_runtime *rt, uint64_t delay_ms,
                                       sluice_status_cb cb, void *user_data,
                                       sluice_free_cb free_user_data,
                                       sluice_op **op_out);

/* ---- figures -------------------------------------------------------- */

typedef struct sluice_runtime_stats {
  size_t size;              /* caller sets sizeof(sluice_runtime_stats) */
  uint64_t posted;          /* items queued for the loop thread: by
                             sluice_runtime_post and by sluice itself */
  uint64_t ops_started;     /* waiting operations started (timers, ...) */
  uint64_t ops_completed;   /* ... and completed, any status (counted once
                               the callback and free_user_data returned, so
                               a reader woken by a callback may still see
                               its op as pending for a moment) */
  uint64_t ops_pending;     /* started minus completed */
  uint64_t lag_samples;     /* loop-lag samples taken */
  uint64_t lag_last_ns;     /* the latest sample */
  uint64_t lag_max_ns;      /* the largest sample since start */
  uint64_t lag_mean_ns;     /* exponentially weighted mean (alpha 1/8) */
  int is_own_thread;        /* 1 own loop thread, 0 attached */
  int is_closed;            /* 1 once shutdown has begun */
} sluice_runtime_stats;

/*
 * Copies the runtime's figures into *out (no more than out->size bytes).
 * Errors: SLUICE_EINVAL (rt or out NULL, out->size too small for the
 * `size` field).
 */
SLUICE_EXTERN int sluice_runtime_stats_get(const sluice_runtime *rt,
                                           sluice_runtime_stats *out);

typedef struct sluice_memory_stats {
  size_t size;          /* caller sets sizeof(sluice_memory_stats) */
  int jemalloc;         /* 1: the figures are jemalloc's; 0: system malloc */
  uint64_t allocated;   /* bytes the library holds in live allocations */
  uint64_t active;      /* bytes in active pages (jemalloc only, else 0) */
  uint64_t resident;    /* bytes resident for the arena (jemalloc only) */
  uint64_t arena;       /* jemalloc arena index used by sluice */
} sluice_memory_stats;

/*
 * Reports the memory of the library's own allocator: with jemalloc, the
 * figures of the dedicated arena sluice allocates from (the host's malloc
 * is never replaced); without it, `allocated` counts the bytes sluice holds
 * through the system allocator. `rt` may be NULL (the figures are
 * process-wide for the library).
 * Errors: SLUICE_EINVAL (out NULL or out->size too small).
 */
SLUICE_EXTERN int sluice_runtime_memory(const sluice_runtime *rt,
                                        sluice_memory_stats *out);

/*
 * A one-line human-readable summary of the runtime (mode, pending work,
 * loop lag) into `out` (freed first if it holds a string).
 * Errors: SLUICE_EINVAL (rt or out NULL), SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_runtime_describe(const sluice_runtime *rt,
                                          sluice_buf *out);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_RUNTIME_H */

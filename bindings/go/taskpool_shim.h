/*
 * C side of taskpool.go (see shim.h for why these wrappers exist).
 *
 * A permit is a handle value, never memory (taskpool.h): it crosses to Go
 * as a uint64_t, like a lock guard, so the garbage collector never sees it
 * in a pointer-typed variable.
 */
#ifndef SLUICE_GO_TASKPOOL_SHIM_H
#define SLUICE_GO_TASKPOOL_SHIM_H

#include <sluice/taskpool.h>

#include "shim.h"

/* Exported from callbacks.go. */
extern void sluiceGoCompleteValue(uintptr_t handle, int status, uint64_t value);
extern int sluiceGoTaskRun(uintptr_t handle);

static inline void sg_permit_granted(void *user_data, int status, sluice_permit *permit) {
  sluiceGoCompleteValue((uintptr_t)user_data, status, (uint64_t)(uintptr_t)permit);
}

/* Runs on a pool worker thread: a cgo callback into a Go function. */
static inline int sg_task_run(void *user_data) { return sluiceGoTaskRun((uintptr_t)user_data); }

static inline sluice_permit *sg_permit(uint64_t p) { return (sluice_permit *)(uintptr_t)p; }

static inline void sg_taskpool_options_init(sg_result *r, sluice_taskpool_options *o) {
  sg_done(r, sluice_taskpool_options_init(o, SLUICE_TASKPOOL_OPTIONS_VERSION));
}

/* clock: a ManualClock's word or NULL. */
static inline void sg_taskpool_new(sg_result *r, sluice_taskpool **out, sluice_runtime *rt,
                                   sluice_taskpool_options *o, uint64_t *clock) {
  if (clock) {
    o->clock = sg_manual_clock;
    o->clock_user_data = clock;
  }
  sg_done(r, sluice_taskpool_new(out, rt, o));
}

/* A refusal that is an answer (busy) copies no message. */
static inline void sg_taskpool_try(sg_result *r, sluice_taskpool *p, uint64_t *permit) {
  sluice_permit *pm = NULL;
  int rc = sluice_taskpool_try_acquire(p, &pm);
  *permit = (uint64_t)(uintptr_t)pm;
  if (rc == SLUICE_EAGAIN) {
    r->rc = rc;
    r->msg.ptr = NULL;
    r->msg.size = 0;
    return;
  }
  sg_done(r, rc);
}

static inline void sg_taskpool_acquire(sg_result *r, sluice_taskpool *p, int priority,
                                       int64_t timeout_ms, uintptr_t handle, sluice_op **op) {
  sg_done(r, sluice_taskpool_acquire(p, priority, timeout_ms, sg_permit_granted, (void *)handle,
                                     sg_release, op));
}

static inline void sg_taskpool_submit(sg_result *r, sluice_taskpool *p, int priority,
                                      int64_t timeout_ms, uintptr_t handle, sluice_op **op) {
  sg_done(r, sluice_taskpool_submit(p, sg_task_run, priority, timeout_ms, sg_complete,
                                    (void *)handle, sg_release, op));
}

static inline void sg_taskpool_release(sg_result *r, sluice_taskpool *p, uint64_t permit,
                                       int outcome) {
  sg_done(r, sluice_taskpool_release(p, sg_permit(permit), outcome));
}

static inline void sg_taskpool_resize(sg_result *r, sluice_taskpool *p, uint32_t n) {
  sg_done(r, sluice_taskpool_resize(p, n));
}

static inline void sg_taskpool_shutdown(sg_result *r, sluice_taskpool *p, int64_t timeout_ms) {
  sg_done(r, sluice_taskpool_shutdown(p, timeout_ms));
}

static inline void sg_taskpool_stats(sg_result *r, sluice_taskpool *p, sluice_taskpool_stats *out) {
  out->size = sizeof *out;
  sg_done(r, sluice_taskpool_stats_get(p, out));
}

#endif /* SLUICE_GO_TASKPOOL_SHIM_H */

/*
 * C side of the Go binding, included by the Go files that call sluice.
 *
 * Why these wrappers exist:
 *  - sluice_error_message() is thread-local and a goroutine may run on
 *    another OS thread after a cgo call returns, so every wrapper copies the
 *    detail message out inside the same cgo call as the failing function.
 *  - A cgo.Handle travels as uintptr_t and becomes a void * only here, so Go
 *    never converts an integer to unsafe.Pointer (which go vet flags).
 *  - The trampolines give the library C function pointers that forward to
 *    the exported Go functions in callbacks.go.
 *
 * Everything is static inline: each Go file's preamble is its own C unit.
 */
#ifndef SLUICE_GO_SHIM_H
#define SLUICE_GO_SHIM_H

#include <stdint.h>
#include <stdlib.h>

#include <sluice.h>

typedef struct sg_result {
  int rc;
  sluice_buf msg; /* detail message when rc < 0; Go frees it */
} sg_result;

static inline void sg_done(sg_result *r, int rc) {
  r->rc = rc;
  r->msg.ptr = NULL;
  r->msg.size = 0;
  if (rc < 0) sluice_error_message_copy(&r->msg);
}

/* Exported from callbacks.go. */
extern void sluiceGoComplete(uintptr_t handle, int status);
extern void sluiceGoRelease(uintptr_t handle);

static inline void sg_complete(void *user_data, int status) {
  sluiceGoComplete((uintptr_t)user_data, status);
}

static inline void sg_release(void *user_data) { sluiceGoRelease((uintptr_t)user_data); }

/* version is a parameter so the tests can provoke SLUICE_EVERSION. */
static inline void sg_runtime_new(sg_result *r, sluice_runtime **out, unsigned version,
                                  const char *thread_name, uint32_t lag_interval_ms) {
  sluice_runtime_options opts;
  int rc = sluice_runtime_options_init(&opts, SLUICE_RUNTIME_OPTIONS_VERSION);
  if (rc == 0) {
    opts.version = version;
    opts.thread_name = thread_name;
    opts.lag_interval_ms = lag_interval_ms;
    rc = sluice_runtime_new(out, &opts);
  }
  sg_done(r, rc);
}

static inline void sg_runtime_close(sg_result *r, sluice_runtime *rt) {
  sg_done(r, sluice_runtime_close(rt));
}

static inline void sg_post(sg_result *r, sluice_runtime *rt, uintptr_t handle) {
  sg_done(r, sluice_runtime_post(rt, sg_complete, (void *)handle, sg_release));
}

static inline void sg_timer(sg_result *r, sluice_runtime *rt, uint64_t delay_ms,
                            uintptr_t handle, sluice_op **op) {
  sg_done(r, sluice_runtime_timer(rt, delay_ms, sg_complete, (void *)handle, sg_release, op));
}

static inline void sg_op_cancel(sg_result *r, sluice_op *op) {
  sg_done(r, sluice_op_cancel(op));
}

static inline void sg_stats(sg_result *r, const sluice_runtime *rt, sluice_runtime_stats *out) {
  out->size = sizeof *out;
  sg_done(r, sluice_runtime_stats_get(rt, out));
}

static inline void sg_memory(sg_result *r, const sluice_runtime *rt, sluice_memory_stats *out) {
  out->size = sizeof *out;
  sg_done(r, sluice_runtime_memory(rt, out));
}

static inline void sg_describe(sg_result *r, const sluice_runtime *rt, sluice_buf *out) {
  out->ptr = NULL;
  out->size = 0;
  sg_done(r, sluice_runtime_describe(rt, out));
}

#endif /* SLUICE_GO_SHIM_H */

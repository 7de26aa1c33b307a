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
 *  - Reading a result or a row takes one cgo call, not one per field.
 *
 * Everything is static inline: each Go file's preamble is its own C unit.
 */
#ifndef SLUICE_GO_SHIM_H
#define SLUICE_GO_SHIM_H

#include <stdint.h>
#include <stdlib.h>

#include <sluice.h>
#include <sluice/monitor.h>
#include <sluice/pg.h>

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

/* The clock of a Go ManualClock: one 64-bit word in C memory that Go
 * stores to atomically (clock.go). */
static inline uint64_t sg_manual_clock(void *user_data) {
  return __atomic_load_n((const uint64_t *)user_data, __ATOMIC_ACQUIRE);
}

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

/* ---- completions that hand over a pointer (pg results, leases) ------- */

/* Exported from callbacks.go. msg is the failure's detail, or NULL. */
extern void sluiceGoCompletePtr(uintptr_t handle, int status, void *ptr, char *msg, size_t msg_len);

static inline void sg_pg_result_done(void *user_data, int status, sluice_pg_result *res) {
  sluiceGoCompletePtr((uintptr_t)user_data, status, res, NULL, 0);
}

/* A refused acquire says why through sluice_error_message(), set on this
 * (the loop) thread just before the callback: copy it here. */
static inline void sg_pg_acquired(void *user_data, int status, sluice_pg_conn *conn) {
  sluice_buf msg = SLUICE_BUF_INIT;
  if (status < 0) sluice_error_message_copy(&msg);
  sluiceGoCompletePtr((uintptr_t)user_data, status, conn, msg.ptr, msg.size);
  sluice_buf_free(&msg);
}

/* ---- PostgreSQL pool ------------------------------------------------ */

static inline void sg_pg_pool_options_init(sg_result *r, sluice_pg_pool_options *opts) {
  sg_done(r, sluice_pg_pool_options_init(opts, SLUICE_PG_POOL_OPTIONS_VERSION));
}

/* The library's default query timeout (SLUICE_PG_QUERY_OPTIONS_INIT). */
static inline int64_t sg_pg_default_timeout_ms(void) {
  sluice_pg_query_options qo;
  if (sluice_pg_query_options_init(&qo, SLUICE_PG_QUERY_OPTIONS_VERSION) != 0) return 30000;
  return qo.timeout_ms;
}

static inline void sg_pg_pool_new(sg_result *r, sluice_pg_pool **out, sluice_runtime *rt,
                                  const sluice_pg_pool_options *opts) {
  sg_done(r, sluice_pg_pool_new(out, rt, opts));
}

static inline void sg_pg_pool_close(sg_result *r, sluice_pg_pool *pool, uint32_t drain_ms,
                                    uintptr_t handle) {
  sg_done(r, sluice_pg_pool_close(pool, drain_ms, sg_complete, (void *)handle, sg_release, NULL));
}

static inline void sg_pg_pool_stats(sg_result *r, const sluice_pg_pool *pool,
                                    sluice_pg_pool_stats *out) {
  out->size = sizeof *out;
  sg_done(r, sluice_pg_pool_stats_get(pool, out));
}

/* op may be NULL: a call whose context cannot end needs no handle. */
static inline void sg_pg_acquire(sg_result *r, sluice_pg_pool *pool, int64_t timeout_ms,
                                 uintptr_t handle, sluice_op **op) {
  sg_done(r, sluice_pg_pool_acquire(pool, timeout_ms, sg_pg_acquired, (void *)handle, sg_release,
                                    op));
}

static inline void sg_pg_release(sg_result *r, sluice_pg_conn *conn) {
  sg_done(r, sluice_pg_conn_release(conn));
}

/* One statement on a lease (conn not NULL) or one-shot on the pool. The
 * library copies sql and the parameters before it returns. */
static inline void sg_pg_query(sg_result *r, sluice_pg_pool *pool, sluice_pg_conn *conn,
                               const char *sql, int nparams, const char *const *values,
                               const int *lengths, const int *formats, int64_t timeout_ms,
                               uint32_t flags, uintptr_t handle, sluice_op **op) {
  sluice_pg_query_options qo;
  int rc = sluice_pg_query_options_init(&qo, SLUICE_PG_QUERY_OPTIONS_VERSION);
  if (rc == 0) {
    qo.timeout_ms = timeout_ms;
    qo.flags = flags;
    if (conn)
      rc = sluice_pg_conn_query(conn, sql, nparams, values, lengths, formats, &qo,
                                sg_pg_result_done, (void *)handle, sg_release, op);
    else
      rc = sluice_pg_pool_query(pool, sql, nparams, values, lengths, formats, &qo,
                                sg_pg_result_done, (void *)handle, sg_release, op);
  }
  sg_done(r, rc);
}

/* Everything a failed result says, in one call (the strings point into the
 * result: copy them before freeing it). */
typedef struct sg_pg_error {
  const char *message, *sqlstate, *detail, *hint;
  int sent, retryable;
  int retryable_idempotent; /* the classification for an idempotent statement */
} sg_pg_error;

static inline void sg_pg_error_of(const sluice_pg_result *res, sg_pg_error *e) {
  e->message = sluice_pg_result_message(res);
  e->sqlstate = sluice_pg_result_sqlstate(res);
  e->detail = sluice_pg_result_detail(res);
  e->hint = sluice_pg_result_hint(res);
  e->sent = sluice_pg_result_sent(res);
  e->retryable = sluice_pg_result_retryable(res, 0);
  e->retryable_idempotent = sluice_pg_result_retryable(res, 1);
}

/* Shape of a result: names[] and types[] have `columns` entries. */
static inline void sg_pg_columns(const sluice_pg_result *res, int columns, const char **names,
                                 uint32_t *types) {
  for (int c = 0; c < columns; c++) {
    names[c] = sluice_pg_result_column_name(res, c);
    types[c] = sluice_pg_result_column_type(res, c);
  }
}

/* One row's values in one call: values[c] NULL is SQL NULL. */
static inline int sg_pg_row(const sluice_pg_result *res, int row, int columns,
                            const char **values, size_t *lens) {
  for (int c = 0; c < columns; c++) {
    int rc = sluice_pg_result_value(res, row, c, &values[c], &lens[c]);
    if (rc < 0) return rc;
  }
  return 0;
}

/* ---- monitor -------------------------------------------------------- */

static inline void sg_monitor_new(sg_result *r, sluice_monitor **out, sluice_runtime *rt,
                                  uint32_t max_series) {
  sluice_monitor_options o;
  int rc = sluice_monitor_options_init(&o, SLUICE_MONITOR_OPTIONS_VERSION);
  if (rc == 0) {
    o.max_series = max_series;
    rc = sluice_monitor_new(out, rt, &o);
  }
  sg_done(r, rc);
}

static inline void sg_monitor_series(sg_result *r, sluice_monitor *m, const char *name,
                                     size_t len, uint32_t *id) {
  sg_done(r, sluice_monitor_series(m, name, len, id));
}

static inline void sg_monitor_record_id(sg_result *r, sluice_monitor *m, uint32_t id,
                                        uint64_t duration_ns, int outcome) {
  sg_done(r, sluice_monitor_record_id(m, id, duration_ns, outcome));
}

static inline void sg_monitor_op_stats(sg_result *r, const sluice_monitor *m, uint32_t index,
                                       int window, sluice_monitor_op_stats *out) {
  out->size = sizeof *out;
  sg_done(r, sluice_monitor_op_stats_get(m, index, (sluice_monitor_window)window, out));
}

static inline void sg_monitor_process(sg_result *r, sluice_monitor *m, sluice_process_stats *out) {
  out->size = sizeof *out;
  sg_done(r, sluice_monitor_process(m, out));
}

/* which: 0 JSON, 1 Prometheus text. */
static inline void sg_monitor_export(sg_result *r, sluice_monitor *m, int which, sluice_buf *out) {
  out->ptr = NULL;
  out->size = 0;
  sg_done(r, which ? sluice_monitor_prometheus(m, out) : sluice_monitor_json(m, out));
}

#endif /* SLUICE_GO_SHIM_H */

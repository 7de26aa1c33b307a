/*
 * sluice/pg.h - an asynchronous PostgreSQL connection pool on libpq and the
 * runtime's loop.
 *
 * Every libpq call runs on the loop thread; the functions below may be
 * called from any thread and complete through callbacks on the loop thread,
 * exactly once (see docs/abi.md). Connections open without blocking the
 * loop (host names are resolved off the loop, then PQconnectStartParams /
 * PQconnectPoll run on uv_poll), are watched while idle, checked before they
 * are lent after being idle, replaced after any loss, and never handed out
 * dirty.
 *
 * Failures say which side of the wire they happened on:
 *  - nothing was sent: SLUICE_ETIMEDOUT (deadline passed before the
 *    statement was sent), SLUICE_EEXHAUSTED (the pool foresees no free
 *    connection within the caller's deadline), SLUICE_EUNREACHABLE (the
 *    server cannot be reached; the message is the last connect error),
 *    SLUICE_ECLOSED, SLUICE_ECANCELED. Safe to retry any statement.
 *  - the statement was sent and its outcome is unknown: SLUICE_EAMBIGUOUS
 *    (the connection broke, or the query's deadline fired, before the
 *    result was read). It may have committed.
 *  - the server answered with an error: SLUICE_EPG, with its SQLSTATE.
 * sluice_pg_result_sent() tells the two sides apart for any status.
 */
#ifndef SLUICE_PG_H
#define SLUICE_PG_H

#include "common.h"
#include "monitor.h"
#include "op.h"
#include "retry.h"
#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sluice_pg_pool sluice_pg_pool;
typedef struct sluice_pg_conn sluice_pg_conn;
typedef struct sluice_pg_result sluice_pg_result;

/* ---- events (optional observer of what happens to connections) ------ */

typedef enum sluice_pg_event_kind {
  SLUICE_PG_EVENT_CONNECTED = 1,      /* a connection was opened */
  SLUICE_PG_EVENT_CONNECT_FAILED = 2, /* a connect attempt failed */
  SLUICE_PG_EVENT_EVICTED = 3,        /* a connection was closed; see reason */
  SLUICE_PG_EVENT_DOWN = 4,           /* the server became unreachable */
  SLUICE_PG_EVENT_UP = 5              /* a probe reached it again */
} sluice_pg_event_kind;

typedef enum sluice_pg_evict_reason {
  SLUICE_PG_EVICT_BROKEN = 1,     /* CONNECTION_BAD, socket closed by the server */
  SLUICE_PG_EVICT_FATAL = 2,      /* SQLSTATE class 08 or 57P01..57P03 */
  SLUICE_PG_EVICT_READ_ONLY = 3,  /* SQLSTATE 25006: a demoted primary */
  SLUICE_PG_EVICT_LIFETIME = 4,   /* max_lifetime_ms reached */
  SLUICE_PG_EVICT_IDLE = 5,       /* idle_timeout_ms reached, above min_size */
  SLUICE_PG_EVICT_HEALTH = 6,     /* a health check failed or timed out */
  SLUICE_PG_EVICT_DIRTY = 7,      /* returned in a state that could not be reset */
  SLUICE_PG_EVICT_CLOSE = 8,      /* the pool is closing */
  SLUICE_PG_EVICT_REASONS_ = 9
} sluice_pg_evict_reason;

typedef struct sluice_pg_event {
  sluice_pg_event_kind kind;
  sluice_pg_evict_reason reason; /* EVICTED only, else 0 */
  const char *message;           /* error text or "", valid during the call */
} sluice_pg_event;

/* Runs on the loop thread. Must not block. */
typedef void (*sluice_pg_event_cb)(void *user_data, const sluice_pg_event *event);

/* ---- options -------------------------------------------------------- */

#define SLUICE_PG_POOL_OPTIONS_VERSION 1

typedef struct sluice_pg_pool_options {
  unsigned int version;        /* SLUICE_PG_POOL_OPTIONS_VERSION */
  const char *conninfo;        /* "host=... dbname=..." or a postgresql:// URI
                                  (required; copied) */
  uint32_t min_size;           /* connections kept open; default 1 */
  uint32_t max_size;           /* never more; default 10 (1..10000) */
  uint32_t max_connecting;     /* connects in flight at once; default 2 */
  uint32_t max_waiters;        /* acquire queue bound; default 10000; beyond
                                  it acquire fails with SLUICE_EFULL */
  uint32_t connect_timeout_ms; /* per attempt; default 5000 */
  uint32_t health_interval_ms; /* idle connections pinged; default 60000
                                  (0: off) */
  uint32_t health_timeout_ms;  /* ping deadline; default 5000 */
  uint32_t check_idle_after_ms;/* idle longer than this: pinged before it is
                                  lent; default 1000 (0: always) */
  uint32_t max_lifetime_ms;    /* replaced after this (+- 10% jitter);
                                  default 1800000 (0: never) */
  uint32_t idle_timeout_ms;    /* closed when idle this long above min_size;
                                  default 600000 (0: never) */
  uint32_t backoff_base_ms;    /* reconnect backoff while the server is down:
                                  first delay; default 100 (>= 100, so at
                                  most 10 attempts per second) */
  uint32_t backoff_max_ms;     /* cap; default 5000 */
  int fail_fast;               /* 1 (default): while the server is known to
                                  be down, acquire fails at once with
                                  SLUICE_EUNREACHABLE; 0: wait up to the
                                  caller's deadline for the next probe */
  int admission_check;         /* 1 (default): refuse at once with
                                  SLUICE_EEXHAUSTED a caller whose deadline is
                                  shorter than the foreseeable wait */
  uint32_t statement_cache;    /* prepared statements cached per connection;
                                  default 256; 0 turns preparing off (for
                                  transaction-mode poolers) */
  sluice_pg_event_cb on_event; /* optional, loop thread */
  void *event_user_data;
  /* Optional: the pool records "pg.acquire" (wait for a connection, with
   * its outcome), "pg.query" (every statement or batch, the whole call
   * including any wait) and "pg.connect" (each connect attempt). Must
   * outlive the pool. */
  sluice_monitor *monitor;
} sluice_pg_pool_options;

#define SLUICE_PG_POOL_OPTIONS_INIT                                           \
  {SLUICE_PG_POOL_OPTIONS_VERSION, NULL, 1, 10, 2, 10000, 5000, 60000, 5000,  \
   1000, 1800000, 600000, 100, 5000, 1, 1, 256, NULL, NULL, NULL}

/*
 * Fills `opts` with the defaults of options version `version`.
 * Errors: SLUICE_EINVAL (opts NULL), SLUICE_EVERSION.
 */
SLUICE_EXTERN int sluice_pg_pool_options_init(sluice_pg_pool_options *opts,
                                              unsigned int version);

/* ---- pool life cycle ------------------------------------------------ */

/*
 * Creates a pool on `rt` and starts filling min_size in the background;
 * returns at once (no connection is opened on the calling thread). The
 * conninfo is parsed here, so a malformed one fails now.
 * Errors: SLUICE_EINVAL (NULL argument, conninfo malformed or missing,
 * min_size > max_size, max_size 0 or above 10000, backoff_base_ms < 100,
 * backoff_max_ms < backoff_base_ms), SLUICE_EVERSION, SLUICE_ECLOSED (rt is
 * shutting down), SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_pg_pool_new(sluice_pg_pool **out, sluice_runtime *rt,
                                     const sluice_pg_pool_options *opts);

/*
 * Graceful close: new acquires and queries fail with SLUICE_ECLOSED; work in
 * flight may finish until `drain_timeout_ms`; then queries still running are
 * cancelled on the server, waiters complete with SLUICE_ECLOSED, and every
 * connection is closed. cb(user_data, 0) runs when all that is done. Every
 * pending request completes exactly once. Closing twice: the second call
 * completes when the first does.
 * Errors (nothing taken): SLUICE_EINVAL, SLUICE_ENOMEM, SLUICE_ECLOSED (the
 * runtime is shutting down).
 */
SLUICE_EXTERN int sluice_pg_pool_close(sluice_pg_pool *pool, uint32_t drain_timeout_ms,
                                       sluice_status_cb cb, void *user_data,
                                       sluice_free_cb free_user_data, sluice_op **op_out);

/*
 * Frees the pool. If it was not closed, closes it with no drain time
 * first. From any thread but the loop thread this blocks until the close
 * has completed; on the loop thread it starts the close and the memory is
 * released when it completes. Leased connections must be released (or
 * become invalid; releasing them later is an error). NULL is a no-op.
 */
SLUICE_EXTERN void sluice_pg_pool_free(sluice_pg_pool *pool);

/* ---- borrowing a connection ----------------------------------------- */

/* status 0: `conn` is yours until sluice_pg_conn_release. Otherwise NULL. */
typedef void (*sluice_pg_acquire_cb)(void *user_data, int status, sluice_pg_conn *conn);

/*
 * Borrows a connection, FIFO among waiters, within `timeout_ms` (> 0).
 * Completes with 0 and a connection, or SLUICE_ETIMEDOUT (none became free
 * in time), SLUICE_EEXHAUSTED (admission check: the foreseeable wait is
 * longer than the deadline), SLUICE_EUNREACHABLE (server down; fail_fast),
 * SLUICE_ECANCELED, SLUICE_ECLOSED. A canceller that still sees success
 * owns the connection and must release it.
 * Errors (nothing taken): SLUICE_EINVAL (NULL pool or cb, timeout_ms <= 0),
 * SLUICE_EFULL (max_waiters waiting), SLUICE_ECLOSED, SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_pg_pool_acquire(sluice_pg_pool *pool, int64_t timeout_ms,
                                         sluice_pg_acquire_cb cb, void *user_data,
                                         sluice_free_cb free_user_data,
                                         sluice_op **op_out);

/*
 * Gives the connection back. A connection left inside a transaction or in
 * an aborted one is rolled back before anyone else gets it; one with a
 * query still running is cancelled on the server and drained; one that
 * cannot be made clean is closed and replaced. Any thread. The handle is
 * invalid afterwards.
 * Errors: SLUICE_EINVAL (NULL), SLUICE_ESTATE (already released).
 */
SLUICE_EXTERN int sluice_pg_conn_release(sluice_pg_conn *conn);

/* ---- queries -------------------------------------------------------- */

/* Flags for sluice_pg_query_options.flags. */
#define SLUICE_PG_NO_PREPARE 1u    /* run unnamed, even with a statement cache */
#define SLUICE_PG_BINARY_RESULT 2u /* ask for results in binary format */
#define SLUICE_PG_IDEMPOTENT 4u    /* safe to run twice: the pool may retry it
                                      on another connection even after an
                                      ambiguous failure (pool queries only) */

#define SLUICE_PG_QUERY_OPTIONS_VERSION 1

typedef struct sluice_pg_query_options {
  unsigned int version;  /* SLUICE_PG_QUERY_OPTIONS_VERSION */
  int64_t timeout_ms;    /* whole call, waiting for a connection included;
                            default 30000. At the deadline a running query
                            is cancelled on the server. */
  uint32_t flags;        /* SLUICE_PG_* flags */
} sluice_pg_query_options;

#define SLUICE_PG_QUERY_OPTIONS_INIT {SLUICE_PG_QUERY_OPTIONS_VERSION, 30000, 0}

SLUICE_EXTERN int sluice_pg_query_options_init(sluice_pg_query_options *opts,
                                               unsigned int version);

/*
 * The result of a query; always delivered (with status 0 or an error) and
 * owned by the callback's receiver, who frees it with sluice_pg_result_free
 * (from any thread). NULL only with SLUICE_ENOMEM.
 */
typedef void (*sluice_pg_result_cb)(void *user_data, int status, sluice_pg_result *result);

/*
 * Runs one statement with `nparams` parameters ($1..$n) on a borrowed
 * connection. `values[i]` NULL is SQL NULL; `lengths` and `formats` may be
 * NULL (all text); a format of 1 means binary and then lengths[i] is
 * required. Everything is copied before the call returns. A connection runs
 * one statement at a time: a second query before the first completed fails
 * with SLUICE_ESTATE.
 * Errors (nothing taken): SLUICE_EINVAL (NULL conn, sql or cb; nparams < 0
 * or > 65535; NULL values with nparams > 0), SLUICE_ESTATE (released
 * connection or a query in flight), SLUICE_EVERSION, SLUICE_ECLOSED,
 * SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_pg_conn_query(sluice_pg_conn *conn, const char *sql, int nparams,
                                       const char *const *values, const int *lengths,
                                       const int *formats,
                                       const sluice_pg_query_options *opts,
                                       sluice_pg_result_cb cb, void *user_data,
                                       sluice_free_cb free_user_data, sluice_op **op_out);

/*
 * One-shot: acquires a connection, runs the statement, releases it. A
 * connection found broken before anything was sent is replaced and the
 * statement sent on another, within the deadline; after an ambiguous
 * failure it is retried only with SLUICE_PG_IDEMPOTENT.
 * Errors (nothing taken): as sluice_pg_conn_query and sluice_pg_pool_acquire.
 */
SLUICE_EXTERN int sluice_pg_pool_query(sluice_pg_pool *pool, const char *sql, int nparams,
                                       const char *const *values, const int *lengths,
                                       const int *formats,
                                       const sluice_pg_query_options *opts,
                                       sluice_pg_result_cb cb, void *user_data,
                                       sluice_free_cb free_user_data, sluice_op **op_out);

/* ---- pipelined batches ---------------------------------------------- */

typedef struct sluice_pg_batch sluice_pg_batch;

/* Errors: SLUICE_EINVAL (out NULL), SLUICE_ENOMEM. */
SLUICE_EXTERN int sluice_pg_batch_new(sluice_pg_batch **out);

/*
 * Appends a statement (parameters as in sluice_pg_conn_query, copied).
 * Errors: SLUICE_EINVAL, SLUICE_ESTATE (the batch is running), SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_pg_batch_add(sluice_pg_batch *batch, const char *sql, int nparams,
                                      const char *const *values, const int *lengths,
                                      const int *formats);

/* Number of statements added. */
SLUICE_EXTERN size_t sluice_pg_batch_size(const sluice_pg_batch *batch);

/*
 * The result of statement `i` after the batch completed (owned by the
 * batch, valid until it is run again or freed), or NULL.
 */
SLUICE_EXTERN const sluice_pg_result *sluice_pg_batch_result(const sluice_pg_batch *batch,
                                                             size_t i);

/* Frees the batch and its results. Not while it runs. NULL is a no-op. */
SLUICE_EXTERN void sluice_pg_batch_free(sluice_pg_batch *batch);

/*
 * Runs every statement of `batch` in pipeline mode: all are sent at once,
 * followed by one Sync, so they form one implicit transaction (all commit
 * or none, unless the statements manage transactions themselves) and cost
 * one round trip. cb(user_data, status) gets 0 if every statement
 * succeeded, else the first failure's status; per-statement results are in
 * the batch. The caller must not touch the batch until cb ran.
 * Errors (nothing taken): SLUICE_EINVAL (NULL or empty batch), SLUICE_ESTATE
 * (batch already running; released conn; query in flight), SLUICE_ECLOSED,
 * SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_pg_conn_batch(sluice_pg_conn *conn, sluice_pg_batch *batch,
                                       const sluice_pg_query_options *opts,
                                       sluice_status_cb cb, void *user_data,
                                       sluice_free_cb free_user_data, sluice_op **op_out);

/* One-shot pipelined batch on the pool (acquire, run, release). */
SLUICE_EXTERN int sluice_pg_pool_batch(sluice_pg_pool *pool, sluice_pg_batch *batch,
                                       const sluice_pg_query_options *opts,
                                       sluice_status_cb cb, void *user_data,
                                       sluice_free_cb free_user_data, sluice_op **op_out);

/* ---- results (any thread; a result is immutable) -------------------- */

/* The status the callback received: 0 or a negative SLUICE_E* code. */
SLUICE_EXTERN int sluice_pg_result_status(const sluice_pg_result *r);
/* 1 if the statement reached the wire (so a failure may have had effects). */
SLUICE_EXTERN int sluice_pg_result_sent(const sluice_pg_result *r);
/* Five-character SQLSTATE of a server error, else "". Never NULL. */
SLUICE_EXTERN const char *sluice_pg_result_sqlstate(const sluice_pg_result *r);
/* Error message (server's or sluice's), detail and hint; "" if none. */
SLUICE_EXTERN const char *sluice_pg_result_message(const sluice_pg_result *r);
SLUICE_EXTERN const char *sluice_pg_result_detail(const sluice_pg_result *r);
SLUICE_EXTERN const char *sluice_pg_result_hint(const sluice_pg_result *r);
/* Rows and columns returned (0 for none or a failure). */
SLUICE_EXTERN int sluice_pg_result_rows(const sluice_pg_result *r);
SLUICE_EXTERN int sluice_pg_result_columns(const sluice_pg_result *r);
/* Rows affected by INSERT/UPDATE/DELETE/..., or -1 if not reported. */
SLUICE_EXTERN int64_t sluice_pg_result_affected(const sluice_pg_result *r);
/* Column name (NULL if out of range) and type OID (0 if out of range). */
SLUICE_EXTERN const char *sluice_pg_result_column_name(const sluice_pg_result *r, int col);
SLUICE_EXTERN uint32_t sluice_pg_result_column_type(const sluice_pg_result *r, int col);
/*
 * The value at (row, col): *value points into the result (valid until it is
 * freed; NUL-terminated for text), *len is its length in bytes. SQL NULL
 * gives *value NULL and returns 1. Returns 0 for a value.
 * Errors: SLUICE_EINVAL (NULL r or value), SLUICE_ERANGE (row or col out of
 * range).
 */
SLUICE_EXTERN int sluice_pg_result_value(const sluice_pg_result *r, int row, int col,
                                         const char **value, size_t *len);
/* Frees a result delivered to a callback. NULL is a no-op. */
SLUICE_EXTERN void sluice_pg_result_free(sluice_pg_result *r);

/*
 * The retry classification for a failed statement: 1 if running it again
 * is safe and may succeed, else 0. Safe when nothing was sent
 * (SLUICE_ETIMEDOUT, SLUICE_EEXHAUSTED, SLUICE_EUNREACHABLE, SLUICE_EFULL),
 * for serialization failures and deadlocks (SQLSTATE 40001, 40P01: the
 * server rolled the statement back), and for connection-class errors
 * (class 08, 57P01..57P03) that the server reported before running it. An
 * ambiguous failure (SLUICE_EAMBIGUOUS, or sent=1 with no server answer)
 * is retryable only if `idempotent` is non-zero. Success, SLUICE_ECLOSED,
 * SLUICE_ECANCELED and other server errors are not retryable. Any thread.
 */
SLUICE_EXTERN int sluice_pg_result_retryable(const sluice_pg_result *r, int idempotent);

/*
 * The same classification as a sluice_retry_outcome, for an attempt of a
 * retry policy (sluice/retry.h) that ran a statement:
 *   sluice_retry_attempt_done(attempt, sluice_pg_retry_outcome(r, idem),
 *                             sluice_pg_result_status(r), 0);
 * SLUICE_RETRY_SUCCESS for status 0, SLUICE_RETRY_RETRYABLE when
 * sluice_pg_result_retryable says so, else SLUICE_RETRY_PERMANENT (an
 * ambiguous write is never retried unless `idempotent`). NULL is PERMANENT.
 */
SLUICE_EXTERN int sluice_pg_retry_outcome(const sluice_pg_result *r, int idempotent);

/* ---- LISTEN / NOTIFY ------------------------------------------------ */

typedef struct sluice_pg_listener sluice_pg_listener;

/* Loop thread; strings valid during the call. */
typedef void (*sluice_pg_notify_cb)(void *user_data, const char *channel,
                                    const char *payload, int backend_pid);

/*
 * Subscribes to `channel` on a dedicated connection of the pool (not
 * counted in max_size), which is re-opened and re-subscribed after any
 * loss. Notifications sent while it was disconnected are lost (PostgreSQL
 * does not queue them). free_user_data runs when the listener is closed.
 * Errors: SLUICE_EINVAL (NULL argument, empty channel or longer than 63
 * bytes), SLUICE_ECLOSED, SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_pg_listen(sluice_pg_pool *pool, const char *channel,
                                   sluice_pg_notify_cb cb, void *user_data,
                                   sluice_free_cb free_user_data,
                                   sluice_pg_listener **out);

/* 1 once the listener's LISTEN is active on a live connection, else 0. */
SLUICE_EXTERN int sluice_pg_listener_ready(const sluice_pg_listener *l);

/* Unsubscribes and frees the listener; any thread. NULL is a no-op. */
SLUICE_EXTERN void sluice_pg_listener_free(sluice_pg_listener *l);

/* ---- figures -------------------------------------------------------- */

typedef struct sluice_pg_pool_stats {
  size_t size; /* caller sets sizeof(sluice_pg_pool_stats) */
  uint32_t total, idle, in_use, connecting, waiting;
  uint32_t peak_total, peak_waiting;
  int down; /* 1 while the server is known to be unreachable */
  uint64_t acquires, acquire_timeouts, acquire_exhausted, acquire_unreachable;
  uint64_t connect_attempts, connects, connect_failures;
  uint64_t evictions[SLUICE_PG_EVICT_REASONS_]; /* by sluice_pg_evict_reason */
  uint64_t queries, query_errors, query_timeouts, ambiguous;
  /* server errors by SQLSTATE class: 08 connection, 22 data, 23 integrity,
   * 25 transaction state, 40 rollback, 42 syntax/access, 53 resources,
   * 57 operator intervention, other */
  uint64_t errors_08, errors_22, errors_23, errors_25, errors_40, errors_42,
      errors_53, errors_57, errors_other;
  uint64_t wait_ns_total;   /* time callers spent waiting for a connection */
  uint64_t query_ns_total;  /* time from send to result */
  uint64_t hold_ns_recent;  /* recent mean time a connection is held */
} sluice_pg_pool_stats;

/*
 * Copies the pool's figures (no more than out->size bytes). Any thread.
 * Errors: SLUICE_EINVAL.
 */
SLUICE_EXTERN int sluice_pg_pool_stats_get(const sluice_pg_pool *pool,
                                           sluice_pg_pool_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_PG_H */

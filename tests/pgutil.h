/* Blocking helpers over the asynchronous pool, for the PostgreSQL tests:
 * each starts an operation and waits for its op (never on the loop). */
#ifndef SLUICE_TEST_PGUTIL_H
#define SLUICE_TEST_PGUTIL_H

#include <sluice/pg.h>

#include "testutil.h"

typedef struct tu_query {
  int status;
  sluice_pg_result *result; /* owned by the test; sluice_pg_result_free */
  int calls;
} tu_query;

/* A pool on `rt` for the test server with the given sizes; other options
 * default (admission and fail-fast on). */
sluice_pg_pool *tu_pool(sluice_runtime *rt, uint32_t min_size, uint32_t max_size);
sluice_pg_pool *tu_pool_opts(sluice_runtime *rt, sluice_pg_pool_options *o);

/* One-shot query with text parameters; waits; returns the status. The
 * result is in q->result (free it). timeout_ms 0: default. */
int tu_q(sluice_pg_pool *p, tu_query *q, const char *sql, int n, const char *const *params,
         int64_t timeout_ms);
/* Same on a lease. */
int tu_cq(sluice_pg_conn *c, tu_query *q, const char *sql, int n, const char *const *params,
          int64_t timeout_ms);
/* Starts a one-shot query and returns its op without waiting. */
sluice_op *tu_q_start(sluice_pg_pool *p, tu_query *q, const char *sql, int64_t timeout_ms);

/* Acquire and wait; returns the status, *conn set on success. */
int tu_acquire(sluice_pg_pool *p, int64_t timeout_ms, sluice_pg_conn **conn);

/* Closes (drain_ms) and frees the pool, waiting for the close. */
void tu_pool_close(sluice_pg_pool *p, uint32_t drain_ms);

/* The first value of the first row as text ("" if none). */
const char *tu_val(const sluice_pg_result *r);

/* Stats snapshot. */
sluice_pg_pool_stats tu_stats(sluice_pg_pool *p);

/* Waits (a hang guard, not a timing claim) until cond(arg) is true or the
 * guard of 60 s passes; fails the test on the guard. */
void tu_wait_until(int (*cond)(void *), void *arg, const char *what);

#endif

#include "pgutil.h"

#include <string.h>
#include <time.h>

sluice_pg_pool *tu_pool_opts(sluice_runtime *rt, sluice_pg_pool_options *o) {
  o->conninfo = tu_pg_conninfo();
  sluice_pg_pool *p = NULL;
  assert_ok(sluice_pg_pool_new(&p, rt, o));
  return p;
}

sluice_pg_pool *tu_pool(sluice_runtime *rt, uint32_t min_size, uint32_t max_size) {
  sluice_pg_pool_options o = SLUICE_PG_POOL_OPTIONS_INIT;
  o.min_size = min_size;
  o.max_size = max_size;
  return tu_pool_opts(rt, &o);
}

static void query_cb(void *ud, int status, sluice_pg_result *r) {
  tu_query *q = ud;
  q->status = status;
  q->result = r;
  q->calls++;
}

static int wait_op(sluice_op *op) {
  int status = 1;
  assert_ok(sluice_op_wait(op, 120000, &status));
  sluice_op_free(op);
  return status;
}

sluice_op *tu_q_start(sluice_pg_pool *p, tu_query *q, const char *sql, int64_t timeout_ms) {
  memset(q, 0, sizeof *q);
  sluice_pg_query_options qo = SLUICE_PG_QUERY_OPTIONS_INIT;
  if (timeout_ms) qo.timeout_ms = timeout_ms;
  sluice_op *op = NULL;
  assert_ok(sluice_pg_pool_query(p, sql, 0, NULL, NULL, NULL, &qo, query_cb, q, NULL, &op));
  return op;
}

int tu_q(sluice_pg_pool *p, tu_query *q, const char *sql, int n, const char *const *params,
         int64_t timeout_ms) {
  memset(q, 0, sizeof *q);
  sluice_pg_query_options qo = SLUICE_PG_QUERY_OPTIONS_INIT;
  if (timeout_ms) qo.timeout_ms = timeout_ms;
  sluice_op *op = NULL;
  assert_ok(sluice_pg_pool_query(p, sql, n, params, NULL, NULL, &qo, query_cb, q, NULL, &op));
  int st = wait_op(op);
  assert_int_equal(q->calls, 1);
  assert_int_equal(st, q->status);
  assert_non_null(q->result);
  assert_int_equal(sluice_pg_result_status(q->result), q->status);
  return q->status;
}

int tu_cq(sluice_pg_conn *c, tu_query *q, const char *sql, int n, const char *const *params,
          int64_t timeout_ms) {
  memset(q, 0, sizeof *q);
  sluice_pg_query_options qo = SLUICE_PG_QUERY_OPTIONS_INIT;
  if (timeout_ms) qo.timeout_ms = timeout_ms;
  sluice_op *op = NULL;
  assert_ok(sluice_pg_conn_query(c, sql, n, params, NULL, NULL, &qo, query_cb, q, NULL, &op));
  int st = wait_op(op);
  assert_int_equal(q->calls, 1);
  assert_int_equal(st, q->status);
  assert_non_null(q->result);
  return q->status;
}

struct acq {
  int status;
  sluice_pg_conn *conn;
};

static void acquire_cb(void *ud, int status, sluice_pg_conn *conn) {
  struct acq *a = ud;
  a->status = status;
  a->conn = conn;
}

int tu_acquire(sluice_pg_pool *p, int64_t timeout_ms, sluice_pg_conn **conn) {
  struct acq a = {1, NULL};
  sluice_op *op = NULL;
  assert_ok(sluice_pg_pool_acquire(p, timeout_ms, acquire_cb, &a, NULL, &op));
  int st = wait_op(op);
  assert_int_equal(st, a.status);
  *conn = a.conn;
  return a.status;
}

static void closed_cb(void *ud, int status) { *(int *)ud = status; }

void tu_pool_close(sluice_pg_pool *p, uint32_t drain_ms) {
  int st = 1;
  sluice_op *op = NULL;
  assert_ok(sluice_pg_pool_close(p, drain_ms, closed_cb, &st, NULL, &op));
  assert_int_equal(wait_op(op), 0);
  assert_int_equal(st, 0);
  sluice_pg_pool_free(p);
}

const char *tu_val(const sluice_pg_result *r) {
  const char *v = NULL;
  size_t len = 0;
  if (sluice_pg_result_value(r, 0, 0, &v, &len) != 0 || !v) return "";
  return v;
}

sluice_pg_pool_stats tu_stats(sluice_pg_pool *p) {
  sluice_pg_pool_stats s;
  memset(&s, 0, sizeof s);
  s.size = sizeof s;
  assert_ok(sluice_pg_pool_stats_get(p, &s));
  return s;
}

void tu_wait_until(int (*cond)(void *), void *arg, const char *what) {
  uint64_t guard = sluice_now_ns() + 60ull * 1000000000ull;
  while (!cond(arg)) {
    if (sluice_now_ns() > guard) fail_msg("hang guard: never happened: %s", what);
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
}

void tu_query_cb_for_tests(void *ud, int status, sluice_pg_result *r) { query_cb(ud, status, r); }
void tu_batch_cb_for_tests(void *ud, int status) {
  if (ud) *(int *)ud = status;
}

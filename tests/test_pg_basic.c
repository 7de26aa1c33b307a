/* The PostgreSQL pool against a real server: options, queries, results,
 * errors, transactions, leases, exhaustion, concurrency, batches, close.
 * SLUICE_TEST_PG SLUICE_TEST_CONCURRENT */
#include <stdlib.h>
#include <string.h>

#include "pgutil.h"

static sluice_runtime *rt;

static int setup(void **state) {
  (void)state;
  rt = tu_runtime();
  tu_pg_exec("DROP TABLE IF EXISTS t_basic; CREATE TABLE t_basic (id int PRIMARY KEY, v text)");
  return 0;
}
static int teardown(void **state) {
  (void)state;
  sluice_runtime_free(rt);
  return 0;
}

static void test_bad_options(void **state) {
  (void)state;
  sluice_pg_pool *p = (sluice_pg_pool *)1;
  sluice_pg_pool_options o;
  assert_err(SLUICE_EINVAL, sluice_pg_pool_options_init(NULL, SLUICE_PG_POOL_OPTIONS_VERSION));
  assert_err(SLUICE_EVERSION, sluice_pg_pool_options_init(&o, 7));
  assert_ok(sluice_pg_pool_options_init(&o, SLUICE_PG_POOL_OPTIONS_VERSION));
  assert_err(SLUICE_EINVAL, sluice_pg_pool_new(&p, rt, &o)); /* no conninfo */
  assert_null(p);
  o.conninfo = "host=127.0.0.1 port= = nonsense'";
  assert_err(SLUICE_EINVAL, sluice_pg_pool_new(&p, rt, &o));
  assert_non_null(strstr(sluice_error_message(), "conninfo"));
  o.conninfo = "postgresql://%zz";
  assert_err(SLUICE_EINVAL, sluice_pg_pool_new(&p, rt, &o));
  o.conninfo = tu_pg_conninfo();
  o.min_size = 5, o.max_size = 2;
  assert_err(SLUICE_EINVAL, sluice_pg_pool_new(&p, rt, &o));
  o.min_size = 0, o.max_size = 0;
  assert_err(SLUICE_EINVAL, sluice_pg_pool_new(&p, rt, &o));
  o.max_size = 2, o.backoff_base_ms = 10;
  assert_err(SLUICE_EINVAL, sluice_pg_pool_new(&p, rt, &o));
  o.backoff_base_ms = 200, o.backoff_max_ms = 100;
  assert_err(SLUICE_EINVAL, sluice_pg_pool_new(&p, rt, &o));
  assert_err(SLUICE_EINVAL, sluice_pg_pool_new(&p, NULL, &o));
  assert_err(SLUICE_EINVAL, sluice_pg_pool_new(NULL, rt, &o));
  o.version = 0;
  assert_err(SLUICE_EVERSION, sluice_pg_pool_new(&p, rt, &o));
  sluice_pg_pool_free(NULL);
}

static void test_bad_query_input(void **state) {
  (void)state;
  sluice_pg_pool *p = tu_pool(rt, 1, 2);
  tu_query q;
  sluice_pg_query_options qo = SLUICE_PG_QUERY_OPTIONS_INIT;
  assert_err(SLUICE_EINVAL, sluice_pg_pool_query(p, NULL, 0, NULL, NULL, NULL, NULL, (sluice_pg_result_cb)1, &q, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_pg_pool_query(p, "select 1", -1, NULL, NULL, NULL, NULL, (sluice_pg_result_cb)1, &q, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_pg_pool_query(p, "select $1", 1, NULL, NULL, NULL, NULL, (sluice_pg_result_cb)1, &q, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_pg_pool_query(p, "select 1", 0, NULL, NULL, NULL, NULL, NULL, &q, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_pg_pool_query(NULL, "select 1", 0, NULL, NULL, NULL, NULL, (sluice_pg_result_cb)1, &q, NULL, NULL));
  qo.timeout_ms = 0;
  assert_err(SLUICE_EINVAL, sluice_pg_pool_query(p, "select 1", 0, NULL, NULL, NULL, &qo, (sluice_pg_result_cb)1, &q, NULL, NULL));
  qo.timeout_ms = 1000, qo.flags = 1u << 20;
  assert_err(SLUICE_EINVAL, sluice_pg_pool_query(p, "select 1", 0, NULL, NULL, NULL, &qo, (sluice_pg_result_cb)1, &q, NULL, NULL));
  const char *bin[] = {"x"};
  int fmt[] = {1};
  assert_err(SLUICE_EINVAL, sluice_pg_pool_query(p, "select $1", 1, bin, NULL, fmt, NULL, (sluice_pg_result_cb)1, &q, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_pg_pool_acquire(p, 0, (sluice_pg_acquire_cb)1, NULL, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_pg_conn_release(NULL));

  /* Wrong parameter count is the server's error, with its SQLSTATE. */
  const char *one[] = {"1"};
  assert_err(SLUICE_EPG, tu_q(p, &q, "select $1::int + $2::int", 1, one, 0));
  assert_string_equal(sluice_pg_result_sqlstate(q.result), "08P01");
  sluice_pg_result_free(q.result);

  /* Results read out of range. */
  assert_ok(tu_q(p, &q, "select 1", 0, NULL, 0));
  const char *v;
  size_t len;
  assert_err(SLUICE_ERANGE, sluice_pg_result_value(q.result, 1, 0, &v, &len));
  assert_err(SLUICE_ERANGE, sluice_pg_result_value(q.result, 0, 1, &v, &len));
  assert_err(SLUICE_ERANGE, sluice_pg_result_value(q.result, -1, 0, &v, &len));
  assert_err(SLUICE_EINVAL, sluice_pg_result_value(NULL, 0, 0, &v, &len));
  assert_null(sluice_pg_result_column_name(q.result, 5));
  assert_int_equal(sluice_pg_result_column_type(q.result, -1), 0);
  sluice_pg_result_free(q.result);
  sluice_pg_result_free(NULL);
  tu_pool_close(p, 1000);
}

static void test_values_and_types(void **state) {
  (void)state;
  sluice_pg_pool *p = tu_pool(rt, 1, 2);
  tu_query q;
  const char *params[] = {"42", NULL, "héllo, 世界 ✓"};
  assert_ok(tu_q(p, &q, "select $1::int as n, $2::text as nothing, $3::text as s, 1.5::float8 as f",
                 3, params, 0));
  sluice_pg_result *r = q.result;
  assert_int_equal(sluice_pg_result_rows(r), 1);
  assert_int_equal(sluice_pg_result_columns(r), 4);
  assert_string_equal(sluice_pg_result_column_name(r, 0), "n");
  assert_string_equal(sluice_pg_result_column_name(r, 2), "s");
  assert_int_equal(sluice_pg_result_column_type(r, 0), 23);  /* int4 */
  assert_int_equal(sluice_pg_result_column_type(r, 2), 25);  /* text */
  assert_int_equal(sluice_pg_result_column_type(r, 3), 701); /* float8 */
  const char *v;
  size_t len;
  assert_int_equal(sluice_pg_result_value(r, 0, 0, &v, &len), 0);
  assert_string_equal(v, "42");
  assert_int_equal(sluice_pg_result_value(r, 0, 1, &v, &len), 1); /* NULL */
  assert_null(v);
  assert_int_equal(sluice_pg_result_value(r, 0, 2, &v, &len), 0);
  assert_string_equal(v, "héllo, 世界 ✓");
  assert_int_equal(len, strlen("héllo, 世界 ✓"));
  assert_int_equal(sluice_pg_result_sent(r), 1);
  assert_string_equal(sluice_pg_result_sqlstate(r), "");
  sluice_pg_result_free(r);

  /* A large value both ways (1 MiB). */
  size_t big = 1 << 20;
  char *blob = malloc(big + 1);
  for (size_t i = 0; i < big; i++) blob[i] = (char)('a' + i % 26);
  blob[big] = 0;
  const char *bp[] = {blob};
  assert_ok(tu_q(p, &q, "select $1::text, length($1::text)", 1, bp, 0));
  assert_int_equal(sluice_pg_result_value(q.result, 0, 0, &v, &len), 0);
  assert_int_equal(len, big);
  assert_memory_equal(v, blob, big);
  sluice_pg_result_free(q.result);
  free(blob);

  /* Binary parameters and results. */
  unsigned char be[4] = {0, 0, 1, 2}; /* int4 258, network order */
  const char *bv[] = {(const char *)be};
  int lens[] = {4}, fmts[] = {1};
  sluice_pg_query_options qo = SLUICE_PG_QUERY_OPTIONS_INIT;
  qo.flags = SLUICE_PG_BINARY_RESULT;
  memset(&q, 0, sizeof q);
  sluice_op *op = NULL;
  extern void tu_query_cb_for_tests(void *, int, sluice_pg_result *);
  assert_ok(sluice_pg_pool_query(p, "select $1::int4 + 1", 1, bv, lens, fmts, &qo,
                                 tu_query_cb_for_tests, &q, NULL, &op));
  int st = 1;
  assert_ok(sluice_op_wait(op, -1, &st));
  sluice_op_free(op);
  assert_int_equal(st, 0);
  assert_int_equal(sluice_pg_result_value(q.result, 0, 0, &v, &len), 0);
  assert_int_equal(len, 4);
  assert_int_equal((unsigned char)v[3], 3);
  assert_int_equal((unsigned char)v[2], 1);
  sluice_pg_result_free(q.result);

  /* Affected rows. */
  assert_ok(tu_q(p, &q, "insert into t_basic values (1, 'a'), (2, 'b') on conflict do nothing", 0, NULL, 0));
  assert_int_equal(sluice_pg_result_affected(q.result), 2);
  sluice_pg_result_free(q.result);
  assert_ok(tu_q(p, &q, "select * from t_basic order by id", 0, NULL, 0));
  assert_int_equal(sluice_pg_result_rows(q.result), 2);
  assert_int_equal(sluice_pg_result_affected(q.result), 2);
  sluice_pg_result_free(q.result);
  tu_pool_close(p, 1000);
}

static void test_server_errors(void **state) {
  (void)state;
  sluice_pg_pool *p = tu_pool(rt, 1, 2);
  tu_query q;
  assert_err(SLUICE_EPG, tu_q(p, &q, "selec 1", 0, NULL, 0));
  assert_string_equal(sluice_pg_result_sqlstate(q.result), "42601");
  assert_non_null(strstr(sluice_pg_result_message(q.result), "syntax error"));
  assert_int_equal(sluice_pg_result_sent(q.result), 1);
  sluice_pg_result_free(q.result);
  /* The same bad statement again: the failed PREPARE was not cached. */
  assert_err(SLUICE_EPG, tu_q(p, &q, "selec 1", 0, NULL, 0));
  assert_int_equal(sluice_pg_result_retryable(q.result, 1), 0); /* a syntax error stays one */
  sluice_pg_result_free(q.result);

  tu_pg_exec("insert into t_basic values (10, 'x') on conflict do nothing");
  assert_err(SLUICE_EPG, tu_q(p, &q, "insert into t_basic values (10, 'y')", 0, NULL, 0));
  assert_string_equal(sluice_pg_result_sqlstate(q.result), "23505");
  assert_non_null(strstr(sluice_pg_result_detail(q.result), "(id)=(10)"));
  sluice_pg_result_free(q.result);
  assert_err(SLUICE_EPG, tu_q(p, &q, "select 1/0", 0, NULL, 0));
  assert_string_equal(sluice_pg_result_sqlstate(q.result), "22012");
  assert_int_equal(sluice_pg_result_retryable(q.result, 1), 0);
  sluice_pg_result_free(q.result);
  /* A serialization failure is the server's "run it again". */
  assert_err(SLUICE_EPG, tu_q(p, &q, "do $$ begin raise exception using errcode = '40001'; end $$", 0, NULL, 0));
  assert_int_equal(sluice_pg_result_retryable(q.result, 0), 1);
  sluice_pg_result_free(q.result);
  assert_int_equal(sluice_pg_result_retryable(NULL, 1), 0);
  /* The connection is still good afterwards. */
  assert_ok(tu_q(p, &q, "select 7", 0, NULL, 0));
  assert_string_equal(tu_val(q.result), "7");
  sluice_pg_result_free(q.result);
  sluice_pg_pool_stats s = tu_stats(p);
  assert_true(s.errors_42 >= 2);
  assert_true(s.errors_23 >= 1);
  assert_true(s.errors_22 >= 1);
  tu_pool_close(p, 1000);
}

static void test_transactions_and_dirty_return(void **state) {
  (void)state;
  sluice_pg_pool *p = tu_pool(rt, 1, 1);
  sluice_pg_conn *c = NULL;
  tu_query q;
  assert_ok(tu_acquire(p, 5000, &c));
  assert_ok(tu_cq(c, &q, "begin", 0, NULL, 0));
  sluice_pg_result_free(q.result);
  assert_ok(tu_cq(c, &q, "insert into t_basic values (100, 'committed')", 0, NULL, 0));
  sluice_pg_result_free(q.result);
  assert_ok(tu_cq(c, &q, "commit", 0, NULL, 0));
  sluice_pg_result_free(q.result);
  assert_ok(tu_cq(c, &q, "begin", 0, NULL, 0));
  sluice_pg_result_free(q.result);
  assert_ok(tu_cq(c, &q, "insert into t_basic values (101, 'rolled back')", 0, NULL, 0));
  sluice_pg_result_free(q.result);
  assert_ok(tu_cq(c, &q, "rollback", 0, NULL, 0));
  sluice_pg_result_free(q.result);
  /* Returned in the middle of a transaction: the pool rolls it back. */
  assert_ok(tu_cq(c, &q, "begin", 0, NULL, 0));
  sluice_pg_result_free(q.result);
  assert_ok(tu_cq(c, &q, "insert into t_basic values (102, 'dirty')", 0, NULL, 0));
  sluice_pg_result_free(q.result);
  assert_ok(sluice_pg_conn_release(c));
  /* The only connection: the next borrower gets it clean. */
  assert_ok(tu_q(p, &q, "select count(*) from t_basic where id in (100, 101, 102)", 0, NULL, 0));
  assert_string_equal(tu_val(q.result), "1");
  sluice_pg_result_free(q.result);
  /* Returned in an aborted transaction: same. */
  assert_ok(tu_acquire(p, 5000, &c));
  assert_ok(tu_cq(c, &q, "begin", 0, NULL, 0));
  sluice_pg_result_free(q.result);
  assert_err(SLUICE_EPG, tu_cq(c, &q, "select 1/0", 0, NULL, 0));
  sluice_pg_result_free(q.result);
  assert_ok(sluice_pg_conn_release(c));
  assert_ok(tu_q(p, &q, "select 1", 0, NULL, 0));
  sluice_pg_result_free(q.result);
  sluice_pg_pool_stats s = tu_stats(p);
  assert_int_equal(s.evictions[SLUICE_PG_EVICT_DIRTY], 0); /* rolled back, not thrown away */
  assert_int_equal(s.total, 1);
  tu_pool_close(p, 1000);
}

static void test_exhaustion_and_deadlines(void **state) {
  (void)state;
  sluice_pg_pool_options o = SLUICE_PG_POOL_OPTIONS_INIT;
  o.min_size = 1, o.max_size = 1, o.admission_check = 0;
  sluice_pg_pool *p = tu_pool_opts(rt, &o);
  sluice_pg_conn *held = NULL, *c = NULL;
  assert_ok(tu_acquire(p, 5000, &held));
  /* Nothing free: waits, then times out with its own code. */
  assert_err(SLUICE_ETIMEDOUT, tu_acquire(p, 50, &c));
  assert_null(c);
  tu_query q;
  assert_err(SLUICE_ETIMEDOUT, tu_q(p, &q, "insert into t_basic values (200, 'never')", 0, NULL, 50));
  assert_int_equal(sluice_pg_result_sent(q.result), 0); /* safe to retry */
  assert_int_equal(sluice_pg_result_retryable(q.result, 0), 1);
  sluice_pg_result_free(q.result);
  assert_ok(sluice_pg_conn_release(held));
  sluice_pg_pool_stats s = tu_stats(p);
  assert_int_equal(s.acquire_timeouts, 2);
  assert_int_equal(s.peak_total, 1);
  assert_int_equal(tu_pg_long("select count(*) from t_basic where id = 200"), 0);
  tu_pool_close(p, 1000);
}

static void hold_cb(void *ud, int status) { (void)ud, (void)status; }

static void test_admission_check_refuses_hopeless_callers(void **state) {
  (void)state;
  sluice_pg_pool *p = tu_pool(rt, 1, 1);
  sluice_pg_conn *c = NULL;
  /* Teach the pool that a connection is held ~300 ms. */
  assert_ok(tu_acquire(p, 5000, &c));
  sluice_op *t = NULL;
  assert_ok(sluice_runtime_timer(rt, 300, hold_cb, NULL, NULL, &t));
  assert_ok(sluice_op_wait(t, -1, NULL));
  sluice_op_free(t);
  assert_ok(sluice_pg_conn_release(c));
  assert_ok(tu_acquire(p, 5000, &c));
  /* 100 ms left against a foreseeable 300 ms: refused at once. */
  sluice_pg_conn *c2 = NULL;
  assert_err(SLUICE_EEXHAUSTED, tu_acquire(p, 100, &c2));
  tu_query q;
  assert_err(SLUICE_EEXHAUSTED, tu_q(p, &q, "select 1", 0, NULL, 100));
  assert_non_null(strstr(sluice_pg_result_message(q.result), "exhausted"));
  assert_int_equal(sluice_pg_result_sent(q.result), 0);
  sluice_pg_result_free(q.result);
  sluice_pg_pool_stats s = tu_stats(p);
  assert_int_equal(s.acquire_exhausted, 2);
  assert_int_equal(s.acquire_timeouts, 0);
  assert_true(s.hold_ns_recent >= 300ull * 1000000);
  assert_ok(sluice_pg_conn_release(c));
  tu_pool_close(p, 1000);
}

static void test_concurrency_far_above_max(void **state) {
  (void)state;
  enum { N = 300 };
  sluice_monitor *mon = NULL;
  assert_ok(sluice_monitor_new(&mon, rt, NULL));
  sluice_pg_pool_options o = SLUICE_PG_POOL_OPTIONS_INIT;
  o.min_size = 1, o.max_size = 4, o.monitor = mon;
  sluice_pg_pool *p = tu_pool_opts(rt, &o);
  tu_query *q = calloc(N, sizeof *q);
  sluice_op **ops = calloc(N, sizeof *ops);
  for (int i = 0; i < N; i++) ops[i] = tu_q_start(p, &q[i], "select pg_sleep(0.001), 1", 60000);
  int ok = 0;
  for (int i = 0; i < N; i++) {
    int st = 1;
    assert_ok(sluice_op_wait(ops[i], -1, &st));
    sluice_op_free(ops[i]);
    ok += st == 0;
    sluice_pg_result_free(q[i].result);
  }
  assert_int_equal(ok, N);
  sluice_pg_pool_stats s = tu_stats(p);
  assert_true(s.peak_total <= 4);
  assert_true(s.queries >= N);
  free(q);
  free(ops);
  tu_pool_close(p, 1000);
  /* The monitor saw exactly what the pool did, with no code from us. */
  sluice_monitor_op_stats st = {sizeof st};
  uint64_t seen[3] = {0, 0, 0};
  const char *names[3] = {"pg.acquire", "pg.query", "pg.connect"};
  for (uint32_t i = 0; i < sluice_monitor_series_count(mon); i++) {
    assert_ok(sluice_monitor_op_stats_get(mon, i, SLUICE_WINDOW_ALL, &st));
    for (int k = 0; k < 3; k++)
      if (!strcmp(st.name, names[k])) seen[k] = st.count;
  }
  assert_int_equal(seen[0], s.acquires);
  assert_int_equal(seen[1], N);
  assert_int_equal(seen[2], s.connects);
  sluice_monitor_free(mon);
}

extern void tu_batch_cb_for_tests(void *, int);

static void test_pipelined_batch(void **state) {
  (void)state;
  sluice_pg_pool *p = tu_pool(rt, 1, 2);
  sluice_pg_batch *b = NULL;
  assert_ok(sluice_pg_batch_new(&b));
  assert_err(SLUICE_EINVAL, sluice_pg_pool_batch(p, b, NULL, tu_batch_cb_for_tests, NULL, NULL, NULL));
  const char *a[] = {"300", "x"}, *bb[] = {"301", "y"};
  assert_ok(sluice_pg_batch_add(b, "insert into t_basic values ($1::int, $2)", 2, a, NULL, NULL));
  assert_ok(sluice_pg_batch_add(b, "insert into t_basic values ($1::int, $2)", 2, bb, NULL, NULL));
  assert_ok(sluice_pg_batch_add(b, "select count(*) from t_basic where id >= 300", 0, NULL, NULL, NULL));
  assert_int_equal(sluice_pg_batch_size(b), 3);
  int st = 1;
  sluice_op *op = NULL;
  assert_ok(sluice_pg_pool_batch(p, b, NULL, tu_batch_cb_for_tests, &st, NULL, &op));
  assert_ok(sluice_op_wait(op, -1, NULL));
  sluice_op_free(op);
  assert_int_equal(st, 0);
  assert_string_equal(tu_val(sluice_pg_batch_result(b, 2)), "2");
  assert_int_equal(sluice_pg_result_affected(sluice_pg_batch_result(b, 0)), 1);
  assert_null(sluice_pg_batch_result(b, 3));
  sluice_pg_batch_free(b);

  /* One failure: the batch is one implicit transaction, nothing commits. */
  assert_ok(sluice_pg_batch_new(&b));
  const char *c1[] = {"310", "ok"}, *c2[] = {"300", "duplicate"};
  assert_ok(sluice_pg_batch_add(b, "insert into t_basic values ($1::int, $2)", 2, c1, NULL, NULL));
  assert_ok(sluice_pg_batch_add(b, "insert into t_basic values ($1::int, $2)", 2, c2, NULL, NULL));
  assert_ok(sluice_pg_batch_add(b, "select 1", 0, NULL, NULL, NULL));
  st = 1;
  assert_ok(sluice_pg_pool_batch(p, b, NULL, tu_batch_cb_for_tests, &st, NULL, &op));
  assert_ok(sluice_op_wait(op, -1, NULL));
  sluice_op_free(op);
  assert_int_equal(st, SLUICE_EPG);
  assert_int_equal(sluice_pg_result_status(sluice_pg_batch_result(b, 0)), 0);
  assert_string_equal(sluice_pg_result_sqlstate(sluice_pg_batch_result(b, 1)), "23505");
  assert_int_equal(sluice_pg_result_status(sluice_pg_batch_result(b, 2)), SLUICE_ECANCELED);
  assert_int_equal(tu_pg_long("select count(*) from t_basic where id = 310"), 0);

  /* The same batch run again replaces its results (once freed twice: ASan). */
  st = 1;
  assert_ok(sluice_pg_pool_batch(p, b, NULL, tu_batch_cb_for_tests, &st, NULL, &op));
  assert_ok(sluice_op_wait(op, -1, NULL));
  sluice_op_free(op);
  assert_int_equal(st, SLUICE_EPG);
  assert_string_equal(sluice_pg_result_sqlstate(sluice_pg_batch_result(b, 1)), "23505");
  sluice_pg_batch_free(b);
  tu_pool_close(p, 1000);
}

static void test_graceful_close_drains(void **state) {
  (void)state;
  enum { N = 4 };
  sluice_pg_pool *p = tu_pool(rt, 2, 4);
  tu_query q[N];
  sluice_op *ops[N];
  for (int i = 0; i < N; i++) ops[i] = tu_q_start(p, &q[i], "select pg_sleep(0.2), 'done'", 30000);
  int closed = 1;
  sluice_op *cop = NULL;
  assert_ok(sluice_pg_pool_close(p, 10000, tu_batch_cb_for_tests, &closed, NULL, &cop));
  /* New work is refused at once. */
  tu_query late;
  sluice_op *lop = tu_q_start(p, &late, "select 1", 1000);
  int st = 0;
  assert_ok(sluice_op_wait(lop, -1, &st));
  sluice_op_free(lop);
  assert_int_equal(st, SLUICE_ECLOSED);
  sluice_pg_result_free(late.result);
  for (int i = 0; i < N; i++) {
    assert_ok(sluice_op_wait(ops[i], -1, &st));
    sluice_op_free(ops[i]);
    assert_int_equal(st, 0); /* in flight: allowed to finish */
    sluice_pg_result_free(q[i].result);
  }
  assert_ok(sluice_op_wait(cop, -1, &st));
  sluice_op_free(cop);
  assert_int_equal(closed, 0);
  sluice_pg_pool_stats s = tu_stats(p);
  assert_int_equal(s.total, 0);
  sluice_pg_pool_free(p);

  /* No drain time: a long query is cancelled and reported ambiguous. */
  p = tu_pool(rt, 1, 1);
  tu_query longq;
  sluice_op *op = tu_q_start(p, &longq, "select pg_sleep(30)", 60000);
  sluice_op *t = NULL;
  assert_ok(sluice_runtime_timer(rt, 200, hold_cb, NULL, NULL, &t)); /* let it start */
  assert_ok(sluice_op_wait(t, -1, NULL));
  sluice_op_free(t);
  tu_pool_close(p, 0);
  assert_ok(sluice_op_wait(op, -1, &st));
  sluice_op_free(op);
  assert_true(st == SLUICE_EAMBIGUOUS || st == SLUICE_ECLOSED);
  assert_int_equal(longq.calls, 1);
  sluice_pg_result_free(longq.result);
}

/* A statement under a retry policy: the attempt runs a one-shot query and
 * reports with the pool's classification. */
struct retried {
  sluice_pg_pool *pool;
  const char *sql;
  int status, attempts;
};
static void pg_attempt_done(void *ud, int status, sluice_pg_result *r) {
  sluice_retry_attempt *attempt = ud;
  sluice_retry_attempt_done(attempt, sluice_pg_retry_outcome(r, 0), status, 0);
  sluice_pg_result_free(r);
}
static void pg_attempt(void *ud, sluice_retry_attempt *attempt) {
  struct retried *t = ud;
  if (sluice_pg_pool_query(t->pool, t->sql, 0, NULL, NULL, NULL, NULL, pg_attempt_done, attempt, NULL, NULL) != 0)
    sluice_retry_attempt_done(attempt, SLUICE_RETRY_PERMANENT, SLUICE_EINVAL, 0);
}
static void pg_run_done(void *ud, int status, int last_code, uint32_t attempts) {
  struct retried *t = ud;
  (void)last_code;
  t->status = status;
  t->attempts = (int)attempts;
}
static int run_retried(sluice_retry *policy, struct retried *t) {
  sluice_op *op = NULL;
  assert_ok(sluice_retry_run(policy, 0, pg_attempt, pg_run_done, t, NULL, &op));
  assert_ok(sluice_op_wait(op, -1, NULL));
  sluice_op_free(op);
  return t->status;
}

static void test_retry_policy_uses_the_pool_classification(void **state) {
  (void)state;
  sluice_pg_pool *p = tu_pool(rt, 1, 2);
  sluice_retry_options ro = SLUICE_RETRY_OPTIONS_INIT;
  ro.max_attempts = 3, ro.base_delay_ms = 1, ro.max_delay_ms = 2, ro.budget_ratio = 0;
  sluice_retry *policy = NULL;
  assert_ok(sluice_retry_new(&policy, rt, &ro));
  struct retried ok = {p, "select 1", 1, 0};
  assert_ok(run_retried(policy, &ok));
  assert_int_equal(ok.attempts, 1);
  /* A constraint error is the request's fault: one attempt, no retry. */
  struct retried perm = {p, "select 1/0", 0, 0};
  assert_err(SLUICE_EPG, run_retried(policy, &perm));
  assert_int_equal(perm.attempts, 1);
  /* A serialization failure is the server's "run it again". */
  struct retried ser = {p, "do $$ begin raise exception using errcode = '40001'; end $$", 0, 0};
  assert_err(SLUICE_EPG, run_retried(policy, &ser));
  assert_int_equal(ser.attempts, 3);
  assert_int_equal(sluice_pg_retry_outcome(NULL, 1), SLUICE_RETRY_PERMANENT);
  sluice_retry_free(policy);
  tu_pool_close(p, 1000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_retry_policy_uses_the_pool_classification),
      cmocka_unit_test(test_bad_options),
      cmocka_unit_test(test_bad_query_input),
      cmocka_unit_test(test_values_and_types),
      cmocka_unit_test(test_server_errors),
      cmocka_unit_test(test_transactions_and_dirty_return),
      cmocka_unit_test(test_exhaustion_and_deadlines),
      cmocka_unit_test(test_admission_check_refuses_hopeless_callers),
      cmocka_unit_test(test_concurrency_far_above_max),
      cmocka_unit_test(test_pipelined_batch),
      cmocka_unit_test(test_graceful_close_drains),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

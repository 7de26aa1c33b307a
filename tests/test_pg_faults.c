/* The PostgreSQL pool when things go wrong, done to the real server:
 * backends terminated (idle and busy), restarts, a read-only server, query
 * timeouts, a stopped server, a proxy that freezes or cuts traffic, and
 * LISTEN across a reconnect. SLUICE_TEST_PG */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgutil.h"
#include "tcpproxy.h"

static sluice_runtime *rt;

static int setup(void **state) {
  (void)state;
  rt = tu_runtime();
  tu_pg_exec("DROP TABLE IF EXISTS t_faults; CREATE TABLE t_faults (id int PRIMARY KEY)");
  return 0;
}
static int teardown(void **state) {
  (void)state;
  sluice_runtime_free(rt);
  return 0;
}

/* A pool whose connections carry an application_name we can find. */
static sluice_pg_pool *named_pool(const char *app, uint32_t min, uint32_t max,
                                  sluice_pg_pool_options *o) {
  static char conninfo[512];
  snprintf(conninfo, sizeof conninfo, "%s application_name=%s", tu_pg_conninfo(), app);
  o->conninfo = conninfo;
  o->min_size = min;
  o->max_size = max;
  sluice_pg_pool *p = NULL;
  assert_ok(sluice_pg_pool_new(&p, rt, o));
  return p;
}

static void terminate(const char *app, const char *extra) {
  char sql[512];
  snprintf(sql, sizeof sql,
           "select count(pg_terminate_backend(pid)) from pg_stat_activity "
           "where application_name = '%s' %s",
           app, extra ? extra : "");
  tu_pg_exec(sql);
}

struct pool_min {
  sluice_pg_pool *p;
  uint32_t total;
};
static int reached_total(void *arg) {
  struct pool_min *m = arg;
  sluice_pg_pool_stats s = tu_stats(m->p);
  return s.total == m->total && s.connecting == 0;
}
static void wait_total(sluice_pg_pool *p, uint32_t total) {
  struct pool_min m = {p, total};
  tu_wait_until(reached_total, &m, "the pool reaches its size");
}

static int run_queries(sluice_pg_pool *p, int n) {
  int errors = 0;
  for (int i = 0; i < n; i++) {
    tu_query q;
    if (tu_q(p, &q, "select 1", 0, NULL, 10000) != 0) errors++;
    sluice_pg_result_free(q.result);
  }
  return errors;
}

static int broken_three(void *arg) {
  return tu_stats(arg).evictions[SLUICE_PG_EVICT_BROKEN] >= 3;
}

static void test_idle_backends_terminated_callers_see_nothing(void **state) {
  (void)state;
  sluice_pg_pool_options o = SLUICE_PG_POOL_OPTIONS_INIT;
  sluice_pg_pool *p = named_pool("sluice_idle_kill", 3, 3, &o);
  wait_total(p, 3);
  assert_int_equal(run_queries(p, 3), 0);
  terminate("sluice_idle_kill", NULL);
  /* The loop sees each socket close and replaces it before anyone asks. */
  tu_wait_until(broken_three, p, "three evictions of closed connections");
  wait_total(p, 3);
  sluice_pg_pool_stats s;
  assert_int_equal(run_queries(p, 20), 0);
  s = tu_stats(p);
  assert_int_equal(s.query_errors, 0);
  assert_true(s.connects >= 6);
  tu_pool_close(p, 1000);
}

static void hold_cb(void *ud, int status) { (void)ud, (void)status; }
static void pause_ms(uint64_t ms) {
  sluice_op *t = NULL;
  assert_ok(sluice_runtime_timer(rt, ms, hold_cb, NULL, NULL, &t));
  assert_ok(sluice_op_wait(t, -1, NULL));
  sluice_op_free(t);
}

static int query_running(void *arg) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "select count(*) from pg_stat_activity where query like '%%%s%%' and state = 'active' "
           "and pid <> pg_backend_pid()",
           (const char *)arg);
  return tu_pg_long(sql) > 0;
}
static int query_gone(void *arg) { return !query_running(arg); }

static void test_busy_backend_terminated_one_error_then_replaced(void **state) {
  (void)state;
  sluice_pg_pool_options o = SLUICE_PG_POOL_OPTIONS_INIT;
  sluice_pg_pool *p = named_pool("sluice_busy_kill", 2, 2, &o);
  wait_total(p, 2);
  tu_query q;
  sluice_op *op = tu_q_start(p, &q, "select pg_sleep(20) /* busy_kill_marker */", 60000);
  tu_wait_until(query_running, "busy_kill_marker", "the long query runs");
  terminate("sluice_busy_kill", "and query like '%busy_kill_marker%'");
  int st = 0;
  assert_ok(sluice_op_wait(op, -1, &st));
  sluice_op_free(op);
  assert_true(st == SLUICE_EPG || st == SLUICE_EAMBIGUOUS);
  if (st == SLUICE_EPG) assert_string_equal(sluice_pg_result_sqlstate(q.result), "57P01");
  sluice_pg_result_free(q.result);
  wait_total(p, 2);
  assert_int_equal(run_queries(p, 10), 0);
  tu_pool_close(p, 1000);
}

static void test_query_timeout_is_cancelled_on_server(void **state) {
  (void)state;
  sluice_pg_pool *p = tu_pool(rt, 1, 1);
  tu_query q;
  assert_err(SLUICE_EAMBIGUOUS, tu_q(p, &q, "select pg_sleep(30) /* timeout_marker */", 0, NULL, 300));
  assert_int_equal(sluice_pg_result_sent(q.result), 1);
  assert_non_null(strstr(sluice_pg_result_message(q.result), "may have committed"));
  sluice_pg_result_free(q.result);
  tu_wait_until(query_gone, "timeout_marker", "the cancelled query leaves pg_stat_activity");
  /* The connection was recovered (cancelled and drained), not thrown away. */
  assert_int_equal(run_queries(p, 3), 0);
  sluice_pg_pool_stats s = tu_stats(p);
  assert_int_equal(s.evictions[SLUICE_PG_EVICT_BROKEN], 0);
  assert_int_equal(s.connects, 1);
  assert_int_equal(s.query_timeouts, 1);
  assert_int_equal(s.ambiguous, 1);

  /* The same on a lease: the caller keeps its connection and uses it. */
  sluice_pg_conn *c = NULL;
  assert_ok(tu_acquire(p, 5000, &c));
  assert_err(SLUICE_EAMBIGUOUS, tu_cq(c, &q, "select pg_sleep(30) /* lease_timeout */", 0, NULL, 300));
  sluice_pg_result_free(q.result);
  assert_ok(tu_cq(c, &q, "select 5", 0, NULL, 10000));
  assert_string_equal(tu_val(q.result), "5");
  sluice_pg_result_free(q.result);
  assert_ok(sluice_pg_conn_release(c));
  tu_wait_until(query_gone, "lease_timeout", "the cancelled query leaves pg_stat_activity");
  tu_pool_close(p, 1000);
}

static void test_read_only_server_evicts(void **state) {
  (void)state;
  sluice_pg_pool *p = tu_pool(rt, 1, 2);
  tu_pg_exec("alter system set default_transaction_read_only = on");
  tu_pg_exec("select pg_reload_conf()");
  pause_ms(200); /* the backends pick the setting up at their next statement */
  tu_query q;
  int st = tu_q(p, &q, "insert into t_faults values (1)", 0, NULL, 5000);
  tu_pg_exec("alter system reset default_transaction_read_only");
  tu_pg_exec("select pg_reload_conf()");
  assert_int_equal(st, SLUICE_EPG);
  assert_string_equal(sluice_pg_result_sqlstate(q.result), "25006");
  sluice_pg_result_free(q.result);
  sluice_pg_pool_stats s = tu_stats(p);
  assert_int_equal(s.evictions[SLUICE_PG_EVICT_READ_ONLY], 1);
  tu_pool_close(p, 1000);
}

static void test_restart_fast_and_immediate(void **state) {
  (void)state;
  sluice_pg_pool_options o = SLUICE_PG_POOL_OPTIONS_INIT;
  sluice_pg_pool *p = named_pool("sluice_restart", 2, 4, &o);
  wait_total(p, 2);
  tu_pg_ctl("restart -m fast");
  wait_total(p, 2);
  assert_int_equal(run_queries(p, 10), 0);

  /* Immediate restart under load: some calls fail, none crash or hang,
   * and the pool is whole again afterwards. */
  enum { N = 40 };
  tu_query q[N];
  sluice_op *ops[N];
  for (int i = 0; i < N; i++) ops[i] = tu_q_start(p, &q[i], "select pg_sleep(0.05)", 20000);
  tu_pg_ctl("restart -m immediate");
  int ok = 0, failed = 0;
  for (int i = 0; i < N; i++) {
    int st = 1;
    assert_ok(sluice_op_wait(ops[i], -1, &st));
    sluice_op_free(ops[i]);
    st == 0 ? ok++ : failed++;
    assert_int_equal(q[i].calls, 1);
    sluice_pg_result_free(q[i].result);
  }
  assert_int_equal(ok + failed, N);
  wait_total(p, 2);
  assert_int_equal(run_queries(p, 10), 0);
  tu_pool_close(p, 1000);
}

static void test_outage_fails_fast_and_probes_slowly(void **state) {
  (void)state;
  sluice_pg_pool_options o = SLUICE_PG_POOL_OPTIONS_INIT;
  o.backoff_base_ms = 100, o.backoff_max_ms = 400;
  sluice_pg_pool *p = named_pool("sluice_outage", 1, 4, &o);
  wait_total(p, 1);
  tu_pg_ctl("stop -m fast");
  /* The idle connection's loss is seen, the refill fails, the pool is down. */
  sluice_pg_pool_stats s;
  uint64_t t0 = sluice_now_ns();
  for (;;) {
    s = tu_stats(p);
    if (s.down) break;
    assert_true(sluice_now_ns() - t0 < 60ull * 1000000000ull);
    pause_ms(5);
  }
  uint64_t attempts0 = s.connect_attempts;
  uint64_t start = sluice_now_ns();
  int unreachable = 0;
  for (int i = 0; i < 200; i++) {
    tu_query q;
    int st = tu_q(p, &q, "select 1", 0, NULL, 5000);
    if (st == SLUICE_EUNREACHABLE) {
      unreachable++;
      assert_int_equal(sluice_pg_result_sent(q.result), 0);
      assert_non_null(strstr(sluice_pg_result_message(q.result), "unreachable"));
    }
    sluice_pg_result_free(q.result);
    pause_ms(5);
  }
  uint64_t elapsed_ms = (sluice_now_ns() - start) / 1000000;
  s = tu_stats(p);
  assert_int_equal(unreachable, 200); /* every caller told at once */
  /* One probe at a time, never closer than backoff_base_ms: at most 10 a
   * second whatever the number of callers (+1 for the one in flight). */
  assert_true(s.connect_attempts - attempts0 <= elapsed_ms / 100 + 1);
  tu_pg_ctl("start");
  wait_total(p, 1);
  assert_int_equal(tu_stats(p).down, 0);
  assert_int_equal(run_queries(p, 5), 0);
  tu_pool_close(p, 1000);
}

struct notes {
  int count;
  char last[64];
};
static void on_note(void *ud, const char *channel, const char *payload, int pid) {
  struct notes *n = ud;
  (void)channel, (void)pid;
  n->count++;
  snprintf(n->last, sizeof n->last, "%s", payload);
}
struct listen_wait {
  sluice_pg_listener *l;
  int want;
};
static int listener_is(void *arg) {
  struct listen_wait *w = arg;
  return sluice_pg_listener_ready(w->l) == w->want;
}
struct note_wait {
  struct notes *n;
  int count;
};
static int notes_reached(void *arg) {
  struct note_wait *w = arg;
  return __atomic_load_n(&w->n->count, __ATOMIC_ACQUIRE) >= w->count;
}

static void test_notify_across_reconnect(void **state) {
  (void)state;
  sluice_pg_pool_options o = SLUICE_PG_POOL_OPTIONS_INIT;
  sluice_pg_pool *p = named_pool("sluice_listen", 1, 2, &o);
  struct notes n = {0, ""};
  sluice_pg_listener *l = NULL;
  assert_err(SLUICE_EINVAL, sluice_pg_listen(p, "", on_note, &n, NULL, &l));
  assert_ok(sluice_pg_listen(p, "sluice chan", on_note, &n, NULL, &l));
  struct listen_wait up = {l, 1}, lost = {l, 0};
  tu_wait_until(listener_is, &up, "LISTEN is active");
  tu_pg_exec("notify \"sluice chan\", 'one'");
  struct note_wait w1 = {&n, 1};
  tu_wait_until(notes_reached, &w1, "the first notification");
  assert_string_equal(n.last, "one");
  terminate("sluice_listen", "and query like 'LISTEN%'");
  tu_wait_until(listener_is, &lost, "the listener notices the loss");
  tu_wait_until(listener_is, &up, "LISTEN is active again");
  tu_pg_exec("notify \"sluice chan\", 'two'");
  struct note_wait w2 = {&n, 2};
  tu_wait_until(notes_reached, &w2, "the notification after the reconnect");
  assert_string_equal(n.last, "two");
  sluice_pg_listener_free(l);
  tu_pool_close(p, 1000);
}

static void test_proxy_partition_and_ambiguous_write(void **state) {
  (void)state;
  int port = 0;
  tcpproxy *px = tcpproxy_start(atoi(getenv("SLUICE_PG_PORT")), &port);
  static char conninfo[256];
  snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d user=postgres dbname=postgres", port);
  sluice_pg_pool_options o = SLUICE_PG_POOL_OPTIONS_INIT;
  o.conninfo = conninfo;
  o.min_size = 1, o.max_size = 1;
  o.check_idle_after_ms = 100, o.health_timeout_ms = 300, o.connect_timeout_ms = 500;
  sluice_pg_pool *p = NULL;
  assert_ok(sluice_pg_pool_new(&p, rt, &o));
  wait_total(p, 1);
  assert_int_equal(run_queries(p, 2), 0);

  /* A silently dead idle connection (no FIN, no RST) is never lent: the
   * ping before lending fails, another is opened, the caller sees nothing. */
  tcpproxy_freeze_existing(px);
  pause_ms(150);
  tu_query q;
  assert_ok(tu_q(p, &q, "select 'through a new connection'", 0, NULL, 10000));
  sluice_pg_result_free(q.result);
  assert_true(tu_stats(p).evictions[SLUICE_PG_EVICT_HEALTH] >= 1);

  /* A write cut off after it was sent: ambiguous (and it did commit). */
  sluice_op *op = tu_q_start(p, &q, "insert into t_faults select 42 from pg_sleep(0.5)", 10000);
  tu_wait_until(query_running, "t_faults select 42", "the write runs");
  tcpproxy_cut(px);
  int st = 0;
  assert_ok(sluice_op_wait(op, -1, &st));
  sluice_op_free(op);
  assert_int_equal(st, SLUICE_EAMBIGUOUS);
  assert_int_equal(sluice_pg_result_sent(q.result), 1);
  assert_int_equal(sluice_pg_result_retryable(q.result, 0), 0); /* a write: never blindly */
  assert_int_equal(sluice_pg_result_retryable(q.result, 1), 1); /* unless idempotent */
  sluice_pg_result_free(q.result);
  tu_wait_until(query_gone, "t_faults select 42", "the write finishes on the server");
  assert_int_equal(tu_pg_long("select count(*) from t_faults where id = 42"), 1);

  /* Total partition: calls respect their deadlines, nothing was sent. */
  tcpproxy_freeze_all(px, 1);
  tcpproxy_cut(px);
  uint64_t t0 = sluice_now_ns();
  st = tu_q(p, &q, "insert into t_faults values (43)", 0, NULL, 1500);
  assert_true(st == SLUICE_ETIMEDOUT || st == SLUICE_EUNREACHABLE || st == SLUICE_EEXHAUSTED);
  assert_int_equal(sluice_pg_result_sent(q.result), 0);
  sluice_pg_result_free(q.result);
  assert_true(sluice_now_ns() - t0 < 30ull * 1000000000ull); /* a hang guard, not a timing claim */
  /* Traffic flows again: the pool recovers by itself. */
  tcpproxy_freeze_all(px, 0);
  wait_total(p, 1);
  assert_int_equal(run_queries(p, 3), 0);
  assert_int_equal(tu_pg_long("select count(*) from t_faults where id = 43"), 0);
  /* Close under a partition respects its drain time too. */
  tcpproxy_freeze_all(px, 1);
  tu_pool_close(p, 200);
  tcpproxy_stop(px);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_idle_backends_terminated_callers_see_nothing),
      cmocka_unit_test(test_busy_backend_terminated_one_error_then_replaced),
      cmocka_unit_test(test_query_timeout_is_cancelled_on_server),
      cmocka_unit_test(test_read_only_server_evicts),
      cmocka_unit_test(test_restart_fast_and_immediate),
      cmocka_unit_test(test_outage_fails_fast_and_probes_slowly),
      cmocka_unit_test(test_notify_across_reconnect),
      cmocka_unit_test(test_proxy_partition_and_ambiguous_write),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

/* A runtime attached to the caller's own libuv loop (embedded mode).
 * SLUICE_TEST_CONCURRENT: a second thread posts while the loop runs. */
#include <pthread.h>
#include <string.h>

#include <sluice/uv.h>

#include "testutil.h"

static void test_attach_bad_input(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  sluice_runtime *rt = (sluice_runtime *)1;
  assert_err(SLUICE_EINVAL, sluice_runtime_attach(NULL, &loop, NULL));
  assert_err(SLUICE_EINVAL, sluice_runtime_attach(&rt, NULL, NULL));
  assert_null(rt);
  sluice_runtime_options o = SLUICE_RUNTIME_OPTIONS_INIT;
  o.version = 0;
  assert_err(SLUICE_EVERSION, sluice_runtime_attach(&rt, &loop, &o));
  assert_null(sluice_runtime_loop(NULL));
  assert_int_equal(uv_loop_close(&loop), 0); /* nothing was left on it */
}

static void test_timers_run_inside_callers_uv_run(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  sluice_runtime *rt = NULL;
  assert_ok(sluice_runtime_attach(&rt, &loop, NULL));
  assert_ptr_equal(sluice_runtime_loop(rt), &loop);
  assert_int_equal(sluice_runtime_is_loop_thread(rt), 1);
  assert_err(SLUICE_EINVAL, sluice_runtime_close(rt)); /* attached: use free */

  /* Idle runtime handles do not keep uv_run alive. */
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);

  tu_counter c = {0}, cancelled = {0};
  sluice_op *op = NULL;
  for (int i = 0; i < 10; i++) assert_ok(sluice_runtime_timer(rt, (uint64_t)i, tu_count_cb, &c, tu_count_free, NULL));
  assert_ok(sluice_runtime_timer(rt, 3600 * 1000, tu_count_cb, &cancelled, NULL, &op));
  /* Waiting on the loop thread would hang the loop: refused. */
  assert_err(SLUICE_EDEADLK, sluice_op_wait(op, -1, NULL));
  assert_ok(sluice_op_cancel(op)); /* on the loop thread: completes at once */
  assert_int_equal(cancelled.calls, 1);
  assert_int_equal(cancelled.last_status, SLUICE_ECANCELED);
  sluice_op_free(op);

  uv_run(&loop, UV_RUN_DEFAULT); /* returns once the timers are done */
  assert_int_equal(c.calls, 10);
  assert_int_equal(c.by_status[0], 10);
  assert_int_equal(c.freed, 10);

  sluice_runtime_stats st = {sizeof st};
  assert_ok(sluice_runtime_stats_get(rt, &st));
  assert_int_equal(st.is_own_thread, 0);
  assert_int_equal(st.ops_pending, 0);

  sluice_runtime_free(rt);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

struct poster {
  sluice_runtime *rt;
  int n;
};

static int g_seen;
static uv_timer_t g_keepalive;
static void keepalive_noop(uv_timer_t *t) { (void)t; }

static void seen_cb(void *ud, int status) {
  struct poster *p = ud;
  if (status == 0 && ++g_seen == p->n) uv_close((uv_handle_t *)&g_keepalive, NULL);
}

static void *post_many(void *arg) {
  struct poster *p = arg;
  for (int i = 0; i < p->n; i++) assert_ok(sluice_runtime_post(p->rt, seen_cb, p, NULL));
  return NULL;
}

static void test_posts_from_another_thread(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  sluice_runtime *rt = NULL;
  assert_ok(sluice_runtime_attach(&rt, &loop, NULL));
  /* The caller keeps its loop alive while it expects posted work. */
  uv_timer_init(&loop, &g_keepalive);
  uv_timer_start(&g_keepalive, keepalive_noop, 3600 * 1000, 0);
  g_seen = 0;
  struct poster p = {rt, 5000};
  pthread_t t;
  pthread_create(&t, NULL, post_many, &p);
  uv_run(&loop, UV_RUN_DEFAULT);
  pthread_join(t, NULL);
  assert_int_equal(g_seen, p.n);

  /* Pending work is completed with ECLOSED by free, on the loop thread. */
  tu_counter c = {0};
  assert_ok(sluice_runtime_timer(rt, 3600 * 1000, tu_count_cb, &c, tu_count_free, NULL));
  sluice_runtime_free(rt);
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.last_status, SLUICE_ECLOSED);
  assert_int_equal(c.freed, 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* A callback that cancels its own op (on the loop thread, where a cancel
 * is decided at once) must not complete it a second time. */
struct self_cancel {
  sluice_op *op;
  int calls;
};
static void cancel_self_cb(void *ud, int status) {
  struct self_cancel *s = ud;
  (void)status;
  s->calls++;
  assert_ok(sluice_op_cancel(s->op));
}

static void test_callback_cancelling_its_own_op(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  sluice_runtime *rt = NULL;
  assert_ok(sluice_runtime_attach(&rt, &loop, NULL));
  struct self_cancel s = {NULL, 0};
  assert_ok(sluice_runtime_timer(rt, 1, cancel_self_cb, &s, NULL, &s.op));
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(s.calls, 1);
  int status = 1;
  assert_int_equal(sluice_op_done(s.op, &status), 1);
  assert_int_equal(status, 0);
  sluice_op_free(s.op);
  sluice_runtime_free(rt);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_attach_bad_input),
      cmocka_unit_test(test_timers_run_inside_callers_uv_run),
      cmocka_unit_test(test_posts_from_another_thread),
      cmocka_unit_test(test_callback_cancelling_its_own_op),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The own-thread runtime: options, posting from many threads, timers,
 * cancellation races, blocking waits, loop lag and shutdown.
 * SLUICE_TEST_CONCURRENT: also run under ThreadSanitizer. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

static void test_options(void **state) {
  (void)state;
  sluice_runtime_options o;
  assert_err(SLUICE_EINVAL, sluice_runtime_options_init(NULL, SLUICE_RUNTIME_OPTIONS_VERSION));
  assert_err(SLUICE_EVERSION, sluice_runtime_options_init(&o, 0));
  assert_err(SLUICE_EVERSION, sluice_runtime_options_init(&o, 99));
  assert_ok(sluice_runtime_options_init(&o, SLUICE_RUNTIME_OPTIONS_VERSION));
  sluice_runtime_options lit = SLUICE_RUNTIME_OPTIONS_INIT;
  assert_int_equal(o.version, lit.version);
  assert_int_equal(o.lag_interval_ms, lit.lag_interval_ms);
  assert_null(o.thread_name);

  sluice_runtime *rt = (sluice_runtime *)1;
  o.version = 99;
  assert_err(SLUICE_EVERSION, sluice_runtime_new(&rt, &o));
  assert_null(rt);
  assert_non_null(strstr(sluice_error_message(), "version 99"));
  o.version = SLUICE_RUNTIME_OPTIONS_VERSION;
  o.lag_interval_ms = 70000;
  assert_err(SLUICE_EINVAL, sluice_runtime_new(&rt, &o));
  assert_non_null(strstr(sluice_error_message(), "lag_interval_ms"));
  assert_err(SLUICE_EINVAL, sluice_runtime_new(NULL, &o));

  o.lag_interval_ms = 0; /* sampling off is allowed */
  o.thread_name = "a-very-long-thread-name-that-is-cut";
  assert_ok(sluice_runtime_new(&rt, &o));
  sluice_runtime_free(rt);
}

static void test_null_handles(void **state) {
  (void)state;
  tu_counter c = {0};
  sluice_runtime_free(NULL);
  sluice_op_free(NULL);
  assert_err(SLUICE_EINVAL, sluice_runtime_close(NULL));
  assert_err(SLUICE_EINVAL, sluice_runtime_post(NULL, tu_count_cb, &c, NULL));
  assert_err(SLUICE_EINVAL, sluice_runtime_timer(NULL, 1, tu_count_cb, &c, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_op_cancel(NULL));
  assert_err(SLUICE_EINVAL, sluice_op_wait(NULL, 0, NULL));
  assert_err(SLUICE_EINVAL, sluice_op_done(NULL, NULL));
  assert_int_equal(sluice_runtime_is_loop_thread(NULL), 0);
  sluice_runtime_stats st = {sizeof st};
  assert_err(SLUICE_EINVAL, sluice_runtime_stats_get(NULL, &st));
  assert_err(SLUICE_EINVAL, sluice_runtime_memory(NULL, NULL));
  sluice_buf b = SLUICE_BUF_INIT;
  assert_err(SLUICE_EINVAL, sluice_runtime_describe(NULL, &b));

  sluice_runtime *rt = tu_runtime();
  assert_err(SLUICE_EINVAL, sluice_runtime_post(rt, NULL, &c, NULL));
  assert_err(SLUICE_EINVAL, sluice_runtime_timer(rt, 1, NULL, &c, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_runtime_timer(rt, UINT64_MAX, tu_count_cb, &c, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_runtime_stats_get(rt, NULL));
  assert_err(SLUICE_EINVAL, sluice_runtime_describe(rt, NULL));
  st.size = 2; /* too small even for the size field */
  assert_err(SLUICE_EINVAL, sluice_runtime_stats_get(rt, &st));
  assert_ok(sluice_runtime_close(rt));
  assert_int_equal(c.calls, 0); /* nothing was taken by the failed calls */
  sluice_runtime_free(rt);
}

struct feeder {
  sluice_runtime *rt;
  int posts;
  int failures;
};

/* Only the loop thread touches these. */
static int g_ran, g_ok, g_freed;
static void post_cb(void *ud, int status) {
  (void)ud;
  g_ran++;
  if (status == 0) g_ok++;
}
static void post_free(void *ud) {
  (void)ud;
  g_freed++;
}

static void *feed(void *arg) {
  struct feeder *f = arg;
  for (int i = 0; i < f->posts; i++)
    if (sluice_runtime_post(f->rt, post_cb, NULL, post_free) != 0) f->failures++;
  return NULL;
}

static void test_post_from_many_threads(void **state) {
  (void)state;
  enum { THREADS = 4, POSTS = 20000 };
  g_ran = g_ok = g_freed = 0;
  sluice_runtime *rt = tu_runtime();
  pthread_t tid[THREADS];
  struct feeder f[THREADS];
  for (int i = 0; i < THREADS; i++) {
    f[i] = (struct feeder){rt, POSTS, 0};
    pthread_create(&tid[i], NULL, feed, &f[i]);
  }
  for (int i = 0; i < THREADS; i++) {
    pthread_join(tid[i], NULL);
    assert_int_equal(f[i].failures, 0);
  }
  /* Items posted before close run normally before the shutdown. */
  assert_ok(sluice_runtime_close(rt));
  assert_int_equal(g_ran, THREADS * POSTS);
  assert_int_equal(g_ok, THREADS * POSTS);
  assert_int_equal(g_freed, THREADS * POSTS);
  sluice_runtime_stats st = {sizeof st};
  assert_ok(sluice_runtime_stats_get(rt, &st));
  assert_true(st.posted >= (uint64_t)THREADS * POSTS);
  assert_int_equal(st.is_closed, 1);
  assert_int_equal(st.is_own_thread, 1);

  /* After close: refused, nothing taken. */
  g_ran = g_freed = 0;
  assert_err(SLUICE_ECLOSED, sluice_runtime_post(rt, post_cb, NULL, post_free));
  tu_counter c = {0};
  assert_err(SLUICE_ECLOSED, sluice_runtime_timer(rt, 1, tu_count_cb, &c, tu_count_free, NULL));
  assert_ok(sluice_runtime_close(rt)); /* again: no-op */
  sluice_runtime_free(rt);
  assert_int_equal(g_ran + g_freed + c.calls + c.freed, 0);
}

static void test_timer_fires_once(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  tu_counter c = {0};
  sluice_op *op = NULL;
  assert_ok(sluice_runtime_timer(rt, 5, tu_count_cb, &c, tu_count_free, &op));
  int status = -1;
  assert_ok(sluice_op_wait(op, -1, &status));
  assert_int_equal(status, 0);
  assert_int_equal(sluice_op_done(op, &status), 1);
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.freed, 1);
  assert_int_equal(c.last_status, 0);
  assert_ok(sluice_op_cancel(op)); /* after completion: no effect */
  assert_ok(sluice_op_wait(op, 0, &status));
  assert_int_equal(status, 0);
  assert_int_equal(c.calls, 1);
  sluice_op_free(op);
  sluice_runtime_free(rt);
}

static void test_timer_cancel_and_wait_timeout(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  tu_counter c = {0};
  sluice_op *op = NULL;
  assert_ok(sluice_runtime_timer(rt, 3600 * 1000, tu_count_cb, &c, tu_count_free, &op));
  int status = 1;
  assert_int_equal(sluice_op_done(op, &status), 0);
  assert_err(SLUICE_ETIMEDOUT, sluice_op_wait(op, 10, &status));
  assert_int_equal(status, 1); /* untouched on timeout */
  assert_ok(sluice_op_cancel(op));
  assert_ok(sluice_op_cancel(op)); /* twice: still one completion */
  assert_ok(sluice_op_wait(op, -1, &status));
  assert_int_equal(status, SLUICE_ECANCELED);
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.freed, 1);
  sluice_op_free(op);
  sluice_runtime_free(rt);
}

/* Cancel from this thread while the loop may be firing the timer: the
 * callback runs exactly once, with 0 or ECANCELED, whoever wins. */
static void test_cancel_races_completion(void **state) {
  (void)state;
  enum { N = 2000 };
  sluice_runtime *rt = tu_runtime();
  tu_counter *c = calloc(N, sizeof *c);
  sluice_op **ops = calloc(N, sizeof *ops);
  for (int i = 0; i < N; i++) {
    assert_ok(sluice_runtime_timer(rt, (uint64_t)(i % 2), tu_count_cb, &c[i], tu_count_free, &ops[i]));
    if (i % 3 != 0) assert_ok(sluice_op_cancel(ops[i]));
  }
  int won = 0, canceled = 0;
  for (int i = 0; i < N; i++) {
    int status = 1;
    assert_ok(sluice_op_wait(ops[i], -1, &status));
    sluice_op_free(ops[i]);
    assert_true(status == 0 || status == SLUICE_ECANCELED);
    if (i % 3 == 0) assert_int_equal(status, 0); /* never cancelled */
    status == 0 ? won++ : canceled++;
  }
  assert_ok(sluice_runtime_close(rt));
  for (int i = 0; i < N; i++) {
    assert_int_equal(c[i].calls, 1);
    assert_int_equal(c[i].freed, 1);
  }
  assert_int_equal(won + canceled, N);
  assert_true(canceled > 0); /* delay-1 timers cancelled at once cannot all have fired */
  sluice_runtime_stats st = {sizeof st};
  assert_ok(sluice_runtime_stats_get(rt, &st));
  assert_int_equal(st.ops_started, st.ops_completed);
  assert_int_equal(st.ops_pending, 0);
  sluice_runtime_free(rt);
  free(c);
  free(ops);
}

/* Callbacks of ops closed by shutdown try to start more work: refused. */
struct shutdown_probe {
  sluice_runtime *rt;
  tu_counter c;
  int timer_rc, post_rc;
};
static void shutdown_probe_cb(void *ud, int status) {
  struct shutdown_probe *p = ud;
  tu_count_cb(&p->c, status);
  p->timer_rc = sluice_runtime_timer(p->rt, 1, post_cb, NULL, NULL, NULL);
  p->post_rc = sluice_runtime_post(p->rt, post_cb, NULL, NULL);
}

static void test_shutdown_completes_pending_once(void **state) {
  (void)state;
  enum { N = 500 };
  sluice_runtime *rt = tu_runtime();
  tu_counter c = {0};
  sluice_op *kept = NULL;
  for (int i = 0; i < N; i++)
    assert_ok(sluice_runtime_timer(rt, 3600 * 1000 + (uint64_t)i, tu_count_cb, &c, tu_count_free,
                                   i == 0 ? &kept : NULL));
  struct shutdown_probe p = {rt, {0}, 0, 0};
  assert_ok(sluice_runtime_timer(rt, 3600 * 1000, shutdown_probe_cb, &p, NULL, NULL));
  assert_ok(sluice_runtime_close(rt));
  assert_int_equal(c.calls, N);
  assert_int_equal(c.freed, N);
  assert_int_equal(c.by_status[-SLUICE_ECLOSED], N);
  assert_int_equal(p.c.calls, 1);
  assert_int_equal(p.c.last_status, SLUICE_ECLOSED);
  assert_int_equal(p.timer_rc, SLUICE_ECLOSED);
  assert_int_equal(p.post_rc, SLUICE_ECLOSED);
  int status = 0;
  assert_int_equal(sluice_op_done(kept, &status), 1);
  assert_int_equal(status, SLUICE_ECLOSED);
  assert_ok(sluice_op_cancel(kept)); /* handle outlives the shutdown */
  sluice_op_free(kept);
  sluice_runtime_free(rt);
}

/* Blocking calls on the loop thread refuse instead of hanging. */
struct deadlock_probe {
  sluice_runtime *rt;
  sluice_op *pending;
  int wait_rc, close_rc, is_loop;
};
static void deadlock_probe(void *arg) {
  struct deadlock_probe *p = arg;
  p->is_loop = sluice_runtime_is_loop_thread(p->rt);
  p->wait_rc = sluice_op_wait(p->pending, -1, NULL);
  p->close_rc = sluice_runtime_close(p->rt);
}

static void test_blocking_on_loop_thread_is_edeadlk(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  tu_counter c = {0};
  struct deadlock_probe p = {rt, NULL, 0, 0, 0};
  assert_ok(sluice_runtime_timer(rt, 3600 * 1000, tu_count_cb, &c, NULL, &p.pending));
  assert_int_equal(sluice_runtime_is_loop_thread(rt), 0);
  tu_on_loop(rt, deadlock_probe, &p);
  assert_int_equal(p.is_loop, 1);
  assert_int_equal(p.wait_rc, SLUICE_EDEADLK);
  assert_int_equal(p.close_rc, SLUICE_EDEADLK);
  sluice_op_free(p.pending);
  sluice_runtime_free(rt);
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.last_status, SLUICE_ECLOSED);
}

static void block_loop(void *arg) {
  /* Deliberately stalls the loop thread to create lag. */
  uint64_t until = sluice_now_ns() + *(uint64_t *)arg;
  while (sluice_now_ns() < until) {
  }
}

static void test_loop_lag_is_measured(void **state) {
  (void)state;
  sluice_runtime_options o = SLUICE_RUNTIME_OPTIONS_INIT;
  o.lag_interval_ms = 10;
  sluice_runtime *rt = NULL;
  assert_ok(sluice_runtime_new(&rt, &o));
  uint64_t stall = 60 * 1000000ull;
  tu_on_loop(rt, block_loop, &stall);
  /* The overdue lag timer fires before this later one: a sample after the
   * stall is guaranteed once this wait returns. */
  sluice_op *op = NULL;
  tu_counter c = {0};
  assert_ok(sluice_runtime_timer(rt, 25, tu_count_cb, &c, NULL, &op));
  assert_ok(sluice_op_wait(op, -1, NULL));
  sluice_op_free(op);
  sluice_runtime_stats st = {sizeof st};
  assert_ok(sluice_runtime_stats_get(rt, &st));
  assert_true(st.lag_samples >= 1);
  /* Stalled 60 ms against a 10 ms period: at least 50 ms late (a lower
   * bound, which load can only raise). */
  assert_true(st.lag_max_ns >= 40 * 1000000ull);
  assert_true(st.lag_mean_ns <= st.lag_max_ns);

  /* A caller built against a smaller stats struct gets only its prefix. */
  sluice_runtime_stats small;
  memset(&small, 0xAB, sizeof small);
  small.size = offsetof(sluice_runtime_stats, ops_started);
  assert_ok(sluice_runtime_stats_get(rt, &small));
  assert_int_equal(small.size, offsetof(sluice_runtime_stats, ops_started));
  assert_true(small.posted >= 1);
  assert_int_equal(small.ops_started, 0xABABABABABABABABull);
  sluice_runtime_free(rt);
}

static void test_memory_and_describe(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_op *op = NULL;
  tu_counter c = {0};
  assert_ok(sluice_runtime_timer(rt, 3600 * 1000, tu_count_cb, &c, NULL, &op));
  sluice_memory_stats m = {sizeof m};
  assert_ok(sluice_runtime_memory(rt, &m));
  assert_true(m.allocated > 0); /* the pending op lives in sluice's allocator */
  if (m.jemalloc) {
    assert_true(m.active >= m.allocated);
    assert_true(m.resident > 0);
  }
  sluice_buf b = SLUICE_BUF_INIT;
  assert_ok(sluice_runtime_describe(rt, &b));
  assert_non_null(strstr(b.ptr, "own thread"));
  assert_non_null(strstr(b.ptr, "1 pending"));
  assert_ok(sluice_runtime_describe(rt, &b)); /* reuses the buffer */
  sluice_buf_free(&b);
  sluice_op_cancel(op);
  sluice_op_free(op);
  sluice_runtime_free(rt);
}

/* Freeing the runtime from its own loop thread: the loop finishes the
 * shutdown and releases the runtime itself. */
static atomic_int g_self_freed;
static void free_self(void *ud, int status) {
  (void)status;
  sluice_runtime_free(ud);
}
static void note_closed(void *ud, int status) {
  (void)ud;
  if (status == SLUICE_ECLOSED) atomic_store(&g_self_freed, 1);
}

static void test_free_on_loop_thread(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  assert_ok(sluice_runtime_timer(rt, 3600 * 1000, note_closed, NULL, NULL, NULL));
  assert_ok(sluice_runtime_post(rt, free_self, rt, NULL));
  /* Hang guard only: the flag is set by the shutdown, not by time. */
  uint64_t deadline = sluice_now_ns() + 60ull * 1000000000ull;
  while (!atomic_load(&g_self_freed) && sluice_now_ns() < deadline) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  assert_int_equal(atomic_load(&g_self_freed), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_options),
      cmocka_unit_test(test_null_handles),
      cmocka_unit_test(test_post_from_many_threads),
      cmocka_unit_test(test_timer_fires_once),
      cmocka_unit_test(test_timer_cancel_and_wait_timeout),
      cmocka_unit_test(test_cancel_races_completion),
      cmocka_unit_test(test_shutdown_completes_pending_once),
      cmocka_unit_test(test_blocking_on_loop_thread_is_edeadlk),
      cmocka_unit_test(test_loop_lag_is_measured),
      cmocka_unit_test(test_memory_and_describe),
      cmocka_unit_test(test_free_on_loop_thread),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* sluice_taskpool: options and bad input, tasks and permits under one
 * limit, priority order and the anti-starvation rule, the queue bound and
 * both policies, deadlines that expire work without running it,
 * cancellation, resize while busy, graceful shutdown, the adaptive limit
 * driven by an injected clock, the figures and the monitor, teardown.
 * Nothing here waits for time to pass: tasks block on gates the test
 * opens, grants are observed through sluice_op_wait, and time is the
 * injected clock (deadlines are real but only ever reached while the pool
 * is held full on purpose).
 * SLUICE_TEST_CONCURRENT: worker threads and the loop thread run beside
 * this one, so the file also runs under ThreadSanitizer. */
#define _GNU_SOURCE /* pthread_getname_np */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include <sluice/taskpool.h>

/* ---- helpers ------------------------------------------------------------ */

static sluice_taskpool *new_pool(sluice_runtime *rt, const sluice_taskpool_options *o) {
  sluice_taskpool *p = NULL;
  assert_ok(sluice_taskpool_new(&p, rt, o));
  assert_non_null(p);
  return p;
}

static sluice_taskpool_options opts_with(uint32_t limit, uint32_t max_queued) {
  sluice_taskpool_options o = SLUICE_TASKPOOL_OPTIONS_INIT;
  o.max_concurrent = limit;
  o.max_queued = max_queued;
  return o;
}

static sluice_taskpool_stats stats_of(sluice_taskpool *p) {
  sluice_taskpool_stats st;
  memset(&st, 0, sizeof st);
  st.size = sizeof st;
  assert_ok(sluice_taskpool_stats_get(p, &st));
  return st;
}

/* The counts add up (checked whenever the test is between calls). */
static void assert_books_balance(sluice_taskpool *p) {
  sluice_taskpool_stats st = stats_of(p);
  uint64_t ended = st.completed + st.failed + st.rejected + st.expired + st.cancelled + st.closed;
  uint64_t in_flight = st.queued + st.room_waiting + st.running;
  if (st.submitted != ended + in_flight)
    fail_msg("submitted %llu != ended %llu + in flight %llu (completed %llu failed %llu "
             "rejected %llu expired %llu cancelled %llu closed %llu queued %llu room %llu "
             "running %llu)",
             (unsigned long long)st.submitted, (unsigned long long)ended,
             (unsigned long long)in_flight, (unsigned long long)st.completed,
             (unsigned long long)st.failed, (unsigned long long)st.rejected,
             (unsigned long long)st.expired, (unsigned long long)st.cancelled,
             (unsigned long long)st.closed, (unsigned long long)st.queued,
             (unsigned long long)st.room_waiting, (unsigned long long)st.running);
}

/* A gate tasks block on until the test opens it. */
typedef struct gate {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int open, started, finished;
  int ret; /* what the gated tasks return */
} gate;

static void gate_init(gate *g) {
  memset(g, 0, sizeof *g);
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
}

static void gate_destroy(gate *g) {
  pthread_mutex_destroy(&g->mu);
  pthread_cond_destroy(&g->cv);
}

static int gate_task(void *ud) {
  gate *g = ud;
  pthread_mutex_lock(&g->mu);
  g->started++;
  pthread_cond_broadcast(&g->cv);
  while (!g->open) pthread_cond_wait(&g->cv, &g->mu);
  g->finished++;
  int ret = g->ret;
  pthread_mutex_unlock(&g->mu);
  return ret;
}

static void gate_wait_started(gate *g, int n) {
  pthread_mutex_lock(&g->mu);
  while (g->started < n) pthread_cond_wait(&g->cv, &g->mu);
  pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g) {
  pthread_mutex_lock(&g->mu);
  g->open = 1;
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

/* A task that records that it ran, and in which order. */
static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_log[64];
static int g_log_n;

static void log_reset(void) {
  pthread_mutex_lock(&g_log_mu);
  g_log_n = 0;
  pthread_mutex_unlock(&g_log_mu);
}

static void log_add(int id) {
  pthread_mutex_lock(&g_log_mu);
  if (g_log_n < 64) g_log[g_log_n++] = id;
  pthread_mutex_unlock(&g_log_mu);
}

/* A task and its completion: `fn` runs on a worker (optionally blocked on
 * a gate first), `done` on the loop thread; the test reads both after
 * sluice_op_wait. */
typedef struct job {
  int id;
  int ret;
  gate *g;
  atomic_int ran;
  char thread_name[16];
  int calls, status, freed, on_loop;
  sluice_runtime *rt;
} job;

static int job_task(void *ud) {
  job *j = ud;
  if (j->g) gate_task(j->g);
  atomic_fetch_add(&j->ran, 1);
  pthread_getname_np(pthread_self(), j->thread_name, sizeof j->thread_name);
  log_add(j->id);
  return j->ret;
}

static void job_done(void *ud, int status) {
  job *j = ud;
  j->calls++;
  j->status = status;
  if (j->rt) j->on_loop = sluice_runtime_is_loop_thread(j->rt);
}
static void job_free(void *ud) { ((job *)ud)->freed++; }

static void job_init(job *j, int id, int ret, gate *g) {
  memset(j, 0, sizeof *j);
  j->id = id;
  j->ret = ret;
  j->g = g;
}

static sluice_op *submit_job(sluice_taskpool *p, job *j, int prio, int64_t timeout_ms) {
  sluice_op *op = NULL;
  assert_ok(sluice_taskpool_submit(p, job_task, prio, timeout_ms, job_done, j, job_free, &op));
  assert_non_null(op);
  return op;
}

static int wait_op(sluice_op *op) {
  int status = 12345;
  assert_ok(sluice_op_wait(op, -1, &status));
  sluice_op_free(op);
  return status;
}

/* Completion of a permit acquire (loop thread). */
typedef struct grab {
  int id, calls, status, freed;
  sluice_permit *permit;
  sluice_taskpool *release_in_cb; /* release at once, after logging */
} grab;

static void grab_cb(void *ud, int status, sluice_permit *permit) {
  grab *g = ud;
  g->calls++;
  g->status = status;
  g->permit = permit;
  if (status != 0) assert_null(permit);
  if (status == 0) {
    assert_non_null(permit);
    log_add(g->id);
    if (g->release_in_cb) {
      assert_ok(sluice_taskpool_release(g->release_in_cb, permit, 0));
      g->permit = NULL;
    }
  }
}
static void grab_free(void *ud) { ((grab *)ud)->freed++; }

static sluice_op *acquire_async(sluice_taskpool *p, int prio, int64_t timeout_ms, grab *g) {
  sluice_op *op = NULL;
  assert_ok(sluice_taskpool_acquire(p, prio, timeout_ms, grab_cb, g, grab_free, &op));
  assert_non_null(op);
  return op;
}

/* The injected clock. */
static _Atomic uint64_t g_now;
static uint64_t fake_clock(void *ud) {
  (void)ud;
  return atomic_load(&g_now);
}
static void advance_ms(uint64_t ms) { atomic_fetch_add(&g_now, ms * 1000000u); }

/* ---- options and bad input ------------------------------------------- */

static void expect_bad_option(sluice_runtime *rt, sluice_taskpool_options o, const char *field) {
  sluice_taskpool *p = (sluice_taskpool *)0x1;
  assert_err(SLUICE_EINVAL, sluice_taskpool_new(&p, rt, &o));
  assert_null(p);
  if (!strstr(sluice_error_message(), field))
    fail_msg("message \"%s\" does not name %s", sluice_error_message(), field);
}

static void test_options(void **state) {
  (void)state;
  sluice_taskpool_options o;
  assert_err(SLUICE_EINVAL, sluice_taskpool_options_init(NULL, 1));
  assert_err(SLUICE_EVERSION, sluice_taskpool_options_init(&o, 0));
  assert_err(SLUICE_EVERSION, sluice_taskpool_options_init(&o, 2));
  assert_ok(sluice_taskpool_options_init(&o, SLUICE_TASKPOOL_OPTIONS_VERSION));
  sluice_taskpool_options init = SLUICE_TASKPOOL_OPTIONS_INIT;
  /* The macro and the function agree, field by field. */
  assert_int_equal(o.version, init.version);
  assert_int_equal(o.max_concurrent, init.max_concurrent);
  assert_int_equal(o.workers, init.workers);
  assert_int_equal(o.max_queued, init.max_queued);
  assert_int_equal(o.on_full, init.on_full);
  assert_int_equal(o.adaptive, init.adaptive);
  assert_int_equal(o.min_concurrent, init.min_concurrent);
  assert_int_equal(o.max_concurrent_ceiling, init.max_concurrent_ceiling);
  assert_int_equal(o.target_latency_ns, init.target_latency_ns);
  assert_null(o.monitor);
  assert_null(o.name);
  assert_null(o.clock);
  assert_null(o.clock_user_data);
  assert_int_equal(o.max_bypass, init.max_bypass);
  assert_int_equal(o.max_concurrent, 20);
  assert_int_equal(o.max_queued, 1000);
  assert_int_equal(o.on_full, SLUICE_TASKPOOL_FULL_REJECT);
  assert_int_equal(o.max_bypass, 4);

  sluice_runtime *rt = tu_runtime();
  sluice_taskpool *p = NULL;
  assert_err(SLUICE_EINVAL, sluice_taskpool_new(NULL, rt, NULL));
  assert_err(SLUICE_EINVAL, sluice_taskpool_new(&p, NULL, NULL));
  o.version = 9;
  assert_err(SLUICE_EVERSION, sluice_taskpool_new(&p, rt, &o));

  sluice_taskpool_options b = init;
  b.max_concurrent = 0;
  expect_bad_option(rt, b, "max_concurrent");
  b.max_concurrent = 65537;
  expect_bad_option(rt, b, "max_concurrent");
  b = init;
  b.workers = 1025;
  expect_bad_option(rt, b, "workers");
  b = init;
  b.max_queued = (1u << 30) + 1;
  expect_bad_option(rt, b, "max_queued");
  b = init;
  b.on_full = 7;
  expect_bad_option(rt, b, "on_full");
  b = init;
  b.adaptive = 2;
  expect_bad_option(rt, b, "adaptive");
  b = init;
  b.adaptive = 1;
  expect_bad_option(rt, b, "target_latency_ns");
  b.target_latency_ns = 1000000;
  b.min_concurrent = 0;
  expect_bad_option(rt, b, "min_concurrent");
  b.min_concurrent = 21;
  expect_bad_option(rt, b, "min_concurrent");
  b.min_concurrent = 1;
  b.max_concurrent_ceiling = 19;
  expect_bad_option(rt, b, "ceiling");
  b.max_concurrent_ceiling = 65537;
  expect_bad_option(rt, b, "ceiling");
  b = init;
  b.name = "";
  expect_bad_option(rt, b, "name");
  b.name = "an-overly-long-pool-name-that-goes-on-and-on-well-beyond-sixty-four-bytes";
  expect_bad_option(rt, b, "name");
  b = init;
  b.max_bypass = 0;
  expect_bad_option(rt, b, "max_bypass");

  /* Edges that are fine: the smallest and largest pools, no queue. */
  b = opts_with(1, 0);
  p = new_pool(rt, &b);
  assert_int_equal(stats_of(p).limit, 1);
  sluice_taskpool_free(p);
  b = opts_with(65536, 1u << 30);
  b.workers = 1024;
  p = new_pool(rt, &b);
  assert_int_equal(stats_of(p).limit, 65536);
  sluice_taskpool_free(p);
  /* Adaptive with the default ceiling (twice the start). */
  b = init;
  b.adaptive = 1;
  b.target_latency_ns = 1000000;
  p = new_pool(rt, &b);
  assert_err(SLUICE_ERANGE, sluice_taskpool_resize(p, 41));
  assert_ok(sluice_taskpool_resize(p, 40));
  sluice_taskpool_free(p);
  /* NULL options: the defaults, one worker started. */
  p = new_pool(rt, NULL);
  sluice_taskpool_stats st = stats_of(p);
  assert_int_equal(st.limit, 20);
  assert_int_equal(st.threads, 1);
  sluice_taskpool_free(p);
  sluice_taskpool_free(NULL);
  sluice_runtime_free(rt);
}

static void on_loop_checks(void *arg) {
  sluice_taskpool *p = arg;
  sluice_permit *permit = (sluice_permit *)0x1;
  assert_err(SLUICE_EDEADLK, sluice_taskpool_acquire_wait(p, SLUICE_PRIORITY_NORMAL, 10, &permit));
  assert_null(permit);
  assert_err(SLUICE_EDEADLK, sluice_taskpool_shutdown(p, 10));
  assert_err(SLUICE_EDEADLK, sluice_taskpool_shutdown(p, -1));
}

static int nop_task(void *ud) {
  (void)ud;
  return 0;
}

typedef struct self_stop {
  sluice_taskpool *p;
  int rc_wait, rc_now;
} self_stop;

static int stop_own_pool(void *ud) {
  self_stop *s = ud;
  s->rc_wait = sluice_taskpool_shutdown(s->p, 10); /* would wait for itself */
  s->rc_now = sluice_taskpool_shutdown(s->p, 0);   /* closes, returns */
  return 0;
}

static void test_shutdown_from_own_task(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(2, 10);
  sluice_taskpool *p = new_pool(rt, &o);
  self_stop s = {p, 0, 0};
  sluice_op *op = NULL;
  assert_ok(sluice_taskpool_submit(p, stop_own_pool, 1, -1, NULL, &s, NULL, &op));
  assert_int_equal(wait_op(op), 0);
  assert_int_equal(s.rc_wait, SLUICE_EDEADLK);
  assert_int_equal(s.rc_now, SLUICE_ETIMEDOUT); /* the task itself runs */
  sluice_permit *w = NULL;
  assert_err(SLUICE_ECLOSED, sluice_taskpool_try_acquire(p, &w));
  assert_ok(sluice_taskpool_shutdown(p, -1));
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

static void test_bad_input(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(2, 10);
  sluice_taskpool *p = new_pool(rt, &o);
  sluice_op *op = (sluice_op *)0x1;
  job j;
  job_init(&j, 0, 0, NULL);

  assert_err(SLUICE_EINVAL, sluice_taskpool_submit(NULL, nop_task, 1, -1, job_done, &j, NULL, &op));
  assert_null(op);
  assert_err(SLUICE_EINVAL, sluice_taskpool_submit(p, NULL, 1, -1, job_done, &j, NULL, NULL));
  assert_non_null(strstr(sluice_error_message(), "fn"));
  assert_err(SLUICE_EINVAL, sluice_taskpool_submit(p, nop_task, 3, -1, job_done, &j, NULL, NULL));
  assert_non_null(strstr(sluice_error_message(), "priority"));
  assert_err(SLUICE_EINVAL, sluice_taskpool_submit(p, nop_task, -1, -1, job_done, &j, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_taskpool_submit(p, nop_task, 1, (int64_t)1 << 41, job_done, &j,
                                                   NULL, NULL));
  assert_non_null(strstr(sluice_error_message(), "timeout"));

  grab g = {0};
  assert_err(SLUICE_EINVAL, sluice_taskpool_acquire(NULL, 1, -1, grab_cb, &g, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_taskpool_acquire(p, 1, -1, NULL, &g, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_taskpool_acquire(p, 5, -1, grab_cb, &g, NULL, NULL));
  assert_err(SLUICE_EINVAL,
             sluice_taskpool_acquire(p, 1, (int64_t)1 << 41, grab_cb, &g, NULL, NULL));

  sluice_permit *permit = (sluice_permit *)0x1;
  assert_err(SLUICE_EINVAL, sluice_taskpool_try_acquire(NULL, &permit));
  assert_null(permit);
  assert_err(SLUICE_EINVAL, sluice_taskpool_try_acquire(p, NULL));
  assert_err(SLUICE_EINVAL, sluice_taskpool_acquire_wait(NULL, 1, 0, &permit));
  assert_err(SLUICE_EINVAL, sluice_taskpool_acquire_wait(p, 1, 0, NULL));
  assert_err(SLUICE_EINVAL, sluice_taskpool_acquire_wait(p, 9, 0, &permit));

  assert_ok(sluice_taskpool_try_acquire(p, &permit));
  assert_err(SLUICE_EINVAL, sluice_taskpool_release(NULL, permit, 0));
  assert_err(SLUICE_EINVAL, sluice_taskpool_release(p, NULL, 0));
  assert_err(SLUICE_EINVAL, sluice_taskpool_release(p, permit, 1));
  assert_non_null(strstr(sluice_error_message(), "positive"));
  /* Made-up handles are refused, never followed. */
  assert_err(SLUICE_ESTATE, sluice_taskpool_release(p, (sluice_permit *)0x1234, 0));
  assert_err(SLUICE_ESTATE, sluice_taskpool_release(p, (sluice_permit *)~(uintptr_t)0, 0));
  assert_err(SLUICE_ESTATE,
             sluice_taskpool_release(p, (sluice_permit *)((uintptr_t)permit ^ 0x5), 0));
  assert_ok(sluice_taskpool_release(p, permit, 0));
  assert_err(SLUICE_ESTATE, sluice_taskpool_release(p, permit, 0));
  assert_non_null(strstr(sluice_error_message(), "already released"));
  assert_int_equal(stats_of(p).bad_releases, 4);

  assert_err(SLUICE_EINVAL, sluice_taskpool_resize(NULL, 3));
  assert_err(SLUICE_EINVAL, sluice_taskpool_resize(p, 0));
  assert_err(SLUICE_EINVAL, sluice_taskpool_resize(p, 65537));
  assert_err(SLUICE_EINVAL, sluice_taskpool_shutdown(NULL, 0));
  assert_err(SLUICE_EINVAL, sluice_taskpool_shutdown(p, (int64_t)1 << 41));

  sluice_taskpool_stats st;
  assert_err(SLUICE_EINVAL, sluice_taskpool_stats_get(NULL, &st));
  assert_err(SLUICE_EINVAL, sluice_taskpool_stats_get(p, NULL));
  st.size = 0;
  assert_err(SLUICE_EINVAL, sluice_taskpool_stats_get(p, &st));
  /* An older caller's smaller struct gets only its part. */
  struct {
    size_t size;
    uint64_t limit;
    uint64_t guard;
  } small = {sizeof(size_t) + sizeof(uint64_t), 0, 77};
  assert_ok(sluice_taskpool_stats_get(p, (sluice_taskpool_stats *)&small));
  assert_int_equal(small.limit, 2);
  assert_int_equal(small.guard, 77);

  tu_on_loop(rt, on_loop_checks, p);
  /* None of the refused calls counted as submitted. */
  assert_int_equal(stats_of(p).submitted, 1);
  assert_int_equal(j.calls, 0);
  assert_int_equal(g.calls, 0);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

/* ---- tasks and permits --------------------------------------------------- */

static void test_tasks_run_on_named_workers(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(4, 100);
  o.name = "tp-named";
  sluice_taskpool *p = new_pool(rt, &o);
  enum { N = 30 };
  job jobs[N];
  sluice_op *ops[N];
  for (int i = 0; i < N; i++) {
    job_init(&jobs[i], i, i % 3 == 0 ? -1000 - i : 0, NULL);
    jobs[i].rt = rt;
    ops[i] = submit_job(p, &jobs[i], i % 3, -1);
  }
  int failed = 0;
  for (int i = 0; i < N; i++) {
    assert_int_equal(wait_op(ops[i]), jobs[i].ret);
    assert_int_equal(jobs[i].calls, 1);
    assert_int_equal(jobs[i].freed, 1);
    assert_int_equal(jobs[i].status, jobs[i].ret);
    assert_int_equal(jobs[i].on_loop, 1);
    assert_int_equal(atomic_load(&jobs[i].ran), 1);
    if (strncmp(jobs[i].thread_name, "tp-named-", 9) != 0)
      fail_msg("task %d ran on thread \"%s\"", i, jobs[i].thread_name);
    if (jobs[i].ret) failed++;
  }
  /* Without `done` a task still runs, and its user data is freed. */
  job quiet;
  job_init(&quiet, 99, 0, NULL);
  sluice_op *op = NULL;
  assert_ok(sluice_taskpool_submit(p, job_task, 1, -1, NULL, &quiet, job_free, &op));
  assert_int_equal(wait_op(op), 0);
  assert_int_equal(atomic_load(&quiet.ran), 1);
  assert_int_equal(quiet.freed, 1);
  assert_int_equal(quiet.calls, 0);

  assert_ok(sluice_taskpool_shutdown(p, -1));
  sluice_taskpool_stats st = stats_of(p);
  assert_int_equal(st.submitted, N + 1);
  assert_int_equal(st.completed, N + 1 - failed);
  assert_int_equal(st.failed, failed);
  assert_int_equal(st.running, 0);
  assert_true(st.peak_running >= 1 && st.peak_running <= 4);
  if (st.threads < 1 || st.threads > 4) fail_msg("%llu threads, peak running %llu", (unsigned long long)st.threads, (unsigned long long)st.peak_running);
  assert_books_balance(p);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

static void test_permits_share_the_limit(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(3, 10);
  sluice_taskpool *p = new_pool(rt, &o);
  sluice_taskpool *other = new_pool(rt, &o);

  /* A task holds one slot... */
  gate g;
  gate_init(&g);
  job j;
  job_init(&j, 1, 0, &g);
  sluice_op *top = submit_job(p, &j, SLUICE_PRIORITY_NORMAL, -1);
  gate_wait_started(&g, 1);

  /* ...so two permits fill the pool. */
  sluice_permit *a = NULL, *b = NULL, *c = (sluice_permit *)0x1;
  assert_ok(sluice_taskpool_try_acquire(p, &a));
  assert_ok(sluice_taskpool_acquire_wait(p, SLUICE_PRIORITY_HIGH, 0, &b));
  assert_non_null(a);
  assert_non_null(b);
  assert_ptr_not_equal(a, b);
  assert_err(SLUICE_EAGAIN, sluice_taskpool_try_acquire(p, &c));
  assert_null(c);
  assert_int_equal(stats_of(p).running, 3);
  assert_int_equal(stats_of(p).busy, 1);
  /* Blocking with no time to wait: the deadline ends it. */
  assert_err(SLUICE_ETIMEDOUT, sluice_taskpool_acquire_wait(p, SLUICE_PRIORITY_HIGH, 0, &c));
  assert_null(c);
  assert_int_equal(stats_of(p).expired, 1);

  /* A permit of another pool is refused and changes nothing. */
  sluice_permit *foreign = NULL;
  assert_ok(sluice_taskpool_try_acquire(other, &foreign));
  assert_err(SLUICE_ESTATE, sluice_taskpool_release(p, foreign, 0));
  assert_ok(sluice_taskpool_release(other, foreign, 0));

  assert_ok(sluice_taskpool_release(p, a, 0));
  assert_ok(sluice_taskpool_try_acquire(p, &c));
  /* A stale handle stays stale even when its record is in use again. */
  assert_ptr_not_equal(c, a);
  assert_err(SLUICE_ESTATE, sluice_taskpool_release(p, a, 0));
  assert_ok(sluice_taskpool_release(p, c, -5));
  assert_ok(sluice_taskpool_release(p, b, 0));
  gate_open(&g);
  assert_int_equal(wait_op(top), 0);

  sluice_taskpool_stats st = stats_of(p);
  assert_int_equal(st.running, 0);
  assert_int_equal(st.submitted, 5); /* the task, a, b, the expired wait, c */
  assert_int_equal(st.completed, 3);
  assert_int_equal(st.failed, 1);
  assert_int_equal(st.peak_running, 3);
  assert_books_balance(p);
  gate_destroy(&g);
  sluice_taskpool_free(other);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

static void test_async_acquire_granted_at_once(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(1, 10);
  sluice_taskpool *p = new_pool(rt, &o);
  grab g = {0};
  sluice_op *op = acquire_async(p, SLUICE_PRIORITY_LOW, 0, &g);
  assert_int_equal(wait_op(op), 0);
  assert_int_equal(g.calls, 1);
  assert_int_equal(g.freed, 1);
  assert_int_equal(g.status, 0);
  assert_ok(sluice_taskpool_release(p, g.permit, 0));
  assert_books_balance(p);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

/* ---- priorities ---------------------------------------------------------- */

static void check_order(const int *want, int n) {
  pthread_mutex_lock(&g_log_mu);
  int got_n = g_log_n;
  int got[64];
  memcpy(got, g_log, sizeof got);
  pthread_mutex_unlock(&g_log_mu);
  char buf[512] = "";
  for (int i = 0; i < got_n; i++) {
    char one[16];
    snprintf(one, sizeof one, " %d", got[i]);
    strcat(buf, one);
  }
  if (got_n != n) fail_msg("%d grants, want %d: order%s", got_n, n, buf);
  for (int i = 0; i < n; i++)
    if (got[i] != want[i])
      fail_msg("grant %d went to %d, want %d: order%s", i, got[i], want[i], buf);
}

enum { H = 100, NRM = 200, L = 300 };

static void test_priority_order_and_no_starvation(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(1, 100);
  o.max_bypass = 2;
  sluice_taskpool *p = new_pool(rt, &o);

  /* Hold the only slot, queue low, normal and a run of highs, then let
   * go: each grant releases at once, so the slot walks the queue in the
   * order the rule picks. */
  sluice_permit *held = NULL;
  assert_ok(sluice_taskpool_try_acquire(p, &held));
  grab gl = {L + 1, 0}, gn = {NRM + 1, 0}, gh[6];
  gl.release_in_cb = gn.release_in_cb = p;
  sluice_op *ops[8];
  int k = 0;
  ops[k++] = acquire_async(p, SLUICE_PRIORITY_LOW, -1, &gl);
  ops[k++] = acquire_async(p, SLUICE_PRIORITY_NORMAL, -1, &gn);
  for (int i = 0; i < 6; i++) {
    memset(&gh[i], 0, sizeof gh[i]);
    gh[i].id = H + 1 + i;
    gh[i].release_in_cb = p;
    ops[k++] = acquire_async(p, SLUICE_PRIORITY_HIGH, -1, &gh[i]);
  }
  assert_int_equal(stats_of(p).queued, 8);
  log_reset();
  assert_ok(sluice_taskpool_release(p, held, 0));
  for (int i = 0; i < k; i++) assert_int_equal(wait_op(ops[i]), 0);
  /* Two highs pass the waiting low and normal; then low (the lowest due
   * goes first), then normal, then the rest of the highs. */
  int want[] = {H + 1, H + 2, L + 1, NRM + 1, H + 3, H + 4, H + 5, H + 6};
  check_order(want, 8);
  sluice_taskpool_stats st = stats_of(p);
  assert_int_equal(st.completed, 9);
  assert_int_equal(st.peak_queued, 8);
  assert_books_balance(p);
  sluice_taskpool_free(p);

  /* A large max_bypass is strict priority, FIFO within a priority. */
  o.max_bypass = 65536;
  p = new_pool(rt, &o);
  assert_ok(sluice_taskpool_try_acquire(p, &held));
  grab g[6];
  int prios[6] = {SLUICE_PRIORITY_LOW, SLUICE_PRIORITY_NORMAL, SLUICE_PRIORITY_HIGH,
                  SLUICE_PRIORITY_LOW, SLUICE_PRIORITY_NORMAL, SLUICE_PRIORITY_HIGH};
  for (int i = 0; i < 6; i++) {
    memset(&g[i], 0, sizeof g[i]);
    g[i].id = i;
    g[i].release_in_cb = p;
    ops[i] = acquire_async(p, prios[i], -1, &g[i]);
  }
  log_reset();
  assert_ok(sluice_taskpool_release(p, held, 0));
  for (int i = 0; i < 6; i++) assert_int_equal(wait_op(ops[i]), 0);
  int strict[] = {2, 5, 1, 4, 0, 3};
  check_order(strict, 6);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

static void test_low_is_never_starved(void **state) {
  (void)state;
  /* Twenty highs wait beside one low: the low one is served after exactly
   * max_bypass grants, although highs are still waiting. */
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(1, 100);
  o.max_bypass = 3;
  sluice_taskpool *p = new_pool(rt, &o);
  sluice_permit *held = NULL;
  assert_ok(sluice_taskpool_try_acquire(p, &held));
  grab low = {L, 0};
  low.release_in_cb = p;
  sluice_op *low_op = acquire_async(p, SLUICE_PRIORITY_LOW, -1, &low);
  enum { NH = 20 };
  grab highs[NH];
  sluice_op *hops[NH];
  for (int i = 0; i < NH; i++) {
    memset(&highs[i], 0, sizeof highs[i]);
    highs[i].id = H + i;
    highs[i].release_in_cb = p;
    hops[i] = acquire_async(p, SLUICE_PRIORITY_HIGH, -1, &highs[i]);
  }
  log_reset();
  assert_ok(sluice_taskpool_release(p, held, 0));
  assert_int_equal(wait_op(low_op), 0);
  for (int i = 0; i < NH; i++) assert_int_equal(wait_op(hops[i]), 0);
  int want[NH + 1];
  for (int i = 0, h = 0; i < NH + 1; i++) want[i] = i == 3 ? L : H + h++;
  check_order(want, NH + 1);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

static void test_task_priorities(void **state) {
  (void)state;
  /* The same order for tasks. */
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(1, 100);
  o.max_bypass = 65536;
  sluice_taskpool *p = new_pool(rt, &o);
  gate g;
  gate_init(&g);
  job first;
  job_init(&first, 9, 0, &g);
  sluice_op *gop = submit_job(p, &first, SLUICE_PRIORITY_NORMAL, -1);
  gate_wait_started(&g, 1);
  job jobs[3];
  sluice_op *ops[3];
  int prios[3] = {SLUICE_PRIORITY_LOW, SLUICE_PRIORITY_NORMAL, SLUICE_PRIORITY_HIGH};
  for (int i = 0; i < 3; i++) {
    job_init(&jobs[i], i, 0, NULL);
    ops[i] = submit_job(p, &jobs[i], prios[i], -1);
  }
  log_reset();
  gate_open(&g);
  assert_int_equal(wait_op(gop), 0);
  for (int i = 0; i < 3; i++) assert_int_equal(wait_op(ops[i]), 0);
  int want[] = {9, 2, 1, 0};
  check_order(want, 4);
  gate_destroy(&g);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

/* ---- the queue bound ------------------------------------------------------ */

static void test_queue_bound_rejects(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(1, 2);
  sluice_taskpool *p = new_pool(rt, &o);
  sluice_permit *held = NULL;
  assert_ok(sluice_taskpool_try_acquire(p, &held));
  grab ga = {1, 0}, gb = {2, 0}, gc = {3, 0};
  ga.release_in_cb = gb.release_in_cb = p;
  sluice_op *a = acquire_async(p, SLUICE_PRIORITY_NORMAL, -1, &ga);
  sluice_op *b = acquire_async(p, SLUICE_PRIORITY_NORMAL, -1, &gb);
  /* Full: refused at once, nothing taken, whatever the priority. */
  sluice_op *c = (sluice_op *)0x1;
  assert_err(SLUICE_EFULL,
             sluice_taskpool_acquire(p, SLUICE_PRIORITY_HIGH, -1, grab_cb, &gc, grab_free, &c));
  assert_null(c);
  assert_non_null(strstr(sluice_error_message(), "full"));
  job j;
  job_init(&j, 4, 0, NULL);
  assert_err(SLUICE_EFULL, sluice_taskpool_submit(p, job_task, 0, -1, job_done, &j, job_free, NULL));
  sluice_permit *w = NULL;
  assert_err(SLUICE_EFULL, sluice_taskpool_acquire_wait(p, SLUICE_PRIORITY_LOW, -1, &w));
  sluice_taskpool_stats st = stats_of(p);
  assert_int_equal(st.rejected, 3);
  assert_int_equal(st.queued, 2);
  assert_int_equal(st.peak_queued, 2);
  assert_books_balance(p);

  log_reset();
  assert_ok(sluice_taskpool_release(p, held, 0));
  assert_int_equal(wait_op(a), 0);
  assert_int_equal(wait_op(b), 0);
  int want[] = {1, 2};
  check_order(want, 2);
  assert_int_equal(gc.calls, 0);
  assert_int_equal(gc.freed, 0);
  assert_int_equal(j.calls + j.freed + atomic_load(&j.ran), 0);
  assert_books_balance(p);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

static void test_queue_full_waits_for_room(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(1, 1);
  o.on_full = SLUICE_TASKPOOL_FULL_WAIT;
  sluice_taskpool *p = new_pool(rt, &o);
  sluice_permit *held = NULL;
  assert_ok(sluice_taskpool_try_acquire(p, &held));
  grab ga = {1, 0}, gb = {2, 0}, gc = {3, 0};
  ga.release_in_cb = gb.release_in_cb = gc.release_in_cb = p;
  sluice_op *a = acquire_async(p, SLUICE_PRIORITY_LOW, -1, &ga);
  /* The queue is full: these wait in the room line, in arrival order. */
  sluice_op *b = acquire_async(p, SLUICE_PRIORITY_HIGH, 1, &gb);
  sluice_op *c = acquire_async(p, SLUICE_PRIORITY_HIGH, -1, &gc);
  sluice_taskpool_stats st = stats_of(p);
  assert_int_equal(st.queued, 1);
  assert_int_equal(st.room_waiting, 2);
  assert_int_equal(st.rejected, 0);
  /* The pool is held, so b's deadline passes in the room line. */
  assert_int_equal(wait_op(b), SLUICE_ETIMEDOUT);
  assert_int_equal(gb.calls, 1);
  assert_int_equal(gb.freed, 1);
  st = stats_of(p);
  assert_int_equal(st.room_waiting, 1);
  assert_int_equal(st.expired, 1);
  assert_books_balance(p);

  log_reset();
  assert_ok(sluice_taskpool_release(p, held, 0));
  assert_int_equal(wait_op(a), 0);
  assert_int_equal(wait_op(c), 0);
  int want[] = {1, 3};
  check_order(want, 2);
  assert_books_balance(p);
  sluice_taskpool_free(p);

  /* No queue at all: WAIT means the room line alone, granted from it. */
  o.max_queued = 0;
  p = new_pool(rt, &o);
  assert_ok(sluice_taskpool_try_acquire(p, &held));
  grab gd = {4, 0};
  gd.release_in_cb = p;
  sluice_op *d = acquire_async(p, SLUICE_PRIORITY_NORMAL, -1, &gd);
  assert_int_equal(stats_of(p).room_waiting, 1);
  assert_ok(sluice_taskpool_release(p, held, 0));
  assert_int_equal(wait_op(d), 0);
  assert_int_equal(stats_of(p).peak_queued, 0);
  sluice_taskpool_free(p);

  /* ...and REJECT refuses anything that cannot run now. */
  o.on_full = SLUICE_TASKPOOL_FULL_REJECT;
  p = new_pool(rt, &o);
  assert_ok(sluice_taskpool_try_acquire(p, &held));
  assert_err(SLUICE_EFULL, sluice_taskpool_acquire(p, 1, -1, grab_cb, &gd, NULL, NULL));
  assert_ok(sluice_taskpool_release(p, held, 0));
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

/* ---- deadlines and cancellation ----------------------------------------- */

static void test_deadline_expires_without_running(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(1, 10);
  sluice_taskpool *p = new_pool(rt, &o);
  gate g;
  gate_init(&g);
  job gj;
  job_init(&gj, 0, 0, &g);
  sluice_op *gop = submit_job(p, &gj, SLUICE_PRIORITY_NORMAL, -1);
  gate_wait_started(&g, 1);

  /* The slot is held by the gated task until the test opens the gate, so
   * these can only end by their deadlines, and never run. */
  job x, y;
  job_init(&x, 1, 0, NULL);
  job_init(&y, 2, 0, NULL);
  sluice_op *xop = submit_job(p, &x, SLUICE_PRIORITY_HIGH, 1);
  sluice_op *yop = submit_job(p, &y, SLUICE_PRIORITY_HIGH, 0);
  grab pa = {3, 0};
  sluice_op *aop = acquire_async(p, SLUICE_PRIORITY_HIGH, 2, &pa);
  assert_int_equal(wait_op(xop), SLUICE_ETIMEDOUT);
  assert_int_equal(wait_op(yop), SLUICE_ETIMEDOUT);
  assert_int_equal(wait_op(aop), SLUICE_ETIMEDOUT);
  assert_int_equal(x.calls, 1);
  assert_int_equal(x.status, SLUICE_ETIMEDOUT);
  assert_int_equal(x.freed, 1);
  assert_int_equal(pa.freed, 1);
  gate_open(&g);
  assert_int_equal(wait_op(gop), 0);
  assert_int_equal(atomic_load(&x.ran), 0);
  assert_int_equal(atomic_load(&y.ran), 0);

  /* A deadline of 0 with a free slot: runs. */
  job z;
  job_init(&z, 4, 0, NULL);
  assert_int_equal(wait_op(submit_job(p, &z, SLUICE_PRIORITY_LOW, 0)), 0);
  assert_int_equal(atomic_load(&z.ran), 1);

  sluice_taskpool_stats st = stats_of(p);
  assert_int_equal(st.expired, 3);
  assert_int_equal(st.completed, 2);
  assert_books_balance(p);
  gate_destroy(&g);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

static void nop_status(void *ud, int status) {
  (void)ud;
  (void)status;
}

static void wait_ms(sluice_runtime *rt, uint64_t ms) {
  /* Lets time pass on purpose: a timer never fires early. */
  sluice_op *op = NULL;
  assert_ok(sluice_runtime_timer(rt, ms, nop_status, NULL, NULL, &op));
  assert_int_equal(wait_op(op), 0);
}

static void test_deadline_while_waiting_for_a_worker(void **state) {
  (void)state;
  /* One worker, two slots: a task that got its slot from the queue may
   * still wait for the worker; if its deadline passes meanwhile it never
   * runs. */
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(2, 10);
  o.workers = 1;
  sluice_taskpool *p = new_pool(rt, &o);
  gate g;
  gate_init(&g);
  job gj;
  job_init(&gj, 0, 0, &g);
  sluice_op *gop = submit_job(p, &gj, SLUICE_PRIORITY_NORMAL, -1);
  gate_wait_started(&g, 1);
  sluice_permit *held = NULL;
  assert_ok(sluice_taskpool_try_acquire(p, &held));
  job y;
  job_init(&y, 1, 0, NULL);
  sluice_op *yop = submit_job(p, &y, SLUICE_PRIORITY_NORMAL, 20);
  assert_int_equal(stats_of(p).queued, 1);
  assert_ok(sluice_taskpool_release(p, held, 0)); /* y gets the slot... */
  assert_int_equal(stats_of(p).running, 2);       /* ...but not the worker */
  assert_int_equal(stats_of(p).threads, 1);
  wait_ms(rt, 40);
  gate_open(&g);
  assert_int_equal(wait_op(gop), 0);
  assert_int_equal(wait_op(yop), SLUICE_ETIMEDOUT);
  assert_int_equal(atomic_load(&y.ran), 0);
  assert_int_equal(stats_of(p).expired, 1);
  assert_books_balance(p);
  gate_destroy(&g);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

static void test_cancel(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(1, 10);
  sluice_taskpool *p = new_pool(rt, &o);
  gate g;
  gate_init(&g);
  job gj;
  job_init(&gj, 0, 0, &g);
  gj.ret = -77;
  sluice_op *gop = submit_job(p, &gj, SLUICE_PRIORITY_NORMAL, -1);
  gate_wait_started(&g, 1);

  /* A queued task: cancelled, never runs. */
  job x;
  job_init(&x, 1, 0, NULL);
  sluice_op *xop = submit_job(p, &x, SLUICE_PRIORITY_HIGH, -1);
  assert_ok(sluice_op_cancel(xop));
  assert_int_equal(wait_op(xop), SLUICE_ECANCELED);
  assert_int_equal(x.calls, 1);
  assert_int_equal(x.freed, 1);
  /* A running task: the cancel changes nothing, done gets fn's status. */
  assert_ok(sluice_op_cancel(gop));
  sluice_permit *held = NULL;
  assert_err(SLUICE_EAGAIN, sluice_taskpool_try_acquire(p, &held));
  gate_open(&g);
  assert_int_equal(wait_op(gop), -77);
  assert_int_equal(gj.status, -77);
  assert_int_equal(atomic_load(&x.ran), 0);

  /* A queued permit request. */
  assert_ok(sluice_taskpool_try_acquire(p, &held));
  grab ga = {1, 0};
  sluice_op *aop = acquire_async(p, SLUICE_PRIORITY_NORMAL, -1, &ga);
  assert_ok(sluice_op_cancel(aop));
  assert_int_equal(wait_op(aop), SLUICE_ECANCELED);
  assert_int_equal(ga.calls, 1);
  assert_int_equal(ga.freed, 1);

  /* A cancel that comes after the grant was decided loses: the grant is
   * delivered and the caller releases it. */
  grab gb = {2, 0};
  sluice_op *bop = acquire_async(p, SLUICE_PRIORITY_NORMAL, -1, &gb);
  sluice_op *bref = bop;
  assert_ok(sluice_taskpool_release(p, held, 0)); /* decides the grant */
  assert_ok(sluice_op_cancel(bref));
  assert_int_equal(wait_op(bop), 0);
  assert_non_null(gb.permit);
  assert_ok(sluice_taskpool_release(p, gb.permit, 0));

  sluice_taskpool_stats st = stats_of(p);
  assert_int_equal(st.cancelled, 2);
  assert_int_equal(st.failed, 1);
  assert_int_equal(st.completed, 2);
  assert_int_equal(st.running, 0);
  assert_books_balance(p);
  gate_destroy(&g);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

/* ---- resize --------------------------------------------------------------- */

static void test_resize_while_busy(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(2, 10);
  sluice_taskpool *p = new_pool(rt, &o);
  sluice_permit *a = NULL, *b = NULL;
  assert_ok(sluice_taskpool_try_acquire(p, &a));
  assert_ok(sluice_taskpool_try_acquire(p, &b));
  grab g[3];
  sluice_op *ops[3];
  for (int i = 0; i < 3; i++) {
    memset(&g[i], 0, sizeof g[i]);
    g[i].id = i;
    ops[i] = acquire_async(p, SLUICE_PRIORITY_NORMAL, -1, &g[i]);
  }
  /* Up: two of the three waiting requests are granted at once. */
  assert_ok(sluice_taskpool_resize(p, 4));
  assert_int_equal(wait_op(ops[0]), 0);
  assert_int_equal(wait_op(ops[1]), 0);
  sluice_taskpool_stats st = stats_of(p);
  assert_int_equal(st.limit, 4);
  assert_int_equal(st.running, 4);
  assert_int_equal(st.queued, 1);
  assert_int_equal(sluice_op_done(ops[2], NULL), 0);

  /* Down below what runs: nothing is taken away, nothing new granted
   * until fewer than the new limit run. */
  assert_ok(sluice_taskpool_resize(p, 1));
  assert_int_equal(stats_of(p).running, 4);
  assert_ok(sluice_taskpool_release(p, a, 0));
  assert_ok(sluice_taskpool_release(p, b, 0));
  assert_ok(sluice_taskpool_release(p, g[0].permit, 0));
  assert_int_equal(sluice_op_done(ops[2], NULL), 0);
  assert_int_equal(stats_of(p).running, 1);
  sluice_permit *c = NULL;
  assert_err(SLUICE_EAGAIN, sluice_taskpool_try_acquire(p, &c));
  assert_ok(sluice_taskpool_release(p, g[1].permit, 0));
  assert_int_equal(wait_op(ops[2]), 0);
  assert_int_equal(stats_of(p).running, 1);
  assert_ok(sluice_taskpool_release(p, g[2].permit, 0));
  assert_int_equal(stats_of(p).peak_running, 4);

  /* Tasks: raising the limit lets queued tasks run beside a blocked one. */
  gate gt;
  gate_init(&gt);
  job gj, j1, j2;
  job_init(&gj, 0, 0, &gt);
  job_init(&j1, 1, 0, NULL);
  job_init(&j2, 2, 0, NULL);
  sluice_op *gop = submit_job(p, &gj, SLUICE_PRIORITY_NORMAL, -1);
  gate_wait_started(&gt, 1);
  sluice_op *o1 = submit_job(p, &j1, SLUICE_PRIORITY_NORMAL, -1);
  sluice_op *o2 = submit_job(p, &j2, SLUICE_PRIORITY_NORMAL, -1);
  assert_int_equal(stats_of(p).queued, 2);
  assert_ok(sluice_taskpool_resize(p, 3));
  assert_int_equal(wait_op(o1), 0);
  assert_int_equal(wait_op(o2), 0);
  assert_int_equal(atomic_load(&gj.ran), 0); /* still at its gate */
  gate_open(&gt);
  assert_int_equal(wait_op(gop), 0);
  assert_books_balance(p);
  gate_destroy(&gt);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

/* ---- shutdown -------------------------------------------------------------- */

static void shutdown_on_loop(void *arg) {
  /* Only the non-waiting form is allowed here. */
  sluice_taskpool *p = arg;
  int rc = sluice_taskpool_shutdown(p, 0);
  assert_true(rc == 0 || rc == SLUICE_ETIMEDOUT);
}

static void test_shutdown_with_running_and_queued(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(2, 10);
  sluice_taskpool *p = new_pool(rt, &o);
  gate g;
  gate_init(&g);
  job gj;
  job_init(&gj, 0, 0, &g);
  gj.rt = rt;
  sluice_op *gop = submit_job(p, &gj, SLUICE_PRIORITY_NORMAL, -1);
  gate_wait_started(&g, 1);
  sluice_permit *held = NULL;
  assert_ok(sluice_taskpool_try_acquire(p, &held));
  job x, y;
  job_init(&x, 1, 0, NULL);
  job_init(&y, 2, 0, NULL);
  sluice_op *xop = submit_job(p, &x, SLUICE_PRIORITY_HIGH, -1);
  sluice_op *yop = submit_job(p, &y, SLUICE_PRIORITY_LOW, -1);
  grab ga = {3, 0};
  sluice_op *aop = acquire_async(p, SLUICE_PRIORITY_NORMAL, -1, &ga);

  /* The task and the permit are still running at the deadline. */
  assert_err(SLUICE_ETIMEDOUT, sluice_taskpool_shutdown(p, 20));
  assert_non_null(strstr(sluice_error_message(), "2 still running"));
  /* The waiting ones were closed before it returned. */
  assert_int_equal(sluice_op_done(xop, NULL), 1);
  assert_int_equal(wait_op(xop), SLUICE_ECLOSED);
  assert_int_equal(wait_op(yop), SLUICE_ECLOSED);
  assert_int_equal(wait_op(aop), SLUICE_ECLOSED);
  assert_int_equal(ga.freed, 1);
  assert_int_equal(atomic_load(&x.ran) + atomic_load(&y.ran), 0);

  /* Nothing new is accepted. */
  sluice_permit *w = NULL;
  job z;
  job_init(&z, 4, 0, NULL);
  assert_err(SLUICE_ECLOSED, sluice_taskpool_submit(p, job_task, 0, -1, job_done, &z, NULL, NULL));
  assert_err(SLUICE_ECLOSED, sluice_taskpool_try_acquire(p, &w));
  assert_err(SLUICE_ECLOSED, sluice_taskpool_acquire_wait(p, 0, -1, &w));
  assert_err(SLUICE_ECLOSED, sluice_taskpool_acquire(p, 0, -1, grab_cb, &ga, NULL, NULL));
  assert_int_equal(stats_of(p).closed, 3);
  assert_int_equal(stats_of(p).running, 2);
  tu_on_loop(rt, shutdown_on_loop, p);

  /* Running work finishes; then shutdown returns 0, after `done` ran. */
  assert_ok(sluice_taskpool_release(p, held, 0));
  gate_open(&g);
  assert_ok(sluice_taskpool_shutdown(p, -1));
  assert_int_equal(gj.calls, 1);
  assert_int_equal(gj.status, 0);
  assert_int_equal(gj.on_loop, 1);
  sluice_op_free(gop);
  sluice_taskpool_stats st = stats_of(p);
  assert_int_equal(st.completed, 2);
  assert_int_equal(st.closed, 3);
  assert_int_equal(st.running, 0);
  assert_books_balance(p);
  assert_ok(sluice_taskpool_shutdown(p, 0)); /* again: nothing left */
  gate_destroy(&g);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

/* ---- the adaptive limit ------------------------------------------------ */

/* One round: take every slot (the limit is reached), hold them `ms` on the
 * injected clock, release them with `outcome`; `bad` of them fail. */
static void round_of_permits(sluice_taskpool *p, int n, uint64_t ms, int bad) {
  sluice_permit *held[64];
  for (int i = 0; i < n; i++) assert_ok(sluice_taskpool_try_acquire(p, &held[i]));
  advance_ms(ms);
  for (int i = 0; i < n; i++) assert_ok(sluice_taskpool_release(p, held[i], i < bad ? -1 : 0));
}

static void test_adaptive_limit(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(4, 10);
  o.adaptive = 1;
  o.min_concurrent = 2;
  o.max_concurrent_ceiling = 6;
  o.target_latency_ns = 10 * 1000000ull;
  o.clock = fake_clock;
  sluice_taskpool *p = new_pool(rt, &o);

  /* Fast and busy: one step up per window (a window is `limit` pieces of
   * work), to the ceiling. */
  round_of_permits(p, 4, 1, 0);
  assert_int_equal(stats_of(p).limit, 5);
  round_of_permits(p, 5, 1, 0);
  assert_int_equal(stats_of(p).limit, 6);
  round_of_permits(p, 6, 1, 0);
  assert_int_equal(stats_of(p).limit, 6);
  assert_int_equal(stats_of(p).limit_raised, 2);

  /* Fast but not busy (the limit never reached): no growth. */
  for (int i = 0; i < 6; i++) round_of_permits(p, 2, 1, 0);
  assert_int_equal(stats_of(p).limit, 6);

  /* Slow: down by a quarter (at least one) per window, to the floor. */
  round_of_permits(p, 6, 20, 0);
  assert_int_equal(stats_of(p).limit, 5);
  round_of_permits(p, 5, 20, 0);
  assert_int_equal(stats_of(p).limit, 4);
  round_of_permits(p, 4, 20, 0);
  assert_int_equal(stats_of(p).limit, 3);
  round_of_permits(p, 3, 20, 0);
  assert_int_equal(stats_of(p).limit, 2);
  round_of_permits(p, 2, 20, 0);
  assert_int_equal(stats_of(p).limit, 2);
  assert_int_equal(stats_of(p).limit_lowered, 4);
  assert_books_balance(p);
  sluice_taskpool_free(p);

  /* Errors count like slowness: more than one in ten lowers the limit;
   * one in ten does not. */
  o.max_concurrent = 10;
  o.min_concurrent = 1;
  o.max_concurrent_ceiling = 40;
  p = new_pool(rt, &o);
  round_of_permits(p, 10, 1, 1);
  assert_int_equal(stats_of(p).limit, 11);
  round_of_permits(p, 11, 1, 2);
  assert_int_equal(stats_of(p).limit, 9); /* 11 - 11/4 */
  sluice_taskpool_free(p);

  sluice_runtime_free(rt);
}

static int slow_task(void *ud) {
  (void)ud;
  advance_ms(50);
  return 0;
}

static void test_adaptive_slow_tasks(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(4, 10);
  o.adaptive = 1;
  o.min_concurrent = 1;
  o.target_latency_ns = 10 * 1000000ull;
  o.clock = fake_clock;
  sluice_taskpool *p = new_pool(rt, &o);
  sluice_op *ops[4];
  for (int i = 0; i < 4; i++)
    assert_ok(sluice_taskpool_submit(p, slow_task, 1, -1, NULL, NULL, NULL, &ops[i]));
  for (int i = 0; i < 4; i++) assert_int_equal(wait_op(ops[i]), 0);
  assert_int_equal(stats_of(p).limit, 3);
  assert_int_equal(stats_of(p).limit_lowered, 1);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

/* ---- figures, monitor ---------------------------------------------------- */

static int task_7ms(void *ud) {
  (void)ud;
  advance_ms(7);
  return 0;
}

static void test_figures_with_injected_clock(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(1, 10);
  o.clock = fake_clock;
  sluice_taskpool *p = new_pool(rt, &o);
  sluice_permit *a = NULL;
  assert_ok(sluice_taskpool_try_acquire(p, &a));
  advance_ms(5);
  assert_ok(sluice_taskpool_release(p, a, 0)); /* held 5 ms */
  assert_ok(sluice_taskpool_try_acquire(p, &a));
  grab g = {1, 0};
  g.release_in_cb = p;
  sluice_op *op = acquire_async(p, SLUICE_PRIORITY_NORMAL, -1, &g);
  advance_ms(3);
  assert_ok(sluice_taskpool_release(p, a, 0)); /* held 3 ms; g waited 3 */
  assert_int_equal(wait_op(op), 0);            /* g held 0 */
  assert_ok(sluice_taskpool_submit(p, task_7ms, 1, -1, NULL, NULL, NULL, &op));
  assert_int_equal(wait_op(op), 0); /* ran 7 ms, waited 0 */
  sluice_taskpool_stats st = stats_of(p);
  assert_int_equal(st.run_ns_total, 15 * 1000000ull);
  assert_int_equal(st.queue_wait_ns_total, 3 * 1000000ull);
  assert_int_equal(st.submitted, 4);
  assert_int_equal(st.completed, 4);
  assert_books_balance(p);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

static sluice_monitor_op_stats series_stats(sluice_monitor *m, const char *name) {
  sluice_monitor_op_stats s;
  uint32_t n = sluice_monitor_series_count(m);
  for (uint32_t i = 0; i < n; i++) {
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    assert_ok(sluice_monitor_op_stats_get(m, i, SLUICE_WINDOW_ALL, &s));
    if (strcmp(s.name, name) == 0) return s;
  }
  fail_msg("no series %s", name);
  return s;
}

static void test_monitor(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_monitor *m = NULL;
  assert_ok(sluice_monitor_new(&m, NULL, NULL));
  sluice_taskpool_options o = opts_with(1, 1);
  o.monitor = m;
  o.name = "bot";
  sluice_taskpool *p = new_pool(rt, &o);
  sluice_permit *a = NULL;
  assert_ok(sluice_taskpool_try_acquire(p, &a));
  grab g = {1, 0};
  g.release_in_cb = p;
  sluice_op *op = acquire_async(p, SLUICE_PRIORITY_NORMAL, -1, &g);
  grab refused = {2, 0};
  assert_err(SLUICE_EFULL, sluice_taskpool_acquire(p, 1, -1, grab_cb, &refused, NULL, NULL));
  assert_ok(sluice_taskpool_release(p, a, -3));
  assert_int_equal(wait_op(op), 0);
  job j;
  job_init(&j, 1, -9, NULL);
  assert_int_equal(wait_op(submit_job(p, &j, SLUICE_PRIORITY_NORMAL, -1)), -9);

  sluice_monitor_op_stats s = series_stats(m, "bot.wait");
  assert_int_equal(s.count, 1);
  assert_int_equal(s.errors, 0);
  s = series_stats(m, "bot.run");
  assert_int_equal(s.count, 3); /* two permits and the task */
  assert_int_equal(s.errors, 2);
  s = series_stats(m, "bot.rejected");
  assert_int_equal(s.count, 1);
  assert_int_equal(s.errors, 1);
  sluice_taskpool_free(p);
  sluice_monitor_free(m);
  sluice_runtime_free(rt);
}

/* ---- workers --------------------------------------------------------------- */

static void test_workers(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  /* Default: a worker per task running at once, started when needed. */
  sluice_taskpool_options o = opts_with(3, 10);
  sluice_taskpool *p = new_pool(rt, &o);
  assert_int_equal(stats_of(p).threads, 1);
  gate g;
  gate_init(&g);
  job j[3];
  sluice_op *ops[3];
  for (int i = 0; i < 3; i++) {
    job_init(&j[i], i, 0, &g);
    ops[i] = submit_job(p, &j[i], SLUICE_PRIORITY_NORMAL, -1);
  }
  gate_wait_started(&g, 3);
  assert_int_equal(stats_of(p).threads, 3);
  gate_open(&g);
  for (int i = 0; i < 3; i++) assert_int_equal(wait_op(ops[i]), 0);
  gate_destroy(&g);
  sluice_taskpool_free(p);

  /* workers = 1: tasks with a slot wait for the one thread in turn. */
  o.workers = 1;
  p = new_pool(rt, &o);
  gate_init(&g);
  job_init(&j[0], 0, 0, &g);
  job_init(&j[1], 1, 0, NULL);
  ops[0] = submit_job(p, &j[0], SLUICE_PRIORITY_NORMAL, -1);
  gate_wait_started(&g, 1);
  ops[1] = submit_job(p, &j[1], SLUICE_PRIORITY_NORMAL, -1);
  sluice_taskpool_stats st = stats_of(p);
  assert_int_equal(st.running, 2);
  assert_int_equal(st.threads, 1);
  assert_int_equal(atomic_load(&j[1].ran), 0);
  gate_open(&g);
  assert_int_equal(wait_op(ops[0]), 0);
  assert_int_equal(wait_op(ops[1]), 0);
  assert_int_equal(stats_of(p).threads, 1);
  gate_destroy(&g);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

/* ---- teardown -------------------------------------------------------------- */

static void test_free_with_work_pending(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(2, 10);
  sluice_taskpool *p = new_pool(rt, &o);
  sluice_permit *held = NULL;
  assert_ok(sluice_taskpool_try_acquire(p, &held));
  job run;
  job_init(&run, 0, 0, NULL);
  sluice_op *rop = submit_job(p, &run, SLUICE_PRIORITY_NORMAL, -1);
  job x;
  job_init(&x, 1, 0, NULL);
  grab ga = {2, 0};
  /* Both slots may be taken by now (the task may still run): queue more
   * than can be granted. */
  sluice_op *xop = submit_job(p, &x, SLUICE_PRIORITY_NORMAL, -1);
  sluice_op *aop = acquire_async(p, SLUICE_PRIORITY_NORMAL, -1, &ga);
  grab gb = {3, 0};
  sluice_op *bop = acquire_async(p, SLUICE_PRIORITY_NORMAL, -1, &gb);
  sluice_taskpool_free(p);
  /* Everything has completed, exactly once, before free returned: the
   * task ran (its slot was granted before the free), the others either
   * ran or were closed. */
  assert_int_equal(sluice_op_done(rop, NULL), 1);
  assert_int_equal(wait_op(rop), 0);
  assert_int_equal(run.calls, 1);
  int xs = wait_op(xop), as = wait_op(aop), bs = wait_op(bop);
  assert_true(xs == 0 || xs == SLUICE_ECLOSED);
  assert_true(as == 0 || as == SLUICE_ECLOSED);
  assert_true(bs == 0 || bs == SLUICE_ECLOSED);
  assert_int_equal(x.calls + ga.calls + gb.calls, 3);
  assert_int_equal(x.freed + ga.freed + gb.freed, 3);
  assert_int_equal(atomic_load(&x.ran), xs == 0);
  sluice_runtime_free(rt);
}

static void free_on_loop(void *arg) { sluice_taskpool_free(arg); }

static void test_free_on_loop_thread(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(1, 10);
  sluice_taskpool *p = new_pool(rt, &o);
  sluice_permit *held = NULL;
  assert_ok(sluice_taskpool_try_acquire(p, &held));
  grab ga = {1, 0};
  sluice_op *aop = acquire_async(p, SLUICE_PRIORITY_NORMAL, -1, &ga);
  job x;
  job_init(&x, 2, 0, NULL);
  sluice_op *xop = submit_job(p, &x, SLUICE_PRIORITY_NORMAL, -1);
  tu_on_loop(rt, free_on_loop, p);
  assert_int_equal(sluice_op_done(aop, NULL), 1);
  assert_int_equal(wait_op(aop), SLUICE_ECLOSED);
  assert_int_equal(wait_op(xop), SLUICE_ECLOSED);
  assert_int_equal(atomic_load(&x.ran), 0);
  sluice_runtime_free(rt);
}

static void test_runtime_shutdown_first(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = opts_with(2, 10);
  sluice_taskpool *p = new_pool(rt, &o);
  gate g;
  gate_init(&g);
  job gj;
  job_init(&gj, 0, 0, &g);
  sluice_op *gop = submit_job(p, &gj, SLUICE_PRIORITY_NORMAL, -1);
  gate_wait_started(&g, 1);
  sluice_permit *held = NULL;
  assert_ok(sluice_taskpool_try_acquire(p, &held));
  grab ga = {1, 0};
  sluice_op *aop = acquire_async(p, SLUICE_PRIORITY_NORMAL, -1, &ga);
  job x;
  job_init(&x, 2, 0, NULL);
  sluice_op *xop = submit_job(p, &x, SLUICE_PRIORITY_NORMAL, -1);

  assert_ok(sluice_runtime_close(rt));
  /* Every callback ran, with ECLOSED; the running task's function goes on. */
  assert_int_equal(wait_op(aop), SLUICE_ECLOSED);
  assert_int_equal(wait_op(xop), SLUICE_ECLOSED);
  assert_int_equal(wait_op(gop), SLUICE_ECLOSED);
  assert_int_equal(gj.calls, 1);
  assert_int_equal(atomic_load(&x.ran), 0);
  sluice_permit *w = NULL;
  assert_err(SLUICE_ECLOSED, sluice_taskpool_try_acquire(p, &w));
  assert_ok(sluice_taskpool_release(p, held, 0));
  gate_open(&g);
  assert_ok(sluice_taskpool_shutdown(p, -1)); /* waits for the function */
  sluice_taskpool_stats st = stats_of(p);
  assert_int_equal(st.completed, 2);
  assert_int_equal(st.closed, 2);
  assert_books_balance(p);
  gate_destroy(&g);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_options),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_shutdown_from_own_task),
      cmocka_unit_test(test_tasks_run_on_named_workers),
      cmocka_unit_test(test_permits_share_the_limit),
      cmocka_unit_test(test_async_acquire_granted_at_once),
      cmocka_unit_test(test_priority_order_and_no_starvation),
      cmocka_unit_test(test_low_is_never_starved),
      cmocka_unit_test(test_task_priorities),
      cmocka_unit_test(test_queue_bound_rejects),
      cmocka_unit_test(test_queue_full_waits_for_room),
      cmocka_unit_test(test_deadline_expires_without_running),
      cmocka_unit_test(test_deadline_while_waiting_for_a_worker),
      cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_resize_while_busy),
      cmocka_unit_test(test_shutdown_with_running_and_queued),
      cmocka_unit_test(test_adaptive_limit),
      cmocka_unit_test(test_adaptive_slow_tasks),
      cmocka_unit_test(test_figures_with_injected_clock),
      cmocka_unit_test(test_monitor),
      cmocka_unit_test(test_workers),
      cmocka_unit_test(test_free_with_work_pending),
      cmocka_unit_test(test_free_on_loop_thread),
      cmocka_unit_test(test_runtime_shutdown_first),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Asynchronous retry runs on the loop: attempts reported inline, later and
 * from other threads; per-attempt timeouts and late reports; cancellation
 * while sleeping, during an attempt, after a report, and racing the retry
 * timer and reporting threads; the policy freed and the runtime shut down
 * with runs pending; the total deadline on an injected clock; an open
 * breaker. SLUICE_TEST_CONCURRENT */
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/breaker.h>
#include <sluice/retry.h>

#include "testutil.h"

#define MS 1000000ull

enum mode { INLINE, STASH, THREAD };

/* One run's script and what happened to it. */
struct job {
  enum mode mode;
  int fail_first;     /* attempts 1..fail_first fail (retryable), later ones succeed */
  int code;           /* the failures' code */
  int outcome_override; /* INLINE: report this outcome instead (bad input) */
  uint64_t hint;      /* retry-after of the failures */
  uint32_t spin;      /* THREAD: busy iterations before reporting */
  _Atomic int attempts_seen;
  _Atomic int stashed;
  sluice_retry_attempt *stash[64];
  _Atomic int report_rc; /* THREAD: the last report's return */
  int inline_rc;         /* INLINE: the report's return */
  /* Completion: written on the loop thread, read after sluice_op_wait. */
  _Atomic int done_calls;
  int status, last_code;
  uint32_t attempts;
  _Atomic int freed;
};

static struct job *new_job(enum mode m, int fail_first) {
  struct job *j = calloc(1, sizeof *j);
  j->mode = m;
  j->fail_first = fail_first;
  j->code = -503;
  j->outcome_override = -1;
  return j;
}

static void report(struct job *j, sluice_retry_attempt *a, int *rc_out) {
  uint32_t n = sluice_retry_attempt_number(a);
  int rc;
  if ((int)n > j->fail_first)
    rc = sluice_retry_attempt_done(a, SLUICE_RETRY_SUCCESS, 0, 0);
  else
    rc = sluice_retry_attempt_done(a, SLUICE_RETRY_RETRYABLE, j->code, j->hint);
  *rc_out = rc;
}

/* ---- a reporting thread pool ------------------------------------------ */

struct item {
  struct job *job;
  sluice_retry_attempt *a;
};
static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cv = PTHREAD_COND_INITIALIZER;
static struct item q_items[4096];
static int q_head, q_tail, q_stop;
static pthread_t q_threads[2];

static void *reporter_main(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&q_mu);
    while (q_head == q_tail && !q_stop) pthread_cond_wait(&q_cv, &q_mu);
    if (q_head == q_tail) {
      pthread_mutex_unlock(&q_mu);
      return NULL;
    }
    struct item it = q_items[q_head++ % 4096];
    pthread_mutex_unlock(&q_mu);
    for (volatile uint32_t i = 0; i < it.job->spin; i++) {
    }
    int rc;
    report(it.job, it.a, &rc);
    atomic_store(&it.job->report_rc, rc);
  }
}

static void reporters_start(void) {
  q_head = q_tail = q_stop = 0;
  for (int i = 0; i < 2; i++) pthread_create(&q_threads[i], NULL, reporter_main, NULL);
}

static void reporters_stop(void) {
  pthread_mutex_lock(&q_mu);
  q_stop = 1;
  pthread_cond_broadcast(&q_cv);
  pthread_mutex_unlock(&q_mu);
  for (int i = 0; i < 2; i++) pthread_join(q_threads[i], NULL);
}

static void enqueue(struct job *j, sluice_retry_attempt *a) {
  pthread_mutex_lock(&q_mu);
  assert_true(q_tail - q_head < 4096);
  q_items[q_tail++ % 4096] = (struct item){j, a};
  pthread_cond_signal(&q_cv);
  pthread_mutex_unlock(&q_mu);
}

/* ---- callbacks --------------------------------------------------------- */

static _Atomic int g_bad; /* checks that failed on the loop thread */

static void attempt_fn(void *ud, sluice_retry_attempt *a) {
  struct job *j = ud;
  atomic_fetch_add(&j->attempts_seen, 1);
  /* No cmocka asserts off the test thread: count, and check later. */
  if (sluice_retry_attempt_active(a) != 1) atomic_fetch_add(&g_bad, 1);
  switch (j->mode) {
    case INLINE:
      if (j->outcome_override >= 0)
        j->inline_rc = sluice_retry_attempt_done(a, j->outcome_override, j->code, 0);
      else
        report(j, a, &j->inline_rc);
      break;
    case STASH: {
      int k = atomic_load(&j->stashed);
      j->stash[k] = a;
      atomic_store(&j->stashed, k + 1);
      break;
    }
    case THREAD:
      enqueue(j, a);
      break;
  }
}

static void done_cb(void *ud, int status, int last_code, uint32_t attempts) {
  struct job *j = ud;
  j->status = status;
  j->last_code = last_code;
  j->attempts = attempts;
  atomic_fetch_add(&j->done_calls, 1);
}

static void free_cb(void *ud) { atomic_fetch_add(&((struct job *)ud)->freed, 1); }

static _Atomic int g_events;
static _Atomic uint64_t g_last_delay;
static void on_retry(void *ud, uint32_t attempt, int code, uint64_t delay_ns) {
  (void)ud;
  (void)attempt;
  (void)code;
  atomic_store(&g_last_delay, delay_ns);
  atomic_fetch_add(&g_events, 1);
}

static sluice_retry_options quick_opts(void) {
  sluice_retry_options o = SLUICE_RETRY_OPTIONS_INIT;
  o.base_delay_ms = 1;
  o.max_delay_ms = 2;
  o.jitter = SLUICE_RETRY_JITTER_NONE;
  o.budget_ratio = 0;
  o.seed = 1;
  o.on_retry = on_retry;
  atomic_store(&g_events, 0);
  return o;
}

static sluice_retry *make(sluice_runtime *rt, const sluice_retry_options *o) {
  sluice_retry *p = NULL;
  assert_ok(sluice_retry_new(&p, rt, o));
  return p;
}

static sluice_op *start(sluice_retry *p, struct job *j, uint64_t deadline) {
  sluice_op *op = NULL;
  assert_ok(sluice_retry_run(p, deadline, attempt_fn, done_cb, j, free_cb, &op));
  return op;
}

static void finish(sluice_op *op, struct job *j) {
  assert_int_equal(atomic_load(&g_bad), 0);
  int status = 1;
  assert_ok(sluice_op_wait(op, -1, &status));
  assert_int_equal(status, j->status);
  assert_int_equal(atomic_load(&j->done_calls), 1);
  assert_int_equal(atomic_load(&j->freed), 1);
  sluice_op_free(op);
}

static sluice_retry_stats stats(sluice_retry *p) {
  sluice_retry_stats st;
  memset(&st, 0, sizeof st);
  st.size = sizeof st;
  assert_ok(sluice_retry_stats_get(p, &st));
  return st;
}

static void noop(void *arg) { (void)arg; }

/* ---- tests ------------------------------------------------------------- */

static void test_first_attempt_succeeds(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_retry_options o = quick_opts();
  sluice_retry *p = make(rt, &o);
  struct job *j = new_job(INLINE, 0);
  sluice_op *op = start(p, j, 0);
  finish(op, j);
  assert_int_equal(j->status, 0);
  assert_int_equal(j->last_code, 0);
  assert_int_equal(j->attempts, 1);
  assert_int_equal(j->inline_rc, 0);
  sluice_retry_stats st = stats(p);
  assert_int_equal(st.runs, 1);
  assert_int_equal(st.attempts, 1);
  assert_int_equal(st.successes_first, 1);
  sluice_retry_free(p);
  sluice_runtime_free(rt);
  free(j);
}

static void test_retries_then_success(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_retry_options o = quick_opts();
  o.max_attempts = 5;
  sluice_retry *p = make(rt, &o);
  struct job *j = new_job(INLINE, 2);
  sluice_op *op = start(p, j, 0);
  finish(op, j);
  assert_int_equal(j->status, 0);
  assert_int_equal(j->attempts, 3);
  assert_int_equal(atomic_load(&g_events), 2);
  /* A retry-after hint longer than the backoff sets the wait. */
  struct job *h = new_job(INLINE, 1);
  h->hint = 20 * MS;
  op = start(p, h, 0);
  finish(op, h);
  assert_int_equal(h->attempts, 2);
  assert_int_equal(atomic_load(&g_last_delay), 20 * MS);
  /* Attempts run out: the last code. */
  struct job *f = new_job(INLINE, 100);
  op = start(p, f, 0);
  finish(op, f);
  assert_int_equal(f->status, -503);
  assert_int_equal(f->last_code, -503);
  assert_int_equal(f->attempts, 5);
  sluice_retry_stats st = stats(p);
  assert_int_equal(st.successes_after_retry, 2);
  assert_int_equal(st.failures_after_retry, 1);
  assert_int_equal(st.attempts, 3 + 2 + 5);
  sluice_retry_free(p);
  sluice_runtime_free(rt);
  free(j);
  free(h);
  free(f);
}

static void test_bad_report(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_retry_options o = quick_opts();
  o.max_attempts = 1;
  sluice_retry *p = make(rt, &o);
  struct job *j = new_job(INLINE, 0);
  j->outcome_override = 9; /* not an outcome: a retryable EINVAL */
  sluice_op *op = start(p, j, 0);
  finish(op, j);
  assert_int_equal(j->inline_rc, SLUICE_EINVAL);
  assert_int_equal(j->status, SLUICE_EINVAL);
  struct job *k = new_job(INLINE, 0);
  k->outcome_override = SLUICE_RETRY_PERMANENT;
  k->code = 0; /* a failure without a code */
  op = start(p, k, 0);
  finish(op, k);
  assert_int_equal(k->inline_rc, SLUICE_EINVAL);
  assert_int_equal(k->status, SLUICE_EINVAL);
  sluice_retry_free(p);
  sluice_runtime_free(rt);
  free(j);
  free(k);
}

static void test_reports_from_threads(void **state) {
  (void)state;
  enum { RUNS = 300 };
  sluice_runtime *rt = tu_runtime();
  sluice_retry_options o = quick_opts();
  o.max_attempts = 4;
  sluice_retry *p = make(rt, &o);
  reporters_start();
  struct job *jobs[RUNS];
  sluice_op *ops[RUNS];
  for (int i = 0; i < RUNS; i++) {
    jobs[i] = new_job(THREAD, i % 3);
    ops[i] = start(p, jobs[i], 0);
  }
  for (int i = 0; i < RUNS; i++) {
    finish(ops[i], jobs[i]);
    assert_int_equal(jobs[i]->status, 0);
    assert_int_equal(jobs[i]->attempts, (uint32_t)(i % 3 + 1));
    assert_int_equal(atomic_load(&jobs[i]->report_rc), 0);
  }
  reporters_stop();
  sluice_retry_stats st = stats(p);
  assert_int_equal(st.runs, RUNS);
  assert_int_equal(st.in_flight, 0);
  assert_int_equal(st.successes_first, RUNS / 3);
  assert_int_equal(st.successes_after_retry, 2 * RUNS / 3);
  assert_int_equal(st.attempts, RUNS / 3 * (1 + 2 + 3));
  assert_int_equal(st.late_reports, 0);
  sluice_retry_free(p);
  sluice_runtime_free(rt);
  for (int i = 0; i < RUNS; i++) free(jobs[i]);
}

static void test_attempt_timeout_and_late_reports(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_retry_options o = quick_opts();
  o.max_attempts = 3;
  o.attempt_timeout_ms = 5;
  sluice_retry *p = make(rt, &o);
  struct job *j = new_job(STASH, 0);
  uint64_t t0 = sluice_now_ns();
  sluice_op *op = start(p, j, 0);
  finish(op, j);
  /* Every attempt timed out: the last one's code is the run's. */
  assert_int_equal(j->status, SLUICE_ETIMEDOUT);
  assert_int_equal(j->last_code, SLUICE_ETIMEDOUT);
  assert_int_equal(j->attempts, 3);
  assert_int_equal(atomic_load(&j->stashed), 3);
  for (int i = 0; i < 3; i++) {
    sluice_retry_attempt *a = j->stash[i];
    assert_int_equal(sluice_retry_attempt_number(a), (uint32_t)i + 1);
    assert_true(sluice_retry_attempt_deadline(a) >= t0 + 5 * MS);
    assert_int_equal(sluice_retry_attempt_active(a), 0);
    /* The late report is ignored, and gives the attempt back. */
    assert_err(SLUICE_ETIMEDOUT, sluice_retry_attempt_done(a, SLUICE_RETRY_SUCCESS, 0, 0));
  }
  sluice_retry_stats st = stats(p);
  assert_int_equal(st.attempt_timeouts, 3);
  assert_int_equal(st.late_reports, 3);
  assert_int_equal(st.failures_after_retry, 1);
  sluice_retry_free(p);
  sluice_runtime_free(rt);
  free(j);
}

static sluice_op *g_cancel_op;
static void cancel_on_loop(void *arg) {
  (void)arg;
  assert_ok(sluice_op_cancel(g_cancel_op));
}

static void test_cancel_while_sleeping(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_retry_options o = quick_opts();
  o.base_delay_ms = o.max_delay_ms = 60000;
  sluice_retry *p = make(rt, &o);
  struct job *j = new_job(INLINE, 100);
  g_cancel_op = start(p, j, 0);
  /* Posted after the run's start, so the first attempt has failed and the
   * run sleeps when the cancel comes. */
  tu_on_loop(rt, cancel_on_loop, NULL);
  finish(g_cancel_op, j);
  assert_int_equal(j->status, SLUICE_ECANCELED);
  assert_int_equal(j->attempts, 1);
  assert_int_equal(j->last_code, -503);
  assert_int_equal(atomic_load(&g_events), 1);
  sluice_retry_stats st = stats(p);
  assert_int_equal(st.cancelled, 1);
  assert_int_equal(st.in_flight, 0);
  sluice_retry_free(p);
  sluice_runtime_free(rt);
  free(j);
}

static void test_cancel_during_attempt(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_breaker_options bo = SLUICE_BREAKER_OPTIONS_INIT;
  bo.half_open_trials = 1;
  sluice_breaker *b = NULL;
  assert_ok(sluice_breaker_new(&b, NULL, &bo));
  assert_ok(sluice_breaker_set_state(b, SLUICE_BREAKER_HALF_OPEN));
  sluice_retry_options o = quick_opts();
  o.breaker = b;
  sluice_retry *p = make(rt, &o);
  struct job *j = new_job(STASH, 0);
  sluice_op *op = start(p, j, 0);
  tu_on_loop(rt, noop, NULL); /* the attempt has been made */
  assert_int_equal(atomic_load(&j->stashed), 1);
  assert_err(SLUICE_EOPEN, sluice_breaker_allow(b, NULL)); /* its trial is taken */
  assert_ok(sluice_op_cancel(op));
  finish(op, j);
  assert_int_equal(j->status, SLUICE_ECANCELED);
  assert_int_equal(j->attempts, 1);
  /* The attempt's trial went back to the breaker. */
  uint64_t t;
  assert_ok(sluice_breaker_allow(b, &t));
  assert_ok(sluice_breaker_release(b, t));
  /* The late report is ignored, safely. */
  assert_int_equal(sluice_retry_attempt_active(j->stash[0]), 0);
  assert_err(SLUICE_ECANCELED, sluice_retry_attempt_done(j->stash[0], SLUICE_RETRY_SUCCESS, 0, 0));
  sluice_retry_stats st = stats(p);
  assert_int_equal(st.cancelled, 1);
  assert_int_equal(st.late_reports, 1);
  sluice_retry_free(p);
  sluice_breaker_free(b);
  sluice_runtime_free(rt);
  free(j);
}

/* A report that reached the loop's queue before the cancel: a success wins
 * the race; a failure is recorded and the run ends cancelled, no retry. */
struct report_then_cancel {
  struct job *j;
  sluice_op *op;
  int outcome;
  int rc;
};
static void report_then_cancel_on_loop(void *arg) {
  struct report_then_cancel *r = arg;
  r->rc = sluice_retry_attempt_done(r->j->stash[0], r->outcome, r->outcome ? -7 : 0, 0);
  assert_ok(sluice_op_cancel(r->op));
}

static void test_report_beats_cancel(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_retry_options o = quick_opts();
  sluice_retry *p = make(rt, &o);
  for (int outcome = SLUICE_RETRY_SUCCESS; outcome <= SLUICE_RETRY_RETRYABLE; outcome++) {
    struct job *j = new_job(STASH, 0);
    sluice_op *op = start(p, j, 0);
    tu_on_loop(rt, noop, NULL);
    assert_int_equal(atomic_load(&j->stashed), 1);
    struct report_then_cancel r = {j, op, outcome, 1};
    tu_on_loop(rt, report_then_cancel_on_loop, &r);
    assert_int_equal(r.rc, 0);
    finish(op, j);
    assert_int_equal(j->attempts, 1);
    if (outcome == SLUICE_RETRY_SUCCESS) {
      assert_int_equal(j->status, 0);
    } else {
      assert_int_equal(j->status, SLUICE_ECANCELED);
      assert_int_equal(j->last_code, -7);
    }
    free(j);
  }
  sluice_retry_free(p);
  sluice_runtime_free(rt);
}

struct canceller {
  sluice_op *op;
  uint32_t spin;
  pthread_barrier_t *go;
};
static void *cancel_later(void *arg) {
  struct canceller *c = arg;
  pthread_barrier_wait(c->go);
  for (volatile uint32_t i = 0; i < c->spin; i++) {
  }
  sluice_op_cancel(c->op);
  return NULL;
}

/* Cancels from two threads at arbitrary points of runs that retry every
 * millisecond: each run ends exactly once, cancelled, with its user data
 * released once; nothing leaks (ASan) and nothing races (TSan). */
static void test_cancel_races_retry_timer(void **state) {
  (void)state;
  enum { ROUNDS = 300 };
  sluice_runtime *rt = tu_runtime();
  sluice_retry_options o = quick_opts();
  o.max_attempts = 1000000;
  o.jitter = SLUICE_RETRY_JITTER_FULL;
  sluice_retry *p = make(rt, &o);
  uint64_t rng = 5;
  pthread_barrier_t go;
  pthread_barrier_init(&go, NULL, 2);
  for (int i = 0; i < ROUNDS; i++) {
    struct job *j = new_job(INLINE, 1 << 30);
    sluice_op *op = start(p, j, 0);
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    struct canceller c1 = {op, (uint32_t)(rng >> 33) % 400000, &go};
    struct canceller c2 = {op, (uint32_t)(rng >> 13) % 400000, &go};
    pthread_t tid;
    pthread_create(&tid, NULL, cancel_later, &c1);
    cancel_later(&c2);
    pthread_join(tid, NULL);
    finish(op, j);
    assert_int_equal(j->status, SLUICE_ECANCELED);
    assert_int_equal(j->attempts, (uint32_t)atomic_load(&j->attempts_seen));
    free(j);
  }
  pthread_barrier_destroy(&go);
  sluice_retry_stats st = stats(p);
  assert_int_equal(st.in_flight, 0);
  assert_true(st.cancelled <= ROUNDS); /* those cancelled before they began are not runs */
  assert_int_equal(st.runs, st.cancelled);
  sluice_retry_free(p);
  sluice_runtime_free(rt);
}

/* Reports from a thread racing cancels: either the report was taken and
 * the run succeeded, or it came late and the run was cancelled. */
static void test_cancel_races_report(void **state) {
  (void)state;
  enum { ROUNDS = 300 };
  sluice_runtime *rt = tu_runtime();
  sluice_retry_options o = quick_opts();
  sluice_retry *p = make(rt, &o);
  reporters_start();
  uint64_t rng = 11;
  pthread_barrier_t go;
  pthread_barrier_init(&go, NULL, 1);
  int won = 0, lost = 0;
  for (int i = 0; i < ROUNDS; i++) {
    struct job *j = new_job(THREAD, 0);
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    j->spin = (uint32_t)(rng >> 40) % 20000;
    atomic_store(&j->report_rc, 1);
    sluice_op *op = start(p, j, 0);
    struct canceller c = {op, (uint32_t)(rng >> 20) % 20000, &go};
    cancel_later(&c);
    finish(op, j);
    /* The reporter may still be about to report: wait for its answer. */
    while (atomic_load(&j->attempts_seen) && atomic_load(&j->report_rc) == 1) sched_yield();
    if (j->status == 0) {
      won++;
      assert_int_equal(atomic_load(&j->report_rc), 0);
    } else {
      /* A success taken before the cancel always wins, so a cancelled run
       * means the report (if the attempt was made at all) came late. */
      lost++;
      assert_int_equal(j->status, SLUICE_ECANCELED);
      if (atomic_load(&j->attempts_seen))
        assert_int_equal(atomic_load(&j->report_rc), SLUICE_ECANCELED);
    }
    free(j);
  }
  reporters_stop();
  pthread_barrier_destroy(&go);
  assert_int_equal(won + lost, ROUNDS);
  sluice_retry_free(p);
  sluice_runtime_free(rt);
}

static void test_free_policy_with_pending_runs(void **state) {
  (void)state;
  enum { N = 5 };
  sluice_runtime *rt = tu_runtime();
  sluice_retry_options o = quick_opts();
  o.base_delay_ms = o.max_delay_ms = 60000;
  sluice_retry *p = make(rt, &o);
  struct job *sleeping[N], *waiting[N];
  sluice_op *ops[2 * N];
  for (int i = 0; i < N; i++) {
    sleeping[i] = new_job(INLINE, 100);
    waiting[i] = new_job(STASH, 0);
    ops[i] = start(p, sleeping[i], 0);
    ops[N + i] = start(p, waiting[i], 0);
  }
  tu_on_loop(rt, noop, NULL);
  /* Free returns once every pending run has ended with ECLOSED. */
  sluice_retry_free(p);
  for (int i = 0; i < N; i++) {
    assert_int_equal(atomic_load(&sleeping[i]->done_calls), 1);
    assert_int_equal(sleeping[i]->status, SLUICE_ECLOSED);
    assert_int_equal(sleeping[i]->attempts, 1);
    assert_int_equal(atomic_load(&waiting[i]->done_calls), 1);
    assert_int_equal(waiting[i]->status, SLUICE_ECLOSED);
    assert_err(SLUICE_ECLOSED, sluice_retry_attempt_done(waiting[i]->stash[0], SLUICE_RETRY_SUCCESS, 0, 0));
  }
  for (int i = 0; i < N; i++) {
    finish(ops[i], sleeping[i]);
    finish(ops[N + i], waiting[i]);
    free(sleeping[i]);
    free(waiting[i]);
  }
  sluice_runtime_free(rt);
}

static void test_runtime_shutdown_ends_runs(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_retry_options o = quick_opts();
  o.base_delay_ms = o.max_delay_ms = 60000;
  sluice_retry *p = make(rt, &o);
  struct job *s = new_job(INLINE, 100), *w = new_job(STASH, 0);
  sluice_op *op1 = start(p, s, 0), *op2 = start(p, w, 0);
  tu_on_loop(rt, noop, NULL);
  assert_ok(sluice_runtime_close(rt));
  assert_int_equal(s->status, SLUICE_ECLOSED);
  assert_int_equal(w->status, SLUICE_ECLOSED);
  assert_err(SLUICE_ECLOSED, sluice_retry_attempt_done(w->stash[0], SLUICE_RETRY_SUCCESS, 0, 0));
  /* A closed runtime takes no new runs. */
  struct job *late = new_job(INLINE, 0);
  assert_err(SLUICE_ECLOSED, sluice_retry_run(p, 0, attempt_fn, done_cb, late, free_cb, NULL));
  assert_int_equal(atomic_load(&late->freed), 0);
  finish(op1, s);
  finish(op2, w);
  sluice_retry_free(p); /* after close, before free: fine */
  sluice_runtime_free(rt);
  free(s);
  free(w);
  free(late);
}

/* The total deadline on an injected clock that only the attempts move: each
 * attempt takes 30 ms of fake time, the deadline is 100 ms away, the
 * backoff is 1 ms. Attempts start at 0, 30, 60, 90; the fourth ends at
 * 120, past the deadline: ETIMEDOUT, deterministically. */
static _Atomic uint64_t g_fake;
static uint64_t fake_clock(void *ud) {
  (void)ud;
  return atomic_load(&g_fake);
}
static void slow_attempt(void *ud, sluice_retry_attempt *a) {
  struct job *j = ud;
  atomic_fetch_add(&j->attempts_seen, 1);
  if (atomic_load(&g_fake) >= 1000 * MS + 100 * MS) atomic_fetch_add(&g_bad, 1); /* started late */
  atomic_fetch_add(&g_fake, 30 * MS);
  sluice_retry_attempt_done(a, SLUICE_RETRY_RETRYABLE, -9, 0);
}

static void test_deadline_on_injected_clock(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_retry_options o = quick_opts();
  o.max_attempts = 100;
  o.multiplier = 1;
  o.total_timeout_ms = 100;
  o.clock = fake_clock;
  atomic_store(&g_fake, 1000 * MS);
  sluice_retry *p = make(rt, &o);
  struct job *j = new_job(INLINE, 0);
  sluice_op *op = NULL;
  assert_ok(sluice_retry_run(p, 0, slow_attempt, done_cb, j, free_cb, &op));
  finish(op, j);
  assert_int_equal(j->status, SLUICE_ETIMEDOUT);
  assert_int_equal(j->last_code, -9);
  assert_int_equal(j->attempts, 4);
  assert_int_equal(atomic_load(&g_events), 3);
  assert_int_equal(atomic_load(&g_last_delay), 1 * MS);
  assert_int_equal(stats(p).deadline_stops, 1);
  sluice_retry_free(p);

  /* In real time: an attempt that never reports is cut off at the run's
   * deadline (no attempt timeout set), and the run ends there. */
  o = quick_opts();
  o.total_timeout_ms = 30;
  p = make(rt, &o);
  struct job *w = new_job(STASH, 0);
  uint64_t t0 = sluice_now_ns();
  op = start(p, w, 0);
  finish(op, w);
  assert_int_equal(w->status, SLUICE_ETIMEDOUT);
  assert_int_equal(w->attempts, 1);
  assert_true(sluice_retry_attempt_deadline(w->stash[0]) >= t0 + 30 * MS);
  assert_err(SLUICE_ETIMEDOUT, sluice_retry_attempt_done(w->stash[0], SLUICE_RETRY_SUCCESS, 0, 0));
  /* A deadline already past when the run starts: no attempt at all. */
  struct job *z = new_job(INLINE, 0);
  op = start(p, z, 1);
  finish(op, z);
  assert_int_equal(z->status, SLUICE_ETIMEDOUT);
  assert_int_equal(z->attempts, 0);
  assert_int_equal(atomic_load(&z->attempts_seen), 0);
  sluice_retry_free(p);
  sluice_runtime_free(rt);
  free(j);
  free(w);
  free(z);
}

static void test_open_breaker_fails_fast(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_breaker *b = NULL;
  assert_ok(sluice_breaker_new(&b, rt, NULL));
  assert_ok(sluice_breaker_set_state(b, SLUICE_BREAKER_OPEN));
  sluice_retry_options o = quick_opts();
  o.breaker = b;
  sluice_retry *p = make(rt, &o);
  struct job *j = new_job(INLINE, 0);
  sluice_op *op = start(p, j, 0);
  finish(op, j);
  assert_int_equal(j->status, SLUICE_EOPEN);
  assert_int_equal(j->attempts, 0);
  assert_int_equal(atomic_load(&j->attempts_seen), 0);
  assert_int_equal(stats(p).breaker_refusals, 1);
  sluice_retry_free(p);
  sluice_breaker_free(b);
  sluice_runtime_free(rt);
  free(j);
}

/* Started on the loop thread, a run still never calls back inside the call. */
struct loop_start {
  sluice_retry *p;
  struct job *j;
  sluice_op *op;
  int seen_inside;
};
static void start_on_loop(void *arg) {
  struct loop_start *s = arg;
  assert_ok(sluice_retry_run(s->p, 0, attempt_fn, done_cb, s->j, free_cb, &s->op));
  s->seen_inside = atomic_load(&s->j->attempts_seen) + atomic_load(&s->j->done_calls);
}

static void test_run_started_on_loop(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_retry_options o = quick_opts();
  sluice_retry *p = make(rt, &o);
  struct loop_start s = {p, new_job(INLINE, 1), NULL, -1};
  tu_on_loop(rt, start_on_loop, &s);
  assert_int_equal(s.seen_inside, 0);
  finish(s.op, s.j);
  assert_int_equal(s.j->status, 0);
  assert_int_equal(s.j->attempts, 2);
  sluice_retry_free(p);
  sluice_runtime_free(rt);
  free(s.j);
}

/* Listeners called in the middle of a run's step (on_retry; the breaker's
 * state listener inside the attempt's record) cancel the run whose only
 * remaining references are the library's own: it ends once, cancelled,
 * and nothing is touched after it is gone (ASan). */
static _Atomic(sluice_op *) g_listener_op;
static void cancel_from_listener(void) {
  sluice_op *op = atomic_exchange(&g_listener_op, NULL);
  if (op) sluice_op_cancel(op);
}
static void on_retry_cancel(void *ud, uint32_t attempt, int code, uint64_t delay) {
  (void)ud;
  (void)attempt;
  (void)code;
  (void)delay;
  cancel_from_listener();
}
static void on_state_cancel(void *ud, int from, int to, uint64_t gen) {
  (void)ud;
  (void)from;
  (void)gen;
  if (to == SLUICE_BREAKER_OPEN) cancel_from_listener();
}

struct publish {
  sluice_retry *p;
  struct job *j;
};
static void start_and_publish(void *arg) {
  struct publish *pb = arg;
  sluice_op *op = NULL;
  /* On the loop thread no attempt can run before the listener has the
   * handle; then ours is dropped, leaving only the library's references. */
  if (sluice_retry_run(pb->p, 0, attempt_fn, done_cb, pb->j, free_cb, &op) != 0) {
    atomic_fetch_add(&g_bad, 1);
    return;
  }
  atomic_store(&g_listener_op, op);
  sluice_op_free(op);
}

static void run_until_listener_cancels(sluice_runtime *rt, sluice_retry *p) {
  struct job *j = new_job(INLINE, 1 << 30);
  struct publish pb = {p, j};
  tu_on_loop(rt, start_and_publish, &pb);
  while (atomic_load(&j->freed) == 0) sched_yield();
  assert_int_equal(atomic_load(&j->done_calls), 1);
  assert_int_equal(j->status, SLUICE_ECANCELED);
  assert_int_equal(atomic_load(&g_bad), 0);
  free(j);
}

static void test_listener_cancels_run(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_retry_options o = quick_opts();
  o.max_attempts = 1000000;
  o.on_retry = on_retry_cancel;
  sluice_retry *p = make(rt, &o);
  for (int i = 0; i < 20; i++) run_until_listener_cancels(rt, p);
  sluice_retry_free(p);

  sluice_breaker_options bo = SLUICE_BREAKER_OPTIONS_INIT;
  bo.window_calls = 2;
  bo.minimum_calls = 2;
  bo.failure_rate_percent = 100;
  bo.open_ms = 1; /* half-open again almost at once: the run keeps going */
  bo.half_open_trials = 1;
  bo.on_state_change = on_state_cancel;
  sluice_breaker *b = NULL;
  assert_ok(sluice_breaker_new(&b, NULL, &bo));
  o = quick_opts();
  o.max_attempts = 1000000;
  o.breaker = b;
  p = make(rt, &o);
  for (int i = 0; i < 20; i++) {
    assert_ok(sluice_breaker_set_state(b, SLUICE_BREAKER_CLOSED));
    run_until_listener_cancels(rt, p);
  }
  sluice_retry_free(p);
  sluice_breaker_free(b);
  sluice_runtime_free(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_first_attempt_succeeds),
      cmocka_unit_test(test_retries_then_success),
      cmocka_unit_test(test_bad_report),
      cmocka_unit_test(test_reports_from_threads),
      cmocka_unit_test(test_attempt_timeout_and_late_reports),
      cmocka_unit_test(test_cancel_while_sleeping),
      cmocka_unit_test(test_cancel_during_attempt),
      cmocka_unit_test(test_report_beats_cancel),
      cmocka_unit_test(test_cancel_races_retry_timer),
      cmocka_unit_test(test_cancel_races_report),
      cmocka_unit_test(test_free_policy_with_pending_runs),
      cmocka_unit_test(test_runtime_shutdown_ends_runs),
      cmocka_unit_test(test_deadline_on_injected_clock),
      cmocka_unit_test(test_open_breaker_fails_fast),
      cmocka_unit_test(test_run_started_on_loop),
      cmocka_unit_test(test_listener_cancels_run),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Waiting on a limiter: first come first served per key, deadlines,
 * cancellation (also racing a grant), the blocking form, limit changes and
 * blocks seen by waiters, and teardown with waits pending. The limiter's
 * clock is injected and moved by the test, then sluice_limiter_wake makes
 * waiters look again, so no outcome depends on timing.
 * SLUICE_TEST_CONCURRENT: also run under ThreadSanitizer. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/limiter.h>

#include "testutil.h"

#define HOUR 3600000000000ull

static _Atomic uint64_t g_clock;
static uint64_t test_clock(void *ud) {
  (void)ud;
  return atomic_load(&g_clock);
}
static void advance(uint64_t ns) { atomic_fetch_add(&g_clock, ns); }

static sluice_limiter *make_on(sluice_runtime *rt, int algo, uint64_t limit, uint64_t window,
                               uint64_t max_keys, int on_full) {
  sluice_limiter_options o;
  assert_ok(sluice_limiter_options_init(&o, SLUICE_LIMITER_OPTIONS_VERSION));
  o.algorithm = algo;
  o.limit = limit;
  o.window_ns = window;
  o.max_keys = max_keys;
  o.on_full = on_full;
  o.clock = test_clock;
  sluice_limiter *l = NULL;
  assert_ok(sluice_limiter_new(&l, rt, &o));
  return l;
}

/* Completion order, written on the loop thread only. */
typedef struct record {
  int order[512];
  int status[512];
  int calls[512];
  int n;
} record;

typedef struct waiter {
  record *rec;
  int id;
} waiter;

static void record_cb(void *ud, int status) {
  waiter *w = ud;
  w->rec->status[w->id] = status;
  w->rec->calls[w->id]++;
  w->rec->order[w->rec->n++] = w->id;
}

static sluice_op *start(sluice_limiter *l, const char *key, uint64_t cost, int64_t timeout_ms,
                        waiter *w) {
  sluice_op *op = NULL;
  assert_ok(sluice_limiter_acquire(l, key, strlen(key), cost, timeout_ms, record_cb, w, NULL, &op));
  return op;
}

static int finish(sluice_op *op) {
  int status = 1;
  assert_ok(sluice_op_wait(op, -1, &status));
  sluice_op_free(op);
  return status;
}

static int pending(sluice_op *op) { return sluice_op_done(op, NULL) == 0; }

/* Every start posted before it has run once this returns: a request on a
 * fresh key, queued last, has been granted. */
static void barrier(sluice_limiter *l) {
  static int n;
  char key[32];
  snprintf(key, sizeof key, "barrier-%d", n++);
  assert_int_equal(sluice_limiter_wait(l, key, strlen(key), 1, -1), 0);
}

static void test_fifo_per_key(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_limiter *l = make_on(rt, SLUICE_LIMITER_SLIDING_LOG, 1, HOUR, 100, 0);
  atomic_store(&g_clock, 1000000000);
  assert_ok(sluice_limiter_check(l, "k", 1, 1, NULL));
  record rec = {0};
  waiter w[4];
  sluice_op *op[4];
  for (int i = 0; i < 4; i++) w[i] = (waiter){&rec, i};
  for (int i = 0; i < 3; i++) op[i] = start(l, "k", 1, -1, &w[i]);
  op[3] = start(l, "other", 1, -1, &w[3]);
  assert_int_equal(finish(op[3]), 0); /* a free key passes at once */
  for (int i = 0; i < 3; i++) assert_true(pending(op[i]));
  /* Checks do not jump the queue. */
  sluice_limiter_result r = {sizeof r};
  assert_err(SLUICE_EREJECTED, sluice_limiter_check(l, "k", 1, 1, &r));
  assert_int_equal(r.reason, SLUICE_LIMITER_QUEUED);
  assert_true(r.retry_after_ns > 0);
  assert_err(SLUICE_EREJECTED, sluice_limiter_peek(l, "k", 1, 1, &r));
  assert_int_equal(r.reason, SLUICE_LIMITER_QUEUED);
  for (int i = 0; i < 3; i++) {
    advance(HOUR);
    assert_ok(sluice_limiter_wake(l));
    assert_int_equal(finish(op[i]), 0);
    for (int j = i + 1; j < 3; j++) assert_true(pending(op[j]));
  }
  assert_int_equal(rec.n, 4);
  assert_int_equal(rec.order[0], 3);
  for (int i = 0; i < 3; i++) assert_int_equal(rec.order[i + 1], i);
  sluice_limiter_stats st = {sizeof st};
  assert_ok(sluice_limiter_stats_get(l, &st));
  assert_int_equal(st.waits, 4);
  assert_int_equal(st.waiting, 0);
  assert_int_equal(st.allowed, 5);
  sluice_limiter_free(l);
  sluice_runtime_free(rt);
}

/* A small request behind a big one waits, though it would fit now. */
static void test_fifo_across_costs(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_limiter *l = make_on(rt, SLUICE_LIMITER_SLIDING_LOG, 3, HOUR, 100, 0);
  atomic_store(&g_clock, 5);
  assert_ok(sluice_limiter_check(l, "k", 1, 2, NULL));
  record rec = {0};
  waiter a = {&rec, 0}, b = {&rec, 1};
  sluice_op *opa = start(l, "k", 2, -1, &a);
  sluice_op *opb = start(l, "k", 1, -1, &b);
  barrier(l);
  assert_true(pending(opa));
  assert_true(pending(opb));
  advance(HOUR);
  assert_ok(sluice_limiter_wake(l));
  assert_int_equal(finish(opa), 0);
  assert_int_equal(finish(opb), 0);
  assert_int_equal(rec.order[0], 0);
  assert_int_equal(rec.order[1], 1);
  sluice_limiter_result r = {sizeof r};
  assert_err(SLUICE_EREJECTED, sluice_limiter_check(l, "k", 1, 1, &r)); /* 2 + 1 taken */
  assert_int_equal(r.reason, SLUICE_LIMITER_LIMITED);
  sluice_limiter_free(l);
  sluice_runtime_free(rt);
}

static void test_deadline(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_limiter *l = make_on(rt, SLUICE_LIMITER_GCRA, 1, HOUR, 100, 0);
  atomic_store(&g_clock, 77);
  assert_ok(sluice_limiter_check(l, "k", 1, 1, NULL));
  record rec = {0};
  waiter a = {&rec, 0}, b = {&rec, 1}, c = {&rec, 2}, d = {&rec, 3};
  sluice_op *opa = start(l, "k", 1, 20, &a);
  sluice_op *opb = start(l, "k", 1, -1, &b);
  assert_int_equal(finish(opa), SLUICE_ETIMEDOUT);
  assert_true(pending(opb)); /* promoted to the head, still waiting */
  /* timeout 0: only what can pass when the request reaches the loop. */
  assert_int_equal(finish(start(l, "k2", 1, 0, &c)), 0);
  assert_int_equal(finish(start(l, "k2", 1, 0, &d)), SLUICE_ETIMEDOUT);
  advance(HOUR);
  assert_ok(sluice_limiter_wake(l));
  assert_int_equal(finish(opb), 0);
  sluice_limiter_stats st = {sizeof st};
  assert_ok(sluice_limiter_stats_get(l, &st));
  assert_int_equal(st.wait_timeouts, 2);
  assert_int_equal(st.waiting, 0);
  sluice_limiter_free(l);
  sluice_runtime_free(rt);
}

struct loop_cancel {
  sluice_limiter *l;
  sluice_op *op;
  tu_counter c;
};

static void acquire_and_cancel(void *arg) {
  struct loop_cancel *x = arg;
  assert_ok(sluice_limiter_acquire(x->l, "k", 1, 1, -1, tu_count_cb, &x->c, NULL, &x->op));
  assert_ok(sluice_op_cancel(x->op));
}

static void test_cancel(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_limiter *l = make_on(rt, SLUICE_LIMITER_SLIDING_LOG, 1, HOUR, 100, 0);
  atomic_store(&g_clock, 1);
  assert_ok(sluice_limiter_check(l, "k", 1, 1, NULL));
  record rec = {0};
  waiter a = {&rec, 0}, b = {&rec, 1}, c = {&rec, 2};
  sluice_op *opa = start(l, "k", 1, -1, &a);
  sluice_op *opb = start(l, "k", 1, -1, &b);
  barrier(l);
  assert_ok(sluice_op_cancel(opa)); /* the head: b moves up */
  assert_ok(sluice_op_cancel(opa));
  assert_int_equal(finish(opa), SLUICE_ECANCELED);
  sluice_limiter_result r = {sizeof r};
  assert_err(SLUICE_EREJECTED, sluice_limiter_check(l, "k", 1, 1, &r));
  assert_int_equal(r.reason, SLUICE_LIMITER_QUEUED);
  advance(HOUR);
  assert_ok(sluice_limiter_wake(l));
  sluice_op *ref = opb;
  int status = 1;
  assert_ok(sluice_op_wait(ref, -1, &status));
  assert_int_equal(status, 0);
  assert_ok(sluice_op_cancel(opb)); /* after the grant: no effect */
  assert_int_equal(finish(opb), 0);
  assert_int_equal(rec.calls[0] + rec.calls[1], 2);
  /* The queue is empty again: a check sees the limit, not waiters. */
  assert_err(SLUICE_EREJECTED, sluice_limiter_check(l, "k", 1, 1, &r));
  assert_int_equal(r.reason, SLUICE_LIMITER_LIMITED);
  /* Cancelled from another thread right after the call, and on the loop
   * thread before the request has even started there. */
  sluice_op *opc = start(l, "k", 1, -1, &c);
  assert_ok(sluice_op_cancel(opc));
  assert_int_equal(finish(opc), SLUICE_ECANCELED);
  struct loop_cancel lc = {l, NULL, {0}};
  tu_on_loop(rt, acquire_and_cancel, &lc);
  assert_int_equal(lc.c.calls, 1); /* decided at once, inside the cancel */
  assert_int_equal(lc.c.last_status, SLUICE_ECANCELED);
  assert_int_equal(finish(lc.op), SLUICE_ECANCELED);
  sluice_limiter_stats st = {sizeof st};
  assert_ok(sluice_limiter_stats_get(l, &st));
  assert_int_equal(st.wait_cancels, 3);
  sluice_limiter_free(l);
  sluice_runtime_free(rt);
}

/* The loop grants, a little at a time as the clock moves, while another
 * thread cancels: every request completes once, grants keep the queue
 * order, and exactly the granted ones consumed units. */
enum { RACE_N = 300, RACE_CAP = 1000 };

struct canceller {
  sluice_op **op;
  int round;
};

static void *cancel_some(void *arg) {
  struct canceller *c = arg;
  for (int i = 0; i < RACE_N; i++) {
    int j = (c->round % 2) ? RACE_N - 1 - i : (i * 7) % RACE_N;
    if ((i + c->round) % 3) assert_ok(sluice_op_cancel(c->op[j]));
  }
  return NULL;
}

static void test_cancel_races_grant(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  for (int round = 0; round < 10; round++) {
    sluice_limiter *l = make_on(rt, SLUICE_LIMITER_SLIDING_LOG, RACE_CAP, HOUR, 100, 0);
    /* The window fills one unit per ns, so it frees one per ns too. */
    const uint64_t t0 = 1000;
    for (uint64_t i = 0; i < RACE_CAP; i++) {
      atomic_store(&g_clock, t0 + i);
      assert_ok(sluice_limiter_check(l, "k", 1, 1, NULL));
    }
    record *rec = calloc(1, sizeof *rec);
    waiter w[RACE_N];
    sluice_op *op[RACE_N];
    for (int i = 0; i < RACE_N; i++) {
      w[i] = (waiter){rec, i};
      op[i] = start(l, "k", 1, -1, &w[i]);
    }
    atomic_store(&g_clock, t0 + HOUR - 1);
    struct canceller c = {op, round};
    pthread_t t;
    pthread_create(&t, NULL, cancel_some, &c);
    for (int i = 0; i < RACE_CAP; i += 5) {
      advance(5);
      assert_ok(sluice_limiter_wake(l));
    }
    pthread_join(t, NULL);
    int granted = 0, canceled = 0;
    for (int i = 0; i < RACE_N; i++) {
      int s = finish(op[i]);
      assert_true(s == 0 || s == SLUICE_ECANCELED);
      s == 0 ? granted++ : canceled++;
    }
    assert_int_equal(granted + canceled, RACE_N);
    assert_true(granted >= RACE_N / 3); /* those never cancelled */
    for (int i = 0; i < RACE_N; i++) assert_int_equal(rec->calls[i], 1);
    int last = -1;
    for (int i = 0; i < rec->n; i++)
      if (rec->status[rec->order[i]] == 0) {
        assert_true(rec->order[i] > last);
        last = rec->order[i];
      }
    /* Every unit of the first fill has left the window; the grants have
     * not: what is left is exactly what the grants did not take. */
    sluice_limiter_result r = {sizeof r};
    assert_ok(sluice_limiter_peek(l, "k", 1, 1, &r));
    assert_int_equal(r.remaining, RACE_CAP - granted - 1);
    sluice_limiter_stats st = {sizeof st};
    assert_ok(sluice_limiter_stats_get(l, &st));
    assert_int_equal(st.wait_cancels, canceled);
    assert_int_equal(st.waiting, 0);
    sluice_limiter_free(l);
    free(rec);
  }
  sluice_runtime_free(rt);
}

struct blocked_call {
  sluice_limiter *l;
  int rc;
};

static void *blocked_wait(void *arg) {
  struct blocked_call *c = arg;
  c->rc = sluice_limiter_wait(c->l, "slow", 4, 1, -1);
  return NULL;
}

static void wait_on_loop(void *arg) {
  sluice_limiter *l = arg;
  assert_int_equal(sluice_limiter_wait(l, "x", 1, 1, 10), SLUICE_EDEADLK);
}

static void test_blocking_wait(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_limiter *l = make_on(rt, SLUICE_LIMITER_GCRA, 1, HOUR, 100, 0);
  atomic_store(&g_clock, 3);
  assert_ok(sluice_limiter_wait(l, "w", 1, 1, 1000));
  assert_err(SLUICE_ETIMEDOUT, sluice_limiter_wait(l, "w", 1, 1, 20));
  assert_non_null(strstr(sluice_error_message(), "deadline"));
  assert_err(SLUICE_EINVAL, sluice_limiter_wait(l, "w", 1, 2, 20)); /* never */
  tu_on_loop(rt, wait_on_loop, l);
  /* A thread blocks until the clock moves. */
  assert_ok(sluice_limiter_check(l, "slow", 4, 1, NULL));
  struct blocked_call c = {l, 1};
  pthread_t t;
  pthread_create(&t, NULL, blocked_wait, &c);
  sluice_limiter_stats st = {sizeof st};
  do {
    assert_ok(sluice_limiter_stats_get(l, &st));
  } while (st.waiting == 0);
  advance(HOUR);
  assert_ok(sluice_limiter_wake(l));
  pthread_join(t, NULL);
  assert_int_equal(c.rc, 0);
  sluice_limiter_free(l);
  sluice_runtime_free(rt);
}

static void test_limit_changes_reach_waiters(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_limiter *l = make_on(rt, SLUICE_LIMITER_SLIDING_LOG, 5, HOUR, 100, 0);
  atomic_store(&g_clock, 9);
  assert_ok(sluice_limiter_check(l, "k", 1, 5, NULL));
  record rec = {0};
  waiter a = {&rec, 0}, b = {&rec, 1}, c = {&rec, 2};
  sluice_op *big = start(l, "k", 4, -1, &a);
  sluice_op *small = start(l, "k", 1, -1, &b);
  barrier(l);
  /* Lowered below the head's cost: it could never pass, so it ends; the
   * next one keeps waiting. */
  assert_ok(sluice_limiter_set_limit(l, 3, HOUR, 0));
  assert_int_equal(finish(big), SLUICE_EINVAL);
  assert_true(pending(small));
  /* Raised: the log now has room at once. */
  assert_ok(sluice_limiter_set_limit(l, 6, HOUR, 0));
  assert_int_equal(finish(small), 0);
  /* A block holds waiters; unblocking lets them go. */
  assert_ok(sluice_limiter_block(l, "b", 1, HOUR));
  sluice_op *opc = start(l, "b", 1, -1, &c);
  barrier(l);
  assert_true(pending(opc));
  assert_int_equal(sluice_limiter_unblock(l, "b", 1), 1);
  assert_int_equal(finish(opc), 0);
  sluice_limiter_free(l);
  sluice_runtime_free(rt);
}

static void test_key_cap_and_waits(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  for (int policy = 0; policy < 2; policy++) {
    sluice_limiter *l = make_on(rt, SLUICE_LIMITER_GCRA, 1, HOUR, 1, policy);
    atomic_store(&g_clock, 1);
    assert_ok(sluice_limiter_check(l, "a", 1, 1, NULL));
    record rec = {0};
    waiter w = {&rec, 0};
    sluice_op *op = NULL;
    int rc = sluice_limiter_acquire(l, "b", 1, 1, -1, record_cb, &w, NULL, &op);
    if (policy == SLUICE_LIMITER_FULL_ALLOW) {
      assert_int_equal(rc, 0);
      assert_int_equal(finish(op), 0); /* passes untracked */
    } else {
      assert_int_equal(rc, SLUICE_ELIMIT);
      assert_int_equal(rec.n, 0);
    }
    sluice_limiter_free(l);
  }
  sluice_runtime_free(rt);
}

static void test_teardown_with_waits(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_limiter *l = make_on(rt, SLUICE_LIMITER_SLIDING_WINDOW, 1, HOUR, 100, 0);
  atomic_store(&g_clock, HOUR * 10);
  assert_ok(sluice_limiter_check(l, "k", 1, 1, NULL));
  tu_counter c[3] = {{0}};
  sluice_op *op = NULL;
  assert_ok(sluice_limiter_acquire(l, "k", 1, 1, -1, tu_count_cb, &c[0], tu_count_free, &op));
  assert_ok(sluice_limiter_acquire(l, "k", 1, 1, 60000, tu_count_cb, &c[1], tu_count_free, NULL));
  sluice_limiter_free(l); /* completes them before returning */
  for (int i = 0; i < 2; i++) {
    assert_int_equal(c[i].calls, 1);
    assert_int_equal(c[i].freed, 1);
    assert_int_equal(c[i].last_status, SLUICE_ECLOSED);
  }
  int status = 0;
  assert_int_equal(sluice_op_done(op, &status), 1);
  assert_int_equal(status, SLUICE_ECLOSED);
  sluice_op_free(op);

  /* The runtime's shutdown ends waits too; the limiter is freed after. */
  l = make_on(rt, SLUICE_LIMITER_SLIDING_WINDOW, 1, HOUR, 100, 0);
  assert_ok(sluice_limiter_check(l, "k", 1, 1, NULL));
  assert_ok(sluice_limiter_acquire(l, "k", 1, 1, -1, tu_count_cb, &c[2], tu_count_free, NULL));
  assert_ok(sluice_runtime_close(rt));
  assert_int_equal(c[2].calls, 1);
  assert_int_equal(c[2].last_status, SLUICE_ECLOSED);
  assert_err(SLUICE_ECLOSED, sluice_limiter_acquire(l, "k", 1, 1, -1, tu_count_cb, &c[0], NULL, NULL));
  assert_err(SLUICE_ECLOSED, sluice_limiter_wait(l, "z", 1, 1, -1));
  sluice_limiter_stats st = {sizeof st};
  assert_ok(sluice_limiter_stats_get(l, &st));
  assert_int_equal(st.waiting, 0);
  sluice_limiter_free(l);
  assert_int_equal(c[0].calls, 1);
  sluice_runtime_free(rt);

  /* Created on a closed runtime: refused. */
  rt = tu_runtime();
  assert_ok(sluice_runtime_close(rt));
  sluice_limiter_options o;
  sluice_limiter_options_init(&o, SLUICE_LIMITER_OPTIONS_VERSION);
  assert_err(SLUICE_ECLOSED, sluice_limiter_new(&l, rt, &o));
  sluice_runtime_free(rt);
}

/* On the real clock, a waiter is woken by its timer alone. */
static void test_real_clock_wake(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_monitor *m;
  assert_ok(sluice_monitor_new(&m, NULL, NULL));
  sluice_limiter_options o;
  sluice_limiter_options_init(&o, SLUICE_LIMITER_OPTIONS_VERSION);
  o.algorithm = SLUICE_LIMITER_GCRA;
  o.limit = 1;
  o.window_ns = 20000000; /* one every 20 ms */
  o.monitor = m;
  sluice_limiter *l;
  assert_ok(sluice_limiter_new(&l, rt, &o));
  assert_ok(sluice_limiter_check(l, "k", 1, 1, NULL));
  for (int i = 0; i < 3; i++) assert_ok(sluice_limiter_wait(l, "k", 1, 1, -1));
  int found = 0;
  for (uint32_t i = 0; i < sluice_monitor_series_count(m); i++) {
    sluice_monitor_op_stats os = {sizeof os};
    assert_ok(sluice_monitor_op_stats_get(m, i, SLUICE_WINDOW_ALL, &os));
    if (strcmp(os.name, "limiter.wait") == 0) {
      found = 1;
      assert_int_equal(os.count, 3);
      assert_int_equal(os.errors, 0);
    }
  }
  assert_true(found);
  sluice_limiter_free(l);
  sluice_monitor_free(m);
  sluice_runtime_free(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fifo_per_key),
      cmocka_unit_test(test_fifo_across_costs),
      cmocka_unit_test(test_deadline),
      cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_cancel_races_grant),
      cmocka_unit_test(test_blocking_wait),
      cmocka_unit_test(test_limit_changes_reach_waiters),
      cmocka_unit_test(test_key_cap_and_waits),
      cmocka_unit_test(test_teardown_with_waits),
      cmocka_unit_test(test_real_clock_wake),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

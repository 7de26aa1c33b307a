/* sluice_locks: options and bad input, guards, tokens, shared and
 * exclusive modes, FIFO hand-off, deadlines, cancellation, several keys,
 * the live-key cap, held-too-long reports, the memory bound and teardown.
 * SLUICE_TEST_CONCURRENT: the loop thread grants while this one asks, so
 * the file also runs under ThreadSanitizer. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"
#include <sluice/locks.h>

#define K(s) (s), (sizeof(s) - 1)

static sluice_locks *new_locks(sluice_runtime *rt, const sluice_locks_options *o) {
  sluice_locks *l = NULL;
  assert_ok(sluice_locks_new(&l, rt, o));
  assert_non_null(l);
  return l;
}

static sluice_locks_stats stats_of(sluice_locks *l) {
  sluice_locks_stats st;
  memset(&st, 0, sizeof st);
  st.size = sizeof st;
  assert_ok(sluice_locks_stats_get(l, &st));
  return st;
}

/* Completion record of an asynchronous acquire (loop thread writes; the
 * test reads after sluice_op_wait). */
typedef struct grab {
  int calls, status, freed;
  sluice_lock_guard *guard;
  int order;
  sluice_locks *release_in_cb; /* if set, release the guard at once */
} grab;

static int g_order; /* loop thread only */

static void grab_cb(void *ud, int status, sluice_lock_guard *guard) {
  grab *g = ud;
  g->calls++;
  g->status = status;
  g->guard = guard;
  g->order = g_order++;
  if (status == 0 && g->release_in_cb) {
    assert_ok(sluice_locks_release(g->release_in_cb, guard));
    g->guard = NULL;
  }
  if (status != 0) assert_null(guard);
}
static void grab_free(void *ud) { ((grab *)ud)->freed++; }

/* Polls the figures until `what` reaches n (a state, not a time: the
 * 60 s bound only turns a hang into a failure). */
static sluice_locks_stats wait_stat(sluice_locks *l, size_t offset, uint64_t n) {
  uint64_t guard_until = sluice_now_ns() + 60ull * 1000000000ull;
  sluice_locks_stats st;
  for (;;) {
    st = stats_of(l);
    uint64_t v;
    memcpy(&v, (char *)&st + offset, sizeof v);
    if (v >= n || sluice_now_ns() > guard_until) return st;
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
  }
}
#define WAIT_STAT(l, field, n) wait_stat((l), offsetof(sluice_locks_stats, field), (n))

static int wait_op(sluice_op *op) {
  int status = 1;
  assert_ok(sluice_op_wait(op, -1, &status));
  sluice_op_free(op);
  return status;
}

/* ---- options and bad input --------------------------------------------- */

static void test_options(void **state) {
  (void)state;
  sluice_locks_options o;
  assert_err(SLUICE_EINVAL, sluice_locks_options_init(NULL, SLUICE_LOCKS_OPTIONS_VERSION));
  assert_err(SLUICE_EVERSION, sluice_locks_options_init(&o, 0));
  assert_err(SLUICE_EVERSION, sluice_locks_options_init(&o, 2));
  assert_ok(sluice_locks_options_init(&o, SLUICE_LOCKS_OPTIONS_VERSION));
  sluice_locks_options lit = SLUICE_LOCKS_OPTIONS_INIT;
  assert_memory_equal(&o, &lit, sizeof o);
  assert_int_equal(o.max_locks, 2000);
  assert_int_equal(o.cleanup_interval_ms, 300000);

  sluice_runtime *rt = tu_runtime();
  sluice_locks *l = (sluice_locks *)1;
  assert_err(SLUICE_EINVAL, sluice_locks_new(NULL, rt, NULL));
  assert_err(SLUICE_EINVAL, sluice_locks_new(&l, NULL, NULL));
  assert_null(l);
  o.max_keys = 0;
  assert_err(SLUICE_EINVAL, sluice_locks_new(&l, rt, &o));
  assert_non_null(strstr(sluice_error_message(), "max_keys"));
  o.max_keys = 10;
  o.max_locks = (1u << 24) + 1;
  assert_err(SLUICE_EINVAL, sluice_locks_new(&l, rt, &o));
  assert_non_null(strstr(sluice_error_message(), "max_locks"));
  o.max_locks = 0; /* no cache at all is allowed */
  o.on_full = 7;
  assert_err(SLUICE_EINVAL, sluice_locks_new(&l, rt, &o));
  assert_non_null(strstr(sluice_error_message(), "on_full"));
  o.on_full = SLUICE_LOCKS_FULL_WAIT;
  o.hold_limit_ms = 0x80000001u;
  assert_err(SLUICE_EINVAL, sluice_locks_new(&l, rt, &o));
  o.hold_limit_ms = 0;
  o.version = 9;
  assert_err(SLUICE_EVERSION, sluice_locks_new(&l, rt, &o));
  o.version = SLUICE_LOCKS_OPTIONS_VERSION;
  o.cleanup_interval_ms = 0;
  l = new_locks(rt, &o);
  sluice_locks_free(l);
  sluice_locks_free(NULL);
  sluice_runtime_free(rt);
}

static void test_bad_input(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_locks *l = new_locks(rt, NULL);
  sluice_lock_guard *g = (sluice_lock_guard *)1;
  grab gr = {0};
  static char huge[SLUICE_LOCKS_MAX_KEY + 1];
  sluice_lock_key keys[2] = {{"a", 1, SLUICE_LOCK_EXCLUSIVE}, {"", 0, SLUICE_LOCK_EXCLUSIVE}};

  assert_err(SLUICE_EINVAL, sluice_locks_try(NULL, K("a"), 0, &g));
  assert_null(g);
  assert_err(SLUICE_EINVAL, sluice_locks_try(l, K("a"), 0, NULL));
  assert_err(SLUICE_EINVAL, sluice_locks_try(l, NULL, 1, 0, &g));
  assert_err(SLUICE_EINVAL, sluice_locks_try(l, "a", 0, 0, &g));
  assert_non_null(strstr(sluice_error_message(), "empty"));
  assert_err(SLUICE_EINVAL, sluice_locks_try(l, huge, sizeof huge, 0, &g));
  assert_non_null(strstr(sluice_error_message(), "65537"));
  assert_ok(sluice_locks_try(l, huge, SLUICE_LOCKS_MAX_KEY, 0, &g)); /* the largest is fine */
  assert_ok(sluice_locks_release(l, g));
  assert_err(SLUICE_EINVAL, sluice_locks_try(l, K("a"), 2, &g));
  assert_err(SLUICE_EINVAL, sluice_locks_try(l, K("a"), -1, &g));

  assert_err(SLUICE_EINVAL, sluice_locks_try_many(l, NULL, 1, &g));
  assert_err(SLUICE_EINVAL, sluice_locks_try_many(l, keys, 0, &g));
  assert_err(SLUICE_EINVAL, sluice_locks_try_many(l, keys, SLUICE_LOCKS_MAX_MANY + 1, &g));
  assert_err(SLUICE_EINVAL, sluice_locks_try_many(l, keys, 2, &g));
  assert_non_null(strstr(sluice_error_message(), "keys[1]"));
  assert_err(SLUICE_EINVAL, sluice_locks_try_many(l, keys, 1, NULL));

  assert_err(SLUICE_EINVAL, sluice_locks_acquire(NULL, K("a"), 0, 10, grab_cb, &gr, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_locks_acquire(l, K("a"), 0, 10, NULL, &gr, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_locks_acquire(l, "a", 0, 0, 10, grab_cb, &gr, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_locks_acquire(l, K("a"), 5, 10, grab_cb, &gr, NULL, NULL));
  assert_err(SLUICE_EINVAL,
             sluice_locks_acquire(l, K("a"), 0, INT64_MAX, grab_cb, &gr, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_locks_acquire_many(l, keys, 2, 10, grab_cb, &gr, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_locks_acquire_many(l, NULL, 2, 10, grab_cb, &gr, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_locks_lock(l, K("a"), 0, 10, NULL));
  assert_err(SLUICE_EINVAL, sluice_locks_lock(NULL, K("a"), 0, 10, &g));
  assert_err(SLUICE_EINVAL, sluice_locks_lock_many(l, keys, 0, 10, &g));

  assert_err(SLUICE_EINVAL, sluice_locks_release(NULL, g));
  assert_err(SLUICE_EINVAL, sluice_locks_release(l, NULL));
  /* Garbage is refused, not dereferenced. */
  assert_err(SLUICE_ESTATE, sluice_locks_release(l, (sluice_lock_guard *)&gr));
  assert_err(SLUICE_ESTATE, sluice_locks_release(l, (sluice_lock_guard *)(uintptr_t)~0ull));
  uint64_t token;
  assert_err(SLUICE_EINVAL, sluice_locks_token(l, NULL, &token));
  assert_err(SLUICE_EINVAL, sluice_locks_token(NULL, (sluice_lock_guard *)1, &token));
  assert_err(SLUICE_ESTATE, sluice_locks_token(l, (sluice_lock_guard *)1, &token));
  assert_err(SLUICE_EINVAL, sluice_locks_trim(NULL));
  sluice_locks_stats st = {2};
  assert_err(SLUICE_EINVAL, sluice_locks_stats_get(l, &st));
  assert_err(SLUICE_EINVAL, sluice_locks_stats_get(l, NULL));
  assert_err(SLUICE_EINVAL, sluice_locks_stats_get(NULL, &st));

  assert_int_equal(gr.calls + gr.freed, 0); /* nothing was taken */
  st = stats_of(l);
  assert_int_equal(st.live_keys, 0);
  assert_int_equal(st.bad_releases, 2);
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

/* ---- guards and tokens -------------------------------------------------- */

static void test_try_release_and_stale_guards(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_locks *l = new_locks(rt, NULL);
  sluice_lock_guard *g1, *g2, *g3;
  assert_ok(sluice_locks_try(l, K("user:1"), SLUICE_LOCK_EXCLUSIVE, &g1));
  assert_non_null(g1);
  assert_err(SLUICE_EAGAIN, sluice_locks_try(l, K("user:1"), SLUICE_LOCK_EXCLUSIVE, &g2));
  assert_null(g2);
  assert_err(SLUICE_EAGAIN, sluice_locks_try(l, K("user:1"), SLUICE_LOCK_SHARED, &g2));
  assert_ok(sluice_locks_try(l, K("user:2"), SLUICE_LOCK_EXCLUSIVE, &g2));
  sluice_locks_stats st = stats_of(l);
  assert_int_equal(st.live_keys, 2);
  assert_int_equal(st.held, 2);
  assert_int_equal(st.busy, 2);
  assert_int_equal(st.acquisitions, 2);

  assert_ok(sluice_locks_release(l, g1));
  assert_err(SLUICE_ESTATE, sluice_locks_release(l, g1)); /* double release */
  assert_non_null(strstr(sluice_error_message(), "already released"));
  /* The record is reused for the next grant; the old guard stays stale. */
  assert_ok(sluice_locks_try(l, K("user:1"), SLUICE_LOCK_EXCLUSIVE, &g3));
  assert_true(g3 != g1);
  assert_err(SLUICE_ESTATE, sluice_locks_release(l, g1));
  uint64_t token = 0;
  assert_err(SLUICE_ESTATE, sluice_locks_token(l, g1, &token));
  assert_err(SLUICE_EAGAIN, sluice_locks_try(l, K("user:1"), 0, &g1)); /* still held by g3 */

  /* A guard of another manager is refused and changes nothing here. */
  sluice_locks *other = new_locks(rt, NULL);
  assert_err(SLUICE_ESTATE, sluice_locks_release(other, g3));
  assert_err(SLUICE_ESTATE, sluice_locks_release(l, (sluice_lock_guard *)0x8000000000000001ull));
  sluice_lock_guard *og;
  assert_ok(sluice_locks_try(other, K("user:1"), 0, &og)); /* separate key spaces */
  assert_ok(sluice_locks_release(other, og));
  sluice_locks_free(other);

  assert_ok(sluice_locks_release(l, g3));
  assert_ok(sluice_locks_release(l, g2));
  st = stats_of(l);
  assert_int_equal(st.live_keys, 0);
  assert_int_equal(st.held, 0);
  assert_int_equal(st.cached_entries, 2);
  assert_int_equal(st.bad_releases, 3);
  assert_int_equal(st.peak_live_keys, 2);
  assert_ok(sluice_locks_trim(l));
  st = stats_of(l);
  assert_int_equal(st.cached_entries, 0);
  assert_int_equal(st.trimmed, 2);
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

static uint64_t token_of(sluice_locks *l, sluice_lock_guard *g) {
  uint64_t t = 0;
  assert_ok(sluice_locks_token(l, g, &t));
  return t;
}

static void test_tokens_only_increase(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_locks_options o = SLUICE_LOCKS_OPTIONS_INIT;
  o.max_locks = 1; /* entries are freed and made again between grants */
  sluice_locks *l = new_locks(rt, &o);
  char key[32];
  uint64_t last[50] = {0};
  for (int round = 0; round < 200; round++) {
    for (int k = 0; k < 50; k++) {
      int n = snprintf(key, sizeof key, "key-%d", k);
      sluice_lock_guard *g;
      assert_ok(sluice_locks_try(l, key, (size_t)n, round % 3 == 0 ? SLUICE_LOCK_SHARED : 0, &g));
      uint64_t t = token_of(l, g);
      assert_true(t > last[k]);
      last[k] = t;
      assert_ok(sluice_locks_release(l, g));
    }
    if (round % 50 == 0) assert_ok(sluice_locks_trim(l));
  }

  /* A grant of several keys outranks every earlier grant of each of them,
   * and every later grant of each outranks it. */
  sluice_lock_key ks[3] = {{"key-1", 5, 0}, {"key-2", 5, SLUICE_LOCK_SHARED}, {"key-3", 5, 0}};
  sluice_lock_guard *gm, *g;
  assert_ok(sluice_locks_try_many(l, ks, 3, &gm));
  uint64_t tm = token_of(l, gm);
  for (int k = 1; k <= 3; k++) assert_true(tm > last[k]);
  assert_ok(sluice_locks_release(l, gm));
  for (int k = 1; k <= 3; k++) {
    int n = snprintf(key, sizeof key, "key-%d", k);
    assert_ok(sluice_locks_try(l, key, (size_t)n, 0, &g));
    assert_true(token_of(l, g) > tm);
    assert_ok(sluice_locks_release(l, g));
  }
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

/* ---- modes and FIFO ------------------------------------------------------ */

static void test_shared_and_exclusive(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_locks *l = new_locks(rt, NULL);
  sluice_lock_guard *r1, *r2, *w;
  assert_ok(sluice_locks_try(l, K("group:9"), SLUICE_LOCK_SHARED, &r1));
  assert_ok(sluice_locks_try(l, K("group:9"), SLUICE_LOCK_SHARED, &r2));
  assert_err(SLUICE_EAGAIN, sluice_locks_try(l, K("group:9"), SLUICE_LOCK_EXCLUSIVE, &w));
  assert_int_equal(stats_of(l).held, 2);

  /* A queued writer blocks shared requests that come after it. */
  grab gw = {0}, gr = {0};
  sluice_op *ow, *orr;
  assert_ok(sluice_locks_acquire(l, K("group:9"), SLUICE_LOCK_EXCLUSIVE, -1, grab_cb, &gw,
                                 grab_free, &ow));
  /* The request reaches the loop before the next one (posted in order);
   * wait until it is queued. */
  sluice_locks_stats st = WAIT_STAT(l, waiters, 1);
  assert_int_equal(st.waiters, 1);
  assert_err(SLUICE_EAGAIN, sluice_locks_try(l, K("group:9"), SLUICE_LOCK_SHARED, &w));
  assert_ok(sluice_locks_acquire(l, K("group:9"), SLUICE_LOCK_SHARED, -1, grab_cb, &gr,
                                 grab_free, &orr));
  assert_ok(sluice_locks_release(l, r1));
  assert_ok(sluice_locks_release(l, r2));
  assert_int_equal(wait_op(ow), 0);
  assert_int_equal(gw.calls, 1);
  assert_int_equal(sluice_op_done(orr, NULL), 0); /* still behind the writer */
  assert_ok(sluice_locks_release(l, gw.guard));
  assert_int_equal(wait_op(orr), 0);
  assert_true(gr.order > gw.order);
  assert_ok(sluice_locks_release(l, gr.guard));
  st = stats_of(l);
  assert_int_equal(st.held, 0);
  assert_int_equal(st.live_keys, 0);
  assert_int_equal(st.contended, 2);
  assert_true(gw.freed == 1 && gr.freed == 1);
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

static void test_fifo_hand_off(void **state) {
  (void)state;
  enum { N = 40 };
  sluice_runtime *rt = tu_runtime();
  sluice_locks *l = new_locks(rt, NULL);
  sluice_lock_guard *g;
  assert_ok(sluice_locks_try(l, K("k"), 0, &g));
  grab gs[N];
  sluice_op *ops[N];
  memset(gs, 0, sizeof gs);
  g_order = 0; /* the loop thread is idle: nobody else touches it now */
  for (int i = 0; i < N; i++) {
    /* Mixed modes: consecutive shared requests are granted together, but
     * never ahead of an earlier request. */
    int mode = (i % 5 == 1 || i % 5 == 2) ? SLUICE_LOCK_SHARED : SLUICE_LOCK_EXCLUSIVE;
    gs[i].release_in_cb = l;
    assert_ok(sluice_locks_acquire(l, K("k"), mode, -1, grab_cb, &gs[i], NULL, &ops[i]));
  }
  sluice_locks_stats st = WAIT_STAT(l, waiters, N);
  assert_int_equal(st.waiters, N);
  assert_ok(sluice_locks_release(l, g));
  for (int i = 0; i < N; i++) assert_int_equal(wait_op(ops[i]), 0);
  for (int i = 0; i < N; i++) assert_int_equal(gs[i].order, i);
  st = stats_of(l);
  assert_int_equal(st.live_keys, 0);
  assert_int_equal(st.held, 0);
  assert_int_equal(st.waiters, 0);
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

/* ---- deadlines and cancellation ------------------------------------------ */

static void test_deadline_and_cancel(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_locks *l = new_locks(rt, NULL);
  sluice_lock_guard *g;
  assert_ok(sluice_locks_try(l, K("k"), 0, &g));

  grab gt = {0}, gc = {0}, gz = {0}, gf = {0};
  sluice_op *ot, *oc, *oz, *of;
  assert_ok(sluice_locks_acquire(l, K("k"), 0, 20, grab_cb, &gt, grab_free, &ot));
  assert_ok(sluice_locks_acquire(l, K("k"), 0, -1, grab_cb, &gc, grab_free, &oc));
  assert_ok(sluice_locks_acquire(l, K("k"), 0, 0, grab_cb, &gz, grab_free, &oz));
  assert_int_equal(wait_op(ot), SLUICE_ETIMEDOUT);
  assert_int_equal(wait_op(oz), SLUICE_ETIMEDOUT);
  assert_ok(sluice_op_cancel(oc));
  assert_int_equal(wait_op(oc), SLUICE_ECANCELED);
  assert_true(gt.calls == 1 && gt.freed == 1 && gc.calls == 1 && gc.freed == 1);
  /* A zero deadline still gets a free key. */
  assert_ok(sluice_locks_acquire(l, K("free"), 0, 0, grab_cb, &gf, grab_free, &of));
  assert_int_equal(wait_op(of), 0);
  assert_ok(sluice_locks_release(l, gf.guard));

  sluice_locks_stats st = stats_of(l);
  assert_int_equal(st.timeouts, 2);
  assert_int_equal(st.cancellations, 1);
  assert_int_equal(st.waiters, 0);
  assert_int_equal(st.held, 1);
  assert_true(st.wait_ns > 0);
  /* Nobody is left queued: release makes the key idle, not handed on. */
  assert_ok(sluice_locks_release(l, g));
  assert_int_equal(stats_of(l).live_keys, 0);
  assert_ok(sluice_locks_try(l, K("k"), 0, &g));
  assert_ok(sluice_locks_release(l, g));
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

/* Cancelled behind a writer, a shared request's departure lets the shared
 * ones behind it join the current readers at once. */
static void test_cancel_unblocks_followers(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_locks *l = new_locks(rt, NULL);
  sluice_lock_guard *r;
  assert_ok(sluice_locks_try(l, K("k"), SLUICE_LOCK_SHARED, &r));
  grab gw = {0}, gr = {0};
  sluice_op *ow, *orr;
  assert_ok(sluice_locks_acquire(l, K("k"), 0, -1, grab_cb, &gw, NULL, &ow));
  assert_ok(sluice_locks_acquire(l, K("k"), SLUICE_LOCK_SHARED, -1, grab_cb, &gr, NULL, &orr));
  assert_int_equal(WAIT_STAT(l, waiters, 2).waiters, 2);
  assert_ok(sluice_op_cancel(ow));
  assert_int_equal(wait_op(ow), SLUICE_ECANCELED);
  assert_int_equal(wait_op(orr), 0);
  assert_ok(sluice_locks_release(l, gr.guard));
  assert_ok(sluice_locks_release(l, r));
  assert_int_equal(stats_of(l).live_keys, 0);
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

/* ---- several keys ---------------------------------------------------------- */

static void test_many_keys(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_locks *l = new_locks(rt, NULL);
  sluice_lock_guard *g, *gb, *gx;
  /* Duplicates merge; exclusive wins. */
  sluice_lock_key ab[3] = {{"b", 1, SLUICE_LOCK_SHARED}, {"a", 1, 0}, {"b", 1, 0}};
  assert_ok(sluice_locks_try_many(l, ab, 3, &g));
  assert_int_equal(stats_of(l).held, 2);
  assert_err(SLUICE_EAGAIN, sluice_locks_try(l, K("b"), SLUICE_LOCK_SHARED, &gx));
  /* All or nothing: c is not kept when b is busy. */
  sluice_lock_key bc[2] = {{"c", 1, 0}, {"b", 1, 0}};
  assert_err(SLUICE_EAGAIN, sluice_locks_try_many(l, bc, 2, &gx));
  assert_null(gx);
  assert_ok(sluice_locks_try(l, K("c"), 0, &gx));
  assert_ok(sluice_locks_release(l, gx));
  assert_ok(sluice_locks_release(l, g));
  assert_err(SLUICE_ESTATE, sluice_locks_release(l, g));
  assert_int_equal(stats_of(l).live_keys, 0);

  /* Waiting: b is held; a deadline releases the keys taken before it. */
  assert_ok(sluice_locks_try(l, K("b"), 0, &gb));
  sluice_lock_key abc[3] = {{"c", 1, 0}, {"a", 1, 0}, {"b", 1, 0}};
  grab g1 = {0}, g2 = {0};
  sluice_op *op;
  assert_ok(sluice_locks_acquire_many(l, abc, 3, 20, grab_cb, &g1, grab_free, &op));
  assert_int_equal(wait_op(op), SLUICE_ETIMEDOUT);
  assert_ok(sluice_locks_try(l, K("a"), 0, &gx)); /* a was given back */
  assert_ok(sluice_locks_release(l, gx));
  assert_ok(sluice_locks_try(l, K("c"), 0, &gx)); /* c was never taken */
  assert_ok(sluice_locks_release(l, gx));

  /* ... and without a deadline the release of b completes it. */
  assert_ok(sluice_locks_acquire_many(l, abc, 3, -1, grab_cb, &g2, grab_free, &op));
  sluice_locks_stats st = WAIT_STAT(l, waiters, 1);
  assert_int_equal(st.waiters, 1);
  /* Read again: the figures are gathered shard by shard, so the read that
   * saw the waiter on b's shard may have passed a's shard before a was
   * taken. Once the waiter is seen, a was taken before it queued. */
  assert_int_equal(stats_of(l).held, 2); /* a, and b by the try */
  assert_ok(sluice_locks_release(l, gb));
  assert_int_equal(wait_op(op), 0);
  assert_int_equal(stats_of(l).held, 3);
  for (int i = 0; i < 3; i++)
    assert_err(SLUICE_EAGAIN, sluice_locks_try(l, abc[i].key, 1, SLUICE_LOCK_SHARED, &gx));
  assert_ok(sluice_locks_release(l, g2.guard));
  st = stats_of(l);
  assert_int_equal(st.held, 0);
  assert_int_equal(st.live_keys, 0);

  /* The blocking forms. */
  assert_ok(sluice_locks_lock_many(l, abc, 3, 1000, &g));
  assert_err(SLUICE_ETIMEDOUT, sluice_locks_lock_many(l, abc, 2, 10, &gx));
  assert_null(gx);
  assert_ok(sluice_locks_release(l, g));
  assert_int_equal(stats_of(l).live_keys, 0);
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

/* ---- the live-key cap ---------------------------------------------------- */

static void test_live_key_cap_rejects(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_locks_options o = SLUICE_LOCKS_OPTIONS_INIT;
  o.max_keys = 2;
  sluice_locks *l = new_locks(rt, &o);
  sluice_lock_guard *a, *b, *x;
  assert_ok(sluice_locks_try(l, K("a"), SLUICE_LOCK_SHARED, &a));
  assert_ok(sluice_locks_try(l, K("b"), 0, &b));
  assert_err(SLUICE_ELIMIT, sluice_locks_try(l, K("c"), 0, &x));
  assert_ok(sluice_locks_try(l, K("a"), SLUICE_LOCK_SHARED, &x)); /* a live key needs no room */
  assert_ok(sluice_locks_release(l, x));
  assert_err(SLUICE_EAGAIN, sluice_locks_try(l, K("b"), 0, &x));
  grab gc = {0};
  sluice_op *op;
  assert_ok(sluice_locks_acquire(l, K("c"), 0, -1, grab_cb, &gc, grab_free, &op));
  assert_int_equal(wait_op(op), SLUICE_ELIMIT);
  sluice_lock_key ac[2] = {{"a", 1, SLUICE_LOCK_SHARED}, {"c", 1, 0}};
  assert_err(SLUICE_ELIMIT, sluice_locks_try_many(l, ac, 2, &x));
  assert_err(SLUICE_ELIMIT, sluice_locks_lock(l, K("c"), 0, -1, &x));
  assert_int_equal(stats_of(l).held, 2); /* a's part of the _many was given back */
  assert_ok(sluice_locks_release(l, b));
  assert_ok(sluice_locks_try(l, K("c"), 0, &x));
  sluice_locks_stats st = stats_of(l);
  assert_int_equal(st.live_keys, 2);
  assert_int_equal(st.peak_live_keys, 2);
  assert_int_equal(st.limit_refusals, 4);
  assert_ok(sluice_locks_release(l, x));
  assert_ok(sluice_locks_release(l, a));
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

static void test_live_key_cap_waits(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_locks_options o = SLUICE_LOCKS_OPTIONS_INIT;
  o.max_keys = 2;
  o.on_full = SLUICE_LOCKS_FULL_WAIT;
  sluice_locks *l = new_locks(rt, &o);
  sluice_lock_guard *a, *b, *x;
  assert_ok(sluice_locks_try(l, K("a"), 0, &a));
  assert_ok(sluice_locks_try(l, K("b"), 0, &b));
  grab gc = {0}, gde = {0}, gt = {0};
  sluice_op *oc, *ode, *ot;
  assert_ok(sluice_locks_acquire(l, K("c"), 0, -1, grab_cb, &gc, grab_free, &oc));
  sluice_lock_key de[2] = {{"d", 1, 0}, {"e", 1, 0}};
  assert_ok(sluice_locks_acquire_many(l, de, 2, -1, grab_cb, &gde, grab_free, &ode));
  assert_ok(sluice_locks_acquire(l, K("t"), 0, 10, grab_cb, &gt, grab_free, &ot));
  assert_int_equal(wait_op(ot), SLUICE_ETIMEDOUT); /* waited for room, in vain */
  sluice_locks_stats st = WAIT_STAT(l, room_waiters, 2);
  assert_int_equal(st.room_waiters, 2);
  /* Try never waits, and does not jump the room queue. */
  assert_err(SLUICE_ELIMIT, sluice_locks_try(l, K("f"), 0, &x));
  /* Too many keys for the cap can never be granted. */
  sluice_lock_key many[3] = {{"x", 1, 0}, {"y", 1, 0}, {"z", 1, 0}};
  grab gm = {0};
  sluice_op *om;
  assert_ok(sluice_locks_acquire_many(l, many, 3, -1, grab_cb, &gm, grab_free, &om));
  assert_int_equal(wait_op(om), SLUICE_ELIMIT);

  assert_ok(sluice_locks_release(l, a)); /* room for c, first in line */
  assert_int_equal(wait_op(oc), 0);
  assert_int_equal(sluice_op_done(ode, NULL), 0); /* d+e needs two */
  assert_ok(sluice_locks_release(l, b));
  assert_ok(sluice_locks_release(l, gc.guard));
  assert_int_equal(wait_op(ode), 0);
  st = stats_of(l);
  assert_int_equal(st.live_keys, 2);
  assert_int_equal(st.room_waiters, 0);
  assert_ok(sluice_locks_release(l, gde.guard));
  st = stats_of(l);
  assert_int_equal(st.live_keys, 0);
  assert_true(st.peak_live_keys <= 2);
  /* The room is all back. */
  assert_ok(sluice_locks_try_many(l, de, 2, &x));
  assert_ok(sluice_locks_release(l, x));
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

/* Room granted to a request whose key went live meanwhile (it queues on
 * the key instead) passes on to the next request waiting for room. */
static void test_room_passes_on(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_locks_options o = SLUICE_LOCKS_OPTIONS_INIT;
  o.max_keys = 2;
  o.on_full = SLUICE_LOCKS_FULL_WAIT;
  sluice_locks *l = new_locks(rt, &o);
  sluice_lock_guard *x1, *x2;
  assert_ok(sluice_locks_try(l, K("x1"), 0, &x1));
  assert_ok(sluice_locks_try(l, K("x2"), 0, &x2));
  grab gb = {0}, gc = {0}, gd = {0};
  sluice_op *ob, *oc, *od;
  assert_ok(sluice_locks_acquire(l, K("y"), 0, -1, grab_cb, &gb, NULL, &ob));
  assert_ok(sluice_locks_acquire(l, K("y"), 0, -1, grab_cb, &gc, NULL, &oc));
  assert_ok(sluice_locks_acquire(l, K("z"), 0, -1, grab_cb, &gd, NULL, &od));
  assert_int_equal(WAIT_STAT(l, room_waiters, 3).room_waiters, 3);
  assert_ok(sluice_locks_release(l, x1)); /* room for b: y goes live */
  assert_int_equal(wait_op(ob), 0);
  assert_ok(sluice_locks_release(l, x2)); /* room for c, which queues on y ... */
  assert_int_equal(wait_op(od), 0);       /* ... and gives it to d */
  assert_int_equal(sluice_op_done(oc, NULL), 0);
  sluice_locks_stats st = stats_of(l);
  assert_int_equal(st.live_keys, 2);
  assert_int_equal(st.waiters, 1);
  assert_int_equal(st.room_waiters, 0);
  assert_ok(sluice_locks_release(l, gb.guard));
  assert_int_equal(wait_op(oc), 0);
  assert_ok(sluice_locks_release(l, gc.guard));
  assert_ok(sluice_locks_release(l, gd.guard));
  assert_int_equal(stats_of(l).live_keys, 0);
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

/* ---- held too long --------------------------------------------------------- */

typedef struct held_probe {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int calls;
  char key[16];
  size_t len;
  uint64_t token, held_ns;
} held_probe;

static void held_cb(void *ud, const void *key, size_t len, uint64_t token, uint64_t held_ns) {
  held_probe *p = ud;
  pthread_mutex_lock(&p->mu);
  p->calls++;
  p->len = len < sizeof p->key ? len : sizeof p->key;
  memcpy(p->key, key, p->len);
  p->token = token;
  p->held_ns = held_ns;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

static void test_held_too_long(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  held_probe p = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {0}, 0, 0, 0};
  sluice_locks_options o = SLUICE_LOCKS_OPTIONS_INIT;
  o.hold_limit_ms = 20;
  o.on_held_too_long = held_cb;
  o.held_user_data = &p;
  sluice_locks *l = new_locks(rt, &o);
  sluice_lock_guard *slow;
  assert_ok(sluice_locks_try(l, K("forgotten"), 0, &slow));
  uint64_t token = token_of(l, slow);
  /* Wait for the report itself; the bound is only a hang guard. */
  pthread_mutex_lock(&p.mu);
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 60;
  while (p.calls == 0)
    if (pthread_cond_timedwait(&p.cv, &p.mu, &until) != 0) break;
  pthread_mutex_unlock(&p.mu);
  assert_int_equal(p.calls, 1);
  assert_int_equal(p.len, 9);
  assert_memory_equal(p.key, "forgotten", 9);
  assert_int_equal(p.token, token);
  assert_true(p.held_ns >= 20 * 1000000ull);
  assert_int_equal(stats_of(l).held_too_long, 1);
  assert_ok(sluice_locks_release(l, slow)); /* reported grants release normally */
  /* Once per grant: a later tick finds nothing. The hold timer runs every
   * 5 ms; a 30 ms timer is always behind at least one more tick. */
  sluice_op *op;
  tu_counter c = {0};
  assert_ok(sluice_runtime_timer(rt, 30, tu_count_cb, &c, NULL, &op));
  assert_int_equal(wait_op(op), 0);
  pthread_mutex_lock(&p.mu);
  assert_int_equal(p.calls, 1);
  pthread_mutex_unlock(&p.mu);
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

/* ---- memory ------------------------------------------------------------------ */

static uint64_t allocated(void) {
  sluice_memory_stats m = {sizeof m};
  assert_ok(sluice_runtime_memory(NULL, &m));
  return m.allocated;
}

static void test_million_keys_memory_bound(void **state) {
  (void)state;
  enum { KEYS = 1000000, CACHE = 2000 };
  sluice_runtime *rt = tu_runtime();
  sluice_locks_options o = SLUICE_LOCKS_OPTIONS_INIT;
  o.max_locks = CACHE;
  o.cleanup_interval_ms = 0;
  sluice_locks *l = new_locks(rt, &o);
  char key[32];
  /* Warm the grant records and the cache, then measure from there. */
  for (int i = 0; i < 4 * CACHE; i++) {
    int n = snprintf(key, sizeof key, "warm:%d", i);
    sluice_lock_guard *g;
    assert_ok(sluice_locks_try(l, key, (size_t)n, 0, &g));
    assert_ok(sluice_locks_release(l, g));
  }
  uint64_t before = allocated();
  for (int i = 0; i < KEYS; i++) {
    int n = snprintf(key, sizeof key, "user:%d:group:%d", i, i % 977);
    sluice_lock_guard *g;
    assert_ok(sluice_locks_try(l, key, (size_t)n, i % 4 == 0 ? SLUICE_LOCK_SHARED : 0, &g));
    assert_ok(sluice_locks_release(l, g));
  }
  uint64_t after = allocated();
  sluice_locks_stats st = stats_of(l);
  assert_int_equal(st.live_keys, 0);
  assert_int_equal(st.held, 0);
  assert_true(st.cached_entries <= CACHE);
  assert_true(st.peak_live_keys <= 1);
  assert_int_equal(st.acquisitions, KEYS + 4 * CACHE);
  /* Nothing grew with the number of keys: the cache was full before. A
   * 64 KiB slack covers other threads' small allocations in the library. */
  assert_true(after <= before + 65536);
  assert_ok(sluice_locks_trim(l));
  st = stats_of(l);
  assert_int_equal(st.cached_entries, 0);
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

/* The idle timer frees entries idle for a whole interval, never live ones. */
static void test_idle_cleanup(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_locks_options o = SLUICE_LOCKS_OPTIONS_INIT;
  o.cleanup_interval_ms = 5;
  sluice_locks *l = new_locks(rt, &o);
  sluice_lock_guard *held, *g;
  assert_ok(sluice_locks_try(l, K("held"), 0, &held));
  assert_ok(sluice_locks_try(l, K("idle"), 0, &g));
  assert_ok(sluice_locks_release(l, g));
  sluice_locks_stats st = WAIT_STAT(l, trimmed, 1);
  assert_int_equal(st.trimmed, 1);
  assert_int_equal(st.cached_entries, 0);
  assert_int_equal(st.live_keys, 1);
  assert_ok(sluice_locks_release(l, held));
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

/* ---- teardown -------------------------------------------------------------- */

static void test_free_with_holders_and_waiters(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_locks *l = new_locks(rt, NULL);
  sluice_lock_guard *g;
  assert_ok(sluice_locks_try(l, K("k"), 0, &g));
  grab w[3];
  memset(w, 0, sizeof w);
  sluice_op *ops[3];
  for (int i = 0; i < 3; i++)
    assert_ok(sluice_locks_acquire(l, K("k"), 0, -1, grab_cb, &w[i], grab_free, &ops[i]));
  sluice_lock_key ab[2] = {{"a", 1, 0}, {"k", 1, 0}};
  grab wm = {0};
  sluice_op *om;
  assert_ok(sluice_locks_acquire_many(l, ab, 2, -1, grab_cb, &wm, grab_free, &om));
  sluice_locks_free(l); /* returns once every callback has run */
  for (int i = 0; i < 3; i++) {
    assert_int_equal(w[i].calls, 1);
    assert_int_equal(w[i].freed, 1);
    assert_int_equal(w[i].status, SLUICE_ECLOSED);
    assert_int_equal(wait_op(ops[i]), SLUICE_ECLOSED);
  }
  assert_int_equal(wait_op(om), SLUICE_ECLOSED);
  assert_int_equal(wm.freed, 1);
  sluice_runtime_free(rt);
}

static void test_runtime_shutdown(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_locks *l = new_locks(rt, NULL);
  sluice_lock_guard *g, *x;
  assert_ok(sluice_locks_try(l, K("k"), 0, &g));
  grab w = {0}, wm = {0};
  assert_ok(sluice_locks_acquire(l, K("k"), 0, -1, grab_cb, &w, grab_free, NULL));
  sluice_lock_key ab[2] = {{"a", 1, 0}, {"k", 1, 0}};
  assert_ok(sluice_locks_acquire_many(l, ab, 2, -1, grab_cb, &wm, grab_free, NULL));
  assert_ok(sluice_runtime_close(rt));
  assert_int_equal(w.status, SLUICE_ECLOSED);
  assert_int_equal(wm.status, SLUICE_ECLOSED);
  assert_int_equal(w.freed + wm.freed, 2);
  /* Non-waiting calls still work; waiting ones are refused. */
  assert_ok(sluice_locks_try(l, K("a"), 0, &x)); /* the _many gave a back */
  assert_ok(sluice_locks_release(l, x));
  grab z = {0};
  assert_err(SLUICE_ECLOSED, sluice_locks_acquire(l, K("z"), 0, -1, grab_cb, &z, grab_free, NULL));
  assert_int_equal(z.calls + z.freed, 0);
  assert_err(SLUICE_ECLOSED, sluice_locks_lock(l, K("k"), 0, -1, &x));
  assert_ok(sluice_locks_release(l, g));
  sluice_locks_stats st = stats_of(l);
  assert_int_equal(st.live_keys, 0);
  assert_int_equal(st.held, 0);
  sluice_locks_free(l);
  sluice_runtime_free(rt);
  /* A manager cannot be made on a closed runtime. */
  rt = tu_runtime();
  assert_ok(sluice_runtime_close(rt));
  assert_err(SLUICE_ECLOSED, sluice_locks_new(&l, rt, NULL));
  sluice_runtime_free(rt);
}

/* ---- the blocking forms ------------------------------------------------------ */

struct on_loop_probe {
  sluice_locks *l;
  int lock_rc, many_rc;
};
static void lock_on_loop(void *arg) {
  struct on_loop_probe *p = arg;
  sluice_lock_guard *g;
  sluice_lock_key k = {"free", 4, 0};
  p->lock_rc = sluice_locks_lock(p->l, K("free"), 0, 0, &g);
  p->many_rc = sluice_locks_lock_many(p->l, &k, 1, 0, &g);
}

static void test_blocking(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_locks *l = new_locks(rt, NULL);
  sluice_lock_guard *g, *x = (sluice_lock_guard *)1;
  assert_ok(sluice_locks_lock(l, K("k"), 0, -1, &g));
  assert_err(SLUICE_ETIMEDOUT, sluice_locks_lock(l, K("k"), 0, 10, &x));
  assert_null(x);
  assert_err(SLUICE_ETIMEDOUT, sluice_locks_lock(l, K("k"), SLUICE_LOCK_SHARED, 0, &x));
  struct on_loop_probe p = {l, 0, 0};
  tu_on_loop(rt, lock_on_loop, &p);
  assert_int_equal(p.lock_rc, SLUICE_EDEADLK);
  assert_int_equal(p.many_rc, SLUICE_EDEADLK);
  assert_ok(sluice_locks_release(l, g));
  sluice_locks_stats st = stats_of(l);
  assert_int_equal(st.timeouts, 2);
  assert_int_equal(st.live_keys, 0);
  assert_int_equal(st.busy, 0); /* the blocking form's first look is not a refusal */
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

/* Freed from its own loop thread, inside a callback. */
static void free_in_cb(void *ud, int status, sluice_lock_guard *g) {
  (void)status;
  (void)g;
  sluice_locks_free(ud);
}

static void test_free_on_loop_thread(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_locks_options o = SLUICE_LOCKS_OPTIONS_INIT;
  o.hold_limit_ms = 1000; /* two timers to close */
  sluice_locks *l = new_locks(rt, &o);
  sluice_op *op;
  assert_ok(sluice_locks_acquire(l, K("k"), 0, -1, free_in_cb, l, NULL, &op));
  assert_int_equal(wait_op(op), 0);
  sluice_runtime_free(rt);
}

/* A monitor given in the options records the waits. */
static void test_monitor(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_monitor *m = NULL;
  assert_ok(sluice_monitor_new(&m, NULL, NULL));
  sluice_locks_options o = SLUICE_LOCKS_OPTIONS_INIT;
  o.monitor = m;
  sluice_locks *l = new_locks(rt, &o);
  sluice_lock_guard *g;
  assert_ok(sluice_locks_try(l, K("k"), 0, &g));
  grab w = {0};
  sluice_op *op;
  assert_ok(sluice_locks_acquire(l, K("k"), 0, 5, grab_cb, &w, NULL, &op));
  assert_int_equal(wait_op(op), SLUICE_ETIMEDOUT);
  assert_ok(sluice_locks_release(l, g));
  sluice_buf b = SLUICE_BUF_INIT;
  assert_ok(sluice_monitor_json(m, &b));
  assert_non_null(strstr(b.ptr, "locks.wait"));
  sluice_buf_free(&b);
  sluice_locks_free(l);
  sluice_monitor_free(m);
  sluice_runtime_free(rt);
}

static void test_stats_prefix(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_locks *l = new_locks(rt, NULL);
  sluice_lock_guard *g;
  assert_ok(sluice_locks_try(l, K("k"), 0, &g));
  sluice_locks_stats small;
  memset(&small, 0xAB, sizeof small);
  small.size = offsetof(sluice_locks_stats, peak_live_keys);
  assert_ok(sluice_locks_stats_get(l, &small));
  assert_int_equal(small.size, offsetof(sluice_locks_stats, peak_live_keys));
  assert_int_equal(small.live_keys, 1);
  assert_int_equal(small.peak_live_keys, 0xABABABABABABABABull);
  assert_ok(sluice_locks_release(l, g));
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_options),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_try_release_and_stale_guards),
      cmocka_unit_test(test_tokens_only_increase),
      cmocka_unit_test(test_shared_and_exclusive),
      cmocka_unit_test(test_fifo_hand_off),
      cmocka_unit_test(test_deadline_and_cancel),
      cmocka_unit_test(test_cancel_unblocks_followers),
      cmocka_unit_test(test_many_keys),
      cmocka_unit_test(test_live_key_cap_rejects),
      cmocka_unit_test(test_live_key_cap_waits),
      cmocka_unit_test(test_room_passes_on),
      cmocka_unit_test(test_held_too_long),
      cmocka_unit_test(test_million_keys_memory_bound),
      cmocka_unit_test(test_idle_cleanup),
      cmocka_unit_test(test_free_with_holders_and_waiters),
      cmocka_unit_test(test_runtime_shutdown),
      cmocka_unit_test(test_blocking),
      cmocka_unit_test(test_free_on_loop_thread),
      cmocka_unit_test(test_monitor),
      cmocka_unit_test(test_stats_prefix),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

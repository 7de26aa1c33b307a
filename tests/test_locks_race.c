/* sluice_locks under threads: mutual exclusion on many keys with the
 * live-key cap and the entry cache both tiny, shared/exclusive exclusion,
 * cancellation racing a grant, and several keys taken in opposite orders.
 * A checker inside every critical section (a per-key holder count and the
 * key's last fencing token, the latter a plain variable only the lock
 * protects, so ThreadSanitizer also checks the lock's memory ordering)
 * fails the test on two holders.
 * SLUICE_TEST_CONCURRENT: also run under ThreadSanitizer. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"
#include <sluice/locks.h>

enum { KEYS = 24, THREADS = 4 };

typedef struct world {
  sluice_locks *l;
  sluice_runtime *rt;
  char names[KEYS][16];
  size_t lens[KEYS];
  atomic_int writers[KEYS], readers[KEYS];
  uint64_t last_token[KEYS]; /* guarded by the key's lock itself */
  atomic_int violations;
  atomic_int granted, refused;
  int iters;
  int shared_percent; /* requests made in shared mode */
  int may_refuse;     /* REJECT: waiting requests may end with ELIMIT */
} world;

static void world_init(world *w, sluice_runtime *rt, sluice_locks *l, int iters,
                       int shared_percent, int may_refuse) {
  memset(w, 0, sizeof *w);
  w->rt = rt;
  w->l = l;
  w->iters = iters;
  w->shared_percent = shared_percent;
  w->may_refuse = may_refuse;
  for (int k = 0; k < KEYS; k++) {
    w->lens[k] = (size_t)snprintf(w->names[k], sizeof w->names[k], "user:%d", k * 7919);
    atomic_init(&w->writers[k], 0);
    atomic_init(&w->readers[k], 0);
  }
}

static uint32_t next_rand(uint32_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

static void pause_a_little(uint32_t *rng) {
  /* Some holders yield so others pile up behind them. */
  if (next_rand(rng) % 4 == 0) sched_yield();
}

/* The checker: called with the key held in `mode` through guard g. */
static void enter(world *w, int k, int mode, sluice_lock_guard *g) {
  if (mode == SLUICE_LOCK_EXCLUSIVE) {
    if (atomic_fetch_add(&w->writers[k], 1) != 0) atomic_fetch_add(&w->violations, 1);
    if (atomic_load(&w->readers[k]) != 0) atomic_fetch_add(&w->violations, 1);
    uint64_t t = 0;
    if (sluice_locks_token(w->l, g, &t) != 0 || t <= w->last_token[k])
      atomic_fetch_add(&w->violations, 1);
    w->last_token[k] = t;
  } else {
    atomic_fetch_add(&w->readers[k], 1);
    if (atomic_load(&w->writers[k]) != 0) atomic_fetch_add(&w->violations, 1);
  }
}

static void leave(world *w, int k, int mode) {
  if (mode == SLUICE_LOCK_EXCLUSIVE) {
    if (atomic_load(&w->readers[k]) != 0) atomic_fetch_add(&w->violations, 1);
    atomic_fetch_sub(&w->writers[k], 1);
  } else {
    if (atomic_load(&w->writers[k]) != 0) atomic_fetch_add(&w->violations, 1);
    atomic_fetch_sub(&w->readers[k], 1);
  }
}

/* An asynchronous acquire whose critical section runs in the callback, on
 * the loop thread. */
typedef struct loop_hold {
  world *w;
  int nkeys;
  int k[2];
  int mode;
} loop_hold;

static void loop_hold_cb(void *ud, int status, sluice_lock_guard *g) {
  loop_hold *h = ud;
  if (status != 0) return; /* judged by the waiting thread */
  atomic_fetch_add(&h->w->granted, 1);
  for (int i = 0; i < h->nkeys; i++) enter(h->w, h->k[i], h->mode, g);
  for (int i = 0; i < h->nkeys; i++) leave(h->w, h->k[i], h->mode);
  if (sluice_locks_release(h->w->l, g) != 0) atomic_fetch_add(&h->w->violations, 1);
}

/* A waiting request's outcome: success, or ELIMIT where refusals are
 * expected; anything else is a failure of the test. */
static int accepted(world *w, int rc) {
  if (rc == 0) return 1;
  if (rc == SLUICE_ELIMIT && w->may_refuse) atomic_fetch_add(&w->refused, 1);
  else atomic_fetch_add(&w->violations, 1);
  return 0;
}

static void *worker(void *arg) {
  world *w = ((void **)arg)[0];
  uint32_t rng = (uint32_t)(uintptr_t)((void **)arg)[1];
  for (int i = 0; i < w->iters; i++) {
    uint32_t r = next_rand(&rng);
    int k1 = (int)(next_rand(&rng) % KEYS), k2 = (int)(next_rand(&rng) % KEYS);
    int mode = (int)((r >> 8) % 100) < w->shared_percent ? SLUICE_LOCK_SHARED
                                                         : SLUICE_LOCK_EXCLUSIVE;
    sluice_lock_guard *g = NULL;
    switch (r % 8) {
      case 0:
      case 1:
      case 2: { /* blocking, one key */
        if (!accepted(w, sluice_locks_lock(w->l, w->names[k1], w->lens[k1], mode, -1, &g)))
          break;
        enter(w, k1, mode, g);
        pause_a_little(&rng);
        leave(w, k1, mode);
        if (sluice_locks_release(w->l, g) != 0) atomic_fetch_add(&w->violations, 1);
        break;
      }
      case 3:
      case 4: { /* try */
        int rc = sluice_locks_try(w->l, w->names[k1], w->lens[k1], mode, &g);
        if (rc == SLUICE_EAGAIN || rc == SLUICE_ELIMIT) {
          atomic_fetch_add(&w->refused, 1);
          break;
        }
        if (rc != 0) {
          atomic_fetch_add(&w->violations, 1);
          break;
        }
        enter(w, k1, mode, g);
        leave(w, k1, mode);
        if (sluice_locks_release(w->l, g) != 0) atomic_fetch_add(&w->violations, 1);
        break;
      }
      case 5:
      case 6: { /* two keys, blocking, in whatever order */
        sluice_lock_key ks[2] = {{w->names[k1], w->lens[k1], mode},
                                 {w->names[k2], w->lens[k2], mode}};
        if (!accepted(w, sluice_locks_lock_many(w->l, ks, 2, -1, &g))) break;
        enter(w, k1, mode, g);
        if (k2 != k1) enter(w, k2, mode, g);
        pause_a_little(&rng);
        leave(w, k1, mode);
        if (k2 != k1) leave(w, k2, mode);
        if (sluice_locks_release(w->l, g) != 0) atomic_fetch_add(&w->violations, 1);
        break;
      }
      default: { /* asynchronous, held on the loop thread */
        loop_hold h = {w, k2 != k1 ? 2 : 1, {k1, k2}, mode};
        sluice_op *op = NULL;
        int rc;
        if (h.nkeys == 1) {
          rc = sluice_locks_acquire(w->l, w->names[k1], w->lens[k1], mode, -1, loop_hold_cb, &h,
                                    NULL, &op);
        } else {
          sluice_lock_key ks[2] = {{w->names[k2], w->lens[k2], mode},
                                   {w->names[k1], w->lens[k1], mode}};
          rc = sluice_locks_acquire_many(w->l, ks, 2, -1, loop_hold_cb, &h, NULL, &op);
        }
        if (rc != 0) {
          atomic_fetch_add(&w->violations, 1);
          break;
        }
        int status = 1;
        if (sluice_op_wait(op, -1, &status) != 0) atomic_fetch_add(&w->violations, 1);
        else accepted(w, status);
        sluice_op_free(op);
        break;
      }
    }
  }
  return NULL;
}

static void run_workers(world *w) {
  pthread_t tid[THREADS];
  void *args[THREADS][2];
  for (int t = 0; t < THREADS; t++) {
    args[t][0] = w;
    args[t][1] = (void *)(uintptr_t)(0x9e3779b9u * (uint32_t)(t + 1));
    pthread_create(&tid[t], NULL, worker, args[t]);
  }
  for (int t = 0; t < THREADS; t++) pthread_join(tid[t], NULL);
}

static sluice_locks_stats stats_of(sluice_locks *l) {
  sluice_locks_stats st;
  memset(&st, 0, sizeof st);
  st.size = sizeof st;
  assert_ok(sluice_locks_stats_get(l, &st));
  return st;
}

/* After everything: nothing held, nothing queued, every key free. */
static void assert_all_free(world *w, uint32_t max_locks) {
  sluice_locks_stats st = stats_of(w->l);
  assert_int_equal(st.live_keys, 0);
  assert_int_equal(st.held, 0);
  assert_int_equal(st.waiters, 0);
  assert_int_equal(st.room_waiters, 0);
  assert_true(st.cached_entries <= max_locks);
  for (int k = 0; k < KEYS; k++) {
    sluice_lock_guard *g;
    assert_ok(sluice_locks_try(w->l, w->names[k], w->lens[k], SLUICE_LOCK_EXCLUSIVE, &g));
    assert_ok(sluice_locks_release(w->l, g));
  }
}

static void held_count(void *ud, const void *key, size_t len, uint64_t token, uint64_t held_ns) {
  (void)key;
  (void)len;
  (void)token;
  (void)held_ns;
  atomic_fetch_add((atomic_int *)ud, 1);
}

static sluice_locks *make(sluice_runtime *rt, uint32_t max_keys, int on_full, uint32_t max_locks,
                          atomic_int *reports) {
  sluice_locks_options o = SLUICE_LOCKS_OPTIONS_INIT;
  o.max_keys = max_keys;
  o.on_full = on_full;
  o.max_locks = max_locks;
  /* The idle timer and the hold check run all the time meanwhile. */
  o.cleanup_interval_ms = 1;
  o.hold_limit_ms = 1;
  o.on_held_too_long = held_count;
  o.held_user_data = reports;
  sluice_locks *l = NULL;
  assert_ok(sluice_locks_new(&l, rt, &o));
  return l;
}

/* Exclusive only, FULL_WAIT: at most 3 keys live for 4 threads whose
 * _many requests need 2, and 2 cached entries. */
static void test_exclusion_under_pressure(void **state) {
  (void)state;
  static atomic_int reports;
  static world w;
  sluice_runtime *rt = tu_runtime();
  sluice_locks *l = make(rt, 3, SLUICE_LOCKS_FULL_WAIT, 2, &reports);
  world_init(&w, rt, l, 3000, 0, 0);
  run_workers(&w);
  assert_int_equal(atomic_load(&w.violations), 0);
  assert_all_free(&w, 2);
  sluice_locks_stats st = stats_of(l);
  assert_true(st.peak_live_keys <= 3);
  assert_true(st.contended > 0);
  assert_true(st.acquisitions >= (uint64_t)atomic_load(&w.granted));
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

/* A third of the requests shared: readers never meet a writer. */
static void test_shared_exclusive_under_pressure(void **state) {
  (void)state;
  static atomic_int reports;
  static world w;
  sluice_runtime *rt = tu_runtime();
  sluice_locks *l = make(rt, 4, SLUICE_LOCKS_FULL_WAIT, 3, &reports);
  world_init(&w, rt, l, 3000, 35, 0);
  run_workers(&w);
  assert_int_equal(atomic_load(&w.violations), 0);
  assert_all_free(&w, 3);
  assert_true(stats_of(l).peak_live_keys <= 4);
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

/* REJECT: requests that need room past the cap are refused, never let in. */
static void test_exclusion_with_rejects(void **state) {
  (void)state;
  static atomic_int reports;
  static world w;
  sluice_runtime *rt = tu_runtime();
  sluice_locks *l = make(rt, 3, SLUICE_LOCKS_FULL_REJECT, 0, &reports);
  world_init(&w, rt, l, 3000, 20, 1);
  run_workers(&w);
  assert_int_equal(atomic_load(&w.violations), 0);
  assert_all_free(&w, 0);
  sluice_locks_stats st = stats_of(l);
  assert_true(st.peak_live_keys <= 3);
  assert_int_equal(st.cached_entries, 0);
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

/* ---- cancellation racing a grant ----------------------------------------- */

typedef struct race {
  sluice_locks *l;
  pthread_barrier_t go, done;
  sluice_lock_guard *to_release;
  int rounds;
  atomic_int bad;
} race;

static void *releaser(void *arg) {
  race *r = arg;
  for (int i = 0; i < r->rounds; i++) {
    pthread_barrier_wait(&r->go);
    if (sluice_locks_release(r->l, r->to_release) != 0) atomic_fetch_add(&r->bad, 1);
    pthread_barrier_wait(&r->done);
  }
  return NULL;
}

typedef struct outcome {
  int status;
  sluice_lock_guard *g;
} outcome;
static void outcome_cb(void *ud, int status, sluice_lock_guard *g) {
  outcome *o = ud;
  o->status = status;
  o->g = g;
}

/* A holder releases in one thread while this one cancels the request the
 * release hands the key to. Exactly one outcome each time; a grant that
 * wins must be released by its owner, and nothing leaks either way. */
static void test_cancel_races_grant(void **state) {
  (void)state;
  enum { ROUNDS = 1500 };
  sluice_runtime *rt = tu_runtime();
  sluice_locks *l = NULL;
  assert_ok(sluice_locks_new(&l, rt, NULL));
  static race r;
  memset(&r, 0, sizeof r);
  r.l = l;
  r.rounds = ROUNDS;
  pthread_barrier_init(&r.go, NULL, 2);
  pthread_barrier_init(&r.done, NULL, 2);
  pthread_t tid;
  pthread_create(&tid, NULL, releaser, &r);
  int won = 0, cancelled = 0;
  for (int i = 0; i < ROUNDS; i++) {
    /* Every third round the request is for two keys, the busy one last or
     * first, so the cancel can also meet a part-way request. */
    sluice_lock_guard *g;
    assert_ok(sluice_locks_try(l, "busy", 4, SLUICE_LOCK_EXCLUSIVE, &g));
    r.to_release = g;
    outcome o = {1, NULL};
    sluice_op *op = NULL;
    if (i % 3 == 0) {
      sluice_lock_key ks[2] = {{"busy", 4, 0}, {i % 2 ? "aaa" : "zzz", 3, 0}};
      assert_ok(sluice_locks_acquire_many(l, ks, 2, -1, outcome_cb, &o, NULL, &op));
    } else {
      assert_ok(sluice_locks_acquire(l, "busy", 4, i % 5 == 0 ? SLUICE_LOCK_SHARED : 0, -1,
                                     outcome_cb, &o, NULL, &op));
    }
    /* Vary who goes first. */
    if (i % 4 == 1) {
      struct timespec ts = {0, (long)(i % 7) * 1000};
      nanosleep(&ts, NULL);
    }
    pthread_barrier_wait(&r.go);
    assert_ok(sluice_op_cancel(op));
    pthread_barrier_wait(&r.done);
    int status = 1;
    assert_ok(sluice_op_wait(op, -1, &status));
    sluice_op_free(op);
    assert_int_equal(status, o.status);
    if (status == 0) {
      won++;
      assert_non_null(o.g);
      assert_ok(sluice_locks_release(l, o.g));
    } else {
      assert_int_equal(status, SLUICE_ECANCELED);
      assert_null(o.g);
      cancelled++;
    }
  }
  pthread_join(tid, NULL);
  assert_int_equal(atomic_load(&r.bad), 0);
  assert_int_equal(won + cancelled, ROUNDS);
  print_message("cancel vs grant: %d granted, %d cancelled\n", won, cancelled);
  sluice_locks_stats st = stats_of(l);
  assert_int_equal(st.live_keys, 0);
  assert_int_equal(st.held, 0);
  assert_int_equal(st.waiters, 0);
  assert_int_equal(st.cancellations, cancelled);
  const char *all[3] = {"busy", "aaa", "zzz"};
  for (int k = 0; k < 3; k++) {
    sluice_lock_guard *g;
    assert_ok(sluice_locks_try(l, all[k], strlen(all[k]), 0, &g));
    assert_ok(sluice_locks_release(l, g));
  }
  pthread_barrier_destroy(&r.go);
  pthread_barrier_destroy(&r.done);
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

/* ---- several keys in opposite orders -------------------------------------- */

typedef struct opposite {
  sluice_locks *l;
  int reverse, rounds;
  atomic_int *inside, *bad;
} opposite;

static void *opposite_worker(void *arg) {
  opposite *o = arg;
  sluice_lock_key ab[2] = {{"user:1", 6, 0}, {"group:1", 7, 0}};
  sluice_lock_key ba[2] = {ab[1], ab[0]};
  for (int i = 0; i < o->rounds; i++) {
    sluice_lock_guard *g;
    /* A generous deadline turns a deadlock into a failure, not a hang. */
    int rc = sluice_locks_lock_many(o->l, o->reverse ? ba : ab, 2, 60000, &g);
    if (rc != 0) {
      atomic_fetch_add(o->bad, 1);
      continue;
    }
    if (atomic_fetch_add(o->inside, 1) != 0) atomic_fetch_add(o->bad, 1);
    if (i % 8 == 0) sched_yield();
    atomic_fetch_sub(o->inside, 1);
    if (sluice_locks_release(o->l, g) != 0) atomic_fetch_add(o->bad, 1);
    /* And one key alone in between, the other way round each time. */
    const sluice_lock_key *one = &(o->reverse ? ab : ba)[i % 2];
    if (sluice_locks_lock(o->l, one->key, one->len, 0, 60000, &g) != 0 ||
        sluice_locks_release(o->l, g) != 0)
      atomic_fetch_add(o->bad, 1);
  }
  return NULL;
}

static void test_opposite_orders_never_deadlock(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_locks *l = NULL;
  assert_ok(sluice_locks_new(&l, rt, NULL));
  static atomic_int inside, bad;
  atomic_init(&inside, 0);
  atomic_init(&bad, 0);
  opposite o[THREADS];
  pthread_t tid[THREADS];
  for (int t = 0; t < THREADS; t++) {
    o[t] = (opposite){l, t % 2, 2000, &inside, &bad};
    pthread_create(&tid[t], NULL, opposite_worker, &o[t]);
  }
  for (int t = 0; t < THREADS; t++) pthread_join(tid[t], NULL);
  assert_int_equal(atomic_load(&bad), 0);
  sluice_locks_stats st = stats_of(l);
  assert_int_equal(st.live_keys, 0);
  assert_int_equal(st.held, 0);
  sluice_locks_free(l);
  sluice_runtime_free(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exclusion_under_pressure),
      cmocka_unit_test(test_shared_exclusive_under_pressure),
      cmocka_unit_test(test_exclusion_with_rejects),
      cmocka_unit_test(test_cancel_races_grant),
      cmocka_unit_test(test_opposite_orders_never_deadlock),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Several threads on one limiter. Time is injected and moves in phases:
 * within a phase every thread drains the same keys until refused, so
 * however the threads interleave, each key must have passed exactly what a
 * plain single-threaded model passes when it fills the key at that time.
 * Also: check_many from threads listing the same limiters in opposite
 * orders (no deadlock, all or nothing), and key churn against the cap and
 * a concurrent sweep.
 * SLUICE_TEST_CONCURRENT: also run under ThreadSanitizer. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/limiter.h>

#include "testutil.h"

static _Atomic uint64_t g_clock;
static uint64_t test_clock(void *ud) {
  (void)ud;
  return atomic_load(&g_clock);
}

static sluice_limiter *make(int algo, uint64_t limit, uint64_t window, uint64_t burst,
                            uint64_t max_keys) {
  sluice_limiter_options o;
  assert_ok(sluice_limiter_options_init(&o, SLUICE_LIMITER_OPTIONS_VERSION));
  o.algorithm = algo;
  o.limit = limit;
  o.window_ns = window;
  o.burst = burst;
  o.max_keys = max_keys;
  o.clock = test_clock;
  sluice_limiter *l = NULL;
  assert_ok(sluice_limiter_new(&l, NULL, &o));
  return l;
}

static uint64_t rng = 12345;
static uint64_t rnd(void) {
  uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* ---- fill models: how many cost-1 requests pass at time t ----------- */

enum { KEYS = 8, THREADS = 4, PHASES = 40, MAXEV = 1 << 16 };

typedef struct fill_model {
  int algo;
  uint64_t N, W, T, tau;
  /* log and window: passed events per key (time, count), times increasing */
  uint64_t t[KEYS][MAXEV], n[KEYS][MAXEV];
  size_t len[KEYS];
  /* GCRA: credit per key, in ns */
  uint64_t credit[KEYS], last[KEYS];
} fill_model;

static uint64_t sum_in(const fill_model *m, int k, uint64_t from, uint64_t to) {
  uint64_t s = 0;
  for (size_t i = 0; i < m->len[k]; i++)
    if (m->t[k][i] >= from && m->t[k][i] <= to) s += m->n[k][i];
  return s;
}

static uint64_t model_fill(fill_model *m, int k, uint64_t t) {
  uint64_t got = 0;
  if (m->algo == SLUICE_LIMITER_GCRA) {
    uint64_t c = m->credit[k] + (t - m->last[k]);
    if (c > m->tau) c = m->tau;
    got = c / m->T;
    m->credit[k] = c - got * m->T;
    m->last[k] = t;
    return got;
  }
  if (m->algo == SLUICE_LIMITER_SLIDING_LOG) {
    uint64_t in = sum_in(m, k, t >= m->W ? t - m->W + 1 : 0, t);
    got = m->N - in;
  } else {
    uint64_t W = m->W, kw = t / W, e = t - kw * W;
    uint64_t cur = sum_in(m, k, kw * W, t);
    uint64_t prev = kw ? sum_in(m, k, (kw - 1) * W, kw * W - 1) : 0;
    while ((unsigned __int128)prev * (W - e) + (unsigned __int128)(cur + got + 1) * W <=
           (unsigned __int128)m->N * W)
      got++;
  }
  if (got) {
    assert_true(m->len[k] < MAXEV);
    m->t[k][m->len[k]] = t;
    m->n[k][m->len[k]] = got;
    m->len[k]++;
  }
  return got;
}

/* ---- phased hammering ------------------------------------------------ */

typedef struct hammer {
  sluice_limiter *l;
  pthread_barrier_t *start, *done;
  _Atomic uint64_t *passed; /* [PHASES][KEYS] */
  int id;
} hammer;

static void *hammer_main(void *arg) {
  hammer *h = arg;
  char key[16];
  for (int p = 0; p < PHASES; p++) {
    pthread_barrier_wait(h->start);
    /* Each thread walks the keys in its own order, and drains each. */
    for (int i = 0; i < KEYS; i++) {
      int k = (i * (h->id + 1) + h->id) % KEYS;
      int n = snprintf(key, sizeof key, "key-%d", k);
      uint64_t mine = 0;
      sluice_limiter_result r = {sizeof r};
      while (sluice_limiter_check(h->l, key, (size_t)n, 1, &r) == 0) mine++;
      assert_int_equal(r.reason, SLUICE_LIMITER_LIMITED);
      atomic_fetch_add(&h->passed[p * KEYS + k], mine);
    }
    pthread_barrier_wait(h->done);
  }
  return NULL;
}

static void phased(int algo, uint64_t N, uint64_t W, uint64_t burst) {
  sluice_limiter *l = make(algo, N, W, burst, 1000);
  fill_model *m = calloc(1, sizeof *m);
  m->algo = algo;
  m->N = N;
  m->W = W;
  m->T = W / N + (W % N != 0);
  m->tau = (burst ? burst : N) * m->T;
  for (int k = 0; k < KEYS; k++) m->credit[k] = m->tau;
  _Atomic uint64_t *passed = calloc(PHASES * KEYS, sizeof *passed);
  pthread_barrier_t start, done;
  pthread_barrier_init(&start, NULL, THREADS + 1);
  pthread_barrier_init(&done, NULL, THREADS + 1);
  hammer h[THREADS];
  pthread_t tid[THREADS];
  for (int i = 0; i < THREADS; i++) {
    h[i] = (hammer){l, &start, &done, passed, i};
    pthread_create(&tid[i], NULL, hammer_main, &h[i]);
  }
  uint64_t t = 1000000;
  for (int p = 0; p < PHASES; p++) {
    t += rnd() % (W / 2);
    atomic_store(&g_clock, t);
    pthread_barrier_wait(&start);
    pthread_barrier_wait(&done);
    for (int k = 0; k < KEYS; k++) {
      uint64_t want = model_fill(m, k, t);
      uint64_t got = atomic_load(&passed[p * KEYS + k]);
      if (want != got)
        fail_msg("algorithm %d phase %d key %d: the model passes %llu, the limiter passed %llu",
                 algo, p, k, (unsigned long long)want, (unsigned long long)got);
    }
  }
  for (int i = 0; i < THREADS; i++) pthread_join(tid[i], NULL);
  pthread_barrier_destroy(&start);
  pthread_barrier_destroy(&done);
  sluice_limiter_stats st = {sizeof st};
  assert_ok(sluice_limiter_stats_get(l, &st));
  assert_int_equal(st.keys, KEYS);
  assert_int_equal(st.rejected, (uint64_t)PHASES * KEYS * THREADS);
  free(passed);
  free(m);
  sluice_limiter_free(l);
}

static void test_phased_sliding_log(void **state) {
  (void)state;
  phased(SLUICE_LIMITER_SLIDING_LOG, 50, 10000000, 0);
}
static void test_phased_gcra(void **state) {
  (void)state;
  phased(SLUICE_LIMITER_GCRA, 50, 10000003, 80);
}
static void test_phased_sliding_window(void **state) {
  (void)state;
  phased(SLUICE_LIMITER_SLIDING_WINDOW, 50, 10000000, 0);
}

/* ---- check_many in opposite orders ----------------------------------- */

enum { MANY_ITERS = 20000 };

typedef struct many_arg {
  sluice_limiter *a, *b, *c;
  int id;
  uint64_t ok_ab, ok_abc, ok_a;
} many_arg;

static void *many_main(void *arg) {
  many_arg *x = arg;
  sluice_limiter_item ab[2] = {{x->a, "a", 1, 1}, {x->b, "b", 1, 1}};
  sluice_limiter_item ba[2] = {{x->b, "b", 1, 1}, {x->a, "a", 1, 1}};
  sluice_limiter_item cba[3] = {{x->c, "c", 1, 1}, {x->b, "b", 1, 1}, {x->a, "a", 1, 1}};
  for (int i = 0; i < MANY_ITERS; i++) {
    int rc;
    switch ((i + x->id) % 4) {
      case 0:
        rc = sluice_limiter_check_many(ab, 2, NULL);
        if (rc == 0) x->ok_ab++;
        break;
      case 1:
        rc = sluice_limiter_check_many(ba, 2, NULL);
        if (rc == 0) x->ok_ab++;
        break;
      case 2:
        rc = sluice_limiter_check_many(cba, 3, NULL);
        if (rc == 0) x->ok_abc++;
        break;
      default:
        rc = sluice_limiter_check(x->a, "a", 1, 1, NULL);
        if (rc == 0) x->ok_a++;
    }
    assert_true(rc == 0 || rc == SLUICE_EREJECTED);
  }
  return NULL;
}

static void test_check_many_orders(void **state) {
  (void)state;
  /* Frozen time: each key has a fixed number of units to give. */
  atomic_store(&g_clock, 5000000);
  sluice_limiter *a = make(SLUICE_LIMITER_GCRA, 30000, 1000000000, 0, 10);
  sluice_limiter *b = make(SLUICE_LIMITER_SLIDING_WINDOW, 25000, 1000000000, 0, 10);
  sluice_limiter *c = make(SLUICE_LIMITER_SLIDING_LOG, 9000, 1000000000, 0, 10);
  many_arg x[THREADS];
  pthread_t tid[THREADS];
  for (int i = 0; i < THREADS; i++) {
    x[i] = (many_arg){a, b, c, i, 0, 0, 0};
    pthread_create(&tid[i], NULL, many_main, &x[i]);
  }
  uint64_t ab = 0, abc = 0, only_a = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(tid[i], NULL);
    ab += x[i].ok_ab;
    abc += x[i].ok_abc;
    only_a += x[i].ok_a;
  }
  /* Units taken are exactly what the successful calls asked for. */
  sluice_limiter_result r = {sizeof r};
  sluice_limiter_peek(a, "a", 1, 1, &r);
  assert_int_equal(30000 - (ab + abc + only_a), r.remaining + r.allowed);
  sluice_limiter_peek(b, "b", 1, 1, &r);
  assert_int_equal(25000 - (ab + abc), r.remaining + r.allowed);
  sluice_limiter_peek(c, "c", 1, 1, &r);
  assert_int_equal(9000 - abc, r.remaining + r.allowed);
  assert_true(abc > 0 && ab > 0 && only_a > 0);
  sluice_limiter_free(a);
  sluice_limiter_free(b);
  sluice_limiter_free(c);
}

/* ---- key churn at the cap with a concurrent sweep -------------------- */

typedef struct churn_arg {
  sluice_limiter *l;
  int id;
  _Atomic int *stop;
  uint64_t limited;
} churn_arg;

static void *churn_main(void *arg) {
  churn_arg *c = arg;
  char key[32];
  for (int i = 0; i < 60000; i++) {
    atomic_fetch_add(&g_clock, 50);
    int n = snprintf(key, sizeof key, "t%d-%d", c->id, i);
    int rc = sluice_limiter_check(c->l, key, (size_t)n, 1, NULL);
    if (rc == SLUICE_ELIMIT)
      c->limited++;
    else
      assert_int_equal(rc, 0);
  }
  return NULL;
}

static void *sweeper_main(void *arg) {
  churn_arg *c = arg;
  while (!atomic_load(c->stop)) {
    assert_true(sluice_limiter_sweep(c->l) >= 0);
    sluice_limiter_stats st = {sizeof st};
    assert_ok(sluice_limiter_stats_get(c->l, &st));
    assert_true(st.keys <= 3000);
  }
  return NULL;
}

static void test_churn_and_sweep(void **state) {
  (void)state;
  atomic_store(&g_clock, 1);
  sluice_limiter *l = make(SLUICE_LIMITER_GCRA, 1, 1000000, 0, 3000);
  _Atomic int stop = 0;
  churn_arg c[THREADS + 1];
  pthread_t tid[THREADS + 1];
  for (int i = 0; i <= THREADS; i++) {
    c[i] = (churn_arg){l, i, &stop, 0};
    pthread_create(&tid[i], NULL, i == THREADS ? sweeper_main : churn_main, &c[i]);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(tid[i], NULL);
  atomic_store(&stop, 1);
  pthread_join(tid[THREADS], NULL);
  sluice_limiter_stats st = {sizeof st};
  assert_ok(sluice_limiter_stats_get(l, &st));
  assert_true(st.peak_keys <= 3000);
  uint64_t limited = 0;
  for (int i = 0; i < THREADS; i++) limited += c[i].limited;
  assert_int_equal(st.full_refused, limited);
  assert_int_equal(st.allowed + st.full_refused, (uint64_t)THREADS * 60000);
  atomic_fetch_add(&g_clock, 10000000);
  sluice_limiter_sweep(l);
  assert_ok(sluice_limiter_stats_get(l, &st));
  assert_int_equal(st.keys, 0);
  sluice_limiter_free(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_phased_sliding_log),
      cmocka_unit_test(test_phased_gcra),
      cmocka_unit_test(test_phased_sliding_window),
      cmocka_unit_test(test_check_many_orders),
      cmocka_unit_test(test_churn_and_sweep),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

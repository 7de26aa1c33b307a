/* The limiter's non-waiting calls, on an injected clock: each algorithm
 * against a plain reference model over random traces (answers, remaining,
 * retry_after and reset_after equal to the nanosecond), retry_after
 * rounding, peek, all-or-nothing check_many, blocks, limit changes, bad
 * input, and memory under a million distinct keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/limiter.h>

#include "testutil.h"

/* ---- an injected clock ---------------------------------------------- */

static uint64_t g_now;
static uint64_t test_clock(void *ud) {
  (void)ud;
  return g_now;
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

static uint64_t rng_state;
static uint64_t rnd(void) { /* splitmix64 */
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static uint64_t rnd_below(uint64_t n) { return n ? rnd() % n : 0; }

static sluice_limiter_result result(void) {
  sluice_limiter_result r;
  memset(&r, 0xab, sizeof r); /* every field must be written */
  r.size = sizeof r;
  return r;
}

/* ---- reference models ----------------------------------------------- */

/* What a model says about one request. */
typedef struct answer {
  int allowed;
  uint64_t remaining, retry_after, reset_after;
} answer;

/* Passed events of one key, oldest first (times never go back). */
typedef struct events {
  uint64_t *t, *cost;
  size_t n, cap, first;
} events;

static void ev_push(events *e, uint64_t t, uint64_t cost) {
  if (e->n == e->cap) {
    e->cap = e->cap ? e->cap * 2 : 64;
    e->t = realloc(e->t, e->cap * sizeof *e->t);
    e->cost = realloc(e->cost, e->cap * sizeof *e->cost);
  }
  e->t[e->n] = t;
  e->cost[e->n] = cost;
  e->n++;
}
static void ev_free(events *e) {
  free(e->t);
  free(e->cost);
  memset(e, 0, sizeof *e);
}
/* Sum of costs with time in [from, to]. */
static uint64_t ev_sum(const events *e, uint64_t from, uint64_t to) {
  uint64_t s = 0;
  for (size_t i = e->first; i < e->n; i++)
    if (e->t[i] >= from && e->t[i] <= to) s += e->cost[i];
  return s;
}

/* The sliding log as its definition: the costs passed in (t - W, t]. */
static answer log_model(events *ev, uint64_t N, uint64_t W, uint64_t t, uint64_t cost) {
  answer a = {0};
  while (ev->first < ev->n && ev->t[ev->first] + W <= t) ev->first++; /* never needed again */
  uint64_t in = ev_sum(ev, t >= W ? t - W + 1 : 0, t);
  if (in + cost <= N) {
    a.allowed = 1;
    a.remaining = N - in - cost;
    a.reset_after = W;
    ev_push(ev, t, cost);
    return a;
  }
  a.remaining = in < N ? N - in : 0;
  /* The earliest time the oldest events have left enough room. */
  uint64_t need = in + cost - N, freed = 0;
  for (size_t i = ev->first; i < ev->n; i++) {
    freed += ev->cost[i];
    if (freed >= need) {
      a.retry_after = ev->t[i] + W - t;
      break;
    }
  }
  a.reset_after = ev->t[ev->n - 1] + W - t;
  return a;
}

/* GCRA as a token bucket of credit in ns: it fills at 1 per ns up to tau,
 * and a cost c needs c * T of it. */
typedef struct bucket {
  uint64_t credit, last;
  int used;
} bucket;

static answer gcra_model(bucket *b, uint64_t T, uint64_t tau, uint64_t t, uint64_t cost) {
  answer a = {0};
  if (!b->used) {
    b->used = 1;
    b->credit = tau;
  } else {
    uint64_t grown = b->credit + (t - b->last);
    b->credit = grown < tau ? grown : tau;
  }
  b->last = t;
  uint64_t need = cost * T;
  if (b->credit >= need) {
    b->credit -= need;
    a.allowed = 1;
    a.remaining = b->credit / T;
  } else {
    a.retry_after = need - b->credit;
    a.remaining = b->credit / T;
  }
  a.reset_after = tau - b->credit;
  return a;
}

/* The sliding-window counter from the full history: counts of the fixed
 * windows summed from the events, the condition evaluated as written. */
typedef unsigned __int128 u128;

static int win_passes(const events *ev, uint64_t N, uint64_t W, uint64_t t, uint64_t cost,
                      uint64_t *prev_out, uint64_t *cur_out) {
  uint64_t k = t / W, e = t - k * W;
  uint64_t cur = ev_sum(ev, k * W, t);
  uint64_t prev = k ? ev_sum(ev, (k - 1) * W, k * W - 1) : 0;
  if (prev_out) *prev_out = prev;
  if (cur_out) *cur_out = cur;
  return (u128)prev * (W - e) + (u128)(cur + cost) * W <= (u128)N * W;
}

static answer win_model(events *ev, uint64_t N, uint64_t W, uint64_t t, uint64_t cost) {
  answer a = {0};
  /* Before the previous window nothing counts any more (times never go back). */
  uint64_t horizon = t / W >= 1 ? (t / W - 1) * W : 0;
  while (ev->first < ev->n && ev->t[ev->first] < horizon) ev->first++;
  uint64_t prev, cur;
  int ok = win_passes(ev, N, W, t, cost, &prev, &cur);
  uint64_t k = t / W, e = t - k * W;
  uint64_t prev_units = (uint64_t)(((u128)prev * (W - e) + W - 1) / W);
  uint64_t used = prev_units + cur;
  if (ok) {
    a.allowed = 1;
    a.remaining = N - used - cost;
    ev_push(ev, t, cost);
    cur += cost;
  } else {
    a.remaining = used < N ? N - used : 0;
    /* The smallest wait that passes, by bisection over the predicate. */
    uint64_t lo = 0, hi = 2 * W;
    while (hi - lo > 1) {
      uint64_t mid = lo + (hi - lo) / 2;
      if (win_passes(ev, N, W, t + mid, cost, NULL, NULL))
        hi = mid;
      else
        lo = mid;
    }
    a.retry_after = hi;
  }
  if (cur)
    a.reset_after = (k + 2) * W - t;
  else if (prev)
    a.reset_after = (k + 1) * W - t;
  return a;
}

/* ---- random traces against the models ------------------------------- */

enum { KEYS = 4 };

typedef struct trace {
  int algo;
  uint64_t N, W, B, T, tau;
  events ev[KEYS];
  bucket bk[KEYS];
} trace;

static answer model(trace *tr, int k, uint64_t t, uint64_t cost) {
  switch (tr->algo) {
    case SLUICE_LIMITER_GCRA:
      return gcra_model(&tr->bk[k], tr->T, tr->tau, t, cost);
    case SLUICE_LIMITER_SLIDING_WINDOW:
      return win_model(&tr->ev[k], tr->N, tr->W, t, cost);
    default:
      return log_model(&tr->ev[k], tr->N, tr->W, t, cost);
  }
}

/* The guarantees each algorithm documents, checked at the newest passed
 * event independently of the models' arithmetic. */
static void check_guarantees(trace *tr, int k) {
  const events *ev = &tr->ev[k];
  if (tr->algo == SLUICE_LIMITER_GCRA || ev->n == 0) return;
  uint64_t t = ev->t[ev->n - 1];
  uint64_t sliding = ev_sum(ev, t >= tr->W ? t - tr->W + 1 : 0, t);
  if (tr->algo == SLUICE_LIMITER_SLIDING_LOG) {
    assert_true(sliding <= tr->N); /* never N+1 in any window W */
  } else {
    assert_true(sliding <= 2 * tr->N - 1);
    uint64_t k0 = t / tr->W * tr->W;
    assert_true(ev_sum(ev, k0, t) <= tr->N); /* per fixed window */
  }
}

static uint64_t pick_cost(const trace *tr) {
  uint64_t max = tr->algo == SLUICE_LIMITER_GCRA ? tr->B : tr->N;
  switch (rnd_below(4)) {
    case 0:
      return 1 + rnd_below(max);
    case 1:
      return max;
    default:
      return 1;
  }
}

static void compare(const answer *m, int rc, const sluice_limiter_result *r, uint64_t t, int k,
                    uint64_t cost) {
  if (m->allowed != r->allowed || m->remaining != r->remaining ||
      m->retry_after != r->retry_after_ns || m->reset_after != r->reset_after_ns)
    fail_msg("t=%llu key=%d cost=%llu: model allowed=%d remaining=%llu retry=%llu reset=%llu; "
             "limiter allowed=%d remaining=%llu retry=%llu reset=%llu (seed state %llu)",
             (unsigned long long)t, k, (unsigned long long)cost, m->allowed,
             (unsigned long long)m->remaining, (unsigned long long)m->retry_after,
             (unsigned long long)m->reset_after, r->allowed, (unsigned long long)r->remaining,
             (unsigned long long)r->retry_after_ns, (unsigned long long)r->reset_after_ns,
             (unsigned long long)rng_state);
  assert_int_equal(rc, m->allowed ? 0 : SLUICE_EREJECTED);
  assert_int_equal(r->reason, m->allowed ? SLUICE_LIMITER_OK : SLUICE_LIMITER_LIMITED);
}

static void run_trace(int algo, uint64_t N, uint64_t W, uint64_t B, int steps, uint64_t seed) {
  trace tr;
  memset(&tr, 0, sizeof tr);
  tr.algo = algo;
  tr.N = N;
  tr.W = W;
  tr.B = B ? B : N;
  tr.T = W / N + (W % N != 0);
  tr.tau = tr.B * tr.T;
  rng_state = seed;
  sluice_limiter *l = make(algo, N, W, B, 1000);
  char keys[KEYS][16];
  for (int k = 0; k < KEYS; k++) snprintf(keys[k], sizeof keys[k], "user:%d", k);
  g_now = 1000000 + rnd_below(W); /* not aligned to a window */
  int refusals = 0, boundary_checks = 0;
  for (int i = 0; i < steps; i++) {
    /* Mostly small steps (traffic inside a window), some long gaps. */
    switch (rnd_below(8)) {
      case 0:
        break;
      case 1:
        g_now += 1;
        break;
      case 2:
        g_now += rnd_below(W);
        break;
      case 3:
        g_now += rnd_below(2 * W + 2);
        break;
      default:
        g_now += rnd_below(W / N + 1);
    }
    if (algo == SLUICE_LIMITER_SLIDING_LOG && i % 1000 == 999) {
      /* The log stays exact across limit changes: the model just uses the
       * new N from now on. */
      static const uint64_t limits[] = {1, 2, 3, 7, 20, 100};
      tr.N = limits[rnd_below(6)];
      assert_ok(sluice_limiter_set_limit(l, tr.N, W, 0));
    }
    int k = (int)rnd_below(KEYS);
    uint64_t cost = pick_cost(&tr);
    sluice_limiter_result r = result();
    int peek = rnd_below(8) == 0;
    if (peek) {
      /* peek answers as check would and changes nothing: the model is
       * asked on a copy. */
      trace copy = tr;
      events saved = tr.ev[k];
      events dup = {0};
      for (size_t j = saved.first; j < saved.n; j++) ev_push(&dup, saved.t[j], saved.cost[j]);
      copy.ev[k] = dup;
      answer m = model(&copy, k, g_now, cost);
      ev_free(&copy.ev[k]);
      int rc = sluice_limiter_peek(l, keys[k], strlen(keys[k]), cost, &r);
      compare(&m, rc, &r, g_now, k, cost);
      continue;
    }
    answer m = model(&tr, k, g_now, cost);
    int rc = sluice_limiter_check(l, keys[k], strlen(keys[k]), cost, &r);
    compare(&m, rc, &r, g_now, k, cost);
    if (m.allowed) check_guarantees(&tr, k); /* at each passed event */
    if (!m.allowed) {
      refusals++;
      assert_true(r.retry_after_ns > 0);
      if (rnd_below(3) == 0) {
        /* Retrying one ns early is refused; exactly on time passes. */
        uint64_t t0 = g_now, ra = r.retry_after_ns;
        g_now = t0 + ra - 1;
        m = model(&tr, k, g_now, cost);
        assert_false(m.allowed);
        rc = sluice_limiter_check(l, keys[k], strlen(keys[k]), cost, &r);
        compare(&m, rc, &r, g_now, k, cost);
        g_now = t0 + ra;
        m = model(&tr, k, g_now, cost);
        assert_true(m.allowed);
        rc = sluice_limiter_check(l, keys[k], strlen(keys[k]), cost, &r);
        compare(&m, rc, &r, g_now, k, cost);
        assert_int_equal(rc, 0);
        check_guarantees(&tr, k);
        boundary_checks++;
      }
    }
  }
  assert_true(refusals > steps / 20); /* the trace did push on the limit */
  assert_true(boundary_checks > 0);
  for (int k = 0; k < KEYS; k++) ev_free(&tr.ev[k]);
  sluice_limiter_free(l);
}

static void test_sliding_log_vs_model(void **state) {
  (void)state;
  run_trace(SLUICE_LIMITER_SLIDING_LOG, 20, 60000000000ull, 0, 20000, 1);
  run_trace(SLUICE_LIMITER_SLIDING_LOG, 3, 1000003, 0, 20000, 2);
  run_trace(SLUICE_LIMITER_SLIDING_LOG, 1, 5000, 0, 5000, 3);
  run_trace(SLUICE_LIMITER_SLIDING_LOG, 100, 999999937, 0, 20000, 4);
}

static void test_gcra_vs_model(void **state) {
  (void)state;
  run_trace(SLUICE_LIMITER_GCRA, 20, 60000000000ull, 0, 20000, 11);
  run_trace(SLUICE_LIMITER_GCRA, 7, 1000003, 0, 20000, 12);  /* T rounded up */
  run_trace(SLUICE_LIMITER_GCRA, 10, 1000000, 3, 20000, 13); /* burst below the rate */
  run_trace(SLUICE_LIMITER_GCRA, 5, 1000000, 50, 20000, 14); /* burst above it */
  run_trace(SLUICE_LIMITER_GCRA, 1, 1000, 1, 5000, 15);
}

static void test_sliding_window_vs_model(void **state) {
  (void)state;
  run_trace(SLUICE_LIMITER_SLIDING_WINDOW, 20, 60000000000ull, 0, 4000, 21);
  run_trace(SLUICE_LIMITER_SLIDING_WINDOW, 3, 1000003, 0, 4000, 22);
  run_trace(SLUICE_LIMITER_SLIDING_WINDOW, 100, 999999937, 0, 4000, 23);
  run_trace(SLUICE_LIMITER_SLIDING_WINDOW, 1, 5000, 0, 3000, 24);
}

/* The counter's documented bound is reachable: a burst at the end of one
 * window and one at the start of the next put close to 2N in one sliding
 * window, and never 2N. */
static void test_sliding_window_bound(void **state) {
  (void)state;
  const uint64_t N = 10, W = 1000000;
  sluice_limiter *l = make(SLUICE_LIMITER_SLIDING_WINDOW, N, W, 0, 100);
  g_now = 5 * W - 1; /* the last ns of a window */
  sluice_limiter_result r = result();
  assert_ok(sluice_limiter_check(l, "k", 1, N, &r));
  uint64_t passed = 0;
  /* From the next window on, everything that passes within W of the burst. */
  for (g_now = 5 * W; g_now < 6 * W - 1; g_now += 997)
    if (sluice_limiter_check(l, "k", 1, 1, &r) == 0) passed++;
  assert_true(passed >= N - 2); /* close to N more in the same sliding window */
  assert_true(N + passed <= 2 * N - 1);
  sluice_limiter_free(l);
}

/* ---- exact edges ------------------------------------------------------ */

static void test_retry_after_rounding(void **state) {
  (void)state;
  /* Windows that do not divide by the limit, so every rounding matters. */
  int algos[] = {SLUICE_LIMITER_SLIDING_LOG, SLUICE_LIMITER_SLIDING_WINDOW, SLUICE_LIMITER_GCRA};
  for (int a = 0; a < 3; a++) {
    sluice_limiter *l = make(algos[a], 3, 1000000007ull, 0, 100);
    g_now = 123456789;
    sluice_limiter_result r = result();
    for (int round = 0; round < 50; round++) {
      while (sluice_limiter_check(l, "u", 1, 1 + round % 3, &r) == 0) g_now += round * 7919;
      assert_int_equal(r.allowed, 0);
      uint64_t ra = r.retry_after_ns, t0 = g_now;
      assert_true(ra > 0);
      g_now = t0 + ra - 1;
      assert_err(SLUICE_EREJECTED, sluice_limiter_peek(l, "u", 1, 1 + round % 3, &r));
      g_now = t0 + ra;
      assert_ok(sluice_limiter_check(l, "u", 1, 1 + round % 3, &r));
    }
    sluice_limiter_free(l);
  }
}

static void test_peek_consumes_nothing(void **state) {
  (void)state;
  int algos[] = {SLUICE_LIMITER_SLIDING_LOG, SLUICE_LIMITER_SLIDING_WINDOW, SLUICE_LIMITER_GCRA};
  for (int a = 0; a < 3; a++) {
    sluice_limiter *l = make(algos[a], 5, 1000000000, 0, 100);
    g_now = 42;
    sluice_limiter_result r = result();
    for (int i = 0; i < 100; i++) assert_ok(sluice_limiter_peek(l, "p", 1, 5, &r));
    assert_int_equal(r.allowed, 1);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(r.limit, 5);
    sluice_limiter_stats st = {sizeof st};
    assert_ok(sluice_limiter_stats_get(l, &st));
    assert_int_equal(st.keys, 0); /* peek creates no key */
    assert_int_equal(st.allowed + st.rejected, 0);
    assert_ok(sluice_limiter_check(l, "p", 1, 2, &r));
    assert_int_equal(r.remaining, 3);
    for (int i = 0; i < 10; i++) {
      assert_ok(sluice_limiter_peek(l, "p", 1, 3, &r));
      assert_int_equal(r.remaining, 0);
      assert_err(SLUICE_EREJECTED, sluice_limiter_peek(l, "p", 1, 4, &r));
      assert_int_equal(r.remaining, 3);
    }
    assert_ok(sluice_limiter_check(l, "p", 1, 3, &r)); /* all 3 are still there */
    assert_err(SLUICE_EREJECTED, sluice_limiter_check(l, "p", 1, 1, &r));
    assert_ok(sluice_limiter_stats_get(l, &st));
    assert_int_equal(st.allowed, 2);
    assert_int_equal(st.rejected, 1);
    sluice_limiter_free(l);
  }
}

/* A caller-declared result smaller than the library's gets its prefix. */
static void test_result_size(void **state) {
  (void)state;
  sluice_limiter *l = make(SLUICE_LIMITER_GCRA, 5, 1000000, 0, 100);
  struct {
    size_t size;
    int allowed;
    int reason;
    uint64_t guard;
  } small;
  memset(&small, 0x5a, sizeof small);
  small.size = offsetof(sluice_limiter_result, limit);
  assert_ok(sluice_limiter_check(l, "x", 1, 1, (sluice_limiter_result *)&small));
  assert_int_equal(small.allowed, 1);
  assert_int_equal(small.size, offsetof(sluice_limiter_result, limit));
  assert_true(small.guard == 0x5a5a5a5a5a5a5a5aull); /* untouched */
  assert_ok(sluice_limiter_check(l, "x", 1, 1, NULL));
  sluice_limiter_free(l);
}

/* ---- several limiters at once ----------------------------------------- */

static void test_check_many(void **state) {
  (void)state;
  sluice_limiter *user = make(SLUICE_LIMITER_SLIDING_LOG, 2, 1000000, 0, 100);
  sluice_limiter *group = make(SLUICE_LIMITER_GCRA, 3, 3000000, 0, 100);
  sluice_limiter *global = make(SLUICE_LIMITER_SLIDING_WINDOW, 5, 1000000, 0, 100);
  g_now = 10000000;
  sluice_limiter_item items[3] = {{user, "u1", 2, 1}, {group, "g", 1, 1}, {global, "all", 3, 1}};
  sluice_limiter_result r = result();
  assert_ok(sluice_limiter_check_many(items, 3, &r));
  assert_int_equal(r.allowed, 1);
  assert_int_equal(r.remaining, 1); /* the user's: 2 - 1 */
  assert_int_equal(r.index, 0);
  assert_ok(sluice_limiter_check_many(items, 3, &r));
  /* The user is spent: the next refuses, and nothing is taken elsewhere. */
  assert_err(SLUICE_EREJECTED, sluice_limiter_check_many(items, 3, &r));
  assert_int_equal(r.allowed, 0);
  assert_int_equal(r.index, 0);
  assert_int_equal(r.reason, SLUICE_LIMITER_LIMITED);
  assert_int_equal(r.retry_after_ns, 1000000);
  sluice_limiter_result p = result();
  assert_ok(sluice_limiter_peek(group, "g", 1, 1, &p));
  assert_int_equal(p.remaining, 0); /* 3 - 2 taken - this 1 */
  assert_ok(sluice_limiter_peek(global, "all", 3, 1, &p));
  assert_int_equal(p.remaining, 2);
  /* Another user passes through the same group and global limits. */
  items[0].key = "u2";
  assert_ok(sluice_limiter_check_many(items, 3, &r));
  assert_int_equal(r.index, 1); /* the group has the fewest left (0) */
  assert_int_equal(r.remaining, 0);
  /* Now the group refuses too: retry_after is the largest. */
  items[0].key = "u3";
  assert_err(SLUICE_EREJECTED, sluice_limiter_check_many(items, 3, &r));
  assert_int_equal(r.index, 1);
  assert_int_equal(r.retry_after_ns, 1000000); /* T = 1 ms for the group */
  g_now += r.retry_after_ns - 1;
  assert_err(SLUICE_EREJECTED, sluice_limiter_check_many(items, 3, &r));
  g_now += 1;
  assert_ok(sluice_limiter_check_many(items, 3, &r));
  /* The same key twice counts with both costs. */
  sluice_limiter *solo = make(SLUICE_LIMITER_GCRA, 4, 4000000, 0, 100);
  sluice_limiter_item twice[2] = {{solo, "k", 1, 3}, {solo, "k", 1, 1}};
  assert_ok(sluice_limiter_check_many(twice, 2, &r));
  assert_int_equal(r.remaining, 0);
  assert_err(SLUICE_EREJECTED, sluice_limiter_check_many(twice, 2, &r));
  twice[0].cost = 4;
  assert_err(SLUICE_EINVAL, sluice_limiter_check_many(twice, 2, &r)); /* 5 > 4: never */
  assert_non_null(strstr(sluice_error_message(), "item 0"));
  /* A key that is blocked refuses the whole call. */
  sluice_limiter_item two[2] = {{user, "u9", 2, 1}, {solo, "z", 1, 1}};
  assert_ok(sluice_limiter_block(solo, "z", 1, 5000));
  assert_err(SLUICE_EREJECTED, sluice_limiter_check_many(two, 2, &r));
  assert_int_equal(r.reason, SLUICE_LIMITER_BLOCKED);
  assert_int_equal(r.index, 1);
  assert_int_equal(r.retry_after_ns, 5000);
  assert_ok(sluice_limiter_peek(user, "u9", 2, 2, &p)); /* untouched */
  sluice_limiter_free(user);
  sluice_limiter_free(group);
  sluice_limiter_free(global);
  sluice_limiter_free(solo);
}

/* ---- blocks and limit changes ----------------------------------------- */

static void test_block(void **state) {
  (void)state;
  sluice_limiter *l = make(SLUICE_LIMITER_GCRA, 10, 1000000000, 0, 3);
  g_now = 1000;
  sluice_limiter_result r = result();
  assert_ok(sluice_limiter_block(l, "spammer", 7, 60000));
  assert_err(SLUICE_EREJECTED, sluice_limiter_check(l, "spammer", 7, 1, &r));
  assert_int_equal(r.reason, SLUICE_LIMITER_BLOCKED);
  assert_int_equal(r.retry_after_ns, 60000);
  assert_int_equal(r.remaining, 0);
  g_now += 59999;
  assert_err(SLUICE_EREJECTED, sluice_limiter_peek(l, "spammer", 7, 1, &r));
  assert_int_equal(r.retry_after_ns, 1);
  g_now += 1;
  assert_ok(sluice_limiter_check(l, "spammer", 7, 1, &r));
  assert_int_equal(r.remaining, 9); /* its rate state was untouched */
  /* Unblock ends a block early; reports whether there was one. */
  assert_ok(sluice_limiter_block(l, "spammer", 7, 1000000));
  assert_int_equal(sluice_limiter_unblock(l, "spammer", 7), 1);
  assert_int_equal(sluice_limiter_unblock(l, "spammer", 7), 0);
  assert_int_equal(sluice_limiter_unblock(l, "nobody", 6), 0);
  assert_ok(sluice_limiter_check(l, "spammer", 7, 1, &r));
  /* A block replaces the previous one. */
  assert_ok(sluice_limiter_block(l, "spammer", 7, 1000000));
  assert_ok(sluice_limiter_block(l, "spammer", 7, 10));
  assert_err(SLUICE_EREJECTED, sluice_limiter_check(l, "spammer", 7, 1, &r));
  assert_int_equal(r.retry_after_ns, 10);
  /* Blocked keys count as tracked: max_keys is 3. */
  assert_ok(sluice_limiter_block(l, "b", 1, 1000000));
  assert_ok(sluice_limiter_block(l, "c", 1, 1000000));
  assert_err(SLUICE_ELIMIT, sluice_limiter_block(l, "d", 1, 1000000));
  sluice_limiter_stats st = {sizeof st};
  assert_ok(sluice_limiter_stats_get(l, &st));
  assert_int_equal(st.keys, 3);
  assert_int_equal(st.blocks, 6);
  /* Once every block is over and the rates have refilled, all go. */
  g_now += 2000000000ull;
  assert_int_equal(sluice_limiter_sweep(l), 3);
  assert_ok(sluice_limiter_stats_get(l, &st));
  assert_int_equal(st.keys, 0);
  sluice_limiter_free(l);
}

static void test_set_limit(void **state) {
  (void)state;
  sluice_limiter_result r = result();
  /* Sliding log: raising the limit grows the key's log, exactly. */
  sluice_limiter *l = make(SLUICE_LIMITER_SLIDING_LOG, 2, 1000, 0, 10);
  g_now = 5000;
  assert_ok(sluice_limiter_check(l, "k", 1, 2, &r));
  assert_err(SLUICE_EREJECTED, sluice_limiter_check(l, "k", 1, 1, &r));
  assert_ok(sluice_limiter_set_limit(l, 5, 1000, 0));
  assert_ok(sluice_limiter_check(l, "k", 1, 3, &r));
  assert_int_equal(r.remaining, 0);
  assert_int_equal(r.limit, 5);
  g_now += 999;
  assert_err(SLUICE_EREJECTED, sluice_limiter_check(l, "k", 1, 1, &r));
  g_now += 1;
  assert_ok(sluice_limiter_check(l, "k", 1, 5, &r));
  /* Lowering it keeps the newest timestamps, and the cost cap follows. */
  assert_ok(sluice_limiter_set_limit(l, 1, 1000, 0));
  assert_err(SLUICE_EINVAL, sluice_limiter_check(l, "k", 1, 2, &r));
  assert_non_null(strstr(sluice_error_message(), "never pass"));
  assert_err(SLUICE_EREJECTED, sluice_limiter_check(l, "k", 1, 1, &r));
  assert_int_equal(r.retry_after_ns, 1000);
  g_now += 1000;
  assert_ok(sluice_limiter_check(l, "k", 1, 1, &r));
  sluice_limiter_stats st = {sizeof st};
  assert_ok(sluice_limiter_stats_get(l, &st));
  assert_int_equal(st.limit, 1);
  assert_int_equal(st.window_ns, 1000);
  assert_err(SLUICE_EINVAL, sluice_limiter_set_limit(l, 0, 1000, 0));
  assert_err(SLUICE_EINVAL, sluice_limiter_set_limit(l, 65536, 1000, 0));
  assert_err(SLUICE_EINVAL, sluice_limiter_set_limit(l, 5, 999, 0));
  assert_err(SLUICE_EINVAL, sluice_limiter_set_limit(NULL, 5, 1000, 0));
  sluice_limiter_free(l);

  /* GCRA: the debt in time carries over; the new rate applies after it. */
  l = make(SLUICE_LIMITER_GCRA, 10, 10000, 0, 10); /* T = 1000, tau = 10000 */
  g_now = 100000;
  assert_ok(sluice_limiter_check(l, "k", 1, 10, &r));
  assert_ok(sluice_limiter_set_limit(l, 100, 10000, 10)); /* T = 100, tau = 1000 */
  assert_ok(sluice_limiter_stats_get(l, &st));
  assert_int_equal(st.burst, 10);
  assert_err(SLUICE_EREJECTED, sluice_limiter_check(l, "k", 1, 1, &r));
  assert_int_equal(r.retry_after_ns, 10000 + 100 - 1000);
  assert_int_equal(r.remaining, 0);
  sluice_limiter_free(l);

  /* Sliding-window counter: counts carry over. */
  l = make(SLUICE_LIMITER_SLIDING_WINDOW, 4, 10000, 0, 10);
  g_now = 100000;
  assert_ok(sluice_limiter_check(l, "k", 1, 4, &r));
  assert_ok(sluice_limiter_set_limit(l, 6, 10000, 0));
  assert_ok(sluice_limiter_check(l, "k", 1, 2, &r));
  assert_err(SLUICE_EREJECTED, sluice_limiter_check(l, "k", 1, 1, &r));
  sluice_limiter_free(l);
}

/* ---- bad input ---------------------------------------------------------- */

static void test_options(void **state) {
  (void)state;
  sluice_limiter_options o;
  assert_err(SLUICE_EINVAL, sluice_limiter_options_init(NULL, SLUICE_LIMITER_OPTIONS_VERSION));
  assert_err(SLUICE_EVERSION, sluice_limiter_options_init(&o, 0));
  assert_err(SLUICE_EVERSION, sluice_limiter_options_init(&o, 2));
  assert_ok(sluice_limiter_options_init(&o, SLUICE_LIMITER_OPTIONS_VERSION));
  sluice_limiter_options lit = SLUICE_LIMITER_OPTIONS_INIT;
  assert_int_equal(o.version, lit.version);
  assert_int_equal(o.algorithm, lit.algorithm);
  assert_int_equal(o.limit, lit.limit);
  assert_true(o.window_ns == lit.window_ns);
  assert_int_equal(o.burst, lit.burst);
  assert_int_equal(o.max_keys, lit.max_keys);
  assert_int_equal(o.on_full, lit.on_full);
  assert_null(o.clock);
  assert_null(o.monitor);
  assert_null(o.name);
  assert_int_equal(o.algorithm, SLUICE_LIMITER_SLIDING_LOG);
  assert_int_equal(o.limit, 20);
  assert_true(o.window_ns == 60000000000ull);

  sluice_limiter *l = (sluice_limiter *)1;
  assert_err(SLUICE_EINVAL, sluice_limiter_new(NULL, NULL, NULL));
  o.version = 9;
  assert_err(SLUICE_EVERSION, sluice_limiter_new(&l, NULL, &o));
  assert_null(l);
  sluice_limiter_options_init(&o, SLUICE_LIMITER_OPTIONS_VERSION);
  o.limit = 0;
  assert_err(SLUICE_EINVAL, sluice_limiter_new(&l, NULL, &o));
  assert_non_null(strstr(sluice_error_message(), "limit 0"));
  o.limit = 65536; /* above the log's bound */
  assert_err(SLUICE_EINVAL, sluice_limiter_new(&l, NULL, &o));
  o.algorithm = SLUICE_LIMITER_GCRA;
  assert_ok(sluice_limiter_new(&l, NULL, &o)); /* fine for GCRA */
  sluice_limiter_free(l);
  o.limit = 1ull << 32;
  assert_err(SLUICE_EINVAL, sluice_limiter_new(&l, NULL, &o));
  o.limit = 10;
  o.window_ns = 999;
  assert_err(SLUICE_EINVAL, sluice_limiter_new(&l, NULL, &o));
  assert_non_null(strstr(sluice_error_message(), "window_ns"));
  o.window_ns = (1ull << 52) + 1;
  assert_err(SLUICE_EINVAL, sluice_limiter_new(&l, NULL, &o));
  o.window_ns = 1ull << 52;
  o.burst = 1ull << 32;
  assert_err(SLUICE_EINVAL, sluice_limiter_new(&l, NULL, &o));
  o.burst = 1000000; /* times T = 2^52 / 10: above 2^60 */
  assert_err(SLUICE_EINVAL, sluice_limiter_new(&l, NULL, &o));
  assert_non_null(strstr(sluice_error_message(), "2^60"));
  o.burst = 0;
  o.algorithm = 3;
  assert_err(SLUICE_EINVAL, sluice_limiter_new(&l, NULL, &o));
  o.algorithm = -1;
  assert_err(SLUICE_EINVAL, sluice_limiter_new(&l, NULL, &o));
  o.algorithm = SLUICE_LIMITER_SLIDING_WINDOW;
  o.max_keys = 0;
  assert_err(SLUICE_EINVAL, sluice_limiter_new(&l, NULL, &o));
  o.max_keys = (1ull << 30) + 1;
  assert_err(SLUICE_EINVAL, sluice_limiter_new(&l, NULL, &o));
  o.max_keys = 10;
  o.on_full = 2;
  assert_err(SLUICE_EINVAL, sluice_limiter_new(&l, NULL, &o));
  o.on_full = SLUICE_LIMITER_FULL_ALLOW;
  o.name = "";
  assert_err(SLUICE_EINVAL, sluice_limiter_new(&l, NULL, &o));
  o.name = "an-extremely-long-limiter-name-that-goes-on-and-on-past-sixty-four-bytes";
  assert_err(SLUICE_EINVAL, sluice_limiter_new(&l, NULL, &o));
  o.name = NULL;
  assert_ok(sluice_limiter_new(&l, NULL, &o));
  sluice_limiter_free(l);
  assert_ok(sluice_limiter_new(&l, NULL, NULL)); /* all defaults */
  sluice_limiter_free(l);
  sluice_limiter_free(NULL);
}

static void test_bad_input(void **state) {
  (void)state;
  sluice_limiter *l = make(SLUICE_LIMITER_SLIDING_LOG, 5, 1000000, 0, 10);
  sluice_limiter_result r = result();
  char *huge = calloc(1, SLUICE_LIMITER_MAX_KEY + 1);
  assert_err(SLUICE_EINVAL, sluice_limiter_check(NULL, "k", 1, 1, &r));
  assert_non_null(strstr(sluice_error_message(), "limiter is NULL"));
  assert_err(SLUICE_EINVAL, sluice_limiter_check(l, NULL, 1, 1, &r));
  assert_err(SLUICE_EINVAL, sluice_limiter_check(l, "k", 0, 1, &r));
  assert_non_null(strstr(sluice_error_message(), "empty"));
  assert_err(SLUICE_EINVAL, sluice_limiter_check(l, huge, SLUICE_LIMITER_MAX_KEY + 1, 1, &r));
  assert_non_null(strstr(sluice_error_message(), "longer"));
  assert_ok(sluice_limiter_check(l, huge, SLUICE_LIMITER_MAX_KEY, 1, &r)); /* the longest */
  assert_err(SLUICE_EINVAL, sluice_limiter_check(l, "k", 1, 0, &r));
  assert_err(SLUICE_EINVAL, sluice_limiter_check(l, "k", 1, 6, &r));
  assert_non_null(strstr(sluice_error_message(), "never pass"));
  assert_err(SLUICE_EINVAL, sluice_limiter_check(l, "k", 1, UINT64_MAX, &r));
  r.size = 3;
  assert_err(SLUICE_EINVAL, sluice_limiter_check(l, "k", 1, 1, &r));
  r.size = sizeof r;
  assert_err(SLUICE_EINVAL, sluice_limiter_peek(NULL, "k", 1, 1, &r));
  assert_err(SLUICE_EINVAL, sluice_limiter_peek(l, "k", 1, 6, &r));
  /* Keys are bytes: NULs and high bytes are fine and distinct. */
  assert_ok(sluice_limiter_check(l, "a\0b", 3, 5, &r));
  assert_ok(sluice_limiter_check(l, "a\0c", 3, 5, &r));
  assert_ok(sluice_limiter_check(l, "\xff\xfe", 2, 5, &r));
  assert_err(SLUICE_EREJECTED, sluice_limiter_check(l, "a\0b", 3, 1, &r));

  sluice_limiter_item items[2] = {{l, "k", 1, 1}, {NULL, "k", 1, 1}};
  assert_err(SLUICE_EINVAL, sluice_limiter_check_many(NULL, 1, &r));
  assert_err(SLUICE_EINVAL, sluice_limiter_check_many(items, 0, &r));
  assert_err(SLUICE_EINVAL, sluice_limiter_check_many(items, SLUICE_LIMITER_MAX_MANY + 1, &r));
  assert_err(SLUICE_EINVAL, sluice_limiter_check_many(items, 2, &r));
  assert_non_null(strstr(sluice_error_message(), "item 1"));
  items[1].limiter = l;
  items[1].len = 0;
  assert_err(SLUICE_EINVAL, sluice_limiter_check_many(items, 2, &r));
  items[1].len = 1;
  items[1].cost = 0;
  assert_err(SLUICE_EINVAL, sluice_limiter_check_many(items, 2, &r));

  tu_counter c = {0};
  assert_err(SLUICE_EINVAL, sluice_limiter_acquire(l, "k", 1, 1, 10, tu_count_cb, &c, NULL, NULL));
  assert_non_null(strstr(sluice_error_message(), "without a runtime"));
  assert_err(SLUICE_EINVAL, sluice_limiter_acquire(l, "k", 1, 1, 10, NULL, &c, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_limiter_acquire(NULL, "k", 1, 1, 10, tu_count_cb, &c, NULL, NULL));
  assert_err(SLUICE_EINVAL,
             sluice_limiter_acquire(l, "k", 1, 1, INT64_MAX, tu_count_cb, &c, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_limiter_wait(l, "k", 1, 1, 10));
  assert_err(SLUICE_EINVAL, sluice_limiter_wait(l, "", 0, 1, 10));
  assert_int_equal(c.calls, 0);

  assert_err(SLUICE_EINVAL, sluice_limiter_block(NULL, "k", 1, 10));
  assert_err(SLUICE_EINVAL, sluice_limiter_block(l, "k", 1, 0));
  assert_err(SLUICE_EINVAL, sluice_limiter_block(l, "k", 1, (1ull << 62) + 1));
  assert_err(SLUICE_EINVAL, sluice_limiter_block(l, "k", 0, 10));
  assert_err(SLUICE_EINVAL, sluice_limiter_unblock(NULL, "k", 1));
  assert_err(SLUICE_EINVAL, sluice_limiter_unblock(l, NULL, 1));
  assert_err(SLUICE_EINVAL, sluice_limiter_sweep(NULL));
  assert_err(SLUICE_EINVAL, sluice_limiter_wake(NULL));
  assert_ok(sluice_limiter_wake(l)); /* no runtime: nothing to wake */
  sluice_limiter_stats st = {sizeof st};
  assert_err(SLUICE_EINVAL, sluice_limiter_stats_get(NULL, &st));
  assert_err(SLUICE_EINVAL, sluice_limiter_stats_get(l, NULL));
  st.size = 2;
  assert_err(SLUICE_EINVAL, sluice_limiter_stats_get(l, &st));
  free(huge);
  sluice_limiter_free(l);
}

/* ---- memory ------------------------------------------------------------ */

static uint64_t allocated(void) {
  sluice_memory_stats m = {sizeof m};
  assert_ok(sluice_runtime_memory(NULL, &m));
  return m.allocated;
}

/* A million distinct keys (rotating users, spam) through a limiter whose
 * keys become fresh again after a while: the key count never passes
 * max_keys, no new key is refused while stale ones can be reclaimed, and
 * the memory stays within the bound. */
static void million_keys(int algo) {
  const uint64_t max_keys = 20000, N = 2, W = 1000000; /* fresh 1 ms after use */
  uint64_t before = allocated();
  sluice_limiter *l = make(algo, N, W, 0, max_keys);
  g_now = 1000000000;
  sluice_limiter_result r = result();
  sluice_limiter_stats st = {sizeof st};
  char key[32];
  uint64_t peak_bytes = 0, peak_alloc = 0;
  for (int i = 0; i < 1000000; i++) {
    g_now += 600; /* at most 3 windows' keys (5000) are not fresh: a quarter of the cap */
    int n = snprintf(key, sizeof key, "user:%d", i);
    assert_ok(sluice_limiter_check(l, key, (size_t)n, 1, &r));
    if (i % 50000 == 0) {
      assert_ok(sluice_limiter_stats_get(l, &st));
      assert_true(st.keys <= max_keys);
      if (st.bytes > peak_bytes) peak_bytes = st.bytes;
      uint64_t a = allocated() - before;
      if (a > peak_alloc) peak_alloc = a;
    }
  }
  assert_ok(sluice_limiter_stats_get(l, &st));
  assert_true(st.peak_keys <= max_keys);
  assert_true(st.reclaimed >= 1000000 - max_keys);
  assert_int_equal(st.full_refused, 0);
  /* Bytes per key: entry (header, key, state) plus about two table slots. */
  uint64_t state = algo == SLUICE_LIMITER_GCRA ? 8 : algo == SLUICE_LIMITER_SLIDING_WINDOW ? 16 : 8 + 8 * N;
  uint64_t bound = max_keys * (8 + 16 + state + 2 * 9 * 2) + 64 * 8 * 9;
  print_message("algorithm %d: peak %llu keys, peak %llu bytes (bound %llu), allocator %llu bytes\n",
                algo, (unsigned long long)st.peak_keys, (unsigned long long)peak_bytes,
                (unsigned long long)bound, (unsigned long long)peak_alloc);
  assert_true(peak_bytes <= bound);
  assert_true(peak_alloc <= 2 * bound + (1u << 20)); /* allocator rounding and caches */
  /* Once everything is stale, a sweep takes every key and shrinks tables. */
  g_now += 10 * W;
  assert_true(sluice_limiter_sweep(l) > 0);
  assert_ok(sluice_limiter_stats_get(l, &st));
  assert_int_equal(st.keys, 0);
  assert_true(st.bytes <= 64 * 8 * 9);
  sluice_limiter_free(l);
}

static void test_million_keys_gcra(void **state) {
  (void)state;
  million_keys(SLUICE_LIMITER_GCRA);
}
static void test_million_keys_log(void **state) {
  (void)state;
  million_keys(SLUICE_LIMITER_SLIDING_LOG);
}
static void test_million_keys_window(void **state) {
  (void)state;
  million_keys(SLUICE_LIMITER_SLIDING_WINDOW);
}

/* With the clock standing still nothing is stale: the cap holds, with the
 * documented policy. */
static void test_key_cap(void **state) {
  (void)state;
  for (int policy = 0; policy < 2; policy++) {
    sluice_limiter_options o;
    sluice_limiter_options_init(&o, SLUICE_LIMITER_OPTIONS_VERSION);
    o.algorithm = SLUICE_LIMITER_GCRA;
    o.limit = 5;
    o.window_ns = 1000000;
    o.max_keys = 1000;
    o.on_full = policy ? SLUICE_LIMITER_FULL_ALLOW : SLUICE_LIMITER_FULL_REJECT;
    o.clock = test_clock;
    sluice_limiter *l;
    assert_ok(sluice_limiter_new(&l, NULL, &o));
    g_now = 77;
    sluice_limiter_result r = result();
    char key[32];
    for (int i = 0; i < 1000; i++) {
      int n = snprintf(key, sizeof key, "k%d", i);
      assert_ok(sluice_limiter_check(l, key, (size_t)n, 1, &r));
    }
    for (int i = 1000; i < 3000; i++) {
      int n = snprintf(key, sizeof key, "k%d", i);
      int rc = sluice_limiter_check(l, key, (size_t)n, 1, &r);
      assert_int_equal(r.reason, SLUICE_LIMITER_FULL);
      if (policy) {
        assert_int_equal(rc, 0);
        assert_int_equal(r.allowed, 1);
        assert_int_equal(r.remaining, 4);
      } else {
        assert_int_equal(rc, SLUICE_ELIMIT);
        assert_int_equal(r.allowed, 0);
        assert_non_null(strstr(sluice_error_message(), "max_keys"));
      }
    }
    /* Keys already tracked are untouched by the cap. */
    assert_ok(sluice_limiter_check(l, "k5", 2, 1, &r));
    assert_int_equal(r.remaining, 3);
    sluice_limiter_stats st = {sizeof st};
    assert_ok(sluice_limiter_stats_get(l, &st));
    assert_int_equal(st.keys, 1000);
    assert_int_equal(st.peak_keys, 1000);
    assert_int_equal(policy ? st.full_allowed : st.full_refused, 2000);
    /* Room comes back as keys go stale, without an explicit sweep. */
    g_now += 2000000;
    assert_ok(sluice_limiter_check(l, "new", 3, 1, &r));
    assert_int_equal(r.reason, SLUICE_LIMITER_OK);
    sluice_limiter_free(l);
  }
}

/* The monitor sees refusals. */
static void test_monitor(void **state) {
  (void)state;
  sluice_monitor *m;
  assert_ok(sluice_monitor_new(&m, NULL, NULL));
  sluice_limiter_options o;
  sluice_limiter_options_init(&o, SLUICE_LIMITER_OPTIONS_VERSION);
  o.limit = 1;
  o.clock = test_clock;
  o.monitor = m;
  o.name = "ai";
  sluice_limiter *l;
  assert_ok(sluice_limiter_new(&l, NULL, &o));
  g_now = 1;
  assert_ok(sluice_limiter_check(l, "u", 1, 1, NULL));
  assert_err(SLUICE_EREJECTED, sluice_limiter_check(l, "u", 1, 1, NULL));
  assert_err(SLUICE_EREJECTED, sluice_limiter_check(l, "u", 1, 1, NULL));
  int found = 0;
  for (uint32_t i = 0; i < sluice_monitor_series_count(m); i++) {
    sluice_monitor_op_stats os = {sizeof os};
    assert_ok(sluice_monitor_op_stats_get(m, i, SLUICE_WINDOW_ALL, &os));
    if (strcmp(os.name, "ai.rejected") == 0) {
      found = 1;
      assert_int_equal(os.count, 2);
    }
  }
  assert_true(found);
  sluice_limiter_free(l);
  sluice_monitor_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_options),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_sliding_log_vs_model),
      cmocka_unit_test(test_gcra_vs_model),
      cmocka_unit_test(test_sliding_window_vs_model),
      cmocka_unit_test(test_sliding_window_bound),
      cmocka_unit_test(test_retry_after_rounding),
      cmocka_unit_test(test_peek_consumes_nothing),
      cmocka_unit_test(test_result_size),
      cmocka_unit_test(test_check_many),
      cmocka_unit_test(test_block),
      cmocka_unit_test(test_set_limit),
      cmocka_unit_test(test_key_cap),
      cmocka_unit_test(test_million_keys_gcra),
      cmocka_unit_test(test_million_keys_log),
      cmocka_unit_test(test_million_keys_window),
      cmocka_unit_test(test_monitor),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

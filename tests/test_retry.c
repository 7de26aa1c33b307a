/* Retry policies without a loop: options and bad input, the pure delay
 * function (exact values on a seeded source, bounds of every jitter mode),
 * and caller-driven sessions on an injected clock: the total deadline,
 * retry-after hints, the budget under 100% failure, permanent failures,
 * the breaker inside a policy, figures and monitor series. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <sluice/breaker.h>
#include <sluice/monitor.h>
#include <sluice/retry.h>

#include "testutil.h"

#define MS 1000000ull

/* Default backoff (100 ms base, x2, FULL jitter) from splitmix64 state 7,
 * and two run seeds; worked out once by hand in Python from the formulas
 * in retry.h. */
#define PIN_FULL_1 38982975ull
#define PIN_FULL_2 3357658ull
#define PIN_FULL_3 360304273ull
#define PIN_FULL_4 466344235ull
#define PIN_SEED_42_0 0xc2a6eebdf3976ad0ull
#define PIN_SEED_42_1 0x7bfa87c92aa0cff0ull

static uint64_t g_now;
static uint64_t fake_clock(void *ud) {
  (void)ud;
  return g_now;
}

/* on_retry events, in order. */
static int g_events;
static uint32_t g_ev_attempt[4096];
static int g_ev_code[4096];
static uint64_t g_ev_delay[4096];
static void on_retry(void *ud, uint32_t attempt, int code, uint64_t delay_ns) {
  (void)ud;
  if (g_events < 4096) {
    g_ev_attempt[g_events] = attempt;
    g_ev_code[g_events] = code;
    g_ev_delay[g_events] = delay_ns;
  }
  g_events++;
}

static sluice_retry_options fake_opts(void) {
  sluice_retry_options o = SLUICE_RETRY_OPTIONS_INIT;
  o.clock = fake_clock;
  o.on_retry = on_retry;
  o.seed = 42;
  g_now = 1000000 * MS;
  g_events = 0;
  return o;
}

static sluice_retry *make(const sluice_retry_options *o) {
  sluice_retry *p = NULL;
  assert_ok(sluice_retry_new(&p, NULL, o));
  return p;
}

static sluice_retry_stats stats(sluice_retry *p) {
  sluice_retry_stats st;
  memset(&st, 0, sizeof st);
  st.size = sizeof st;
  assert_ok(sluice_retry_stats_get(p, &st));
  /* The invariant every snapshot without concurrency keeps. */
  assert_int_equal(st.runs, st.successes_first + st.successes_after_retry + st.failures_first +
                                st.failures_after_retry + st.in_flight);
  return st;
}

/* ---- a second, independent writing of the documented arithmetic ------- */

static uint64_t ref_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static uint64_t ref_uniform(uint64_t *s, uint64_t lo, uint64_t hi) {
  *s += 0x9E3779B97F4A7C15ull;
  return lo + (uint64_t)(((unsigned __int128)ref_mix(*s) * (hi - lo + 1)) >> 64);
}
static uint64_t ref_exp(uint64_t base, uint64_t max, double mult, uint32_t n) {
  /* min(max, floor(base * mult^(n-1))), power by repeated squaring */
  double r = 1, b = mult;
  for (uint32_t k = n - 1; k; k >>= 1) {
    if (k & 1) r *= b;
    b *= b;
  }
  double e = (double)base * r;
  return e >= (double)max ? max : (uint64_t)e;
}
static uint64_t ref_delay(const sluice_retry_options *o, uint32_t n, uint64_t prev, uint64_t *s) {
  uint64_t base = (uint64_t)o->base_delay_ms * MS, max = (uint64_t)o->max_delay_ms * MS;
  uint64_t e = ref_exp(base, max, o->multiplier, n);
  switch (o->jitter) {
    case SLUICE_RETRY_JITTER_NONE: return e;
    case SLUICE_RETRY_JITTER_FULL: return ref_uniform(s, 0, e);
    case SLUICE_RETRY_JITTER_EQUAL: return e / 2 + ref_uniform(s, 0, e - e / 2);
    default: {
      uint64_t p = prev < base ? base : prev > max ? max : prev;
      uint64_t t = ref_uniform(s, base, 3 * p);
      if (t <= max) return t;
      if (o->jitter == SLUICE_RETRY_JITTER_DECORRELATED) return max;
      return ref_uniform(s, max / 2 > base ? max / 2 : base, max);
    }
  }
}

/* ---- options and bad input ------------------------------------------- */

static void test_options(void **state) {
  (void)state;
  sluice_retry_options o, lit = SLUICE_RETRY_OPTIONS_INIT;
  assert_err(SLUICE_EINVAL, sluice_retry_options_init(NULL, SLUICE_RETRY_OPTIONS_VERSION));
  assert_err(SLUICE_EVERSION, sluice_retry_options_init(&o, 0));
  assert_err(SLUICE_EVERSION, sluice_retry_options_init(&o, 5));
  assert_ok(sluice_retry_options_init(&o, SLUICE_RETRY_OPTIONS_VERSION));
  assert_int_equal(o.version, lit.version);
  assert_int_equal(o.total_timeout_ms, lit.total_timeout_ms);
  assert_int_equal(o.attempt_timeout_ms, 0);
  assert_int_equal(o.seed, 0);
  assert_null(o.monitor);
  assert_null(o.name);
  assert_null(o.clock);
  assert_null(o.on_retry);
  assert_int_equal(o.max_attempts, 3);
  assert_int_equal(o.base_delay_ms, 100);
  assert_true(o.multiplier == 2.0);
  assert_int_equal(o.max_delay_ms, 10000);
  assert_int_equal(o.jitter, SLUICE_RETRY_JITTER_FULL);
  assert_true(o.budget_ratio == 0.1);
  assert_int_equal(o.budget_tokens, 10);
  assert_null(o.breaker);

  sluice_retry *p = NULL;
  assert_ok(sluice_retry_new(&p, NULL, NULL));
  sluice_retry_stats st = stats(p);
  assert_true(st.budget_balance == 10.0);
  sluice_retry_free(p);
  sluice_retry_free(NULL);
}

#define BAD(expr, needle)                                             \
  do {                                                                \
    sluice_retry_options o_ = fake_opts();                            \
    sluice_retry_options *o = &o_;                                    \
    expr;                                                             \
    sluice_retry *p_ = (sluice_retry *)1;                             \
    assert_err(SLUICE_EINVAL, sluice_retry_new(&p_, NULL, o));        \
    assert_null(p_);                                                  \
    assert_non_null(strstr(sluice_error_message(), needle));          \
    uint64_t d_, s_ = 1;                                              \
    assert_err(SLUICE_EINVAL, sluice_retry_next_delay(o, 1, 0, &s_, &d_)); \
  } while (0)

static void test_bad_input(void **state) {
  (void)state;
  BAD(o->max_attempts = 0, "max_attempts is 0");
  BAD(o->max_attempts = 2000000, "max_attempts");
  BAD(o->base_delay_ms = 0, "base_delay_ms 0 is zero");
  BAD(o->base_delay_ms = -100, "base_delay_ms -100 is negative");
  BAD(o->base_delay_ms = (int64_t)1 << 41, "above 2^40");
  BAD(o->max_delay_ms = -1, "max_delay_ms -1 is negative");
  BAD((o->base_delay_ms = 500, o->max_delay_ms = 100), "below base_delay_ms");
  BAD(o->multiplier = 0.5, "multiplier");
  BAD(o->multiplier = NAN, "multiplier");
  BAD(o->multiplier = INFINITY, "multiplier");
  BAD(o->jitter = 5, "jitter");
  BAD(o->jitter = -1, "jitter");
  BAD(o->total_timeout_ms = -1, "total_timeout_ms -1 is negative");
  BAD(o->attempt_timeout_ms = -7, "attempt_timeout_ms -7 is negative");
  BAD(o->budget_ratio = -0.1, "budget_ratio");
  BAD(o->budget_ratio = 0.0001, "budget_ratio");
  BAD(o->budget_ratio = 1000, "budget_ratio");
  BAD(o->budget_ratio = NAN, "budget_ratio");
  BAD(o->budget_tokens = 2000000, "budget_tokens");
  BAD(o->name = "", "name");
  BAD(o->name = "a-name-that-is-longer-than-sixty-four-bytes-which-is-the-limit-here", "name");

  sluice_retry_options o = fake_opts();
  o.version = 2;
  sluice_retry *p = NULL;
  assert_err(SLUICE_EVERSION, sluice_retry_new(&p, NULL, &o));
  uint64_t d, s = 1;
  assert_err(SLUICE_EVERSION, sluice_retry_next_delay(&o, 1, 0, &s, &d));
  o = fake_opts();
  assert_err(SLUICE_EINVAL, sluice_retry_new(NULL, NULL, &o));
  assert_err(SLUICE_EINVAL, sluice_retry_next_delay(NULL, 1, 0, &s, &d));
  assert_err(SLUICE_EINVAL, sluice_retry_next_delay(&o, 1, 0, &s, NULL));
  assert_err(SLUICE_EINVAL, sluice_retry_next_delay(&o, 0, 0, &s, &d));
  assert_err(SLUICE_EINVAL, sluice_retry_next_delay(&o, 1, 0, NULL, &d)); /* FULL needs a source */
  o.jitter = SLUICE_RETRY_JITTER_NONE;
  assert_ok(sluice_retry_next_delay(&o, 1, 0, NULL, &d)); /* NONE does not */

  /* NULL handles and functions. */
  sluice_retry_session *s_out = (sluice_retry_session *)1;
  assert_err(SLUICE_EINVAL, sluice_retry_session_new(NULL, 0, &s_out));
  assert_null(s_out);
  assert_err(SLUICE_EINVAL, sluice_retry_session_begin(NULL, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_retry_session_end(NULL, 0, 0, 0, NULL, NULL));
  assert_int_equal(sluice_retry_session_attempts(NULL), 0);
  sluice_retry_session_free(NULL);
  sluice_retry_stats st = {sizeof st};
  assert_err(SLUICE_EINVAL, sluice_retry_stats_get(NULL, &st));
  assert_err(SLUICE_EINVAL, sluice_retry_attempt_done(NULL, 0, 0, 0));
  assert_int_equal(sluice_retry_attempt_number(NULL), 0);
  assert_int_equal(sluice_retry_attempt_deadline(NULL), 0);
  assert_int_equal(sluice_retry_attempt_active(NULL), 0);

  p = make(&o);
  assert_err(SLUICE_EINVAL, sluice_retry_session_new(p, 0, NULL));
  assert_err(SLUICE_EINVAL, sluice_retry_stats_get(p, NULL));
  st.size = 3;
  assert_err(SLUICE_EINVAL, sluice_retry_stats_get(p, &st));
  /* Asynchronous runs need a runtime, and functions. */
  assert_err(SLUICE_EINVAL, sluice_retry_run(NULL, 0, (sluice_retry_attempt_fn)1,
                                             (sluice_retry_done_cb)1, NULL, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_retry_run(p, 0, NULL, (sluice_retry_done_cb)1, NULL, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_retry_run(p, 0, (sluice_retry_attempt_fn)1, NULL, NULL, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_retry_run(p, 0, (sluice_retry_attempt_fn)1,
                                             (sluice_retry_done_cb)1, NULL, NULL, NULL));
  assert_non_null(strstr(sluice_error_message(), "without a runtime"));
  assert_int_equal(stats(p).runs, 0); /* nothing was started by the failed calls */
  sluice_retry_free(p);
}

/* ---- the pure function ------------------------------------------------ */

static void test_next_delay_exact(void **state) {
  (void)state;
  sluice_retry_options o = fake_opts();
  o.base_delay_ms = 100;
  o.max_delay_ms = 10000;
  o.multiplier = 2;
  /* NONE: the plain exponential, capped. */
  o.jitter = SLUICE_RETRY_JITTER_NONE;
  const uint64_t want[] = {100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000};
  for (uint32_t n = 1; n <= 9; n++) {
    uint64_t d;
    assert_ok(sluice_retry_next_delay(&o, n, 0, NULL, &d));
    assert_int_equal(d, want[n - 1] * MS);
  }
  /* Far retries saturate without overflow; multiplier 1 is constant. */
  uint64_t d;
  assert_ok(sluice_retry_next_delay(&o, 1000000, 0, NULL, &d));
  assert_int_equal(d, 10000 * MS);
  o.multiplier = 1.5;
  assert_ok(sluice_retry_next_delay(&o, 4, 0, NULL, &d));
  assert_int_equal(d, 337500000); /* 100 ms * 1.5^3 */
  o.multiplier = 1;
  assert_ok(sluice_retry_next_delay(&o, 77, 0, NULL, &d));
  assert_int_equal(d, 100 * MS);
  o.multiplier = 2;

  /* Every jitter mode on seed 7: the function agrees with the documented
   * formulas written out independently above, draw for draw. */
  for (int j = SLUICE_RETRY_JITTER_NONE; j <= SLUICE_RETRY_JITTER_SPREAD; j++) {
    o.jitter = j;
    uint64_t s1 = 7, s2 = 7, prev1 = 0, prev2 = 0;
    for (uint32_t n = 1; n <= 40; n++) {
      uint64_t got;
      assert_ok(sluice_retry_next_delay(&o, n, prev1, &s1, &got));
      uint64_t ref = ref_delay(&o, n, prev2, &s2);
      assert_int_equal(got, ref);
      assert_int_equal(s1, s2);
      prev1 = got;
      prev2 = ref;
    }
  }

  /* Pinned values, so a change of the formulas or the generator shows. */
  uint64_t s = 7;
  o.jitter = SLUICE_RETRY_JITTER_FULL;
  uint64_t got[4];
  for (uint32_t n = 1; n <= 4; n++) assert_ok(sluice_retry_next_delay(&o, n, 0, &s, &got[n - 1]));
  const uint64_t pinned[4] = {PIN_FULL_1, PIN_FULL_2, PIN_FULL_3, PIN_FULL_4};
  for (int i = 0; i < 4; i++) assert_int_equal(got[i], pinned[i]);
  assert_int_equal(sluice_retry_seed(42, 0), PIN_SEED_42_0);
  assert_int_equal(sluice_retry_seed(42, 1), PIN_SEED_42_1);
}

/* Bounds of every mode over many draws, and the clump at the cap that
 * DECORRELATED has and SPREAD does not. */
static void test_jitter_bounds(void **state) {
  (void)state;
  enum { DRAWS = 200000 };
  sluice_retry_options o = fake_opts();
  o.base_delay_ms = 10;
  o.max_delay_ms = 1000;
  o.multiplier = 3;
  const uint64_t base = 10 * MS, max = 1000 * MS;
  for (int j = SLUICE_RETRY_JITTER_NONE; j <= SLUICE_RETRY_JITTER_SPREAD; j++) {
    o.jitter = j;
    uint64_t s = 12345, prev = 0, at_cap = 0, in_upper_half = 0, lo_seen = UINT64_MAX, hi_seen = 0;
    for (int i = 0; i < DRAWS; i++) {
      uint32_t n = 1 + (uint32_t)(i % 12);
      uint64_t d, e = ref_exp(base, max, 3, n);
      assert_ok(sluice_retry_next_delay(&o, n, prev, &s, &d));
      switch (j) {
        case SLUICE_RETRY_JITTER_NONE: assert_int_equal(d, e); break;
        case SLUICE_RETRY_JITTER_FULL: assert_true(d <= e); break;
        case SLUICE_RETRY_JITTER_EQUAL: assert_true(d >= e / 2 && d <= e); break;
        default:
          assert_true(d >= base && d <= max);
          assert_true(d <= 3 * (prev < base ? base : prev));
      }
      if (d == max) at_cap++;
      if (d > max / 2) in_upper_half++;
      if (d < lo_seen) lo_seen = d;
      if (d > hi_seen) hi_seen = d;
      prev = d;
    }
    if (j == SLUICE_RETRY_JITTER_FULL) assert_true(lo_seen < base); /* really reaches down */
    if (j == SLUICE_RETRY_JITTER_DECORRELATED) {
      /* The AWS formula piles a large share of draws exactly on the cap. */
      assert_true(at_cap > DRAWS / 10);
    }
    if (j == SLUICE_RETRY_JITTER_SPREAD) {
      /* Spread over the upper half instead: hitting exactly the cap is as
       * likely as any other nanosecond there, i.e. essentially never. */
      assert_true(at_cap <= 2);
      assert_true(in_upper_half > DRAWS / 10);
      assert_true(hi_seen > max - max / 100);
    }
  }
}

/* ---- sessions on the injected clock ------------------------------------ */

/* Drives one session with every attempt failing: each attempt costs
 * `cost(i)` of fake time, each retry sleeps the delay it is given. Checks
 * that no attempt starts at or after the deadline and no wait reaches it. */
static int drive_failing(sluice_retry *p, uint64_t deadline, uint64_t (*cost)(int), int code,
                         uint32_t *attempts) {
  sluice_retry_session *s = NULL;
  assert_ok(sluice_retry_session_new(p, 0, &s));
  int status = 1;
  for (int i = 0;; i++) {
    uint64_t adl = 1;
    int rc = sluice_retry_session_begin(s, &adl, &status);
    assert_true(rc == 0 || rc == 1);
    if (rc == 0) break;
    if (deadline) {
      assert_true(g_now < deadline);
      assert_true(adl != 0 && adl <= deadline);
    }
    g_now += cost(i);
    uint64_t delay = 0;
    rc = sluice_retry_session_end(s, SLUICE_RETRY_RETRYABLE, code, 0, &delay, &status);
    if (rc == 0) break;
    assert_int_equal(rc, 1);
    if (deadline) assert_true(g_now + delay < deadline);
    g_now += delay;
  }
  *attempts = sluice_retry_session_attempts(s);
  /* Over: begin and end are refused now. */
  assert_err(SLUICE_ESTATE, sluice_retry_session_begin(s, NULL, NULL));
  assert_err(SLUICE_ESTATE, sluice_retry_session_end(s, SLUICE_RETRY_SUCCESS, 0, 0, NULL, NULL));
  sluice_retry_session_free(s);
  return status;
}

static uint64_t g_cost_seed;
static uint64_t random_cost(int i) {
  (void)i;
  return ref_uniform(&g_cost_seed, 0, 300 * MS);
}
static uint64_t no_cost(int i) {
  (void)i;
  return 0;
}

static void test_total_deadline_never_exceeded(void **state) {
  (void)state;
  for (int j = SLUICE_RETRY_JITTER_NONE; j <= SLUICE_RETRY_JITTER_SPREAD; j++) {
    for (uint64_t seed = 1; seed <= 60; seed++) {
      sluice_retry_options o = fake_opts();
      o.jitter = j;
      o.seed = seed;
      o.max_attempts = 1000;
      o.base_delay_ms = 10;
      o.max_delay_ms = 1000;
      o.total_timeout_ms = 5000;
      o.attempt_timeout_ms = 700;
      o.budget_ratio = 0;
      g_cost_seed = seed;
      sluice_retry *p = make(&o);
      uint64_t deadline = g_now + 5000 * MS;
      uint32_t attempts = 0;
      int status = drive_failing(p, deadline, random_cost, -1000, &attempts);
      assert_int_equal(status, SLUICE_ETIMEDOUT);
      assert_true(attempts >= 1);
      sluice_retry_stats st = stats(p);
      assert_int_equal(st.deadline_stops, 1);
      assert_int_equal(st.attempts, attempts);
      assert_int_equal(st.failures_after_retry + st.failures_first, 1);
      sluice_retry_free(p);
    }
  }

  /* The caller's own deadline, earlier than the policy's, wins; the
   * attempt's deadline is cut to it. */
  sluice_retry_options o = fake_opts();
  o.total_timeout_ms = 60000;
  o.attempt_timeout_ms = 10000;
  sluice_retry *p = make(&o);
  sluice_retry_session *s = NULL;
  assert_ok(sluice_retry_session_new(p, g_now + 250 * MS, &s));
  uint64_t adl = 0;
  int status = 0;
  assert_int_equal(sluice_retry_session_begin(s, &adl, &status), 1);
  assert_int_equal(adl, g_now + 250 * MS);
  g_now += 250 * MS; /* the attempt took until the deadline */
  assert_int_equal(sluice_retry_session_end(s, SLUICE_RETRY_RETRYABLE, -5, 0, NULL, &status), 0);
  assert_int_equal(status, SLUICE_ETIMEDOUT);
  sluice_retry_session_free(s);
  /* A deadline already past: no attempt at all. */
  assert_ok(sluice_retry_session_new(p, g_now, &s));
  assert_int_equal(sluice_retry_session_begin(s, &adl, &status), 0);
  assert_int_equal(status, SLUICE_ETIMEDOUT);
  assert_int_equal(sluice_retry_session_attempts(s), 0);
  sluice_retry_session_free(s);
  sluice_retry_stats st = stats(p);
  assert_int_equal(st.failures_first, 2);
  assert_int_equal(st.attempts, 1);
  sluice_retry_free(p);
}

static void test_retry_after(void **state) {
  (void)state;
  sluice_retry_options o = fake_opts();
  o.jitter = SLUICE_RETRY_JITTER_NONE;
  o.base_delay_ms = 100;
  o.max_attempts = 10;
  o.max_delay_ms = 200;
  o.total_timeout_ms = 2000;
  sluice_retry *p = make(&o);
  uint64_t start = g_now;
  sluice_retry_session *s = NULL;
  assert_ok(sluice_retry_session_new(p, 0, &s));
  uint64_t delay = 0;
  int status = 0;
  /* A hint longer than the backoff (and than max_delay) is honoured in full. */
  assert_int_equal(sluice_retry_session_begin(s, NULL, &status), 1);
  assert_int_equal(sluice_retry_session_end(s, SLUICE_RETRY_RETRYABLE, -429, 700 * MS, &delay, &status), 1);
  assert_int_equal(delay, 700 * MS);
  g_now += delay;
  /* A shorter hint than the backoff: the backoff stands (never earlier
   * than the hint either way). */
  assert_int_equal(sluice_retry_session_begin(s, NULL, &status), 1);
  assert_int_equal(sluice_retry_session_end(s, SLUICE_RETRY_RETRYABLE, -429, 1 * MS, &delay, &status), 1);
  assert_int_equal(delay, 200 * MS);
  g_now += delay;
  /* 900 ms used; 1100 left. A hint of exactly 1100 ms cannot be honoured
   * before the deadline: the run ends now, without waiting. */
  assert_int_equal(sluice_retry_session_begin(s, NULL, &status), 1);
  int before = g_events;
  assert_int_equal(sluice_retry_session_end(s, SLUICE_RETRY_RETRYABLE, -429, 1100 * MS, &delay, &status), 0);
  assert_int_equal(status, SLUICE_ETIMEDOUT);
  assert_int_equal(g_events, before); /* no retry was announced */
  assert_int_equal(g_now, start + 900 * MS);
  sluice_retry_session_free(s);
  assert_int_equal(g_events, 2);
  assert_int_equal(g_ev_attempt[0], 1);
  assert_int_equal(g_ev_code[0], -429);
  assert_int_equal(g_ev_delay[0], 700 * MS);
  assert_int_equal(g_ev_delay[1], 200 * MS);

  /* Just under the remaining time is fine. */
  assert_ok(sluice_retry_session_new(p, 0, &s));
  assert_int_equal(sluice_retry_session_begin(s, NULL, &status), 1);
  assert_int_equal(sluice_retry_session_end(s, SLUICE_RETRY_RETRYABLE, -429, 2000 * MS - 1, &delay, &status), 1);
  assert_int_equal(delay, 2000 * MS - 1);
  sluice_retry_session_free(s);
  sluice_retry_free(p);
}

static void test_permanent_failure_and_max_attempts(void **state) {
  (void)state;
  sluice_retry_options o = fake_opts();
  o.max_attempts = 4;
  sluice_retry *p = make(&o);
  sluice_retry_session *s = NULL;
  int status = 0;
  /* Permanent: stops at once with the attempt's code; no budget spent. */
  assert_ok(sluice_retry_session_new(p, 0, &s));
  assert_int_equal(sluice_retry_session_begin(s, NULL, &status), 1);
  assert_int_equal(sluice_retry_session_end(s, SLUICE_RETRY_PERMANENT, -400, 5 * MS, NULL, &status), 0);
  assert_int_equal(status, -400);
  assert_int_equal(sluice_retry_session_attempts(s), 1);
  sluice_retry_session_free(s);
  assert_int_equal(g_events, 0);
  assert_true(stats(p).budget_balance == 10.0);

  /* Retryable failures until the attempts run out: the last code. */
  uint32_t attempts = 0;
  status = drive_failing(p, 0, no_cost, -503, &attempts);
  assert_int_equal(status, -503);
  assert_int_equal(attempts, 4);
  assert_int_equal(g_events, 3);

  /* Success after a retry. */
  assert_ok(sluice_retry_session_new(p, 0, &s));
  uint64_t delay;
  assert_int_equal(sluice_retry_session_begin(s, NULL, &status), 1);
  assert_int_equal(sluice_retry_session_end(s, SLUICE_RETRY_RETRYABLE, -1, 0, &delay, &status), 1);
  assert_int_equal(sluice_retry_session_begin(s, NULL, &status), 1);
  assert_int_equal(sluice_retry_session_end(s, SLUICE_RETRY_SUCCESS, 0, 0, &delay, &status), 0);
  assert_int_equal(status, 0);
  sluice_retry_session_free(s);

  sluice_retry_stats st = stats(p);
  assert_int_equal(st.runs, 3);
  assert_int_equal(st.failures_first, 1);
  assert_int_equal(st.failures_after_retry, 1);
  assert_int_equal(st.successes_after_retry, 1);
  assert_int_equal(st.attempts, 1 + 4 + 2);
  assert_int_equal(st.in_flight, 0);
  sluice_retry_free(p);
}

static void test_session_misuse(void **state) {
  (void)state;
  sluice_retry_options o = fake_opts();
  sluice_retry *p = make(&o);
  sluice_retry_session *s = NULL;
  int status;
  assert_ok(sluice_retry_session_new(p, 0, &s));
  assert_err(SLUICE_ESTATE, sluice_retry_session_end(s, SLUICE_RETRY_SUCCESS, 0, 0, NULL, NULL));
  assert_int_equal(sluice_retry_session_begin(s, NULL, &status), 1);
  assert_err(SLUICE_ESTATE, sluice_retry_session_begin(s, NULL, &status));
  assert_err(SLUICE_EINVAL, sluice_retry_session_end(s, 3, -1, 0, NULL, NULL));
  assert_err(SLUICE_EINVAL, sluice_retry_session_end(s, SLUICE_RETRY_RETRYABLE, 0, 0, NULL, NULL));
  assert_non_null(strstr(sluice_error_message(), "non-zero code"));
  assert_int_equal(stats(p).in_flight, 1);
  /* Abandoned mid-attempt: counted as cancelled. */
  sluice_retry_session_free(s);
  sluice_retry_stats st = stats(p);
  assert_int_equal(st.cancelled, 1);
  assert_int_equal(st.failures_first, 1);
  assert_int_equal(st.in_flight, 0);

  /* The policy freed under a live session: the session ends with ECLOSED
   * and stays safe to free. */
  assert_ok(sluice_retry_session_new(p, 0, &s));
  sluice_retry_free(p);
  assert_int_equal(sluice_retry_session_begin(s, NULL, &status), 0);
  assert_int_equal(status, SLUICE_ECLOSED);
  sluice_retry_session_free(s);
}

/* Under 100% failure the budget holds retries to ratio * runs + tokens,
 * across every run of the policy. */
static void test_budget_under_total_failure(void **state) {
  (void)state;
  enum { N = 2000 };
  sluice_retry_options o = fake_opts();
  o.max_attempts = 5;
  o.jitter = SLUICE_RETRY_JITTER_NONE;
  o.base_delay_ms = 1;
  o.budget_ratio = 0.1;
  o.budget_tokens = 10;
  o.on_retry = NULL;
  sluice_retry *p = make(&o);
  uint64_t attempts = 0, ebudget = 0;
  for (int i = 0; i < N; i++) {
    uint32_t a;
    int status = drive_failing(p, 0, no_cost, -503, &a);
    attempts += a;
    if (status == SLUICE_EBUDGET) ebudget++;
    else assert_int_equal(status, -503);
  }
  sluice_retry_stats st = stats(p);
  assert_int_equal(st.attempts, attempts);
  assert_true((double)attempts <= (1 + 0.1) * N + 10);
  /* And not much stricter than that: the balance starts full, so only the
   * first run's deposit is lost to the cap. */
  assert_true(attempts - N >= (uint64_t)(0.1 * N + 10 - 1));
  assert_int_equal(st.budget_refusals, ebudget);
  assert_true(ebudget >= N - (0.1 * N + 10));
  assert_true(st.budget_balance < 1.0);
  sluice_retry_free(p);

  /* The same without a budget: every run makes all its attempts. */
  o.budget_ratio = 0;
  p = make(&o);
  attempts = 0;
  for (int i = 0; i < 100; i++) {
    uint32_t a;
    assert_int_equal(drive_failing(p, 0, no_cost, -503, &a), -503);
    attempts += a;
  }
  assert_int_equal(attempts, 500);
  assert_int_equal(stats(p).budget_refusals, 0);
  assert_true(stats(p).budget_balance == 0.0);
  sluice_retry_free(p);

  /* A healthy service (1 run in 20 needs one retry) never meets the budget. */
  o.budget_ratio = 0.1;
  p = make(&o);
  for (int i = 0; i < 2000; i++) {
    sluice_retry_session *s = NULL;
    int status;
    uint64_t delay;
    assert_ok(sluice_retry_session_new(p, 0, &s));
    assert_int_equal(sluice_retry_session_begin(s, NULL, &status), 1);
    if (i % 20 == 0) {
      assert_int_equal(sluice_retry_session_end(s, SLUICE_RETRY_RETRYABLE, -1, 0, &delay, &status), 1);
      assert_int_equal(sluice_retry_session_begin(s, NULL, &status), 1);
    }
    assert_int_equal(sluice_retry_session_end(s, SLUICE_RETRY_SUCCESS, 0, 0, &delay, &status), 0);
    sluice_retry_session_free(s);
  }
  assert_int_equal(stats(p).budget_refusals, 0);
  assert_int_equal(stats(p).successes_after_retry, 100);
  sluice_retry_free(p);
}

/* Run k of a seeded policy draws exactly what the pure function draws from
 * sluice_retry_seed(seed, k). */
static void test_policy_seed_reproducible(void **state) {
  (void)state;
  sluice_retry_options o = fake_opts();
  o.seed = 99;
  o.max_attempts = 8;
  o.jitter = SLUICE_RETRY_JITTER_SPREAD;
  o.budget_ratio = 0;
  sluice_retry *p = make(&o);
  for (uint64_t run = 0; run < 3; run++) {
    g_events = 0;
    uint32_t a;
    drive_failing(p, 0, no_cost, -1, &a);
    assert_int_equal(g_events, 7);
    uint64_t s = sluice_retry_seed(99, run), prev = 0;
    for (int i = 0; i < 7; i++) {
      uint64_t d;
      assert_ok(sluice_retry_next_delay(&o, (uint32_t)i + 1, prev, &s, &d));
      assert_int_equal(g_ev_delay[i], d);
      prev = d;
    }
  }
  sluice_retry_free(p);
}

static void test_breaker_in_policy(void **state) {
  (void)state;
  sluice_breaker_options bo = SLUICE_BREAKER_OPTIONS_INIT;
  bo.clock = fake_clock;
  bo.window_calls = 2;
  bo.minimum_calls = 2;
  bo.failure_rate_percent = 100;
  bo.half_open_trials = 1;
  sluice_breaker *b = NULL;
  assert_ok(sluice_breaker_new(&b, NULL, &bo));
  sluice_retry_options o = fake_opts();
  o.breaker = b;
  o.max_attempts = 5;
  sluice_retry *p = make(&o);

  /* Two failed attempts trip the breaker; the third is refused before it
   * is made: the run ends with EOPEN after 2 attempts, no budget spent on
   * the refused one. */
  uint32_t attempts = 0;
  int status = drive_failing(p, 0, no_cost, -503, &attempts);
  assert_int_equal(status, SLUICE_EOPEN);
  assert_int_equal(attempts, 2);
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_OPEN);
  sluice_retry_stats st = stats(p);
  assert_int_equal(st.breaker_refusals, 1);
  assert_true(st.budget_balance == 9.0); /* one retry was made, one token */

  /* While open, runs end at once with no attempt. */
  status = drive_failing(p, 0, no_cost, -503, &attempts);
  assert_int_equal(status, SLUICE_EOPEN);
  assert_int_equal(attempts, 0);

  /* Permanent failures mean the dependency answered: not held against it. */
  assert_ok(sluice_breaker_set_state(b, SLUICE_BREAKER_CLOSED));
  for (int i = 0; i < 5; i++) {
    sluice_retry_session *s = NULL;
    assert_ok(sluice_retry_session_new(p, 0, &s));
    assert_int_equal(sluice_retry_session_begin(s, NULL, &status), 1);
    assert_int_equal(sluice_retry_session_end(s, SLUICE_RETRY_PERMANENT, -400, 0, NULL, &status), 0);
    sluice_retry_session_free(s);
  }
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_CLOSED);

  /* A half-open trial taken by a session that is abandoned is given back. */
  assert_ok(sluice_breaker_set_state(b, SLUICE_BREAKER_HALF_OPEN));
  sluice_retry_session *s = NULL;
  assert_ok(sluice_retry_session_new(p, 0, &s));
  assert_int_equal(sluice_retry_session_begin(s, NULL, &status), 1);
  assert_err(SLUICE_EOPEN, sluice_breaker_allow(b, NULL)); /* the one trial is taken */
  sluice_retry_session_free(s);
  uint64_t t;
  assert_ok(sluice_breaker_allow(b, &t)); /* ... and free again */
  assert_ok(sluice_breaker_record(b, t, SLUICE_BREAKER_SUCCESS, 0));
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_CLOSED);

  sluice_retry_free(p);
  sluice_breaker_free(b);
}

static void test_monitor_series(void **state) {
  (void)state;
  sluice_monitor_options mo = SLUICE_MONITOR_OPTIONS_INIT;
  mo.clock = fake_clock;
  sluice_monitor *m = NULL;
  assert_ok(sluice_monitor_new(&m, NULL, &mo));
  sluice_retry_options o = fake_opts();
  o.monitor = m;
  o.name = "ai.call";
  sluice_retry *p = make(&o);
  sluice_retry_session *s = NULL;
  int status;
  uint64_t delay;
  assert_ok(sluice_retry_session_new(p, 0, &s));
  assert_int_equal(sluice_retry_session_begin(s, NULL, &status), 1);
  g_now += 30 * MS;
  assert_int_equal(sluice_retry_session_end(s, SLUICE_RETRY_RETRYABLE, -503, 0, &delay, &status), 1);
  g_now += delay;
  assert_int_equal(sluice_retry_session_begin(s, NULL, &status), 1);
  g_now += 20 * MS;
  assert_int_equal(sluice_retry_session_end(s, SLUICE_RETRY_SUCCESS, 0, 0, &delay, &status), 0);
  sluice_retry_session_free(s);

  assert_int_equal(sluice_monitor_series_count(m), 2);
  sluice_monitor_op_stats a = {sizeof a}, r = {sizeof r};
  assert_ok(sluice_monitor_op_stats_get(m, 0, SLUICE_WINDOW_ALL, &a));
  assert_ok(sluice_monitor_op_stats_get(m, 1, SLUICE_WINDOW_ALL, &r));
  assert_string_equal(a.name, "ai.call.attempt");
  assert_string_equal(r.name, "ai.call.run");
  assert_int_equal(a.count, 2);
  assert_int_equal(a.errors, 1);
  assert_int_equal(a.max_ns, 30 * MS);
  assert_int_equal(r.count, 1);
  assert_int_equal(r.errors, 0);
  assert_int_equal(r.sum_ns, 50 * MS + delay);
  sluice_retry_free(p);
  sluice_monitor_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_options),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_next_delay_exact),
      cmocka_unit_test(test_jitter_bounds),
      cmocka_unit_test(test_total_deadline_never_exceeded),
      cmocka_unit_test(test_retry_after),
      cmocka_unit_test(test_permanent_failure_and_max_attempts),
      cmocka_unit_test(test_session_misuse),
      cmocka_unit_test(test_budget_under_total_failure),
      cmocka_unit_test(test_policy_seed_reproducible),
      cmocka_unit_test(test_breaker_in_policy),
      cmocka_unit_test(test_monitor_series),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The circuit breaker on an injected clock: options and bad input, tripping
 * on failure rate and slow-call rate over count and time windows, the
 * minimum number of calls, the open wait, half-open trials (admission,
 * early reopen, close), stale tickets, release, forced states. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/breaker.h>
#include <sluice/monitor.h>

#include "testutil.h"

#define MS 1000000ull

static uint64_t g_now;
static uint64_t fake_clock(void *ud) {
  (void)ud;
  return g_now;
}

/* State changes seen through on_state_change. */
static int g_changes, g_last_from, g_last_to;
static uint64_t g_last_gen;
static void on_change(void *ud, int from, int to, uint64_t gen) {
  (void)ud;
  g_changes++;
  g_last_from = from;
  g_last_to = to;
  g_last_gen = gen;
}

static sluice_breaker_options base_opts(void) {
  sluice_breaker_options o = SLUICE_BREAKER_OPTIONS_INIT;
  o.clock = fake_clock;
  o.on_state_change = on_change;
  o.window_calls = 10;
  o.minimum_calls = 4;
  o.failure_rate_percent = 50;
  o.open_ms = 1000;
  o.half_open_trials = 3;
  return o;
}

static sluice_breaker *make(const sluice_breaker_options *o) {
  g_now = 1000 * MS;
  g_changes = 0;
  sluice_breaker *b = NULL;
  assert_ok(sluice_breaker_new(&b, NULL, o));
  return b;
}

static sluice_breaker_stats stats(sluice_breaker *b) {
  sluice_breaker_stats st;
  memset(&st, 0, sizeof st);
  st.size = sizeof st;
  assert_ok(sluice_breaker_stats_get(b, &st));
  return st;
}

static void call(sluice_breaker *b, int failed, uint64_t dur) {
  uint64_t t = 0;
  assert_ok(sluice_breaker_allow(b, &t));
  assert_true(t != 0);
  assert_ok(sluice_breaker_record(b, t, failed ? SLUICE_BREAKER_FAILURE : SLUICE_BREAKER_SUCCESS, dur));
}

static void test_options(void **state) {
  (void)state;
  sluice_breaker_options o, lit = SLUICE_BREAKER_OPTIONS_INIT;
  assert_err(SLUICE_EINVAL, sluice_breaker_options_init(NULL, SLUICE_BREAKER_OPTIONS_VERSION));
  assert_err(SLUICE_EVERSION, sluice_breaker_options_init(&o, 0));
  assert_err(SLUICE_EVERSION, sluice_breaker_options_init(&o, 3));
  assert_ok(sluice_breaker_options_init(&o, SLUICE_BREAKER_OPTIONS_VERSION));
  assert_int_equal(o.version, lit.version);
  assert_int_equal(o.window_ms, lit.window_ms);
  assert_int_equal(o.window_buckets, lit.window_buckets);
  assert_true(o.slow_rate_percent == lit.slow_rate_percent);
  assert_int_equal(o.slow_call_ms, 0);
  assert_null(o.clock);
  assert_null(o.on_state_change);
  assert_null(o.monitor);
  assert_null(o.name);
  assert_int_equal(o.window, SLUICE_BREAKER_WINDOW_COUNT);
  assert_int_equal(o.window_calls, 100);
  assert_int_equal(o.minimum_calls, 10);
  assert_true(o.failure_rate_percent == 50.0);
  assert_int_equal(o.open_ms, 30000);
  assert_int_equal(o.half_open_trials, 3);

  sluice_breaker *b = NULL;
  assert_ok(sluice_breaker_new(&b, NULL, NULL)); /* defaults */
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_CLOSED);
  sluice_breaker_free(b);
  sluice_breaker_free(NULL);
}

#define BAD(field_expr, needle)                                   \
  do {                                                            \
    sluice_breaker_options o_ = base_opts();                      \
    sluice_breaker_options *o = &o_;                              \
    field_expr;                                                   \
    sluice_breaker *b_ = (sluice_breaker *)1;                     \
    assert_err(SLUICE_EINVAL, sluice_breaker_new(&b_, NULL, o));  \
    assert_null(b_);                                              \
    assert_non_null(strstr(sluice_error_message(), needle));      \
  } while (0)

static void test_bad_input(void **state) {
  (void)state;
  BAD(o->window = 7, "window");
  BAD(o->window_calls = 0, "window_calls");
  BAD(o->window_calls = 2000000, "window_calls");
  BAD((o->window = SLUICE_BREAKER_WINDOW_TIME, o->window_ms = 0), "window_ms");
  BAD((o->window = SLUICE_BREAKER_WINDOW_TIME, o->window_ms = -5), "window_ms");
  BAD((o->window = SLUICE_BREAKER_WINDOW_TIME, o->window_buckets = 0), "window_buckets");
  BAD((o->window = SLUICE_BREAKER_WINDOW_TIME, o->window_ms = 5, o->window_buckets = 10),
      "window_buckets");
  BAD(o->minimum_calls = 0, "minimum_calls");
  BAD(o->minimum_calls = 11, "never trip");
  BAD(o->failure_rate_percent = 101, "failure_rate_percent");
  BAD(o->failure_rate_percent = -1, "failure_rate_percent");
  BAD(o->failure_rate_percent = NAN, "failure_rate_percent");
  BAD(o->failure_rate_percent = 0, "never trip");
  BAD(o->slow_call_ms = -1, "slow_call_ms");
  BAD((o->slow_call_ms = 10, o->slow_rate_percent = 0), "slow_rate_percent");
  BAD(o->open_ms = 0, "open_ms");
  BAD(o->open_ms = -1, "open_ms");
  BAD(o->half_open_trials = 0, "half_open_trials");
  BAD(o->half_open_trials = 70000, "half_open_trials");

  sluice_breaker_options o = base_opts();
  o.version = 9;
  sluice_breaker *b = NULL;
  assert_err(SLUICE_EVERSION, sluice_breaker_new(&b, NULL, &o));
  assert_err(SLUICE_EINVAL, sluice_breaker_new(NULL, NULL, NULL));

  /* NULL handles and bad values on a live breaker. */
  uint64_t t;
  assert_err(SLUICE_EINVAL, sluice_breaker_allow(NULL, &t));
  assert_err(SLUICE_EINVAL, sluice_breaker_record(NULL, 0, 0, 0));
  assert_err(SLUICE_EINVAL, sluice_breaker_release(NULL, 0));
  assert_err(SLUICE_EINVAL, sluice_breaker_state_get(NULL));
  assert_err(SLUICE_EINVAL, sluice_breaker_set_state(NULL, 0));
  sluice_breaker_stats st = {sizeof st};
  assert_err(SLUICE_EINVAL, sluice_breaker_stats_get(NULL, &st));
  o = base_opts();
  b = make(&o);
  assert_err(SLUICE_EINVAL, sluice_breaker_record(b, 0, 2, 0));
  assert_err(SLUICE_EINVAL, sluice_breaker_record(b, 0, -1, 0));
  assert_err(SLUICE_EINVAL, sluice_breaker_set_state(b, 3));
  assert_err(SLUICE_EINVAL, sluice_breaker_stats_get(b, NULL));
  st.size = 2;
  assert_err(SLUICE_EINVAL, sluice_breaker_stats_get(b, &st));
  assert_ok(sluice_breaker_allow(b, NULL)); /* a NULL ticket is allowed */
  sluice_breaker_free(b);
}

static void test_trip_on_failure_rate(void **state) {
  (void)state;
  sluice_breaker_options o = base_opts();
  sluice_breaker *b = make(&o);
  /* Below the minimum number of calls nothing is judged: 3 failures of 3. */
  for (int i = 0; i < 3; i++) call(b, 1, 0);
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_CLOSED);
  /* The 4th call makes 4 calls, 75% failed: trips. */
  call(b, 0, 0);
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_OPEN);
  assert_int_equal(g_changes, 1);
  assert_int_equal(g_last_from, SLUICE_BREAKER_CLOSED);
  assert_int_equal(g_last_to, SLUICE_BREAKER_OPEN);
  assert_int_equal(g_last_gen, 2);
  sluice_breaker_stats st = stats(b);
  assert_int_equal(st.opened, 1);
  assert_int_equal(st.failures, 3);
  assert_int_equal(st.successes, 1);
  assert_int_equal(st.window_calls, 0); /* a new state starts empty */
  sluice_breaker_free(b);
}

static void test_count_window_slides(void **state) {
  (void)state;
  sluice_breaker_options o = base_opts(); /* window 10, minimum 4, 50% */
  sluice_breaker *b = make(&o);
  /* Alternate so the rate sits just below 50%: S F S F ... with S first
   * and the window always holding at most half failures. */
  for (int i = 0; i < 40; i++) {
    call(b, i % 2 == 1 && i % 4 != 3 ? 1 : 0, 0); /* 1 failure per 4 calls */
    assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_CLOSED);
  }
  sluice_breaker_stats st = stats(b);
  assert_int_equal(st.window_calls, 10);
  /* Failures older than the last 10 calls have slid out: 10 successes in a
   * row leave a clean window, then 4 failures are 40%: still closed; a 5th
   * makes 50%: open. */
  for (int i = 0; i < 10; i++) call(b, 0, 0);
  assert_int_equal(stats(b).window_failures, 0);
  for (int i = 0; i < 4; i++) call(b, 1, 0);
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_CLOSED);
  call(b, 1, 0);
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_OPEN);
  sluice_breaker_free(b);
}

static void test_open_wait_and_half_open(void **state) {
  (void)state;
  sluice_breaker_options o = base_opts();
  sluice_breaker *b = make(&o);
  assert_ok(sluice_breaker_set_state(b, SLUICE_BREAKER_OPEN)); /* open at t0 */
  uint64_t t0 = g_now, t;
  /* Refused for the whole wait, to the last nanosecond. */
  assert_err(SLUICE_EOPEN, sluice_breaker_allow(b, &t));
  g_now = t0 + o.open_ms * MS - 1;
  assert_err(SLUICE_EOPEN, sluice_breaker_allow(b, &t));
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_OPEN);
  /* Then exactly half_open_trials callers get through. */
  g_now = t0 + o.open_ms * MS;
  uint64_t tickets[3];
  for (int i = 0; i < 3; i++) assert_ok(sluice_breaker_allow(b, &tickets[i]));
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_HALF_OPEN);
  assert_err(SLUICE_EOPEN, sluice_breaker_allow(b, &t));
  assert_err(SLUICE_EOPEN, sluice_breaker_allow(b, &t));
  sluice_breaker_stats st = stats(b);
  assert_int_equal(st.trials_taken, 3);
  assert_int_equal(st.refused, 4);
  assert_int_equal(st.half_opened, 1);
  /* One failure of three is 33% < 50%: closes once all three report. */
  assert_ok(sluice_breaker_record(b, tickets[0], SLUICE_BREAKER_SUCCESS, 0));
  assert_ok(sluice_breaker_record(b, tickets[1], SLUICE_BREAKER_FAILURE, 0));
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_HALF_OPEN);
  assert_ok(sluice_breaker_record(b, tickets[2], SLUICE_BREAKER_SUCCESS, 0));
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_CLOSED);
  assert_int_equal(g_last_to, SLUICE_BREAKER_CLOSED);
  assert_int_equal(stats(b).closed, 1);
  assert_ok(sluice_breaker_allow(b, &t));
  sluice_breaker_free(b);
}

static void test_half_open_reopens_early(void **state) {
  (void)state;
  sluice_breaker_options o = base_opts(); /* 3 trials, 50%: 2 failures reopen */
  sluice_breaker *b = make(&o);
  assert_ok(sluice_breaker_set_state(b, SLUICE_BREAKER_HALF_OPEN));
  uint64_t t[3];
  for (int i = 0; i < 3; i++) assert_ok(sluice_breaker_allow(b, &t[i]));
  assert_ok(sluice_breaker_record(b, t[0], SLUICE_BREAKER_FAILURE, 0));
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_HALF_OPEN);
  uint64_t reopened_at = g_now;
  assert_ok(sluice_breaker_record(b, t[1], SLUICE_BREAKER_FAILURE, 0));
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_OPEN);
  /* The straggler's result is from an earlier state now: ignored. */
  assert_ok(sluice_breaker_record(b, t[2], SLUICE_BREAKER_SUCCESS, 0));
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_OPEN);
  assert_int_equal(stats(b).ignored, 1);
  /* A full new wait from the reopening. */
  g_now = reopened_at + o.open_ms * MS - 1;
  assert_err(SLUICE_EOPEN, sluice_breaker_allow(b, NULL));
  g_now++;
  assert_ok(sluice_breaker_allow(b, NULL));
  sluice_breaker_free(b);
}

static void test_stale_tickets_and_release(void **state) {
  (void)state;
  sluice_breaker_options o = base_opts();
  o.half_open_trials = 1;
  sluice_breaker *b = make(&o);
  uint64_t old;
  assert_ok(sluice_breaker_allow(b, &old)); /* a call let through while closed */
  assert_ok(sluice_breaker_set_state(b, SLUICE_BREAKER_HALF_OPEN));
  uint64_t trial, t;
  assert_ok(sluice_breaker_allow(b, &trial));
  assert_err(SLUICE_EOPEN, sluice_breaker_allow(b, &t));
  /* The closed-era call finishing now cannot pass for the trial. */
  assert_ok(sluice_breaker_record(b, old, SLUICE_BREAKER_SUCCESS, 0));
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_HALF_OPEN);
  assert_int_equal(stats(b).ignored, 1);
  /* The trial is cancelled: its slot goes to the next caller. */
  assert_ok(sluice_breaker_release(b, trial));
  assert_int_equal(stats(b).trials_taken, 0);
  assert_ok(sluice_breaker_allow(b, &trial));
  assert_err(SLUICE_EOPEN, sluice_breaker_allow(b, &t));
  /* Releasing a stale ticket changes nothing. */
  assert_ok(sluice_breaker_release(b, old));
  assert_int_equal(stats(b).trials_taken, 1);
  /* A ticket-less result counts in the current state. */
  assert_ok(sluice_breaker_record(b, 0, SLUICE_BREAKER_SUCCESS, 0));
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_CLOSED);
  /* Results while OPEN are ignored even without a ticket. */
  assert_ok(sluice_breaker_set_state(b, SLUICE_BREAKER_OPEN));
  uint64_t ignored = stats(b).ignored;
  assert_ok(sluice_breaker_record(b, 0, SLUICE_BREAKER_FAILURE, 0));
  assert_int_equal(stats(b).ignored, ignored + 1);
  assert_int_equal(stats(b).released, 2);
  sluice_breaker_free(b);
}

static void test_slow_calls(void **state) {
  (void)state;
  sluice_breaker_options o = base_opts();
  o.failure_rate_percent = 0; /* only the slow trigger */
  o.slow_call_ms = 100;
  o.slow_rate_percent = 50;
  sluice_breaker *b = make(&o);
  call(b, 0, 99 * MS);   /* fast */
  call(b, 1, 10 * MS);   /* a fast failure does not count as slow */
  call(b, 0, 100 * MS);  /* slow: at least slow_call_ms */
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_CLOSED);
  call(b, 0, 5000 * MS); /* 2 slow of 4 = 50% */
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_OPEN);
  sluice_breaker_stats st = stats(b);
  assert_int_equal(st.slow, 2);
  assert_int_equal(st.failures, 1);
  sluice_breaker_free(b);
}

static void test_time_window(void **state) {
  (void)state;
  sluice_breaker_options o = base_opts();
  o.window = SLUICE_BREAKER_WINDOW_TIME;
  o.window_ms = 10000;
  o.window_buckets = 10; /* 1 s steps */
  o.minimum_calls = 4;
  o.failure_rate_percent = 50;
  sluice_breaker *b = make(&o);
  g_now = 100000 * MS; /* on a bucket boundary */
  for (int i = 0; i < 3; i++) call(b, 1, 0);
  assert_int_equal(stats(b).window_calls, 3);
  /* 9.999 s later the failures are still in the window ... */
  g_now += 9999 * MS;
  assert_int_equal(stats(b).window_calls, 3);
  /* ... 10 s later they have aged out: 4 new successes and 1 failure do not trip. */
  g_now += 1 * MS;
  assert_int_equal(stats(b).window_calls, 0);
  for (int i = 0; i < 4; i++) call(b, 0, 0);
  call(b, 1, 0);
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_CLOSED);
  assert_int_equal(stats(b).window_calls, 5);
  /* Spread over buckets: 3 failures now, 1 s apart: 4 of 8 = 50% trips. */
  for (int i = 0; i < 3; i++) {
    g_now += 1000 * MS;
    call(b, 1, 0);
  }
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_OPEN);
  /* A jump far beyond the window clears everything at once. */
  assert_ok(sluice_breaker_set_state(b, SLUICE_BREAKER_CLOSED));
  call(b, 1, 0);
  g_now += 1000000 * MS;
  call(b, 0, 0);
  assert_int_equal(stats(b).window_calls, 1);
  assert_int_equal(stats(b).window_failures, 0);
  sluice_breaker_free(b);
}

static void test_forced_states(void **state) {
  (void)state;
  sluice_breaker_options o = base_opts();
  sluice_breaker *b = make(&o);
  uint64_t gen = stats(b).generation;
  assert_ok(sluice_breaker_set_state(b, SLUICE_BREAKER_OPEN));
  assert_ok(sluice_breaker_set_state(b, SLUICE_BREAKER_HALF_OPEN));
  assert_ok(sluice_breaker_set_state(b, SLUICE_BREAKER_CLOSED));
  sluice_breaker_stats st = stats(b);
  assert_int_equal(st.generation, gen + 3);
  assert_int_equal(st.opened, 1);
  assert_int_equal(st.half_opened, 1);
  assert_int_equal(st.closed, 1);
  assert_int_equal(g_changes, 3);
  /* A shorter stats struct gets only its prefix. */
  sluice_breaker_stats small;
  memset(&small, 0xAB, sizeof small);
  small.size = offsetof(sluice_breaker_stats, generation);
  assert_ok(sluice_breaker_stats_get(b, &small));
  assert_int_equal(small.size, offsetof(sluice_breaker_stats, generation));
  assert_int_equal(small.state, SLUICE_BREAKER_CLOSED);
  assert_true(small.generation == 0xABABABABABABABABull);
  sluice_breaker_free(b);
}

/* The count of a monitor series by name (0 if absent). */
static uint64_t series_count(sluice_monitor *m, const char *name) {
  for (uint32_t i = 0; i < sluice_monitor_series_count(m); i++) {
    sluice_monitor_op_stats os = {sizeof os};
    assert_ok(sluice_monitor_op_stats_get(m, i, SLUICE_WINDOW_ALL, &os));
    if (strcmp(os.name, name) == 0) return os.count;
  }
  return 0;
}

/* Given a monitor, the breaker records its trips and its refusals. */
static void test_monitor(void **state) {
  (void)state;
  sluice_monitor *m;
  assert_ok(sluice_monitor_new(&m, NULL, NULL));
  sluice_breaker_options o = base_opts();
  o.monitor = m;
  o.name = "ai";
  sluice_breaker *b = make(&o);
  for (int i = 0; i < 4; i++) call(b, 1, 0);
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_OPEN);
  uint64_t t;
  for (int i = 0; i < 3; i++) assert_err(SLUICE_EOPEN, sluice_breaker_allow(b, &t));
  assert_int_equal(series_count(m, "ai.opened"), 1);
  assert_int_equal(series_count(m, "ai.rejected"), 3);
  assert_int_equal(stats(b).refused, 3);
  sluice_breaker_free(b);

  o.name = "";
  sluice_breaker *bad = NULL;
  assert_err(SLUICE_EINVAL, sluice_breaker_new(&bad, NULL, &o));
  assert_null(bad);
  sluice_monitor_free(m);
}

/* A caller built against options version 1 (no monitor, no name fields):
 * the library must not read past the end of its struct. The struct is cut
 * to its version 1 size on the heap, so ASan would catch a read beyond. */
static void test_options_version_1(void **state) {
  (void)state;
  sluice_breaker_options full = base_opts();
  full.version = 1;
  size_t v1 = offsetof(sluice_breaker_options, monitor);
  void *cut = malloc(v1);
  assert_non_null(cut);
  assert_ok(sluice_breaker_options_init((sluice_breaker_options *)cut, 1)); /* writes v1 only */
  memcpy(cut, &full, v1);
  sluice_breaker *b = NULL;
  g_now = 1000 * MS;
  assert_ok(sluice_breaker_new(&b, NULL, (const sluice_breaker_options *)cut));
  for (int i = 0; i < 4; i++) call(b, 1, 0);
  assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_OPEN);
  sluice_breaker_free(b);
  free(cut);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_options),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_trip_on_failure_rate),
      cmocka_unit_test(test_count_window_slides),
      cmocka_unit_test(test_open_wait_and_half_open),
      cmocka_unit_test(test_half_open_reopens_early),
      cmocka_unit_test(test_stale_tickets_and_release),
      cmocka_unit_test(test_slow_calls),
      cmocka_unit_test(test_time_window),
      cmocka_unit_test(test_forced_states),
      cmocka_unit_test(test_monitor),
      cmocka_unit_test(test_options_version_1),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

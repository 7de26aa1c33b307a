/* The breaker from two threads: half-open trials racing each other (exactly
 * half_open_trials are let through, every round), the open-to-half-open
 * transition taken once, and results recorded concurrently all counted.
 * SLUICE_TEST_CONCURRENT */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include <sluice/breaker.h>

#include "testutil.h"

#define MS 1000000ull

static _Atomic uint64_t g_now;
static uint64_t fake_clock(void *ud) {
  (void)ud;
  return atomic_load(&g_now);
}

struct racer {
  sluice_breaker *b;
  pthread_barrier_t *start;
  int tries;
  int admitted;
  uint64_t tickets[64];
};

static void *race_allow(void *arg) {
  struct racer *r = arg;
  r->admitted = 0;
  pthread_barrier_wait(r->start);
  for (int i = 0; i < r->tries; i++) {
    uint64_t t;
    if (sluice_breaker_allow(r->b, &t) == 0) r->tickets[r->admitted++] = t;
  }
  return NULL;
}

static sluice_breaker *racing_breaker(uint32_t trials) {
  sluice_breaker_options o = SLUICE_BREAKER_OPTIONS_INIT;
  o.clock = fake_clock;
  o.window_calls = 10;
  o.minimum_calls = 10;
  o.open_ms = 1000;
  o.half_open_trials = trials;
  sluice_breaker *b = NULL;
  assert_ok(sluice_breaker_new(&b, NULL, &o));
  return b;
}

/* Both threads start together against a breaker whose open wait has just
 * ended: the first allow turns it half-open, and between them exactly
 * `trials` calls get in. */
static void test_half_open_trials_race(void **state) {
  (void)state;
  enum { ROUNDS = 300, TRIALS = 5 };
  sluice_breaker *b = racing_breaker(TRIALS);
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, 2);
  struct racer r[2] = {{b, &start, 40, 0, {0}}, {b, &start, 40, 0, {0}}};
  atomic_store(&g_now, 1000 * MS);
  for (int round = 0; round < ROUNDS; round++) {
    assert_ok(sluice_breaker_set_state(b, SLUICE_BREAKER_OPEN));
    atomic_fetch_add(&g_now, 1000 * MS); /* the wait is over */
    pthread_t tid[2];
    for (int i = 0; i < 2; i++) pthread_create(&tid[i], NULL, race_allow, &r[i]);
    for (int i = 0; i < 2; i++) pthread_join(tid[i], NULL);
    assert_int_equal(r[0].admitted + r[1].admitted, TRIALS);
    assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_HALF_OPEN);
    /* Every admitted trial carries the half-open state's ticket. */
    sluice_breaker_stats st = {sizeof st};
    assert_ok(sluice_breaker_stats_get(b, &st));
    for (int i = 0; i < 2; i++)
      for (int k = 0; k < r[i].admitted; k++) assert_true(r[i].tickets[k] == st.generation);
    assert_int_equal(st.trials_taken, TRIALS);
    /* Alternate endings: all succeed (closes) or one trial fails. */
    for (int i = 0; i < 2; i++)
      for (int k = 0; k < r[i].admitted; k++)
        assert_ok(sluice_breaker_record(b, r[i].tickets[k],
                                        round % 2 && i == 0 && k == 0 ? SLUICE_BREAKER_FAILURE
                                                                      : SLUICE_BREAKER_SUCCESS,
                                        0));
    /* 1 failure of 5 is 20% < 50%: closed either way. */
    assert_int_equal(sluice_breaker_state_get(b), SLUICE_BREAKER_CLOSED);
  }
  sluice_breaker_stats st = {sizeof st};
  assert_ok(sluice_breaker_stats_get(b, &st));
  assert_int_equal(st.half_opened, ROUNDS);
  assert_int_equal(st.closed, ROUNDS);
  assert_int_equal(st.refused, ROUNDS * (80 - TRIALS));
  pthread_barrier_destroy(&start);
  sluice_breaker_free(b);
}

struct recorder {
  sluice_breaker *b;
  pthread_barrier_t *start;
  int n;
  int fail_every;
};

static void *record_many(void *arg) {
  struct recorder *r = arg;
  pthread_barrier_wait(r->start);
  for (int i = 0; i < r->n; i++) {
    uint64_t t;
    if (sluice_breaker_allow(r->b, &t) != 0) continue;
    int failed = r->fail_every && i % r->fail_every == 0;
    sluice_breaker_record(r->b, t, failed ? SLUICE_BREAKER_FAILURE : SLUICE_BREAKER_SUCCESS, 0);
  }
  return NULL;
}

/* Two threads recording into one closed breaker lose nothing. */
static void test_concurrent_records(void **state) {
  (void)state;
  enum { N = 100000 };
  sluice_breaker *b = racing_breaker(3);
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, 2);
  /* One failure in 10 never reaches 50% in any window of 10. */
  struct recorder r[2] = {{b, &start, N, 10}, {b, &start, N, 0}};
  pthread_t tid[2];
  for (int i = 0; i < 2; i++) pthread_create(&tid[i], NULL, record_many, &r[i]);
  for (int i = 0; i < 2; i++) pthread_join(tid[i], NULL);
  sluice_breaker_stats st = {sizeof st};
  assert_ok(sluice_breaker_stats_get(b, &st));
  assert_int_equal(st.state, SLUICE_BREAKER_CLOSED);
  assert_int_equal(st.successes + st.failures, 2 * N);
  assert_int_equal(st.failures, N / 10);
  assert_int_equal(st.window_calls, 10);
  pthread_barrier_destroy(&start);
  sluice_breaker_free(b);
}

/* Under all failures from two threads, the breaker trips once and then
 * refuses: everything adds up. */
static void test_concurrent_trip(void **state) {
  (void)state;
  enum { N = 20000 };
  sluice_breaker *b = racing_breaker(3);
  atomic_store(&g_now, 5000 * MS); /* the clock stands still: it stays open */
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, 2);
  struct recorder r[2] = {{b, &start, N, 1}, {b, &start, N, 1}};
  pthread_t tid[2];
  for (int i = 0; i < 2; i++) pthread_create(&tid[i], NULL, record_many, &r[i]);
  for (int i = 0; i < 2; i++) pthread_join(tid[i], NULL);
  sluice_breaker_stats st = {sizeof st};
  assert_ok(sluice_breaker_stats_get(b, &st));
  assert_int_equal(st.state, SLUICE_BREAKER_OPEN);
  assert_int_equal(st.opened, 1);
  /* Each call was refused, counted, or let through while closed and then
   * ignored because it finished after the trip. */
  assert_int_equal(st.refused + st.failures + st.ignored, 2 * N);
  assert_int_equal(st.failures, 10); /* the minimum number of calls, all failed */
  pthread_barrier_destroy(&start);
  sluice_breaker_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_half_open_trials_race),
      cmocka_unit_test(test_concurrent_records),
      cmocka_unit_test(test_concurrent_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

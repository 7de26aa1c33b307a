/*
 * retry_example: the origin's @retry_with_backoff(max_retries=3,
 * base_delay=0.1) as a sluice retry policy, three ways.
 *
 *  1. The delays alone (sluice_retry_next_delay), as a binding that sleeps
 *     in its own runtime would compute them.
 *  2. Asynchronous runs on the loop: a flaky "AI service" (simulated with
 *     loop timers) fails each request's first attempts with 503, then
 *     answers; a circuit breaker watches it.
 *  3. The same request driven by this thread (a session), sleeping itself.
 *
 *   retry_example [requests] [failures-before-success]
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep under strict C99 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <sluice.h>
#include <sluice/breaker.h>
#include <sluice/retry.h>

#define MS 1000000ull

static int g_failures_before_success = 2;

/* ---- a flaky service, simulated on the loop ---------------------------- */

struct call {
  sluice_retry_attempt *attempt;
};

static void service_answers(void *user_data, int status) {
  struct call *c = user_data;
  if (status == 0) {
    uint32_t n = sluice_retry_attempt_number(c->attempt);
    if ((int)n <= g_failures_before_success)
      /* "503 Service Unavailable, Retry-After: 0.15 s" */
      sluice_retry_attempt_done(c->attempt, SLUICE_RETRY_RETRYABLE, -503, 150 * MS);
    else
      sluice_retry_attempt_done(c->attempt, SLUICE_RETRY_SUCCESS, 0, 0);
  } else {
    /* The timer did not fire (shutdown): the attempt must still be given back. */
    sluice_retry_attempt_done(c->attempt, SLUICE_RETRY_RETRYABLE, status, 0);
  }
  free(c);
}

/* Called on the loop thread: start the work, report later. */
static void call_service(void *user_data, sluice_retry_attempt *attempt) {
  sluice_runtime *rt = user_data;
  struct call *c = malloc(sizeof *c);
  c->attempt = attempt;
  if (sluice_runtime_timer(rt, 20, service_answers, c, NULL, NULL) != 0) {
    sluice_retry_attempt_done(attempt, SLUICE_RETRY_PERMANENT, SLUICE_ECLOSED, 0);
    free(c);
  }
}

/* A run's status is a sluice code, or the code an attempt reported. */
static const char *describe(int status) {
  static char own[32];
  if (status == 0) return "ok";
  if (status < SLUICE_ERRNO_LAST_) {
    snprintf(own, sizeof own, "the service's %d", status);
    return own;
  }
  return sluice_err_name(status);
}

static void request_done(void *user_data, int status, int last_code, uint32_t attempts) {
  (void)user_data;
  printf("  request done: %s after %u attempt(s) (last code %d)\n", describe(status), attempts,
         last_code);
}

static void on_retry(void *user_data, uint32_t attempt, int code, uint64_t delay_ns) {
  (void)user_data;
  printf("  attempt %u failed (%d); retrying in %.0f ms\n", attempt, code, delay_ns / 1e6);
}

static void sleep_ns(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
  nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
  int requests = argc > 1 ? atoi(argv[1]) : 3;
  g_failures_before_success = argc > 2 ? atoi(argv[2]) : 2;
  if (requests < 1 || requests > 1000 || g_failures_before_success < 0) {
    fprintf(stderr, "usage: retry_example [requests 1..1000] [failures-before-success]\n");
    return 2;
  }

  /* The origin: 3 tries, 0.1 s then 0.2 s apart, no jitter, no cap. */
  sluice_retry_options o = SLUICE_RETRY_OPTIONS_INIT;
  o.max_attempts = 3;
  o.base_delay_ms = 100;
  o.multiplier = 2;
  o.jitter = SLUICE_RETRY_JITTER_NONE;

  printf("1. the origin's delays:");
  uint64_t prev = 0, d;
  for (uint32_t n = 1; n < o.max_attempts; n++) {
    sluice_retry_next_delay(&o, n, prev, NULL, &d);
    printf(" %.0f ms", d / 1e6);
    prev = d;
  }
  printf("\n   with full jitter (seeded):");
  o.jitter = SLUICE_RETRY_JITTER_FULL;
  uint64_t rng = 2024;
  for (uint32_t n = 1; n < o.max_attempts; n++) {
    sluice_retry_next_delay(&o, n, 0, &rng, &d);
    printf(" %.1f ms", d / 1e6);
  }
  printf("\n");

  sluice_runtime *rt = NULL;
  int rc = sluice_runtime_new(&rt, NULL);
  if (rc != 0) {
    fprintf(stderr, "runtime: %s (%s)\n", sluice_strerror(rc), sluice_error_message());
    return 1;
  }
  sluice_breaker_options bo = SLUICE_BREAKER_OPTIONS_INIT;
  bo.window_calls = 20;
  bo.minimum_calls = 10;
  bo.failure_rate_percent = 80; /* the default pattern (2 of 3 attempts fail) stays below */
  bo.open_ms = 5000;
  sluice_breaker *breaker = NULL;
  sluice_breaker_new(&breaker, rt, &bo);

  /* What sluice adds: a deadline over the whole run, a per-attempt
   * timeout, a shared retry budget and the breaker. */
  o.jitter = SLUICE_RETRY_JITTER_FULL;
  o.total_timeout_ms = 2000;
  o.attempt_timeout_ms = 500;
  o.breaker = breaker;
  o.on_retry = on_retry;
  sluice_retry *policy = NULL;
  rc = sluice_retry_new(&policy, rt, &o);
  if (rc != 0) {
    fprintf(stderr, "policy: %s (%s)\n", sluice_strerror(rc), sluice_error_message());
    return 1;
  }

  printf("2. %d asynchronous request(s):\n", requests);
  for (int i = 0; i < requests; i++) {
    sluice_op *op = NULL;
    rc = sluice_retry_run(policy, 0, call_service, request_done, rt, NULL, &op);
    if (rc != 0) {
      fprintf(stderr, "run: %s (%s)\n", sluice_strerror(rc), sluice_error_message());
      break;
    }
    sluice_op_wait(op, -1, NULL); /* one at a time, so the output reads in order */
    sluice_op_free(op);
  }

  printf("3. the same request, driven by this thread:\n");
  sluice_retry_session *s = NULL;
  sluice_retry_session_new(policy, 0, &s);
  int status = 0;
  for (;;) {
    uint64_t attempt_deadline = 0, delay = 0;
    if (sluice_retry_session_begin(s, &attempt_deadline, &status) != 1) break;
    uint32_t n = sluice_retry_session_attempts(s);
    sleep_ns(20 * MS); /* the call */
    int failed = (int)n <= g_failures_before_success;
    if (sluice_retry_session_end(s, failed ? SLUICE_RETRY_RETRYABLE : SLUICE_RETRY_SUCCESS,
                                 failed ? -503 : 0, failed ? 150 * MS : 0, &delay, &status) != 1)
      break;
    sleep_ns(delay);
  }
  printf("  session done: %s after %u attempt(s)\n", describe(status),
         sluice_retry_session_attempts(s));
  sluice_retry_session_free(s);

  sluice_retry_stats st = {sizeof st};
  sluice_retry_stats_get(policy, &st);
  printf("policy: %llu runs, %llu attempts, %llu ok first time, %llu ok after retry, "
         "%llu failed, budget %.1f tokens\n",
         (unsigned long long)st.runs, (unsigned long long)st.attempts,
         (unsigned long long)st.successes_first, (unsigned long long)st.successes_after_retry,
         (unsigned long long)(st.failures_first + st.failures_after_retry), st.budget_balance);
  sluice_breaker_stats bs = {sizeof bs};
  sluice_breaker_stats_get(breaker, &bs);
  printf("breaker: %s, %llu successes, %llu failures in its records\n",
         bs.state == SLUICE_BREAKER_CLOSED ? "closed" : bs.state == SLUICE_BREAKER_OPEN ? "open" : "half-open",
         (unsigned long long)bs.successes, (unsigned long long)bs.failures);

  sluice_retry_free(policy);
  sluice_breaker_free(breaker);
  sluice_runtime_free(rt);
  return 0;
}

/*
 * sluice/breaker.h - a circuit breaker: stop calling a dependency that is
 * failing or slow, try it again after a while.
 *
 * Three states:
 *  - CLOSED: calls pass. Each finished call is recorded in a sliding window
 *    (the last N calls, or the last T milliseconds). Once the window holds
 *    at least `minimum_calls` calls, the breaker trips (goes OPEN) when the
 *    failure rate reaches `failure_rate_percent`, or when the share of slow
 *    calls (duration >= slow_call_ms) reaches `slow_rate_percent`.
 *  - OPEN: every call is refused with SLUICE_EOPEN for `open_ms`. The first
 *    sluice_breaker_allow after that turns the breaker HALF_OPEN.
 *  - HALF_OPEN: exactly `half_open_trials` calls are let through; more
 *    callers are refused with SLUICE_EOPEN. The breaker reopens as soon as
 *    the trials' failures (or slow calls) reach the threshold as a share of
 *    all trials, and closes (with an empty window) once every trial has
 *    reported without that.
 *
 * Usable alone:
 *
 *     uint64_t ticket;
 *     if (sluice_breaker_allow(b, &ticket) == 0) {
 *       uint64_t t0 = sluice_now_ns();
 *       int rc = call_the_service();
 *       sluice_breaker_record(b, ticket, rc == 0 ? SLUICE_BREAKER_SUCCESS
 *                                                : SLUICE_BREAKER_FAILURE,
 *                             sluice_now_ns() - t0);
 *     }
 *
 * or inside a retry policy (sluice_retry_options.breaker, see retry.h).
 *
 * The ticket ties a result to the state that admitted the call: a result
 * whose ticket is from an earlier state (a call let through while CLOSED
 * that finishes after the breaker opened) is ignored, so it cannot pass for
 * a half-open trial. Pass ticket 0 (or allow with ticket NULL) to have a
 * result counted in whatever the current state is.
 *
 * Threads: every function may be called from any thread. allow takes no
 * lock while CLOSED (one atomic load) or OPEN before its wait ends (plus a
 * clock read); record holds a small lock for the window update (a thread
 * that finds it taken sleeps on a futex until it is free). Neither
 * allocates or calls into the loop. The breaker needs no runtime. The
 * clock and the state listener must not block: the clock is read under
 * the lock when the breaker opens.
 */
#ifndef SLUICE_BREAKER_H
#define SLUICE_BREAKER_H

#include "common.h"
#include "monitor.h" /* sluice_clock_cb */
#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sluice_breaker sluice_breaker;

typedef enum sluice_breaker_state {
  SLUICE_BREAKER_CLOSED = 0,
  SLUICE_BREAKER_OPEN = 1,
  SLUICE_BREAKER_HALF_OPEN = 2
} sluice_breaker_state;

typedef enum sluice_breaker_window {
  SLUICE_BREAKER_WINDOW_COUNT = 0, /* the last window_calls calls */
  SLUICE_BREAKER_WINDOW_TIME = 1   /* calls of the last window_ms */
} sluice_breaker_window;

/* A call's result, as sluice_breaker_record takes it. */
typedef enum sluice_breaker_result {
  SLUICE_BREAKER_SUCCESS = 0,
  SLUICE_BREAKER_FAILURE = 1
} sluice_breaker_result;

/*
 * Told of every state change: from, to, and the new state's generation (it
 * grows by one at every change, so a listener can order notifications that
 * race from two threads). Runs in the thread whose call caused the change,
 * after the breaker's lock is released; it may call into the breaker.
 */
typedef void (*sluice_breaker_state_cb)(void *user_data, int from, int to,
                                        uint64_t generation);

#define SLUICE_BREAKER_OPTIONS_VERSION 2

typedef struct sluice_breaker_options {
  unsigned int version;        /* SLUICE_BREAKER_OPTIONS_VERSION */
  int window;                  /* a sluice_breaker_window; default COUNT */
  uint32_t window_calls;       /* COUNT: calls kept; default 100
                                  (1..1000000) */
  int64_t window_ms;           /* TIME: length of the window; default 60000
                                  (1..2^40) */
  uint32_t window_buckets;     /* TIME: the window moves in steps of
                                  window_ms / window_buckets; default 10
                                  (1..1000, and window_ms / window_buckets
                                  at least 1 ms) */
  uint32_t minimum_calls;      /* calls the window must hold before a rate
                                  is judged; default 10 (1..1000000; with a
                                  COUNT window at most window_calls) */
  double failure_rate_percent; /* trip at this failure rate; default 50;
                                  0 turns the failure trigger off;
                                  else (0, 100] */
  int64_t slow_call_ms;        /* a call lasting at least this is slow;
                                  default 0: slow calls are not tracked */
  double slow_rate_percent;    /* trip at this share of slow calls (with
                                  slow_call_ms); default 100; (0, 100] */
  int64_t open_ms;             /* wait while OPEN; default 30000 (1..2^40) */
  uint32_t half_open_trials;   /* calls let through while HALF_OPEN;
                                  default 3 (1..65536) */
  sluice_clock_cb clock;       /* NULL: the coarse monotonic clock (a few
                                  ms resolution, so an open breaker may turn
                                  half-open that much late, never early) */
  void *clock_user_data;
  sluice_breaker_state_cb on_state_change; /* optional */
  void *state_user_data;
  /* Version 2. Optional: records "<name>.rejected" for every call refused
   * while open (duration 0, outcome SLUICE_EOPEN) and "<name>.opened" each
   * time the breaker trips (duration 0, outcome SLUICE_EOPEN). Must outlive
   * the breaker. A version 1 caller gets neither. */
  sluice_monitor *monitor;
  const char *name;            /* series prefix; default "breaker" (1..64
                                  bytes; copied) */
} sluice_breaker_options;

#define SLUICE_BREAKER_OPTIONS_INIT                                          \
  {SLUICE_BREAKER_OPTIONS_VERSION, SLUICE_BREAKER_WINDOW_COUNT, 100, 60000, \
   10, 10, 50.0, 0, 100.0, 30000, 3, NULL, NULL, NULL, NULL, NULL, NULL}

/*
 * Fills `opts` with the defaults of options version `version`.
 * Errors: SLUICE_EINVAL (opts NULL), SLUICE_EVERSION.
 */
SLUICE_EXTERN int sluice_breaker_options_init(sluice_breaker_options *opts,
                                              unsigned int version);

/*
 * Creates a breaker, CLOSED with an empty window. `rt` may be NULL (the
 * breaker does not use the loop). `opts` may be NULL for the defaults.
 * Errors: SLUICE_EINVAL (out NULL; an option out of range, with which one
 * in sluice_error_message: window kind, sizes, minimum_calls above
 * window_calls, a rate outside (0, 100], both triggers off, open_ms or
 * half_open_trials 0), SLUICE_EVERSION, SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_breaker_new(sluice_breaker **out, sluice_runtime *rt,
                                     const sluice_breaker_options *opts);

/*
 * Frees the breaker. NULL is a no-op. No other thread may be using it, and
 * every retry policy given it must have been freed first.
 */
SLUICE_EXTERN void sluice_breaker_free(sluice_breaker *b);

/*
 * "May I call?" Returns 0 if the call may go ahead, SLUICE_EOPEN if not
 * (OPEN and its wait not over, or HALF_OPEN with every trial taken).
 * On 0, *ticket (if ticket is not NULL) receives the ticket to pass to
 * sluice_breaker_record or sluice_breaker_release; every call let through
 * must be followed by exactly one of them, or a half-open breaker waits
 * for the missing trial for ever.
 * Errors: SLUICE_EINVAL (b NULL).
 */
SLUICE_EXTERN int sluice_breaker_allow(sluice_breaker *b, uint64_t *ticket);

/*
 * "It finished": records a call's result (a sluice_breaker_result) and how
 * long it took. May trip, close or reopen the breaker. A result whose
 * ticket belongs to an earlier state is ignored (counted in
 * stats.ignored); ticket 0 counts in the current state. Results arriving
 * while OPEN are ignored.
 * Errors: SLUICE_EINVAL (b NULL, result not a sluice_breaker_result).
 */
SLUICE_EXTERN int sluice_breaker_record(sluice_breaker *b, uint64_t ticket,
                                        int result, uint64_t duration_ns);

/*
 * "It did not happen": gives back a call let through without a result (the
 * caller cancelled it). While HALF_OPEN this frees the trial for another
 * caller; otherwise it does nothing.
 * Errors: SLUICE_EINVAL (b NULL).
 */
SLUICE_EXTERN int sluice_breaker_release(sluice_breaker *b, uint64_t ticket);

/*
 * The current state (a sluice_breaker_state), as of the latest change: an
 * OPEN breaker whose wait has passed reads OPEN until the next allow turns
 * it HALF_OPEN. SLUICE_EINVAL if b is NULL.
 */
SLUICE_EXTERN int sluice_breaker_state_get(const sluice_breaker *b);

/*
 * Forces a state (an operator's switch, or a test's): CLOSED or HALF_OPEN
 * start with an empty window and no trials taken; OPEN starts a full
 * open_ms wait. Tickets given out before are from an earlier state now.
 * Errors: SLUICE_EINVAL (b NULL, state not a sluice_breaker_state).
 */
SLUICE_EXTERN int sluice_breaker_set_state(sluice_breaker *b, int state);

typedef struct sluice_breaker_stats {
  size_t size;            /* caller sets sizeof(sluice_breaker_stats) */
  int state;              /* a sluice_breaker_state */
  uint64_t generation;    /* state changes so far, plus one */
  uint64_t successes;     /* results recorded (not ignored), by kind */
  uint64_t failures;
  uint64_t slow;          /* of those, calls at least slow_call_ms long */
  uint64_t refused;       /* allow calls answered SLUICE_EOPEN */
  uint64_t ignored;       /* results from an earlier state, or while OPEN */
  uint64_t released;      /* sluice_breaker_release calls */
  uint64_t opened;        /* transitions into OPEN */
  uint64_t half_opened;   /* ... into HALF_OPEN */
  uint64_t closed;        /* ... into CLOSED */
  uint64_t window_calls;  /* calls in the window now (CLOSED) */
  uint64_t window_failures;
  uint64_t window_slow;
  uint32_t trials_taken;  /* HALF_OPEN: trials let through / reported */
  uint32_t trials_reported;
} sluice_breaker_stats;

/*
 * Copies the breaker's figures into *out (no more than out->size bytes).
 * Errors: SLUICE_EINVAL (b or out NULL, out->size too small).
 */
SLUICE_EXTERN int sluice_breaker_stats_get(const sluice_breaker *b,
                                           sluice_breaker_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_BREAKER_H */

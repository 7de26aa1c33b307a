/*
 * sluice/retry.h - retry policies: backoff with jitter, a total deadline,
 * per-attempt timeouts, server retry-after hints, a retry budget shared by
 * every run of the policy, and an optional circuit breaker.
 *
 * A policy (sluice_retry) is created once and shared. Each use of it is a
 * run: a sequence of attempts that ends with one final status. Runs come in
 * two forms:
 *
 *  - Asynchronous (sluice_retry_run): the library calls your attempt
 *    function on the loop thread, you report each attempt's outcome (from
 *    any thread, now or later) with sluice_retry_attempt_done, and the
 *    waits between attempts are loop timers: no thread ever sleeps. The run
 *    ends with one call of your done callback on the loop thread.
 *  - Driven by you (sluice_retry_session_*), for bindings that sleep in
 *    their own runtime (goroutines, tokio, asyncio): ask before an attempt,
 *    tell after it, and sleep for the delay you are given. The same budget,
 *    breaker, deadline and figures apply.
 *
 * And a pure function, sluice_retry_next_delay, for code that only wants
 * the backoff arithmetic.
 *
 * Delays. Retry n (n = 1 before the second attempt) waits, before jitter,
 *     e(n) = min(max_delay, floor(base_delay * multiplier^(n-1)))
 * in nanoseconds, the power taken by repeated squaring in IEEE double.
 * The jitter modes then give (U[a, b] is uniform over the integers a..b,
 * in nanoseconds, drawn from the run's seeded splitmix64 stream):
 *  - NONE:          e(n)
 *  - FULL:          U[0, e(n)]
 *  - EQUAL:         e(n)/2 + U[0, e(n) - e(n)/2]      (within [e/2, e])
 *  - DECORRELATED:  min(max_delay, U[base, 3 * prev]), prev the previous
 *                   delay (base for the first retry) clamped to
 *                   [base, max_delay]. The AWS formula; it clumps at
 *                   max_delay once 3 * prev passes it.
 *  - SPREAD:        t = U[base, 3 * prev]; if t > max_delay, t is
 *                   drawn again from U[max(base, max_delay/2), max_delay].
 *                   Decorrelated growth without the clump: the draws that
 *                   would pile up on max_delay are spread over its upper
 *                   half, so no delay value is more likely than another
 *                   there.
 * The multiplier applies to NONE, FULL and EQUAL; the decorrelated modes
 * grow by their factor 3.
 *
 * Deadline. A run's deadline is the earlier of its own (the deadline_ns
 * argument) and its start plus total_timeout_ms. A retry whose wait would
 * reach the deadline is not made: the run ends at once with
 * SLUICE_ETIMEDOUT instead of sleeping only to give up, so no thread or
 * timer ever waits past the deadline. An attempt is never started once the
 * deadline has passed, and an attempt's own timeout is cut to end at the
 * deadline.
 *
 * Retry-after. An attempt may report how long the server asked it to wait.
 * The next attempt then starts no earlier than that (the wait is the larger
 * of the hint and the backoff delay; max_delay does not cut a hint). If the
 * hint reaches past the deadline the run ends at once with
 * SLUICE_ETIMEDOUT: honouring it is impossible and an early retry would be
 * refused again.
 *
 * Retry budget (shared by all runs of the policy; budget_ratio 0 turns it
 * off). A balance of tokens starts at budget_tokens. Every run puts in
 * budget_ratio tokens (counted in thousandths, rounded down), and the
 * balance never exceeds max(budget_tokens, 1). Every retry takes out one
 * token; a retry that finds less than one ends its run at once with
 * SLUICE_EBUDGET. So however the attempts fail, over any stretch of N runs
 *     retries <= budget_ratio * N + budget_tokens,
 *     attempts <= (1 + budget_ratio) * N + budget_tokens,
 * while with few failures the balance stays full and every retry is made.
 * First attempts are never refused by the budget.
 *
 * Breaker (optional). Before every attempt, the policy asks the breaker;
 * if it refuses, the run ends at once with SLUICE_EOPEN and the refused
 * attempt is not counted (the attempt function is not called, no budget is
 * spent). Likewise a retry is not even scheduled while the breaker is OPEN
 * (say, tripped by the attempt that just failed): the run ends with
 * SLUICE_EOPEN at once instead of sleeping first. Retrying against an open
 * breaker could only burn attempts on refusals or wait out open_ms, which
 * is usually longer than the caller will wait. Each attempt's result is
 * recorded: a retryable failure or an attempt timeout as a failure,
 * success and permanent failure as success (the dependency answered; the
 * request was at fault); a cancelled attempt gives its breaker ticket back.
 *
 * Final status of a run: 0 (an attempt succeeded); the code of the attempt
 * that ended it (a permanent failure, or a retryable failure with no
 * attempts left); SLUICE_EBUDGET, SLUICE_ETIMEDOUT, SLUICE_EOPEN (above);
 * SLUICE_ECANCELED (cancelled); SLUICE_ECLOSED (policy freed or runtime
 * shut down); SLUICE_ENOMEM. After a retryable failure the checks run in
 * this order, the first that applies ending the run: no attempts left
 * (the attempt's code), breaker open (EOPEN), deadline (ETIMEDOUT), budget
 * (EBUDGET); so the budget is only spent on retries that will be made.
 *
 * Times: every absolute time here (deadline_ns, the clock) is monotonic
 * nanoseconds on the policy's clock, which is sluice_now_ns unless you
 * inject one. Loop timers always wait real time, for the durations the
 * policy computes; they have millisecond resolution and fire late, never
 * early.
 *
 * Threads: every function may be called from any thread unless it says
 * otherwise. Non-waiting calls (sessions, next_delay, stats) run in the
 * caller's thread and never hop to the loop.
 */
#ifndef SLUICE_RETRY_H
#define SLUICE_RETRY_H

#include "breaker.h"
#include "common.h"
#include "monitor.h"
#include "op.h"
#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sluice_retry sluice_retry;

typedef enum sluice_retry_jitter {
  SLUICE_RETRY_JITTER_NONE = 0,
  SLUICE_RETRY_JITTER_FULL = 1,
  SLUICE_RETRY_JITTER_EQUAL = 2,
  SLUICE_RETRY_JITTER_DECORRELATED = 3,
  SLUICE_RETRY_JITTER_SPREAD = 4
} sluice_retry_jitter;

/* What an attempt reports. */
typedef enum sluice_retry_outcome {
  SLUICE_RETRY_SUCCESS = 0,   /* done; the run ends with status 0 */
  SLUICE_RETRY_RETRYABLE = 1, /* failed; may be tried again */
  SLUICE_RETRY_PERMANENT = 2  /* failed; trying again cannot help */
} sluice_retry_outcome;

/*
 * Told each time a retry is decided: attempt `attempt` failed with `code`
 * and the next attempt starts in `delay_ns` (backoff, or a longer
 * retry-after hint). On the loop thread for asynchronous runs; in the
 * session's thread, inside sluice_retry_session_end, for sessions.
 */
typedef void (*sluice_retry_event_cb)(void *user_data, uint32_t attempt,
                                      int code, uint64_t delay_ns);

#define SLUICE_RETRY_OPTIONS_VERSION 1

typedef struct sluice_retry_options {
  unsigned int version;       /* SLUICE_RETRY_OPTIONS_VERSION */
  uint32_t max_attempts;      /* attempts including the first; default 3
                                 (1..1000000; 1 never retries) */
  int64_t base_delay_ms;      /* default 100 (1..2^40) */
  double multiplier;          /* default 2.0 ([1, 1000]; 1 = constant) */
  int64_t max_delay_ms;       /* cap on the backoff; default 10000
                                 (base_delay_ms..2^40) */
  int jitter;                 /* a sluice_retry_jitter; default FULL */
  int64_t total_timeout_ms;   /* deadline from the run's start; 0 (default)
                                 none (0..2^40) */
  int64_t attempt_timeout_ms; /* asynchronous runs: an attempt not reported
                                 within this ends as a retryable
                                 SLUICE_ETIMEDOUT; 0 (default) none.
                                 Sessions are told it, and enforce it
                                 themselves. (0..2^40) */
  double budget_ratio;        /* retry tokens earned per run; default 0.1;
                                 0 turns the budget off; else
                                 [0.001, 100] */
  uint32_t budget_tokens;     /* starting (and largest) balance; default 10
                                 (0..1000000) */
  uint64_t seed;              /* jitter source; 0 (default) seeds from the
                                 time. The k-th run of the policy to need a
                                 retry (k = 0, 1, ...) draws its delays from
                                 splitmix64 with state
                                 sluice_retry_seed(seed, k). */
  sluice_breaker *breaker;    /* optional; must outlive the policy and its
                                 sessions */
  sluice_monitor *monitor;    /* optional: records "<name>.attempt" (each
                                 attempt, with its code) and "<name>.run"
                                 (each run, with its final status); must
                                 outlive the policy and its sessions */
  const char *name;           /* series prefix; default "retry" (1..64
                                 bytes; copied) */
  sluice_retry_event_cb on_retry; /* optional */
  void *event_user_data;
  sluice_clock_cb clock;      /* NULL: sluice_now_ns */
  void *clock_user_data;
} sluice_retry_options;

#define SLUICE_RETRY_OPTIONS_INIT                                            \
  {SLUICE_RETRY_OPTIONS_VERSION, 3, 100, 2.0, 10000, SLUICE_RETRY_JITTER_FULL, \
   0, 0, 0.1, 10, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL}

/*
 * Fills `opts` with the defaults of options version `version`.
 * Errors: SLUICE_EINVAL (opts NULL), SLUICE_EVERSION.
 */
SLUICE_EXTERN int sluice_retry_options_init(sluice_retry_options *opts,
                                            unsigned int version);

/* ---- policy life cycle --------------------------------------------- */

/*
 * Creates a policy. `rt` is the loop that drives asynchronous runs; it may
 * be NULL if only sessions and sluice_retry_next_delay are used. With a
 * runtime, free the policy before the runtime. `opts` may be NULL for the
 * defaults.
 * Errors: SLUICE_EINVAL (out NULL; an option out of range, named in
 * sluice_error_message: zero attempts, a delay that is zero, negative or
 * absurd, max_delay below base_delay, a multiplier below 1, an unknown
 * jitter, a budget ratio out of range, a name too long), SLUICE_EVERSION,
 * SLUICE_ENOMEM, SLUICE_ECLOSED (the runtime is shutting down).
 */
SLUICE_EXTERN int sluice_retry_new(sluice_retry **out, sluice_runtime *rt,
                                   const sluice_retry_options *opts);

/*
 * Frees the policy. NULL is a no-op. Asynchronous runs still pending
 * complete with SLUICE_ECLOSED before this returns (their done callbacks
 * run on the loop thread; called from another thread, free waits for
 * that). Open sessions stay valid until freed; their next begin reports
 * SLUICE_ECLOSED. Any thread, including the loop thread inside a callback;
 * not while another thread may still start runs or sessions on it.
 */
SLUICE_EXTERN void sluice_retry_free(sluice_retry *p);

/* ---- asynchronous runs --------------------------------------------- */

/* One attempt of an asynchronous run, handed to the attempt function. */
typedef struct sluice_retry_attempt sluice_retry_attempt;

/*
 * Makes one attempt. Called on the loop thread. It must not block: it
 * starts the work and returns; the outcome is reported, now or later, from
 * any thread, with sluice_retry_attempt_done(attempt, ...).
 */
typedef void (*sluice_retry_attempt_fn)(void *user_data,
                                        sluice_retry_attempt *attempt);

/*
 * The end of a run: its final status (see the top of this file), the last
 * attempt's code (0 if it succeeded or none ran) and the number of
 * attempts made. On the loop thread, exactly once.
 */
typedef void (*sluice_retry_done_cb)(void *user_data, int status,
                                     int last_code, uint32_t attempts);

/*
 * Starts a run: attempt_fn(user_data, attempt) is called on the loop
 * thread for each attempt, never inside this call; done_cb(user_data, ...)
 * once at the end, then free_user_data(user_data) if not NULL.
 * `deadline_ns` is an absolute time on the policy's clock, or 0 for none
 * beyond total_timeout_ms. `op_out` may be NULL; if not, *op_out receives
 * a handle (release it with sluice_op_free) to cancel the run: a pending
 * wait is dropped, an attempt in flight is abandoned (its later report is
 * ignored), and the run ends with SLUICE_ECANCELED; if an attempt already
 * reported success, that success wins the race and the run ends with 0.
 * Runtime shutdown ends pending runs with SLUICE_ECLOSED.
 * Errors (nothing taken, no callback): SLUICE_EINVAL (p, attempt_fn or
 * done_cb NULL; a policy made without a runtime), SLUICE_ECLOSED (the
 * runtime is shutting down), SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_retry_run(sluice_retry *p, uint64_t deadline_ns,
                                   sluice_retry_attempt_fn attempt_fn,
                                   sluice_retry_done_cb done_cb, void *user_data,
                                   sluice_free_cb free_user_data,
                                   sluice_op **op_out);

/*
 * Reports the outcome of an attempt (a sluice_retry_outcome), with the
 * error code of a failure (any non-zero int: a sluice code or your own; it
 * becomes the run's status if the run ends on it) and the server's
 * retry-after hint in nanoseconds (0: none). Any thread, including inside
 * the attempt function.
 *
 * Call it exactly once for every attempt you were given, even after the
 * attempt timed out or the run was cancelled: this call gives the attempt
 * back to the library, and `attempt` must not be used after it. The
 * library never frees an attempt before that, so a late report is always
 * safe.
 *
 * Returns 0 if the report was taken; SLUICE_ETIMEDOUT, SLUICE_ECANCELED or
 * SLUICE_ECLOSED if the attempt had already ended that way (the report is
 * ignored); SLUICE_EINVAL if attempt is NULL (nothing happens), or if the
 * outcome is unknown (taken as a retryable failure with code
 * SLUICE_EINVAL) or a failure came with code 0 (taken with code
 * SLUICE_EINVAL): the attempt is given back all the same.
 */
SLUICE_EXTERN int sluice_retry_attempt_done(sluice_retry_attempt *attempt,
                                            int outcome, int code,
                                            uint64_t retry_after_ns);

/* Which attempt this is: 1 for the first. 0 if attempt is NULL. */
SLUICE_EXTERN uint32_t sluice_retry_attempt_number(const sluice_retry_attempt *attempt);

/*
 * When the run stops waiting for this attempt (its timeout, cut to the
 * run's deadline), in sluice_now_ns time; 0 if it waits for ever (or
 * attempt is NULL). For passing the deadline on (a Go context, a query
 * timeout).
 */
SLUICE_EXTERN uint64_t sluice_retry_attempt_deadline(const sluice_retry_attempt *attempt);

/*
 * 1 while the run still waits for this attempt's report; 0 once it timed
 * out, was cancelled or closed, or was reported (or attempt is NULL). Lets
 * long work stop early. The attempt must still be given back.
 */
SLUICE_EXTERN int sluice_retry_attempt_active(const sluice_retry_attempt *attempt);

/* ---- runs driven by the caller -------------------------------------- */

typedef struct sluice_retry_session sluice_retry_session;

/*
 * Starts a run that the caller drives: loop { begin; attempt; end; sleep }.
 * `deadline_ns` as for sluice_retry_run. The session must be freed with
 * sluice_retry_session_free. A session is used by one thread at a time.
 * Errors: SLUICE_EINVAL (p or out NULL), SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_retry_session_new(sluice_retry *p, uint64_t deadline_ns,
                                           sluice_retry_session **out);

/*
 * Before each attempt. Returns 1: make the attempt now, and finish it by
 * *attempt_deadline_ns (policy clock; 0 = no limit; the pointer may be
 * NULL). Returns 0: the run is over without this
 * attempt, *status (if not NULL) says why: SLUICE_ETIMEDOUT (deadline
 * passed), SLUICE_EOPEN (the breaker refused), SLUICE_ECLOSED (the
 * policy was freed). Then only sluice_retry_session_free remains.
 * Errors (negative): SLUICE_EINVAL (s NULL), SLUICE_ESTATE (an attempt is
 * already begun and not ended, or the run is over).
 */
SLUICE_EXTERN int sluice_retry_session_begin(sluice_retry_session *s,
                                             uint64_t *attempt_deadline_ns,
                                             int *status);

/*
 * After each attempt: its outcome, code and retry-after hint as for
 * sluice_retry_attempt_done. Returns 1: wait *delay_ns, then begin the
 * next attempt. Returns 0: the run is over; *status (if not NULL) is its
 * final status (0 success, the attempt's code, SLUICE_EBUDGET,
 * SLUICE_ETIMEDOUT).
 * Errors (negative; nothing recorded): SLUICE_EINVAL (s NULL, outcome
 * unknown, a failure with code 0), SLUICE_ESTATE (no attempt begun).
 */
SLUICE_EXTERN int sluice_retry_session_end(sluice_retry_session *s, int outcome,
                                           int code, uint64_t retry_after_ns,
                                           uint64_t *delay_ns, int *status);

/* Attempts made so far (0 if s is NULL). */
SLUICE_EXTERN uint32_t sluice_retry_session_attempts(const sluice_retry_session *s);

/*
 * Frees the session. A run not over yet counts as cancelled (and an
 * attempt begun but not ended gives its breaker ticket back). NULL is a
 * no-op.
 */
SLUICE_EXTERN void sluice_retry_session_free(sluice_retry_session *s);

/* ---- the arithmetic alone ------------------------------------------- */

/*
 * The delay before retry `retry` (1 = before the second attempt) under the
 * backoff fields of `opts` (base_delay_ms, multiplier, max_delay_ms,
 * jitter; the rest must be valid but is not used), given the previous
 * delay this function returned (0 for the first retry; used by the
 * decorrelated modes) and a splitmix64 state, which it advances (any
 * value; NULL is allowed with JITTER_NONE). Pure: no clock, no budget, no
 * deadline. The result never exceeds max_delay.
 * Errors: SLUICE_EINVAL (opts or delay_ns NULL, rng_state NULL with a
 * jitter, retry 0, an invalid option), SLUICE_EVERSION.
 */
SLUICE_EXTERN int sluice_retry_next_delay(const sluice_retry_options *opts,
                                          uint32_t retry, uint64_t prev_delay_ns,
                                          uint64_t *rng_state, uint64_t *delay_ns);

/*
 * The splitmix64 state from which the run-th run (0, 1, ...) of a policy
 * seeded with `seed` to need a retry draws its delays, so a test or a
 * binding can reproduce a policy's delays exactly. Never fails.
 */
SLUICE_EXTERN uint64_t sluice_retry_seed(uint64_t seed, uint64_t run);

/* ---- figures --------------------------------------------------------- */

typedef struct sluice_retry_stats {
  size_t size;                    /* caller sets sizeof(sluice_retry_stats) */
  uint64_t runs;                  /* runs started (async and sessions) */
  uint64_t in_flight;             /* runs not over yet */
  uint64_t attempts;              /* attempts made (first ones included) */
  uint64_t successes_first;       /* runs that succeeded at the first attempt */
  uint64_t successes_after_retry; /* ... after at least one retry */
  uint64_t failures_first;        /* runs that failed (any non-zero status)
                                     with at most one attempt made */
  uint64_t failures_after_retry;  /* ... after at least one retry */
  uint64_t budget_refusals;       /* retries refused: SLUICE_EBUDGET */
  uint64_t breaker_refusals;      /* attempts refused: SLUICE_EOPEN */
  uint64_t deadline_stops;        /* runs ended by the deadline */
  uint64_t attempt_timeouts;      /* attempts ended by attempt_timeout_ms */
  uint64_t cancelled;             /* runs cancelled (or sessions abandoned) */
  uint64_t late_reports;          /* reports that came after their attempt
                                     ended (ignored) */
  double budget_balance;          /* tokens now (0 with the budget off) */
} sluice_retry_stats;

/*
 * Copies the policy's figures into *out (no more than out->size bytes).
 * runs = successes_* + failures_* + in_flight. Counters are read one by
 * one while runs go on, so a snapshot taken under load may be off by the
 * runs that finished during the copy.
 * Errors: SLUICE_EINVAL (p or out NULL, out->size too small).
 */
SLUICE_EXTERN int sluice_retry_stats_get(const sluice_retry *p,
                                         sluice_retry_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_RETRY_H */

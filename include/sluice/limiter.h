/*
 * sluice/limiter.h - per-key rate limits ("is this user allowed right
 * now?") with bounded memory.
 *
 * A limiter (sluice_limiter) keeps one small state per key (any byte
 * string of 1 to SLUICE_LIMITER_MAX_KEY bytes) and answers, for a request
 * of a given cost, whether it may pass now. Three algorithms, chosen per
 * limiter (docs/limiter.md explains how to pick one):
 *
 *  - SLUICE_LIMITER_SLIDING_LOG: exact. For every instant t, the costs that
 *    passed in the half-open window (t - window, t] add up to at most
 *    `limit`, and a request is refused only when passing it would break
 *    that. Keeps the last `limit` timestamps of each key (8 bytes each),
 *    so `limit` is at most SLUICE_LIMITER_MAX_LOG. This is the origin's
 *    RateLimiter(max_calls, time_window).
 *  - SLUICE_LIMITER_SLIDING_WINDOW: the sliding-window counter. O(1) state
 *    (16 bytes) whatever the limit; approximate. The clock is cut into
 *    fixed windows [k*window, (k+1)*window); a request of cost c at elapsed
 *    time e into the current window passes if
 *        prev * (window - e) / window + cur + c <= limit
 *    (computed exactly in integers), where prev and cur are the costs that
 *    passed in the previous and the current fixed window. Guarantees: at
 *    most `limit` pass in any fixed window; at most 2 * limit - 1 pass in
 *    any sliding window of length `window` (a bound that bursts at the
 *    edge of two windows can approach); a request always passes when
 *    prev + cur + c <= limit.
 *  - SLUICE_LIMITER_GCRA: the generic cell rate algorithm, a token bucket
 *    with one 8-byte state per key (its theoretical arrival time). Units
 *    flow in at `limit` per `window` (one every ceil(window / limit) ns,
 *    the emission interval T) into a bucket of `burst` units (default:
 *    `limit`); a request of cost c takes c units. A fresh key can pass
 *    `burst` units at once, then one every T.
 *
 * Every answer carries retry_after_ns, rounded up, never down: retrying
 * the same request at exactly now + retry_after_ns passes (if nothing else
 * consumed the key in between), and one nanosecond earlier it would not.
 *
 * Waiting. sluice_limiter_acquire waits until the cost can pass (first
 * come, first served per key; with a deadline; cancellable), and
 * sluice_limiter_wait is its blocking form. While requests wait on a key,
 * sluice_limiter_check on that key is refused (reason QUEUED): waiters go
 * first, so a stream of checks can never starve them.
 *
 * Memory. A key whose state is back to a fresh key's (every cost it
 * passed has aged out, no block, nobody waiting) is worth nothing and is
 * reclaimed: as new keys are inserted (an incremental sweep of a few slots
 * per insert, and a full sweep of a shard before its table grows), and by
 * sluice_limiter_sweep. Reclaiming such a key loses no accuracy. At most
 * max_keys keys are tracked; a request for a new key beyond that is
 * refused with SLUICE_ELIMIT (FULL_REJECT, the default) or passes without
 * being tracked (FULL_ALLOW, "fail open"). So memory is bounded by
 * max_keys whatever the number of distinct keys seen.
 *
 * Time. The limiter reads sluice_now_ns() (monotonic) or the clock given
 * in its options (tests drive time with it, exactly and instantly). A
 * clock reading earlier than a key's newest recorded time (two threads
 * racing, or a clock set back) is taken as that newest time for the key.
 *
 * Threads: every function may be called from any thread unless it says
 * otherwise. check, peek, check_many, block, unblock, set_limit and
 * stats run in the calling thread on sharded state (64 shards, each a
 * short lock) and never wait for the loop; check and peek do not allocate
 * for a key that is already tracked. Waits complete on the runtime's loop
 * thread, exactly once (see op.h).
 */
#ifndef SLUICE_LIMITER_H
#define SLUICE_LIMITER_H

#include "common.h"
#include "monitor.h" /* sluice_clock_cb */
#include "op.h"
#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sluice_limiter sluice_limiter;

/* The longest key, in bytes (64 KiB). */
#define SLUICE_LIMITER_MAX_KEY 65536
/* The largest limit of a SLIDING_LOG limiter (its per-key log size). */
#define SLUICE_LIMITER_MAX_LOG 65535
/* The most items in one sluice_limiter_check_many call. */
#define SLUICE_LIMITER_MAX_MANY 32

typedef enum sluice_limiter_algorithm {
  SLUICE_LIMITER_SLIDING_LOG = 0,
  SLUICE_LIMITER_SLIDING_WINDOW = 1,
  SLUICE_LIMITER_GCRA = 2
} sluice_limiter_algorithm;

/* What a request for a key that is not tracked does when max_keys are. */
typedef enum sluice_limiter_full {
  SLUICE_LIMITER_FULL_REJECT = 0, /* refused with SLUICE_ELIMIT (default) */
  SLUICE_LIMITER_FULL_ALLOW = 1   /* passes, untracked ("fail open") */
} sluice_limiter_full;

/* Why a request got the answer it got (sluice_limiter_result.reason). */
typedef enum sluice_limiter_reason {
  SLUICE_LIMITER_OK = 0,      /* passed (or would pass, for peek) */
  SLUICE_LIMITER_LIMITED = 1, /* refused: the key's limit */
  SLUICE_LIMITER_BLOCKED = 2, /* refused: the key is blocked */
  SLUICE_LIMITER_QUEUED = 3,  /* refused: requests are waiting on the key */
  SLUICE_LIMITER_FULL = 4     /* a new key while max_keys are tracked:
                                 refused (SLUICE_ELIMIT) or passed
                                 untracked (FULL_ALLOW) */
} sluice_limiter_reason;

/* ---- options -------------------------------------------------------- */

#define SLUICE_LIMITER_OPTIONS_VERSION 1

typedef struct sluice_limiter_options {
  unsigned int version;  /* SLUICE_LIMITER_OPTIONS_VERSION */
  int algorithm;         /* a sluice_limiter_algorithm; default SLIDING_LOG */
  uint64_t limit;        /* cost allowed per window; default 20. SLIDING_LOG:
                            1..SLUICE_LIMITER_MAX_LOG; else 1..2^32-1 */
  uint64_t window_ns;    /* the window; default 60 s. 1000 (1 us)..2^52
                            (about 52 days) */
  uint64_t burst;        /* GCRA: bucket size; 0 (default) means `limit`;
                            at most 2^32-1, and burst * T at most 2^60.
                            Ignored by the other algorithms. */
  uint64_t max_keys;     /* keys tracked at most; default 100000
                            (1..2^30) */
  int on_full;           /* a sluice_limiter_full; default REJECT */
  sluice_clock_cb clock; /* NULL (default): sluice_now_ns. Monotonic ns;
                            must not block (it is read outside the locks,
                            once per call) */
  void *clock_user_data;
  /* Optional: records "<name>.rejected" for each refused check (duration
   * 0, outcome SLUICE_EREJECTED) and "<name>.wait" for each wait (its
   * duration and status). Must outlive the limiter. */
  sluice_monitor *monitor;
  const char *name;      /* series prefix; default "limiter" (1..64 bytes;
                            copied) */
} sluice_limiter_options;

#define SLUICE_LIMITER_OPTIONS_INIT                                          \
  {SLUICE_LIMITER_OPTIONS_VERSION, SLUICE_LIMITER_SLIDING_LOG, 20,          \
   60000000000ull, 0, 100000, SLUICE_LIMITER_FULL_REJECT, NULL, NULL, NULL, \
   NULL}

/*
 * Fills `opts` with the defaults of options version `version`.
 * Errors: SLUICE_EINVAL (opts NULL), SLUICE_EVERSION.
 */
SLUICE_EXTERN int sluice_limiter_options_init(sluice_limiter_options *opts,
                                              unsigned int version);

/* ---- results -------------------------------------------------------- */

typedef struct sluice_limiter_result {
  size_t size;             /* caller sets sizeof(sluice_limiter_result);
                              the library fills no more than that */
  int allowed;             /* 1: the cost passed (peek: would pass) */
  int reason;              /* a sluice_limiter_reason */
  uint64_t limit;          /* the largest cost that can ever pass at once:
                              `limit` (GCRA: `burst`) */
  uint64_t remaining;      /* cost units that could still pass now, after
                              this request (if it passed) */
  uint64_t retry_after_ns; /* refused: the same request passes at now plus
                              this if nothing else consumes the key (rounded
                              up). 0 when allowed, and for FULL. With
                              requests waiting on the key (QUEUED) it is the
                              time until their costs and this one fit,
                              which they may take first. */
  uint64_t reset_after_ns; /* until the key is back to a fresh key's state
                              (0: it is fresh now) */
  size_t index;            /* check_many: the item that decided (refused:
                              the refusing item with the longest
                              retry_after; passed: the one with the fewest
                              remaining); 0 for the single-key calls */
} sluice_limiter_result;

/* ---- life cycle ----------------------------------------------------- */

/*
 * Creates a limiter. `rt` runs the waits of sluice_limiter_acquire and
 * sluice_limiter_wait; it may be NULL if the limiter is only checked (those
 * two then fail with SLUICE_EINVAL). With a runtime, free the limiter
 * before the runtime. `opts` may be NULL for the defaults.
 * Errors: SLUICE_EINVAL (out NULL; an option out of range, named in
 * sluice_error_message), SLUICE_EVERSION, SLUICE_ECLOSED (rt is shutting
 * down), SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_limiter_new(sluice_limiter **out, sluice_runtime *rt,
                                     const sluice_limiter_options *opts);

/*
 * Frees the limiter and every key's state. NULL is a no-op. Waits still
 * pending complete with SLUICE_ECLOSED: on the loop thread before this
 * returns (inside this call if it is made on the loop thread); their
 * callbacks must not use the limiter. No other thread may be using the
 * limiter during or after the call. Call it before the runtime's shutdown
 * begins, or after sluice_runtime_close has returned (the shutdown has then
 * completed every wait with SLUICE_ECLOSED); never during a shutdown that
 * another thread is running. From a thread other than the loop thread it
 * blocks until the loop has run the teardown.
 */
SLUICE_EXTERN void sluice_limiter_free(sluice_limiter *l);

/* ---- checking (calling thread, never waits) ------------------------- */

/*
 * Asks for `cost` units of `key` now, and takes them if they are there.
 * Returns 0 if the request passed, SLUICE_EREJECTED if it did not (limit,
 * block, or waiters on the key: see result->reason; no error message is
 * recorded for a refusal, which is an answer, not a mistake). `result`
 * may be NULL; otherwise it is filled in both cases (and for ELIMIT).
 * Errors (nothing consumed): SLUICE_EINVAL (l, key NULL; len 0 or above
 * SLUICE_LIMITER_MAX_KEY; cost 0 or above the limit (the burst for GCRA),
 * which could never pass; result->size too small for its size field),
 * SLUICE_ELIMIT (a new key while max_keys keys are tracked, FULL_REJECT),
 * SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_limiter_check(sluice_limiter *l, const void *key, size_t len,
                                       uint64_t cost, sluice_limiter_result *result);

/*
 * What sluice_limiter_check would answer now, without consuming anything
 * or creating the key. Returns 0 (would pass) or SLUICE_EREJECTED.
 * Errors: as sluice_limiter_check, except SLUICE_ELIMIT and SLUICE_ENOMEM
 * (a key that is not tracked is answered as a fresh key).
 */
SLUICE_EXTERN int sluice_limiter_peek(sluice_limiter *l, const void *key, size_t len,
                                      uint64_t cost, sluice_limiter_result *result);

/* One item of sluice_limiter_check_many. */
typedef struct sluice_limiter_item {
  sluice_limiter *limiter;
  const void *key; /* 1..SLUICE_LIMITER_MAX_KEY bytes */
  size_t len;
  uint64_t cost;   /* 1..the limiter's limit (burst for GCRA) */
} sluice_limiter_item;

/*
 * All or nothing across several limiters (say the user's limit, the
 * group's and a global one): every item's cost is taken, or none is.
 * Returns 0 if all passed, SLUICE_EREJECTED if any refused (nothing is
 * consumed then). An item given twice (same limiter and key) counts with
 * the sum of its costs. `result` (may be NULL) holds the combined answer:
 * allowed if all passed; retry_after_ns the largest of the items' (so a
 * retry at now + retry_after_ns passes every item, if nothing else
 * consumes them); remaining the smallest; reset_after_ns the largest;
 * index and reason from the deciding item (see sluice_limiter_result).
 * The shards involved are locked in one global order (by address), so
 * concurrent check_many calls listing the same limiters in any order
 * never deadlock.
 * Errors (nothing consumed): SLUICE_EINVAL (items NULL, n 0 or above
 * SLUICE_LIMITER_MAX_MANY, an item invalid as for sluice_limiter_check,
 * with its index in the message, or an item's summed cost above its
 * limit), SLUICE_ELIMIT, SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_limiter_check_many(const sluice_limiter_item *items, size_t n,
                                            sluice_limiter_result *result);

/* ---- waiting -------------------------------------------------------- */

/*
 * Waits until `cost` units of `key` can be taken, takes them, and
 * completes with 0. Waiters on one key are served first come, first
 * served: a later request never passes an earlier one, whatever their
 * costs. The request is woken by a timer at the time the key's state says
 * the head of the queue can pass (and when sluice_limiter_set_limit,
 * sluice_limiter_unblock or sluice_limiter_wake is called).
 * `timeout_ms` < 0: no deadline; 0: only what can pass when the request
 * reaches the loop. The deadline is measured on the runtime's clock (real
 * time), even when the limiter has its own clock. The key bytes are
 * copied. A key that is not tracked is added at once (with FULL_ALLOW at
 * the cap, the request passes untracked as soon as it reaches the loop).
 * cb runs exactly once on the loop thread with 0, SLUICE_ETIMEDOUT,
 * SLUICE_ECANCELED, SLUICE_ECLOSED (runtime shut down or limiter freed) or
 * SLUICE_EINVAL (the limit was lowered below `cost`, so it could never
 * pass); then free_user_data(user_data) if not NULL.
 * A cancel that loses the race with a grant delivers 0: the units were
 * taken. `op_out` may be NULL; else *op_out receives a handle to cancel or
 * wait (release it with sluice_op_free).
 * Errors (nothing taken, cb never runs): SLUICE_EINVAL (l, key or cb NULL;
 * len 0 or above SLUICE_LIMITER_MAX_KEY; cost 0 or above the limit; no
 * runtime; timeout_ms above 2^40), SLUICE_ELIMIT (a new key while max_keys
 * keys are tracked, FULL_REJECT), SLUICE_ECLOSED (the runtime is shutting
 * down), SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_limiter_acquire(sluice_limiter *l, const void *key, size_t len,
                                         uint64_t cost, int64_t timeout_ms,
                                         sluice_status_cb cb, void *user_data,
                                         sluice_free_cb free_user_data, sluice_op **op_out);

/*
 * Blocks the calling thread until sluice_limiter_acquire of the same
 * arguments completes, and returns its status: 0 (the units were taken),
 * SLUICE_ETIMEDOUT, SLUICE_ECLOSED or SLUICE_EINVAL (limit lowered below
 * cost), with a message.
 * Errors: as sluice_limiter_acquire, and SLUICE_EDEADLK when called on the
 * loop thread (always, even if the cost could pass at once).
 */
SLUICE_EXTERN int sluice_limiter_wait(sluice_limiter *l, const void *key, size_t len,
                                      uint64_t cost, int64_t timeout_ms);

/*
 * Makes every waiting request re-examine its key now, on the loop thread
 * (this call returns at once). The limiter's timers do this by themselves
 * on the runtime's clock; a program that drives the limiter's clock itself
 * (a test, a simulation) calls this after moving it.
 * Errors: SLUICE_EINVAL (l NULL), SLUICE_ECLOSED (the runtime is shutting
 * down), SLUICE_ENOMEM. Without a runtime it does nothing and returns 0.
 */
SLUICE_EXTERN int sluice_limiter_wake(sluice_limiter *l);

/* ---- control -------------------------------------------------------- */

/*
 * Changes the limit, window and burst (0: burst = limit), ranges as in
 * the options; the algorithm stays. Each key's state carries over: the
 * sliding log keeps its timestamps (exact under the new limit; a log
 * grows to a raised limit at the key's next check, which then allocates);
 * GCRA keeps each key's theoretical arrival time (its debt in time); the
 * sliding-window counter keeps its counts, approximately realigned for a
 * window or two if the window length changed. Waiting requests are
 * re-examined; those whose cost is now above the limit complete with
 * SLUICE_EINVAL. Shards switch one after another, so a concurrent check
 * may see the old limit for a moment.
 * Errors: SLUICE_EINVAL (l NULL, a value out of range), SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_limiter_set_limit(sluice_limiter *l, uint64_t limit,
                                           uint64_t window_ns, uint64_t burst);

/*
 * Blocks `key` for `duration_ns` from now (abuse): every request for it is
 * refused (reason BLOCKED, retry_after_ns the time left) and waiters wait
 * until the block ends. Replaces an earlier block of the key. The key is
 * tracked while blocked (it counts towards max_keys).
 * Errors: SLUICE_EINVAL (l or key NULL, len 0 or above
 * SLUICE_LIMITER_MAX_KEY, duration_ns 0 or above 2^62), SLUICE_ELIMIT
 * (a new key while max_keys keys are tracked, whatever on_full says),
 * SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_limiter_block(sluice_limiter *l, const void *key, size_t len,
                                       uint64_t duration_ns);

/*
 * Lifts a block of `key` (its rate state is untouched) and wakes its
 * waiters. Returns 1 if the key was blocked, 0 if not.
 * Errors: SLUICE_EINVAL (l or key NULL, len 0 or above
 * SLUICE_LIMITER_MAX_KEY).
 */
SLUICE_EXTERN int sluice_limiter_unblock(sluice_limiter *l, const void *key, size_t len);

/*
 * Reclaims every key whose state is a fresh key's now (what the
 * incremental sweep does as keys are inserted), shard by shard, and
 * shrinks tables that became mostly empty. Returns how many keys were
 * reclaimed. Takes each shard's lock in turn for the length of its sweep.
 * Errors: SLUICE_EINVAL (l NULL).
 */
SLUICE_EXTERN int64_t sluice_limiter_sweep(sluice_limiter *l);

/* ---- figures -------------------------------------------------------- */

typedef struct sluice_limiter_stats {
  size_t size;              /* caller sets sizeof(sluice_limiter_stats) */
  int algorithm;            /* a sluice_limiter_algorithm */
  uint64_t limit;           /* the current limit, window and burst */
  uint64_t window_ns;
  uint64_t burst;           /* GCRA's (0 for the other algorithms) */
  uint64_t keys;            /* keys tracked now */
  uint64_t peak_keys;       /* the most at once since creation */
  uint64_t allowed;         /* requests that passed (check, check_many
                               per item, and granted waits) */
  uint64_t rejected;        /* checks refused (SLUICE_EREJECTED) */
  uint64_t full_refused;    /* new keys refused at max_keys (ELIMIT) */
  uint64_t full_allowed;    /* new keys passed untracked (FULL_ALLOW) */
  uint64_t waits;           /* waits started */
  uint64_t waiting;         /* waits pending now */
  uint64_t wait_timeouts;   /* waits ended by their deadline */
  uint64_t wait_cancels;    /* waits ended by a cancel */
  uint64_t reclaimed;       /* keys reclaimed (fresh again) */
  uint64_t blocks;          /* sluice_limiter_block calls that blocked */
  uint64_t bytes;           /* bytes the limiter holds for keys: entries,
                               tables, blocks and wait queues */
} sluice_limiter_stats;

/*
 * Copies the limiter's figures (no more than out->size bytes). Counts are
 * gathered shard by shard: each is exact, but under concurrent use they
 * are not one instant's snapshot.
 * Errors: SLUICE_EINVAL (l or out NULL, out->size too small).
 */
SLUICE_EXTERN int sluice_limiter_stats_get(sluice_limiter *l, sluice_limiter_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_LIMITER_H */

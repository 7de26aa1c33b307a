/*
 * sluice/locks.h - keyed locks: mutual exclusion by byte-string key ("only
 * one handler touches this user's state at a time"), with bounded memory.
 *
 * A lock manager (sluice_locks) hands out grants on keys. A key is any
 * byte string of 1 to SLUICE_LOCKS_MAX_KEY bytes. A grant is exclusive (one
 * holder) or shared (any number of shared holders, no exclusive one).
 * Waiters on one key are served first come, first served: a queued
 * exclusive waiter blocks shared requests that arrive after it, and a
 * released key passes straight to the head of its queue (nobody can slip in
 * between).
 *
 * Three ways to ask:
 *  - sluice_locks_try: now or never, in the calling thread, never waits.
 *  - sluice_locks_acquire: waits with a deadline; the callback runs on the
 *    loop thread with the guard; cancellable through a sluice_op.
 *  - sluice_locks_lock: blocks the calling thread (not the loop thread).
 * Each has a _many form taking several keys (say the user and the group)
 * that grants all of them or none. Keys are taken in one fixed order
 * (sorted by their bytes, duplicates merged), so two callers asking for the
 * same keys in opposite orders never deadlock each other.
 *
 *     sluice_lock_guard *g;
 *     if (sluice_locks_lock(locks, "user:42", 7, SLUICE_LOCK_EXCLUSIVE,
 *                           5000, &g) == 0) {
 *       ... touch user 42's state ...
 *       sluice_locks_release(locks, g);
 *     }
 *
 * Guards. A grant is a guard: an opaque handle VALUE (it is not memory the
 * caller frees or reads; a binding may store it as an integer). Releasing
 * it releases exactly that grant. A guard that was already released, or
 * that another manager gave out, is refused with SLUICE_ESTATE and changes
 * nothing: a double release is detected, never a corruption. Handles are
 * not reused for 2^32 grants of the same internal slot. A guard is not tied
 * to a thread: any thread may release it.
 *
 * Fencing tokens. Every grant carries a 64-bit token. A grant's token is
 * larger than the token of every earlier grant of the same key that was
 * released before it was granted, so a holder can prove to a database
 * (compare-and-set on the stored token) that nobody newer has held the key.
 * Tokens of different keys are not ordered with respect to each other. A
 * grant of several keys has one token, valid for each of its keys.
 *
 * Memory. A key's entry exists only while the key is held or waited on
 * ("live"). When the last holder leaves, the entry goes to a cache of idle
 * entries (at most max_locks of them, least recently used dropped first)
 * so a busy key or a new key reuses it without allocating; the idle timer
 * (every cleanup_interval_ms) frees entries idle for a whole interval. A
 * live entry is never evicted. At most max_keys keys are live at once:
 * beyond that an acquire that needs a new key fails with SLUICE_ELIMIT or
 * waits for room, as the options say.
 *
 * Threads: every function may be called from any thread unless it says
 * otherwise. Non-waiting calls (try, release, token, stats) run in the
 * calling thread on sharded state and never wait for the loop. Waiting
 * calls complete on the runtime's loop thread, exactly once (see op.h).
 */
#ifndef SLUICE_LOCKS_H
#define SLUICE_LOCKS_H

#include "common.h"
#include "monitor.h"
#include "op.h"
#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sluice_locks sluice_locks;

/* A grant (see "Guards" above). Never NULL when granted. */
typedef struct sluice_lock_guard sluice_lock_guard;

/* The longest key, in bytes (64 KiB). */
#define SLUICE_LOCKS_MAX_KEY 65536
/* The most keys in one _many call. */
#define SLUICE_LOCKS_MAX_MANY 256

typedef enum sluice_lock_mode {
  SLUICE_LOCK_EXCLUSIVE = 0, /* one holder */
  SLUICE_LOCK_SHARED = 1     /* many shared holders, no exclusive one */
} sluice_lock_mode;

/* What an acquire that needs a new live key does when max_keys are live. */
typedef enum sluice_locks_full {
  SLUICE_LOCKS_FULL_REJECT = 0, /* fail with SLUICE_ELIMIT (default) */
  SLUICE_LOCKS_FULL_WAIT = 1    /* wait for room, first come first served,
                                   within the acquire's deadline */
} sluice_locks_full;

/* One key of a _many call. */
typedef struct sluice_lock_key {
  const void *key; /* 1..SLUICE_LOCKS_MAX_KEY bytes, any bytes */
  size_t len;
  int mode;        /* a sluice_lock_mode; a key given twice is taken once,
                      exclusive if either asks for exclusive */
} sluice_lock_key;

/*
 * Completion of sluice_locks_acquire and sluice_locks_acquire_many, on the
 * loop thread. status 0: `guard` is the caller's until released.
 * Otherwise guard is NULL and status is SLUICE_ETIMEDOUT, SLUICE_ECANCELED,
 * SLUICE_ECLOSED (runtime shut down or manager freed), SLUICE_ELIMIT
 * (max_keys live, FULL_REJECT) or SLUICE_ENOMEM.
 */
typedef void (*sluice_lock_cb)(void *user_data, int status, sluice_lock_guard *guard);

/*
 * Told of a grant held longer than hold_limit_ms, once per grant, on the
 * loop thread: its key (valid during the call), its token and how long it
 * had been held (never less than hold_limit_ms). For a grant of several
 * keys, each key is reported with its own part's token (at most the
 * guard's). It may release the guard or call into the manager, but not
 * free it.
 */
typedef void (*sluice_locks_held_cb)(void *user_data, const void *key, size_t len,
                                     uint64_t token, uint64_t held_ns);

/* ---- options -------------------------------------------------------- */

#define SLUICE_LOCKS_OPTIONS_VERSION 1

typedef struct sluice_locks_options {
  unsigned int version;         /* SLUICE_LOCKS_OPTIONS_VERSION */
  uint32_t max_locks;           /* idle entries kept for reuse; default 2000
                                   (0..16777216; 0 keeps none) */
  uint32_t max_keys;            /* live keys at most; default 100000
                                   (1..1073741824) */
  int on_full;                  /* a sluice_locks_full; default REJECT */
  uint32_t cleanup_interval_ms; /* the idle timer frees cached entries idle
                                   for at least this long (and at most twice
                                   this); default 300000; 0: never (the cache
                                   stays bounded by max_locks anyway) */
  uint32_t hold_limit_ms;       /* report grants held longer; default 0: off
                                   (at most 2^31) */
  sluice_locks_held_cb on_held_too_long; /* optional (counted either way) */
  void *held_user_data;
  /* Optional: records "locks.wait" (each acquire that had to wait, its wait
   * and outcome). Must outlive the manager. */
  sluice_monitor *monitor;
} sluice_locks_options;

#define SLUICE_LOCKS_OPTIONS_INIT                                             \
  {SLUICE_LOCKS_OPTIONS_VERSION, 2000, 100000, SLUICE_LOCKS_FULL_REJECT,     \
   300000, 0, NULL, NULL, NULL}

/*
 * Fills `opts` with the defaults of options version `version`.
 * Errors: SLUICE_EINVAL (opts NULL), SLUICE_EVERSION.
 */
SLUICE_EXTERN int sluice_locks_options_init(sluice_locks_options *opts,
                                            unsigned int version);

/* ---- life cycle ----------------------------------------------------- */

/*
 * Creates a lock manager on `rt` (its loop runs the waits, the idle timer
 * and the held-too-long check). `opts` may be NULL for the defaults. When
 * called from a thread other than the loop thread, waits for the loop to
 * start the manager's timers.
 * Errors: SLUICE_EINVAL (out or rt NULL; an option out of range, named in
 * sluice_error_message: max_keys 0 or above 2^30, max_locks above 2^24,
 * on_full unknown, hold_limit_ms above 2^31), SLUICE_EVERSION, SLUICE_ECLOSED (rt is
 * shutting down), SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_locks_new(sluice_locks **out, sluice_runtime *rt,
                                   const sluice_locks_options *opts);

/*
 * Frees the manager. NULL is a no-op. Waits still pending complete with
 * SLUICE_ECLOSED (their callbacks run on the loop thread before this
 * returns, or inside this call if it is made on the loop thread; they must
 * not use the manager). Guards still held become meaningless: they are
 * released with the manager and must not be passed to it again (it is
 * gone). No other thread may be using the manager during or after the
 * call. Must be called before the runtime is freed; after
 * sluice_runtime_close it is still allowed (everything pending was already
 * completed by the shutdown).
 * From a thread other than the loop thread this blocks until the loop has
 * run the teardown.
 */
SLUICE_EXTERN void sluice_locks_free(sluice_locks *locks);

/* ---- acquiring ------------------------------------------------------ */

/*
 * Takes `key` in `mode` now if that is possible without waiting: the key
 * is free, or held shared with nobody queued and mode is SHARED. Runs in
 * the calling thread; in steady state it does not allocate: the key's
 * entry is cached, or a cached idle entry takes the new key (every entry
 * fits keys up to 56 bytes).
 * On 0, *guard is the caller's until sluice_locks_release.
 * Errors (nothing taken, *guard set to NULL): SLUICE_EINVAL (NULL locks,
 * key or guard, len 0 or above SLUICE_LOCKS_MAX_KEY, unknown mode),
 * SLUICE_EAGAIN (held or waited on in a way that excludes this request),
 * SLUICE_ELIMIT (the key is not live and max_keys keys are, or, with
 * FULL_WAIT, others are already waiting for room), SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_locks_try(sluice_locks *locks, const void *key, size_t len,
                                   int mode, sluice_lock_guard **guard);

/*
 * All of `keys` now, or none: as sluice_locks_try for each key in sorted
 * order; if one fails, those taken are released and its error returned.
 * Errors: as sluice_locks_try, plus SLUICE_EINVAL (keys NULL, n 0 or above
 * SLUICE_LOCKS_MAX_MANY, any key invalid, with its index in the message).
 */
SLUICE_EXTERN int sluice_locks_try_many(sluice_locks *locks, const sluice_lock_key *keys,
                                        size_t n, sluice_lock_guard **guard);

/*
 * Waits for `key` in `mode`, first come first served, until `timeout_ms`
 * has passed (timeout_ms < 0: no deadline; 0: only what is free when the
 * request reaches the loop). The key bytes are copied. cb runs exactly once
 * on the loop thread (see sluice_lock_cb), then free_user_data(user_data).
 * `op_out` may be NULL; else *op_out receives a handle to cancel or wait
 * (release it with sluice_op_free). A cancel or deadline that loses the
 * race with a grant already decided still delivers success: the caller
 * owns that guard and must release it.
 * Errors (nothing taken): SLUICE_EINVAL (NULL locks, key or cb, len 0 or
 * above SLUICE_LOCKS_MAX_KEY, unknown mode, timeout_ms above 2^40),
 * SLUICE_ECLOSED (the runtime is shutting down), SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_locks_acquire(sluice_locks *locks, const void *key, size_t len,
                                       int mode, int64_t timeout_ms, sluice_lock_cb cb,
                                       void *user_data, sluice_free_cb free_user_data,
                                       sluice_op **op_out);

/*
 * Waits for all of `keys` (copied), taking them one by one in sorted order
 * and holding each until all are granted; delivers one guard for all of
 * them. On a deadline, a cancel or an error, the keys taken so far are
 * released: the caller never holds some of them. With FULL_WAIT, the room
 * for every key is reserved before the first is taken, so a request never
 * waits for room while holding one of its keys; a request for more keys
 * than max_keys fails with SLUICE_ELIMIT.
 * Errors (nothing taken): as sluice_locks_acquire and sluice_locks_try_many.
 */
SLUICE_EXTERN int sluice_locks_acquire_many(sluice_locks *locks, const sluice_lock_key *keys,
                                            size_t n, int64_t timeout_ms, sluice_lock_cb cb,
                                            void *user_data, sluice_free_cb free_user_data,
                                            sluice_op **op_out);

/*
 * Blocks the calling thread for `key` in `mode` up to `timeout_ms`
 * (< 0: no limit), queuing first come first served like
 * sluice_locks_acquire. On 0, *guard is the caller's.
 * Errors (*guard set to NULL): as sluice_locks_acquire's status and errors,
 * and SLUICE_EDEADLK when called on the loop thread (always, even if the
 * key is free, so the mistake shows at once and not only under load).
 */
SLUICE_EXTERN int sluice_locks_lock(sluice_locks *locks, const void *key, size_t len,
                                    int mode, int64_t timeout_ms, sluice_lock_guard **guard);

/* The blocking form of sluice_locks_acquire_many. Errors: as sluice_locks_lock. */
SLUICE_EXTERN int sluice_locks_lock_many(sluice_locks *locks, const sluice_lock_key *keys,
                                         size_t n, int64_t timeout_ms,
                                         sluice_lock_guard **guard);

/* ---- holding -------------------------------------------------------- */

/*
 * Releases the grant `guard` (every key of it, for a _many grant). The key
 * passes to the head of its queue, if any (their callbacks run on the loop
 * thread). Never blocks on the loop.
 * Errors: SLUICE_EINVAL (locks or guard NULL), SLUICE_ESTATE (the guard was
 * already released, or is not one of this manager's: nothing changes).
 */
SLUICE_EXTERN int sluice_locks_release(sluice_locks *locks, sluice_lock_guard *guard);

/*
 * The fencing token of a grant still held.
 * Errors: SLUICE_EINVAL (NULL argument), SLUICE_ESTATE (released or
 * foreign guard).
 */
SLUICE_EXTERN int sluice_locks_token(sluice_locks *locks, const sluice_lock_guard *guard,
                                     uint64_t *token);

/* ---- memory and figures --------------------------------------------- */

/*
 * Frees every cached idle entry now (what the idle timer does to entries
 * idle for a whole interval). Live keys are untouched.
 * Errors: SLUICE_EINVAL (locks NULL).
 */
SLUICE_EXTERN int sluice_locks_trim(sluice_locks *locks);

typedef struct sluice_locks_stats {
  size_t size;                /* caller sets sizeof(sluice_locks_stats) */
  uint64_t live_keys;         /* keys held or waited on now */
  uint64_t peak_live_keys;    /* the most at once since creation */
  uint64_t cached_entries;    /* idle entries kept for reuse (<= max_locks) */
  uint64_t held;              /* grants held now (a key held by 3 shared
                                 holders counts 3; a _many grant counts
                                 once per key) */
  uint64_t waiters;           /* requests queued on a held key now */
  uint64_t room_waiters;      /* requests waiting for a live-key slot now */
  uint64_t acquisitions;      /* grants made (per key) */
  uint64_t contended;         /* grants made after waiting (per request) */
  uint64_t timeouts;          /* requests ended by their deadline */
  uint64_t cancellations;     /* requests ended by a cancel */
  uint64_t wait_ns;           /* total time requests spent waiting, any
                                 outcome */
  uint64_t busy;              /* try calls refused with SLUICE_EAGAIN */
  uint64_t limit_refusals;    /* requests refused with SLUICE_ELIMIT */
  uint64_t held_too_long;     /* grants reported as held too long */
  uint64_t bad_releases;      /* releases refused with SLUICE_ESTATE */
  uint64_t trimmed;           /* cached entries freed by the idle timer or
                                 sluice_locks_trim */
} sluice_locks_stats;

/*
 * Copies the manager's figures (no more than out->size bytes). Counts are
 * gathered shard by shard, so under concurrent use they are each exact but
 * not one instant's snapshot.
 * Errors: SLUICE_EINVAL (locks or out NULL, out->size too small).
 */
SLUICE_EXTERN int sluice_locks_stats_get(sluice_locks *locks, sluice_locks_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_LOCKS_H */

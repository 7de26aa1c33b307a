/*
 * C side of limiter.go (see shim.h for why these wrappers exist).
 */
#ifndef SLUICE_GO_LIMITER_SHIM_H
#define SLUICE_GO_LIMITER_SHIM_H

#include "shim.h"

/* A refusal is an answer, not a failure: the library records no message
 * for it, so none is copied (it would be an older failure's). */
static inline void sg_answer(sg_result *r, int rc) {
  if (rc == SLUICE_EREJECTED) {
    r->rc = rc;
    r->msg.ptr = NULL;
    r->msg.size = 0;
    return;
  }
  sg_done(r, rc);
}

/* clock: a ManualClock's word, or NULL for the library's clock. name may
 * be NULL for the default. */
static inline void sg_limiter_new(sg_result *r, sluice_limiter **out, sluice_runtime *rt,
                                  int algorithm, uint64_t limit, uint64_t window_ns,
                                  uint64_t burst, uint64_t max_keys, int on_full,
                                  uint64_t *clock, sluice_monitor *monitor, const char *name) {
  sluice_limiter_options o;
  int rc = sluice_limiter_options_init(&o, SLUICE_LIMITER_OPTIONS_VERSION);
  if (rc == 0) {
    o.algorithm = algorithm;
    if (limit) o.limit = limit;
    if (window_ns) o.window_ns = window_ns;
    o.burst = burst;
    if (max_keys) o.max_keys = max_keys;
    o.on_full = on_full;
    if (clock) {
      o.clock = sg_manual_clock;
      o.clock_user_data = clock;
    }
    o.monitor = monitor;
    if (name) o.name = name;
    rc = sluice_limiter_new(out, rt, &o);
  }
  sg_done(r, rc);
}

static inline void sg_limiter_check(sg_result *r, sluice_limiter *l, const void *key, size_t len,
                                    uint64_t cost, int peek, sluice_limiter_result *res) {
  res->size = sizeof *res;
  sg_answer(r, peek ? sluice_limiter_peek(l, key, len, cost, res)
                    : sluice_limiter_check(l, key, len, cost, res));
}

/*
 * The no-wait path of a wait: take the cost now if a peek says it would
 * pass (the peek also says no when others wait on the key, so this never
 * jumps their queue). *passed is 1 if taken. A refusal by the check after
 * a positive peek (another thread took the units in between) is counted
 * by the library as a refused check; the caller then waits.
 */
static inline void sg_limiter_take_now(sg_result *r, sluice_limiter *l, const void *key,
                                       size_t len, uint64_t cost, int *passed) {
  sluice_limiter_result res;
  res.size = sizeof res;
  *passed = 0;
  int rc = sluice_limiter_peek(l, key, len, cost, &res);
  if (rc == 0) {
    rc = sluice_limiter_check(l, key, len, cost, &res);
    if (rc == 0) *passed = 1;
  }
  sg_done(r, rc == SLUICE_EREJECTED ? 0 : rc);
}

/* Items come from Go as parallel arrays (keys back to back in bytes). */
static inline void sg_limiter_check_many(sg_result *r, sluice_limiter *const *limiters,
                                         const char *bytes, const size_t *lens,
                                         const uint64_t *costs, size_t n,
                                         sluice_limiter_result *res) {
  sluice_limiter_item items[SLUICE_LIMITER_MAX_MANY];
  size_t off = 0;
  for (size_t i = 0; i < n && i < SLUICE_LIMITER_MAX_MANY; i++) {
    items[i].limiter = limiters[i];
    items[i].key = bytes ? bytes + off : NULL;
    items[i].len = lens[i];
    items[i].cost = costs[i];
    off += lens[i];
  }
  res->size = sizeof *res;
  sg_answer(r, sluice_limiter_check_many(items, n, res));
}

static inline void sg_limiter_acquire(sg_result *r, sluice_limiter *l, const void *key,
                                      size_t len, uint64_t cost, int64_t timeout_ms,
                                      uintptr_t handle, sluice_op **op) {
  sg_done(r, sluice_limiter_acquire(l, key, len, cost, timeout_ms, sg_complete, (void *)handle,
                                    sg_release, op));
}

static inline void sg_limiter_wake(sg_result *r, sluice_limiter *l) {
  sg_done(r, sluice_limiter_wake(l));
}

static inline void sg_limiter_set_limit(sg_result *r, sluice_limiter *l, uint64_t limit,
                                        uint64_t window_ns, uint64_t burst) {
  sg_done(r, sluice_limiter_set_limit(l, limit, window_ns, burst));
}

static inline void sg_limiter_block(sg_result *r, sluice_limiter *l, const void *key, size_t len,
                                    uint64_t duration_ns) {
  sg_done(r, sluice_limiter_block(l, key, len, duration_ns));
}

/* r->rc is 1 if the key was blocked, 0 if not, or an error. */
static inline void sg_limiter_unblock(sg_result *r, sluice_limiter *l, const void *key,
                                      size_t len) {
  sg_done(r, sluice_limiter_unblock(l, key, len));
}

static inline int64_t sg_limiter_sweep(sg_result *r, sluice_limiter *l) {
  int64_t n = sluice_limiter_sweep(l);
  sg_done(r, n < 0 ? (int)n : 0);
  return n;
}

static inline void sg_limiter_stats(sg_result *r, sluice_limiter *l, sluice_limiter_stats *out) {
  out->size = sizeof *out;
  sg_done(r, sluice_limiter_stats_get(l, out));
}

#endif /* SLUICE_GO_LIMITER_SHIM_H */

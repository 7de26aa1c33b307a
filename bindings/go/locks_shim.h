/*
 * C side of locks.go (see shim.h for why these wrappers exist).
 *
 * A guard is a handle value, never memory: it crosses to Go as a uint64_t
 * so Go never holds it in a pointer-typed variable the garbage collector
 * would look at.
 */
#ifndef SLUICE_GO_LOCKS_SHIM_H
#define SLUICE_GO_LOCKS_SHIM_H

#include "shim.h"

/* Exported from callbacks.go. */
extern void sluiceGoCompleteValue(uintptr_t handle, int status, uint64_t value);
extern void sluiceGoLockHeld(uintptr_t handle, void *key, size_t len, uint64_t token,
                             uint64_t held_ns);

static inline void sg_lock_granted(void *user_data, int status, sluice_lock_guard *guard) {
  sluiceGoCompleteValue((uintptr_t)user_data, status, (uint64_t)(uintptr_t)guard);
}

static inline void sg_lock_held(void *user_data, const void *key, size_t len, uint64_t token,
                                uint64_t held_ns) {
  sluiceGoLockHeld((uintptr_t)user_data, (void *)key, len, token, held_ns);
}

static inline sluice_lock_guard *sg_guard(uint64_t g) { return (sluice_lock_guard *)(uintptr_t)g; }

/* held: the handle of the Go report function, or 0 for none. */
static inline void sg_locks_new(sg_result *r, sluice_locks **out, sluice_runtime *rt,
                                uint32_t max_locks, uint32_t max_keys, int on_full,
                                uint32_t cleanup_ms, uint32_t hold_limit_ms, uintptr_t held,
                                sluice_monitor *monitor) {
  sluice_locks_options o;
  int rc = sluice_locks_options_init(&o, SLUICE_LOCKS_OPTIONS_VERSION);
  if (rc == 0) {
    o.max_locks = max_locks;
    o.max_keys = max_keys;
    o.on_full = on_full;
    o.cleanup_interval_ms = cleanup_ms;
    o.hold_limit_ms = hold_limit_ms;
    if (held) {
      o.on_held_too_long = sg_lock_held;
      o.held_user_data = (void *)held;
    }
    o.monitor = monitor;
    rc = sluice_locks_new(out, rt, &o);
  }
  sg_done(r, rc);
}

/* The library's defaults, for the Go options' zero values. */
static inline void sg_locks_defaults(uint32_t *max_locks, uint32_t *max_keys,
                                     uint32_t *cleanup_ms) {
  sluice_locks_options o;
  if (sluice_locks_options_init(&o, SLUICE_LOCKS_OPTIONS_VERSION) != 0) return;
  *max_locks = o.max_locks;
  *max_keys = o.max_keys;
  *cleanup_ms = o.cleanup_interval_ms;
}

/* The token is read in the same call, so a grant costs one cgo call. */
static inline void sg_locks_try(sg_result *r, sluice_locks *l, const void *key, size_t len,
                                int mode, uint64_t *guard, uint64_t *token) {
  sluice_lock_guard *g = NULL;
  int rc = sluice_locks_try(l, key, len, mode, &g);
  if (rc == 0) rc = sluice_locks_token(l, g, token);
  *guard = (uint64_t)(uintptr_t)g;
  sg_done(r, rc);
}

/*
 * Several keys come from Go as their bytes back to back (bytes), their
 * lengths and their modes, which need no Go pointers; the key array is
 * built here. More than SLUICE_LOCKS_MAX_MANY keys is refused by the
 * library with its message, so the array is only filled up to that.
 */
static inline size_t sg_lock_keys(sluice_lock_key *keys, const char *bytes, const size_t *lens,
                                  const int *modes, size_t n) {
  size_t off = 0;
  for (size_t i = 0; i < n && i < SLUICE_LOCKS_MAX_MANY; i++) {
    keys[i].key = bytes ? bytes + off : NULL;
    keys[i].len = lens[i];
    keys[i].mode = modes[i];
    off += lens[i];
  }
  return n;
}

static inline void sg_locks_try_many(sg_result *r, sluice_locks *l, const char *bytes,
                                     const size_t *lens, const int *modes, size_t n,
                                     uint64_t *guard, uint64_t *token) {
  sluice_lock_key keys[SLUICE_LOCKS_MAX_MANY];
  sluice_lock_guard *g = NULL;
  int rc = sluice_locks_try_many(l, keys, sg_lock_keys(keys, bytes, lens, modes, n), &g);
  if (rc == 0) rc = sluice_locks_token(l, g, token);
  *guard = (uint64_t)(uintptr_t)g;
  sg_done(r, rc);
}

static inline void sg_locks_acquire(sg_result *r, sluice_locks *l, const void *key, size_t len,
                                    int mode, int64_t timeout_ms, uintptr_t handle,
                                    sluice_op **op) {
  sg_done(r, sluice_locks_acquire(l, key, len, mode, timeout_ms, sg_lock_granted,
                                  (void *)handle, sg_release, op));
}

static inline void sg_locks_acquire_many(sg_result *r, sluice_locks *l, const char *bytes,
                                         const size_t *lens, const int *modes, size_t n,
                                         int64_t timeout_ms, uintptr_t handle, sluice_op **op) {
  sluice_lock_key keys[SLUICE_LOCKS_MAX_MANY];
  sg_done(r, sluice_locks_acquire_many(l, keys, sg_lock_keys(keys, bytes, lens, modes, n),
                                       timeout_ms, sg_lock_granted, (void *)handle, sg_release,
                                       op));
}

static inline void sg_locks_token(sg_result *r, sluice_locks *l, uint64_t guard,
                                  uint64_t *token) {
  sg_done(r, sluice_locks_token(l, sg_guard(guard), token));
}

static inline void sg_locks_release(sg_result *r, sluice_locks *l, uint64_t guard) {
  sg_done(r, sluice_locks_release(l, sg_guard(guard)));
}

static inline void sg_locks_trim(sg_result *r, sluice_locks *l) {
  sg_done(r, sluice_locks_trim(l));
}

static inline void sg_locks_stats(sg_result *r, sluice_locks *l, sluice_locks_stats *out) {
  out->size = sizeof *out;
  sg_done(r, sluice_locks_stats_get(l, out));
}

#endif /* SLUICE_GO_LOCKS_SHIM_H */

// extern "C" entry points of sluice/locks.h: argument checks, then Locks.
#include <cstdio>
#include <cstring>
#include <vector>

#include "common/error.h"
#include "locks/locks.h"

using sluice::fail;
using sluice::guarded;
using sluice::locks::KeyRef;
using sluice::locks::LockOp;
using sluice::locks::Locks;
using sluice::locks::unwrap;
using sluice::locks::wrap;

namespace {

// 2^40 ms is about 35 years: anything above is a units mistake.
constexpr int64_t kMaxTimeoutMs = int64_t{1} << 40;

int bad_key(const char *fn, const void *key, size_t len, int mode, size_t index, bool many) {
  char where[32] = "";
  if (many) std::snprintf(where, sizeof where, " (keys[%zu])", index);
  if (!key) return fail(SLUICE_EINVAL, "%s: key is NULL%s", fn, where);
  if (len == 0) return fail(SLUICE_EINVAL, "%s: key is empty%s", fn, where);
  if (len > SLUICE_LOCKS_MAX_KEY)
    return fail(SLUICE_EINVAL, "%s: key of %zu bytes is above %d%s", fn, len,
                SLUICE_LOCKS_MAX_KEY, where);
  return fail(SLUICE_EINVAL, "%s: mode %d is not a sluice_lock_mode%s", fn, mode, where);
}

inline int check_key(const char *fn, const void *key, size_t len, int mode, size_t index,
                     bool many) {
  // len - 1 wraps for 0, so one compare checks 1..SLUICE_LOCKS_MAX_KEY.
  if (key && len - 1 < SLUICE_LOCKS_MAX_KEY &&
      (mode == SLUICE_LOCK_EXCLUSIVE || mode == SLUICE_LOCK_SHARED))
    return 0;
  return bad_key(fn, key, len, mode, index, many);
}

int check_timeout(const char *fn, int64_t timeout_ms) {
  if (timeout_ms > kMaxTimeoutMs)
    return fail(SLUICE_EINVAL, "%s: timeout %lld ms is above 2^40 ms", fn,
                static_cast<long long>(timeout_ms));
  return 0;
}

// The caller's keys, checked, hashed, sorted and merged.
using KeyVec = std::vector<KeyRef, sluice::mem::Allocator<KeyRef>>;
int gather(const char *fn, Locks *l, const sluice_lock_key *keys, size_t n, KeyVec &out) {
  if (!keys) return fail(SLUICE_EINVAL, "%s: keys is NULL", fn);
  if (n == 0 || n > SLUICE_LOCKS_MAX_MANY)
    return fail(SLUICE_EINVAL, "%s: %zu keys (1..%d)", fn, n, SLUICE_LOCKS_MAX_MANY);
  out.resize(n);
  for (size_t i = 0; i < n; i++) {
    if (int rc = check_key(fn, keys[i].key, keys[i].len, keys[i].mode, i, true)) return rc;
    out[i] = KeyRef{static_cast<const char *>(keys[i].key), uint32_t(keys[i].len),
                    uint8_t(keys[i].mode), l->hash(keys[i].key, keys[i].len)};
  }
  out.resize(sluice::locks::sort_keys(out.data(), n));
  return 0;
}

int resolve_options(const sluice_locks_options *in, sluice_locks_options *out) {
  sluice_locks_options_init(out, SLUICE_LOCKS_OPTIONS_VERSION);
  if (!in) return 0;
  if (int rc = sluice::check_version("sluice_locks_options", in->version,
                                     SLUICE_LOCKS_OPTIONS_VERSION))
    return rc;
  *out = *in;  // version 1 is every field so far
  if (out->max_keys == 0)
    return fail(SLUICE_EINVAL, "sluice_locks_options.max_keys: must be at least 1");
  if (out->max_keys > (1u << 30))
    return fail(SLUICE_EINVAL, "sluice_locks_options.max_keys: %u is above 2^30", out->max_keys);
  if (out->max_locks > (1u << 24))
    return fail(SLUICE_EINVAL, "sluice_locks_options.max_locks: %u is above 2^24",
                out->max_locks);
  if (out->on_full != SLUICE_LOCKS_FULL_REJECT && out->on_full != SLUICE_LOCKS_FULL_WAIT)
    return fail(SLUICE_EINVAL, "sluice_locks_options.on_full: %d is not a sluice_locks_full",
                out->on_full);
  if (out->hold_limit_ms > (1u << 31))
    return fail(SLUICE_EINVAL, "sluice_locks_options.hold_limit_ms: %u is above 2^31",
                out->hold_limit_ms);
  return 0;
}

sluice_lock_guard *as_guard(uint64_t h) {
  return reinterpret_cast<sluice_lock_guard *>(static_cast<uintptr_t>(h));
}
uint64_t as_handle(const sluice_lock_guard *g) { return reinterpret_cast<uintptr_t>(g); }

int start_op(Locks *l, const KeyRef *keys, size_t n, int64_t timeout_ms, sluice_lock_cb cb,
             void *ud, sluice_free_cb free_ud, sluice_op **op_out) {
  auto *op = new LockOp(l, cb, ud, free_ud);
  try {
    op->set_keys(keys, uint32_t(n));
  } catch (...) {
    delete op;
    throw;
  }
  if (op_out) op->ref();
  int rc = l->start(op, timeout_ms);
  if (rc != 0) {
    delete op;
    return rc;
  }
  if (op_out) *op_out = op;
  return 0;
}

// The blocking forms: a request whose callback fills this, then a wait.
struct Sync {
  int status = 0;
  uint64_t handle = 0;
};
void sync_cb(void *ud, int status, sluice_lock_guard *g) {
  auto *s = static_cast<Sync *>(ud);
  s->status = status;
  s->handle = as_handle(g);
}

int lock_blocking(const char *fn, Locks *l, const KeyRef *keys, size_t n, int64_t timeout_ms,
                  sluice_lock_guard **guard) {
  uint64_t h = 0;
  // The free case costs no trip to the loop; a busy key queues in order.
  // Refusals are counted only when the call ends with them.
  bool ends_here = !l->room_wait();
  int rc = l->try_many(const_cast<KeyRef *>(keys), n, &h, false);
  if (rc == 0) {
    *guard = as_guard(h);
    return 0;
  }
  if (rc != SLUICE_EAGAIN && !(rc == SLUICE_ELIMIT && !ends_here)) {
    if (rc == SLUICE_ELIMIT) l->count_limit_refusal();
    return fail(rc, "%s: %s", fn, sluice_strerror(rc));
  }
  Sync sync;
  sluice_op *op = nullptr;
  rc = start_op(l, keys, n, timeout_ms, sync_cb, &sync, nullptr, &op);
  if (rc != 0) return rc;
  op->wait(-1);  // the request's own deadline ends it
  sluice_op_free(op);
  if (sync.status != 0)
    return fail(sync.status, "%s: %s", fn, sluice_strerror(sync.status));
  *guard = as_guard(sync.handle);
  return 0;
}

}  // namespace

extern "C" {

int sluice_locks_options_init(sluice_locks_options *opts, unsigned int version) {
  if (!opts) return fail(SLUICE_EINVAL, "sluice_locks_options_init: opts is NULL");
  if (int rc = sluice::check_version("sluice_locks_options", version,
                                     SLUICE_LOCKS_OPTIONS_VERSION))
    return rc;
  opts->version = version;
  opts->max_locks = 2000;
  opts->max_keys = 100000;
  opts->on_full = SLUICE_LOCKS_FULL_REJECT;
  opts->cleanup_interval_ms = 300000;
  opts->hold_limit_ms = 0;
  opts->on_held_too_long = nullptr;
  opts->held_user_data = nullptr;
  opts->monitor = nullptr;
  return 0;
}

int sluice_locks_new(sluice_locks **out, sluice_runtime *rt, const sluice_locks_options *opts) {
  if (!out) return fail(SLUICE_EINVAL, "sluice_locks_new: out is NULL");
  *out = nullptr;
  if (!rt) return fail(SLUICE_EINVAL, "sluice_locks_new: runtime is NULL");
  sluice_locks_options o;
  if (int rc = resolve_options(opts, &o)) return rc;
  return guarded([&] {
    Locks *l = nullptr;
    int rc = Locks::create(sluice::unwrap(rt), o, &l);
    if (rc == 0) *out = wrap(l);
    return rc;
  });
}

void sluice_locks_free(sluice_locks *locks) {
  if (!locks) return;
  guarded([&] {
    unwrap(locks)->destroy();
    return 0;
  });
}

int sluice_locks_try(sluice_locks *locks, const void *key, size_t len, int mode,
                     sluice_lock_guard **guard) {
  if (guard) *guard = nullptr;
  if (!locks) return fail(SLUICE_EINVAL, "sluice_locks_try: locks is NULL");
  if (!guard) return fail(SLUICE_EINVAL, "sluice_locks_try: guard is NULL");
  if (int rc = check_key("sluice_locks_try", key, len, mode, 0, false)) return rc;
  uint64_t h = 0;
  int rc = unwrap(locks)->try_one(key, len, mode, &h);
  if (rc != 0) {
    return fail(rc, rc == SLUICE_EAGAIN   ? "sluice_locks_try: the key is held"
                    : rc == SLUICE_ELIMIT ? "sluice_locks_try: max_keys keys are live"
                                          : "sluice_locks_try: out of memory");
  }
  *guard = as_guard(h);
  return 0;
}

int sluice_locks_try_many(sluice_locks *locks, const sluice_lock_key *keys, size_t n,
                          sluice_lock_guard **guard) {
  if (guard) *guard = nullptr;
  if (!locks) return fail(SLUICE_EINVAL, "sluice_locks_try_many: locks is NULL");
  if (!guard) return fail(SLUICE_EINVAL, "sluice_locks_try_many: guard is NULL");
  Locks *l = unwrap(locks);
  return guarded([&] {
    KeyVec k;
    if (int rc = gather("sluice_locks_try_many", l, keys, n, k)) return rc;
    uint64_t h = 0;
    int rc = l->try_many(k.data(), k.size(), &h, true);
    if (rc != 0) return fail(rc, "sluice_locks_try_many: %s", sluice_strerror(rc));
    *guard = as_guard(h);
    return 0;
  });
}

int sluice_locks_acquire(sluice_locks *locks, const void *key, size_t len, int mode,
                         int64_t timeout_ms, sluice_lock_cb cb, void *user_data,
                         sluice_free_cb free_user_data, sluice_op **op_out) {
  const char *fn = "sluice_locks_acquire";
  if (!locks) return fail(SLUICE_EINVAL, "%s: locks is NULL", fn);
  if (!cb) return fail(SLUICE_EINVAL, "%s: callback is NULL", fn);
  if (int rc = check_key(fn, key, len, mode, 0, false)) return rc;
  if (int rc = check_timeout(fn, timeout_ms)) return rc;
  Locks *l = unwrap(locks);
  KeyRef k{static_cast<const char *>(key), uint32_t(len), uint8_t(mode), l->hash(key, len)};
  return guarded(
      [&] { return start_op(l, &k, 1, timeout_ms, cb, user_data, free_user_data, op_out); });
}

int sluice_locks_acquire_many(sluice_locks *locks, const sluice_lock_key *keys, size_t n,
                              int64_t timeout_ms, sluice_lock_cb cb, void *user_data,
                              sluice_free_cb free_user_data, sluice_op **op_out) {
  const char *fn = "sluice_locks_acquire_many";
  if (!locks) return fail(SLUICE_EINVAL, "%s: locks is NULL", fn);
  if (!cb) return fail(SLUICE_EINVAL, "%s: callback is NULL", fn);
  if (int rc = check_timeout(fn, timeout_ms)) return rc;
  Locks *l = unwrap(locks);
  return guarded([&] {
    KeyVec k;
    if (int rc = gather(fn, l, keys, n, k)) return rc;
    return start_op(l, k.data(), k.size(), timeout_ms, cb, user_data, free_user_data, op_out);
  });
}

int sluice_locks_lock(sluice_locks *locks, const void *key, size_t len, int mode,
                      int64_t timeout_ms, sluice_lock_guard **guard) {
  const char *fn = "sluice_locks_lock";
  if (guard) *guard = nullptr;
  if (!locks) return fail(SLUICE_EINVAL, "%s: locks is NULL", fn);
  if (!guard) return fail(SLUICE_EINVAL, "%s: guard is NULL", fn);
  if (int rc = check_key(fn, key, len, mode, 0, false)) return rc;
  if (int rc = check_timeout(fn, timeout_ms)) return rc;
  Locks *l = unwrap(locks);
  if (l->runtime()->is_loop_thread())
    return fail(SLUICE_EDEADLK, "%s: called on the loop thread, which must run to grant it", fn);
  KeyRef k{static_cast<const char *>(key), uint32_t(len), uint8_t(mode), l->hash(key, len)};
  return guarded([&] { return lock_blocking(fn, l, &k, 1, timeout_ms, guard); });
}

int sluice_locks_lock_many(sluice_locks *locks, const sluice_lock_key *keys, size_t n,
                           int64_t timeout_ms, sluice_lock_guard **guard) {
  const char *fn = "sluice_locks_lock_many";
  if (guard) *guard = nullptr;
  if (!locks) return fail(SLUICE_EINVAL, "%s: locks is NULL", fn);
  if (!guard) return fail(SLUICE_EINVAL, "%s: guard is NULL", fn);
  if (int rc = check_timeout(fn, timeout_ms)) return rc;
  Locks *l = unwrap(locks);
  if (l->runtime()->is_loop_thread())
    return fail(SLUICE_EDEADLK, "%s: called on the loop thread, which must run to grant it", fn);
  return guarded([&] {
    KeyVec k;
    if (int rc = gather(fn, l, keys, n, k)) return rc;
    return lock_blocking(fn, l, k.data(), k.size(), timeout_ms, guard);
  });
}

int sluice_locks_release(sluice_locks *locks, sluice_lock_guard *guard) {
  if (!locks) return fail(SLUICE_EINVAL, "sluice_locks_release: locks is NULL");
  if (!guard) return fail(SLUICE_EINVAL, "sluice_locks_release: guard is NULL");
  return unwrap(locks)->release(as_handle(guard));
}

int sluice_locks_token(sluice_locks *locks, const sluice_lock_guard *guard, uint64_t *token) {
  if (!locks) return fail(SLUICE_EINVAL, "sluice_locks_token: locks is NULL");
  if (!guard) return fail(SLUICE_EINVAL, "sluice_locks_token: guard is NULL");
  if (!token) return fail(SLUICE_EINVAL, "sluice_locks_token: token is NULL");
  return unwrap(locks)->token(as_handle(guard), token);
}

int sluice_locks_trim(sluice_locks *locks) {
  if (!locks) return fail(SLUICE_EINVAL, "sluice_locks_trim: locks is NULL");
  unwrap(locks)->trim();
  return 0;
}

int sluice_locks_stats_get(sluice_locks *locks, sluice_locks_stats *out) {
  if (!locks) return fail(SLUICE_EINVAL, "sluice_locks_stats_get: locks is NULL");
  if (!out) return fail(SLUICE_EINVAL, "sluice_locks_stats_get: out is NULL");
  if (out->size < sizeof(size_t))
    return fail(SLUICE_EINVAL, "sluice_locks_stats_get: size %zu is too small", out->size);
  sluice_locks_stats full{};
  full.size = sizeof full;
  unwrap(locks)->fill_stats(&full);
  size_t caller = out->size;
  std::memcpy(out, &full, caller < sizeof full ? caller : sizeof full);
  out->size = caller;
  return 0;
}

}  // extern "C"

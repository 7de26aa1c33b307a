// extern "C" entry points of sluice/limiter.h: argument checks, then the
// Limiter class.
#include <cstdio>
#include <cstring>

#include "common/error.h"
#include "limiter/limiter.h"

using sluice::fail;
using sluice::guarded;
using sluice::unwrap;
using sluice::limiter::Limiter;

namespace {

constexpr int64_t kMaxTimeoutMs = int64_t{1} << 40;

int check_key(const char *fn, const void *key, size_t len) {
  if (!key) return fail(SLUICE_EINVAL, "%s: key is NULL", fn);
  if (len == 0) return fail(SLUICE_EINVAL, "%s: key is empty", fn);
  if (len > SLUICE_LIMITER_MAX_KEY)
    return fail(SLUICE_EINVAL, "%s: key of %zu bytes is longer than %d", fn, len,
                SLUICE_LIMITER_MAX_KEY);
  return 0;
}

int check_request(const char *fn, const sluice_limiter *l, const void *key, size_t len,
                  uint64_t cost) {
  if (!l) return fail(SLUICE_EINVAL, "%s: limiter is NULL", fn);
  if (int rc = check_key(fn, key, len)) return rc;
  if (cost == 0) return fail(SLUICE_EINVAL, "%s: cost is 0", fn);
  return 0;
}

int check_result(const char *fn, const sluice_limiter_result *r) {
  if (r && r->size < sizeof(size_t))
    return fail(SLUICE_EINVAL, "%s: result->size %zu is too small", fn, r->size);
  return 0;
}

void noop_cb(void *, int) {}

}  // namespace

extern "C" {

int sluice_limiter_options_init(sluice_limiter_options *opts, unsigned int version) {
  if (!opts) return fail(SLUICE_EINVAL, "sluice_limiter_options_init: opts is NULL");
  if (int rc = sluice::check_version("sluice_limiter_options", version,
                                     SLUICE_LIMITER_OPTIONS_VERSION))
    return rc;
  *opts = sluice_limiter_options SLUICE_LIMITER_OPTIONS_INIT;
  opts->version = version;
  return 0;
}

int sluice_limiter_new(sluice_limiter **out, sluice_runtime *rt,
                       const sluice_limiter_options *opts) {
  if (!out) return fail(SLUICE_EINVAL, "sluice_limiter_new: out is NULL");
  *out = nullptr;
  sluice_limiter_options o = SLUICE_LIMITER_OPTIONS_INIT;
  if (opts) {
    if (int rc = sluice::check_version("sluice_limiter_options", opts->version,
                                       SLUICE_LIMITER_OPTIONS_VERSION))
      return rc;
    // Version 1 is every field there is so far; later versions copy more.
    o = *opts;
  }
  return guarded([&] {
    Limiter *l = nullptr;
    int rc = Limiter::create(rt ? unwrap(rt) : nullptr, o, &l);
    if (rc == 0) *out = sluice::wrap(l);
    return rc;
  });
}

void sluice_limiter_free(sluice_limiter *l) {
  if (!l) return;
  guarded([&] {
    unwrap(l)->destroy();
    return 0;
  });
}

int sluice_limiter_check(sluice_limiter *l, const void *key, size_t len, uint64_t cost,
                         sluice_limiter_result *result) {
  // One test for every bad argument on the hot path; the messages after.
  if (__builtin_expect(!l || !key || len - 1 >= SLUICE_LIMITER_MAX_KEY || cost == 0 ||
                           (result && result->size < sizeof(size_t)),
                       0)) {
    if (int rc = check_request("sluice_limiter_check", l, key, len, cost)) return rc;
    return check_result("sluice_limiter_check", result);
  }
  return guarded([&] { return unwrap(l)->check(key, uint32_t(len), cost, false, result); });
}

int sluice_limiter_peek(sluice_limiter *l, const void *key, size_t len, uint64_t cost,
                        sluice_limiter_result *result) {
  if (int rc = check_request("sluice_limiter_peek", l, key, len, cost)) return rc;
  if (int rc = check_result("sluice_limiter_peek", result)) return rc;
  return guarded([&] { return unwrap(l)->check(key, uint32_t(len), cost, true, result); });
}

int sluice_limiter_check_many(const sluice_limiter_item *items, size_t n,
                              sluice_limiter_result *result) {
  if (!items) return fail(SLUICE_EINVAL, "sluice_limiter_check_many: items is NULL");
  if (n == 0 || n > SLUICE_LIMITER_MAX_MANY)
    return fail(SLUICE_EINVAL, "sluice_limiter_check_many: n %zu is outside 1..%d", n,
                SLUICE_LIMITER_MAX_MANY);
  if (int rc = check_result("sluice_limiter_check_many", result)) return rc;
  for (size_t i = 0; i < n; i++) {
    char fn[64];
    std::snprintf(fn, sizeof fn, "sluice_limiter_check_many: item %zu", i);
    if (int rc = check_request(fn, items[i].limiter, items[i].key, items[i].len, items[i].cost))
      return rc;
  }
  return guarded([&] { return Limiter::check_many(items, n, result); });
}

int sluice_limiter_acquire(sluice_limiter *l, const void *key, size_t len, uint64_t cost,
                           int64_t timeout_ms, sluice_status_cb cb, void *user_data,
                           sluice_free_cb free_user_data, sluice_op **op_out) {
  if (int rc = check_request("sluice_limiter_acquire", l, key, len, cost)) return rc;
  if (!cb) return fail(SLUICE_EINVAL, "sluice_limiter_acquire: callback is NULL");
  if (timeout_ms > kMaxTimeoutMs)
    return fail(SLUICE_EINVAL, "sluice_limiter_acquire: timeout %lld ms is above 2^40 ms",
                static_cast<long long>(timeout_ms));
  return guarded([&] {
    return unwrap(l)->acquire(key, uint32_t(len), cost, timeout_ms, cb, user_data,
                              free_user_data, op_out);
  });
}

int sluice_limiter_wait(sluice_limiter *l, const void *key, size_t len, uint64_t cost,
                        int64_t timeout_ms) {
  if (int rc = check_request("sluice_limiter_wait", l, key, len, cost)) return rc;
  Limiter *lim = unwrap(l);
  if (lim->runtime() && lim->runtime()->is_loop_thread())
    return fail(SLUICE_EDEADLK,
                "sluice_limiter_wait: called on the loop thread, which must run to grant it");
  if (timeout_ms > kMaxTimeoutMs)
    return fail(SLUICE_EINVAL, "sluice_limiter_wait: timeout %lld ms is above 2^40 ms",
                static_cast<long long>(timeout_ms));
  sluice_op *op = nullptr;
  int rc = guarded([&] {
    return lim->acquire(key, uint32_t(len), cost, timeout_ms, noop_cb, nullptr, nullptr, &op);
  });
  if (rc != 0) return rc;
  int status = 0;
  rc = sluice_op_wait(op, -1, &status);
  sluice_op_free(op);
  if (rc != 0) return rc;
  if (status != 0)
    return fail(status, "sluice_limiter_wait: %s", sluice_strerror(status));
  return 0;
}

int sluice_limiter_wake(sluice_limiter *l) {
  if (!l) return fail(SLUICE_EINVAL, "sluice_limiter_wake: limiter is NULL");
  return guarded([&] { return unwrap(l)->wake(); });
}

int sluice_limiter_set_limit(sluice_limiter *l, uint64_t limit, uint64_t window_ns,
                             uint64_t burst) {
  if (!l) return fail(SLUICE_EINVAL, "sluice_limiter_set_limit: limiter is NULL");
  return guarded([&] { return unwrap(l)->set_limit(limit, window_ns, burst); });
}

int sluice_limiter_block(sluice_limiter *l, const void *key, size_t len, uint64_t duration_ns) {
  if (!l) return fail(SLUICE_EINVAL, "sluice_limiter_block: limiter is NULL");
  if (int rc = check_key("sluice_limiter_block", key, len)) return rc;
  if (duration_ns == 0 || duration_ns > sluice::limiter::kMaxBlock)
    return fail(SLUICE_EINVAL, "sluice_limiter_block: duration_ns %llu is outside 1..2^62",
                static_cast<unsigned long long>(duration_ns));
  return guarded([&] { return unwrap(l)->block(key, uint32_t(len), duration_ns); });
}

int sluice_limiter_unblock(sluice_limiter *l, const void *key, size_t len) {
  if (!l) return fail(SLUICE_EINVAL, "sluice_limiter_unblock: limiter is NULL");
  if (int rc = check_key("sluice_limiter_unblock", key, len)) return rc;
  return guarded([&] { return unwrap(l)->unblock(key, uint32_t(len)); });
}

int64_t sluice_limiter_sweep(sluice_limiter *l) {
  if (!l) return fail(SLUICE_EINVAL, "sluice_limiter_sweep: limiter is NULL");
  return unwrap(l)->sweep_all();
}

int sluice_limiter_stats_get(sluice_limiter *l, sluice_limiter_stats *out) {
  if (!l) return fail(SLUICE_EINVAL, "sluice_limiter_stats_get: limiter is NULL");
  if (!out) return fail(SLUICE_EINVAL, "sluice_limiter_stats_get: out is NULL");
  if (out->size < sizeof(size_t))
    return fail(SLUICE_EINVAL, "sluice_limiter_stats_get: size %zu is too small", out->size);
  sluice_limiter_stats full{};
  full.size = sizeof full;
  unwrap(l)->fill_stats(&full);
  size_t n = out->size < sizeof full ? out->size : sizeof full;
  size_t caller_size = out->size;
  std::memcpy(out, &full, n);
  out->size = caller_size;
  return 0;
}

}  // extern "C"

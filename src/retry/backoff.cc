#include "retry/backoff.h"

#include <cmath>
#include <cstring>

#include "common/error.h"

namespace sluice::retry {

namespace {
constexpr int64_t kMaxMs = int64_t{1} << 40;  // about 35 years: above is a units mistake
constexpr uint64_t kNsPerMs = 1000000;

int check_ms(const char *fn, const char *field, int64_t v, int64_t lo) {
  if (v < lo || v > kMaxMs)
    return fail(SLUICE_EINVAL, "%s: sluice_retry_options.%s %lld is %s", fn, field,
                static_cast<long long>(v),
                v < 0    ? "negative"
                : v < lo ? "zero"
                         : "above 2^40 ms");
  return 0;
}
}  // namespace

uint64_t Backoff::exponential(uint32_t retry) const {
  if (retry <= 1 || multiplier == 1.0) return base_ns;
  double limit = double(max_ns) / double(base_ns);
  double r = 1.0, b = multiplier;
  // Every factor is at least 1, so once the partial product reaches the
  // limit the whole does too.
  for (uint32_t k = retry - 1;;) {
    if (k & 1) {
      r *= b;
      if (r >= limit) return max_ns;
    }
    k >>= 1;
    if (!k) break;
    b *= b;
  }
  double e = double(base_ns) * r;
  return e >= double(max_ns) ? max_ns : uint64_t(e);
}

uint64_t Backoff::delay(uint32_t retry, uint64_t prev_ns, uint64_t *rng) const {
  switch (jitter) {
    case SLUICE_RETRY_JITTER_NONE:
      return exponential(retry);
    case SLUICE_RETRY_JITTER_FULL:
      return uniform(rng, 0, exponential(retry));
    case SLUICE_RETRY_JITTER_EQUAL: {
      uint64_t e = exponential(retry), half = e / 2;
      return half + uniform(rng, 0, e - half);
    }
    default: {  // the decorrelated modes
      uint64_t prev = prev_ns < base_ns ? base_ns : prev_ns > max_ns ? max_ns : prev_ns;
      uint64_t t = uniform(rng, base_ns, 3 * prev);
      if (t <= max_ns) return t;
      if (jitter == SLUICE_RETRY_JITTER_DECORRELATED) return max_ns;
      uint64_t lo = max_ns / 2 > base_ns ? max_ns / 2 : base_ns;
      return uniform(rng, lo, max_ns);
    }
  }
}

int validate(const sluice_retry_options &o, const char *fn, Backoff *b) {
  if (o.max_attempts == 0)
    return fail(SLUICE_EINVAL, "%s: sluice_retry_options.max_attempts is 0 (it counts the first "
                "attempt, so at least 1)", fn);
  if (o.max_attempts > 1000000)
    return fail(SLUICE_EINVAL, "%s: sluice_retry_options.max_attempts %u is above 1000000", fn,
                o.max_attempts);
  if (int rc = check_ms(fn, "base_delay_ms", o.base_delay_ms, 1)) return rc;
  if (int rc = check_ms(fn, "max_delay_ms", o.max_delay_ms, 1)) return rc;
  if (o.max_delay_ms < o.base_delay_ms)
    return fail(SLUICE_EINVAL, "%s: sluice_retry_options.max_delay_ms %lld is below base_delay_ms "
                "%lld", fn, static_cast<long long>(o.max_delay_ms),
                static_cast<long long>(o.base_delay_ms));
  if (!std::isfinite(o.multiplier) || o.multiplier < 1.0 || o.multiplier > 1000.0)
    return fail(SLUICE_EINVAL, "%s: sluice_retry_options.multiplier %g is outside [1, 1000]", fn,
                o.multiplier);
  if (o.jitter < SLUICE_RETRY_JITTER_NONE || o.jitter > SLUICE_RETRY_JITTER_SPREAD)
    return fail(SLUICE_EINVAL, "%s: sluice_retry_options.jitter %d is not a sluice_retry_jitter",
                fn, o.jitter);
  if (int rc = check_ms(fn, "total_timeout_ms", o.total_timeout_ms, 0)) return rc;
  if (int rc = check_ms(fn, "attempt_timeout_ms", o.attempt_timeout_ms, 0)) return rc;
  if (!std::isfinite(o.budget_ratio) || o.budget_ratio < 0 ||
      (o.budget_ratio != 0 && (o.budget_ratio < 0.001 || o.budget_ratio > 100)))
    return fail(SLUICE_EINVAL, "%s: sluice_retry_options.budget_ratio %g is neither 0 (off) nor "
                "in [0.001, 100]", fn, o.budget_ratio);
  if (o.budget_tokens > 1000000)
    return fail(SLUICE_EINVAL, "%s: sluice_retry_options.budget_tokens %u is above 1000000", fn,
                o.budget_tokens);
  if (o.name) {
    size_t n = std::strlen(o.name);
    if (n == 0 || n > 64)
      return fail(SLUICE_EINVAL, "%s: sluice_retry_options.name is %zu bytes (1..64)", fn, n);
  }
  b->base_ns = uint64_t(o.base_delay_ms) * kNsPerMs;
  b->max_ns = uint64_t(o.max_delay_ms) * kNsPerMs;
  b->multiplier = o.multiplier;
  b->jitter = o.jitter;
  return 0;
}

}  // namespace sluice::retry

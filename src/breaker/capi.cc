// extern "C" entry points of sluice/breaker.h.
#include <cstddef>
#include <cstring>

#include "breaker/breaker.h"
#include "common/error.h"
#include "common/sized.h"

using sluice::Breaker;
using sluice::fail;
using sluice::guarded;
using sluice::unwrap;

extern "C" {

int sluice_breaker_options_init(sluice_breaker_options *opts, unsigned int version) {
  if (!opts) return fail(SLUICE_EINVAL, "sluice_breaker_options_init: opts is NULL");
  if (int rc = sluice::check_version("sluice_breaker_options", version,
                                     SLUICE_BREAKER_OPTIONS_VERSION))
    return rc;
  sluice_breaker_options d = SLUICE_BREAKER_OPTIONS_INIT;
  d.version = version;
  // A version 1 caller's struct ends before `monitor`: write no further.
  std::memcpy(opts, &d, version >= 2 ? sizeof d : offsetof(sluice_breaker_options, monitor));
  return 0;
}

int sluice_breaker_new(sluice_breaker **out, sluice_runtime *, const sluice_breaker_options *opts) {
  if (!out) return fail(SLUICE_EINVAL, "sluice_breaker_new: out is NULL");
  *out = nullptr;
  sluice_breaker_options o = SLUICE_BREAKER_OPTIONS_INIT;
  if (opts) {
    if (int rc = sluice::check_version("sluice_breaker_options", opts->version,
                                       SLUICE_BREAKER_OPTIONS_VERSION))
      return rc;
    // A version 1 caller's struct ends before `monitor`.
    if (opts->version >= 2)
      o = *opts;
    else
      std::memcpy(&o, opts, offsetof(sluice_breaker_options, monitor));
  }
  return guarded([&] {
    Breaker *b = nullptr;
    int rc = Breaker::create(o, &b);
    if (rc == 0) *out = sluice::wrap(b);
    return rc;
  });
}

void sluice_breaker_free(sluice_breaker *b) { delete unwrap(b); }

int sluice_breaker_allow(sluice_breaker *b, uint64_t *ticket) {
  if (!b) return fail(SLUICE_EINVAL, "sluice_breaker_allow: breaker is NULL");
  int rc = unwrap(b)->allow(ticket);
  // A refusal is an answer, not a mistake: no message is recorded for it.
  return rc;
}

int sluice_breaker_record(sluice_breaker *b, uint64_t ticket, int result, uint64_t duration_ns) {
  if (!b) return fail(SLUICE_EINVAL, "sluice_breaker_record: breaker is NULL");
  if (result != SLUICE_BREAKER_SUCCESS && result != SLUICE_BREAKER_FAILURE)
    return fail(SLUICE_EINVAL, "sluice_breaker_record: result %d is not a sluice_breaker_result",
                result);
  unwrap(b)->record(ticket, result == SLUICE_BREAKER_FAILURE, duration_ns);
  return 0;
}

int sluice_breaker_release(sluice_breaker *b, uint64_t ticket) {
  if (!b) return fail(SLUICE_EINVAL, "sluice_breaker_release: breaker is NULL");
  unwrap(b)->release(ticket);
  return 0;
}

int sluice_breaker_state_get(const sluice_breaker *b) {
  if (!b) return fail(SLUICE_EINVAL, "sluice_breaker_state_get: breaker is NULL");
  return unwrap(b)->state();
}

int sluice_breaker_set_state(sluice_breaker *b, int state) {
  if (!b) return fail(SLUICE_EINVAL, "sluice_breaker_set_state: breaker is NULL");
  if (state < SLUICE_BREAKER_CLOSED || state > SLUICE_BREAKER_HALF_OPEN)
    return fail(SLUICE_EINVAL, "sluice_breaker_set_state: %d is not a sluice_breaker_state", state);
  unwrap(b)->set_state(state);
  return 0;
}

int sluice_breaker_stats_get(const sluice_breaker *b, sluice_breaker_stats *out) {
  if (!b) return fail(SLUICE_EINVAL, "sluice_breaker_stats_get: breaker is NULL");
  if (!out) return fail(SLUICE_EINVAL, "sluice_breaker_stats_get: out is NULL");
  sluice_breaker_stats full{};
  full.size = sizeof full;
  unwrap(b)->fill_stats(&full);
  return sluice::copy_sized(out, full, "sluice_breaker_stats_get");
}

}  // extern "C"

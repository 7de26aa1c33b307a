/*
 * C side of retry.go and breaker.go (see shim.h for why these wrappers
 * exist). Go fills the options structs' numbers itself; the wrappers set
 * what Go must not write: function pointers and handles as user_data.
 */
#ifndef SLUICE_GO_RETRY_SHIM_H
#define SLUICE_GO_RETRY_SHIM_H

#include "shim.h"

/* Exported from callbacks.go. */
extern void sluiceGoBreakerState(uintptr_t handle, int from, int to, uint64_t generation);

static inline void sg_breaker_state(void *user_data, int from, int to, uint64_t generation) {
  sluiceGoBreakerState((uintptr_t)user_data, from, to, generation);
}

/* ---- breaker ---------------------------------------------------------- */

static inline void sg_breaker_options_init(sg_result *r, sluice_breaker_options *o) {
  sg_done(r, sluice_breaker_options_init(o, SLUICE_BREAKER_OPTIONS_VERSION));
}

/* clock: a ManualClock's word or NULL; listener: a handle or 0. */
static inline void sg_breaker_new(sg_result *r, sluice_breaker **out, sluice_breaker_options *o,
                                  uint64_t *clock, uintptr_t listener) {
  if (clock) {
    o->clock = sg_manual_clock;
    o->clock_user_data = clock;
  }
  if (listener) {
    o->on_state_change = sg_breaker_state;
    o->state_user_data = (void *)listener;
  }
  sg_done(r, sluice_breaker_new(out, NULL, o));
}

/* An open breaker's refusal is an answer: no message is copied. */
static inline void sg_breaker_allow(sg_result *r, sluice_breaker *b, uint64_t *ticket) {
  int rc = sluice_breaker_allow(b, ticket);
  if (rc == SLUICE_EOPEN) {
    r->rc = rc;
    r->msg.ptr = NULL;
    r->msg.size = 0;
    return;
  }
  sg_done(r, rc);
}

static inline void sg_breaker_record(sg_result *r, sluice_breaker *b, uint64_t ticket,
                                     int result, uint64_t duration_ns) {
  sg_done(r, sluice_breaker_record(b, ticket, result, duration_ns));
}

static inline void sg_breaker_release(sg_result *r, sluice_breaker *b, uint64_t ticket) {
  sg_done(r, sluice_breaker_release(b, ticket));
}

static inline void sg_breaker_set_state(sg_result *r, sluice_breaker *b, int state) {
  sg_done(r, sluice_breaker_set_state(b, state));
}

static inline void sg_breaker_stats(sg_result *r, const sluice_breaker *b,
                                    sluice_breaker_stats *out) {
  out->size = sizeof *out;
  sg_done(r, sluice_breaker_stats_get(b, out));
}

/* ---- retry policy ------------------------------------------------------ */

static inline void sg_retry_options_init(sg_result *r, sluice_retry_options *o) {
  sg_done(r, sluice_retry_options_init(o, SLUICE_RETRY_OPTIONS_VERSION));
}

static inline void sg_retry_new(sg_result *r, sluice_retry **out, sluice_retry_options *o,
                                uint64_t *clock) {
  if (clock) {
    o->clock = sg_manual_clock;
    o->clock_user_data = clock;
  }
  sg_done(r, sluice_retry_new(out, NULL, o));
}

static inline void sg_retry_next_delay(sg_result *r, const sluice_retry_options *o,
                                       uint32_t retry, uint64_t prev_ns, uint64_t *rng,
                                       uint64_t *delay_ns) {
  sg_done(r, sluice_retry_next_delay(o, retry, prev_ns, rng, delay_ns));
}

static inline void sg_retry_session_new(sg_result *r, sluice_retry *p, uint64_t deadline_ns,
                                        sluice_retry_session **out) {
  sg_done(r, sluice_retry_session_new(p, deadline_ns, out));
}

/* r->rc: 1 make the attempt, 0 the run is over (*status why), or an error. */
static inline void sg_retry_session_begin(sg_result *r, sluice_retry_session *s,
                                          uint64_t *attempt_deadline_ns, int *status) {
  sg_done(r, sluice_retry_session_begin(s, attempt_deadline_ns, status));
}

/* r->rc: 1 wait *delay_ns and begin again, 0 the run is over (*status), or
 * an error. */
static inline void sg_retry_session_end(sg_result *r, sluice_retry_session *s, int outcome,
                                        int code, uint64_t retry_after_ns, uint64_t *delay_ns,
                                        int *status) {
  sg_done(r, sluice_retry_session_end(s, outcome, code, retry_after_ns, delay_ns, status));
}

static inline void sg_retry_stats(sg_result *r, const sluice_retry *p, sluice_retry_stats *out) {
  out->size = sizeof *out;
  sg_done(r, sluice_retry_stats_get(p, out));
}

#endif /* SLUICE_GO_RETRY_SHIM_H */

// extern "C" entry points of sluice/retry.h: argument checks, then the
// policy (policy.cc), asynchronous runs (run.cc) and sessions (here: a
// session is a run state the caller steps through).
#include <cstring>

#include "common/error.h"
#include "common/sized.h"
#include "retry/run.h"

using sluice::fail;
using sluice::guarded;
using sluice::Runtime;
using sluice::retry::Policy;
using sluice::retry::RunOp;
using sluice::retry::RunState;
using sluice::retry::Verdict;

struct sluice_retry_session : sluice::mem::Allocated {
  Policy *policy;
  RunState run;
};

namespace {

int resolve_options(const char *fn, const sluice_retry_options *in, sluice_retry_options *out) {
  *out = sluice_retry_options SLUICE_RETRY_OPTIONS_INIT;
  if (!in) return 0;
  if (int rc = sluice::check_version("sluice_retry_options", in->version,
                                     SLUICE_RETRY_OPTIONS_VERSION))
    return rc;
  // Version 1 is every field there is so far; later versions copy more.
  *out = *in;
  sluice::retry::Backoff unused;
  return sluice::retry::validate(*out, fn, &unused);
}

bool known_outcome(int outcome) {
  return outcome == SLUICE_RETRY_SUCCESS || outcome == SLUICE_RETRY_RETRYABLE ||
         outcome == SLUICE_RETRY_PERMANENT;
}

void on_report(void *arg, int) {
  auto *a = static_cast<sluice_retry_attempt *>(arg);
  RunOp *op = a->op;
  if (!op->is_done() && op->is_current(a)) op->reported(a);
  a->unref();  // the user's reference, carried by this item
}

}  // namespace

extern "C" {

int sluice_retry_options_init(sluice_retry_options *opts, unsigned int version) {
  if (!opts) return fail(SLUICE_EINVAL, "sluice_retry_options_init: opts is NULL");
  if (int rc = sluice::check_version("sluice_retry_options", version, SLUICE_RETRY_OPTIONS_VERSION))
    return rc;
  *opts = sluice_retry_options SLUICE_RETRY_OPTIONS_INIT;
  opts->version = version;
  return 0;
}

int sluice_retry_new(sluice_retry **out, sluice_runtime *rt, const sluice_retry_options *opts) {
  if (!out) return fail(SLUICE_EINVAL, "sluice_retry_new: out is NULL");
  *out = nullptr;
  sluice_retry_options o;
  if (int rc = resolve_options("sluice_retry_new", opts, &o)) return rc;
  Runtime *r = rt ? sluice::unwrap(rt) : nullptr;
  if (r && r->is_closed())
    return fail(SLUICE_ECLOSED, "sluice_retry_new: the runtime is shutting down");
  return guarded([&] {
    Policy *p = nullptr;
    int rc = Policy::create(r, o, &p);
    if (rc == 0) *out = reinterpret_cast<sluice_retry *>(p);
    return rc;
  });
}

void sluice_retry_free(sluice_retry *p) {
  if (!p) return;
  guarded([&] {
    sluice::retry::unwrap(p)->close();
    return 0;
  });
}

int sluice_retry_run(sluice_retry *handle, uint64_t deadline_ns, sluice_retry_attempt_fn attempt_fn,
                     sluice_retry_done_cb done_cb, void *user_data, sluice_free_cb free_user_data,
                     sluice_op **op_out) {
  if (!handle) return fail(SLUICE_EINVAL, "sluice_retry_run: policy is NULL");
  if (!attempt_fn) return fail(SLUICE_EINVAL, "sluice_retry_run: attempt_fn is NULL");
  if (!done_cb) return fail(SLUICE_EINVAL, "sluice_retry_run: done_cb is NULL");
  Policy *p = sluice::retry::unwrap(handle);
  Runtime *rt = p->runtime();
  if (!rt)
    return fail(SLUICE_EINVAL, "sluice_retry_run: the policy was made without a runtime "
                "(use a session)");
  return guarded([&] {
    auto *op = new RunOp(rt, p, deadline_ns, attempt_fn, done_cb, user_data, free_user_data);
    if (op_out) op->ref();
    int rc = rt->start(op, 0);
    if (rc != 0) {
      delete op;
      return rc;
    }
    if (op_out) *op_out = op;
    return 0;
  });
}

int sluice_retry_attempt_done(sluice_retry_attempt *a, int outcome, int code,
                              uint64_t retry_after_ns) {
  if (!a) return fail(SLUICE_EINVAL, "sluice_retry_attempt_done: attempt is NULL");
  int rc = 0;
  if (!known_outcome(outcome)) {
    rc = fail(SLUICE_EINVAL, "sluice_retry_attempt_done: outcome %d is not a sluice_retry_outcome "
              "(taken as a retryable failure)", outcome);
    outcome = SLUICE_RETRY_RETRYABLE;
    code = SLUICE_EINVAL;
  } else if (outcome != SLUICE_RETRY_SUCCESS && code == 0) {
    rc = fail(SLUICE_EINVAL, "sluice_retry_attempt_done: a failure reported with code 0 (taken as "
              "SLUICE_EINVAL)");
    code = SLUICE_EINVAL;
  }
  a->outcome = outcome;
  a->code = outcome == SLUICE_RETRY_SUCCESS ? 0 : code;
  a->retry_after_ns = retry_after_ns;
  int expected = sluice::retry::kPending;
  RunOp *op = a->op;
  if (!a->state.compare_exchange_strong(expected, sluice::retry::kReported,
                                        std::memory_order_acq_rel)) {
    op->policy()->count_late_report();
    a->unref();
    if (rc) return rc;
    switch (expected) {
      case sluice::retry::kTimedOut:
        return fail(SLUICE_ETIMEDOUT, "sluice_retry_attempt_done: the attempt had timed out");
      case sluice::retry::kCancelled:
        return fail(SLUICE_ECANCELED, "sluice_retry_attempt_done: the run had been cancelled");
      default:
        return fail(SLUICE_ECLOSED, "sluice_retry_attempt_done: the run had been closed");
    }
  }
  Runtime *rt = op->runtime();
  if (rt->is_loop_thread() && op->in_call(a)) {
    // Inside its own attempt function: the run acts on it when that
    // returns, so nothing nests.
    a->unref();
    return rc;
  }
  int prc = guarded([&] { return rt->post_internal(on_report, a); });
  // Not posted: the runtime is shutting down and will end the run itself.
  if (prc != 0) a->unref();
  return rc;
}

uint32_t sluice_retry_attempt_number(const sluice_retry_attempt *a) { return a ? a->number : 0; }

uint64_t sluice_retry_attempt_deadline(const sluice_retry_attempt *a) {
  return a ? a->deadline_ns : 0;
}

int sluice_retry_attempt_active(const sluice_retry_attempt *a) {
  return a && a->state.load(std::memory_order_acquire) == sluice::retry::kPending ? 1 : 0;
}

int sluice_retry_session_new(sluice_retry *handle, uint64_t deadline_ns,
                             sluice_retry_session **out) {
  if (!out) return fail(SLUICE_EINVAL, "sluice_retry_session_new: out is NULL");
  *out = nullptr;
  if (!handle) return fail(SLUICE_EINVAL, "sluice_retry_session_new: policy is NULL");
  Policy *p = sluice::retry::unwrap(handle);
  return guarded([&] {
    auto *s = new sluice_retry_session{};
    s->policy = p;
    p->ref();
    p->begin_run(s->run, deadline_ns);
    *out = s;
    return 0;
  });
}

int sluice_retry_session_begin(sluice_retry_session *s, uint64_t *attempt_deadline_ns,
                               int *status) {
  if (!s) return fail(SLUICE_EINVAL, "sluice_retry_session_begin: session is NULL");
  if (s->run.over) return fail(SLUICE_ESTATE, "sluice_retry_session_begin: the run is over");
  if (s->run.in_attempt)
    return fail(SLUICE_ESTATE, "sluice_retry_session_begin: the attempt begun is not ended");
  Policy *p = s->policy;
  if (int st = p->before_attempt(s->run)) {
    if (status) *status = st;
    return 0;
  }
  if (attempt_deadline_ns) {
    uint64_t d = p->attempt_timeout_ns() ? s->run.attempt_start_ns + p->attempt_timeout_ns() : 0;
    if (s->run.deadline_ns && (!d || s->run.deadline_ns < d)) d = s->run.deadline_ns;
    *attempt_deadline_ns = d;
  }
  return 1;
}

int sluice_retry_session_end(sluice_retry_session *s, int outcome, int code,
                             uint64_t retry_after_ns, uint64_t *delay_ns, int *status) {
  if (!s) return fail(SLUICE_EINVAL, "sluice_retry_session_end: session is NULL");
  if (!known_outcome(outcome))
    return fail(SLUICE_EINVAL, "sluice_retry_session_end: outcome %d is not a sluice_retry_outcome",
                outcome);
  if (outcome != SLUICE_RETRY_SUCCESS && code == 0)
    return fail(SLUICE_EINVAL, "sluice_retry_session_end: a failure needs a non-zero code");
  if (!s->run.in_attempt)
    return fail(SLUICE_ESTATE, "sluice_retry_session_end: no attempt is begun");
  Verdict v = s->policy->after_attempt(s->run, outcome, code, retry_after_ns);
  if (v.retry) {
    if (delay_ns) *delay_ns = v.delay_ns;
    return 1;
  }
  if (status) *status = v.status;
  return 0;
}

uint32_t sluice_retry_session_attempts(const sluice_retry_session *s) {
  return s ? s->run.attempts : 0;
}

void sluice_retry_session_free(sluice_retry_session *s) {
  if (!s) return;
  Policy *p = s->policy;
  if (!s->run.over) {
    p->abandon_attempt(s->run);
    p->finish(s->run, SLUICE_ECANCELED);
  }
  delete s;
  p->unref();
}

int sluice_retry_next_delay(const sluice_retry_options *opts, uint32_t retry,
                            uint64_t prev_delay_ns, uint64_t *rng_state, uint64_t *delay_ns) {
  if (!opts) return fail(SLUICE_EINVAL, "sluice_retry_next_delay: opts is NULL");
  if (!delay_ns) return fail(SLUICE_EINVAL, "sluice_retry_next_delay: delay_ns is NULL");
  if (retry == 0)
    return fail(SLUICE_EINVAL, "sluice_retry_next_delay: retry is 0 (1 is the wait before the "
                "second attempt)");
  if (int rc = sluice::check_version("sluice_retry_options", opts->version,
                                     SLUICE_RETRY_OPTIONS_VERSION))
    return rc;
  sluice::retry::Backoff b;
  if (int rc = sluice::retry::validate(*opts, "sluice_retry_next_delay", &b)) return rc;
  if (!rng_state && b.jitter != SLUICE_RETRY_JITTER_NONE)
    return fail(SLUICE_EINVAL, "sluice_retry_next_delay: rng_state is NULL with a jitter");
  *delay_ns = b.delay(retry, prev_delay_ns, rng_state);
  return 0;
}

uint64_t sluice_retry_seed(uint64_t seed, uint64_t run) {
  return sluice::retry::run_seed(seed, run);
}

int sluice_retry_stats_get(const sluice_retry *p, sluice_retry_stats *out) {
  if (!p) return fail(SLUICE_EINVAL, "sluice_retry_stats_get: policy is NULL");
  if (!out) return fail(SLUICE_EINVAL, "sluice_retry_stats_get: out is NULL");
  sluice_retry_stats full{};
  full.size = sizeof full;
  sluice::retry::unwrap(p)->fill_stats(&full);
  return sluice::copy_sized(out, full, "sluice_retry_stats_get");
}

}  // extern "C"

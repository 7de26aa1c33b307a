#include "retry/policy.h"

#include <cstring>
#include <string>

#include "common/error.h"
#include "retry/run.h"

namespace sluice::retry {

namespace {
constexpr uint64_t kNsPerMs = 1000000;
constexpr int64_t kMilli = 1000;  // budget tokens are counted in thousandths
}  // namespace

int Policy::create(Runtime *rt, const sluice_retry_options &o, Policy **out) {
  Backoff b;
  if (int rc = validate(o, "sluice_retry_new", &b)) return rc;
  auto *p = new Policy();
  p->rt_ = rt;
  p->backoff_ = b;
  p->max_attempts_ = o.max_attempts;
  p->total_timeout_ns_ = uint64_t(o.total_timeout_ms) * kNsPerMs;
  p->attempt_timeout_ns_ = uint64_t(o.attempt_timeout_ms) * kNsPerMs;
  // Without a seed, the time and the policy's address keep two policies
  // made in the same nanosecond apart.
  p->seed_ = o.seed ? o.seed : mix64(uv_hrtime() ^ reinterpret_cast<uintptr_t>(p));
  if (o.budget_ratio > 0) {
    p->budget_ratio_m_ = int64_t(o.budget_ratio * kMilli + 1e-9);
    int64_t tokens = o.budget_tokens;
    p->budget_cap_m_ = (tokens > 1 ? tokens : 1) * kMilli;
    p->balance_m_.store(tokens * kMilli, std::memory_order_relaxed);
  }
  p->breaker_ = o.breaker ? sluice::unwrap(o.breaker) : nullptr;
  p->monitor_ = o.monitor;
  p->on_retry_ = o.on_retry;
  p->event_ud_ = o.event_user_data;
  p->clock_ = o.clock;
  p->clock_ud_ = o.clock_user_data;
  if (p->monitor_) {
    std::string name = o.name ? o.name : "retry";
    std::string attempt = name + ".attempt", run = name + ".run";
    int rc =
        sluice_monitor_series(p->monitor_, attempt.data(), attempt.size(), &p->series_attempt_);
    if (rc == 0) rc = sluice_monitor_series(p->monitor_, run.data(), run.size(), &p->series_run_);
    if (rc != 0) {
      delete p;
      return rc;
    }
  }
  *out = p;
  return 0;
}

RunCounters &Policy::counters() {
  // Threads' stacks lie megabytes apart, so a few bits of a stack address
  // tell threads apart without thread-local storage (a __tls_get_addr call
  // from a shared library). Two threads may share a stripe: only speed
  // depends on it, and a run may end on another stripe than it began.
  auto sp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  return stripes_[((sp >> 21) ^ (sp >> 24)) & (kStripes - 1)];
}

void Policy::deposit() {
  if (!budget_ratio_m_) return;
  int64_t b = balance_m_.load(std::memory_order_relaxed);
  // A full balance (the usual case) costs a load and no write.
  while (b < budget_cap_m_) {
    int64_t nb = b + budget_ratio_m_ < budget_cap_m_ ? b + budget_ratio_m_ : budget_cap_m_;
    if (balance_m_.compare_exchange_weak(b, nb, std::memory_order_relaxed)) return;
  }
}

bool Policy::withdraw() {
  if (!budget_ratio_m_) return true;
  int64_t b = balance_m_.load(std::memory_order_relaxed);
  while (b >= kMilli)
    if (balance_m_.compare_exchange_weak(b, b - kMilli, std::memory_order_relaxed)) return true;
  return false;
}

void Policy::begin_run(RunState &r, uint64_t deadline_ns) {
  r.begun = true;
  counters().runs.fetch_add(1, std::memory_order_relaxed);
  deposit();
  r.timed = deadline_ns || total_timeout_ns_ || attempt_timeout_ns_ || breaker_ || monitor_;
  if (r.timed) r.start_ns = now();
  r.deadline_ns = deadline_ns;
  if (total_timeout_ns_) {
    uint64_t own = r.start_ns + total_timeout_ns_;
    if (!r.deadline_ns || own < r.deadline_ns) r.deadline_ns = own;
  }
}

int Policy::before_attempt(RunState &r) {
  if (closed()) {
    finish(r, SLUICE_ECLOSED);
    return SLUICE_ECLOSED;
  }
  uint64_t t = r.timed ? now() : 0;
  if (r.deadline_ns && t >= r.deadline_ns) {
    deadline_stops_.fetch_add(1, std::memory_order_relaxed);
    finish(r, SLUICE_ETIMEDOUT);
    return SLUICE_ETIMEDOUT;
  }
  if (breaker_ && breaker_->allow(&r.ticket) != 0) {
    breaker_refusals_.fetch_add(1, std::memory_order_relaxed);
    finish(r, SLUICE_EOPEN);
    return SLUICE_EOPEN;
  }
  r.attempts++;
  counters().attempts.fetch_add(1, std::memory_order_relaxed);
  r.attempt_start_ns = t;
  r.in_attempt = true;
  return 0;
}

Verdict Policy::after_attempt(RunState &r, int outcome, int code, uint64_t retry_after_ns,
                              int stop_status) {
  r.in_attempt = false;
  uint64_t t = r.timed ? now() : 0;
  uint64_t took = t > r.attempt_start_ns ? t - r.attempt_start_ns : 0;
  if (breaker_) breaker_->record(r.ticket, outcome == SLUICE_RETRY_RETRYABLE, took);
  int result = outcome == SLUICE_RETRY_SUCCESS ? 0 : code;
  record_monitor(series_attempt_, took, result);
  r.last_code = result;
  if (outcome != SLUICE_RETRY_RETRYABLE) {
    finish(r, result);
    return {false, result, 0};
  }
  if (stop_status) {
    finish(r, stop_status);
    return {false, stop_status, 0};
  }
  if (r.attempts >= max_attempts_) {
    finish(r, code);
    return {false, code, 0};
  }
  // Open now (perhaps tripped by this very attempt): waiting to be refused
  // would only cost the caller the wait and the budget a token.
  if (breaker_ && breaker_->state() == SLUICE_BREAKER_OPEN) {
    breaker_refusals_.fetch_add(1, std::memory_order_relaxed);
    finish(r, SLUICE_EOPEN);
    return {false, SLUICE_EOPEN, 0};
  }
  if (!r.rng_ready) {
    r.rng = run_seed(seed_, retried_runs_.fetch_add(1, std::memory_order_relaxed));
    r.rng_ready = true;
  }
  uint64_t d = backoff_.delay(r.attempts, r.prev_delay_ns, &r.rng);
  r.prev_delay_ns = d;
  uint64_t wait = retry_after_ns > d ? retry_after_ns : d;
  // A retry that could not start before the deadline is not waited for.
  if (r.deadline_ns && (t >= r.deadline_ns || wait >= r.deadline_ns - t)) {
    deadline_stops_.fetch_add(1, std::memory_order_relaxed);
    finish(r, SLUICE_ETIMEDOUT);
    return {false, SLUICE_ETIMEDOUT, 0};
  }
  if (!withdraw()) {
    budget_refusals_.fetch_add(1, std::memory_order_relaxed);
    finish(r, SLUICE_EBUDGET);
    return {false, SLUICE_EBUDGET, 0};
  }
  if (on_retry_) on_retry_(event_ud_, r.attempts, code, wait);
  return {true, 0, wait};
}

void Policy::abandon_attempt(RunState &r) {
  if (!r.in_attempt) return;
  r.in_attempt = false;
  if (breaker_) breaker_->release(r.ticket);
}

void Policy::finish(RunState &r, int status) {
  if (r.over) return;
  r.over = true;
  r.status = status;
  if (!r.begun) return;  // cancelled before it started: never counted
  bool first = r.attempts <= 1;
  RunCounters &c = counters();
  if (status == 0)
    (first ? c.successes_first : c.successes_retry).fetch_add(1, std::memory_order_relaxed);
  else
    (first ? c.failures_first : c.failures_retry).fetch_add(1, std::memory_order_relaxed);
  if (status == SLUICE_ECANCELED) cancelled_.fetch_add(1, std::memory_order_relaxed);
  if (monitor_) record_monitor(series_run_, now() - r.start_ns, status);
}

void Policy::record_monitor(uint32_t series, uint64_t d, int outcome) const {
  if (monitor_) sluice_monitor_record_id(monitor_, series, d, outcome);
}

void Policy::close() {
  closed_.store(true, std::memory_order_release);
  if (rt_) {
    // ECLOSED: the runtime's shutdown has ended (or is ending) every run.
    (void)rt_->call(
        [](void *arg) {
          auto *p = static_cast<Policy *>(arg);
          while (p->pending_) p->pending_->stop(SLUICE_ECLOSED);
        },
        this);
  }
  unref();
}

void Policy::link(RunOp *op) {
  op->list_prev_ = nullptr;
  op->list_next_ = pending_;
  if (pending_) pending_->list_prev_ = op;
  pending_ = op;
}

void Policy::unlink(RunOp *op) {
  if (op->list_prev_)
    op->list_prev_->list_next_ = op->list_next_;
  else
    pending_ = op->list_next_;
  if (op->list_next_) op->list_next_->list_prev_ = op->list_prev_;
  op->list_prev_ = op->list_next_ = nullptr;
}

void Policy::fill_stats(sluice_retry_stats *st) const {
  auto get = [](const std::atomic<uint64_t> &a) { return a.load(std::memory_order_relaxed); };
  // Sums over the stripes; a run may begin on one stripe and end on another,
  // so only the sums mean anything. Outcomes are read before runs, so a run
  // finishing meanwhile is never missing from both sides.
  for (const RunCounters &c : stripes_) {
    st->successes_first += get(c.successes_first);
    st->successes_after_retry += get(c.successes_retry);
    st->failures_first += get(c.failures_first);
    st->failures_after_retry += get(c.failures_retry);
  }
  for (const RunCounters &c : stripes_) {
    st->runs += get(c.runs);
    st->attempts += get(c.attempts);
  }
  uint64_t done = st->successes_first + st->successes_after_retry + st->failures_first +
                  st->failures_after_retry;
  st->in_flight = st->runs > done ? st->runs - done : 0;
  st->budget_refusals = get(budget_refusals_);
  st->breaker_refusals = get(breaker_refusals_);
  st->deadline_stops = get(deadline_stops_);
  st->attempt_timeouts = get(attempt_timeouts_);
  st->cancelled = get(cancelled_);
  st->late_reports = get(late_reports_);
  st->budget_balance = budget_ratio_m_ ? double(balance_m_.load(std::memory_order_relaxed)) / kMilli
                                       : 0.0;
}

}  // namespace sluice::retry

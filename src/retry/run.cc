#include "retry/run.h"

#include <new>

#include "common/error.h"
#include "runtime/runtime.h"

void sluice_retry_attempt::unref() {
  if (refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  sluice::retry::RunOp *o = op;
  if (!embedded) delete static_cast<sluice::retry::HeapAttempt *>(this);
  o->unref();
}

namespace sluice::retry {

RunOp::RunOp(Runtime *rt, Policy *p, uint64_t deadline_ns, sluice_retry_attempt_fn attempt_fn,
             sluice_retry_done_cb done_cb, void *ud, sluice_free_cb free_ud)
    : sluice_op(rt, nullptr, ud, free_ud),
      policy_(p),
      deadline_arg_(deadline_ns),
      attempt_fn_(attempt_fn),
      done_cb_(done_cb) {
  p->ref();
  first_.embedded = true;
}

void RunOp::on_start() {
  policy_->begin_run(run_, deadline_arg_);
  policy_->link(this);
  linked_ = true;
  start_attempt();
}

void RunOp::start_attempt() {
  // User code runs below (a breaker's state listener, the attempt function)
  // and may cancel the run, even drop every other reference to it: this
  // one keeps the op alive until we are done here.
  ref();
  sluice_retry_attempt *a = &first_;
  if (run_.attempts > 0) {
    try {
      a = new HeapAttempt();
    } catch (const std::bad_alloc &) {
      policy_->finish(run_, SLUICE_ENOMEM);
      end(SLUICE_ENOMEM);
      unref();
      return;
    }
  }
  int st = policy_->before_attempt(run_);
  if (st || is_done()) {
    if (!st) policy_->abandon_attempt(run_);  // cancelled from a listener
    if (a != &first_) delete static_cast<HeapAttempt *>(a);
    if (!is_done()) end(st);
    unref();
    return;
  }
  // Two references: the user's and the run's; each holds the op.
  a->op = this;
  a->number = run_.attempts;
  a->refs.store(2, std::memory_order_relaxed);
  ref();
  current_ = a;
  phase_ = kAttempt;

  // The attempt's timeout, cut to the run's deadline, measured on the
  // policy's clock and waited for in real time.
  uint64_t limit = policy_->attempt_timeout_ns();
  if (run_.deadline_ns) {
    uint64_t start = run_.attempt_start_ns;
    uint64_t left = run_.deadline_ns > start ? run_.deadline_ns - start : 0;
    if (!limit || left < limit) limit = left;
  }
  if (limit) {
    a->deadline_ns = uv_hrtime() + limit;
    arm(a->deadline_ns);
  } else {
    a->deadline_ns = 0;
    disarm();
  }

  in_call_ = a;
  attempt_fn_(user_data_, a);
  in_call_ = nullptr;
  if (current_ == a && a->state.load(std::memory_order_acquire) == kReported) reported(a);
  unref();
}

void RunOp::reported(sluice_retry_attempt *a) {
  settle(a, a->outcome, a->code, a->retry_after_ns);
}

void RunOp::settle(sluice_retry_attempt *a, int outcome, int code, uint64_t retry_after_ns,
                   int stop_status) {
  current_ = nullptr;
  phase_ = kIdle;
  disarm();
  ref();  // listeners called from here (on_retry, the breaker's) may end the run
  Verdict v = policy_->after_attempt(run_, outcome, code, retry_after_ns, stop_status);
  a->unref();  // the run's reference
  if (!is_done()) {
    if (!v.retry) {
      end(v.status);
    } else {
      phase_ = kSleep;
      // A zero wait still goes through the schedule, so the next attempt
      // never runs inside this one's report.
      arm(uv_hrtime() + v.delay_ns);
    }
  }
  unref();
}

void RunOp::arm(uint64_t when) {
  runtime()->schedule(this, when);
  armed_ = true;
}

void RunOp::disarm() {
  // Most runs never arm the op's timer: skip the schedule's bookkeeping.
  if (!armed_) return;
  runtime()->unschedule(this);
  armed_ = false;
}

void RunOp::on_deadline() {
  armed_ = false;  // the runtime took the op off its schedule to call this
  if (phase_ == kSleep) {
    phase_ = kIdle;
    start_attempt();
    return;
  }
  if (phase_ != kAttempt) return;
  sluice_retry_attempt *a = current_;
  int expected = kPending;
  if (a->state.compare_exchange_strong(expected, kTimedOut, std::memory_order_acq_rel)) {
    policy_->count_attempt_timeout();
    settle(a, SLUICE_RETRY_RETRYABLE, SLUICE_ETIMEDOUT, 0);
  } else {
    // The report won the race; its posted item will find it handled.
    reported(a);
  }
}

void RunOp::stop(int status) {
  if (is_done()) return;
  if (phase_ == kAttempt) {
    sluice_retry_attempt *a = current_;
    int expected = kPending;
    int to = status == SLUICE_ECANCELED ? kCancelled : kClosed;
    if (!a->state.compare_exchange_strong(expected, to, std::memory_order_acq_rel)) {
      // Reported before the stop: a success stands, a failure is recorded
      // and ends the run with `status` instead of a retry.
      settle(a, a->outcome, a->code, a->retry_after_ns, status);
      return;
    }
    current_ = nullptr;
    phase_ = kIdle;
    policy_->abandon_attempt(run_);
    a->unref();
  }
  policy_->finish(run_, status);
  end(status);
}

void RunOp::end(int status) {
  if (linked_) {
    policy_->unlink(this);
    linked_ = false;
  }
  complete(status);
}

}  // namespace sluice::retry

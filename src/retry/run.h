// An asynchronous run: a sluice_op on the loop whose one deadline slot is,
// by turns, the wait before the next attempt and the attempt's timeout.
//
// Ownership of an attempt (the public sluice_retry_attempt): it carries
// two references, the user's (given back by sluice_retry_attempt_done,
// however late) and the run's (given back when the run stops waiting for
// it: report, timeout, cancel, close), and while alive it holds a
// reference on the op. So a report that arrives after the run moved on
// finds its attempt and op still in memory, sees the attempt already
// ended, and is ignored.
//
// Who ends an attempt is settled by one compare-and-swap on its state:
// PENDING to REPORTED (the user), or to TIMED_OUT / CANCELLED / CLOSED
// (the loop). A report from another thread is posted to the loop, which
// acts on it only if that attempt is still the run's current one.
#pragma once

#include <atomic>
#include <cstdint>

#include "op/op.h"
#include "retry/policy.h"

namespace sluice::retry {

enum AttemptState : int { kPending = 0, kReported, kTimedOut, kCancelled, kClosed };

}  // namespace sluice::retry

struct sluice_retry_attempt {
  std::atomic<uint32_t> refs{0};
  std::atomic<int> state{sluice::retry::kPending};
  sluice::retry::RunOp *op = nullptr;
  uint32_t number = 0;
  uint64_t deadline_ns = 0;  // sluice_now_ns time, 0 = none
  // Written by the reporting thread before its winning CAS; read by the
  // loop only after seeing REPORTED.
  int outcome = 0, code = 0;
  uint64_t retry_after_ns = 0;
  bool embedded = false;  // the run's first attempt lives inside the op

  void unref();
};

namespace sluice::retry {

struct HeapAttempt : sluice_retry_attempt, mem::Allocated {};

class RunOp final : public sluice_op {
 public:
  RunOp(Runtime *rt, Policy *p, uint64_t deadline_ns, sluice_retry_attempt_fn attempt_fn,
        sluice_retry_done_cb done_cb, void *ud, sluice_free_cb free_ud);
  ~RunOp() override { policy_->unref(); }

  void on_start() override;
  void on_deadline() override;
  void on_cancel() override { stop(SLUICE_ECANCELED); }
  void on_shutdown() override { stop(SLUICE_ECLOSED); }
  void stop(int status);

  // Loop thread: attempt `a`, reported by the user, is to be acted on.
  void reported(sluice_retry_attempt *a);
  bool is_current(const sluice_retry_attempt *a) const { return current_ == a; }
  bool in_call(const sluice_retry_attempt *a) const { return in_call_ == a; }
  Policy *policy() const { return policy_; }

  // The policy's list of pending runs (loop thread).
  RunOp *list_prev_ = nullptr, *list_next_ = nullptr;

 protected:
  void deliver(int status) override { done_cb_(user_data_, status, run_.last_code, run_.attempts); }

 private:
  enum Phase { kIdle, kAttempt, kSleep };
  void start_attempt();
  void settle(sluice_retry_attempt *a, int outcome, int code, uint64_t retry_after_ns,
              int stop_status = 0);
  void end(int status);  // the run is counted already: unlink and complete
  void arm(uint64_t when);  // the op's one deadline slot, in sluice_now_ns time
  void disarm();

  Policy *policy_;
  uint64_t deadline_arg_;
  sluice_retry_attempt_fn attempt_fn_;
  sluice_retry_done_cb done_cb_;
  RunState run_;
  Phase phase_ = kIdle;
  sluice_retry_attempt *current_ = nullptr;  // the attempt the run waits for
  sluice_retry_attempt *in_call_ = nullptr;  // inside attempt_fn_ for it
  bool linked_ = false;
  bool armed_ = false;
  sluice_retry_attempt first_;
};

}  // namespace sluice::retry

// A retry policy (public sluice_retry): the decisions of a run, shared by
// asynchronous runs (run.cc, on the loop) and caller-driven sessions (in
// the caller's thread). The policy itself holds only immutable settings,
// the shared budget and atomic counters, so runs in any thread can use it
// at once.
#pragma once

#include <atomic>
#include <cstdint>

#include "alloc/alloc.h"
#include "breaker/breaker.h"
#include "retry/backoff.h"
#include "runtime/runtime.h"
#include "sluice/retry.h"

namespace sluice::retry {

class RunOp;

// One run's progress. Touched by one thread at a time: the loop thread for
// an asynchronous run, the session's user for a session.
struct RunState {
  uint64_t start_ns = 0;  // policy clock; read only when `timed`
  uint64_t deadline_ns = 0;  // 0: none
  uint64_t attempt_start_ns = 0;
  uint64_t prev_delay_ns = 0;
  uint64_t rng = 0;
  uint64_t ticket = 0;  // breaker ticket of the attempt in flight
  uint32_t attempts = 0;
  int last_code = 0;
  int status = 0;
  bool timed = false;  // something needs the clock: a deadline, breaker, monitor, timeout
  bool begun = false;
  bool in_attempt = false;
  bool over = false;
  bool rng_ready = false;
};

// Counters every run touches, one set per stripe: threads running the same
// policy then do not bounce one cache line between them on every run.
struct alignas(64) RunCounters {
  std::atomic<uint64_t> runs{0}, attempts{0};
  std::atomic<uint64_t> successes_first{0}, successes_retry{0};
  std::atomic<uint64_t> failures_first{0}, failures_retry{0};
};

struct Verdict {
  bool retry;
  int status;         // final status when !retry
  uint64_t delay_ns;  // wait before the next attempt when retry
};

class Policy : public mem::Allocated {
 public:
  static int create(Runtime *rt, const sluice_retry_options &o, Policy **out);

  void ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  Runtime *runtime() const { return rt_; }
  uint64_t now() const { return clock_ ? clock_(clock_ud_) : uv_hrtime(); }
  uint64_t attempt_timeout_ns() const { return attempt_timeout_ns_; }
  bool closed() const { return closed_.load(std::memory_order_acquire); }

  // A run's life. Whichever of these ends the run has already counted it
  // (finish) when it returns the final status.
  void begin_run(RunState &r, uint64_t deadline_ns);
  // 0: make the attempt (r.attempt_start_ns is set when r.timed); else the
  // run is over with that status.
  int before_attempt(RunState &r);
  // The attempt's outcome. With `stop_status` set, a failed attempt ends
  // the run with that status instead of retrying (a cancel that came
  // after the report).
  Verdict after_attempt(RunState &r, int outcome, int code, uint64_t retry_after_ns,
                        int stop_status = 0);
  // An attempt that ends without an outcome (cancelled, closed): its
  // breaker ticket is given back.
  void abandon_attempt(RunState &r);
  // Counts the run's end once (later calls do nothing).
  void finish(RunState &r, int status);

  void count_attempt_timeout() { attempt_timeouts_.fetch_add(1, std::memory_order_relaxed); }
  void count_late_report() { late_reports_.fetch_add(1, std::memory_order_relaxed); }

  // sluice_retry_free: pending asynchronous runs end with ECLOSED (on the
  // loop), sessions see ECLOSED at their next begin; the memory goes with
  // the last run or session.
  void close();

  // The asynchronous runs pending on the loop (loop thread only).
  void link(RunOp *op);
  void unlink(RunOp *op);

  void fill_stats(sluice_retry_stats *out) const;

 private:
  Policy() = default;
  ~Policy() = default;
  void deposit();
  bool withdraw();
  void record_monitor(uint32_t series, uint64_t d, int outcome) const;

  Runtime *rt_ = nullptr;
  Backoff backoff_;
  uint32_t max_attempts_ = 0;
  uint64_t total_timeout_ns_ = 0, attempt_timeout_ns_ = 0;
  uint64_t seed_ = 0;
  int64_t budget_ratio_m_ = 0;  // thousandths of a token per run; 0 = off
  int64_t budget_cap_m_ = 0;
  Breaker *breaker_ = nullptr;
  sluice_monitor *monitor_ = nullptr;
  uint32_t series_attempt_ = 0, series_run_ = 0;
  sluice_retry_event_cb on_retry_ = nullptr;
  void *event_ud_ = nullptr;
  sluice_clock_cb clock_ = nullptr;
  void *clock_ud_ = nullptr;

  std::atomic<uint32_t> refs_{1};  // the handle's, plus one per run and session
  std::atomic<bool> closed_{false};
  RunOp *pending_ = nullptr;  // loop thread only

  static constexpr int kStripes = 8;
  RunCounters &counters();

  // Read-mostly: at the cap (the usual case) runs only load it.
  alignas(64) std::atomic<int64_t> balance_m_{0};
  RunCounters stripes_[kStripes];
  // Rare events: shared counters are fine.
  alignas(64) std::atomic<uint64_t> retried_runs_{0};  // seeds the k-th run that retries
  std::atomic<uint64_t> budget_refusals_{0}, breaker_refusals_{0}, deadline_stops_{0};
  std::atomic<uint64_t> attempt_timeouts_{0}, cancelled_{0}, late_reports_{0};
};

inline Policy *unwrap(sluice_retry *p) { return reinterpret_cast<Policy *>(p); }
inline const Policy *unwrap(const sluice_retry *p) { return reinterpret_cast<const Policy *>(p); }

}  // namespace sluice::retry

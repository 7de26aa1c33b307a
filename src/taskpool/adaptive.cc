// The adaptive limit: additive increase, multiplicative decrease, decided
// once per window of `limit` finished pieces of work (docs/taskpool.md).
//
// Why these choices: a window as long as the limit is about one "round" of
// the work at that concurrency, so every decision sees fresh samples of
// the current limit; counting slow or failed pieces (rather than averaging
// latencies) reads as "the 90th percentile is above the target" without
// keeping samples; growing only when the limit was actually reached keeps
// an idle pool from creeping up to its ceiling.
#include <algorithm>

#include "taskpool/pool.h"

namespace sluice::taskpool {

void Pool::adapt(uint64_t run_ns, bool failed) {
  win_n_++;
  if (failed || run_ns > target_ns_) win_bad_++;
  uint32_t lim = limit_.load(std::memory_order_relaxed);
  if (win_n_ < lim) return;
  bool reached = saturated_.exchange(false, std::memory_order_relaxed) ||
                 waiting_of(state_.load(std::memory_order_relaxed)) > 0;
  uint32_t next = lim;
  if (win_bad_ * 10 > win_n_) {
    uint32_t step = std::max<uint32_t>(1, lim / 4);
    next = lim - std::min(step, lim - std::min(lim, min_));
    if (next < min_) next = min_;
    if (next < lim) lowered_++;
  } else if (reached && lim < ceiling_) {
    next = lim + 1;
    raised_++;
  }
  win_n_ = win_bad_ = 0;
  if (next != lim) limit_.store(next, std::memory_order_relaxed);
}

}  // namespace sluice::taskpool

// Permits: the lock-free path (try_acquire, release) and the records that
// name them.
//
// A permit is a slot plus a record. try_acquire takes the slot with one
// compare-and-swap on state_ (refused if nobody may pass: the pool is full,
// closed, or requests are waiting, which go first), then claims a free
// record with one compare-and-swap on its word, starting at the record the
// latest release freed. release checks the handle against the record's
// generation, frees the record, then gives the slot back with one atomic
// subtraction. Only when that subtraction shows waiters (or a closed pool,
// or the adaptive limit is on) does it take the mutex to hand the slot on.
#include "common/error.h"
#include "sluice/monitor.h"
#include "taskpool/pool.h"

namespace sluice::taskpool {

uint32_t Pool::claim(uint32_t *gen) {
  uint32_t n = nrecords_.load(std::memory_order_acquire);
  uint32_t i = free_hint_.load(std::memory_order_relaxed);
  if (i >= n) i = 0;
  for (uint32_t tried = 0; tried < n; tried++) {
    Record &r = rec(i);
    uint64_t w = r.word.load(std::memory_order_relaxed);
    if ((w & 3) == kFree &&
        r.word.compare_exchange_strong(w, (w & ~uint64_t{3}) | kHeld, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
      *gen = uint32_t(w >> 2);
      return i;
    }
    if (++i == n) i = 0;
  }
  return UINT32_MAX;
}

bool Pool::grow() {
  uint32_t n = nrecords_.load(std::memory_order_relaxed);
  if (n + kChunkRecords > kMaxRecords) return false;
  size_t bytes = sizeof(Record) * kChunkRecords + 64;
  void *raw = mem::allocate(bytes);
  if (!raw) return false;
  auto aligned = (reinterpret_cast<uintptr_t>(raw) + 63) & ~uintptr_t{63};
  auto *chunk = reinterpret_cast<Record *>(aligned);
  for (uint32_t i = 0; i < kChunkRecords; i++) new (&chunk[i]) Record();
  chunk_raw_[n >> kChunkBits] = raw;
  chunks_[n >> kChunkBits].store(chunk, std::memory_order_relaxed);
  // Published by the count: a reader that sees the new count sees the chunk.
  nrecords_.store(n + kChunkRecords, std::memory_order_release);
  return true;
}

uint32_t Pool::claim_locked(uint32_t *gen) {
  for (;;) {
    uint32_t idx = claim(gen);
    if (idx != UINT32_MAX) return idx;
    if (!grow()) return UINT32_MAX;
  }
}

void Pool::note_running(uint32_t used) {
  uint64_t peak = peak_running_.load(std::memory_order_relaxed);
  while (used > peak &&
         !peak_running_.compare_exchange_weak(peak, used, std::memory_order_relaxed)) {
  }
}

int Pool::try_acquire(uint64_t *handle, bool count_busy) {
  uint64_t w = state_.load(std::memory_order_relaxed);
  uint32_t lim = limit_.load(std::memory_order_relaxed);
  do {
    if (__builtin_expect((w & (kClosed | kWaitMask)) != 0 || used_of(w) >= lim, 0)) {
      if (w & kClosed) return SLUICE_ECLOSED;
      if (count_busy) busy_.fetch_add(1, std::memory_order_relaxed);
      if (adaptive_) saturated_.store(true, std::memory_order_relaxed);
      return SLUICE_EAGAIN;
    }
  } while (!state_.compare_exchange_weak(w, w + 1, std::memory_order_acquire,
                                         std::memory_order_relaxed));
  uint32_t used = used_of(w) + 1;
  if (used > peak_running_.load(std::memory_order_relaxed)) note_running(used);
  if (adaptive_ && used >= lim) saturated_.store(true, std::memory_order_relaxed);
  uint32_t gen = 0;
  uint32_t idx = claim(&gen);
  if (__builtin_expect(idx == UINT32_MAX, 0)) {
    std::unique_lock<std::mutex> lk(mu_);
    idx = claim_locked(&gen);
    if (idx == UINT32_MAX) {
      lk.unlock();
      uint64_t old = state_.fetch_sub(1, std::memory_order_acq_rel);
      if (old & (kWaitMask | kClosed)) after_release(old, 0, 0, false);
      return SLUICE_ENOMEM;
    }
  }
  Record &r = rec(idx);
  r.start.store(permit_now(), std::memory_order_relaxed);
  bump(r.acquired, 1);
  *handle = encode(idx, gen);
  return 0;
}

int Pool::release(uint64_t handle, int outcome) {
  uint32_t idx = uint32_t(handle >> 32) & 0x7fffffffu;
  uint32_t gen = uint32_t(handle) ^ salt_;
  if (__builtin_expect(!(handle >> 63) || idx >= nrecords_.load(std::memory_order_acquire), 0)) {
    bad_releases_.fetch_add(1, std::memory_order_relaxed);
    return fail(SLUICE_ESTATE, "sluice_taskpool_release: not a permit of this pool");
  }
  Record &r = rec(idx);
  uint64_t held = (uint64_t{gen} << 2) | kHeld;
  // The one winner of concurrent releases of the same permit owns the
  // record until it frees it below.
  if (__builtin_expect(!r.word.compare_exchange_strong(held, (uint64_t{gen} << 2) | kReleasing,
                                                       std::memory_order_acq_rel,
                                                       std::memory_order_relaxed),
                       0)) {
    bad_releases_.fetch_add(1, std::memory_order_relaxed);
    return fail(SLUICE_ESTATE, "sluice_taskpool_release: the permit was already released, or "
                               "is not one of this pool's");
  }
  uint64_t start = r.start.load(std::memory_order_relaxed);
  uint64_t end = permit_now();
  uint64_t held_ns = end > start ? end - start : 0;
  bump(outcome == 0 ? r.completed : r.failed, 1);
  bump(r.run_ns, held_ns);
  r.word.store(uint64_t(uint32_t(gen + 1)) << 2 | kFree, std::memory_order_release);
  free_hint_.store(idx, std::memory_order_relaxed);
  uint64_t old = state_.fetch_sub(1, std::memory_order_acq_rel);
  if (monitor_) sluice_monitor_record_id(monitor_, series_run_, held_ns, outcome);
  if (__builtin_expect((old & (kWaitMask | kClosed)) != 0 || adaptive_, 0))
    after_release(old, held_ns, outcome, adaptive_);
  return 0;
}

void Pool::after_release(uint64_t old_word, uint64_t run_ns, int outcome, bool sample) {
  Handoff h;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (sample) adapt(run_ns, outcome != 0);
    pump(h);
    if (old_word & kClosed) idle_cv_.notify_all();
  }
  flush(h);
}

}  // namespace sluice::taskpool

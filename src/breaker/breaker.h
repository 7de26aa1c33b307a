// The circuit breaker (public sluice_breaker). The state and its
// generation live in one atomic word, so "may I call?" while CLOSED is a
// single load; everything else (the window, half-open trials, transitions)
// happens under a small lock held for a few dozen instructions.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "alloc/alloc.h"
#include "sluice/breaker.h"

namespace sluice {

// A small lock for critical sections of a few dozen instructions: one
// compare-and-swap to take it and one exchange to give it back when nobody
// waits. Contended, it sleeps on a futex at once, so threads
// hammering one breaker take turns in streaks instead of bouncing its cache
// lines on every call.
class FutexLock {
 public:
  void lock() noexcept {
    int free = 0;
    if (state_.compare_exchange_strong(free, 1, std::memory_order_acquire)) return;
    contended();
  }
  void unlock() noexcept {
    if (state_.exchange(0, std::memory_order_release) == 2) wake();
  }

 private:
  void contended() noexcept;
  void sleep() noexcept;  // while state_ is 2
  void wake() noexcept;   // one sleeper
  std::atomic<int> state_{0};  // 0 free, 1 held, 2 held and someone may sleep
};

class Breaker : public mem::Allocated {
 public:
  // Validates the options (message set on error); *out on success.
  static int create(const sluice_breaker_options &o, Breaker **out);

  // The fast path inline: callers inside the library (a retry policy) and
  // the C entry point share it.
  int allow(uint64_t *ticket) {
    uint64_t w = word_.load(std::memory_order_acquire);
    if ((w & 3) == SLUICE_BREAKER_CLOSED) {
      if (ticket) *ticket = w >> 2;
      return 0;
    }
    return allow_slow(w, ticket);
  }
  void record(uint64_t ticket, bool failed, uint64_t duration_ns);
  void release(uint64_t ticket);
  int state() const { return int(word_.load(std::memory_order_acquire) & 3); }
  void set_state(int to);
  void fill_stats(sluice_breaker_stats *out) const;

 private:
  struct Bucket {
    uint32_t calls = 0, failures = 0, slow = 0;
  };
  struct Change {
    int from = -1, to = -1;
    uint64_t generation = 0;
  };

  Breaker() = default;
  uint64_t now() const;
  int allow_slow(uint64_t w, uint64_t *ticket);
  void add_to_window(bool failed, bool slow, uint64_t now);
  void advance_buckets(uint64_t idx);
  void clear_window();
  bool rate_reached(uint64_t calls, uint64_t failures, uint64_t slow) const;
  // Under the lock. `now` is only read when going OPEN.
  void transition(int to, uint64_t now, Change *c);
  void notify(const Change &c) const;
  void refused();  // a call refused: counted, and recorded if monitored

  // Configuration (immutable).
  bool time_window_ = false;
  uint32_t window_calls_ = 0;
  uint64_t bucket_ns_ = 0;
  uint32_t buckets_n_ = 0;
  uint32_t minimum_calls_ = 0;
  uint32_t failure_bp_ = 0;  // basis points (1/100 of a percent); 0 = off
  uint32_t slow_bp_ = 0;
  uint64_t slow_ns_ = 0;  // 0 = slow calls not tracked
  uint64_t open_ns_ = 0;
  uint32_t trials_ = 0;
  sluice_clock_cb clock_ = nullptr;
  void *clock_ud_ = nullptr;
  sluice_breaker_state_cb on_change_ = nullptr;
  void *change_ud_ = nullptr;
  sluice_monitor *monitor_ = nullptr;
  uint32_t series_rejected_ = 0, series_opened_ = 0;

  // generation << 2 | state. Written under the lock, read anywhere.
  alignas(64) std::atomic<uint64_t> word_{(1u << 2) | SLUICE_BREAKER_CLOSED};
  std::atomic<uint64_t> open_until_{0};  // stored before word_ goes OPEN
  std::atomic<uint64_t> refused_{0};     // counted outside the lock

  alignas(64) mutable FutexLock lock_;
  // Everything below is guarded by lock_.
  std::vector<uint8_t, mem::Allocator<uint8_t>> ring_;  // COUNT: bit 0 failed, bit 1 slow
  uint32_t ring_pos_ = 0, ring_filled_ = 0;
  std::vector<Bucket, mem::Allocator<Bucket>> buckets_;  // TIME
  uint64_t last_bucket_ = 0;
  uint64_t win_calls_ = 0, win_failures_ = 0, win_slow_ = 0;
  uint32_t trials_taken_ = 0, trials_reported_ = 0;
  uint32_t trial_failures_ = 0, trial_slow_ = 0;
  uint64_t successes_ = 0, failures_ = 0, slow_ = 0, ignored_ = 0, released_ = 0;
  uint64_t opened_ = 0, half_opened_ = 0, closed_ = 0;
};

inline Breaker *unwrap(sluice_breaker *b) { return reinterpret_cast<Breaker *>(b); }
inline const Breaker *unwrap(const sluice_breaker *b) {
  return reinterpret_cast<const Breaker *>(b);
}
inline sluice_breaker *wrap(Breaker *b) { return reinterpret_cast<sluice_breaker *>(b); }

}  // namespace sluice

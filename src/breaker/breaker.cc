#include "breaker/breaker.h"

#include <time.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <cmath>
#include <cstring>
#include <string>

#include "common/error.h"

namespace sluice {

namespace {

constexpr uint64_t kNsPerMs = 1000000;
constexpr int64_t kMaxMs = int64_t{1} << 40;  // about 35 years: above is a units mistake

// A percentage in (0, 100] as basis points, at least 1.
int percent_bp(const char *what, double pct, uint32_t *bp) {
  if (!std::isfinite(pct) || pct < 0 || pct > 100)
    return fail(SLUICE_EINVAL, "sluice_breaker_options.%s: %g is outside [0, 100]", what, pct);
  long v = std::lround(pct * 100);
  *bp = pct > 0 && v < 1 ? 1 : uint32_t(v);
  return 0;
}

}  // namespace

#if defined(__linux__)
// The futex itself: libstdc++'s atomic::wait spins and yields before it
// sleeps, which brings back the bouncing this lock exists to avoid.
void FutexLock::sleep() noexcept {
  syscall(SYS_futex, &state_, FUTEX_WAIT_PRIVATE, 2, nullptr, nullptr, 0);
}
void FutexLock::wake() noexcept {
  syscall(SYS_futex, &state_, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}
#else
void FutexLock::sleep() noexcept { state_.wait(2, std::memory_order_relaxed); }
void FutexLock::wake() noexcept { state_.notify_one(); }
#endif

void FutexLock::contended() noexcept {
  // No spinning first: with two threads hammering one breaker, sleeping at
  // once (one thread then runs a streak with the lines in its cache) beat
  // spinning 100 rounds first (the lines bounce on every call): medians of
  // 54-80 ns against 76-172 ns per call over three runs of bench_retry.
  // Marked 2 whenever anyone may sleep, so the holder knows to wake one.
  while (state_.exchange(2, std::memory_order_acquire) != 0) sleep();
}

int Breaker::create(const sluice_breaker_options &o, Breaker **out) {
  if (o.window != SLUICE_BREAKER_WINDOW_COUNT && o.window != SLUICE_BREAKER_WINDOW_TIME)
    return fail(SLUICE_EINVAL, "sluice_breaker_options.window: %d is not a sluice_breaker_window",
                o.window);
  bool time = o.window == SLUICE_BREAKER_WINDOW_TIME;
  if (!time && (o.window_calls == 0 || o.window_calls > 1000000))
    return fail(SLUICE_EINVAL, "sluice_breaker_options.window_calls: %u is outside 1..1000000",
                o.window_calls);
  if (time) {
    if (o.window_ms <= 0 || o.window_ms > kMaxMs)
      return fail(SLUICE_EINVAL, "sluice_breaker_options.window_ms: %lld is outside 1..2^40",
                  static_cast<long long>(o.window_ms));
    if (o.window_buckets == 0 || o.window_buckets > 1000 ||
        uint64_t(o.window_ms) < o.window_buckets)
      return fail(SLUICE_EINVAL,
                  "sluice_breaker_options.window_buckets: %u is outside 1..1000 or makes "
                  "buckets shorter than 1 ms",
                  o.window_buckets);
  }
  if (o.minimum_calls == 0 || o.minimum_calls > 1000000)
    return fail(SLUICE_EINVAL, "sluice_breaker_options.minimum_calls: %u is outside 1..1000000",
                o.minimum_calls);
  if (!time && o.minimum_calls > o.window_calls)
    return fail(SLUICE_EINVAL,
                "sluice_breaker_options.minimum_calls: %u is above window_calls %u, so the "
                "breaker could never trip",
                o.minimum_calls, o.window_calls);
  uint32_t fail_bp = 0, slow_bp = 0;
  if (int rc = percent_bp("failure_rate_percent", o.failure_rate_percent, &fail_bp)) return rc;
  if (o.slow_call_ms < 0 || o.slow_call_ms > kMaxMs)
    return fail(SLUICE_EINVAL, "sluice_breaker_options.slow_call_ms: %lld is outside 0..2^40",
                static_cast<long long>(o.slow_call_ms));
  if (o.slow_call_ms > 0) {
    if (int rc = percent_bp("slow_rate_percent", o.slow_rate_percent, &slow_bp)) return rc;
    if (slow_bp == 0)
      return fail(SLUICE_EINVAL,
                  "sluice_breaker_options.slow_rate_percent: 0 with slow_call_ms set");
  }
  if (fail_bp == 0 && slow_bp == 0)
    return fail(SLUICE_EINVAL,
                "sluice_breaker_options: failure_rate_percent is 0 and slow calls are not "
                "tracked, so the breaker could never trip");
  if (o.open_ms <= 0 || o.open_ms > kMaxMs)
    return fail(SLUICE_EINVAL, "sluice_breaker_options.open_ms: %lld is outside 1..2^40",
                static_cast<long long>(o.open_ms));
  if (o.half_open_trials == 0 || o.half_open_trials > 65536)
    return fail(SLUICE_EINVAL, "sluice_breaker_options.half_open_trials: %u is outside 1..65536",
                o.half_open_trials);

  const char *name = o.name ? o.name : "breaker";
  size_t name_len = std::strlen(name);
  if (name_len == 0 || name_len > 64)
    return fail(SLUICE_EINVAL, "sluice_breaker_options.name: %zu bytes, not 1..64", name_len);

  auto *b = new Breaker();
  b->time_window_ = time;
  if (time) {
    b->buckets_n_ = o.window_buckets;
    b->bucket_ns_ = uint64_t(o.window_ms) * kNsPerMs / o.window_buckets;
    b->buckets_.resize(o.window_buckets);
  } else {
    b->window_calls_ = o.window_calls;
    b->ring_.resize(o.window_calls);
  }
  b->minimum_calls_ = o.minimum_calls;
  b->failure_bp_ = fail_bp;
  b->slow_bp_ = slow_bp;
  b->slow_ns_ = uint64_t(o.slow_call_ms) * kNsPerMs;
  b->open_ns_ = uint64_t(o.open_ms) * kNsPerMs;
  b->trials_ = o.half_open_trials;
  b->clock_ = o.clock;
  b->clock_ud_ = o.clock_user_data;
  b->on_change_ = o.on_state_change;
  b->change_ud_ = o.state_user_data;
  if (o.monitor) {
    std::string rejected = std::string(name, name_len) + ".rejected";
    std::string opened = std::string(name, name_len) + ".opened";
    int rc = sluice_monitor_series(o.monitor, rejected.data(), rejected.size(),
                                   &b->series_rejected_);
    if (rc == 0)
      rc = sluice_monitor_series(o.monitor, opened.data(), opened.size(), &b->series_opened_);
    if (rc != 0) {
      delete b;
      return rc;
    }
    b->monitor_ = o.monitor;
  }
  *out = b;
  return 0;
}

uint64_t Breaker::now() const {
  if (clock_) return clock_(clock_ud_);
  // Window steps and the open wait need milliseconds at best; the coarse
  // clock costs a few ns less than the precise one.
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

int Breaker::allow_slow(uint64_t w, uint64_t *ticket) {
  uint64_t now = 0;
  bool have_now = false;
  if ((w & 3) == SLUICE_BREAKER_OPEN) {
    now = this->now();
    have_now = true;
    if (now < open_until_.load(std::memory_order_relaxed)) {
      refused();
      return SLUICE_EOPEN;
    }
  }
  Change c;
  int rc = 0;
  lock_.lock();
  w = word_.load(std::memory_order_relaxed);
  if ((w & 3) == SLUICE_BREAKER_OPEN && have_now &&
      now >= open_until_.load(std::memory_order_relaxed)) {
    transition(SLUICE_BREAKER_HALF_OPEN, now, &c);
    w = word_.load(std::memory_order_relaxed);
  }
  switch (int(w & 3)) {
    case SLUICE_BREAKER_CLOSED:
      break;
    case SLUICE_BREAKER_HALF_OPEN:
      if (trials_taken_ < trials_)
        trials_taken_++;
      else
        rc = SLUICE_EOPEN;
      break;
    default:  // OPEN, reopened by another thread since the first look
      rc = SLUICE_EOPEN;
  }
  lock_.unlock();
  if (rc == 0) {
    if (ticket) *ticket = w >> 2;
  } else {
    refused();
  }
  notify(c);
  return rc;
}

void Breaker::record(uint64_t ticket, bool failed, uint64_t duration_ns) {
  bool slow = slow_ns_ && duration_ns >= slow_ns_;
  uint64_t now = time_window_ ? this->now() : 0;
  Change c;
  lock_.lock();
  uint64_t w = word_.load(std::memory_order_relaxed);
  int st = int(w & 3);
  if ((ticket && ticket != w >> 2) || st == SLUICE_BREAKER_OPEN) {
    ignored_++;
    lock_.unlock();
    return;
  }
  if (failed)
    failures_++;
  else
    successes_++;
  if (slow) slow_++;
  if (st == SLUICE_BREAKER_CLOSED) {
    add_to_window(failed, slow, now);
    if (win_calls_ >= minimum_calls_ && rate_reached(win_calls_, win_failures_, win_slow_))
      transition(SLUICE_BREAKER_OPEN, time_window_ ? now : this->now(), &c);
  } else {
    trials_reported_++;
    trial_failures_ += failed;
    trial_slow_ += slow;
    // Reopen as soon as the trials' rate cannot fall below the threshold;
    // close once every trial has reported without reaching it.
    if (rate_reached(trials_, trial_failures_, trial_slow_))
      transition(SLUICE_BREAKER_OPEN, this->now(), &c);
    else if (trials_reported_ >= trials_)
      transition(SLUICE_BREAKER_CLOSED, 0, &c);
  }
  lock_.unlock();
  notify(c);
}

void Breaker::release(uint64_t ticket) {
  lock_.lock();
  released_++;
  uint64_t w = word_.load(std::memory_order_relaxed);
  if ((w & 3) == SLUICE_BREAKER_HALF_OPEN && (ticket == 0 || ticket == w >> 2) &&
      trials_taken_ > trials_reported_)
    trials_taken_--;
  lock_.unlock();
}

void Breaker::set_state(int to) {
  Change c;
  uint64_t now = to == SLUICE_BREAKER_OPEN ? this->now() : 0;
  lock_.lock();
  transition(to, now, &c);
  lock_.unlock();
  notify(c);
}

bool Breaker::rate_reached(uint64_t calls, uint64_t failures, uint64_t slow) const {
  return (failure_bp_ && failures * 10000 >= uint64_t(failure_bp_) * calls) ||
         (slow_bp_ && slow * 10000 >= uint64_t(slow_bp_) * calls);
}

void Breaker::add_to_window(bool failed, bool slow, uint64_t now) {
  if (time_window_) {
    advance_buckets(now / bucket_ns_);
    Bucket &b = buckets_[last_bucket_ % buckets_n_];
    b.calls++;
    b.failures += failed;
    b.slow += slow;
    win_calls_++;
  } else {
    uint8_t bits = uint8_t(failed | (slow << 1));
    if (ring_filled_ == window_calls_) {
      // A full ring: the oldest call leaves as this one comes in. In a
      // healthy service both are plain successes and nothing changes.
      uint8_t old = ring_[ring_pos_];
      win_failures_ -= old & 1;
      win_slow_ -= old >> 1;
    } else {
      ring_filled_++;
      win_calls_++;
    }
    ring_[ring_pos_] = bits;
    if (++ring_pos_ == window_calls_) ring_pos_ = 0;
  }
  win_failures_ += failed;
  win_slow_ += slow;
}

void Breaker::advance_buckets(uint64_t idx) {
  // A time older than the newest bucket (a thread that read the clock
  // before another one recorded) counts in the newest bucket.
  if (idx <= last_bucket_) return;
  uint64_t steps = idx - last_bucket_;
  if (steps >= buckets_n_) {
    for (Bucket &b : buckets_) b = Bucket{};
    win_calls_ = win_failures_ = win_slow_ = 0;
  } else {
    for (uint64_t i = 1; i <= steps; i++) {
      Bucket &b = buckets_[(last_bucket_ + i) % buckets_n_];
      win_calls_ -= b.calls;
      win_failures_ -= b.failures;
      win_slow_ -= b.slow;
      b = Bucket{};
    }
  }
  last_bucket_ = idx;
}

void Breaker::clear_window() {
  for (uint8_t &r : ring_) r = 0;
  ring_pos_ = ring_filled_ = 0;
  for (Bucket &b : buckets_) b = Bucket{};
  win_calls_ = win_failures_ = win_slow_ = 0;
}

void Breaker::transition(int to, uint64_t now, Change *c) {
  uint64_t w = word_.load(std::memory_order_relaxed);
  uint64_t gen = (w >> 2) + 1;
  clear_window();
  trials_taken_ = trials_reported_ = trial_failures_ = trial_slow_ = 0;
  if (to == SLUICE_BREAKER_OPEN) {
    open_until_.store(now + open_ns_, std::memory_order_relaxed);
    opened_++;
  } else if (to == SLUICE_BREAKER_HALF_OPEN) {
    half_opened_++;
  } else {
    closed_++;
  }
  // Release: a reader that sees the new state also sees open_until_.
  word_.store(gen << 2 | uint64_t(to), std::memory_order_release);
  c->from = int(w & 3);
  c->to = to;
  c->generation = gen;
}

void Breaker::refused() {
  refused_.fetch_add(1, std::memory_order_relaxed);
  if (monitor_) sluice_monitor_record_id(monitor_, series_rejected_, 0, SLUICE_EOPEN);
}

void Breaker::notify(const Change &c) const {
  if (c.to == SLUICE_BREAKER_OPEN && monitor_)
    sluice_monitor_record_id(monitor_, series_opened_, 0, SLUICE_EOPEN);
  if (c.to >= 0 && on_change_) on_change_(change_ud_, c.from, c.to, c.generation);
}

void Breaker::fill_stats(sluice_breaker_stats *st) const {
  uint64_t idx = time_window_ ? now() / bucket_ns_ : 0;
  lock_.lock();
  uint64_t w = word_.load(std::memory_order_relaxed);
  st->state = int(w & 3);
  st->generation = w >> 2;
  st->successes = successes_;
  st->failures = failures_;
  st->slow = slow_;
  st->ignored = ignored_;
  st->released = released_;
  st->opened = opened_;
  st->half_opened = half_opened_;
  st->closed = closed_;
  st->window_calls = win_calls_;
  st->window_failures = win_failures_;
  st->window_slow = win_slow_;
  if (time_window_ && idx > last_bucket_) {
    // Leave out the buckets that have aged out since the last record.
    uint64_t steps = idx - last_bucket_;
    for (uint64_t i = 1; i <= steps && i <= buckets_n_; i++) {
      const Bucket &b = buckets_[(last_bucket_ + i) % buckets_n_];
      st->window_calls -= b.calls;
      st->window_failures -= b.failures;
      st->window_slow -= b.slow;
    }
  }
  st->trials_taken = trials_taken_;
  st->trials_reported = trials_reported_;
  lock_.unlock();
  st->refused = refused_.load(std::memory_order_relaxed);
}

}  // namespace sluice

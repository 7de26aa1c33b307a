// The three rate algorithms as pure functions of a key's state words, the
// limit and the time: no locks, no allocation. The caller holds the shard
// lock. Every time is in the limiter's clock (ns). Arithmetic is exact:
// retry_after is the smallest wait after which the same request passes.
#pragma once

#include <cstdint>

namespace sluice::limiter {

// x / d for a d fixed at configuration time, without a divide instruction
// on the hot path: one high multiply and at most one correction (m is
// floor((2^64 - 1) / d), which puts the estimate at q or q - 1).
struct Divider {
  uint64_t d = 1, m = UINT64_MAX;
  void set(uint64_t div) {
    d = div;
    m = UINT64_MAX / div;
  }
  uint64_t div(uint64_t x) const {
    uint64_t q = uint64_t((unsigned __int128)x * m >> 64);
    if (x - q * d >= d) q++;
    return q;
  }
};

enum Algo : int { kLog = 0, kWindow = 1, kGcra = 2 };

// The limit as every shard holds it (copied under each shard's lock).
struct Cfg {
  uint64_t limit = 1;     // N
  uint64_t window = 1;    // W, ns
  uint64_t burst = 0;     // GCRA bucket B (0 for the others)
  uint64_t interval = 1;  // GCRA emission interval T = ceil(W / N)
  uint64_t tau = 1;       // GCRA B * T: the most debt a key may carry
  uint64_t max_cost = 1;  // the largest cost that can ever pass
  Divider by_interval;    // x / T
  Divider by_window;      // x / W
};

struct Decision {
  bool allowed = false;
  uint64_t remaining = 0;
  uint64_t retry_after = 0;
  uint64_t reset_after = 0;
};

inline uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

// ---- GCRA: one word, the theoretical arrival time (TAT) ---------------

inline void gcra(uint64_t *tat_word, const Cfg &c, uint64_t now, uint64_t cost, bool apply,
                 Decision *d) {
  uint64_t tat = max_u64(*tat_word, now);
  uint64_t new_tat = tat + cost * c.interval;
  uint64_t debt = new_tat - now;
  if (debt <= c.tau) {
    d->allowed = true;
    d->retry_after = 0;
    d->remaining = c.by_interval.div(c.tau - debt);
    d->reset_after = debt;
    if (apply) *tat_word = new_tat;
  } else {
    d->allowed = false;
    d->retry_after = debt - c.tau;
    uint64_t owed = tat - now;  // above tau only right after a lowered limit
    d->remaining = owed < c.tau ? c.by_interval.div(c.tau - owed) : 0;
    d->reset_after = owed;
  }
}

inline bool gcra_fresh(uint64_t tat, uint64_t now) { return tat <= now; }

// ---- sliding log: a ring of timestamps, oldest first -------------------
// Word 0 packs head, count and capacity (16 bits each: the log's limit is
// at most 65535); the ring follows.

struct LogHead {
  uint32_t head, count, cap;
};

inline LogHead log_unpack(uint64_t w) {
  return LogHead{uint32_t(w & 0xffff), uint32_t((w >> 16) & 0xffff), uint32_t((w >> 32) & 0xffff)};
}
inline uint64_t log_pack(const LogHead &h) {
  return uint64_t(h.head) | uint64_t(h.count) << 16 | uint64_t(h.cap) << 32;
}
inline uint32_t log_at(const LogHead &h, uint32_t i) {  // i-th oldest
  uint32_t p = h.head + i;
  return p >= h.cap ? p - h.cap : p;
}

// Drops what has left the window (t - W, t].
inline void log_expire(uint64_t *s, LogHead &h, uint64_t t, uint64_t window) {
  const uint64_t *ring = s + 1;
  while (h.count && ring[h.head] + window <= t) {
    h.head = h.head + 1 == h.cap ? 0 : h.head + 1;
    h.count--;
  }
}

inline uint64_t log_newest(const uint64_t *s, const LogHead &h) {
  return h.count ? s[1 + log_at(h, h.count - 1)] : 0;
}

// `apply` requires room: count + cost <= cap (the caller grows the ring
// first after a raised limit).
inline void log_decide(uint64_t *s, const Cfg &c, uint64_t now, uint64_t cost, bool apply,
                       Decision *d) {
  LogHead h = log_unpack(s[0]);
  uint64_t t = max_u64(now, log_newest(s, h));
  log_expire(s, h, t, c.window);
  uint64_t *ring = s + 1;
  if (h.count + cost <= c.limit) {
    d->allowed = true;
    d->retry_after = 0;
    d->remaining = c.limit - h.count - cost;
    if (apply) {
      for (uint64_t i = 0; i < cost; i++) ring[log_at(h, h.count++)] = t;
    }
    d->reset_after = t + c.window - now;
  } else {
    d->allowed = false;
    // The request fits once the (count + cost - N)-th oldest has left.
    uint64_t oldest_needed = ring[log_at(h, uint32_t(h.count + cost - c.limit - 1))];
    d->retry_after = oldest_needed + c.window - now;
    d->remaining = h.count < c.limit ? c.limit - h.count : 0;
    d->reset_after = log_newest(s, h) + c.window - now;
  }
  s[0] = log_pack(h);  // expiry is no change of meaning, so peek keeps it too
}

inline bool log_fresh(const uint64_t *s, uint64_t now, uint64_t window) {
  LogHead h = log_unpack(s[0]);
  return h.count == 0 || log_newest(s, h) + window <= now;
}

// ---- sliding-window counter: window start, previous and current count --

struct WinState {
  uint64_t start;  // start of the key's current fixed window
  uint64_t prev, cur;
  uint64_t t;      // the time used (now, or the window start if now is behind)
};

// Moves the key's state to the window containing `now`.
inline WinState win_roll(const uint64_t *s, const Cfg &c, uint64_t now) {
  WinState w{s[0], s[1] & 0xffffffffu, s[1] >> 32, now};
  if (w.prev == 0 && w.cur == 0) {
    w.start = c.by_window.div(now) * c.window;
    return w;
  }
  if (now < w.start) {  // clock behind the key: stand at its window start
    w.t = w.start;
    return w;
  }
  uint64_t aligned = c.by_window.div(now) * c.window;
  if (aligned <= w.start) return w;  // same window (or a longer new window)
  // One window on (or less, right after the window length changed): the
  // current count becomes the previous one; two or more: both age out.
  w.prev = aligned - w.start < 2 * c.window ? w.cur : 0;
  w.cur = 0;
  w.start = aligned;
  return w;
}

inline void win_store(uint64_t *s, const WinState &w) {
  s[0] = w.start;
  s[1] = w.prev | w.cur << 32;
}

inline uint64_t ceil_div128(unsigned __int128 a, uint64_t b) {
  return uint64_t((a + b - 1) / b);
}

inline void win_decide(uint64_t *s, const Cfg &c, uint64_t now, uint64_t cost, bool apply,
                       Decision *d) {
  using u128 = unsigned __int128;
  WinState w = win_roll(s, c, now);
  const uint64_t W = c.window, N = c.limit;
  uint64_t e = w.t - w.start;
  if (e >= W) e = W - 1;  // a window made shorter by set_limit: its last ns
  u128 weighted_prev = u128(w.prev) * (W - e);  // prev * (W - e) / W, times W
  u128 lhs = weighted_prev + u128(w.cur + cost) * W;
  // Whole units the previous window still weighs: ceil(prev * (W - e) / W).
  uint64_t prev_units = w.prev ? ceil_div128(weighted_prev, W) : 0;
  uint64_t used = prev_units + w.cur;
  uint64_t lag = w.t - now;  // > 0 only when the clock is behind the key
  uint64_t cur_after = w.cur;
  if (lhs <= u128(N) * W) {
    d->allowed = true;
    d->retry_after = 0;
    d->remaining = N - used - cost;
    cur_after += cost;
  } else {
    d->allowed = false;
    d->remaining = used < N ? N - used : 0;
    if (w.cur + cost <= N) {
      // Still in this window: once prev * (W - e') <= (N - cur - cost) * W.
      uint64_t room = N - w.cur - cost;
      uint64_t k = uint64_t(u128(room) * W / w.prev);  // < W - e, as refused now
      d->retry_after = (W - k) - e + lag;
    } else {
      // In the next window, where cur is the previous count.
      uint64_t k = uint64_t(u128(N - cost) * W / w.cur);  // < W
      d->retry_after = (W - e) + (W - k) + lag;
    }
  }
  // As the state would be after the request (peek answers as check).
  if (cur_after)
    d->reset_after = w.start + 2 * W - now;
  else if (w.prev)
    d->reset_after = w.start + W - now;
  else
    d->reset_after = 0;
  if (apply) {
    w.cur = cur_after;
    win_store(s, w);
  }
}

inline bool win_fresh(const uint64_t *s, const Cfg &c, uint64_t now) {
  WinState w = win_roll(s, c, now);
  return w.prev == 0 && w.cur == 0;
}

}  // namespace sluice::limiter

// The limiter's life cycle and its non-waiting calls: check, peek,
// check_many, set_limit, block, sweep and figures. Everything here runs in
// the calling thread under shard locks.
#include <sched.h>
#include <sys/random.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "common/error.h"
#include "limiter/limiter.h"

namespace sluice::limiter {

// ---- the lock -----------------------------------------------------------

void ShardLock::contended() noexcept {
  // Critical sections are a few dozen instructions: a short spin usually
  // wins; past it the holder was likely preempted, so sleep.
  for (int i = 0; i < 64; i++) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
    uint32_t free = 0;
    if (st_.load(std::memory_order_relaxed) == 0 &&
        st_.compare_exchange_weak(free, 1, std::memory_order_acquire, std::memory_order_relaxed))
      return;
  }
  // Marked 2 whenever anyone may sleep, so the holder knows to wake one.
  while (st_.exchange(2, std::memory_order_acquire) != 0) st_.wait(2, std::memory_order_relaxed);
}

// ---- time and hashing ----------------------------------------------------

uint64_t Limiter::mono_ns() {
  // The clock of sluice_now_ns (libuv's uv_hrtime), read directly.
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

// ---- life cycle --------------------------------------------------------

int Limiter::make_cfg(int algo, uint64_t limit, uint64_t window, uint64_t burst, Cfg *c,
                      const char *what) {
  uint64_t max_limit = algo == kLog ? SLUICE_LIMITER_MAX_LOG : 0xffffffffu;
  if (limit == 0 || limit > max_limit)
    return fail(SLUICE_EINVAL, "%s: limit %llu is outside 1..%llu%s", what,
                (unsigned long long)limit, (unsigned long long)max_limit,
                algo == kLog ? " (the sliding log keeps `limit` timestamps per key)" : "");
  if (window < 1000 || window > kMaxWindow)
    return fail(SLUICE_EINVAL, "%s: window_ns %llu is outside 1000..2^52", what,
                (unsigned long long)window);
  Cfg n;
  n.limit = limit;
  n.window = window;
  n.max_cost = limit;
  if (algo == kGcra) {
    if (burst == 0) burst = limit;
    if (burst > 0xffffffffu)
      return fail(SLUICE_EINVAL, "%s: burst %llu is above 2^32-1", what,
                  (unsigned long long)burst);
    // Rounded up: a key never gets more than `limit` per window.
    n.interval = window / limit + (window % limit != 0);
    if ((unsigned __int128)burst * n.interval > kMaxTau)
      return fail(SLUICE_EINVAL,
                  "%s: burst %llu times the emission interval %llu ns is above 2^60 ns", what,
                  (unsigned long long)burst, (unsigned long long)n.interval);
    n.burst = burst;
    n.tau = burst * n.interval;
    n.max_cost = burst;
  }
  n.by_interval.set(n.interval);
  n.by_window.set(n.window);
  *c = n;
  return 0;
}

int Limiter::create(Runtime *rt, const sluice_limiter_options &o, Limiter **out) {
  if (o.algorithm < kLog || o.algorithm > kGcra)
    return fail(SLUICE_EINVAL, "sluice_limiter_options.algorithm: %d is not a sluice_limiter_algorithm",
                o.algorithm);
  Cfg cfg;
  if (int rc = make_cfg(o.algorithm, o.limit, o.window_ns, o.burst, &cfg, "sluice_limiter_options"))
    return rc;
  if (o.max_keys == 0 || o.max_keys > (uint64_t{1} << 30))
    return fail(SLUICE_EINVAL, "sluice_limiter_options.max_keys: %llu is outside 1..2^30",
                (unsigned long long)o.max_keys);
  if (o.on_full != SLUICE_LIMITER_FULL_REJECT && o.on_full != SLUICE_LIMITER_FULL_ALLOW)
    return fail(SLUICE_EINVAL, "sluice_limiter_options.on_full: %d is not a sluice_limiter_full",
                o.on_full);
  const char *name = o.name ? o.name : "limiter";
  size_t name_len = std::strlen(name);
  if (name_len == 0 || name_len > 64)
    return fail(SLUICE_EINVAL, "sluice_limiter_options.name: %zu bytes, not 1..64", name_len);
  if (rt && rt->is_closed())
    return fail(SLUICE_ECLOSED, "sluice_limiter_new: the runtime is shutting down");

  auto *l = new Limiter();
  l->rt_ = rt;
  l->algo_ = o.algorithm;
  l->on_full_ = o.on_full;
  l->max_keys_ = o.max_keys;
  l->clock_ = o.clock;
  l->clock_ud_ = o.clock_user_data;
  l->cfg_ = cfg;
  uint64_t rnd[2] = {0, 0};
  if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != ssize_t(sizeof rnd)) {
    rnd[0] = mono_ns() ^ reinterpret_cast<uintptr_t>(l);
    rnd[1] = fold(rnd[0], 0x9e3779b97f4a7c15ull);
  }
  l->seed0_ = rnd[0];
  l->seed1_ = rnd[1];
  // Shards are cache-line aligned so two threads on different shards never
  // share a line; the library allocator only promises 16 bytes.
  size_t bytes = sizeof(Shard) * kShards + 64;
  l->shards_raw_ = mem::allocate(bytes);
  if (!l->shards_raw_) {
    delete l;
    return fail(SLUICE_ENOMEM, "sluice_limiter_new: out of memory");
  }
  auto base = (reinterpret_cast<uintptr_t>(l->shards_raw_) + 63) & ~uintptr_t{63};
  l->shards_ = reinterpret_cast<Shard *>(base);
  for (unsigned i = 0; i < kShards; i++) {
    new (&l->shards_[i]) Shard();
    l->shards_[i].cfg = cfg;
  }
  if (o.monitor) {
    l->monitor_ = o.monitor;
    char series[80];
    int n = std::snprintf(series, sizeof series, "%.*s.rejected", int(name_len), name);
    int rc = sluice_monitor_series(o.monitor, series, size_t(n), &l->series_rejected_);
    if (rc == 0) {
      n = std::snprintf(series, sizeof series, "%.*s.wait", int(name_len), name);
      rc = sluice_monitor_series(o.monitor, series, size_t(n), &l->series_wait_);
    }
    if (rc != 0) {
      delete l;
      return rc;
    }
  }
  *out = l;
  return 0;
}

Limiter::~Limiter() {
  if (!shards_) {
    return;
  }
  for (unsigned i = 0; i < kShards; i++) {
    Shard &s = shards_[i];
    for (uint32_t j = 0; j < s.capacity(); j++)
      if (s.ctrl[j]) free_entry(s, s.slots[j]);
    if (s.slots) mem::release(s.ctrl, size_t(s.capacity()) * (1 + sizeof(Entry *)));
    s.~Shard();
  }
  mem::release(shards_raw_, sizeof(Shard) * kShards + 64);
}

void Limiter::unref() {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

void Limiter::destroy() {
  dying_.store(true, std::memory_order_release);
  if (rt_) {
    int rc = rt_->call([](void *p) { static_cast<Limiter *>(p)->destroy_on_loop(); }, this);
    // Not run: the runtime has shut down, which completed every wait.
    (void)rc;
  }
  unref();
}

// ---- decisions -----------------------------------------------------------

int Limiter::evaluate(Shard &s, Entry *&e, uint64_t caller_now, uint64_t cost, Mode mode,
                      Answer *a) {
  // Time never goes back within a shard: a thread whose clock reading is a
  // little behind another's (or a clock set back) gets the latest time
  // seen, so the log never counts an event the other has already expired.
  // What it is told to wait is counted from its own reading, so longer.
  const uint64_t now = std::max(caller_now, s.hwm);
  s.hwm = now;
  const uint64_t lag = now - caller_now;
  int rc = evaluate_at(s, e, now, cost, mode, a);
  if (__builtin_expect(lag != 0, 0)) {
    if (!a->d.allowed) a->d.retry_after += lag;
    if (a->d.reset_after) a->d.reset_after += lag;
  }
  return rc;
}

int Limiter::evaluate_at(Shard &s, Entry *&e, uint64_t now, uint64_t cost, Mode mode,
                         Answer *a) {
  uint64_t fresh[2] = {0, 0};
  uint64_t *st = e ? e->state() : fresh;
  if (Extra *x = e && (e->meta & Entry::kXSlot) ? extra_of(e) : nullptr) {
    if (x->blocked_until > now) {
      decide(s, st, now, cost, false, &a->d);
      uint64_t left = x->blocked_until - now;
      a->d.allowed = false;
      a->d.retry_after = left;
      a->d.remaining = 0;
      a->d.reset_after = std::max(a->d.reset_after, left);
      a->reason = SLUICE_LIMITER_BLOCKED;
      return 0;
    }
    x->blocked_until = 0;
    if (x->qhead && mode != kWaiter) {
      // Waiters go first: the answer is when their costs and this one fit.
      uint64_t want = std::min(x->queued_cost + cost, s.cfg.max_cost);
      decide(s, st, now, want, false, &a->d);
      a->d.allowed = false;
      a->d.retry_after = std::max<uint64_t>(a->d.retry_after, 1);
      a->d.remaining = 0;
      a->reason = SLUICE_LIMITER_QUEUED;
      return 0;
    }
    if (!x->qhead) drop_extra(s, e);
  }
  bool apply = mode != kPeek;
  if (apply && algo_ == kLog && log_unpack(st[0]).cap < s.cfg.limit) {
    // A raised limit: the log grows to it at the key's first use.
    Entry *n = reshape(s, e, false, uint32_t(s.cfg.limit));
    if (!n) return SLUICE_ENOMEM;
    e = n;
    st = e->state();
  }
  decide(s, st, now, cost, apply, &a->d);
  a->reason = a->d.allowed ? SLUICE_LIMITER_OK : SLUICE_LIMITER_LIMITED;
  return 0;
}

namespace {

inline void fill_result(sluice_limiter_result *r, const Answer &a, uint64_t limit, size_t index) {
  if (!r) return;
  if (__builtin_expect(r->size >= sizeof(sluice_limiter_result), 1)) {
    r->allowed = a.d.allowed ? 1 : 0;
    r->reason = a.reason;
    r->limit = limit;
    r->remaining = a.d.remaining;
    r->retry_after_ns = a.d.retry_after;
    r->reset_after_ns = a.d.reset_after;
    r->index = index;
    return;
  }
  sluice_limiter_result full;
  full.size = r->size;
  full.allowed = a.d.allowed ? 1 : 0;
  full.reason = a.reason;
  full.limit = limit;
  full.remaining = a.d.remaining;
  full.retry_after_ns = a.d.retry_after;
  full.reset_after_ns = a.d.reset_after;
  full.index = index;
  std::memcpy(r, &full, r->size);
}

}  // namespace

void Limiter::record_rejected_slow(uint64_t n) {
  for (uint64_t i = 0; i < n; i++)
      sluice_monitor_record_id(monitor_, series_rejected_, 0, SLUICE_EREJECTED);
}

int Limiter::check(const void *key, uint32_t len, uint64_t cost, bool peek,
                   sluice_limiter_result *r) {
  const uint64_t caller_now = this->now();
  const uint64_t h = hash(key, len);
  Shard &s = shard_of(h);
  s.lock.lock();
  // The common case, kept short: a tracked key with nothing but its rate
  // state (no block, no waiters, no log to grow), time moving forward.
  int64_t idx;
  if (__builtin_expect(!peek && cost <= s.cfg.max_cost && caller_now >= s.hwm, 1) &&
      (idx = find(s, h, key, len)) >= 0) {
    Entry *e = s.slots[idx];
    uint64_t *st = e->state();
    if (__builtin_expect(!(e->meta & Entry::kXSlot), 1) &&
        (algo_ != kLog || log_unpack(st[0]).cap >= s.cfg.limit)) {
      s.hwm = caller_now;
      Answer a;
      decide(s, st, caller_now, cost, true, &a.d);
      const uint64_t max_cost = s.cfg.max_cost;
      if (a.d.allowed) {
        s.allowed++;
        s.lock.unlock();
        fill_result(r, a, max_cost, 0);
        return 0;
      }
      s.rejected++;
      s.lock.unlock();
      a.reason = SLUICE_LIMITER_LIMITED;
      fill_result(r, a, max_cost, 0);
      record_rejected(1);
      return SLUICE_EREJECTED;
    }
  }
  return check_slow(s, h, key, len, cost, peek, r, caller_now);
}

int Limiter::check_slow(Shard &s, uint64_t h, const void *key, uint32_t len, uint64_t cost,
                        bool peek, sluice_limiter_result *r, uint64_t now) {
  Answer a;
  int rc = 0;
  const uint64_t max_cost = s.cfg.max_cost;
  if (cost > max_cost) {
    s.lock.unlock();
    return fail(SLUICE_EINVAL, "%s: cost %llu is above the limit %llu, so it could never pass",
                peek ? "sluice_limiter_peek" : "sluice_limiter_check", (unsigned long long)cost,
                (unsigned long long)max_cost);
  }
  int64_t idx = find(s, h, key, len);
  Entry *e = idx >= 0 ? s.slots[idx] : nullptr;
  if (!e && !peek) e = insert(s, h, key, len, now, &rc);
  if (e || peek) {
    rc = evaluate(s, e, now, cost, peek ? kPeek : kApply, &a);
    if (rc == 0 && !peek) (a.d.allowed ? s.allowed : s.rejected)++;
  } else if (rc == SLUICE_ELIMIT) {
    a.reason = SLUICE_LIMITER_FULL;
    if (on_full_ == SLUICE_LIMITER_FULL_ALLOW) {
      // Fail open: answered as a fresh key, and nothing is remembered.
      evaluate(s, e, now, cost, kPeek, &a);
      a.reason = SLUICE_LIMITER_FULL;
      s.full_allowed++;
      s.allowed++;
      rc = 0;
    } else {
      s.full_refused++;
    }
  }
  s.lock.unlock();
  if (rc == SLUICE_ENOMEM) return fail(rc, "sluice_limiter_check: out of memory");
  fill_result(r, a, max_cost, 0);
  if (rc == SLUICE_ELIMIT)
    return fail(rc, "sluice_limiter_check: a new key while max_keys (%llu) keys are tracked",
                (unsigned long long)max_keys_);
  if (a.d.allowed) return 0;
  if (!peek) record_rejected(1);
  return SLUICE_EREJECTED;
}

// ---- all or nothing across limiters -------------------------------------

struct ManyCall {
  struct Item {
    Limiter *l;
    const void *key;
    uint32_t len;
    uint64_t cost;
    uint64_t h, now;
    Shard *s;
    Entry *e;
    bool dup, untracked;
    Answer a;
  };
  Item it[SLUICE_LIMITER_MAX_MANY];
  Shard *locked[SLUICE_LIMITER_MAX_MANY];
  size_t n = 0, nlocked = 0;

  void unlock_all() {
    for (size_t i = 0; i < n; i++)
      if (!it[i].dup && it[i].e) it[i].e->meta &= ~Entry::kPinned;
    for (size_t i = nlocked; i-- > 0;) locked[i]->lock.unlock();
  }
};

int Limiter::check_many(const sluice_limiter_item *items, size_t n, sluice_limiter_result *r) {
  ManyCall m;
  m.n = n;
  for (size_t i = 0; i < n; i++) {
    ManyCall::Item &x = m.it[i];
    x.l = unwrap(items[i].limiter);
    x.key = items[i].key;
    x.len = uint32_t(items[i].len);
    x.cost = items[i].cost;
    x.h = x.l->hash(x.key, x.len);
    x.s = &x.l->shard_of(x.h);
    x.e = nullptr;
    x.dup = x.untracked = false;
    x.now = 0;
    // One clock reading per limiter, and an item given twice counts once
    // with both costs.
    for (size_t j = 0; j < i; j++) {
      ManyCall::Item &y = m.it[j];
      if (y.l != x.l) continue;
      x.now = y.now;
      if (!y.dup && y.h == x.h && y.len == x.len && std::memcmp(y.key, x.key, x.len) == 0) {
        y.cost += x.cost;
        x.dup = true;
        break;
      }
    }
    if (!x.now) x.now = x.l->now();
  }
  for (size_t i = 0; i < n; i++) {
    Shard *s = m.it[i].s;
    if (std::find(m.locked, m.locked + m.nlocked, s) == m.locked + m.nlocked)
      m.locked[m.nlocked++] = s;
  }
  // One global order (addresses) over every limiter's shards: two calls can
  // never each hold a lock the other waits for.
  std::sort(m.locked, m.locked + m.nlocked, std::less<Shard *>());
  for (size_t i = 0; i < m.nlocked; i++) m.locked[i]->lock.lock();

  // Every entry is found or made, and every log grown, before anything is
  // consumed, so a failure leaves all keys as they were.
  int rc = 0;
  size_t bad = 0;
  uint64_t bad_max = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    ManyCall::Item &x = m.it[i];
    if (x.dup) continue;
    Limiter *l = x.l;
    Shard &s = *x.s;
    if (x.cost > s.cfg.max_cost) {
      rc = SLUICE_EINVAL;
      bad = i;
      bad_max = s.cfg.max_cost;
      break;
    }
    int64_t idx = l->find(s, x.h, x.key, x.len);
    Entry *e = idx >= 0 ? s.slots[idx] : l->insert(s, x.h, x.key, x.len, x.now, &rc);
    if (!e) {
      if (rc == SLUICE_ELIMIT && l->on_full_ == SLUICE_LIMITER_FULL_ALLOW) {
        x.untracked = true;
        rc = 0;
        continue;
      }
      if (rc == SLUICE_ELIMIT) s.full_refused++;
      bad = i;
      break;
    }
    if (l->algo_ == kLog && log_unpack(e->state()[0]).cap < s.cfg.limit) {
      Entry *g = l->reshape(s, e, false, uint32_t(s.cfg.limit));
      if (!g) {
        rc = SLUICE_ENOMEM;
        bad = i;
        break;
      }
      e = g;
    }
    e->meta |= Entry::kPinned;  // no sweep of a later insert takes it
    x.e = e;
  }

  bool all = true;
  Answer out;
  size_t decider = 0;
  if (rc == 0) {
    for (size_t i = 0; i < n; i++) {
      ManyCall::Item &x = m.it[i];
      if (x.dup) continue;
      x.l->evaluate(*x.s, x.e, x.now, x.cost, kPeek, &x.a);
      if (x.untracked) x.a.reason = SLUICE_LIMITER_FULL;
      if (!x.a.d.allowed) {
        if (all || x.a.d.retry_after > out.d.retry_after) {
          out = x.a;
          decider = i;
        }
        all = false;
      } else if (all && (i == 0 || x.a.d.remaining < out.d.remaining)) {
        out = x.a;
        decider = i;
      }
    }
    uint64_t remaining = UINT64_MAX, reset = 0;
    for (size_t i = 0; i < n; i++) {
      ManyCall::Item &x = m.it[i];
      if (x.dup) continue;
      if (all && !x.untracked) {
        // Same state, same time: the answer is the one just peeked.
        x.l->evaluate(*x.s, x.e, x.now, x.cost, kApply, &x.a);
      }
      remaining = std::min(remaining, x.a.d.remaining);
      reset = std::max(reset, x.a.d.reset_after);
      if (all) {
        x.s->allowed++;
        if (x.untracked) x.s->full_allowed++;
      } else if (!x.a.d.allowed) {
        x.s->rejected++;
      }
    }
    out.d.remaining = remaining;
    out.d.reset_after = reset;
  }
  m.unlock_all();

  if (rc == SLUICE_EINVAL)
    return fail(rc,
                "sluice_limiter_check_many: item %zu: cost %llu (summed over the items naming "
                "the same key) is above the limit %llu, so it could never pass",
                bad, (unsigned long long)m.it[bad].cost, (unsigned long long)bad_max);
  if (rc == SLUICE_ELIMIT) {
    Answer full;
    full.reason = SLUICE_LIMITER_FULL;
    fill_result(r, full, m.it[bad].s->cfg.max_cost, bad);
    return fail(rc, "sluice_limiter_check_many: item %zu: a new key while max_keys (%llu) keys are tracked",
                bad, (unsigned long long)m.it[bad].l->max_keys_);
  }
  if (rc != 0) return fail(rc, "sluice_limiter_check_many: item %zu: out of memory", bad);
  // The limit is only read here for the answer; a concurrent set_limit may
  // make it stale, as it may any answer.
  fill_result(r, out, m.it[decider].s->cfg.max_cost, decider);
  if (all) return 0;
  for (size_t i = 0; i < n; i++)
    if (!m.it[i].dup && !m.it[i].a.d.allowed) m.it[i].l->record_rejected(1);
  return SLUICE_EREJECTED;
}

// ---- control -------------------------------------------------------------

int Limiter::set_limit(uint64_t limit, uint64_t window, uint64_t burst) {
  Cfg c;
  if (int rc = make_cfg(algo_, limit, window, burst, &c, "sluice_limiter_set_limit")) return rc;
  {
    std::lock_guard<std::mutex> g(cfg_mu_);
    cfg_ = c;
    for (unsigned i = 0; i < kShards; i++) {
      Shard &s = shards_[i];
      s.lock.lock();
      s.cfg = c;
      s.lock.unlock();
    }
  }
  if (rt_ && waiting_.load(std::memory_order_relaxed)) (void)post_wake();
  return 0;
}

int Limiter::block(const void *key, uint32_t len, uint64_t duration) {
  const uint64_t now = this->now();
  const uint64_t h = hash(key, len);
  Shard &s = shard_of(h);
  int rc = 0;
  s.lock.lock();
  int64_t idx = find(s, h, key, len);
  Entry *e = idx >= 0 ? s.slots[idx] : insert(s, h, key, len, now, &rc);
  Extra *x = e ? ensure_extra(s, e) : nullptr;
  if (x) {
    x->blocked_until = now + duration;
    s.blocks++;
  } else if (rc == 0) {
    rc = SLUICE_ENOMEM;
  }
  s.lock.unlock();
  if (rc == SLUICE_ELIMIT)
    return fail(rc, "sluice_limiter_block: a new key while max_keys (%llu) keys are tracked",
                (unsigned long long)max_keys_);
  if (rc) return fail(rc, "sluice_limiter_block: out of memory");
  return 0;
}

int Limiter::unblock(const void *key, uint32_t len) {
  const uint64_t now = this->now();
  const uint64_t h = hash(key, len);
  Shard &s = shard_of(h);
  bool was = false, waiters = false;
  s.lock.lock();
  int64_t idx = find(s, h, key, len);
  if (idx >= 0) {
    Entry *e = s.slots[idx];
    if (Extra *x = extra_of(e)) {
      was = x->blocked_until > now;
      x->blocked_until = 0;
      waiters = x->qhead != nullptr;
      if (!waiters) drop_extra(s, e);
    }
  }
  s.lock.unlock();
  if (was && waiters) (void)post_wake();
  return was ? 1 : 0;
}

int64_t Limiter::sweep_all() {
  const uint64_t now = this->now();
  int64_t total = 0;
  for (unsigned i = 0; i < kShards; i++) {
    Shard &s = shards_[i];
    s.lock.lock();
    s.cursor = 0;
    total += sweep(s, s.capacity(), now);
    maybe_shrink(s);
    s.lock.unlock();
  }
  return total;
}

void Limiter::fill_stats(sluice_limiter_stats *st) {
  {
    std::lock_guard<std::mutex> g(cfg_mu_);
    st->algorithm = algo_;
    st->limit = cfg_.limit;
    st->window_ns = cfg_.window;
    st->burst = cfg_.burst;
  }
  for (unsigned i = 0; i < kShards; i++) {
    Shard &s = shards_[i];
    s.lock.lock();
    st->allowed += s.allowed;
    st->rejected += s.rejected;
    st->full_refused += s.full_refused;
    st->full_allowed += s.full_allowed;
    st->reclaimed += s.reclaimed;
    st->blocks += s.blocks;
    st->bytes += s.bytes;
    s.lock.unlock();
  }
  st->bytes += wait_bytes_.load(std::memory_order_relaxed);
  st->keys = keys_.load(std::memory_order_relaxed);
  st->peak_keys = peak_.load(std::memory_order_relaxed);
  st->waits = waits_.load(std::memory_order_relaxed);
  st->waiting = waiting_.load(std::memory_order_relaxed);
  st->wait_timeouts = timeouts_.load(std::memory_order_relaxed);
  st->wait_cancels = cancels_.load(std::memory_order_relaxed);
}

}  // namespace sluice::limiter

// The limiter (public sluice_limiter): 64 shards, each a short lock over an
// open-addressing table of key entries, and the waits that queue on keys.
//
// Who touches what:
//  - Shard state (table, entries, extras, key queues, counters, the shard's
//    copy of the limit): under the shard lock, from any thread. A thread
//    holds several shard locks only in check_many, taken in address order.
//  - WaitOp state: under its key's shard lock; completion on the loop.
//  - keys_/peak_ (the max_keys cap) and the wait counters: atomics.
//  - The pending-wait list (for free): ops_mu_.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>

#include "alloc/alloc.h"
#include "limiter/algo.h"
#include "op/op.h"
#include "runtime/runtime.h"
#include "sluice/limiter.h"

namespace sluice::limiter {

constexpr unsigned kShardBits = 6;
constexpr unsigned kShards = 1u << kShardBits;
constexpr uint32_t kMinTable = 8;     // slots of a shard's first table
constexpr uint32_t kInsertSweep = 2;  // slots swept per insert
constexpr uint32_t kFullSweep = 256;  // slots swept when max_keys is reached
constexpr uint64_t kMaxWindow = uint64_t{1} << 52;
constexpr uint64_t kMaxTau = uint64_t{1} << 60;
constexpr uint64_t kMaxBlock = uint64_t{1} << 62;

// A lock held for a few dozen instructions: spins briefly, then sleeps on
// the word (futex), so a preempted holder does not cost spinners a
// scheduling quantum.
class ShardLock {
 public:
  void lock() noexcept {
    uint32_t free = 0;
    if (__builtin_expect(st_.compare_exchange_strong(free, 1, std::memory_order_acquire,
                                                     std::memory_order_relaxed),
                         1))
      return;
    contended();
  }
  void unlock() noexcept {
    if (__builtin_expect(st_.exchange(0, std::memory_order_release) == 2, 0)) st_.notify_one();
  }

 private:
  void contended() noexcept;
  std::atomic<uint32_t> st_{0};  // 0 free, 1 held, 2 held and someone may sleep
};

struct WaitOp;

// What a key has besides its rate state, rarely: a block, a wait queue.
struct Extra {
  uint64_t blocked_until = 0;  // limiter clock; 0: not blocked
  WaitOp *qhead = nullptr, *qtail = nullptr;
  uint64_t queued_cost = 0;
  Extra *wprev = nullptr, *wnext = nullptr;  // the shard's keys with waiters
  bool listed = false;
};

// A key's entry: 8-byte header, the key (padded to 8), the state words,
// then (kXSlot) one word pointing at its Extra, added when first needed.
struct Entry {
  uint32_t hash32;  // low hash bits: the table index, for moves and resizes
  uint32_t meta;    // key length (bits 0..16) and flags (bits 24..31)

  static constexpr uint32_t kLenMask = 0x1ffff;
  static constexpr uint32_t kXSlot = 1u << 24;   // has the Extra word
  static constexpr uint32_t kPinned = 1u << 25;  // check_many holds it: not reclaimed

  uint32_t len() const { return meta & kLenMask; }
  const char *key() const { return reinterpret_cast<const char *>(this + 1); }
  char *key() { return reinterpret_cast<char *>(this + 1); }
  static size_t key_bytes(uint32_t len) { return (size_t(len) + 7) & ~size_t{7}; }
  uint64_t *state() { return reinterpret_cast<uint64_t *>(key() + key_bytes(len())); }
  const uint64_t *state() const {
    return reinterpret_cast<const uint64_t *>(key() + key_bytes(len()));
  }
};

struct alignas(64) Shard {
  ShardLock lock;
  uint32_t mask = 0;   // table capacity - 1 (capacity 0: no table yet)
  uint32_t count = 0;  // entries in the table
  uint32_t cursor = 0; // the incremental sweep's position
  uint8_t *ctrl = nullptr;  // 0 empty, else 0x80 | 7 hash bits
  Entry **slots = nullptr;
  uint64_t hwm = 0;    // the latest time any call saw: time never goes back
  Cfg cfg;
  Extra *waiting = nullptr;  // extras with a non-empty queue
  // Figures, under the lock.
  uint64_t allowed = 0, rejected = 0, full_refused = 0, full_allowed = 0;
  uint64_t reclaimed = 0, blocks = 0, bytes = 0;

  uint32_t capacity() const { return slots ? mask + 1 : 0; }
};

// A request of sluice_limiter_acquire. Queued on its key from the calling
// thread (so the queue order is the order of the calls), started on the
// loop, granted or ended there.
struct WaitOp final : sluice_op {
  enum State : uint8_t { kUnstarted, kQueued, kGranted, kOff };

  WaitOp(Runtime *rt, sluice_status_cb cb, void *ud, sluice_free_cb free_ud)
      : sluice_op(rt, cb, ud, free_ud) {}
  ~WaitOp() override;

  void on_start() override;
  void on_cancel() override;
  void on_deadline() override;
  void on_shutdown() override;

  class Limiter *lim = nullptr;
  char *key = nullptr;
  uint32_t len = 0;
  uint64_t hash = 0;
  uint64_t cost = 0;
  uint64_t deadline = 0;    // runtime clock; 0: none
  uint64_t started_ns = 0;  // runtime clock
  WaitOp *qprev = nullptr, *qnext = nullptr;  // the key's queue
  WaitOp *oprev = nullptr, *onext = nullptr;  // the limiter's pending list
  State state = kUnstarted;
  bool listed = false;     // on the limiter's pending list
  bool untracked = false;  // FULL_ALLOW: passes at start, nothing queued
  int result = 0;          // the status decided under the lock
};

// Ops whose outcome was decided under a shard lock, completed (in order)
// once it is released.
struct DoneList {
  WaitOp *head = nullptr, *tail = nullptr;
  void push(WaitOp *op) {
    op->qnext = nullptr;
    if (tail)
      tail->qnext = op;
    else
      head = op;
    tail = op;
  }
};

// Keyed by two random seeds per limiter, so the keys a user picks (user
// names, group ids) cannot be chosen to collide. Short keys, the common
// case, cost two loads and two multiplies.
inline uint64_t fold(uint64_t a, uint64_t b) {
  // The high and low halves of a 64x64 product folded together.
  unsigned __int128 r = (unsigned __int128)a * b;
  return uint64_t(r) ^ uint64_t(r >> 64);
}
inline uint64_t load64(const uint8_t *p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint64_t load32(const uint8_t *p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline uint64_t hash_bytes(const void *key, size_t n, uint64_t seed0, uint64_t seed1) {
  auto *p = static_cast<const uint8_t *>(key);
  uint64_t h = seed0, a, b;
  if (__builtin_expect(n <= 16, 1)) {
    if (n >= 8) {
      a = load64(p);
      b = load64(p + n - 8);
    } else if (n >= 4) {
      a = load32(p);
      b = load32(p + n - 4);
    } else {
      a = uint64_t(p[0]) << 16 | uint64_t(p[n >> 1]) << 8 | p[n - 1];
      b = 0;
    }
  } else {
    size_t left = n;
    while (left > 16) {
      h = fold(load64(p) ^ seed1, load64(p + 8) ^ h);
      p += 16;
      left -= 16;
    }
    a = load64(p + left - 16);
    b = load64(p + left - 8);
  }
  return fold(fold(a ^ seed1, b ^ h) ^ n, seed1 | 1);
}

// Equal keys of equal length `n`, without a call for short ones.
inline bool key_eq(const char *stored, const void *key, uint32_t n) {
  auto *a = reinterpret_cast<const uint8_t *>(stored);
  auto *b = static_cast<const uint8_t *>(key);
  if (n >= 8 && n <= 16) return load64(a) == load64(b) && load64(a + n - 8) == load64(b + n - 8);
  if (n >= 4 && n < 8) return load32(a) == load32(b) && load32(a + n - 4) == load32(b + n - 4);
  if (n < 4) return a[0] == b[0] && a[n >> 1] == b[n >> 1] && a[n - 1] == b[n - 1];
  return std::memcmp(a, b, n) == 0;
}

// How evaluate() may change a key.
enum Mode { kPeek, kApply, kWaiter };

struct Answer {
  Decision d;
  int reason = SLUICE_LIMITER_OK;
};

class Limiter final : public mem::Allocated {
 public:
  static int create(Runtime *rt, const sluice_limiter_options &o, Limiter **out);
  void destroy();  // sluice_limiter_free

  // Validates a limit; on success fills *c. 0 or SLUICE_EINVAL (message set).
  static int make_cfg(int algo, uint64_t limit, uint64_t window, uint64_t burst, Cfg *c,
                      const char *what);

  int check(const void *key, uint32_t len, uint64_t cost, bool peek, sluice_limiter_result *r);
  static int check_many(const sluice_limiter_item *items, size_t n, sluice_limiter_result *r);
  int acquire(const void *key, uint32_t len, uint64_t cost, int64_t timeout_ms,
              sluice_status_cb cb, void *ud, sluice_free_cb free_ud, sluice_op **op_out);
  int set_limit(uint64_t limit, uint64_t window, uint64_t burst);
  int block(const void *key, uint32_t len, uint64_t duration);
  int unblock(const void *key, uint32_t len);
  int64_t sweep_all();
  int wake();
  void fill_stats(sluice_limiter_stats *st);

  Runtime *runtime() const { return rt_; }
  uint64_t now() const { return clock_ ? clock_(clock_ud_) : mono_ns(); }
  static uint64_t mono_ns();

  // ---- waits (wait.cc), loop thread unless noted
  void op_start(WaitOp *op);
  void op_cancel(WaitOp *op);
  void op_deadline(WaitOp *op);
  void op_shutdown(WaitOp *op);

 private:
  friend struct ManyCall;

  Limiter() = default;
  ~Limiter();
  void ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void unref();
  int post_wake();

  uint64_t hash(const void *key, size_t len) const {
    return hash_bytes(key, len, seed0_, seed1_);
  }
  Shard &shard_of(uint64_t h) { return shards_[h >> (64 - kShardBits)]; }
  static uint8_t tag_of(uint64_t h) { return uint8_t(0x80 | ((h >> 48) & 0x7f)); }

  // ---- entries and the table, under s.lock (table.cc)
  size_t state_words(const Entry *e) const;
  size_t entry_bytes(const Entry *e) const;
  Extra *extra_of(Entry *e) const;
  // The slot of e (by pointer); the table must hold it.
  uint32_t slot_of(const Shard &s, const Entry *e) const;
  // The slot holding the key, or -1.
  __attribute__((always_inline)) int64_t find(const Shard &s, uint64_t h, const void *key,
                                              uint32_t len) const {
    if (!s.slots) return -1;
    const uint8_t tag = tag_of(h);
    const uint32_t h32 = uint32_t(h);
    for (uint32_t i = h32 & s.mask;; i = (i + 1) & s.mask) {
      uint8_t c = s.ctrl[i];
      if (c == 0) return -1;
      if (c == tag) {
        const Entry *e = s.slots[i];
        if (e->hash32 == h32 && e->len() == len && key_eq(e->key(), key, len)) return i;
      }
    }
  }
  // Inserts a fresh entry for a key find() did not find. Returns nullptr
  // with *rc SLUICE_ELIMIT (cap reached) or SLUICE_ENOMEM.
  Entry *insert(Shard &s, uint64_t h, const void *key, uint32_t len, uint64_t now, int *rc);
  // Reallocates e with an Extra word and/or a log ring of `log_cap`;
  // nullptr on ENOMEM (e unchanged).
  Entry *reshape(Shard &s, Entry *e, bool xslot, uint32_t log_cap);
  Extra *ensure_extra(Shard &s, Entry *&e);
  void drop_extra(Shard &s, Entry *e);
  void release_extra(Shard &s, Extra *x);
  bool reclaimable(const Shard &s, Entry *e, uint64_t now) const;
  void erase(Shard &s, uint32_t idx);
  void free_entry(Shard &s, Entry *e);
  // Sweeps `n` slots from the cursor; returns the keys reclaimed.
  uint32_t sweep(Shard &s, uint32_t n, uint64_t now);
  bool resize(Shard &s, uint32_t cap);
  void maybe_shrink(Shard &s);
  bool take_key_slot();
  void give_key_slot(uint64_t n);

  // ---- decisions, under s.lock (limiter.cc)
  // e may be nullptr (a key not tracked, answered as a fresh one; kPeek).
  // kApply/kWaiter may reshape e (log growth); SLUICE_ENOMEM then.
  int evaluate(Shard &s, Entry *&e, uint64_t now, uint64_t cost, Mode mode, Answer *a);
  int evaluate_at(Shard &s, Entry *&e, uint64_t now, uint64_t cost, Mode mode, Answer *a);
  void decide(Shard &s, uint64_t *st, uint64_t now, uint64_t cost, bool apply,
              Decision *d) const {
    switch (algo_) {
      case kGcra:
        gcra(st, s.cfg, now, cost, apply, d);
        break;
      case kWindow:
        win_decide(st, s.cfg, now, cost, apply, d);
        break;
      default:
        log_decide(st, s.cfg, now, cost, apply, d);
        break;
    }
  }
  // check() once the shard is locked and the fast path does not apply;
  // releases the lock.
  int check_slow(Shard &s, uint64_t h, const void *key, uint32_t len, uint64_t cost, bool peek,
                 sluice_limiter_result *r, uint64_t now);
  void record_rejected(uint64_t n) {
    if (__builtin_expect(monitor_ != nullptr, 0)) record_rejected_slow(n);
  }
  void record_rejected_slow(uint64_t n);

  // ---- waits, under s.lock (wait.cc)
  Extra *extra_for(Shard &s, const WaitOp *op);
  // Takes op off its key's queue; true if it was the head.
  bool queue_remove(Shard &s, Extra *x, WaitOp *op);
  // Grants the head of a key's queue while it can pass, and schedules a
  // wake for the head that cannot. Ops granted or failed go to `done`.
  void pump(Shard &s, uint64_t h, const char *key, uint32_t len, DoneList &done);
  void pump_all();
  void finish(WaitOp *op, int status);  // no lock held
  void finish_list(DoneList &done);     // no lock held
  void destroy_on_loop();

  Shard *shards_ = nullptr;
  void *shards_raw_ = nullptr;
  Runtime *rt_ = nullptr;
  int algo_ = kLog;
  int on_full_ = SLUICE_LIMITER_FULL_REJECT;
  uint64_t max_keys_ = 0;
  sluice_clock_cb clock_ = nullptr;
  void *clock_ud_ = nullptr;
  uint64_t seed0_ = 0, seed1_ = 0;
  sluice_monitor *monitor_ = nullptr;
  uint32_t series_rejected_ = 0, series_wait_ = 0;

  std::mutex cfg_mu_;  // the master copy of the limit, for set_limit and stats
  Cfg cfg_;

  std::atomic<uint64_t> keys_{0}, peak_{0};
  std::atomic<uint64_t> waits_{0}, waiting_{0}, timeouts_{0}, cancels_{0}, wait_bytes_{0};

  std::mutex ops_mu_;  // the pending waits, for free
  WaitOp *ops_ = nullptr;
  std::atomic<uint32_t> refs_{1};  // the owner's, plus one per posted item
  std::atomic<bool> dying_{false};
};

}  // namespace sluice::limiter

namespace sluice {
inline limiter::Limiter *unwrap(sluice_limiter *l) {
  return reinterpret_cast<limiter::Limiter *>(l);
}
inline sluice_limiter *wrap(limiter::Limiter *l) { return reinterpret_cast<sluice_limiter *>(l); }
}  // namespace sluice

// A shard's table: linear probing over a control byte array (7 hash bits,
// so most probes never touch an entry) and an array of entry pointers.
// Deletion shifts the following run back instead of leaving tombstones, so
// a table under key churn never fills with dead slots. Reclaiming fresh
// keys happens here too: a few slots per insert, a whole shard before its
// table grows, more when max_keys is reached.
#include <algorithm>
#include <new>

#include "limiter/limiter.h"

namespace sluice::limiter {

size_t Limiter::state_words(const Entry *e) const {
  switch (algo_) {
    case kGcra:
      return 1;
    case kWindow:
      return 2;
    default:
      return 1 + log_unpack(e->state()[0]).cap;
  }
}

size_t Limiter::entry_bytes(const Entry *e) const {
  return sizeof(Entry) + Entry::key_bytes(e->len()) + 8 * state_words(e) +
         ((e->meta & Entry::kXSlot) ? 8 : 0);
}

Extra *Limiter::extra_of(Entry *e) const {
  if (!(e->meta & Entry::kXSlot)) return nullptr;
  Extra *x;
  std::memcpy(&x, e->state() + state_words(e), sizeof x);
  return x;
}

uint32_t Limiter::slot_of(const Shard &s, const Entry *e) const {
  for (uint32_t i = e->hash32 & s.mask;; i = (i + 1) & s.mask)
    if (s.slots[i] == e) return i;
}

bool Limiter::resize(Shard &s, uint32_t cap) {
  size_t bytes = size_t(cap) * (1 + sizeof(Entry *));
  auto *mem = static_cast<uint8_t *>(mem::allocate(bytes));
  if (!mem) return false;
  auto *ctrl = mem;
  auto **slots = reinterpret_cast<Entry **>(mem + cap);
  // The pointer array follows the control bytes; capacities are powers of
  // two of at least 8, so it stays 8-byte aligned.
  std::memset(ctrl, 0, cap);
  uint32_t mask = cap - 1;
  for (uint32_t i = 0, old = s.capacity(); i < old; i++) {
    if (!s.ctrl[i]) continue;
    Entry *e = s.slots[i];
    uint32_t j = e->hash32 & mask;
    while (ctrl[j]) j = (j + 1) & mask;
    ctrl[j] = s.ctrl[i];
    slots[j] = e;
  }
  if (s.slots) {
    mem::release(s.ctrl, size_t(s.capacity()) * (1 + sizeof(Entry *)));
    s.bytes -= size_t(s.capacity()) * (1 + sizeof(Entry *));
  }
  s.ctrl = ctrl;
  s.slots = slots;
  s.mask = mask;
  s.cursor = 0;
  s.bytes += bytes;
  return true;
}

void Limiter::maybe_shrink(Shard &s) {
  uint32_t cap = s.capacity();
  if (cap <= kMinTable || uint64_t(s.count) * 8 >= cap) return;
  uint32_t want = kMinTable;
  while (uint64_t(want) * 3 < uint64_t(s.count) * 8) want *= 2;  // load <= 3/8
  if (want < cap) (void)resize(s, want);  // no memory to shrink with: keep it
}

bool Limiter::take_key_slot() {
  // Never above max_keys, even for a moment: stats may be read any time.
  uint64_t n = keys_.load(std::memory_order_relaxed);
  do {
    if (n >= max_keys_) return false;
  } while (!keys_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  n++;
  uint64_t peak = peak_.load(std::memory_order_relaxed);
  while (n > peak && !peak_.compare_exchange_weak(peak, n, std::memory_order_relaxed)) {
  }
  return true;
}

void Limiter::give_key_slot(uint64_t n) { keys_.fetch_sub(n, std::memory_order_relaxed); }

bool Limiter::reclaimable(const Shard &s, Entry *e, uint64_t now) const {
  if (e->meta & Entry::kPinned) return false;
  if (Extra *x = extra_of(e)) {
    if (x->qhead || x->blocked_until > now) return false;
  }
  const uint64_t *st = e->state();
  switch (algo_) {
    case kGcra:
      return gcra_fresh(st[0], now);
    case kWindow:
      return win_fresh(st, s.cfg, now);
    default:
      return log_fresh(st, now, s.cfg.window);
  }
}

void Limiter::free_entry(Shard &s, Entry *e) {
  if (Extra *x = extra_of(e)) release_extra(s, x);
  size_t bytes = entry_bytes(e);
  s.bytes -= bytes;
  mem::release(e, bytes);
}

void Limiter::erase(Shard &s, uint32_t idx) {
  free_entry(s, s.slots[idx]);
  // Backward shift: pull each following entry of the run into the hole
  // unless its home slot lies cyclically in (hole, its slot].
  const uint32_t mask = s.mask;
  uint32_t hole = idx;
  for (uint32_t j = (idx + 1) & mask; s.ctrl[j]; j = (j + 1) & mask) {
    uint32_t home = s.slots[j]->hash32 & mask;
    bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (stays) continue;
    s.ctrl[hole] = s.ctrl[j];
    s.slots[hole] = s.slots[j];
    hole = j;
  }
  s.ctrl[hole] = 0;
  s.slots[hole] = nullptr;
  s.count--;
  give_key_slot(1);
}

uint32_t Limiter::sweep(Shard &s, uint32_t n, uint64_t now) {
  uint32_t cap = s.capacity();
  if (!cap || !s.count) return 0;
  if (n > cap) n = cap;
  uint32_t reclaimed = 0;
  bool wrapped = false;
  for (uint32_t k = 0; k < n;) {
    uint32_t i = s.cursor;
    // A reclaimed slot is looked at again: the shift may have filled it.
    if (s.ctrl[i] && reclaimable(s, s.slots[i], now)) {
      erase(s, i);
      reclaimed++;
      continue;
    }
    s.cursor = (i + 1) & s.mask;
    wrapped |= s.cursor == 0;
    k++;
  }
  s.reclaimed += reclaimed;
  if (wrapped) maybe_shrink(s);
  return reclaimed;
}

Entry *Limiter::insert(Shard &s, uint64_t h, const void *key, uint32_t len, uint64_t now,
                       int *rc) {
  if (!take_key_slot()) {
    // Make room from this shard's fresh keys, a bounded step at a time so a
    // flood of new keys at the cap costs each request little.
    if (!sweep(s, kFullSweep, now) || !take_key_slot()) {
      *rc = SLUICE_ELIMIT;
      return nullptr;
    }
  }
  size_t words = algo_ == kGcra ? 1 : algo_ == kWindow ? 2 : 1 + s.cfg.limit;
  size_t bytes = sizeof(Entry) + Entry::key_bytes(len) + 8 * words;
  auto *e = static_cast<Entry *>(mem::allocate(bytes));
  if (!e) {
    give_key_slot(1);
    *rc = SLUICE_ENOMEM;
    return nullptr;
  }
  e->hash32 = uint32_t(h);
  e->meta = len;
  std::memcpy(e->key(), key, len);
  if (Entry::key_bytes(len) != len)
    std::memset(e->key() + len, 0, Entry::key_bytes(len) - len);
  uint64_t *st = e->state();
  st[0] = 0;
  if (algo_ == kWindow) st[1] = 0;
  if (algo_ == kLog) st[0] = log_pack(LogHead{0, 0, uint32_t(s.cfg.limit)});

  sweep(s, kInsertSweep, now);
  uint32_t cap = s.capacity();
  if (uint64_t(s.count + 1) * 4 > uint64_t(cap) * 3) {
    // Fresh keys go before the table grows; it grows anyway unless that
    // left it well below the threshold, so sweeps stay amortised.
    if (cap) sweep(s, cap, now);
    if (uint64_t(s.count + 1) * 8 > uint64_t(cap) * 5) {
      uint32_t want = cap ? cap * 2 : kMinTable;
      if (!resize(s, want) && s.count + 1 >= cap) {
        mem::release(e, bytes);
        give_key_slot(1);
        *rc = SLUICE_ENOMEM;
        return nullptr;
      }
    }
  }
  uint32_t i = e->hash32 & s.mask;
  while (s.ctrl[i]) i = (i + 1) & s.mask;
  s.ctrl[i] = tag_of(h);
  s.slots[i] = e;
  s.count++;
  s.bytes += bytes;
  return e;
}

Entry *Limiter::reshape(Shard &s, Entry *e, bool xslot, uint32_t log_cap) {
  size_t old_bytes = entry_bytes(e);
  Extra *x = extra_of(e);
  size_t words = state_words(e);
  size_t new_words = algo_ == kLog ? 1 + size_t(log_cap) : words;
  bool has_x = xslot || (e->meta & Entry::kXSlot);
  size_t head = sizeof(Entry) + Entry::key_bytes(e->len());
  size_t bytes = head + 8 * new_words + (has_x ? 8 : 0);
  auto *n = static_cast<Entry *>(mem::allocate(bytes));
  if (!n) return nullptr;
  std::memcpy(n, e, head);
  if (has_x) n->meta |= Entry::kXSlot;
  uint64_t *src = e->state(), *dst = n->state();
  if (algo_ == kLog) {
    // Keep the newest entries that fit, oldest first from slot 0: those
    // are the ones still in the window whenever any older one is.
    LogHead h = log_unpack(src[0]);
    uint32_t keep = h.count < log_cap ? h.count : log_cap;
    for (uint32_t i = 0; i < keep; i++) dst[1 + i] = src[1 + log_at(h, h.count - keep + i)];
    dst[0] = log_pack(LogHead{0, keep, log_cap});
  } else {
    std::memcpy(dst, src, 8 * words);
  }
  if (has_x) std::memcpy(dst + new_words, &x, sizeof x);
  s.slots[slot_of(s, e)] = n;
  s.bytes += bytes;
  s.bytes -= old_bytes;
  mem::release(e, old_bytes);
  return n;
}

Extra *Limiter::ensure_extra(Shard &s, Entry *&e) {
  if (Extra *x = extra_of(e)) return x;
  if (!(e->meta & Entry::kXSlot)) {
    uint32_t cap = algo_ == kLog ? log_unpack(e->state()[0]).cap : 0;
    Entry *n = reshape(s, e, true, cap);
    if (!n) return nullptr;
    e = n;
  }
  void *mem = mem::allocate(sizeof(Extra));
  if (!mem) return nullptr;
  auto *x = new (mem) Extra();
  std::memcpy(e->state() + state_words(e), &x, sizeof x);
  s.bytes += sizeof(Extra);
  return x;
}

void Limiter::release_extra(Shard &s, Extra *x) {
  x->~Extra();
  mem::release(x, sizeof(Extra));
  s.bytes -= sizeof(Extra);
}

void Limiter::drop_extra(Shard &s, Entry *e) {
  Extra *x = extra_of(e);
  if (!x) return;
  release_extra(s, x);
  x = nullptr;
  std::memcpy(e->state() + state_words(e), &x, sizeof x);
}

}  // namespace sluice::limiter

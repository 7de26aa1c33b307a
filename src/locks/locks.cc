// The lock manager's shard work: key hashing, the per-shard hash map and
// entry cache, grant records, try/release and hand-off, and the live-key
// cap. Everything here runs in the calling thread.
#include "locks/locks.h"

#include <algorithm>
#include <cstring>
#include <ctime>

#include "common/error.h"

namespace sluice::locks {

namespace {

// Keys come from chat users, so the hash is seeded per manager to keep a
// crafted set of keys from piling into one chain.
inline uint64_t mix(uint64_t a, uint64_t b) {
  unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}
inline uint64_t rd64(const unsigned char *p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint64_t rd32(const unsigned char *p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
constexpr uint64_t kK0 = 0x9e3779b97f4a7c15ull, kK1 = 0xbf58476d1ce4e5b9ull,
                   kK2 = 0x94d049bb133111ebull, kK3 = 0xd6e8feb86659fd93ull;

}  // namespace

uint64_t Locks::hash(const void *key, size_t len) const {
  const auto *p = static_cast<const unsigned char *>(key);
  size_t n = len;
  uint64_t h = seed_ ^ (uint64_t(len) * kK0);
  while (n > 16) {
    h = mix(rd64(p) ^ kK1, rd64(p + 8) ^ h ^ kK2);
    p += 16;
    n -= 16;
  }
  uint64_t a = 0, b = 0;
  // Overlapping reads cover every tail length without a byte loop.
  if (n > 8) {
    a = rd64(p);
    b = rd64(p + n - 8);
  } else if (n >= 4) {
    a = rd32(p);
    b = rd32(p + n - 4);
  } else if (n > 0) {
    a = (uint64_t(p[0]) << 16) | (uint64_t(p[n >> 1]) << 8) | p[n - 1];
  }
  h = mix(a ^ kK1 ^ h, b ^ kK2);
  return mix(h ^ kK3, seed_ ^ kK0);
}

uint64_t coarse_now_ns() {
  // Held-too-long needs milliseconds at best; the coarse clock costs a few
  // ns where the precise one costs twenty on the grant path.
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

void Handoff::push(LockOp *op) {
  op->qnext = nullptr;
  if (tail) tail->qnext = op;
  else head = op;
  tail = op;
}

// ---- the hash map and the entry cache (under s.mu) --------------------

Entry *Locks::find(Shard &s, uint64_t h, const char *key, uint32_t len) {
  for (Entry *e = s.buckets[h & (s.nbuckets - 1)]; e; e = e->hnext)
    if (e->hash == h && e->key_len == len && std::memcmp(e->key(), key, len) == 0) return e;
  return nullptr;
}

void Locks::resize(Shard &s, uint32_t n) {
  auto **b = static_cast<Entry **>(mem::allocate(sizeof(Entry *) * n));
  if (!b) return;  // longer chains, still correct
  std::memset(b, 0, sizeof(Entry *) * n);
  for (uint32_t i = 0; i < s.nbuckets; i++) {
    for (Entry *e = s.buckets[i], *next; e; e = next) {
      next = e->hnext;
      Entry *&head = b[e->hash & (n - 1)];
      e->hnext = head;
      head = e;
    }
  }
  mem::release(s.buckets, sizeof(Entry *) * s.nbuckets);
  s.buckets = b;
  s.nbuckets = n;
}

void Locks::shrink(Shard &s) {
  uint32_t n = s.nbuckets;
  while (n > kMinBuckets && s.nentries < n / 4) n /= 2;
  if (n != s.nbuckets) resize(s, n);
}

void Locks::unlink_entry(Shard &s, Entry *e) {
  Entry **pp = &s.buckets[e->hash & (s.nbuckets - 1)];
  while (*pp != e) pp = &(*pp)->hnext;
  *pp = e->hnext;
}

void Locks::link_entry(Shard &s, Entry *e) {
  Entry *&head = s.buckets[e->hash & (s.nbuckets - 1)];
  e->hnext = head;
  head = e;
}

void Locks::lru_unlink(Shard &s, Entry *e) {
  if (e->lprev) e->lprev->lnext = e->lnext;
  else s.lru_head = e->lnext;
  if (e->lnext) e->lnext->lprev = e->lprev;
  else s.lru_tail = e->lprev;
  e->lprev = e->lnext = nullptr;
  e->in_lru = 0;
}

void Locks::lru_push(Shard &s, Entry *e) {
  e->lprev = nullptr;
  e->lnext = s.lru_head;
  if (s.lru_head) s.lru_head->lprev = e;
  else s.lru_tail = e;
  s.lru_head = e;
  e->in_lru = 1;
}

Entry *Locks::oldest_idle(Shard &s) {
  Entry *e;
  while ((e = s.lru_tail) && e->live) lru_unlink(s, e);
  return e;
}

void Locks::free_entry(Shard &s, Entry *e) {
  if (e->in_lru) lru_unlink(s, e);
  unlink_entry(s, e);
  s.nentries--;
  mem::release(e, e->bytes());
}

Entry *Locks::make_live(Shard &s, Entry *cached, uint64_t h, const char *key, uint32_t len) {
  Entry *e = cached;
  Entry *old = e ? nullptr : oldest_idle(s);
  if (e) {
    s.cached--;  // stays on the list until it is idle again or met there
  } else if (old && old->key_cap >= len) {
    // The least recently idle entry takes the new key: no allocation.
    e = old;
    lru_unlink(s, e);
    s.cached--;
    unlink_entry(s, e);
    e->hash = h;
    e->key_len = len;
    std::memcpy(e->key(), key, len);
    link_entry(s, e);
  } else {
    size_t bytes = std::max(kEntryBytes, (sizeof(Entry) + len + 63) & ~size_t{63});
    e = static_cast<Entry *>(mem::allocate(bytes));
    if (!e) return nullptr;
    std::memset(e, 0, sizeof(Entry));
    e->hash = h;
    e->key_len = len;
    e->key_cap = uint32_t(bytes - sizeof(Entry));
    std::memcpy(e->key(), key, len);
    link_entry(s, e);
    if (++s.nentries > s.nbuckets) resize(s, s.nbuckets * 2);
  }
  e->live = 1;
  s.live++;
  return e;
}

void Locks::to_idle(Shard &s, Entry *e) {
  s.live--;
  if (s.cache_cap == 0) {
    free_entry(s, e);
    return;
  }
  if (s.cached >= s.cache_cap) {
    Entry *old = oldest_idle(s);  // e is still live here: never itself
    free_entry(s, old);
    s.cached--;
  }
  e->live = 0;
  e->idle_epoch = epoch_.load(std::memory_order_relaxed);
  if (s.lru_head != e) {
    if (e->in_lru) lru_unlink(s, e);
    lru_push(s, e);
  }
  s.cached++;
}

void Locks::trim_shard(Shard &s, uint32_t epoch, bool all) {
  while (Entry *e = oldest_idle(s)) {
    if (!all && e->idle_epoch + 2 > epoch) break;
    free_entry(s, e);
    s.cached--;
    s.trimmed++;
  }
  shrink(s);
}

// ---- grant records (under s.mu) ----------------------------------------

uint32_t Locks::alloc_slot(Shard &s) {
  if (s.free_head) {
    uint32_t idx = s.free_head - 1;
    Grant *g = s.slot(idx);
    s.free_head = g->next_free;
    g->state = kReserved;
    return idx;
  }
  if (s.nslots == kMaxGrantSlots) return UINT32_MAX;
  if (s.nslots == uint32_t(s.chunks.size()) << kChunkBits) {
    size_t bytes = sizeof(Grant) << kChunkBits;
    auto *c = static_cast<Grant *>(mem::allocate(bytes));
    if (!c) return UINT32_MAX;
    std::memset(static_cast<void *>(c), 0, bytes);
    try {
      s.chunks.push_back(c);
    } catch (...) {
      mem::release(c, bytes);
      return UINT32_MAX;
    }
  }
  uint32_t idx = s.nslots++;
  s.slot(idx)->state = kReserved;
  return idx;
}

void Locks::free_slot(Shard &s, uint32_t idx) {
  Grant *g = s.slot(idx);
  g->state = kFree;
  g->gen++;
  g->entry = nullptr;
  g->link = 0;
  g->next_free = s.free_head;
  s.free_head = idx + 1;
}

Grant *Locks::lookup(Shard &s, uint64_t handle, bool part, uint32_t *idx_out) {
  uint32_t idx = uint32_t(handle >> 32) & (kMaxGrantSlots - 1);
  if (idx >= s.nslots) return nullptr;
  Grant *g = s.slot(idx);
  if (g->state != kHeld || g->gen != (uint32_t(handle) ^ salt_)) return nullptr;
  if (g->kind == kPart && !part) return nullptr;
  *idx_out = idx;
  return g;
}

uint64_t Locks::hold(Shard &s, Entry *e, uint32_t idx, int mode, int kind, uint64_t link,
                     uint64_t min_token, uint64_t *token) {
  Grant *g = s.slot(idx);
  // Above every token this shard gave and above min_token: the head of a
  // _many grant thereby outranks all its parts (see release_chain).
  uint64_t c = std::max(s.counter, min_token >> kShardBits) + 1;
  s.counter = c;
  g->token = (c << kShardBits) | s.index;
  g->entry = e;
  g->mode = uint8_t(mode);
  g->kind = uint8_t(kind);
  g->link = link;
  g->state = kHeld;
  if (mode == SLUICE_LOCK_SHARED) e->readers++;
  else e->writer = 1;
  s.held++;
  s.acquisitions++;
  if (hold_ns_) {
    g->acquired_ns = coarse_now_ns();
    g->hnext = nullptr;
    g->hprev = s.hold_tail;
    if (s.hold_tail) s.hold_tail->hnext = g;
    else s.hold_head = g;
    s.hold_tail = g;
    g->listed = 1;
  }
  if (token) *token = g->token;
  return encode(s.index, idx, g->gen);
}

void Locks::unlist(Shard &s, Grant *g) {
  if (g->hprev) g->hprev->hnext = g->hnext;
  else s.hold_head = g->hnext;
  if (g->hnext) g->hnext->hprev = g->hprev;
  else s.hold_tail = g->hprev;
  g->hprev = g->hnext = nullptr;
  g->listed = 0;
}

bool Locks::drop(Shard &s, Grant *g, uint32_t idx, Handoff &out) {
  Entry *e = g->entry;
  if (g->listed) unlist(s, g);
  if (g->mode == SLUICE_LOCK_SHARED) e->readers--;
  else e->writer = 0;
  s.held--;
  free_slot(s, idx);
  if (e->writer || e->readers) return false;
  if (e->qhead) {
    pump(s, e, out);
    return false;
  }
  to_idle(s, e);
  return true;
}

void Locks::queue_remove(Shard &s, Entry *e, LockOp *op) {
  if (op->qprev) op->qprev->qnext = op->qnext;
  else e->qhead = op->qnext;
  if (op->qnext) op->qnext->qprev = op->qprev;
  else e->qtail = op->qprev;
  op->qprev = op->qnext = nullptr;
  s.waiters--;
}

void Locks::pump(Shard &s, Entry *e, Handoff &out) {
  // The key passes straight to the head of its queue, so no try-acquire
  // can slip in between; consecutive shared requests go together.
  while (LockOp *op = e->qhead) {
    const KeyRef &k = op->keys[op->idx];
    if (e->writer || (k.mode == SLUICE_LOCK_EXCLUSIVE && e->readers)) break;
    queue_remove(s, e, op);
    uint64_t token = 0;
    uint32_t idx = op->reserved - 1;
    op->reserved = 0;
    op->handles[op->idx] = hold(s, e, idx, k.mode, op->kind_of_next(), op->link_of_next(),
                                op->tmax, &token);
    op->tmax = std::max(op->tmax, token);
    op->state.store(LockOp::kGranted, std::memory_order_relaxed);
    op->ref();  // the posted continuation's
    out.push(op);
    if (k.mode == SLUICE_LOCK_EXCLUSIVE) break;
  }
}

void Locks::post(Handoff &h, sluice_status_cb fn) {
  for (LockOp *op = h.head, *next; op; op = next) {
    next = op->qnext;
    op->qnext = nullptr;
    // A closed runtime completes the op through on_shutdown instead.
    if (rt_->post_internal(fn, op) != 0) op->unref();
  }
  h.head = h.tail = nullptr;
}

// ---- try and release (calling thread) ---------------------------------

int Locks::try_key(const KeyRef &k, int kind, uint64_t link, uint64_t min_token,
                   uint64_t *handle, uint64_t *token, bool count) {
  Shard &s = shard_of(k.hash);
  std::unique_lock<std::mutex> lock(s.mu);
  Entry *e = find(s, k.hash, k.p, k.len);
  bool live = e && e->live;
  if (live && !compatible(e, k.mode)) {
    if (count) s.busy++;
    return SLUICE_EAGAIN;
  }
  if (!live && !take_live(1, false)) {
    lock.unlock();
    if (count) limit_refusals_.fetch_add(1, std::memory_order_relaxed);
    return SLUICE_ELIMIT;
  }
  uint32_t idx = alloc_slot(s);
  if (idx != UINT32_MAX && !live) {
    e = make_live(s, e, k.hash, k.p, k.len);
    if (!e) {
      free_slot(s, idx);
      idx = UINT32_MAX;
    }
  }
  if (idx == UINT32_MAX) {
    lock.unlock();
    if (!live) give_live(1);
    return SLUICE_ENOMEM;
  }
  *handle = hold(s, e, idx, k.mode, kind, link, min_token, token);
  return 0;
}

int Locks::try_one(const void *key, size_t len, int mode, uint64_t *handle) {
  KeyRef k{static_cast<const char *>(key), uint32_t(len), uint8_t(mode), hash(key, len)};
  return try_key(k, kSingle, 0, 0, handle, nullptr, true);
}

int Locks::try_many(KeyRef *keys, size_t n, uint64_t *handle, bool count) {
  if (n == 1) return try_key(keys[0], kSingle, 0, 0, handle, nullptr, count);
  uint64_t link = 0, tmax = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t h = 0, t = 0;
    int rc = try_key(keys[i], i + 1 == n ? kHead : kPart, link, tmax, &h, &t, count);
    if (rc != 0) {
      while (link) link = release_one(link, 0);
      return rc;
    }
    link = h;
    tmax = std::max(tmax, t);
  }
  *handle = link;
  return 0;
}

uint64_t Locks::release_one(uint64_t handle, uint64_t bump) {
  Shard &s = shards_[(handle >> 57) & (kShards - 1)];
  Handoff out;
  uint64_t link = 0;
  bool idle = false;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    uint32_t idx;
    Grant *g = lookup(s, handle, true, &idx);
    if (!g) return 0;  // cannot happen: parts are only reachable from here
    // Grants of this key after the _many grant must outrank its token.
    s.counter = std::max(s.counter, bump >> kShardBits);
    link = g->link;
    idle = drop(s, g, idx, out);
  }
  post(out, &LockOp::granted_cb);
  if (idle) give_live(1);
  return link;
}

int Locks::release(uint64_t handle) {
  if (!(handle >> 63)) return bad_release();
  Shard &s = shards_[(handle >> 57) & (kShards - 1)];
  Handoff out;
  uint64_t link = 0, token = 0;
  bool idle = false;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    uint32_t idx;
    Grant *g = lookup(s, handle, false, &idx);
    if (!g) return bad_release();
    link = g->link;
    token = g->token;
    idle = drop(s, g, idx, out);
  }
  post(out, &LockOp::granted_cb);
  if (idle) give_live(1);
  while (link) link = release_one(link, token);
  return 0;
}

int Locks::bad_release() {
  bad_releases_.fetch_add(1, std::memory_order_relaxed);
  return fail(SLUICE_ESTATE,
              "sluice_locks_release: the guard was already released or is not this manager's");
}

int Locks::token(uint64_t handle, uint64_t *out) {
  if (!(handle >> 63))
    return fail(SLUICE_ESTATE, "sluice_locks_token: not a guard of this manager");
  Shard &s = shards_[(handle >> 57) & (kShards - 1)];
  std::lock_guard<std::mutex> lock(s.mu);
  uint32_t idx;
  Grant *g = lookup(s, handle, false, &idx);
  if (!g)
    return fail(SLUICE_ESTATE,
                "sluice_locks_token: the guard was released or is not this manager's");
  *out = g->token;
  return 0;
}

// ---- the live-key cap ---------------------------------------------------

bool Locks::take_live(int64_t n, bool force) {
  int64_t cur = live_.load(std::memory_order_relaxed);
  do {
    if (cur + n > int64_t(max_keys_)) return false;
    // Requests already waiting for room go first.
    if (!force && nwait_.load(std::memory_order_seq_cst) > 0) return false;
  } while (!live_.compare_exchange_weak(cur, cur + n, std::memory_order_seq_cst,
                                        std::memory_order_relaxed));
  int64_t peak = peak_.load(std::memory_order_relaxed);
  while (cur + n > peak &&
         !peak_.compare_exchange_weak(peak, cur + n, std::memory_order_relaxed)) {
  }
  return true;
}

void Locks::give_live(int64_t n) {
  live_.fetch_sub(n, std::memory_order_seq_cst);
  // Pairs with the waiter's increment of nwait_ before its own try: one of
  // the two sees the other, so room freed now is never missed.
  if (nwait_.load(std::memory_order_seq_cst) > 0) room_kick();
}

void Locks::room_kick() {
  Handoff out;
  {
    std::lock_guard<std::mutex> lock(room_mu_);
    while (LockOp *op = room_head_) {
      if (!take_live(op->need, true)) break;  // first come, first served
      room_head_ = op->qnext;
      if (room_head_) room_head_->qprev = nullptr;
      else room_tail_ = nullptr;
      op->qprev = op->qnext = nullptr;
      nwait_.fetch_sub(1, std::memory_order_seq_cst);
      op->credits += op->need;
      op->state.store(LockOp::kRoomGranted, std::memory_order_relaxed);
      op->ref();
      out.push(op);
    }
  }
  post(out, &LockOp::room_cb);
}

// ---- figures and trimming ----------------------------------------------

void Locks::trim() {
  for (Shard &s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    trim_shard(s, 0, true);
  }
}

void Locks::fill_stats(sluice_locks_stats *st) {
  for (Shard &s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    st->live_keys += s.live;
    st->cached_entries += s.cached;
    st->held += s.held;
    st->waiters += s.waiters;
    st->acquisitions += s.acquisitions;
    st->busy += s.busy;
    st->trimmed += s.trimmed;
  }
  st->peak_live_keys = uint64_t(peak_.load(std::memory_order_relaxed));
  st->room_waiters = uint64_t(std::max(0, nwait_.load(std::memory_order_relaxed)));
  st->contended = contended_.load(std::memory_order_relaxed);
  st->timeouts = timeouts_.load(std::memory_order_relaxed);
  st->cancellations = cancellations_.load(std::memory_order_relaxed);
  st->wait_ns = wait_ns_.load(std::memory_order_relaxed);
  st->limit_refusals = limit_refusals_.load(std::memory_order_relaxed);
  st->held_too_long = held_too_long_.load(std::memory_order_relaxed);
  st->bad_releases = bad_releases_.load(std::memory_order_relaxed);
}

// ---- keys of a _many request --------------------------------------------

size_t sort_keys(KeyRef *keys, size_t n) {
  auto less = [](const KeyRef &a, const KeyRef &b) {
    int c = std::memcmp(a.p, b.p, std::min(a.len, b.len));
    return c != 0 ? c < 0 : a.len < b.len;
  };
  std::sort(keys, keys + n, less);
  size_t out = 0;
  for (size_t i = 0; i < n; i++) {
    if (out > 0 && keys[out - 1].len == keys[i].len &&
        std::memcmp(keys[out - 1].p, keys[i].p, keys[i].len) == 0) {
      if (keys[i].mode == SLUICE_LOCK_EXCLUSIVE) keys[out - 1].mode = SLUICE_LOCK_EXCLUSIVE;
      continue;
    }
    keys[out++] = keys[i];
  }
  return out;
}

}  // namespace sluice::locks

// The lock manager's life cycle and its loop-thread work: creation, the
// idle timer that trims the entry cache, the held-too-long check, and the
// teardown that completes pending requests.
#include <sys/random.h>

#include <algorithm>
#include <cstring>

#include "common/error.h"
#include "locks/locks.h"

namespace sluice::locks {

uint64_t coarse_now_ns();  // locks.cc

void *Locks::operator new(std::size_t n) {
  void *raw = mem::allocate(n + 64);
  if (!raw) throw std::bad_alloc();
  auto a = (reinterpret_cast<uintptr_t>(raw) + 64) & ~uintptr_t{63};
  reinterpret_cast<void **>(a)[-1] = raw;
  return reinterpret_cast<void *>(a);
}

void Locks::operator delete(void *p, std::size_t n) noexcept {
  if (p) mem::release(static_cast<void **>(p)[-1], n + 64);
}

int Locks::create(Runtime *rt, const sluice_locks_options &o, Locks **out) {
  if (rt->is_closed())
    return fail(SLUICE_ECLOSED, "sluice_locks_new: the runtime is shutting down");
  auto *l = new Locks();
  l->rt_ = rt;
  l->max_keys_ = o.max_keys;
  l->on_full_ = o.on_full;
  l->cleanup_ms_ = o.cleanup_interval_ms;
  l->hold_ns_ = uint64_t{o.hold_limit_ms} * 1000000;
  l->held_cb_ = o.on_held_too_long;
  l->held_ud_ = o.held_user_data;
  l->monitor_ = o.monitor;
  uint64_t rnd[2] = {0, 0};
  if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != ssize_t(sizeof rnd)) {
    rnd[0] = sluice_now_ns() ^ reinterpret_cast<uintptr_t>(l);
    rnd[1] = rnd[0] * 0x9e3779b97f4a7c15ull;
  }
  l->seed_ = rnd[0];
  l->salt_ = uint32_t(rnd[1] >> 17);
  for (uint32_t i = 0; i < kShards; i++) {
    Shard &s = l->shards_[i];
    s.index = i;
    s.cache_cap = o.max_locks / kShards + (i < o.max_locks % kShards ? 1 : 0);
    s.buckets = static_cast<Entry **>(mem::allocate(sizeof(Entry *) * kMinBuckets));
    if (!s.buckets) {
      delete l;
      return fail(SLUICE_ENOMEM, "sluice_locks_new: out of memory");
    }
    std::memset(s.buckets, 0, sizeof(Entry *) * kMinBuckets);
    s.nbuckets = kMinBuckets;
  }
  if (l->monitor_) {
    int rc = sluice_monitor_series(l->monitor_, "locks.wait", 10, &l->series_);
    if (rc != 0) {
      delete l;
      return rc;
    }
  }
  if (l->cleanup_ms_ || l->hold_ns_) {
    int rc = rt->call([](void *p) { static_cast<Locks *>(p)->start_timers(); }, l);
    if (rc != 0) {
      delete l;
      return rc;
    }
  }
  *out = l;
  return 0;
}

Locks::~Locks() {
  for (Shard &s : shards_) {
    for (uint32_t i = 0; s.buckets && i < s.nbuckets; i++) {
      for (Entry *e = s.buckets[i], *next; e; e = next) {
        next = e->hnext;
        mem::release(e, e->bytes());
      }
    }
    if (s.buckets) mem::release(s.buckets, sizeof(Entry *) * s.nbuckets);
    for (Grant *c : s.chunks) mem::release(c, sizeof(Grant) << kChunkBits);
  }
}

// ---- timers (loop thread) ----------------------------------------------

void Locks::start_timers() {
  // Registered here, on the loop thread, so a shutdown can never call the
  // hook of a manager whose creation is still undecided.
  if (rt_->add_hook(this) != 0) return;
  hooked_ = true;
  uv_loop_t *loop = rt_->loop();
  if (cleanup_ms_) {
    uv_timer_init(loop, &cleanup_timer_);
    cleanup_timer_.data = this;
    uv_timer_start(
        &cleanup_timer_, [](uv_timer_t *t) { static_cast<Locks *>(t->data)->cleanup_tick(); },
        cleanup_ms_, cleanup_ms_);
    // The manager alone must not keep an embedding program's loop running.
    uv_unref(reinterpret_cast<uv_handle_t *>(&cleanup_timer_));
    cleanup_on_ = true;
    open_timers_++;
  }
  if (hold_ns_) {
    // A grant is reported within a quarter of the limit (plus the coarse
    // clock's few ms) after it is due.
    uint64_t period = std::clamp<uint64_t>(hold_ns_ / 4000000, 1, 1000);
    uv_timer_init(loop, &hold_timer_);
    hold_timer_.data = this;
    uv_timer_start(
        &hold_timer_, [](uv_timer_t *t) { static_cast<Locks *>(t->data)->hold_tick(); }, period,
        period);
    uv_unref(reinterpret_cast<uv_handle_t *>(&hold_timer_));
    hold_on_ = true;
    open_timers_++;
  }
}

void Locks::close_timers() {
  auto closed = [](uv_handle_t *h) {
    auto *l = static_cast<Locks *>(h->data);
    if (--l->open_timers_ == 0 && l->dying_) delete l;
  };
  if (cleanup_on_) uv_close(reinterpret_cast<uv_handle_t *>(&cleanup_timer_), closed);
  if (hold_on_) uv_close(reinterpret_cast<uv_handle_t *>(&hold_timer_), closed);
  cleanup_on_ = hold_on_ = false;
}

void Locks::cleanup_tick() {
  uint32_t e = epoch_.fetch_add(1, std::memory_order_relaxed) + 1;
  for (Shard &s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    trim_shard(s, e, false);
  }
}

void Locks::hold_tick() {
  struct Report {
    uint64_t token, acquired;
    size_t off;
    uint32_t len;
  };
  try {
    std::vector<Report, mem::Allocator<Report>> reports;
    std::vector<char, mem::Allocator<char>> keys;
    uint64_t now = coarse_now_ns();
    for (Shard &s : shards_) {
      std::lock_guard<std::mutex> lock(s.mu);
      // Oldest first: stop at the first grant not yet due.
      while (Grant *g = s.hold_head) {
        if (now - g->acquired_ns < hold_ns_) break;
        unlist(s, g);
        Entry *e = g->entry;
        reports.push_back(Report{g->token, g->acquired_ns, keys.size(), e->key_len});
        keys.insert(keys.end(), e->key(), e->key() + e->key_len);
      }
    }
    if (reports.empty()) return;
    held_too_long_.fetch_add(reports.size(), std::memory_order_relaxed);
    sluice_locks_held_cb cb = held_cb_;
    void *ud = held_ud_;
    if (!cb) return;
    // Coarse acquire time, precise now: never less than the limit.
    uint64_t precise = sluice_now_ns();
    for (const Report &r : reports)
      cb(ud, keys.data() + r.off, r.len, r.token, precise - r.acquired);
  } catch (const std::bad_alloc &) {
    // Reports not made now are lost (they were taken off the list); the
    // count above is only short if the first allocation failed.
  }
}

// ---- teardown -----------------------------------------------------------

void Locks::on_runtime_shutdown() {
  // Requests are ops of the runtime: it completes them right after this.
  hooked_ = false;
  close_timers();
}

void Locks::destroy_on_loop() {
  dying_ = true;
  if (hooked_) {
    rt_->remove_hook(this);
    hooked_ = false;
  }
  LockOp *list;
  {
    std::lock_guard<std::mutex> lock(ops_mu_);
    list = ops_;
    ops_ = nullptr;
    for (LockOp *op = list; op; op = op->onext) op->listed = false;
  }
  // Queues and records die with the manager; only the callbacks matter.
  for (LockOp *op = list, *next; op; op = next) {
    next = op->onext;
    op->oprev = op->onext = nullptr;
    fail(SLUICE_ECLOSED, "the lock manager was freed");
    op->complete(SLUICE_ECLOSED);
  }
  close_timers();
  if (open_timers_ == 0) delete this;
}

void Locks::destroy() {
  int rc = rt_->call([](void *p) { static_cast<Locks *>(p)->destroy_on_loop(); }, this);
  if (rc == 0) return;
  // The runtime has shut down: it completed every request and its hook
  // closed the timers, whose loop has run to its end.
  dying_ = true;
  if (open_timers_ == 0) delete this;
}

}  // namespace sluice::locks

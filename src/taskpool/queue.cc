// Placing requests and handing slots on: the priority queue, the room
// line, the anti-starvation rule and the grant. Everything here runs
// under mu_ except place()'s entry and flush().
#include "common/error.h"
#include "sluice/monitor.h"
#include "taskpool/pool.h"

namespace sluice::taskpool {

namespace {
constexpr uint64_t kNsPerMs = 1000000;
}

void List::push(PoolOp *op) {
  op->next = nullptr;
  op->prev = tail;
  if (tail) tail->next = op;
  else head = op;
  tail = op;
  n++;
}

void List::remove(PoolOp *op) {
  if (op->prev) op->prev->next = op->next;
  else head = op->next;
  if (op->next) op->next->prev = op->prev;
  else tail = op->prev;
  op->prev = op->next = nullptr;
  n--;
}

void Handoff::push(PoolOp *op) {
  op->ref();  // the posted item's
  op->hnext = nullptr;
  if (tail) tail->hnext = op;
  else head = op;
  tail = op;
}

void Pool::list_op(PoolOp *op) {
  op->aprev = nullptr;
  op->anext = ops_;
  if (ops_) ops_->aprev = op;
  ops_ = op;
  op->listed = true;
}

void Pool::unlist_op(PoolOp *op) {
  if (!op->listed) return;
  if (op->aprev) op->aprev->anext = op->anext;
  else ops_ = op->anext;
  if (op->anext) op->anext->aprev = op->aprev;
  op->aprev = op->anext = nullptr;
  op->listed = false;
}

void Pool::finish(PoolOp *op, int result) {
  op->state = PoolOp::kFinished;
  op->result = result;
  unlist_op(op);
  op->finished.store(true, std::memory_order_release);
}

void Pool::give_slot() {
  uint64_t old = state_.fetch_sub(1, std::memory_order_acq_rel);
  if (old & kClosed) idle_cv_.notify_all();
}

int Pool::place(PoolOp *op, int64_t timeout_ms, const char *fn) {
  enum { kGrantNow, kToQueue, kToRoom } where;
  std::unique_lock<std::mutex> lk(mu_);
  uint64_t w = state_.load(std::memory_order_relaxed);
  uint32_t lim = 0;
  for (;;) {
    if (w & kClosed) return fail(SLUICE_ECLOSED, "%s: the pool is shut down", fn);
    lim = limit_.load(std::memory_order_relaxed);
    if (waiting_of(w) == 0 && used_of(w) < lim) {
      if (state_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel,
                                       std::memory_order_relaxed)) {
        where = kGrantNow;
        break;
      }
      continue;
    }
    bool fits = queue_len_ < max_queued_;
    if (!fits && on_full_ != SLUICE_TASKPOOL_FULL_WAIT) {
      submitted_++;
      rejected_++;
      if (adaptive_) saturated_.store(true, std::memory_order_relaxed);
      lk.unlock();
      if (monitor_) sluice_monitor_record_id(monitor_, series_rejected_, 0, SLUICE_EFULL);
      return fail(SLUICE_EFULL, "%s: the queue is full (max_queued %u)", fn, max_queued_);
    }
    if (state_.compare_exchange_weak(w, w + kWaitOne, std::memory_order_acq_rel,
                                     std::memory_order_relaxed)) {
      where = fits ? kToQueue : kToRoom;
      break;
    }
  }

  op->enq_ns = now();
  uint64_t deadline = 0;
  if (where == kGrantNow) {
    uint32_t used = used_of(w) + 1;
    note_running(used);
    if (adaptive_ && used >= lim) saturated_.store(true, std::memory_order_relaxed);
    if (op->kind == PoolOp::kPermit) {
      uint32_t gen = 0;
      uint32_t idx = claim_locked(&gen);
      if (idx == UINT32_MAX) {
        give_slot();  // nobody can be waiting: that changes only under mu_
        return fail(SLUICE_ENOMEM, "%s: out of memory for a permit record", fn);
      }
      rec(idx).start.store(permit_now(), std::memory_order_relaxed);
      op->permit = encode(idx, gen);
      op->state = PoolOp::kGranted;
      op->at_once = true;
    } else {
      op->state = PoolOp::kReady;
    }
  } else {
    if (adaptive_) saturated_.store(true, std::memory_order_relaxed);
    if (timeout_ms >= 0) deadline = sluice_now_ns() + uint64_t(timeout_ms) * kNsPerMs;
    op->deadline_ns = deadline;
    op->waited = true;
    if (where == kToQueue) {
      q_[op->prio].push(op);
      op->state = PoolOp::kQueued;
      if (++queue_len_ > peak_queued_) peak_queued_ = queue_len_;
    } else {
      room_.push(op);
      op->state = PoolOp::kRoom;
    }
  }
  submitted_++;
  list_op(op);
  // Started under the mutex, so nobody can grant, run or complete the
  // request before the runtime knows it (and nothing has to be undone
  // behind someone's back if the runtime refuses it).
  int rc = rt_->start(op, deadline);
  if (rc != 0) {
    submitted_--;
    unlist_op(op);
    switch (op->state) {
      case PoolOp::kQueued:
      case PoolOp::kRoom:
        unqueue(op);
        break;
      case PoolOp::kGranted:
        drop_record(op->permit);
        give_slot();
        break;
      default:
        give_slot();
        break;
    }
    op->state = PoolOp::kNew;
    return rc;
  }
  if (op->state == PoolOp::kReady) {
    Handoff h;
    dispatch(op, h);
    lk.unlock();
    flush(h);
  }
  return 0;
}

void Pool::drop_record(uint64_t handle) {
  // A record claimed for a grant that never reached its caller.
  uint32_t idx = uint32_t(handle >> 32) & 0x7fffffffu;
  uint32_t gen = uint32_t(handle) ^ salt_;
  rec(idx).word.store(uint64_t(uint32_t(gen + 1)) << 2 | kFree, std::memory_order_release);
}

void Pool::unqueue(PoolOp *op) {
  if (op->state == PoolOp::kQueued) {
    List &l = q_[op->prio];
    l.remove(op);
    queue_len_--;
    if (l.n == 0) bypass_[op->prio] = 0;
  } else {
    room_.remove(op);
  }
  state_.fetch_sub(kWaitOne, std::memory_order_acq_rel);
  refill();
}

void Pool::refill() {
  while (queue_len_ < max_queued_ && room_.n) {
    PoolOp *op = room_.pop();
    q_[op->prio].push(op);
    op->state = PoolOp::kQueued;
    if (++queue_len_ > peak_queued_) peak_queued_ = queue_len_;
  }
}

// The anti-starvation rule (docs/taskpool.md): a priority whose waiting
// requests have been passed over by max_bypass grants in a row is served
// next, low before normal; otherwise the highest priority waiting.
PoolOp *Pool::pick(int *cls) {
  if (queue_len_ == 0) {
    *cls = -1;
    return room_.head;  // max_queued 0: the room line is the only line
  }
  for (int c = SLUICE_PRIORITY_LOW; c > SLUICE_PRIORITY_HIGH; c--) {
    if (q_[c].n && bypass_[c] >= max_bypass_) {
      *cls = c;
      return q_[c].head;
    }
  }
  for (int c = SLUICE_PRIORITY_HIGH; c <= SLUICE_PRIORITY_LOW; c++) {
    if (q_[c].n) {
      *cls = c;
      return q_[c].head;
    }
  }
  *cls = -1;
  return nullptr;
}

void Pool::pump(Handoff &h) {
  for (;;) {
    uint64_t w = state_.load(std::memory_order_acquire);
    // A closed pool grants nothing more: its waiters end with ECLOSED.
    if (waiting_of(w) == 0 || (w & kClosed)) return;
    uint32_t lim = limit_.load(std::memory_order_relaxed);
    if (used_of(w) >= lim) return;
    // Only releases change `used` meanwhile (the fast path stays out while
    // anyone waits), so a failed swap just reads again.
    if (!state_.compare_exchange_weak(w, w + 1 - kWaitOne, std::memory_order_acq_rel,
                                      std::memory_order_relaxed))
      continue;
    int cls = -1;
    PoolOp *op = pick(&cls);
    if (cls >= 0) {
      q_[cls].remove(op);
      queue_len_--;
      bypass_[cls] = 0;
      for (int c = cls + 1; c <= SLUICE_PRIORITY_LOW; c++)
        if (q_[c].n) bypass_[c]++;
      refill();
    } else {
      room_.remove(op);
    }
    uint32_t used = used_of(w) + 1;
    note_running(used);
    if (adaptive_ && used >= lim) saturated_.store(true, std::memory_order_relaxed);
    grant(op, h);
  }
}

void Pool::grant(PoolOp *op, Handoff &h) {
  if (op->kind == PoolOp::kTask) {
    op->state = PoolOp::kReady;
    dispatch(op, h);  // its wait is counted when it starts
    return;
  }
  uint64_t wait = now() - op->enq_ns;
  uint32_t gen = 0;
  uint32_t idx = claim_locked(&gen);
  if (idx == UINT32_MAX) {
    give_slot();
    failed_++;
    finish(op, SLUICE_ENOMEM);
    if (monitor_) sluice_monitor_record_id(monitor_, series_wait_, wait, SLUICE_ENOMEM);
    h.push(op);
    return;
  }
  rec(idx).start.store(permit_now(), std::memory_order_relaxed);
  op->permit = encode(idx, gen);
  op->state = PoolOp::kGranted;
  wait_ns_ += wait;
  if (monitor_) sluice_monitor_record_id(monitor_, series_wait_, wait, 0);
  h.push(op);
}

void Pool::flush(Handoff &h) {
  h.wake = 0;
  for (PoolOp *op = h.head, *next; op; op = next) {
    next = op->hnext;
    op->hnext = nullptr;
    // If the runtime is shutting down the post fails; its shutdown then
    // completes the op (PoolOp::on_shutdown).
    if (rt_->post_internal(&PoolOp::posted_cb, op) != 0) op->unref();
  }
  h.head = h.tail = nullptr;
  if (h.completions) {
    // The last completion is posted: a shutdown waiting for it may go on
    // (its call to the loop queues behind the posts).
    uint32_t n = h.completions;
    h.completions = 0;
    if (posting_.fetch_sub(n, std::memory_order_seq_cst) == n &&
        (state_.load(std::memory_order_seq_cst) & kClosed)) {
      std::lock_guard<std::mutex> g(mu_);
      idle_cv_.notify_all();
    }
  }
}

}  // namespace sluice::taskpool

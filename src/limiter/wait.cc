// Waits (sluice_limiter_acquire): a request queues on its key in the
// calling thread, so the queue order is the order of the calls; the loop
// thread starts it, grants the head of the queue when the key's state lets
// it pass, and sleeps it until the time the state says (a deadline of the
// runtime's schedule) when not. Every decision about an op is made under
// its key's shard lock on the loop thread and delivered after the lock is
// released, so cancel, deadline and grant have exactly one winner.
#include "common/error.h"
#include "limiter/limiter.h"

namespace sluice::limiter {

WaitOp::~WaitOp() {
  if (key) mem::release(key, len);
}

void WaitOp::on_start() { lim->op_start(this); }
void WaitOp::on_cancel() { lim->op_cancel(this); }
void WaitOp::on_deadline() { lim->op_deadline(this); }
void WaitOp::on_shutdown() { lim->op_shutdown(this); }

namespace {
constexpr uint64_t kNsPerMs = 1000000;
}

int Limiter::acquire(const void *key, uint32_t len, uint64_t cost, int64_t timeout_ms,
                     sluice_status_cb cb, void *ud, sluice_free_cb free_ud, sluice_op **op_out) {
  if (!rt_)
    return fail(SLUICE_EINVAL, "sluice_limiter_acquire: the limiter was created without a runtime");
  const uint64_t now = this->now();
  const uint64_t h = hash(key, len);
  Shard &s = shard_of(h);
  auto *op = new WaitOp(rt_, cb, ud, free_ud);
  op->key = static_cast<char *>(mem::allocate(len));
  if (!op->key) {
    delete op;
    return fail(SLUICE_ENOMEM, "sluice_limiter_acquire: out of memory");
  }
  std::memcpy(op->key, key, len);
  op->len = len;
  op->hash = h;
  op->cost = cost;
  op->lim = this;
  op->started_ns = mono_ns();
  if (timeout_ms >= 0) op->deadline = op->started_ns + uint64_t(timeout_ms) * kNsPerMs;

  int rc = 0;
  uint64_t max_cost;
  s.lock.lock();
  max_cost = s.cfg.max_cost;
  if (cost > max_cost) {
    rc = SLUICE_EINVAL;
  } else {
    int64_t idx = find(s, h, key, len);
    Entry *e = idx >= 0 ? s.slots[idx] : insert(s, h, key, len, now, &rc);
    if (e) {
      if (Extra *x = ensure_extra(s, e)) {
        op->qprev = x->qtail;
        if (x->qtail)
          x->qtail->qnext = op;
        else
          x->qhead = op;
        x->qtail = op;
        x->queued_cost += cost;
        if (!x->listed) {
          x->listed = true;
          x->wprev = nullptr;
          x->wnext = s.waiting;
          if (s.waiting) s.waiting->wprev = x;
          s.waiting = x;
        }
      } else {
        rc = SLUICE_ENOMEM;
      }
    } else if (rc == SLUICE_ELIMIT && on_full_ == SLUICE_LIMITER_FULL_ALLOW) {
      rc = 0;
      op->untracked = true;
      op->state = WaitOp::kGranted;
      s.full_allowed++;
      s.allowed++;
    } else if (rc == SLUICE_ELIMIT) {
      s.full_refused++;
    }
  }
  s.lock.unlock();
  if (rc != 0) {
    delete op;
    if (rc == SLUICE_EINVAL)
      return fail(rc, "sluice_limiter_acquire: cost %llu is above the limit %llu, so it could never pass",
                  (unsigned long long)cost, (unsigned long long)max_cost);
    if (rc == SLUICE_ELIMIT)
      return fail(rc, "sluice_limiter_acquire: a new key while max_keys (%llu) keys are tracked",
                  (unsigned long long)max_keys_);
    return fail(rc, "sluice_limiter_acquire: out of memory");
  }

  {
    std::lock_guard<std::mutex> g(ops_mu_);
    op->oprev = nullptr;
    op->onext = ops_;
    if (ops_) ops_->oprev = op;
    ops_ = op;
    op->listed = true;
  }
  waits_.fetch_add(1, std::memory_order_relaxed);
  waiting_.fetch_add(1, std::memory_order_relaxed);
  wait_bytes_.fetch_add(sizeof(WaitOp) + len, std::memory_order_relaxed);
  if (op_out) op->ref();
  rc = rt_->start(op, op->deadline);
  if (rc != 0) {
    // Never started: nothing on the loop has seen it (the loop stops at an
    // unstarted head), so it is simply taken back.
    if (!op->untracked) {
      s.lock.lock();
      if (Extra *x = extra_for(s, op)) queue_remove(s, x, op);
      s.lock.unlock();
    }
    {
      std::lock_guard<std::mutex> g(ops_mu_);
      if (op->oprev)
        op->oprev->onext = op->onext;
      else
        ops_ = op->onext;
      if (op->onext) op->onext->oprev = op->oprev;
    }
    waits_.fetch_sub(1, std::memory_order_relaxed);
    waiting_.fetch_sub(1, std::memory_order_relaxed);
    wait_bytes_.fetch_sub(sizeof(WaitOp) + len, std::memory_order_relaxed);
    delete op;
    return rc;
  }
  if (op_out) *op_out = op;
  return 0;
}

Extra *Limiter::extra_for(Shard &s, const WaitOp *op) {
  int64_t idx = find(s, op->hash, op->key, op->len);
  return idx >= 0 ? extra_of(s.slots[idx]) : nullptr;
}

bool Limiter::queue_remove(Shard &s, Extra *x, WaitOp *op) {
  bool head = x->qhead == op;
  if (op->qprev)
    op->qprev->qnext = op->qnext;
  else
    x->qhead = op->qnext;
  if (op->qnext)
    op->qnext->qprev = op->qprev;
  else
    x->qtail = op->qprev;
  op->qprev = op->qnext = nullptr;
  x->queued_cost -= op->cost;
  if (!x->qhead && x->listed) {
    if (x->wprev)
      x->wprev->wnext = x->wnext;
    else
      s.waiting = x->wnext;
    if (x->wnext) x->wnext->wprev = x->wprev;
    x->wprev = x->wnext = nullptr;
    x->listed = false;
  }
  return head;
}

void Limiter::pump(Shard &s, uint64_t h, const char *key, uint32_t len, DoneList &done) {
  // A key with waiters is never reclaimed, so it is there.
  int64_t idx = find(s, h, key, len);
  if (idx < 0) return;
  Entry *e = s.slots[idx];
  Extra *x = extra_of(e);
  if (!x) return;
  const uint64_t now = this->now();
  while (WaitOp *op = x->qhead) {
    if (op->state == WaitOp::kUnstarted) break;  // its start pumps again
    int status = 1;  // still waiting
    Answer a;
    if (op->cost > s.cfg.max_cost)
      status = SLUICE_EINVAL;  // a lowered limit: it could never pass
    else if (int rc = evaluate(s, e, now, op->cost, kWaiter, &a))
      status = rc;
    else if (a.d.allowed)
      status = 0;
    if (status == 1) {
      // Asleep until the state lets it pass (the limiter's clock measures
      // how long; the runtime's schedule counts it off, never early).
      uint64_t wake = mono_ns() + a.d.retry_after;
      rt_->schedule(op, op->deadline && op->deadline < wake ? op->deadline : wake);
      break;
    }
    if (status == 0) s.allowed++;
    queue_remove(s, x, op);
    op->state = status == 0 ? WaitOp::kGranted : WaitOp::kOff;
    op->result = status;
    done.push(op);
  }
}

void Limiter::pump_all() {
  for (unsigned i = 0; i < kShards; i++) {
    Shard &s = shards_[i];
    DoneList done;
    s.lock.lock();
    for (Extra *x = s.waiting, *next; x; x = next) {
      next = x->wnext;  // pump may unlist x, never another key
      WaitOp *head = x->qhead;
      pump(s, head->hash, head->key, head->len, done);
    }
    s.lock.unlock();
    finish_list(done);
  }
}

void Limiter::finish(WaitOp *op, int status) {
  if (op->listed) {
    std::lock_guard<std::mutex> g(ops_mu_);
    if (op->oprev)
      op->oprev->onext = op->onext;
    else
      ops_ = op->onext;
    if (op->onext) op->onext->oprev = op->oprev;
    op->oprev = op->onext = nullptr;
    op->listed = false;
  }
  waiting_.fetch_sub(1, std::memory_order_relaxed);
  wait_bytes_.fetch_sub(sizeof(WaitOp) + op->len, std::memory_order_relaxed);
  if (status == SLUICE_ETIMEDOUT) timeouts_.fetch_add(1, std::memory_order_relaxed);
  if (status == SLUICE_ECANCELED) cancels_.fetch_add(1, std::memory_order_relaxed);
  if (status == SLUICE_EINVAL)
    fail(status, "sluice_limiter_acquire: the limit was lowered below the request's cost %llu",
         (unsigned long long)op->cost);
  if (monitor_) sluice_monitor_record_id(monitor_, series_wait_, mono_ns() - op->started_ns, status);
  op->complete(status);
}

void Limiter::finish_list(DoneList &done) {
  // A callback may cancel an op later in the list: it is kGranted or kOff
  // already, so the cancel loses and the op still completes here.
  for (WaitOp *op = done.head, *next; op; op = next) {
    next = op->qnext;
    op->qnext = nullptr;
    finish(op, op->result);
  }
  done.head = done.tail = nullptr;
}

// ---- the op's hooks (loop thread) ----------------------------------------

void Limiter::op_start(WaitOp *op) {
  if (op->untracked) {
    finish(op, 0);
    return;
  }
  Shard &s = shard_of(op->hash);
  DoneList done;
  s.lock.lock();
  if (op->state == WaitOp::kUnstarted) op->state = WaitOp::kQueued;
  if (op->state == WaitOp::kQueued) pump(s, op->hash, op->key, op->len, done);
  s.lock.unlock();
  finish_list(done);
}

void Limiter::op_cancel(WaitOp *op) {
  if (op->state == WaitOp::kGranted || op->state == WaitOp::kOff) return;
  Shard &s = shard_of(op->hash);
  DoneList done;
  s.lock.lock();
  if (Extra *x = extra_for(s, op)) {
    bool head = queue_remove(s, x, op);
    if (head) pump(s, op->hash, op->key, op->len, done);
  }
  op->state = WaitOp::kOff;
  s.lock.unlock();
  finish(op, SLUICE_ECANCELED);
  finish_list(done);
}

void Limiter::op_deadline(WaitOp *op) {
  if (op->state != WaitOp::kQueued && op->state != WaitOp::kUnstarted) return;
  Shard &s = shard_of(op->hash);
  DoneList done;
  bool expired = false;
  s.lock.lock();
  // A deadline already past may fire before the start hook has run.
  op->state = WaitOp::kQueued;
  pump(s, op->hash, op->key, op->len, done);
  if (op->state == WaitOp::kQueued) {
    Extra *x = extra_for(s, op);
    if (op->deadline && mono_ns() >= op->deadline) {
      expired = true;
      op->state = WaitOp::kOff;
      if (x && queue_remove(s, x, op)) pump(s, op->hash, op->key, op->len, done);
    } else if (x && x->qhead != op && op->deadline) {
      rt_->schedule(op, op->deadline);  // not the head: only its deadline
    }
  }
  s.lock.unlock();
  if (expired) finish(op, SLUICE_ETIMEDOUT);
  finish_list(done);
}

void Limiter::op_shutdown(WaitOp *op) {
  // The runtime is closing: no grants any more, every wait ends ECLOSED.
  if (op->state == WaitOp::kUnstarted || op->state == WaitOp::kQueued) {
    Shard &s = shard_of(op->hash);
    s.lock.lock();
    if (Extra *x = extra_for(s, op)) queue_remove(s, x, op);
    s.lock.unlock();
  }
  op->state = WaitOp::kOff;
  finish(op, SLUICE_ECLOSED);
}

void Limiter::destroy_on_loop() {
  WaitOp *list;
  {
    std::lock_guard<std::mutex> g(ops_mu_);
    list = ops_;
    ops_ = nullptr;
    for (WaitOp *op = list; op; op = op->onext) op->listed = false;
  }
  // The queues die with the limiter; only the callbacks matter.
  for (WaitOp *op = list, *next; op; op = next) {
    next = op->onext;
    op->oprev = op->onext = nullptr;
    op->state = WaitOp::kOff;
    fail(SLUICE_ECLOSED, "the limiter was freed");
    finish(op, SLUICE_ECLOSED);
  }
}

int Limiter::post_wake() {
  ref();
  int rc = rt_->post_internal(
      [](void *p, int) {
        auto *l = static_cast<Limiter *>(p);
        if (!l->dying_.load(std::memory_order_acquire)) l->pump_all();
        l->unref();
      },
      this);
  if (rc != 0) unref();
  return rc;
}

int Limiter::wake() { return rt_ ? post_wake() : 0; }

}  // namespace sluice::limiter

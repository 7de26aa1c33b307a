// Waiting requests (sluice_locks_acquire and _many): a small state machine
// on the loop thread. The one step taken elsewhere is queued -> granted,
// which a releaser decides under the shard mutex in its own thread; it then
// posts the request to the loop (granted_cb), which carries on from there.
//
//   kStart --on_start--> [try key idx] --free--> next key ... --> complete(0)
//                             | busy: kQueued --releaser--> kGranted --post--> next key
//                             | no room: kRoomWait --room_kick--> kRoomGranted --post--> retry
//
// A cancel, deadline or shutdown that finds the request queued takes it out
// of its queue under the same mutex, so exactly one of the two happens. One
// that finds a grant in flight (kGranted, kRoomGranted) leaves a note in
// `stop`: the continuation then gives everything back and completes with
// it, unless the grant in flight was the last key, in which case the grant
// was decided first and the request succeeds.
#include <cstring>

#include "common/error.h"
#include "locks/locks.h"
#include "sluice/monitor.h"

namespace sluice::locks {

// ---- the request object -------------------------------------------------

LockOp::~LockOp() {
  if (block_) mem::release(block_, block_bytes_);
}

void LockOp::set_keys(const KeyRef *k, uint32_t count) {
  size_t bytes = 0;
  for (uint32_t i = 0; i < count; i++) bytes += k[i].len;
  n = count;
  if (count == 1 && bytes <= sizeof inline_) {
    keys = &key1_;
    handles = &handle1_;
    key1_ = k[0];
    std::memcpy(inline_, k[0].p, k[0].len);
    key1_.p = inline_;
    return;
  }
  block_bytes_ = count * (sizeof(KeyRef) + sizeof(uint64_t)) + bytes;
  block_ = mem::allocate(block_bytes_);
  if (!block_) throw std::bad_alloc();
  keys = static_cast<KeyRef *>(block_);
  handles = reinterpret_cast<uint64_t *>(keys + count);
  char *c = reinterpret_cast<char *>(handles + count);
  for (uint32_t i = 0; i < count; i++) {
    keys[i] = k[i];
    std::memcpy(c, k[i].p, k[i].len);
    keys[i].p = c;
    c += k[i].len;
    handles[i] = 0;
  }
}

void LockOp::on_start() { mgr->op_start(this); }

void LockOp::deliver(int status) {
  mgr->op_delivered(this, status);
  lock_cb(user_data_, status,
          status == 0 ? reinterpret_cast<sluice_lock_guard *>(static_cast<uintptr_t>(result))
                      : nullptr);
}

// Posted continuations. A request completed meanwhile (by free) is left
// alone: its manager may be gone.
void LockOp::granted_cb(void *p, int) {
  auto *op = static_cast<LockOp *>(p);
  if (!op->is_done()) op->mgr->op_granted(op);
  op->unref();
}

void LockOp::room_cb(void *p, int) {
  auto *op = static_cast<LockOp *>(p);
  if (!op->is_done()) op->mgr->op_room_granted(op);
  op->unref();
}

// ---- the manager's side (loop thread unless said) -----------------------

// Any thread.
int Locks::start(LockOp *op, int64_t timeout_ms) {
  {
    std::lock_guard<std::mutex> lock(ops_mu_);
    op->onext = ops_;
    op->oprev = nullptr;
    if (ops_) ops_->oprev = op;
    ops_ = op;
    op->listed = true;
  }
  uint64_t deadline = timeout_ms < 0 ? 0 : sluice_now_ns() + uint64_t(timeout_ms) * 1000000;
  int rc = rt_->start(op, deadline);
  if (rc != 0) unlist_op(op);
  return rc;
}

void Locks::unlist_op(LockOp *op) {
  std::lock_guard<std::mutex> lock(ops_mu_);
  if (!op->listed) return;
  if (op->oprev) op->oprev->onext = op->onext;
  else ops_ = op->onext;
  if (op->onext) op->onext->oprev = op->oprev;
  op->oprev = op->onext = nullptr;
  op->listed = false;
}

void Locks::op_start(LockOp *op) {
  op->state.store(LockOp::kRunning, std::memory_order_relaxed);
  if (op->n > 1 && room_wait()) {
    // Room for every key first, so the request never waits for room while
    // holding one of its keys (which could deadlock with the holders of
    // the room it waits for).
    if (op->n > max_keys_) {
      fail(SLUICE_ELIMIT, "sluice_locks_acquire_many: %u keys, max_keys is %u", op->n, max_keys_);
      op_fail(op, SLUICE_ELIMIT);
      return;
    }
    if (!take_live(op->n, false)) {
      op_room_wait(op, op->n);
      return;
    }
    op->credits = op->n;
  }
  op_advance(op);
}

void Locks::op_advance(LockOp *op) {
  while (op->idx < op->n) {
    if (!op_try_key(op)) return;
    op->idx++;
  }
  op_finish(op);
}

void Locks::op_finish(LockOp *op) {
  op->result = op->handles[op->n - 1];
  if (op->credits) {
    give_live(op->credits);  // keys that were live already needed no room
    op->credits = 0;
  }
  op->complete(0);
}

bool Locks::op_try_key(LockOp *op) {
  const KeyRef &k = op->keys[op->idx];
  Shard &s = shard_of(k.hash);
  uint64_t handle = 0, token = 0;
  int rc = 0;
  bool need_room = false, took = false, queued = false;
  int64_t spare = 0;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    Entry *e = find(s, k.hash, k.p, k.len);
    bool live = e && e->live;
    uint32_t idx = alloc_slot(s);
    if (idx == UINT32_MAX) {
      rc = SLUICE_ENOMEM;
    } else if (live && !compatible(e, k.mode)) {
      // Queue with the grant record reserved, so the releaser who hands
      // the key on never has to allocate.
      op->reserved = idx + 1;
      op->qnext = nullptr;
      op->qprev = e->qtail;
      if (e->qtail) e->qtail->qnext = op;
      else e->qhead = op;
      e->qtail = op;
      s.waiters++;
      if (!op->waited) {
        op->waited = true;
        op->wait_start = sluice_now_ns();
      }
      // A single key that found its entry live needs no room: hand back
      // what the room queue gave it instead of sitting on it. (A _many
      // request keeps its room for the keys still ahead.)
      if (op->n == 1) {
        spare = op->credits;
        op->credits = 0;
      }
      op->state.store(LockOp::kQueued, std::memory_order_relaxed);
      queued = true;
    } else {
      if (!live) {
        if (op->credits > 0) op->credits--;
        else if (take_live(1, false)) took = true;
        else need_room = true;
        if (!need_room && !(e = make_live(s, e, k.hash, k.p, k.len))) {
          rc = SLUICE_ENOMEM;
          if (!took) op->credits++;
        }
      }
      if (need_room || rc != 0) free_slot(s, idx);
      else
        handle = hold(s, e, idx, k.mode, op->kind_of_next(), op->link_of_next(), op->tmax,
                      &token);
    }
  }
  if (queued) {
    // From here a releaser in another thread may own the request's next
    // step: nothing of it is touched again.
    if (spare) give_live(spare);
    return false;
  }
  if (rc == SLUICE_ENOMEM && took) give_live(1);
  if (rc != 0) {
    fail(rc, "sluice_locks_acquire: out of memory for key %u", op->idx);
    op_fail(op, rc);
    return false;
  }
  if (need_room) {
    if (room_wait()) {
      op_room_wait(op, 1);
    } else {
      fail(SLUICE_ELIMIT, "sluice_locks_acquire: max_keys (%u) keys are live", max_keys_);
      op_fail(op, SLUICE_ELIMIT);
    }
    return false;
  }
  op->handles[op->idx] = handle;
  op->tmax = std::max(op->tmax, token);
  return true;
}

void Locks::op_room_wait(LockOp *op, int64_t need) {
  op->need = need;
  if (!op->waited) {
    op->waited = true;
    op->wait_start = sluice_now_ns();
  }
  {
    std::lock_guard<std::mutex> lock(room_mu_);
    op->state.store(LockOp::kRoomWait, std::memory_order_relaxed);
    op->qnext = nullptr;
    op->qprev = room_tail_;
    if (room_tail_) room_tail_->qnext = op;
    else room_head_ = op;
    room_tail_ = op;
    nwait_.fetch_add(1, std::memory_order_seq_cst);
  }
  room_kick();  // the room may have been freed before nwait_ said we wait
}

void Locks::op_granted(LockOp *op) {
  op->state.store(LockOp::kRunning, std::memory_order_relaxed);
  op->idx++;
  if (op->idx == op->n) {
    op_finish(op);  // decided before any stop that arrived meanwhile
    return;
  }
  if (op->stop) {
    op_fail(op, op->stop);
    return;
  }
  op_advance(op);
}

void Locks::op_room_granted(LockOp *op) {
  op->state.store(LockOp::kRunning, std::memory_order_relaxed);
  if (op->stop) {
    op_fail(op, op->stop);
    return;
  }
  op_advance(op);
}

void Locks::op_fail(LockOp *op, int status) {
  // Parts taken so far go back newest first, each through its own record.
  while (op->idx > 0) {
    op->idx--;
    release_one(op->handles[op->idx], 0);
  }
  if (op->credits) {
    give_live(op->credits);
    op->credits = 0;
  }
  if (status == SLUICE_ELIMIT) limit_refusals_.fetch_add(1, std::memory_order_relaxed);
  op->complete(status);
}

void Locks::op_stop(LockOp *op, int status, bool shutdown) {
  // A cancel from inside the request's own callback finds it completing.
  if (op->finishing) return;
  switch (op->state.load(std::memory_order_relaxed)) {
    case LockOp::kStart:
    case LockOp::kRunning:
      op_fail(op, status);
      return;
    case LockOp::kQueued: {
      const KeyRef &k = op->keys[op->idx];
      Shard &s = shard_of(k.hash);
      Handoff out;
      bool removed = false;
      {
        std::lock_guard<std::mutex> lock(s.mu);
        if (op->state.load(std::memory_order_relaxed) == LockOp::kQueued) {
          Entry *e = find(s, k.hash, k.p, k.len);
          queue_remove(s, e, op);
          free_slot(s, op->reserved - 1);
          op->reserved = 0;
          // Requests behind it may fit now (shared ones behind a writer).
          pump(s, e, out);
          removed = true;
        }
      }
      post(out, &LockOp::granted_cb);
      if (removed) {
        op_fail(op, status);
        return;
      }
      break;  // a releaser granted it meanwhile
    }
    case LockOp::kRoomWait: {
      bool removed = false;
      {
        std::lock_guard<std::mutex> lock(room_mu_);
        if (op->state.load(std::memory_order_relaxed) == LockOp::kRoomWait) {
          if (op->qprev) op->qprev->qnext = op->qnext;
          else room_head_ = op->qnext;
          if (op->qnext) op->qnext->qprev = op->qprev;
          else room_tail_ = op->qprev;
          op->qprev = op->qnext = nullptr;
          nwait_.fetch_sub(1, std::memory_order_seq_cst);
          removed = true;
        }
      }
      if (removed) {
        room_kick();  // those behind it may fit
        op_fail(op, status);
        return;
      }
      break;
    }
    default:
      break;
  }
  // A grant is in flight.
  LockOp::State st = op->state.load(std::memory_order_relaxed);
  if (shutdown) {
    // The continuation was never queued (posting fails once shutdown has
    // begun, and what was queued before ran first): give it all back here.
    if (st == LockOp::kGranted) op->idx++;
    op_fail(op, status);
    return;
  }
  if (st == LockOp::kGranted && op->idx + 1 == op->n) return;  // success wins
  if (!op->stop) op->stop = status;
}

void Locks::op_delivered(LockOp *op, int status) {
  op->finishing = true;
  unlist_op(op);
  if (status == SLUICE_ETIMEDOUT) timeouts_.fetch_add(1, std::memory_order_relaxed);
  else if (status == SLUICE_ECANCELED) cancellations_.fetch_add(1, std::memory_order_relaxed);
  if (op->waited) {
    uint64_t w = sluice_now_ns() - op->wait_start;
    wait_ns_.fetch_add(w, std::memory_order_relaxed);
    if (status == 0) contended_.fetch_add(1, std::memory_order_relaxed);
    if (monitor_) sluice_monitor_record_id(monitor_, series_, w, status);
  }
}

}  // namespace sluice::locks

// The loop-thread side of requests: start, cancel, deadline, runtime
// shutdown and delivery. Each decision is taken under the pool's mutex and
// the completion made after it is released, since a callback may call
// straight back into the pool.
//
// An op whose `finished` flag is set has left the pool's books: its
// outcome is in `result` and completing it touches nothing of the pool,
// which may already be freed.
#include "common/error.h"
#include "sluice/monitor.h"
#include "taskpool/pool.h"

namespace sluice::taskpool {

void PoolOp::on_start() {
  // A permit granted when it was placed is delivered as soon as the
  // runtime has it; everything else waits for its grant or its end.
  if (at_once && !finished.load(std::memory_order_acquire)) pool->deliver_grant(this);
}

void PoolOp::on_cancel() {
  if (!finished.load(std::memory_order_acquire)) pool->op_stop(this, SLUICE_ECANCELED);
}

void PoolOp::on_deadline() {
  if (!finished.load(std::memory_order_acquire)) pool->op_stop(this, SLUICE_ETIMEDOUT);
}

void PoolOp::on_shutdown() {
  if (finished.load(std::memory_order_acquire))
    complete(result);
  else
    pool->op_shutdown(this);
}

void PoolOp::posted_cb(void *p, int) {
  auto *op = static_cast<PoolOp *>(p);
  if (!op->is_done()) {
    if (op->finished.load(std::memory_order_acquire))
      op->complete(op->result);
    else
      op->pool->deliver_grant(op);
  }
  op->unref();
}

void PoolOp::deliver(int status) {
  if (kind == kTask) {
    if (cb_) cb_(user_data_, status);
    return;
  }
  auto *permit_handle =
      status == 0 ? reinterpret_cast<sluice_permit *>(static_cast<uintptr_t>(permit)) : nullptr;
  permit_cb(user_data_, status, permit_handle);
}

void Pool::deliver_grant(PoolOp *op) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (op->state != PoolOp::kGranted) return;
    finish(op, 0);
  }
  op->complete(0);
}

void Pool::op_stop(PoolOp *op, int status) {
  uint64_t wait = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    // Only waiting requests can be stopped: a grant already decided wins.
    if (op->state != PoolOp::kQueued && op->state != PoolOp::kRoom) return;
    unqueue(op);
    if (status == SLUICE_ETIMEDOUT) expired_++;
    else cancelled_++;
    finish(op, status);
    uint64_t t = now();
    wait = t > op->enq_ns ? t - op->enq_ns : 0;
  }
  if (monitor_) sluice_monitor_record_id(monitor_, series_wait_, wait, status);
  op->complete(status);
}

void Pool::op_shutdown(PoolOp *op) {
  int result = SLUICE_ECLOSED;
  bool drop_run_ref = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    switch (op->state) {
      case PoolOp::kQueued:
      case PoolOp::kRoom:
        unqueue(op);
        closed_++;
        finish(op, SLUICE_ECLOSED);
        break;
      case PoolOp::kReady:
        // Granted but not started: it never will be, the loop is ending.
        run_.remove(op);
        give_slot();
        closed_++;
        finish(op, SLUICE_ECLOSED);
        drop_run_ref = true;
        break;
      case PoolOp::kGranted:
        // Its delivery could not be posted: the grant goes back.
        drop_record(op->permit);
        give_slot();
        closed_++;
        finish(op, SLUICE_ECLOSED);
        break;
      case PoolOp::kRunning:
        // The function runs on; the worker counts its outcome when it
        // returns. `done` hears ECLOSED now, while there is a loop.
        break;
      case PoolOp::kFinished:
        result = op->result;
        break;
      case PoolOp::kNew:
        break;
    }
  }
  op->complete(result);
  if (drop_run_ref) op->unref();  // the run queue's (see dispatch)
}

void Pool::close_waiting() {
  PoolOp *head = nullptr, *tail = nullptr;
  uint64_t t = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    t = now();
    for (List *l : {&q_[0], &q_[1], &q_[2], &room_}) {
      while (PoolOp *op = l->pop()) {
        state_.fetch_sub(kWaitOne, std::memory_order_acq_rel);
        closed_++;
        finish(op, SLUICE_ECLOSED);
        op->hnext = nullptr;
        if (tail) tail->hnext = op;
        else head = op;
        tail = op;
      }
    }
    queue_len_ = 0;
    bypass_[0] = bypass_[1] = bypass_[2] = 0;
  }
  for (PoolOp *op = head, *next; op; op = next) {
    next = op->hnext;
    op->hnext = nullptr;
    if (monitor_)
      sluice_monitor_record_id(monitor_, series_wait_, t > op->enq_ns ? t - op->enq_ns : 0,
                               SLUICE_ECLOSED);
    op->complete(SLUICE_ECLOSED);
  }
}

void Pool::on_runtime_shutdown() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    hooked_ = false;
  }
  state_.fetch_or(kClosed, std::memory_order_acq_rel);
  close_waiting();
}

}  // namespace sluice::taskpool

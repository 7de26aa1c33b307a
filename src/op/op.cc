#include "op/op.h"

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "common/error.h"
#include "runtime/runtime.h"

namespace {

// Waiters park on one of a few shared condition variables chosen by address,
// so an op costs no mutex of its own and completion touches one only when
// somebody waits.
struct Stripe {
  std::mutex mu;
  std::condition_variable cv;
};
Stripe g_stripes[16];

Stripe &stripe_of(const void *p) {
  return g_stripes[(reinterpret_cast<uintptr_t>(p) >> 6) % 16];
}

}  // namespace

sluice_op::sluice_op(sluice::Runtime *rt, sluice_status_cb cb, void *user_data,
                     sluice_free_cb free_user_data)
    : cb_(cb), user_data_(user_data), free_user_data_(free_user_data), rt_(rt) {}

void sluice_op::unref() {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

void sluice_op::deliver(int status) { cb_(user_data_, status); }

bool sluice_op::complete(int status) {
  // `completing_` guards the callback itself: a callback that cancels its
  // own op (on the loop thread) must not complete it a second time.
  if (completing_ || done_.load(std::memory_order_relaxed)) return false;
  completing_ = true;
  rt_->forget(this);
  deliver(status);
  if (free_user_data_) free_user_data_(user_data_);
  status_ = status;
  done_.store(1, std::memory_order_seq_cst);
  if (waiters_.load(std::memory_order_seq_cst) > 0) {
    Stripe &s = stripe_of(this);
    { std::lock_guard<std::mutex> lock(s.mu); }
    s.cv.notify_all();
  }
  rt_->note_completed();
  unref();
  return true;
}

void sluice_op::on_cancel() { complete(SLUICE_ECANCELED); }
void sluice_op::on_deadline() { complete(SLUICE_ETIMEDOUT); }
void sluice_op::on_shutdown() { complete(SLUICE_ECLOSED); }

void sluice_op::request_cancel() {
  if (is_done()) return;
  if (rt_->is_loop_thread()) {
    on_cancel();
    return;
  }
  ref();
  int rc = rt_->post_internal(
      [](void *p, int status) {
        auto *op = static_cast<sluice_op *>(p);
        if (status == 0 && !op->is_done()) op->on_cancel();
        op->unref();
      },
      this);
  // A closed runtime has completed, or is completing, every op with ECLOSED.
  if (rc != 0) unref();
}

int sluice_op::wait(int64_t timeout_ms) {
  if (is_done()) return 0;
  Stripe &s = stripe_of(this);
  std::unique_lock<std::mutex> lock(s.mu);
  waiters_.fetch_add(1, std::memory_order_seq_cst);
  auto done = [this] { return done_.load(std::memory_order_seq_cst) != 0; };
  bool ok = true;
  if (timeout_ms < 0)
    s.cv.wait(lock, done);
  else
    ok = s.cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), done);
  waiters_.fetch_sub(1, std::memory_order_relaxed);
  return ok ? 0 : SLUICE_ETIMEDOUT;
}

extern "C" {

int sluice_op_cancel(sluice_op *op) {
  if (!op) return sluice::fail(SLUICE_EINVAL, "sluice_op_cancel: op is NULL");
  return sluice::guarded([&] {
    op->request_cancel();
    return 0;
  });
}

int sluice_op_wait(sluice_op *op, int64_t timeout_ms, int *status) {
  if (!op) return sluice::fail(SLUICE_EINVAL, "sluice_op_wait: op is NULL");
  if (!op->is_done() && op->runtime()->is_loop_thread())
    return sluice::fail(SLUICE_EDEADLK,
                        "sluice_op_wait: called on the loop thread, which must "
                        "run to complete the operation");
  return sluice::guarded([&] {
    int rc = op->wait(timeout_ms);
    if (rc != 0)
      return sluice::fail(rc, "sluice_op_wait: not completed within %lld ms",
                          static_cast<long long>(timeout_ms));
    if (status) *status = op->status();
    return 0;
  });
}

int sluice_op_done(const sluice_op *op, int *status) {
  if (!op) return sluice::fail(SLUICE_EINVAL, "sluice_op_done: op is NULL");
  if (!op->is_done()) return 0;
  if (status) *status = op->status();
  return 1;
}

void sluice_op_free(sluice_op *op) {
  if (op) op->unref();
}

}  // extern "C"

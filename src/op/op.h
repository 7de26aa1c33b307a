// A pending waiting operation (the public sluice_op). Completion, deadline
// and cancellation all happen on the loop thread, which serialises their
// races: whichever comes first completes the op, the rest find it done.
#pragma once

#include <atomic>
#include <cstdint>

#include "alloc/alloc.h"
#include "sluice/op.h"

namespace sluice {
class Runtime;
class DeadlineHeap;
}

struct sluice_op : sluice::mem::Allocated {
  sluice_op(sluice::Runtime *rt, sluice_status_cb cb, void *user_data,
            sluice_free_cb free_user_data);
  virtual ~sluice_op() = default;
  sluice_op(const sluice_op &) = delete;
  sluice_op &operator=(const sluice_op &) = delete;

  void ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void unref();

  // Loop thread. Runs the callback exactly once, then free_user_data; later
  // calls do nothing. Returns false if the op was already complete.
  bool complete(int status);

  bool is_done() const { return done_.load(std::memory_order_acquire) != 0; }
  int status() const { return status_; }

  // Any thread: routes to on_cancel() on the loop thread.
  void request_cancel();
  // Any thread but the loop thread: blocks until complete or timeout.
  int wait(int64_t timeout_ms);

  // Loop thread hooks, overridden by each kind of operation.
  virtual void on_start() {}         // linked and scheduled; may complete()
  virtual void on_cancel();          // default: complete(SLUICE_ECANCELED)
  virtual void on_deadline();        // default: complete(SLUICE_ETIMEDOUT)
  virtual void on_shutdown();        // default: complete(SLUICE_ECLOSED)

  sluice::Runtime *runtime() const { return rt_; }

 protected:
  // Delivers the outcome to the user; kinds with richer callbacks override.
  virtual void deliver(int status);

  sluice_status_cb cb_;
  void *user_data_;
  sluice_free_cb free_user_data_;

 private:
  friend class sluice::Runtime;
  friend class sluice::DeadlineHeap;
  sluice::Runtime *rt_;
  std::atomic<uint32_t> refs_{1};  // one for the pending side
  std::atomic<int> done_{0};
  std::atomic<int> waiters_{0};
  int status_ = 0;
  // Runtime bookkeeping, loop thread only.
  sluice_op *prev_ = nullptr, *next_ = nullptr;
  bool linked_ = false;
  bool completing_ = false;  // loop thread only
  size_t heap_index_ = SIZE_MAX;  // position in the deadline heap, if any
  uint64_t deadline_ = 0;
};

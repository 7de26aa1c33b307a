// The runtime (public sluice_runtime): a libuv loop, owned on its own thread
// or borrowed from the caller, with a cross-thread work queue, a deadline
// schedule shared by every waiting operation, loop-lag sampling and the
// orderly shutdown that completes every pending op exactly once.
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "alloc/alloc.h"
#include "op/op.h"
#include "runtime/deadlines.h"
#include "sluice/runtime.h"

namespace sluice {

// An object that owns loop handles (a pool's sockets, a cleanup timer)
// registers one, so runtime shutdown can close them: it runs on the loop
// thread after posted work has drained and before pending ops are closed.
struct ShutdownHook {
  virtual void on_runtime_shutdown() = 0;
  ShutdownHook *hook_prev_ = nullptr, *hook_next_ = nullptr;

 protected:
  ~ShutdownHook() = default;
};

class Runtime : public mem::Allocated {
 public:
  // Both return 0 or an error code (message set); *out is set on success.
  static int start_own_thread(const sluice_runtime_options &opts, Runtime **out);
  static int attach(uv_loop_t *loop, const sluice_runtime_options &opts, Runtime **out);

  int close();     // own-thread mode, not on the loop thread
  void destroy();  // sluice_runtime_free

  bool is_loop_thread() const;
  bool is_closed() const { return closed_.load(std::memory_order_acquire); }
  uv_loop_t *loop() { return loop_; }

  // Queues fn(arg, 0) for the loop thread. Returns SLUICE_ECLOSED (nothing
  // queued) once close has begun; everything accepted before runs.
  int post(sluice_status_cb fn, void *arg, sluice_free_cb free_arg);
  int post_internal(sluice_status_cb fn, void *arg) { return post(fn, arg, nullptr); }

  // Any thread: makes `op` pending on the loop with an optional absolute
  // deadline (monotonic ns, 0 = none), then calls op->on_start() there,
  // never inline in the caller. Takes the op's pending reference; on error
  // the op was never started and the caller still owns it.
  int start(sluice_op *op, uint64_t deadline_ns);

  // Runs fn(arg) on the loop thread and returns when it has run (inline if
  // called there). SLUICE_ECLOSED (not run) once shutdown has begun.
  int call(void (*fn)(void *), void *arg);

  // Any thread. Returns SLUICE_ECLOSED if shutdown has begun (not added).
  int add_hook(ShutdownHook *h);
  void remove_hook(ShutdownHook *h);

  // Loop thread: deadline schedule and the pending set.
  void schedule(sluice_op *op, uint64_t deadline_ns);
  void unschedule(sluice_op *op);
  void forget(sluice_op *op);  // called by op->complete
  void note_completed() { ops_completed_.fetch_add(1, std::memory_order_relaxed); }

  void fill_stats(sluice_runtime_stats *out) const;

 private:
  struct Item {
    sluice_status_cb fn;
    void *arg;
    sluice_free_cb free_arg;
  };
  using Queue = std::vector<Item, mem::Allocator<Item>>;

  Runtime() = default;
  ~Runtime();
  int init_handles(const sluice_runtime_options &opts, bool own);
  void thread_main();
  void drain(bool until_empty);
  void drain_local();
  void begin_shutdown();
  void on_handle_closed();
  void rearm_deadline_timer();
  void fire_deadlines();
  void sample_lag();
  void link(sluice_op *op);

  static void on_async(uv_async_t *h);

  uv_loop_t own_loop_{};
  uv_loop_t *loop_ = nullptr;
  bool own_thread_ = false;
  std::thread thread_;
  std::atomic<uv_thread_t> loop_thread_{};
  std::atomic<bool> started_{false};
  char thread_name_[16] = "sluice-loop";

  uv_async_t async_{};
  uv_timer_t deadline_timer_{};
  uv_timer_t lag_timer_{};
  uv_idle_t local_idle_{};  // runs work the loop thread posted to itself
  Queue local_, local_spare_;  // loop thread only
  int open_handles_ = 0;
  bool shutdown_done_ = false;
  bool free_when_closed_ = false;

  std::mutex mu_;  // guards queue_ and the closed_ transition
  Queue queue_;
  std::atomic<bool> closed_{false};
  std::mutex close_mu_;  // one closer joins the thread

  ShutdownHook *hooks_ = nullptr;      // guarded by mu_
  sluice_op *pending_head_ = nullptr;  // loop thread only
  size_t linked_count_ = 0;            // loop thread only
  DeadlineHeap deadlines_;  // loop thread only

  uint64_t lag_interval_ns_ = 0;
  uint64_t lag_last_tick_ = 0;
  std::atomic<uint64_t> posted_{0}, ops_started_{0}, ops_completed_{0};
  std::atomic<uint64_t> lag_samples_{0}, lag_last_{0}, lag_max_{0}, lag_mean_{0};
};

}  // namespace sluice

namespace sluice {
// The public handle is an opaque spelling of the runtime.
inline Runtime *unwrap(sluice_runtime *rt) { return reinterpret_cast<Runtime *>(rt); }
inline const Runtime *unwrap(const sluice_runtime *rt) {
  return reinterpret_cast<const Runtime *>(rt);
}
inline sluice_runtime *wrap(Runtime *rt) { return reinterpret_cast<sluice_runtime *>(rt); }
}  // namespace sluice

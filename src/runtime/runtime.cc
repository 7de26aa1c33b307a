#include "runtime/runtime.h"

#include <pthread.h>

#include <cstring>

#include "common/error.h"

namespace sluice {

namespace {
constexpr uint64_t kNsPerMs = 1000000;
}

int Runtime::init_handles(const sluice_runtime_options &opts, bool own) {
  own_thread_ = own;
  int rc = uv_async_init(loop_, &async_, &Runtime::on_async);
  if (rc != 0) return fail(SLUICE_EUV, "uv_async_init: %s", uv_strerror(rc));
  async_.data = this;
  uv_timer_init(loop_, &deadline_timer_);
  deadline_timer_.data = this;
  uv_timer_init(loop_, &lag_timer_);
  lag_timer_.data = this;
  uv_idle_init(loop_, &local_idle_);
  local_idle_.data = this;
  open_handles_ = 4;
  if (!own) {
    // An embedded runtime must not keep the caller's uv_run alive by itself.
    uv_unref(reinterpret_cast<uv_handle_t *>(&async_));
    uv_unref(reinterpret_cast<uv_handle_t *>(&deadline_timer_));
    uv_unref(reinterpret_cast<uv_handle_t *>(&lag_timer_));
  }
  lag_interval_ns_ = uint64_t{opts.lag_interval_ms} * kNsPerMs;
  if (lag_interval_ns_) {
    lag_last_tick_ = uv_hrtime();
    uv_timer_start(
        &lag_timer_, [](uv_timer_t *t) { static_cast<Runtime *>(t->data)->sample_lag(); },
        opts.lag_interval_ms, opts.lag_interval_ms);
  }
  return 0;
}

int Runtime::start_own_thread(const sluice_runtime_options &opts, Runtime **out) {
  auto *rt = new Runtime();
  int rc = uv_loop_init(&rt->own_loop_);
  if (rc != 0) {
    delete rt;
    return fail(SLUICE_EUV, "uv_loop_init: %s", uv_strerror(rc));
  }
  rt->loop_ = &rt->own_loop_;
  if (opts.thread_name) {
    std::strncpy(rt->thread_name_, opts.thread_name, sizeof rt->thread_name_ - 1);
    rt->thread_name_[sizeof rt->thread_name_ - 1] = '\0';
  }
  if ((rc = rt->init_handles(opts, true)) != 0) {
    uv_loop_close(&rt->own_loop_);
    delete rt;
    return rc;
  }
  // The loop thread sets loop_thread_ before running anything; wait for it
  // so is_loop_thread() is right from the first call.
  try {
    rt->thread_ = std::thread([rt] {
      rt->loop_thread_.store(pthread_self(), std::memory_order_release);
      pthread_setname_np(pthread_self(), rt->thread_name_);
      rt->started_.store(true, std::memory_order_release);
      rt->started_.notify_one();
      rt->thread_main();
    });
  } catch (const std::system_error &e) {
    rt->shutdown_done_ = true;
    uv_close(reinterpret_cast<uv_handle_t *>(&rt->async_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t *>(&rt->deadline_timer_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t *>(&rt->lag_timer_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t *>(&rt->local_idle_), nullptr);
    uv_run(&rt->own_loop_, UV_RUN_DEFAULT);
    uv_loop_close(&rt->own_loop_);
    delete rt;
    return fail(SLUICE_EUV, "could not start the loop thread: %s", e.what());
  }
  rt->started_.wait(false, std::memory_order_acquire);
  *out = rt;
  return 0;
}

int Runtime::attach(uv_loop_t *loop, const sluice_runtime_options &opts, Runtime **out) {
  auto *rt = new Runtime();
  rt->loop_ = loop;
  rt->loop_thread_.store(pthread_self(), std::memory_order_release);
  int rc = rt->init_handles(opts, false);
  if (rc != 0) {
    delete rt;
    return rc;
  }
  *out = rt;
  return 0;
}

void Runtime::thread_main() {
  uv_run(loop_, UV_RUN_DEFAULT);
  // Handles a user closed late, if any, are walked and closed so the loop
  // can be closed cleanly.
  if (uv_loop_close(loop_) == UV_EBUSY) {
    uv_walk(
        loop_,
        [](uv_handle_t *h, void *) {
          if (!uv_is_closing(h)) uv_close(h, nullptr);
        },
        nullptr);
    uv_run(loop_, UV_RUN_DEFAULT);
    uv_loop_close(loop_);
  }
  if (free_when_closed_) {
    thread_.detach();
    delete this;
  }
}

Runtime::~Runtime() = default;

bool Runtime::is_loop_thread() const {
  uv_thread_t self = pthread_self();
  uv_thread_t loop = loop_thread_.load(std::memory_order_acquire);
  return uv_thread_equal(&self, &loop) != 0;
}

int Runtime::post(sluice_status_cb fn, void *arg, sluice_free_cb free_arg) {
  if (is_loop_thread()) {
    // From the loop itself: no lock and no wake-up write, just an idle
    // handle so the loop does not block before running it.
    if (closed_.load(std::memory_order_acquire))
      return fail(SLUICE_ECLOSED, "the runtime is shutting down");
    local_.push_back(Item{fn, arg, free_arg});
    if (!uv_is_active(reinterpret_cast<uv_handle_t *>(&local_idle_)))
      uv_idle_start(&local_idle_, [](uv_idle_t *h) { static_cast<Runtime *>(h->data)->drain_local(); });
    posted_.fetch_add(1, std::memory_order_relaxed);
    return 0;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_.load(std::memory_order_relaxed))
      return fail(SLUICE_ECLOSED, "the runtime is shutting down");
    queue_.push_back(Item{fn, arg, free_arg});
    // Sent under the lock so it can never follow the close of async_.
    uv_async_send(&async_);
  }
  posted_.fetch_add(1, std::memory_order_relaxed);
  return 0;
}

void Runtime::on_async(uv_async_t *h) {
  auto *rt = static_cast<Runtime *>(h->data);
  if (rt->closed_.load(std::memory_order_acquire))
    rt->begin_shutdown();
  else
    rt->drain(false);
}

void Runtime::drain_local() {
  // Work that posts more work (a callback starting the next operation)
  // runs on without a loop turn (a poll syscall) in between, up to a
  // bound so timers and I/O still get their turn.
  for (int round = 0; round < 16 && !local_.empty(); round++) {
    // Two vectors take turns, so neither gives up its capacity.
    Queue &batch = local_spare_;
    batch.swap(local_);
    for (Item &it : batch) {
      it.fn(it.arg, 0);
      if (it.free_arg) it.free_arg(it.arg);
    }
    batch.clear();
  }
  if (local_.empty()) uv_idle_stop(&local_idle_);
}

void Runtime::drain(bool until_empty) {
  // One batch per wake-up in normal operation, so callbacks that post more
  // cannot starve the loop; until empty at shutdown, when nothing new can be
  // accepted and so the loop ends.
  do {
    if (until_empty)
      while (!local_.empty()) drain_local();
    Queue batch;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.empty()) return;
      batch.swap(queue_);
    }
    for (Item &it : batch) {
      it.fn(it.arg, 0);
      if (it.free_arg) it.free_arg(it.arg);
    }
  } while (until_empty);
}

int Runtime::start(sluice_op *op, uint64_t deadline_ns) {
  struct Start : mem::Allocated {
    sluice_op *op;
    uint64_t deadline;
    Start(sluice_op *o, uint64_t d) : op(o), deadline(d) {}
  };
  if (is_loop_thread()) {
    // Linked and scheduled now, so an embedding loop stays alive for it;
    // on_start still runs later, never inside the caller's call.
    if (is_closed()) return fail(SLUICE_ECLOSED, "the runtime is shutting down");
    op->ref();
    int rc = post_internal(
        [](void *p, int) {
          auto *op = static_cast<sluice_op *>(p);
          if (!op->is_done()) op->on_start();
          op->unref();
        },
        op);
    if (rc != 0) {
      op->unref();
      return rc;
    }
    ops_started_.fetch_add(1, std::memory_order_relaxed);
    link(op);
    if (deadline_ns) schedule(op, deadline_ns);
    return 0;
  }
  auto *s = new Start(op, deadline_ns);
  op->ref();  // the queued start's own: a cancel may complete the op first
  int rc = post_internal(
      [](void *p, int) {
        auto *s = static_cast<Start *>(p);
        sluice_op *op = s->op;
        uint64_t deadline = s->deadline;
        delete s;
        if (!op->is_done()) {
          Runtime *rt = op->runtime();
          rt->link(op);
          if (deadline) rt->schedule(op, deadline);
          op->on_start();
        }
        op->unref();
      },
      s);
  if (rc != 0) {
    op->unref();
    delete s;
    return rc;
  }
  ops_started_.fetch_add(1, std::memory_order_relaxed);
  return 0;
}

int Runtime::add_hook(ShutdownHook *h) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_.load(std::memory_order_relaxed))
    return fail(SLUICE_ECLOSED, "the runtime is shutting down");
  h->hook_prev_ = nullptr;
  h->hook_next_ = hooks_;
  if (hooks_) hooks_->hook_prev_ = h;
  hooks_ = h;
  return 0;
}

void Runtime::remove_hook(ShutdownHook *h) {
  std::lock_guard<std::mutex> lock(mu_);
  if (h->hook_prev_) h->hook_prev_->hook_next_ = h->hook_next_;
  else if (hooks_ == h) hooks_ = h->hook_next_;
  else return;  // not registered (or already taken by the shutdown)
  if (h->hook_next_) h->hook_next_->hook_prev_ = h->hook_prev_;
  h->hook_prev_ = h->hook_next_ = nullptr;
}

void Runtime::link(sluice_op *op) {
  // An embedded runtime keeps the caller's loop alive while work is pending.
  if (++linked_count_ == 1 && !own_thread_ && !shutdown_done_)
    uv_ref(reinterpret_cast<uv_handle_t *>(&async_));
  op->linked_ = true;
  op->prev_ = nullptr;
  op->next_ = pending_head_;
  if (pending_head_) pending_head_->prev_ = op;
  pending_head_ = op;
}

void Runtime::forget(sluice_op *op) {
  unschedule(op);
  if (!op->linked_) return;
  if (op->prev_) op->prev_->next_ = op->next_;
  else pending_head_ = op->next_;
  if (op->next_) op->next_->prev_ = op->prev_;
  op->linked_ = false;
  if (--linked_count_ == 0 && !own_thread_ && !shutdown_done_)
    uv_unref(reinterpret_cast<uv_handle_t *>(&async_));
}

void Runtime::schedule(sluice_op *op, uint64_t deadline_ns) {
  bool changed = deadlines_.remove(op);
  changed |= deadlines_.push(op, deadline_ns);
  if (changed) rearm_deadline_timer();
}

void Runtime::unschedule(sluice_op *op) {
  if (deadlines_.remove(op)) rearm_deadline_timer();
}

void Runtime::rearm_deadline_timer() {
  auto *h = reinterpret_cast<uv_handle_t *>(&deadline_timer_);
  if (deadlines_.empty() || shutdown_done_) {
    uv_timer_stop(&deadline_timer_);
    if (!own_thread_) uv_unref(h);
    return;
  }
  // libuv fires at loop time + delay, so the delay is counted from the
  // loop's own (cached) time; rounded up, a timer never fires early.
  uint64_t loop_ns = uv_now(loop_) * kNsPerMs;
  uint64_t due = deadlines_.top_deadline();
  uint64_t delay_ms = due > loop_ns ? (due - loop_ns + kNsPerMs - 1) / kNsPerMs : 0;
  uv_timer_start(
      &deadline_timer_, [](uv_timer_t *t) { static_cast<Runtime *>(t->data)->fire_deadlines(); },
      delay_ms, 0);
  if (!own_thread_) uv_ref(h);
}

void Runtime::fire_deadlines() {
  uint64_t now = uv_hrtime();
  while (!deadlines_.empty() && deadlines_.top_deadline() <= now) {
    sluice_op *op = deadlines_.top();
    deadlines_.remove(op);
    op->on_deadline();
  }
  rearm_deadline_timer();
}

void Runtime::sample_lag() {
  uint64_t now = uv_hrtime();
  uint64_t expected = lag_last_tick_ + lag_interval_ns_;
  uint64_t lag = now > expected ? now - expected : 0;
  lag_last_tick_ = now;
  uint64_t mean = lag_mean_.load(std::memory_order_relaxed);
  mean = lag_samples_.load(std::memory_order_relaxed) == 0 ? lag : mean - mean / 8 + lag / 8;
  lag_mean_.store(mean, std::memory_order_relaxed);
  lag_last_.store(lag, std::memory_order_relaxed);
  if (lag > lag_max_.load(std::memory_order_relaxed))
    lag_max_.store(lag, std::memory_order_relaxed);
  lag_samples_.fetch_add(1, std::memory_order_relaxed);
}

// Loop thread, once closed_ is set: everything pending completes with
// ECLOSED, then the handles close and the loop runs out of work.
void Runtime::begin_shutdown() {
  if (shutdown_done_) return;
  shutdown_done_ = true;
  // Work accepted before the close runs first, in order; only then is
  // every pending op completed with ECLOSED.
  drain(true);
  for (;;) {
    ShutdownHook *h;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!(h = hooks_)) break;
      hooks_ = h->hook_next_;
      if (hooks_) hooks_->hook_prev_ = nullptr;
      h->hook_prev_ = h->hook_next_ = nullptr;
    }
    h->on_runtime_shutdown();
  }
  while (pending_head_) pending_head_->on_shutdown();
  uv_timer_stop(&deadline_timer_);
  auto closed = [](uv_handle_t *h) { static_cast<Runtime *>(h->data)->on_handle_closed(); };
  uv_close(reinterpret_cast<uv_handle_t *>(&async_), closed);
  uv_close(reinterpret_cast<uv_handle_t *>(&deadline_timer_), closed);
  uv_close(reinterpret_cast<uv_handle_t *>(&lag_timer_), closed);
  uv_close(reinterpret_cast<uv_handle_t *>(&local_idle_), closed);
}

void Runtime::on_handle_closed() {
  if (--open_handles_ == 0 && !own_thread_ && free_when_closed_) delete this;
}

int Runtime::close() {
  if (!own_thread_) return fail(SLUICE_EINVAL, "sluice_runtime_close: runtime is attached");
  if (is_loop_thread())
    return fail(SLUICE_EDEADLK, "sluice_runtime_close: called on the loop thread");
  std::lock_guard<std::mutex> join_lock(close_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!closed_.load(std::memory_order_relaxed)) {
      closed_.store(true, std::memory_order_release);
      uv_async_send(&async_);
    }
  }
  if (thread_.joinable()) thread_.join();
  return 0;
}

void Runtime::destroy() {
  if (own_thread_ && !is_loop_thread()) {
    close();
    delete this;
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_.store(true, std::memory_order_release);
    free_when_closed_ = true;
    if (!is_loop_thread()) {
      // Attached runtime freed from a foreign thread: the loop finishes the
      // shutdown and frees it.
      uv_async_send(&async_);
      return;
    }
  }
  begin_shutdown();
}

void Runtime::fill_stats(sluice_runtime_stats *st) const {
  st->posted = posted_.load(std::memory_order_relaxed);
  st->ops_started = ops_started_.load(std::memory_order_relaxed);
  st->ops_completed = ops_completed_.load(std::memory_order_relaxed);
  st->ops_pending = st->ops_started >= st->ops_completed ? st->ops_started - st->ops_completed : 0;
  st->lag_samples = lag_samples_.load(std::memory_order_relaxed);
  st->lag_last_ns = lag_last_.load(std::memory_order_relaxed);
  st->lag_max_ns = lag_max_.load(std::memory_order_relaxed);
  st->lag_mean_ns = lag_mean_.load(std::memory_order_relaxed);
  st->is_own_thread = own_thread_ ? 1 : 0;
  st->is_closed = is_closed() ? 1 : 0;
}

}  // namespace sluice

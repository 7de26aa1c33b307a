// The pool's life cycle and control: creation, resize, graceful shutdown,
// figures and the teardown of sluice_taskpool_free.
#include <sys/random.h>

#include <chrono>
#include <cstring>

#include "common/error.h"
#include "sluice/monitor.h"
#include "taskpool/pool.h"

namespace sluice::taskpool {

// The hot atomics are cache-line aligned; the library allocator is not.
void *Pool::operator new(std::size_t n) {
  void *raw = mem::allocate(n + 64);
  if (!raw) throw std::bad_alloc();
  auto a = (reinterpret_cast<uintptr_t>(raw) + 64) & ~uintptr_t{63};
  reinterpret_cast<void **>(a)[-1] = raw;
  return reinterpret_cast<void *>(a);
}

void Pool::operator delete(void *p, std::size_t n) noexcept {
  if (p) mem::release(static_cast<void **>(p)[-1], n + 64);
}

namespace {

int series(sluice_monitor *m, const char *name, const char *suffix, uint32_t *id) {
  char buf[96];
  int n = std::snprintf(buf, sizeof buf, "%s.%s", name, suffix);
  return sluice_monitor_series(m, buf, size_t(n), id);
}

}  // namespace

int Pool::create(Runtime *rt, const Config &c, Pool **out) {
  if (rt->is_closed())
    return fail(SLUICE_ECLOSED, "sluice_taskpool_new: the runtime is shutting down");
  auto *p = new Pool();
  p->rt_ = rt;
  p->limit_.store(c.limit, std::memory_order_relaxed);
  p->max_queued_ = c.max_queued;
  p->max_threads_ = c.workers ? c.workers : 256;
  p->max_bypass_ = c.max_bypass;
  p->on_full_ = c.on_full;
  p->adaptive_ = c.adaptive != 0;
  p->min_ = c.min;
  p->ceiling_ = c.ceiling;
  p->target_ns_ = c.target_ns;
  p->clock_ = c.clock;
  p->clock_ud_ = c.clock_ud;
  p->monitor_ = c.monitor;
  // Hold times feed the monitor's histograms and the adaptive limit only
  // at the precise clock's resolution.
  p->precise_permits_ = c.monitor || c.adaptive;
  std::snprintf(p->name_, sizeof p->name_, "%s", c.name);
  uint32_t rnd = 0;
  if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != ssize_t(sizeof rnd))
    rnd = uint32_t(sluice_now_ns() ^ reinterpret_cast<uintptr_t>(p));
  p->salt_ = rnd;

  auto fail_free = [p](int rc) {
    p->stop_workers();
    delete p;
    return rc;
  };
  p->chunks_ = static_cast<std::atomic<Record *> *>(
      mem::allocate(sizeof(std::atomic<Record *>) * kMaxChunks));
  p->chunk_raw_ = static_cast<void **>(mem::allocate(sizeof(void *) * kMaxChunks));
  if (!p->chunks_ || !p->chunk_raw_)
    return fail_free(fail(SLUICE_ENOMEM, "sluice_taskpool_new: out of memory"));
  for (uint32_t i = 0; i < kMaxChunks; i++) {
    new (&p->chunks_[i]) std::atomic<Record *>(nullptr);
    p->chunk_raw_[i] = nullptr;
  }
  if (c.monitor) {
    int rc = series(c.monitor, c.name, "wait", &p->series_wait_);
    if (rc == 0) rc = series(c.monitor, c.name, "run", &p->series_run_);
    if (rc == 0) rc = series(c.monitor, c.name, "rejected", &p->series_rejected_);
    if (rc != 0) return fail_free(rc);
  }
  try {
    p->threads_.reserve(p->max_threads_);
  } catch (const std::bad_alloc &) {
    return fail_free(fail(SLUICE_ENOMEM, "sluice_taskpool_new: out of memory"));
  }
  int rc = 0;
  {
    std::lock_guard<std::mutex> lk(p->mu_);
    if (!p->grow())
      rc = fail(SLUICE_ENOMEM, "sluice_taskpool_new: out of memory");
    // One worker from the start, so a task never finds none at all even
    // if the system refuses more threads later.
    else if (!p->start_worker())
      rc = fail(SLUICE_EINTERNAL, "sluice_taskpool_new: could not start a worker thread");
    else
      p->hooked_ = true;
  }
  if (rc != 0) return fail_free(rc);
  if ((rc = rt->add_hook(p)) != 0) {
    p->hooked_ = false;
    return fail_free(rc);
  }
  *out = p;
  return 0;
}

Pool::~Pool() {
  if (chunk_raw_) {
    for (uint32_t i = 0; i < kMaxChunks; i++)
      if (chunk_raw_[i]) mem::release(chunk_raw_[i], sizeof(Record) * kChunkRecords + 64);
    mem::release(chunk_raw_, sizeof(void *) * kMaxChunks);
  }
  if (chunks_) mem::release(chunks_, sizeof(std::atomic<Record *>) * kMaxChunks);
}

void Pool::stop_workers() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
    work_cv_.notify_all();
  }
  // No thread is added once stopping_ is set; workers leave when the run
  // queue is empty, so granted tasks still run.
  for (std::thread &t : threads_)
    if (t.joinable()) t.join();
}

void Pool::destroy_on_loop() {
  PoolOp *list;
  {
    std::lock_guard<std::mutex> lk(mu_);
    list = ops_;
    ops_ = nullptr;
    for (PoolOp *op = list; op; op = op->anext) {
      op->listed = false;
      op->state = PoolOp::kFinished;
      op->result = SLUICE_ECLOSED;
      op->finished.store(true, std::memory_order_release);
    }
  }
  // What is left are grants still on their way to the loop: the pool goes,
  // so they end closed.
  for (PoolOp *op = list, *next; op; op = next) {
    next = op->anext;
    op->aprev = op->anext = nullptr;
    op->complete(SLUICE_ECLOSED);
  }
}

void Pool::destroy() {
  state_.fetch_or(kClosed, std::memory_order_acq_rel);
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (hooked_) {
      rt_->remove_hook(this);
      hooked_ = false;
    }
  }
  // A runtime that refuses the calls has shut down: it completed every
  // request already (contract of sluice_taskpool_free).
  rt_->call([](void *p) { static_cast<Pool *>(p)->close_waiting(); }, this);
  stop_workers();
  rt_->call([](void *p) { static_cast<Pool *>(p)->destroy_on_loop(); }, this);
  delete this;
}

int Pool::resize(uint32_t n) {
  Handoff h;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (adaptive_ && (n < min_ || n > ceiling_))
      return fail(SLUICE_ERANGE,
                  "sluice_taskpool_resize: %u is outside the adaptive floor %u and ceiling %u", n,
                  min_, ceiling_);
    limit_.store(n, std::memory_order_relaxed);
    win_n_ = win_bad_ = 0;
    pump(h);
  }
  flush(h);
  return 0;
}

int Pool::shutdown(int64_t timeout_ms) {
  bool on_loop = rt_->is_loop_thread();
  if (on_loop && timeout_ms != 0)
    return fail(SLUICE_EDEADLK,
                "sluice_taskpool_shutdown: waiting on the loop thread would stop the callbacks "
                "that release permits (use timeout 0 there)");
  if (timeout_ms != 0 && is_own_worker())
    return fail(SLUICE_EDEADLK,
                "sluice_taskpool_shutdown: called from one of the pool's own tasks, which would "
                "wait for itself (use timeout 0 there)");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  state_.fetch_or(kClosed, std::memory_order_seq_cst);
  rt_->call([](void *p) { static_cast<Pool *>(p)->close_waiting(); }, this);
  bool idle;
  {
    std::unique_lock<std::mutex> lk(mu_);
    auto none_running = [this] {
      return used_of(state_.load(std::memory_order_seq_cst)) == 0 &&
             posting_.load(std::memory_order_seq_cst) == 0;
    };
    if (timeout_ms < 0) {
      idle_cv_.wait(lk, none_running);
      idle = true;
    } else {
      idle = idle_cv_.wait_until(lk, deadline, none_running);
    }
  }
  if (!idle) {
    uint32_t running = used_of(state_.load(std::memory_order_acquire));
    return fail(SLUICE_ETIMEDOUT, "sluice_taskpool_shutdown: %u still running at the deadline",
                running);
  }
  // The completions of the last tasks are posted (posting_ is 0); a call
  // queued after them returns once they have run.
  if (!on_loop) rt_->call([](void *) {}, nullptr);
  return 0;
}

void Pool::fill_stats(sluice_taskpool_stats *st) {
  std::lock_guard<std::mutex> lk(mu_);
  uint64_t w = state_.load(std::memory_order_acquire);
  uint64_t acquired = 0, done_ok = 0, done_bad = 0, held_ns = 0;
  uint32_t n = nrecords_.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < n; i++) {
    Record &r = rec(i);
    acquired += r.acquired.load(std::memory_order_relaxed);
    done_ok += r.completed.load(std::memory_order_relaxed);
    done_bad += r.failed.load(std::memory_order_relaxed);
    held_ns += r.run_ns.load(std::memory_order_relaxed);
  }
  st->limit = limit_.load(std::memory_order_relaxed);
  st->submitted = submitted_ + acquired;
  st->queued = queue_len_;
  st->running = used_of(w);
  st->completed = completed_ + done_ok;
  st->failed = failed_ + done_bad;
  st->rejected = rejected_;
  st->expired = expired_;
  st->cancelled = cancelled_;
  st->closed = closed_;
  st->peak_running = peak_running_.load(std::memory_order_relaxed);
  st->peak_queued = peak_queued_;
  st->queue_wait_ns_total = wait_ns_;
  st->run_ns_total = run_ns_ + held_ns;
  st->room_waiting = room_.n;
  st->busy = busy_.load(std::memory_order_relaxed);
  st->bad_releases = bad_releases_.load(std::memory_order_relaxed);
  st->threads = threads_.size();
  st->limit_raised = raised_;
  st->limit_lowered = lowered_;
}

}  // namespace sluice::taskpool

// The pool's own worker threads (never libuv's shared pool, which DNS and
// file I/O need). A task with a slot waits in the run queue, first come
// first served, for a worker; workers are started when a task finds none
// idle, up to the configured number, and stay until the pool is freed.
#include <pthread.h>

#include <cstdio>
#include <cstring>

#include "common/error.h"
#include "sluice/monitor.h"
#include "taskpool/pool.h"

namespace sluice::taskpool {

bool Pool::start_worker() {
  if (stopping_ || threads_.size() >= max_threads_) return false;
  auto index = uint32_t(threads_.size());
  try {
    // Capacity was reserved at creation: this never reallocates, so the
    // vector is unchanged if the thread cannot be started.
    threads_.emplace_back([this, index] { worker_main(index); });
  } catch (...) {
    return false;  // the workers already running carry on
  }
  returning_++;  // it looks at the run queue first thing
  return true;
}

void Pool::dispatch(PoolOp *op) {
  // The run queue and then the worker hold a reference: a runtime shutdown
  // may complete the op (and its caller free it) while fn still runs.
  op->ref();
  run_.push(op);
  // A worker that just finished a task looks at the run queue before it
  // sleeps: tasks it will take need neither a wake-up nor a new thread.
  if (run_.n > returning_ && idle_ > 0) work_cv_.notify_one();
  if (run_.n > uint64_t{idle_} + returning_) start_worker();
}

void Pool::worker_main(uint32_t index) {
  char suffix[12];
  int slen = std::snprintf(suffix, sizeof suffix, "-%u", index);
  char thread_name[16];
  int room = 15 - slen;
  std::snprintf(thread_name, sizeof thread_name, "%.*s%s", room, name_, suffix);
  pthread_setname_np(pthread_self(), thread_name);

  std::unique_lock<std::mutex> lk(mu_);
  returning_--;
  for (;;) {
    if (PoolOp *op = run_.pop()) {
      run_task(op, lk);
      continue;
    }
    if (stopping_) return;
    idle_++;
    work_cv_.wait(lk);
    idle_--;
  }
}

// Under mu_. Posted before the task's slot comes back, so whoever sees
// the slot back (a shutdown waiting for running work) finds the completion
// queued ahead of anything it posts itself.
void Pool::post_completion(PoolOp *op) {
  op->ref();
  // A refused post means the runtime is shutting down: its shutdown
  // completes the op (PoolOp::on_shutdown).
  if (rt_->post_internal(&PoolOp::posted_cb, op) != 0) op->unref();
}

// Called and returns with `lk` held; runs the function without it.
void Pool::run_task(PoolOp *op, std::unique_lock<std::mutex> &lk) {
  Handoff h;
  if (op->deadline_ns && sluice_now_ns() >= op->deadline_ns) {
    // Its slot came from the queue, but too late to start (fewer workers
    // than slots): it never runs.
    expired_++;
    finish(op, SLUICE_ETIMEDOUT);
    uint64_t t = now();
    if (monitor_)
      sluice_monitor_record_id(monitor_, series_wait_, t > op->enq_ns ? t - op->enq_ns : 0,
                               SLUICE_ETIMEDOUT);
    post_completion(op);
    op->unref();
    give_slot();
    returning_++;
    pump(h);
    lk.unlock();
    flush(h);
    lk.lock();
    returning_--;
    return;
  }
  op->state = PoolOp::kRunning;
  uint64_t start = now();
  uint64_t wait = start > op->enq_ns ? start - op->enq_ns : 0;
  wait_ns_ += wait;
  lk.unlock();

  if (monitor_ && op->waited) sluice_monitor_record_id(monitor_, series_wait_, wait, 0);
  int rc = op->fn(op->ud());
  uint64_t end = now();
  uint64_t run = end > start ? end - start : 0;
  if (monitor_) sluice_monitor_record_id(monitor_, series_run_, run, rc);

  lk.lock();
  returning_++;
  run_ns_ += run;
  if (rc == 0) completed_++;
  else failed_++;
  finish(op, rc);
  post_completion(op);
  op->unref();
  give_slot();
  if (adaptive_) adapt(run, rc != 0);
  pump(h);
  lk.unlock();
  flush(h);
  lk.lock();
  returning_--;
}

}  // namespace sluice::taskpool

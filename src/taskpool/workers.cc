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

namespace {
// The pool whose worker this thread is, so a task that calls a blocking
// shutdown of its own pool is told instead of waiting for itself.
thread_local const Pool *tl_worker_of = nullptr;
}  // namespace

bool Pool::is_own_worker() const { return tl_worker_of == this; }

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

void Pool::dispatch(PoolOp *op, Handoff &h) {
  // The run queue and then the worker hold a reference: a runtime shutdown
  // may complete the op (and its caller free it) while fn still runs.
  op->ref();
  run_.push(op);
  // A worker that just finished a task looks at the run queue before it
  // sleeps: tasks it will take need neither a wake-up nor a new thread.
  // The worker is woken here, under the mutex, as libuv does: signalling
  // the condition variable after the unlock (so the woken worker would not
  // run into the mutex) measured 0.9 context switches per empty task
  // against libuv's 0.6, and twice its time per task, on a quiet machine.
  // h.wake counts the wake-ups so one section never wakes more workers
  // than are idle.
  if (run_.n > returning_ && idle_ > h.wake) {
    h.wake++;
    work_cv_.notify_one();
  }
  if (run_.n > uint64_t{idle_} + returning_) start_worker();
}

void Pool::worker_main(uint32_t index) {
  char suffix[12];
  int slen = std::snprintf(suffix, sizeof suffix, "-%u", index);
  char thread_name[16];
  int room = 15 - slen;
  std::snprintf(thread_name, sizeof thread_name, "%.*s%s", room, name_, suffix);
  pthread_setname_np(pthread_self(), thread_name);
  tl_worker_of = this;

  // A worker counts in returning_ while it looks at the run queue (it
  // takes what is there), in idle_ while it sleeps, in neither while a
  // function runs. start_worker counted it as looking already.
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    Handoff h;
    uint64_t start = 0;
    PoolOp *op = take_task(&start, h);
    // Each task's end and the start of the next share one critical
    // section; what it decided is posted while the next one runs.
    while (op) {
      returning_--;
      lk.unlock();
      flush(h);
      int rc = op->fn(op->ud());
      uint64_t end = now();
      uint64_t run = end > start ? end - start : 0;
      if (monitor_) sluice_monitor_record_id(monitor_, series_run_, run, rc);
      lk.lock();
      returning_++;
      run_ns_ += run;
      if (rc == 0) completed_++;
      else failed_++;
      if (adaptive_) adapt(run, rc != 0);
      end_task(op, rc, h);
      op = take_task(&start, h);
    }
    if (!h.empty()) {
      lk.unlock();
      flush(h);
      lk.lock();
      continue;  // still looking: tasks may have come meanwhile
    }
    returning_--;
    if (stopping_) return;
    idle_++;
    work_cv_.wait(lk);
    idle_--;
    returning_++;
  }
}

PoolOp *Pool::take_task(uint64_t *start, Handoff &h) {
  while (PoolOp *op = run_.pop()) {
    uint64_t t = now();
    uint64_t wait = t > op->enq_ns ? t - op->enq_ns : 0;
    if (op->deadline_ns && sluice_now_ns() >= op->deadline_ns) {
      // Its slot came from the queue, but too late to start (fewer
      // workers than slots): it never runs.
      expired_++;
      if (monitor_) sluice_monitor_record_id(monitor_, series_wait_, wait, SLUICE_ETIMEDOUT);
      end_task(op, SLUICE_ETIMEDOUT, h);
      continue;
    }
    op->state = PoolOp::kRunning;
    wait_ns_ += wait;
    if (monitor_ && op->waited) sluice_monitor_record_id(monitor_, series_wait_, wait, 0);
    *start = t;
    return op;
  }
  return nullptr;
}

void Pool::end_task(PoolOp *op, int rc, Handoff &h) {
  finish(op, rc);
  // Counted until posted, so a shutdown that sees the slot come back also
  // waits for the completion (see flush).
  posting_.fetch_add(1, std::memory_order_seq_cst);
  h.completions++;
  h.push(op);
  op->unref();  // the run queue's reference (see dispatch); h holds one
  give_slot();
  pump(h);
}

}  // namespace sluice::taskpool

// The task pool (public sluice_taskpool): one limit of slots shared by
// tasks (run on the pool's worker threads) and permits (held by callers).
//
// Who touches what:
//  - state_: one atomic word with the slots in use, the number of waiting
//    requests (queue plus room line) and the closed bit. The permit fast
//    path (try_acquire, release) works on it with compare-and-swap and
//    never takes the mutex unless somebody waits, the pool is closed or
//    the adaptive limit needs the sample. `waiting` changes only under mu_.
//  - Permit records: a table of slot records that permits name; a record
//    is claimed by compare-and-swap on its word, and its counters are
//    written only by its owner (claim to release), so they need no RMW.
//  - Everything else (queues, run queue, counters, adaptive window,
//    request states): under mu_, from any thread.
//  - PoolOp completion: the loop thread, never with mu_ held (a
//    completion may call back into the pool).
#pragma once

#include <time.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "alloc/alloc.h"
#include "op/op.h"
#include "runtime/runtime.h"
#include "sluice/taskpool.h"

namespace sluice::taskpool {

static_assert(sizeof(void *) == 8, "permits are 64-bit handle values");

// state_ layout.
constexpr uint64_t kUsedMask = (uint64_t{1} << 20) - 1;  // 0..65536 fit
constexpr unsigned kWaitShift = 20;
constexpr uint64_t kWaitOne = uint64_t{1} << kWaitShift;
constexpr uint64_t kWaitMask = ((uint64_t{1} << 40) - 1) << kWaitShift;
constexpr uint64_t kClosed = uint64_t{1} << 63;

inline uint32_t used_of(uint64_t w) { return uint32_t(w & kUsedMask); }
inline uint64_t waiting_of(uint64_t w) { return (w & kWaitMask) >> kWaitShift; }

// Permit records: chunks of 64 that never move. Records in use never
// outnumber the slots in use (a record is claimed after its slot and
// freed before it), so 65536 suffice; the rest is slack for claims that
// race past a free record.
constexpr uint32_t kChunkBits = 6;
constexpr uint32_t kChunkRecords = 1u << kChunkBits;
constexpr uint32_t kMaxRecords = 65536 + 4096;
constexpr uint32_t kMaxChunks = kMaxRecords / kChunkRecords;

enum RecordState : uint64_t { kFree = 0, kHeld = 1, kReleasing = 2 };

struct alignas(64) Record {
  std::atomic<uint64_t> word{0};  // generation << 2 | RecordState
  // Written only by the owner; read (relaxed) by the figures.
  std::atomic<uint64_t> start{0};      // permit clock at the grant
  std::atomic<uint64_t> acquired{0};   // try_acquire grants (fast path)
  std::atomic<uint64_t> completed{0};  // releases with outcome 0
  std::atomic<uint64_t> failed{0};     // releases with outcome < 0
  std::atomic<uint64_t> run_ns{0};     // hold time of released permits
};

inline void bump(std::atomic<uint64_t> &c, uint64_t by) {
  c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}

class Pool;

// A waiting request: a task or an asynchronous permit acquire.
struct PoolOp final : sluice_op {
  enum Kind : uint8_t { kTask, kPermit };
  enum State : uint8_t {
    kNew,       // not placed yet
    kQueued,    // in the priority queue
    kRoom,      // in the room line (FULL_WAIT, queue full)
    kReady,     // task with a slot, waiting for a worker
    kRunning,   // task function running
    kGranted,   // permit granted, on its way to the loop
    kFinished,  // outcome decided and counted; `result` is final
  };

  PoolOp(Pool *p, Runtime *rt, Kind k, sluice_status_cb done, sluice_permit_cb pcb,
         void *ud, sluice_free_cb f)
      : sluice_op(rt, done, ud, f), pool(p), permit_cb(pcb), kind(k) {}

  void on_start() override;
  void on_cancel() override;
  void on_deadline() override;
  void on_shutdown() override;

  void *ud() const { return user_data_; }
  // Loop thread, from a posted item: delivers a grant or a decided outcome.
  static void posted_cb(void *p, int status);

  Pool *pool;
  sluice_task_fn fn = nullptr;
  sluice_permit_cb permit_cb;
  uint64_t enq_ns = 0;       // pool clock when placed
  uint64_t deadline_ns = 0;  // runtime clock; 0 none (also: granted at once)
  uint64_t permit = 0;       // the grant's handle
  int result = 0;
  Kind kind;
  uint8_t prio = SLUICE_PRIORITY_NORMAL;
  State state = kNew;        // under the pool's mu_
  bool waited = false;       // went through the queue or the room line
  bool at_once = false;      // permit granted when placed: on_start delivers
  // Set with the outcome when the op leaves the pool's books: from then on
  // nothing about the op touches the pool (which may be gone).
  std::atomic<bool> finished{false};
  PoolOp *prev = nullptr, *next = nullptr;    // queue, room line, run queue
  PoolOp *aprev = nullptr, *anext = nullptr;  // the pool's unfinished ops
  PoolOp *hnext = nullptr;                    // hand-off list
  bool listed = false;

 protected:
  void deliver(int status) override;
};

// An intrusive FIFO of ops through prev/next.
struct List {
  PoolOp *head = nullptr, *tail = nullptr;
  uint64_t n = 0;
  void push(PoolOp *op);
  void remove(PoolOp *op);
  PoolOp *pop() {
    PoolOp *op = head;
    if (op) remove(op);
    return op;
  }
};

// What a section under mu_ leaves to do once the mutex is released: ops to
// post to the loop (grants and decided outcomes, each holding a reference
// taken under the mutex), of which `completions` are finished tasks (see
// posting_), and how many idle workers the section woke (see dispatch).
struct Handoff {
  PoolOp *head = nullptr, *tail = nullptr;
  uint32_t completions = 0, wake = 0;
  void push(PoolOp *op);
  bool empty() const { return !head && !wake; }
};

struct Config {
  uint32_t limit, workers, max_queued, min, ceiling, max_bypass;
  int on_full, adaptive;
  uint64_t target_ns;
  sluice_monitor *monitor;
  const char *name;
  sluice_clock_cb clock;
  void *clock_ud;
};

class Pool final : public mem::Allocated, public ShutdownHook {
 public:
  static void *operator new(std::size_t n);
  static void *operator new(std::size_t n, std::align_val_t) { return operator new(n); }
  static void operator delete(void *p, std::size_t n) noexcept;
  static void operator delete(void *p, std::size_t n, std::align_val_t) noexcept {
    operator delete(p, n);
  }

  static int create(Runtime *rt, const Config &c, Pool **out);
  void destroy();  // sluice_taskpool_free

  // ---- permits, calling thread (permit.cc)
  // 0, SLUICE_EAGAIN, SLUICE_ECLOSED or SLUICE_ENOMEM; `count_busy`:
  // count an EAGAIN in the figures.
  int try_acquire(uint64_t *handle, bool count_busy);
  int release(uint64_t handle, int outcome);

  // ---- requests, calling thread (queue.cc)
  // Places `op` (granted, queued, room line) and starts it on the runtime,
  // or refuses it: 0, SLUICE_EFULL, SLUICE_ECLOSED, SLUICE_ENOMEM (message
  // set, naming `fn`). On an error nothing of the op is left in the pool.
  int place(PoolOp *op, int64_t timeout_ms, const char *fn);

  // ---- control (pool.cc)
  int resize(uint32_t n);
  int shutdown(int64_t timeout_ms);
  void fill_stats(sluice_taskpool_stats *st);

  // ---- loop thread (ops.cc)
  void op_stop(PoolOp *op, int status);  // cancel, deadline
  void op_shutdown(PoolOp *op);          // the runtime shuts down
  void deliver_grant(PoolOp *op);
  void on_runtime_shutdown() override;

  Runtime *runtime() const { return rt_; }
  bool is_own_worker() const;  // the calling thread is one of our workers
  const char *name() const { return name_; }

 private:
  friend struct PoolOp;
  Pool() = default;
  ~Pool();

  uint64_t now() const { return clock_ ? clock_(clock_ud_) : sluice_now_ns(); }
  // The clock of permit hold times: the injected one, the precise one when
  // the monitor or the adaptive limit needs the resolution, else the coarse
  // one. Hold times are summed, not compared, so its truncation averages
  // out, and it costs 3 ns where the precise clock costs 20, on a path
  // whose whole budget is 60.
  uint64_t permit_now() const {
    if (__builtin_expect(clock_ != nullptr, 0)) return clock_(clock_ud_);
    if (precise_permits_) return sluice_now_ns();
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
  }

  // ---- under mu_ (queue.cc)
  PoolOp *pick(int *cls);
  void unqueue(PoolOp *op);  // from the queue or the room line
  void refill();
  void pump(Handoff &h);
  void grant(PoolOp *op, Handoff &h);
  void finish(PoolOp *op, int result);  // leaves the books with `result`
  void give_slot();                     // one slot back
  void list_op(PoolOp *op);
  void unlist_op(PoolOp *op);
  void note_running(uint32_t used);
  void dispatch(PoolOp *op, Handoff &h);  // task: to the run queue; a worker for it
  void adapt(uint64_t run_ns, bool failed);  // one finished piece of work

  // ---- no mutex held
  void stop_workers();     // lets the run queue drain, joins every worker
  void destroy_on_loop();  // completes what is still listed with ECLOSED
  void flush(Handoff &h);
  void close_waiting();  // loop thread: queue and room line -> ECLOSED
  void after_release(uint64_t old_word, uint64_t run_ns, int outcome, bool sample);

  // ---- permit records (permit.cc)
  Record &rec(uint32_t idx) {
    return chunks_[idx >> kChunkBits].load(std::memory_order_relaxed)[idx & (kChunkRecords - 1)];
  }
  // A claimed (kHeld) record's index, or UINT32_MAX; sets *gen.
  uint32_t claim(uint32_t *gen);
  uint32_t claim_locked(uint32_t *gen);  // under mu_: grows the table if needed
  void drop_record(uint64_t handle);     // a claimed record never handed out
  bool grow();                           // under mu_
  uint64_t encode(uint32_t idx, uint32_t gen) const {
    return (uint64_t{1} << 63) | (uint64_t{idx} << 32) | (gen ^ salt_);
  }

  // ---- workers (workers.cc)
  bool start_worker();  // under mu_
  void worker_main(uint32_t index);
  // Under mu_: the next task that may run (kRunning, its start time in
  // *start), ending on the way those whose deadline passed; or nullptr.
  PoolOp *take_task(uint64_t *start, Handoff &h);
  // Under mu_: a task ends with `rc`; its slot goes on.
  void end_task(PoolOp *op, int rc, Handoff &h);

  // ---- hot, shared by every permit call
  alignas(64) std::atomic<uint64_t> state_{0};
  std::atomic<uint32_t> limit_{0};
  std::atomic<uint32_t> free_hint_{0};
  std::atomic<uint32_t> nrecords_{0};
  std::atomic<bool> saturated_{false};  // the limit was reached this window
  std::atomic<uint32_t> posting_{0};    // task completions decided, not yet posted

  // ---- read-only after create
  alignas(64) Runtime *rt_ = nullptr;
  std::atomic<Record *> *chunks_ = nullptr;
  void **chunk_raw_ = nullptr;
  uint32_t salt_ = 0;
  uint32_t max_queued_ = 0, max_threads_ = 0, max_bypass_ = 0;
  uint32_t min_ = 0, ceiling_ = 0;
  int on_full_ = 0;
  bool adaptive_ = false, precise_permits_ = false;
  uint64_t target_ns_ = 0;
  sluice_clock_cb clock_ = nullptr;
  void *clock_ud_ = nullptr;
  sluice_monitor *monitor_ = nullptr;
  uint32_t series_wait_ = 0, series_run_ = 0, series_rejected_ = 0;
  char name_[65] = "taskpool";

  // ---- under mu_
  std::mutex mu_;
  std::condition_variable work_cv_;  // workers wait for the run queue
  std::condition_variable idle_cv_;  // shutdown waits for running == 0
  List q_[3];                        // by priority
  List room_;
  List run_;
  uint64_t queue_len_ = 0;
  uint32_t bypass_[3] = {0, 0, 0};
  PoolOp *ops_ = nullptr;            // unfinished ops (for free)
  std::vector<std::thread, mem::Allocator<std::thread>> threads_;
  uint32_t idle_ = 0;                // workers waiting on work_cv_
  uint32_t returning_ = 0;           // workers that look at the run queue before
                                     // they sleep: back from a task, or new
  bool stopping_ = false, hooked_ = false;
  // Adaptive window.
  uint64_t win_n_ = 0, win_bad_ = 0;
  // Figures.
  uint64_t submitted_ = 0, completed_ = 0, failed_ = 0, rejected_ = 0;
  uint64_t expired_ = 0, cancelled_ = 0, closed_ = 0, peak_queued_ = 0;
  uint64_t wait_ns_ = 0, run_ns_ = 0, raised_ = 0, lowered_ = 0;

  // Figures kept by the lock-free paths.
  std::atomic<uint64_t> peak_running_{0}, busy_{0}, bad_releases_{0};
};

inline Pool *unwrap(sluice_taskpool *p) { return reinterpret_cast<Pool *>(p); }
inline sluice_taskpool *wrap(Pool *p) { return reinterpret_cast<sluice_taskpool *>(p); }

}  // namespace sluice::taskpool

/*
 * sluice/taskpool.h - bounded concurrency: blocking work on the pool's own
 * worker threads and asynchronous permits, under one limit, with a bounded
 * priority queue.
 *
 * A task pool (sluice_taskpool) has `limit` slots (max_concurrent, default
 * 20; resizable; optionally adaptive). Two kinds of work take a slot:
 *
 *  - Blocking work (sluice_taskpool_submit): a function that runs on one of
 *    the pool's worker threads (never libuv's shared thread pool); its
 *    return value is the task's status; `done` runs on the loop thread.
 *  - Permits (sluice_taskpool_try_acquire, _acquire, _acquire_wait): the
 *    caller gets a slot, does asynchronous work elsewhere (a query, an HTTP
 *    call in its own language) and gives the slot back with
 *    sluice_taskpool_release, saying whether the work succeeded.
 *
 * Queue. A request that finds every slot taken waits in the queue (at most
 * max_queued requests). When the queue is full, a new request is refused
 * with SLUICE_EFULL (SLUICE_TASKPOOL_FULL_REJECT, the default), or waits
 * for room (SLUICE_TASKPOOL_FULL_WAIT): such requests line up in arrival
 * order in the "room line" and enter the queue as places free up (and take
 * a free slot directly if the queue is empty). Either way a request waits
 * no longer than its own deadline. try_acquire never queues: it takes a
 * free slot or fails with SLUICE_EAGAIN, and it never takes a slot while
 * requests are waiting (they go first).
 *
 * Priorities. Queued requests are served high before normal before low,
 * first come first served within a priority, with one exception that
 * keeps low from starving: when `max_bypass` slots in a row (default 4)
 * have gone to higher priorities while a lower priority had a request
 * waiting, the next slot goes to the oldest request of that priority (low
 * before normal when both are due). So the oldest waiting request of a
 * priority is passed over by at most max_bypass grants (max_bypass + 1
 * for normal, when low's turn comes first) before it is served.
 * docs/taskpool.md walks through the rule.
 *
 * Deadlines and cancellation. A request still queued (or in the room line)
 * at its deadline completes with SLUICE_ETIMEDOUT; a task whose deadline
 * passes before a worker thread picks it up also completes with
 * SLUICE_ETIMEDOUT. Either way its function never runs. A request can be
 * cancelled (sluice_op_cancel) while it waits; work already running is
 * never interrupted: a task's function runs to its end and `done` gets its
 * status; a permit grant that wins the race with a cancel is delivered,
 * and the caller must release it.
 *
 * Shutdown. sluice_taskpool_shutdown stops accepting work, completes every
 * waiting request with SLUICE_ECLOSED, and waits (to a deadline) for the
 * running tasks and the permits held to finish.
 *
 * Adaptive limit (optional, off by default). The limit follows the load
 * between min_concurrent and max_concurrent_ceiling: after every `limit`
 * finished pieces of work it drops by a quarter if more than 10% of them
 * failed or ran longer than target_latency_ns; otherwise it rises by one
 * if the limit was reached during that window. See docs/taskpool.md for
 * the exact rule.
 *
 * Figures. Every request that passed the argument checks is counted once
 * in `submitted` and, once it has finished, once in completed, failed,
 * rejected, expired, cancelled or closed; until then it is queued, in the
 * room line or running. So submitted = completed + failed + rejected +
 * expired + cancelled + closed + queued + room_waiting + running whenever
 * no call is in progress (see sluice_taskpool_stats_get).
 *
 * Threads: every function may be called from any thread unless it says
 * otherwise. try_acquire, release, resize and stats run in the calling
 * thread and never wait for the loop; an uncontended try_acquire +
 * release is a handful of atomic operations, no lock and no allocation.
 * Waiting requests complete on the runtime's loop thread, exactly once
 * (see op.h).
 */
#ifndef SLUICE_TASKPOOL_H
#define SLUICE_TASKPOOL_H

#include "common.h"
#include "monitor.h" /* sluice_monitor, sluice_clock_cb */
#include "op.h"
#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sluice_taskpool sluice_taskpool;

/*
 * A slot held through the permit calls: an opaque handle VALUE (not memory
 * the caller frees or reads; a binding may store it as an integer), never
 * NULL when granted. Releasing it gives exactly that slot back. A permit
 * already released, or one another pool gave out, is refused with
 * SLUICE_ESTATE and changes nothing. A permit is not tied to a thread.
 */
typedef struct sluice_permit sluice_permit;

typedef enum sluice_priority {
  SLUICE_PRIORITY_HIGH = 0,
  SLUICE_PRIORITY_NORMAL = 1,
  SLUICE_PRIORITY_LOW = 2
} sluice_priority;

/* What a request that finds the queue full does. */
typedef enum sluice_taskpool_full {
  SLUICE_TASKPOOL_FULL_REJECT = 0, /* refused at once with SLUICE_EFULL */
  SLUICE_TASKPOOL_FULL_WAIT = 1    /* waits in the room line, within its
                                      deadline */
} sluice_taskpool_full;

/* The most slots a pool can have, and the most worker threads. */
#define SLUICE_TASKPOOL_MAX_CONCURRENT 65536
#define SLUICE_TASKPOOL_MAX_WORKERS 1024

/* ---- options -------------------------------------------------------- */

#define SLUICE_TASKPOOL_OPTIONS_VERSION 1

typedef struct sluice_taskpool_options {
  unsigned int version;    /* SLUICE_TASKPOOL_OPTIONS_VERSION */
  uint32_t max_concurrent; /* slots: tasks running plus permits held;
                              default 20 (1..65536). With `adaptive`, the
                              starting limit. */
  uint32_t workers;        /* worker threads for tasks, at most; default 0:
                              as many as tasks run at once, up to 256.
                              1..1024 sets the number. Threads start when
                              tasks need them (one at creation) and stay
                              until the pool is freed. Fewer workers than
                              slots means granted tasks may wait for a
                              thread (holding their slot). */
  uint32_t max_queued;     /* requests waiting for a slot, at most; default
                              1000 (0..2^30; 0: no queue, a request that
                              finds no free slot is refused or waits in the
                              room line) */
  int on_full;             /* a sluice_taskpool_full; default REJECT */
  /* Adaptive limit: 0 (default) off, 1 on. */
  int adaptive;
  uint32_t min_concurrent;         /* floor; default 1 (1..max_concurrent) */
  uint32_t max_concurrent_ceiling; /* ceiling; default 0: twice
                                      max_concurrent, at most 65536
                                      (else max_concurrent..65536) */
  uint64_t target_latency_ns;      /* a piece of work slower than this
                                      counts against the limit; required
                                      (non-zero) when adaptive is on */
  /* Optional: records "<name>.wait" (the queue wait of each request that
   * had to wait, and its outcome), "<name>.run" (each task's run time and
   * status, each permit's hold time and outcome) and "<name>.rejected"
   * (each SLUICE_EFULL refusal, duration 0). Must outlive the pool. */
  sluice_monitor *monitor;
  const char *name;        /* default "taskpool" (1..64 bytes; copied); the
                              monitor series prefix, and worker threads
                              are named "<name>-<n>" (as much as fits the
                              OS's 15 bytes) */
  sluice_clock_cb clock;   /* NULL (default): sluice_now_ns. Measures queue
                              wait, run and hold times (the figures and the
                              adaptive limit), so tests can drive them.
                              Deadlines always use the runtime's monotonic
                              clock. Must not block; any thread. */
  void *clock_user_data;
  uint32_t max_bypass;     /* grants that may pass over a waiting lower
                              priority in a row; default 4 (1..65536) */
} sluice_taskpool_options;

#define SLUICE_TASKPOOL_OPTIONS_INIT                                         \
  {SLUICE_TASKPOOL_OPTIONS_VERSION, 20, 0, 1000,                             \
   SLUICE_TASKPOOL_FULL_REJECT, 0, 1, 0, 0, NULL, NULL, NULL, NULL, 4}

/*
 * Fills `opts` with the defaults of options version `version`.
 * Errors: SLUICE_EINVAL (opts NULL), SLUICE_EVERSION.
 */
SLUICE_EXTERN int sluice_taskpool_options_init(sluice_taskpool_options *opts,
                                               unsigned int version);

/* ---- life cycle ----------------------------------------------------- */

/*
 * Creates a task pool on `rt` (its loop thread runs every callback) and
 * starts its first worker thread. `opts` may be NULL for the defaults.
 * Errors: SLUICE_EINVAL (out or rt NULL; an option out of range, named in
 * sluice_error_message: max_concurrent 0 or above 65536, workers above
 * 1024, max_queued above 2^30, on_full unknown, adaptive not 0 or 1, with
 * adaptive on: target_latency_ns 0, min_concurrent 0 or above
 * max_concurrent, ceiling below max_concurrent or above 65536; name empty
 * or longer than 64 bytes; max_bypass 0 or above 65536), SLUICE_EVERSION,
 * SLUICE_ECLOSED (rt is shutting down), SLUICE_ENOMEM, SLUICE_EINTERNAL
 * (the worker thread could not be started).
 */
SLUICE_EXTERN int sluice_taskpool_new(sluice_taskpool **out, sluice_runtime *rt,
                                      const sluice_taskpool_options *opts);

/*
 * Frees the pool. NULL is a no-op. Stops accepting work; requests still
 * waiting complete with SLUICE_ECLOSED; tasks already granted run to their
 * end (this waits for them: a task's function must not wait for the loop
 * thread if the pool is freed there); `done` callbacks still pending run
 * on the loop thread before this returns (inside this call if it is made
 * on the loop thread, except those of tasks that finished there
 * meanwhile, which run after it and must not use the pool). Permits still
 * held become meaningless: they must not be released to the pool again
 * (it is gone). No other thread may be using the pool during or after the
 * call, and it must not be called from one of the pool's own tasks. Call
 * it before the runtime's shutdown begins, or after sluice_runtime_close
 * has returned (never while another thread runs that shutdown); always
 * before the runtime is freed. From a thread other than the loop thread it blocks
 * until the loop has run the teardown.
 */
SLUICE_EXTERN void sluice_taskpool_free(sluice_taskpool *pool);

/* ---- blocking work -------------------------------------------------- */

/*
 * A task: runs on a pool worker thread; returns 0 or a negative status
 * (sluice's codes or the caller's own), which is what `done` receives and
 * what counts it as completed (0) or failed (< 0). A positive return is
 * taken as a failure and passed on unchanged.
 */
typedef int (*sluice_task_fn)(void *user_data);

/*
 * Runs fn(user_data) on a worker thread when a slot is free, in priority
 * order (see the top of this header), waiting at most `timeout_ms`
 * milliseconds for a slot (< 0: no deadline; 0: only a slot free when
 * the request is placed).
 * `done` (may be NULL) runs exactly once on the loop thread: with fn's
 * return value; or, fn never having run, with SLUICE_ETIMEDOUT (deadline
 * passed while queued), SLUICE_ECANCELED (cancelled through *op_out while
 * queued), SLUICE_ECLOSED (the pool or the runtime shut down first). Then
 * free_user_data(user_data) if not NULL. If the runtime shuts down while
 * fn runs, done gets SLUICE_ECLOSED at that moment (fn still runs to its
 * end; the figures count fn's own outcome).
 * `op_out` may be NULL; else *op_out receives a handle to cancel or wait
 * for the task (release it with sluice_op_free). Cancelling a task that
 * already runs has no effect.
 * Errors (nothing taken: done never runs, free_user_data is not called):
 * SLUICE_EINVAL (pool or fn NULL, priority not a sluice_priority,
 * timeout_ms above 2^40), SLUICE_EFULL (the queue is full and on_full is
 * REJECT), SLUICE_ECLOSED (the pool or the runtime is shutting down),
 * SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_taskpool_submit(sluice_taskpool *pool, sluice_task_fn fn,
                                         int priority, int64_t timeout_ms,
                                         sluice_status_cb done, void *user_data,
                                         sluice_free_cb free_user_data,
                                         sluice_op **op_out);

/* ---- permits -------------------------------------------------------- */

/*
 * Completion of sluice_taskpool_acquire, on the loop thread. status 0:
 * `permit` is the caller's until sluice_taskpool_release. Otherwise permit
 * is NULL and status is SLUICE_ETIMEDOUT, SLUICE_ECANCELED, SLUICE_ECLOSED
 * or SLUICE_ENOMEM.
 */
typedef void (*sluice_permit_cb)(void *user_data, int status, sluice_permit *permit);

/*
 * Takes a free slot now, in the calling thread, or fails. Never queues and
 * never passes requests that are waiting. No lock and no allocation in
 * steady state.
 * On 0, *out is the caller's until sluice_taskpool_release.
 * Errors (*out set to NULL, nothing taken): SLUICE_EINVAL (pool or out
 * NULL), SLUICE_EAGAIN (every slot is taken, or requests are waiting),
 * SLUICE_ECLOSED (the pool is shutting down), SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_taskpool_try_acquire(sluice_taskpool *pool, sluice_permit **out);

/*
 * Waits for a slot in priority order, at most `timeout_ms` milliseconds
 * (< 0: no deadline; 0: only a slot free when the request is placed).
 * cb runs exactly once on the loop thread (see sluice_permit_cb), then
 * free_user_data(user_data) if not NULL. `op_out` may be NULL; else
 * *op_out receives a handle to cancel or wait (release it with
 * sluice_op_free). A cancel or deadline that loses the race with a grant
 * already decided still delivers the permit: the caller owns it and must
 * release it.
 * Errors (nothing taken): SLUICE_EINVAL (pool or cb NULL, priority not a
 * sluice_priority, timeout_ms above 2^40), SLUICE_EFULL (queue full,
 * REJECT), SLUICE_ECLOSED, SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_taskpool_acquire(sluice_taskpool *pool, int priority,
                                          int64_t timeout_ms, sluice_permit_cb cb,
                                          void *user_data, sluice_free_cb free_user_data,
                                          sluice_op **op_out);

/*
 * Blocks the calling thread for a slot, queuing like
 * sluice_taskpool_acquire, at most `timeout_ms` (< 0: no limit). A free
 * slot with nobody waiting is taken at once, without the loop.
 * On 0, *out is the caller's until sluice_taskpool_release.
 * Errors (*out set to NULL): SLUICE_EINVAL (pool or out NULL, priority,
 * timeout_ms above 2^40), SLUICE_EDEADLK (called on the loop thread,
 * always), SLUICE_EFULL, SLUICE_ETIMEDOUT, SLUICE_ECLOSED, SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_taskpool_acquire_wait(sluice_taskpool *pool, int priority,
                                               int64_t timeout_ms, sluice_permit **out);

/*
 * Gives the slot of `permit` back (to the next waiting request, if any:
 * its callback or task follows on the loop thread or a worker). `outcome`
 * is how the work went: 0 counts it as completed, a negative code (any,
 * sluice's or the caller's) as failed; the adaptive limit and the monitor
 * see it with the time the permit was held. Allowed after
 * sluice_taskpool_shutdown. Never blocks on the loop.
 * Errors (nothing released): SLUICE_EINVAL (pool or permit NULL, outcome
 * positive), SLUICE_ESTATE (the permit was already released, or is not
 * one of this pool's).
 */
SLUICE_EXTERN int sluice_taskpool_release(sluice_taskpool *pool, sluice_permit *permit,
                                          int outcome);

/* ---- control -------------------------------------------------------- */

/*
 * Sets the number of slots. Raising it grants waiting requests at once;
 * lowering it takes nothing away from work already granted: new grants
 * wait until fewer than the new limit are running. With the adaptive
 * limit on, this moves the current limit (which then keeps adapting) and
 * must lie between min_concurrent and the ceiling.
 * Errors: SLUICE_EINVAL (pool NULL; max_concurrent 0 or above 65536),
 * SLUICE_ERANGE (adaptive on and outside its floor and ceiling).
 */
SLUICE_EXTERN int sluice_taskpool_resize(sluice_taskpool *pool, uint32_t max_concurrent);

/*
 * Graceful shutdown: stops accepting work (submit and the acquire calls
 * fail with SLUICE_ECLOSED from now on), completes every waiting request
 * with SLUICE_ECLOSED, then waits up to `timeout_ms` (< 0: no limit) for
 * the tasks granted to finish and the permits held to be released, and
 * for the `done` callbacks of those tasks to have run. Calling it again
 * waits again. Nothing is interrupted: work still running when it returns
 * SLUICE_ETIMEDOUT goes on, and the pool stays usable for releasing
 * permits and reading figures until sluice_taskpool_free.
 * On the loop thread, and inside one of the pool's own tasks, only
 * timeout_ms 0 is allowed (waiting there would stop the callbacks that
 * release permits, or wait for the calling task itself): it closes the
 * queue and returns at once.
 * Errors: SLUICE_EINVAL (pool NULL, timeout_ms above 2^40),
 * SLUICE_EDEADLK (on the loop thread or in a task of this pool with a
 * timeout other than 0; nothing done), SLUICE_ETIMEDOUT (work still
 * running at the deadline; the shutdown itself has happened).
 */
SLUICE_EXTERN int sluice_taskpool_shutdown(sluice_taskpool *pool, int64_t timeout_ms);

/* ---- figures -------------------------------------------------------- */

typedef struct sluice_taskpool_stats {
  size_t size;          /* caller sets sizeof(sluice_taskpool_stats) */
  uint64_t limit;       /* slots now (moves with resize and the adaptive
                           limit) */
  uint64_t submitted;   /* requests counted (tasks, acquires, successful
                           try_acquires), refused ones included */
  uint64_t queued;      /* waiting in the queue now (<= max_queued) */
  uint64_t running;     /* holding a slot now: tasks granted (waiting for
                           a worker or running) and permits granted */
  uint64_t completed;   /* tasks that returned 0, permits released with 0 */
  uint64_t failed;      /* tasks that returned non-zero, permits released
                           with a negative outcome, grants that failed
                           for lack of memory */
  uint64_t rejected;    /* refused with SLUICE_EFULL */
  uint64_t expired;     /* ended by their deadline before running */
  uint64_t cancelled;   /* ended by a cancel before running */
  uint64_t closed;      /* ended by a shutdown before running */
  uint64_t peak_running;
  uint64_t peak_queued;
  uint64_t queue_wait_ns_total; /* time from request to slot (tasks: to
                                   the start of fn), every request that
                                   got one */
  uint64_t run_ns_total;        /* task run times plus permit hold times */
  /* Added beyond the first shape. */
  uint64_t room_waiting;  /* FULL_WAIT requests in the room line now */
  uint64_t busy;          /* try_acquire refusals (SLUICE_EAGAIN); not
                             counted in submitted */
  uint64_t bad_releases;  /* releases refused with SLUICE_ESTATE */
  uint64_t threads;       /* worker threads started */
  uint64_t limit_raised;  /* adaptive steps up */
  uint64_t limit_lowered; /* adaptive steps down */
} sluice_taskpool_stats;

/*
 * Copies the pool's figures (no more than out->size bytes). Each count is
 * exact. While other threads are inside pool calls the figures are read
 * one after the other, not at one instant, so the sum in the header's
 * "Figures" paragraph may be off by the calls in progress; it holds
 * exactly whenever no call is in progress.
 * Errors: SLUICE_EINVAL (pool or out NULL, out->size too small).
 */
SLUICE_EXTERN int sluice_taskpool_stats_get(sluice_taskpool *pool,
                                            sluice_taskpool_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_TASKPOOL_H */

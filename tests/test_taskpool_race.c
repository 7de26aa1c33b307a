/* sluice_taskpool under threads: two threads mixing every kind of request
 * on a small pool (the limit is never exceeded, and the figures equal what
 * the threads themselves observed), cancellation racing grants and
 * deadlines (every callback exactly once, every grant released), resize
 * racing the traffic, and a shutdown in the middle of it.
 * SLUICE_TEST_CONCURRENT: also run under ThreadSanitizer. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include <sluice/taskpool.h>

enum { LIMIT = 3, THREADS = 2 };

static uint32_t next_rand(uint32_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

static sluice_taskpool_stats stats_of(sluice_taskpool *p) {
  sluice_taskpool_stats st;
  memset(&st, 0, sizeof st);
  st.size = sizeof st;
  assert_ok(sluice_taskpool_stats_get(p, &st));
  return st;
}

static void assert_books_balance(const sluice_taskpool_stats *st) {
  uint64_t ended =
      st->completed + st->failed + st->rejected + st->expired + st->cancelled + st->closed;
  uint64_t in_flight = st->queued + st->room_waiting + st->running;
  if (st->submitted != ended + in_flight)
    fail_msg("submitted %llu != ended %llu + in flight %llu", (unsigned long long)st->submitted,
             (unsigned long long)ended, (unsigned long long)in_flight);
}

/* What the threads saw, to compare with the pool's figures. */
typedef struct seen {
  atomic_llong submitted, completed, failed, rejected, expired, cancelled, closed;
  atomic_llong busy;
} seen;

typedef struct world {
  sluice_taskpool *p;
  sluice_runtime *rt;
  int iters;
  int max_inside;        /* the most slots that may be held at once */
  atomic_int inside;     /* work holding a slot right now */
  atomic_int violations; /* times `inside` went above max_inside */
  atomic_int callbacks_twice;
  atomic_int stop;       /* shutdown test: the pool is closing */
  atomic_int mixers_done;
  int no_blocking;       /* skip acquire_wait (whose ECLOSED cannot tell
                            "refused" from "accepted, then closed") */
  seen s;
} world;

static void enter(world *w) {
  if (atomic_fetch_add(&w->inside, 1) + 1 > w->max_inside) atomic_fetch_add(&w->violations, 1);
}
static void leave(world *w) { atomic_fetch_sub(&w->inside, 1); }

static void count_status(world *w, int status) {
  switch (status) {
    case 0: atomic_fetch_add(&w->s.completed, 1); break;
    case SLUICE_ETIMEDOUT: atomic_fetch_add(&w->s.expired, 1); break;
    case SLUICE_ECANCELED: atomic_fetch_add(&w->s.cancelled, 1); break;
    case SLUICE_ECLOSED: atomic_fetch_add(&w->s.closed, 1); break;
    default: atomic_fetch_add(&w->s.failed, 1); break;
  }
}

/* A task: holds its slot while it runs. */
typedef struct task {
  world *w;
  int ret;
  atomic_int ran, done_calls;
} task;

static int task_fn(void *ud) {
  task *t = ud;
  enter(t->w);
  atomic_fetch_add(&t->ran, 1);
  sched_yield();
  leave(t->w);
  return t->ret;
}

static void task_done(void *ud, int status) {
  task *t = ud;
  if (atomic_fetch_add(&t->done_calls, 1) != 0) atomic_fetch_add(&t->w->callbacks_twice, 1);
  /* A task ends with its own status only if it ran; never both. */
  if ((status == 0 || status == -2) != (atomic_load(&t->ran) == 1))
    atomic_fetch_add(&t->w->violations, 1000);
  count_status(t->w, status);
}
static void task_free(void *ud) { free(ud); }

/* An asynchronous permit request: the callback releases what it gets. */
typedef struct ask {
  world *w;
  int outcome;
  atomic_int calls;
} ask;

static void ask_cb(void *ud, int status, sluice_permit *permit) {
  ask *a = ud;
  if (atomic_fetch_add(&a->calls, 1) != 0) atomic_fetch_add(&a->w->callbacks_twice, 1);
  if (status == 0) {
    enter(a->w);
    leave(a->w);
    assert_ok(sluice_taskpool_release(a->w->p, permit, a->outcome));
    count_status(a->w, a->outcome);
  } else {
    assert_null(permit);
    count_status(a->w, status);
  }
}
static void ask_free(void *ud) { free(ud); }

/* A refusal at the call (nothing taken). */
static int refused(world *w, int rc) {
  if (rc == SLUICE_EFULL) {
    atomic_fetch_add(&w->s.submitted, 1);
    atomic_fetch_add(&w->s.rejected, 1);
    return 1;
  }
  if (rc == SLUICE_ECLOSED && atomic_load(&w->stop)) return 1;
  fail_msg("unexpected %s (%s)", sluice_err_name(rc), sluice_error_message());
  return 1;
}

enum { KEEP = 64 };

/* Waits for the oldest of `ops` to complete and drops it. */
static void wait_oldest(sluice_op **ops, int *nops) {
  assert_ok(sluice_op_wait(ops[0], -1, NULL));
  sluice_op_free(ops[0]);
  memmove(ops, ops + 1, sizeof ops[0] * (size_t)(*nops - 1));
  (*nops)--;
}

static void *mixer(void *arg) {
  world *w = arg;
  uint32_t rng = (uint32_t)(uintptr_t)pthread_self() | 1;
  sluice_op *ops[KEEP];
  int nops = 0;
  for (int i = 0; i < w->iters; i++) {
    uint32_t r = next_rand(&rng);
    int prio = (int)(r % 3);
    int outcome = (r >> 8) % 5 == 0 ? -1 : 0;
    int64_t timeout = (r >> 12) % 3 == 0 ? -1 : (int64_t)((r >> 14) % 3);
    switch ((r >> 4) % 4) {
      case 0: { /* try, hold, release */
        sluice_permit *pm = NULL;
        int rc = sluice_taskpool_try_acquire(w->p, &pm);
        if (rc == SLUICE_EAGAIN) {
          atomic_fetch_add(&w->s.busy, 1);
          if (nops) wait_oldest(ops, &nops);
          break;
        }
        if (rc != 0) {
          refused(w, rc);
          break;
        }
        atomic_fetch_add(&w->s.submitted, 1);
        enter(w);
        leave(w);
        assert_ok(sluice_taskpool_release(w->p, pm, outcome));
        count_status(w, outcome);
        /* The same permit again: refused, changes nothing. */
        if ((r >> 20) % 8 == 0) assert_err(SLUICE_ESTATE, sluice_taskpool_release(w->p, pm, 0));
        break;
      }
      case 1: { /* blocking acquire */
        if (w->no_blocking) break;
        sluice_permit *pm = NULL;
        int rc = sluice_taskpool_acquire_wait(w->p, prio, timeout, &pm);
        if (rc == SLUICE_EFULL || (rc == SLUICE_ECLOSED && atomic_load(&w->stop))) {
          refused(w, rc);
          break;
        }
        atomic_fetch_add(&w->s.submitted, 1);
        if (rc != 0) {
          count_status(w, rc);
          break;
        }
        enter(w);
        leave(w);
        assert_ok(sluice_taskpool_release(w->p, pm, outcome));
        count_status(w, outcome);
        break;
      }
      case 2: { /* a task, sometimes cancelled at once */
        task *t = calloc(1, sizeof *t);
        t->w = w;
        t->ret = outcome ? -2 : 0;
        sluice_op *op = NULL;
        int rc = sluice_taskpool_submit(w->p, task_fn, prio, timeout, task_done, t, task_free, &op);
        if (rc != 0) {
          free(t);
          refused(w, rc);
          if (nops) wait_oldest(ops, &nops); /* back-pressure, not a spin */
          break;
        }
        atomic_fetch_add(&w->s.submitted, 1);
        if ((r >> 24) % 4 == 0) assert_ok(sluice_op_cancel(op));
        if (nops == KEEP) wait_oldest(ops, &nops);
        ops[nops++] = op;
        break;
      }
      default: { /* an asynchronous permit, sometimes cancelled */
        ask *a = calloc(1, sizeof *a);
        a->w = w;
        a->outcome = outcome;
        sluice_op *op = NULL;
        int rc = sluice_taskpool_acquire(w->p, prio, timeout, ask_cb, a, ask_free, &op);
        if (rc != 0) {
          free(a);
          refused(w, rc);
          if (nops) wait_oldest(ops, &nops);
          break;
        }
        atomic_fetch_add(&w->s.submitted, 1);
        if ((r >> 24) % 3 == 0) assert_ok(sluice_op_cancel(op));
        if (nops == KEEP) wait_oldest(ops, &nops);
        ops[nops++] = op;
        break;
      }
    }
  }
  while (nops) wait_oldest(ops, &nops);
  atomic_fetch_add(&w->mixers_done, 1);
  return NULL;
}

static void world_init(world *w, sluice_runtime *rt, sluice_taskpool *p, int iters) {
  memset(w, 0, sizeof *w);
  w->rt = rt;
  w->p = p;
  w->iters = iters;
  w->max_inside = LIMIT;
}

static void run_threads(world *w, void *(*fn)(void *), int n) {
  pthread_t th[8];
  for (int i = 0; i < n; i++) assert_int_equal(pthread_create(&th[i], NULL, fn, w), 0);
  for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
}

static void check_against_seen(world *w) {
  /* Every op has completed, but `done` counts once its callback returned:
   * a shutdown with no deadline waits until nothing runs and the last
   * completions have been delivered. */
  assert_ok(sluice_taskpool_shutdown(w->p, -1));
  sluice_taskpool_stats st = stats_of(w->p);
  assert_books_balance(&st);
  assert_int_equal(st.running, 0);
  assert_int_equal(st.queued, 0);
  assert_int_equal(st.room_waiting, 0);
  assert_int_equal(st.submitted, atomic_load(&w->s.submitted));
  assert_int_equal(st.completed, atomic_load(&w->s.completed));
  assert_int_equal(st.failed, atomic_load(&w->s.failed));
  assert_int_equal(st.rejected, atomic_load(&w->s.rejected));
  assert_int_equal(st.expired, atomic_load(&w->s.expired));
  assert_int_equal(st.cancelled, atomic_load(&w->s.cancelled));
  assert_int_equal(st.closed, atomic_load(&w->s.closed));
  assert_int_equal(atomic_load(&w->violations), 0);
  assert_int_equal(atomic_load(&w->callbacks_twice), 0);
  assert_int_equal(atomic_load(&w->inside), 0);
}

static void test_counters_under_two_threads(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = SLUICE_TASKPOOL_OPTIONS_INIT;
  o.max_concurrent = LIMIT;
  o.max_queued = 4;
  o.max_bypass = 2;
  sluice_taskpool *p = NULL;
  assert_ok(sluice_taskpool_new(&p, rt, &o));
  world w;
  world_init(&w, rt, p, 3000);
  run_threads(&w, mixer, THREADS);
  sluice_taskpool_stats st = stats_of(p);
  assert_true(st.peak_running <= LIMIT);
  assert_true(st.peak_queued <= 4);
  assert_true(st.completed > 0);
  assert_true(st.busy == (uint64_t)atomic_load(&w.s.busy));
  check_against_seen(&w);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

static void test_full_wait_under_two_threads(void **state) {
  (void)state;
  /* The same traffic with the room line instead of refusals. */
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = SLUICE_TASKPOOL_OPTIONS_INIT;
  o.max_concurrent = LIMIT;
  o.max_queued = 2;
  o.on_full = SLUICE_TASKPOOL_FULL_WAIT;
  sluice_taskpool *p = NULL;
  assert_ok(sluice_taskpool_new(&p, rt, &o));
  world w;
  world_init(&w, rt, p, 2000);
  run_threads(&w, mixer, THREADS);
  assert_int_equal(atomic_load(&w.s.rejected), 0);
  check_against_seen(&w);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

/* ---- cancellation racing grants ---------------------------------------- */

typedef struct ring {
  world *w;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  sluice_op *ops[256];
  int head, tail, done;
} ring;

static void ring_push(ring *rg, sluice_op *op) {
  pthread_mutex_lock(&rg->mu);
  while ((rg->tail + 1) % 256 == rg->head) pthread_cond_wait(&rg->cv, &rg->mu);
  rg->ops[rg->tail] = op;
  rg->tail = (rg->tail + 1) % 256;
  pthread_cond_broadcast(&rg->cv);
  pthread_mutex_unlock(&rg->mu);
}

static void *asker(void *arg) {
  /* Batches: hold the only slot, queue a few requests, hand them to the
   * canceller, let go. Grants then walk the queue on the loop thread
   * while cancels arrive from the other thread. */
  ring *rg = arg;
  world *w = rg->w;
  uint32_t rng = 12345;
  for (int i = 0; i < w->iters; i += 6) {
    sluice_permit *hold = NULL;
    assert_ok(sluice_taskpool_acquire_wait(w->p, SLUICE_PRIORITY_HIGH, -1, &hold));
    atomic_fetch_add(&w->s.submitted, 1);
    enter(w);
    for (int k = 0; k < 6; k++) {
      ask *a = calloc(1, sizeof *a);
      a->w = w;
      sluice_op *op = NULL;
      uint32_t r = next_rand(&rng);
      int rc = sluice_taskpool_acquire(w->p, (int)(r % 3), r % 5 == 0 ? 1 : -1, ask_cb, a,
                                       ask_free, &op);
      if (rc != 0) {
        free(a);
        refused(w, rc);
        continue;
      }
      atomic_fetch_add(&w->s.submitted, 1);
      ring_push(rg, op);
    }
    leave(w);
    assert_ok(sluice_taskpool_release(w->p, hold, 0));
    count_status(w, 0);
  }
  pthread_mutex_lock(&rg->mu);
  rg->done = 1;
  pthread_cond_broadcast(&rg->cv);
  pthread_mutex_unlock(&rg->mu);
  return NULL;
}

static void *canceller(void *arg) {
  ring *rg = arg;
  uint32_t rng = 777;
  for (;;) {
    pthread_mutex_lock(&rg->mu);
    while (rg->head == rg->tail && !rg->done) pthread_cond_wait(&rg->cv, &rg->mu);
    if (rg->head == rg->tail && rg->done) {
      pthread_mutex_unlock(&rg->mu);
      return NULL;
    }
    sluice_op *op = rg->ops[rg->head];
    rg->head = (rg->head + 1) % 256;
    pthread_cond_broadcast(&rg->cv);
    pthread_mutex_unlock(&rg->mu);
    /* Most are cancelled, at whatever point they have reached: queued,
     * granted and on their way, or done. */
    if (next_rand(&rng) % 4 != 0) assert_ok(sluice_op_cancel(op));
    int status = 1;
    assert_ok(sluice_op_wait(op, -1, &status));
    assert_true(status == 0 || status == SLUICE_ECANCELED || status == SLUICE_ETIMEDOUT);
    sluice_op_free(op);
  }
}

static void test_cancellation_races(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = SLUICE_TASKPOOL_OPTIONS_INIT;
  o.max_concurrent = 1;
  o.max_queued = 64;
  sluice_taskpool *p = NULL;
  assert_ok(sluice_taskpool_new(&p, rt, &o));
  world w;
  world_init(&w, rt, p, 3000);
  w.max_inside = 1;
  ring rg;
  memset(&rg, 0, sizeof rg);
  rg.w = &w;
  pthread_mutex_init(&rg.mu, NULL);
  pthread_cond_init(&rg.cv, NULL);
  pthread_t a, c;
  pthread_create(&a, NULL, asker, &rg);
  pthread_create(&c, NULL, canceller, &rg);
  pthread_join(a, NULL);
  pthread_join(c, NULL);
  assert_true(atomic_load(&w.s.cancelled) > 0);
  check_against_seen(&w);
  pthread_mutex_destroy(&rg.mu);
  pthread_cond_destroy(&rg.cv);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

static void *task_canceller(void *arg) {
  /* Submits tasks and cancels each from this thread right away: the cancel
   * races the worker that may already be starting it. */
  world *w = arg;
  uint32_t rng = (uint32_t)(uintptr_t)pthread_self() | 1;
  for (int i = 0; i < w->iters; i++) {
    task *t = calloc(1, sizeof *t);
    t->w = w;
    sluice_op *op = NULL;
    int rc = sluice_taskpool_submit(w->p, task_fn, (int)(next_rand(&rng) % 3), -1, task_done, t,
                                    task_free, &op);
    if (rc != 0) {
      free(t);
      refused(w, rc);
      continue;
    }
    atomic_fetch_add(&w->s.submitted, 1);
    assert_ok(sluice_op_cancel(op));
    int status = 1;
    assert_ok(sluice_op_wait(op, -1, &status));
    assert_true(status == 0 || status == SLUICE_ECANCELED);
    sluice_op_free(op);
  }
  return NULL;
}

static void test_task_cancellation_races(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = SLUICE_TASKPOOL_OPTIONS_INIT;
  o.max_concurrent = 1;
  o.max_queued = 100;
  sluice_taskpool *p = NULL;
  assert_ok(sluice_taskpool_new(&p, rt, &o));
  world w;
  world_init(&w, rt, p, 1500);
  w.max_inside = 1;
  run_threads(&w, task_canceller, THREADS);
  check_against_seen(&w);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

/* ---- resize and shutdown racing traffic --------------------------------- */

static void *resizer(void *arg) {
  world *w = arg;
  uint32_t rng = 99;
  while (!atomic_load(&w->stop)) {
    assert_ok(sluice_taskpool_resize(w->p, 1 + next_rand(&rng) % 4));
    sched_yield();
  }
  return NULL;
}

static void test_resize_under_traffic(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = SLUICE_TASKPOOL_OPTIONS_INIT;
  o.max_concurrent = 2;
  o.max_queued = 8;
  sluice_taskpool *p = NULL;
  assert_ok(sluice_taskpool_new(&p, rt, &o));
  world w;
  world_init(&w, rt, p, 2000);
  w.max_inside = 4; /* the largest limit the resizer sets */
  pthread_t r;
  pthread_create(&r, NULL, resizer, &w);
  run_threads(&w, mixer, THREADS);
  atomic_store(&w.stop, 1);
  pthread_join(r, NULL);
  assert_ok(sluice_taskpool_resize(p, 2));
  assert_true(stats_of(p).peak_running <= 4);
  atomic_store(&w.stop, 0);
  check_against_seen(&w);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

static void *closer(void *arg) {
  world *w = arg;
  /* Let some traffic through first: wait for a few completions. */
  while (atomic_load(&w->s.completed) < 200 && atomic_load(&w->mixers_done) < THREADS)
    sched_yield();
  atomic_store(&w->stop, 1);
  assert_ok(sluice_taskpool_shutdown(w->p, -1));
  return NULL;
}

static void test_shutdown_under_traffic(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_taskpool_options o = SLUICE_TASKPOOL_OPTIONS_INIT;
  o.max_concurrent = LIMIT;
  o.max_queued = 6;
  sluice_taskpool *p = NULL;
  assert_ok(sluice_taskpool_new(&p, rt, &o));
  world w;
  world_init(&w, rt, p, 3000);
  w.no_blocking = 1;
  pthread_t c;
  pthread_create(&c, NULL, closer, &w);
  run_threads(&w, mixer, THREADS);
  pthread_join(c, NULL);
  check_against_seen(&w);
  sluice_taskpool_free(p);
  sluice_runtime_free(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counters_under_two_threads),
      cmocka_unit_test(test_full_wait_under_two_threads),
      cmocka_unit_test(test_cancellation_races),
      cmocka_unit_test(test_task_cancellation_races),
      cmocka_unit_test(test_resize_under_traffic),
      cmocka_unit_test(test_shutdown_under_traffic),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

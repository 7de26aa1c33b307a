// Task pool: per-task overhead of blocking work (submit -> run on a worker
// -> done on the loop) against libuv's uv_queue_work on the same loop, in
// the same run; and the cost of a permit (try_acquire + release) against a
// C++20 std::counting_semaphore.
//
//   bench_taskpool [--tasks=200000] [--inflight=8] [--workers=2] [--work-ns=0]
//                  [--rounds=3] [--iters=5000000] [--threads=2]
//                  [--only=permit --iters=N] [--only=sluice|uv]
//
// Figures:
//  - tasks, one in flight: the round trip submit -> fn -> done, mean.
//  - tasks, --inflight at once: time per task at steady state (each done
//    callback submits the next), i.e. the overhead per task when the pool
//    is kept busy. Both on a libuv loop this thread runs (the runtime is
//    attached to it), both with --workers threads (UV_THREADPOOL_SIZE for
//    libuv), fn/work_cb spinning --work-ns.
//  - permits: try_acquire + release, one thread, uncontended; then
//    --threads threads on one pool (slots to spare); the same with
//    std::counting_semaphore.
//
// --only=permit --iters=N does N try_acquire + release pairs and nothing
// else, for callgrind (bench/callgrind_taskpool.sh takes the difference of
// two N to get instructions per pair). --only=sluice and --only=uv run one
// side of the task figure alone, for a profiler.
#include <sluice.h>
#include <sluice/uv.h>
#include <uv.h>

#include <sys/resource.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <semaphore>
#include <thread>
#include <vector>

#include "bench.h"

namespace {

void check(int rc, const char *what) {
  if (rc != 0) {
    std::fprintf(stderr, "%s: %s (%s)\n", what, sluice_err_name(rc), sluice_error_message());
    std::exit(1);
  }
}

uint64_t g_work_ns = 0;

// CPU time of the whole process (every thread), in ns: on a shared
// machine it says more about overhead than the wall clock does.
uint64_t cpu_ns() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto ns = [](const timeval &tv) { return uint64_t(tv.tv_sec) * 1000000000u + uint64_t(tv.tv_usec) * 1000u; };
  return ns(ru.ru_utime) + ns(ru.ru_stime);
}

struct Cost {
  double wall_ns, cpu_ns;  // per task
};

void spin(uint64_t ns) {
  if (!ns) return;
  uint64_t end = bench_now_ns() + ns;
  while (bench_now_ns() < end) {
  }
}

// ---- tasks: sluice --------------------------------------------------------

struct Run {
  long total = 0, submitted = 0, done = 0;
  sluice_taskpool *pool = nullptr;
  uv_loop_t *loop = nullptr;
};

int task_fn(void *) {
  spin(g_work_ns);
  return 0;
}

void task_done(void *ud, int status);

void submit_one(Run *r) {
  r->submitted++;
  check(sluice_taskpool_submit(r->pool, task_fn, SLUICE_PRIORITY_NORMAL, -1, task_done, r,
                               nullptr, nullptr),
        "submit");
}

void task_done(void *ud, int status) {
  auto *r = static_cast<Run *>(ud);
  check(status, "task status");
  r->done++;
  if (r->submitted < r->total) submit_one(r);
}

Cost sluice_tasks(uv_loop_t *loop, sluice_runtime *rt, long tasks, int inflight, int workers) {
  sluice_taskpool_options o = SLUICE_TASKPOOL_OPTIONS_INIT;
  o.max_concurrent = uint32_t(inflight);
  o.workers = uint32_t(workers);
  Run r;
  r.total = tasks;
  r.loop = loop;
  check(sluice_taskpool_new(&r.pool, rt, &o), "taskpool_new");
  // Warm the workers up so thread start-up is not measured.
  for (int i = 0; i < inflight; i++) submit_one(&r);
  uv_run(loop, UV_RUN_DEFAULT);
  r.submitted = r.done = 0;
  uint64_t c0 = cpu_ns(), t0 = bench_now_ns();
  for (int i = 0; i < inflight && r.submitted < tasks; i++) submit_one(&r);
  uv_run(loop, UV_RUN_DEFAULT);
  uint64_t dt = bench_now_ns() - t0, dc = cpu_ns() - c0;
  if (r.done != tasks) std::fprintf(stderr, "sluice: %ld of %ld tasks done\n", r.done, tasks);
  sluice_taskpool_free(r.pool);
  return Cost{double(dt) / double(tasks), double(dc) / double(tasks)};
}

// ---- tasks: uv_queue_work -------------------------------------------------

struct UvRun {
  long total = 0, submitted = 0, done = 0;
  uv_loop_t *loop = nullptr;
  std::vector<uv_work_t> reqs;
};

void uv_work(uv_work_t *) { spin(g_work_ns); }
void uv_after(uv_work_t *req, int status);

void uv_submit(UvRun *r, uv_work_t *req) {
  r->submitted++;
  req->data = r;
  if (uv_queue_work(r->loop, req, uv_work, uv_after) != 0) std::exit(1);
}

void uv_after(uv_work_t *req, int status) {
  auto *r = static_cast<UvRun *>(req->data);
  if (status != 0) std::exit(1);
  r->done++;
  if (r->submitted < r->total) uv_submit(r, req);
}

Cost uv_tasks(uv_loop_t *loop, long tasks, int inflight) {
  UvRun r;
  r.total = tasks;
  r.loop = loop;
  r.reqs.resize(size_t(inflight));
  for (int i = 0; i < inflight; i++) uv_submit(&r, &r.reqs[size_t(i)]);
  uv_run(loop, UV_RUN_DEFAULT);  // warm-up: starts libuv's threads
  r.submitted = r.done = 0;
  uint64_t c0 = cpu_ns(), t0 = bench_now_ns();
  for (int i = 0; i < inflight && r.submitted < tasks; i++) uv_submit(&r, &r.reqs[size_t(i)]);
  uv_run(loop, UV_RUN_DEFAULT);
  uint64_t dt = bench_now_ns() - t0, dc = cpu_ns() - c0;
  if (r.done != tasks) std::fprintf(stderr, "uv: %ld of %ld tasks done\n", r.done, tasks);
  return Cost{double(dt) / double(tasks), double(dc) / double(tasks)};
}

// ---- permits ----------------------------------------------------------------

double permits(sluice_taskpool *pool, int threads, long iters) {
  uint64_t t0 = bench_now_ns();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; t++)
    ts.emplace_back([&] {
      for (long i = 0; i < iters; i++) {
        sluice_permit *p;
        if (sluice_taskpool_try_acquire(pool, &p) != 0) std::abort();
        bench_keep(uintptr_t(p));
        sluice_taskpool_release(pool, p, 0);
      }
    });
  for (auto &t : ts) t.join();
  return double(bench_now_ns() - t0) / double(iters);
}

double semaphore(int threads, long iters) {
  std::counting_semaphore<1 << 20> sem(1 << 16);
  uint64_t t0 = bench_now_ns();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; t++)
    ts.emplace_back([&] {
      for (long i = 0; i < iters; i++) {
        if (!sem.try_acquire()) std::abort();
        sem.release();
      }
    });
  for (auto &t : ts) t.join();
  return double(bench_now_ns() - t0) / double(iters);
}

sluice_taskpool *permit_pool(sluice_runtime *rt) {
  sluice_taskpool_options o = SLUICE_TASKPOOL_OPTIONS_INIT;
  o.max_concurrent = 1024;  // never the limit: uncontended on slots
  sluice_taskpool *pool = nullptr;
  check(sluice_taskpool_new(&pool, rt, &o), "taskpool_new");
  return pool;
}

}  // namespace

int main(int argc, char **argv) {
  long tasks = long(bench_opt(argc, argv, "tasks", 200000));
  int inflight = int(bench_opt(argc, argv, "inflight", 8));
  int workers = int(bench_opt(argc, argv, "workers", 2));
  int rounds = int(bench_opt(argc, argv, "rounds", 3));
  long iters = long(bench_opt(argc, argv, "iters", 5000000));
  int threads = int(bench_opt(argc, argv, "threads", 2));
  g_work_ns = uint64_t(bench_opt(argc, argv, "work-ns", 0));
  bool only_permit = false, only_sluice = false, only_uv = false;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--only=permit") == 0) only_permit = true;
    if (std::strcmp(argv[i], "--only=sluice") == 0) only_sluice = true;
    if (std::strcmp(argv[i], "--only=uv") == 0) only_uv = true;
  }

  // libuv sizes its pool once, at its first use: the same threads as ours.
  char env[32];
  std::snprintf(env, sizeof env, "%d", workers);
  setenv("UV_THREADPOOL_SIZE", env, 1);

  if (only_permit) {
    sluice_runtime *rt = nullptr;
    check(sluice_runtime_new(&rt, nullptr), "runtime_new");
    sluice_taskpool *pool = permit_pool(rt);
    permits(pool, 1, iters);
    sluice_taskpool_free(pool);
    sluice_runtime_free(rt);
    return 0;
  }

  uv_loop_t loop;
  uv_loop_init(&loop);
  sluice_runtime *rt = nullptr;
  check(sluice_runtime_attach(&rt, &loop, nullptr), "runtime_attach");
  if (only_sluice || only_uv) {
    // One side alone, for a profiler.
    Cost c = only_sluice ? sluice_tasks(&loop, rt, tasks, inflight, workers)
                         : uv_tasks(&loop, tasks, inflight);
    std::printf("%s: %.0f ns per task, cpu %.0f ns\n", only_sluice ? "sluice" : "uv", c.wall_ns,
                c.cpu_ns);
    sluice_runtime_free(rt);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return 0;
  }
  std::printf("# tasks=%ld inflight=%d workers=%d work-ns=%llu rounds=%d\n", tasks, inflight,
              workers, (unsigned long long)g_work_ns, rounds);
  long lat_tasks = tasks / 4 > 0 ? tasks / 4 : 1;
  // The best of the rounds, the figure least disturbed by other processes.
  Cost b_s1{1e18, 1e18}, b_u1{1e18, 1e18}, b_sk{1e18, 1e18}, b_uk{1e18, 1e18};
  auto keep_best = [](Cost &b, Cost c) {
    if (c.wall_ns < b.wall_ns) b.wall_ns = c.wall_ns;
    if (c.cpu_ns < b.cpu_ns) b.cpu_ns = c.cpu_ns;
  };
  for (int r = 0; r < rounds; r++) {
    Cost s1 = sluice_tasks(&loop, rt, lat_tasks, 1, workers);
    Cost u1 = uv_tasks(&loop, lat_tasks, 1);
    Cost sk = sluice_tasks(&loop, rt, tasks, inflight, workers);
    Cost uk = uv_tasks(&loop, tasks, inflight);
    std::printf("round %d: 1 in flight (round trip): sluice %.0f ns  uv_queue_work %.0f ns  (%.2fx);"
                " cpu per task %.0f / %.0f ns (%.2fx)\n",
                r + 1, s1.wall_ns, u1.wall_ns, s1.wall_ns / u1.wall_ns, s1.cpu_ns, u1.cpu_ns,
                s1.cpu_ns / u1.cpu_ns);
    std::printf("round %d: %d in flight (per task):  sluice %.0f ns  uv_queue_work %.0f ns  (%.2fx);"
                " cpu per task %.0f / %.0f ns (%.2fx)\n",
                r + 1, inflight, sk.wall_ns, uk.wall_ns, sk.wall_ns / uk.wall_ns, sk.cpu_ns,
                uk.cpu_ns, sk.cpu_ns / uk.cpu_ns);
    keep_best(b_s1, s1);
    keep_best(b_u1, u1);
    keep_best(b_sk, sk);
    keep_best(b_uk, uk);
  }
  std::printf("best: 1 in flight: sluice %.0f ns  uv_queue_work %.0f ns  (%.2fx); cpu %.0f / %.0f "
              "ns (%.2fx)\n",
              b_s1.wall_ns, b_u1.wall_ns, b_s1.wall_ns / b_u1.wall_ns, b_s1.cpu_ns, b_u1.cpu_ns,
              b_s1.cpu_ns / b_u1.cpu_ns);
  std::printf("best: %d in flight: sluice %.0f ns  uv_queue_work %.0f ns  (%.2fx); cpu %.0f / %.0f "
              "ns (%.2fx)\n",
              inflight, b_sk.wall_ns, b_uk.wall_ns, b_sk.wall_ns / b_uk.wall_ns, b_sk.cpu_ns,
              b_uk.cpu_ns, b_sk.cpu_ns / b_uk.cpu_ns);
  sluice_runtime_free(rt);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);

  check(sluice_runtime_new(&rt, nullptr), "runtime_new");
  sluice_taskpool *pool = permit_pool(rt);
  std::printf("# iters=%ld threads=%d\n", iters, threads);
  double best_one = 1e18, best_many = 1e18;
  for (int r = 0; r < rounds; r++) {
    double one = permits(pool, 1, iters);
    double many = permits(pool, threads, iters / threads);
    double sem1 = semaphore(1, iters);
    double semn = semaphore(threads, iters / threads);
    std::printf("round %d: try_acquire+release: 1 thread %.1f ns (semaphore %.1f); %d threads "
                "%.1f ns per pair per thread (semaphore %.1f)\n",
                r + 1, one, sem1, threads, many, semn);
    if (one < best_one) best_one = one;
    if (many < best_many) best_many = many;
  }
  std::printf("best: try_acquire+release: 1 thread %.1f ns; %d threads %.1f ns\n", best_one,
              threads, best_many);
  sluice_taskpool_stats st{};
  st.size = sizeof st;
  sluice_taskpool_stats_get(pool, &st);
  std::printf("# permits counted: %llu completed, %llu running\n",
              (unsigned long long)st.completed, (unsigned long long)st.running);
  sluice_taskpool_free(pool);
  sluice_runtime_free(rt);
  return 0;
}

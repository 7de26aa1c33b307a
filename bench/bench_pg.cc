// PostgreSQL pool benchmarks against a real server (bench/pg_bench.sh starts
// a throwaway one and runs pgbench beside this in the same run).
//
//   bench_pg --mode=select   --inflight=4 --seconds=5 [--pool=N]   prepared point selects
//   bench_pg --mode=select   --inflight=16 --queries=N             N of them, for callgrind
//   bench_pg --mode=select   --inflight=16 --loops=2               over 2 runtimes, a pool each
//   bench_pg --mode=pipeline --batch=16 --batches=500                pipelined vs sequential
//   bench_pg --mode=acquire  --iters=200000                          acquire+release, no query
//   bench_pg --mode=overload --callers=8 --query-ms=50 --deadline-ms=500 --seconds=10 --pool=2
//
// The conninfo comes from $SLUICE_PG_CONNINFO. Every mode prints one line
// per figure.
#include <sluice.h>
#include <sluice/pg.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench.h"

namespace {

sluice_runtime *g_rt;
sluice_pg_pool *g_pool;

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

sluice_pg_pool *make_pool(uint32_t size, int admission, sluice_runtime *rt = nullptr) {
  sluice_pg_pool_options o = SLUICE_PG_POOL_OPTIONS_INIT;
  o.conninfo = std::getenv("SLUICE_PG_CONNINFO");
  o.min_size = size;
  o.max_size = size;
  o.admission_check = admission;
  o.max_waiters = 100000;
  sluice_pg_pool *p = nullptr;
  if (!o.conninfo || sluice_pg_pool_new(&p, rt ? rt : g_rt, &o) != 0) {
    std::fprintf(stderr, "pool: %s (is SLUICE_PG_CONNINFO set?)\n", sluice_error_message());
    std::exit(1);
  }
  return p;
}

void free_pool(sluice_pg_pool *p) {
  std::atomic<int> done{0};
  sluice_op *op = nullptr;
  sluice_pg_pool_close(p, 5000, [](void *d, int) { static_cast<std::atomic<int> *>(d)->store(1); },
                       &done, nullptr, &op);
  sluice_op_wait(op, -1, nullptr);
  sluice_op_free(op);
  sluice_pg_pool_free(p);
}

void pause_ms(uint64_t ms) {
  sluice_op *op = nullptr;
  sluice_runtime_timer(g_rt, ms, [](void *, int) {}, nullptr, nullptr, &op);
  sluice_op_wait(op, -1, nullptr);
  sluice_op_free(op);
}

// ---- select: N independent loops of one prepared point select ----------

// The queries of one runtime (loop thread) and its pool.
struct SelectRun {
  sluice_runtime *rt = nullptr;
  sluice_pg_pool *pool = nullptr;
  std::atomic<long> done{0}, errors{0};
  std::atomic<uint64_t> until{0};
  long limit = 0, started = 0;  // --queries: a fixed count instead of a time (loop thread)
  int scale = 10;
  uint64_t rng = 88172645463325252ull;
};

void select_next(SelectRun *run);

void select_done(void *ud, int status, sluice_pg_result *r) {
  auto *run = static_cast<SelectRun *>(ud);
  sluice_pg_result_free(r);
  (status == 0 ? run->done : run->errors).fetch_add(1, std::memory_order_relaxed);
  if (run->limit ? run->started < run->limit : sluice_now_ns() < run->until.load()) select_next(run);
}

void select_next(SelectRun *run) {
  run->started++;
  run->rng ^= run->rng << 13, run->rng ^= run->rng >> 7, run->rng ^= run->rng << 17;
  char aid[24];
  std::snprintf(aid, sizeof aid, "%llu", (unsigned long long)(run->rng % (100000ull * run->scale) + 1));
  const char *params[] = {aid};
  sluice_pg_pool_query(run->pool, "SELECT abalance FROM pgbench_accounts WHERE aid = $1", 1, params,
                       nullptr, nullptr, nullptr, select_done, run, nullptr, nullptr);
}

void start_selects(SelectRun *run, int n) {
  for (int i = 0; i < n; i++)
    sluice_runtime_post(run->rt, [](void *r, int) { select_next(static_cast<SelectRun *>(r)); }, run, nullptr);
}

// Runs exactly `limit` queries `inflight` at a time and waits for them.
void select_fixed(SelectRun *run, int inflight, long limit) {
  run->done = 0, run->errors = 0, run->started = 0, run->limit = limit;
  start_selects(run, int(std::min<long>(inflight, limit)));
  while (run->done.load() + run->errors.load() < limit) pause_ms(20);
}

// A fixed number of queries after a fixed warm-up, so two runs that differ
// only in --queries differ only in the queries (bench/callgrind_pg.sh).
int select_count(SelectRun *run, int inflight, int pool, long queries) {
  select_fixed(run, inflight, long(inflight) * 50);  // connections open, statements prepared
  uint64_t t0 = sluice_now_ns();
  select_fixed(run, inflight, queries);
  double elapsed = double(sluice_now_ns() - t0) / 1e9;
  std::printf("select inflight=%d pool=%d: %ld queries in %.2f s, %ld errors\n", inflight, pool,
              queries, elapsed, run->errors.load());
  free_pool(run->pool);
  return 0;
}

int mode_select(int argc, char **argv) {
  int inflight = int(bench_opt(argc, argv, "inflight", 4));
  double seconds = bench_opt(argc, argv, "seconds", 5);
  int pool = int(bench_opt(argc, argv, "pool", inflight));
  // --loops=N: the queries and connections split over N runtimes, each
  // with its own loop thread and pool (what pgbench -j N does with threads).
  int loops = std::max(1, int(bench_opt(argc, argv, "loops", 1)));
  std::vector<SelectRun> runs(static_cast<size_t>(loops));
  for (int i = 0; i < loops; i++) {
    SelectRun &run = runs[size_t(i)];
    run.scale = int(bench_opt(argc, argv, "scale", 10));
    run.rng += uint64_t(i) * 0x9E3779B97F4A7C15ull;
    if (i == 0) run.rt = g_rt;
    else if (sluice_runtime_new(&run.rt, nullptr) != 0) return 1;
    run.pool = make_pool(uint32_t(pool / loops + (i < pool % loops)), 1, run.rt);
  }
  auto share = [&](int i) { return inflight / loops + (i < inflight % loops); };
  long queries = long(bench_opt(argc, argv, "queries", 0));
  if (queries > 0 && loops == 1) return select_count(&runs[0], inflight, pool, queries);
  // Warm up: connections open, statements prepared.
  for (int i = 0; i < loops; i++) {
    runs[size_t(i)].until = sluice_now_ns() + 500000000ull;
    start_selects(&runs[size_t(i)], share(i));
  }
  pause_ms(700);
  for (auto &run : runs) run.done = 0, run.errors = 0;
  double cpu0 = cpu_seconds();
  uint64_t t0 = sluice_now_ns();
  for (int i = 0; i < loops; i++) {
    runs[size_t(i)].until = t0 + uint64_t(seconds * 1e9);
    start_selects(&runs[size_t(i)], share(i));
  }
  pause_ms(uint64_t(seconds * 1000) + 200);
  double elapsed = double(sluice_now_ns() - t0) / 1e9;
  double cpu = cpu_seconds() - cpu0;
  long n = 0, errors = 0;
  for (auto &run : runs) n += run.done.load(), errors += run.errors.load();
  std::printf("select inflight=%d pool=%d: %.0f queries/s, %ld errors, client CPU %.1f us/query%s\n",
              inflight, pool, double(n) / elapsed, errors, n ? cpu * 1e6 / double(n) : 0.0,
              loops > 1 ? (", " + std::to_string(loops) + " loop threads").c_str() : "");
  for (int i = 0; i < loops; i++) {
    free_pool(runs[size_t(i)].pool);
    if (i > 0) sluice_runtime_free(runs[size_t(i)].rt);
  }
  return 0;
}

// ---- pipeline: a batch of N point selects, pipelined vs one by one -----

struct Lease {
  std::atomic<sluice_pg_conn *> conn{nullptr};
};

sluice_pg_conn *acquire_blocking() {
  Lease l;
  sluice_op *op = nullptr;
  sluice_pg_pool_acquire(g_pool, 10000, [](void *ud, int, sluice_pg_conn *c) { static_cast<Lease *>(ud)->conn = c; },
                         &l, nullptr, &op);
  sluice_op_wait(op, -1, nullptr);
  sluice_op_free(op);
  return l.conn.load();
}

int mode_pipeline(int argc, char **argv) {
  int batch = int(bench_opt(argc, argv, "batch", 16));
  int batches = int(bench_opt(argc, argv, "batches", 500));
  g_pool = make_pool(1, 1);
  sluice_pg_conn *c = acquire_blocking();
  if (!c) return std::fprintf(stderr, "no connection\n"), 1;
  std::vector<std::string> aids(static_cast<size_t>(batch));
  for (int i = 0; i < batch; i++) aids[size_t(i)] = std::to_string(i * 7919 % 100000 + 1);
  const char *sql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
  auto timed = [&](bool pipelined) {
    uint64_t t0 = sluice_now_ns();
    for (int b = 0; b < batches; b++) {
      if (pipelined) {
        sluice_pg_batch *bt = nullptr;
        sluice_pg_batch_new(&bt);
        for (int i = 0; i < batch; i++) {
          const char *p[] = {aids[size_t(i)].c_str()};
          sluice_pg_batch_add(bt, sql, 1, p, nullptr, nullptr);
        }
        sluice_op *op = nullptr;
        sluice_pg_conn_batch(c, bt, nullptr, [](void *, int) {}, nullptr, nullptr, &op);
        sluice_op_wait(op, -1, nullptr);
        sluice_op_free(op);
        sluice_pg_batch_free(bt);
      } else {
        for (int i = 0; i < batch; i++) {
          const char *p[] = {aids[size_t(i)].c_str()};
          sluice_op *op = nullptr;
          sluice_pg_conn_query(c, sql, 1, p, nullptr, nullptr, nullptr,
                               [](void *, int, sluice_pg_result *r) { sluice_pg_result_free(r); },
                               nullptr, nullptr, &op);
          sluice_op_wait(op, -1, nullptr);
          sluice_op_free(op);
        }
      }
    }
    return double(sluice_now_ns() - t0) / 1e9;
  };
  timed(true), timed(false);  // warm up both paths
  double with = timed(true), without = timed(false);
  std::printf("batch of %d, %d batches: pipelined %.0f batches/s, one by one %.0f batches/s, ratio %.2fx\n",
              batch, batches, batches / with, batches / without, without / with);
  sluice_pg_conn_release(c);
  free_pool(g_pool);
  return 0;
}

// ---- acquire: acquire + release with no query, chained on the loop ----

struct AcquireRun {
  long left;
  sluice_op *done_op;
};
void acquire_next(AcquireRun *run);
void acquired(void *ud, int status, sluice_pg_conn *c) {
  auto *run = static_cast<AcquireRun *>(ud);
  if (status == 0) sluice_pg_conn_release(c);
  if (--run->left > 0) acquire_next(run);
}
void acquire_next(AcquireRun *run) {
  sluice_pg_pool_acquire(g_pool, 10000, acquired, run, nullptr, nullptr);
}

int mode_acquire(int argc, char **argv) {
  long iters = long(bench_opt(argc, argv, "iters", 200000));
  g_pool = make_pool(1, 1);
  pause_ms(300);  // connected
  auto run_once = [&](long n) {
    AcquireRun run{n, nullptr};
    uint64_t t0 = sluice_now_ns();
    sluice_runtime_post(g_rt, [](void *r, int) { acquire_next(static_cast<AcquireRun *>(r)); }, &run, nullptr);
    while (__atomic_load_n(&run.left, __ATOMIC_ACQUIRE) > 0) pause_ms(1);
    return double(sluice_now_ns() - t0) / double(n);
  };
  run_once(iters / 10);
  double ns = run_once(iters);
  std::printf("acquire+release, no query, on the loop: %.0f ns/op (%ld ops)\n", ns, iters);
  free_pool(g_pool);
  return 0;
}

// ---- overload: few connections, many callers with deadlines -----------

struct Caller {
  struct Overload *o;
  uint64_t started;
};
struct Overload {
  uint64_t until, deadline_ms;
  std::string sql;
  std::atomic<long> completed{0}, late{0}, exhausted{0}, timeouts{0}, other{0};
  std::atomic<int> last_other{0};
  std::vector<Caller> callers;
};
void call_next(Caller *c);
void call_done(void *ud, int status, sluice_pg_result *r) {
  auto *c = static_cast<Caller *>(ud);
  Overload *o = c->o;
  sluice_pg_result_free(r);
  uint64_t now = sluice_now_ns();
  if (status == 0 && now - c->started <= o->deadline_ms * 1000000) o->completed++;
  else if (status == 0) o->late++;
  else if (status == SLUICE_EEXHAUSTED) o->exhausted++;
  else if (status == SLUICE_ETIMEDOUT || status == SLUICE_EAMBIGUOUS) o->timeouts++;
  else {
    o->other++;
    o->last_other = status;
  }
  if (now >= o->until) return;
  if (status == SLUICE_EEXHAUSTED) {
    // A refused message is answered "busy" at once; the next one comes a
    // little later, as in a chat.
    sluice_runtime_timer(g_rt, 10, [](void *ud, int) { call_next(static_cast<Caller *>(ud)); }, c,
                         nullptr, nullptr);
    return;
  }
  call_next(c);
}
void call_next(Caller *c) {
  c->started = sluice_now_ns();
  sluice_pg_query_options qo = SLUICE_PG_QUERY_OPTIONS_INIT;
  qo.timeout_ms = int64_t(c->o->deadline_ms);
  sluice_pg_pool_query(g_pool, c->o->sql.c_str(), 0, nullptr, nullptr, nullptr, &qo, call_done, c,
                       nullptr, nullptr);
}

int mode_overload(int argc, char **argv) {
  int callers = int(bench_opt(argc, argv, "callers", 8));
  int pool = int(bench_opt(argc, argv, "pool", 2));
  double query_ms = bench_opt(argc, argv, "query-ms", 50);
  double deadline_ms = bench_opt(argc, argv, "deadline-ms", 500);
  double seconds = bench_opt(argc, argv, "seconds", 10);
  double ideal = pool * seconds * 1000 / query_ms;
  for (int admission = 1; admission >= 0; admission--) {
    g_pool = make_pool(uint32_t(pool), admission);
    pause_ms(300);
    Overload o;
    o.deadline_ms = uint64_t(deadline_ms);
    o.sql = "SELECT pg_sleep(" + std::to_string(query_ms / 1000) + ")";
    o.callers.resize(size_t(callers));
    o.until = sluice_now_ns() + uint64_t(seconds * 1e9);
    for (auto &c : o.callers) {
      c.o = &o;
      sluice_runtime_post(g_rt, [](void *c, int) { call_next(static_cast<Caller *>(c)); }, &c, nullptr);
    }
    pause_ms(uint64_t(seconds * 1000 + deadline_ms + 300));
    std::printf("overload pool=%d callers=%d query=%.0fms deadline=%.0fms %.0fs admission=%s: "
                "%ld completed in time = %.0f%% of ideal %.0f (late %ld, refused %ld, timed out %ld, other %ld %s)\n",
                pool, callers, query_ms, deadline_ms, seconds, admission ? "on " : "off",
                o.completed.load(), 100.0 * double(o.completed.load()) / ideal, ideal, o.late.load(),
                o.exhausted.load(), o.timeouts.load(), o.other.load(),
                o.other.load() ? sluice_err_name(o.last_other.load()) : "");
    free_pool(g_pool);
  }
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  if (bench_flag(argc, argv, "help") || argc < 2) {
    std::puts("bench_pg --mode=select|pipeline|acquire|overload [options]; see the top of bench_pg.cc");
    return argc < 2 ? 2 : 0;
  }
  if (sluice_runtime_new(&g_rt, nullptr) != 0) return 1;
  std::string mode;
  for (int i = 1; i < argc; i++)
    if (std::strncmp(argv[i], "--mode=", 7) == 0) mode = argv[i] + 7;
  int rc = mode == "select"     ? mode_select(argc, argv)
           : mode == "pipeline" ? mode_pipeline(argc, argv)
           : mode == "acquire"  ? mode_acquire(argc, argv)
           : mode == "overload" ? mode_overload(argc, argv)
                                : (std::fprintf(stderr, "unknown --mode\n"), 2);
  sluice_runtime_free(g_rt);
  return rc;
}

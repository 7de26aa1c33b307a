// Keyed locks against a straightforward std::mutex + std::unordered_map
// version (one map mutex, one std::mutex per key, entries never freed), in
// the same run.
//
//   bench_locks [--iters=5000000] [--keys=1000] [--handoffs=20000]
//               [--million=1000000] [--only=try --iters=N]
//
// Figures:
//  - try+release, uncontended: one key again and again (its entry cached),
//    and a round of --keys distinct keys; 1 thread, then 2 threads on
//    distinct keys.
//  - hand-off latency: two threads ping-pong one key through
//    sluice_locks_acquire + sluice_op_wait (FIFO: each release hands the key
//    to the other thread's queued request); time from the release to the
//    waiter's return. The same two threads on the baseline's per-key
//    std::mutex, and two requests passing the key on the loop thread alone.
//  - memory: bytes per live key; RSS after --million distinct keys.
//
// --only=try --iters=N does N try+release pairs on one key and nothing
// else, for callgrind (bench/callgrind_locks.sh takes the difference of two
// N to get instructions per pair).
#include <sluice/locks.h>
#include <sys/resource.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench.h"

namespace {

// What a C++ programmer writes first: a map of mutexes behind a mutex.
struct BaselineLocks {
  std::mutex mu;
  std::unordered_map<std::string, std::unique_ptr<std::mutex>> locks;
  std::mutex *get(const char *k, size_t n) {
    std::lock_guard<std::mutex> g(mu);
    auto &m = locks[std::string(k, n)];
    if (!m) m = std::make_unique<std::mutex>();
    return m.get();
  }
  bool try_lock(const char *k, size_t n) { return get(k, n)->try_lock(); }
  void lock(const char *k, size_t n) { get(k, n)->lock(); }
  void unlock(const char *k, size_t n) { get(k, n)->unlock(); }
};

// A first-come-first-served keyed lock done directly: a ticket per waiter,
// one condition variable per key, so a release wakes the next thread with
// no third party. The fair reference for the hand-off figure.
struct FifoLocks {
  struct Key {
    std::mutex m;
    std::condition_variable cv;
    uint64_t next = 0, serving = 0;
  };
  std::mutex mu;
  std::unordered_map<std::string, std::unique_ptr<Key>> keys;
  Key *get(const char *k, size_t n) {
    std::lock_guard<std::mutex> g(mu);
    auto &e = keys[std::string(k, n)];
    if (!e) e = std::make_unique<Key>();
    return e.get();
  }
  void lock(const char *k, size_t n) {
    Key *e = get(k, n);
    std::unique_lock<std::mutex> g(e->m);
    uint64_t t = e->next++;
    e->cv.wait(g, [&] { return e->serving == t; });
  }
  void unlock(const char *k, size_t n) {
    Key *e = get(k, n);
    std::lock_guard<std::mutex> g(e->m);
    e->serving++;
    e->cv.notify_all();
  }
};

template <class F>
double per_op(int threads, long n, F &&body) {
  uint64_t t0 = bench_now_ns();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; t++)
    ts.emplace_back([&, t] {
      for (long i = 0; i < n; i++) body(t, i);
    });
  for (auto &t : ts) t.join();
  return double(bench_now_ns() - t0) / double(n);
}

long rss_kb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

uint64_t lib_bytes() {
  sluice_memory_stats m{};
  m.size = sizeof m;
  sluice_runtime_memory(nullptr, &m);
  return m.allocated;
}

struct Keys {
  std::vector<std::string> k;
  Keys(long n, const char *prefix) {
    for (long i = 0; i < n; i++) k.push_back(prefix + std::to_string(i * 7919));
  }
};

void check(int rc, const char *what) {
  if (rc != 0) {
    std::fprintf(stderr, "%s: %s (%s)\n", what, sluice_err_name(rc), sluice_error_message());
    std::exit(1);
  }
}

// ---- hand-off --------------------------------------------------------------

struct PingPong {
  sluice_locks *l;
  long rounds;
  std::atomic<uint64_t> released_at{0};
  std::atomic<uint64_t> total_ns{0}, count{0};
};

void grab_cb(void *ud, int status, sluice_lock_guard *g) {
  if (status == 0) *static_cast<sluice_lock_guard **>(ud) = g;
}

void sluice_player(PingPong *p) {
  for (long i = 0; i < p->rounds; i++) {
    sluice_lock_guard *g = nullptr;
    sluice_op *op = nullptr;
    check(sluice_locks_acquire(p->l, "hot", 3, SLUICE_LOCK_EXCLUSIVE, -1, grab_cb, &g, nullptr, &op),
          "acquire");
    int status = 0;
    sluice_op_wait(op, -1, &status);
    sluice_op_free(op);
    check(status, "acquire status");
    uint64_t now = bench_now_ns();
    uint64_t rel = p->released_at.load(std::memory_order_acquire);
    if (rel) {
      p->total_ns.fetch_add(now - rel, std::memory_order_relaxed);
      p->count.fetch_add(1, std::memory_order_relaxed);
    }
    p->released_at.store(bench_now_ns(), std::memory_order_release);
    check(sluice_locks_release(p->l, g), "release");
  }
}

template <class Lock>
struct BaselinePingPong {
  Lock *b;
  long rounds;
  std::atomic<uint64_t> released_at{0};
  std::atomic<uint64_t> total_ns{0}, count{0}, same{0};
  std::atomic<int> last{-1};
};

template <class Lock>
void baseline_player(BaselinePingPong<Lock> *p, int me) {
  for (long i = 0; i < p->rounds; i++) {
    p->b->lock("hot", 3);
    uint64_t now = bench_now_ns();
    uint64_t rel = p->released_at.load(std::memory_order_acquire);
    // Only a real hand-off (the other thread released last) is timed;
    // std::mutex lets the releaser take it straight back.
    if (rel && p->last.load(std::memory_order_relaxed) != me) {
      p->total_ns.fetch_add(now - rel, std::memory_order_relaxed);
      p->count.fetch_add(1, std::memory_order_relaxed);
    } else if (rel) {
      p->same.fetch_add(1, std::memory_order_relaxed);
    }
    p->last.store(me, std::memory_order_relaxed);
    p->released_at.store(bench_now_ns(), std::memory_order_release);
    p->b->unlock("hot", 3);
  }
}

// Two requests passing the key back and forth on the loop thread: the
// library's hand-off cost without any thread wake-up.
struct LoopPass {
  sluice_locks *l;
  long left;
  std::atomic<int> done{0};
};
void loop_pass_cb(void *ud, int status, sluice_lock_guard *g) {
  auto *p = static_cast<LoopPass *>(ud);
  if (status != 0) return;
  if (--p->left <= 0) {
    sluice_locks_release(p->l, g);
    p->done.fetch_add(1, std::memory_order_release);
    return;
  }
  // Queue behind the other request first, then release to it.
  check(sluice_locks_acquire(p->l, "loop", 4, SLUICE_LOCK_EXCLUSIVE, -1, loop_pass_cb, p, nullptr,
                             nullptr),
        "acquire");
  sluice_locks_release(p->l, g);
}

}  // namespace

int main(int argc, char **argv) {
  long iters = long(bench_opt(argc, argv, "iters", 5000000));
  long nkeys = long(bench_opt(argc, argv, "keys", 1000));
  long handoffs = long(bench_opt(argc, argv, "handoffs", 20000));
  long million = long(bench_opt(argc, argv, "million", 1000000));

  sluice_runtime *rt = nullptr;
  check(sluice_runtime_new(&rt, nullptr), "runtime");
  sluice_locks *l = nullptr;
  check(sluice_locks_new(&l, rt, nullptr), "locks");

  if (bench_flag(argc, argv, "only")) {
    sluice_lock_guard *g;
    for (long i = 0; i < iters; i++) {
      sluice_locks_try(l, "user:42", 7, SLUICE_LOCK_EXCLUSIVE, &g);
      sluice_locks_release(l, g);
    }
    sluice_locks_free(l);
    sluice_runtime_free(rt);
    return 0;
  }

  std::printf("iterations %ld, distinct keys %ld, hand-offs %ld\n", iters, nkeys, handoffs);
  BaselineLocks base;
  Keys keys(nkeys, "user:"), keys2(nkeys, "group:");
  std::vector<const Keys *> by_thread = {&keys, &keys2};

  // ---- try + release -----------------------------------------------------
  sluice_lock_guard *g0;
  double s_one = per_op(1, iters, [&](int, long) {
    sluice_locks_try(l, "user:42", 7, SLUICE_LOCK_EXCLUSIVE, &g0);
    sluice_locks_release(l, g0);
  });
  double b_one = per_op(1, iters, [&](int, long) {
    base.try_lock("user:42", 7);
    base.unlock("user:42", 7);
  });
  double s_many = per_op(1, iters, [&](int, long i) {
    const std::string &k = keys.k[size_t(i % nkeys)];
    sluice_lock_guard *g;
    sluice_locks_try(l, k.data(), k.size(), SLUICE_LOCK_EXCLUSIVE, &g);
    sluice_locks_release(l, g);
  });
  double b_many = per_op(1, iters, [&](int, long i) {
    const std::string &k = keys.k[size_t(i % nkeys)];
    base.try_lock(k.data(), k.size());
    base.unlock(k.data(), k.size());
  });
  double s_two = per_op(2, iters, [&](int t, long i) {
    const std::string &k = by_thread[size_t(t)]->k[size_t(i % nkeys)];
    sluice_lock_guard *g;
    sluice_locks_try(l, k.data(), k.size(), SLUICE_LOCK_EXCLUSIVE, &g);
    sluice_locks_release(l, g);
  });
  double b_two = per_op(2, iters, [&](int t, long i) {
    const std::string &k = by_thread[size_t(t)]->k[size_t(i % nkeys)];
    base.try_lock(k.data(), k.size());
    base.unlock(k.data(), k.size());
  });
  std::printf("try+release, 1 thread, one key:            sluice %6.1f ns   baseline %6.1f ns   ratio %.2fx   (target <= 60 ns)\n",
              s_one, b_one, b_one / s_one);
  std::printf("try+release, 1 thread, %ld keys:          sluice %6.1f ns   baseline %6.1f ns   ratio %.2fx\n",
              nkeys, s_many, b_many, b_many / s_many);
  std::printf("try+release, 2 threads, distinct keys:     sluice %6.1f ns   baseline %6.1f ns   ratio %.2fx   (per op, each thread; 2-thread throughput %.2fx of 1 thread)\n",
              s_two, b_two, b_two / s_two, 2 * s_many / s_two);

  // ---- hand-off ----------------------------------------------------------
  PingPong pp;
  pp.l = l;
  pp.rounds = handoffs;
  {
    std::thread a(sluice_player, &pp), b(sluice_player, &pp);
    a.join();
    b.join();
  }
  BaselinePingPong<BaselineLocks> bp;
  bp.b = &base;
  bp.rounds = handoffs;
  {
    std::thread a(baseline_player<BaselineLocks>, &bp, 0), b(baseline_player<BaselineLocks>, &bp, 1);
    a.join();
    b.join();
  }
  FifoLocks fifo;
  BaselinePingPong<FifoLocks> fp;
  fp.b = &fifo;
  fp.rounds = handoffs;
  {
    std::thread a(baseline_player<FifoLocks>, &fp, 0), b(baseline_player<FifoLocks>, &fp, 1);
    a.join();
    b.join();
  }
  auto avg = [](uint64_t total, uint64_t n) { return double(total) / double(n ? n : 1); };
  double s_hand = avg(pp.total_ns.load(), pp.count.load());
  double b_hand = avg(bp.total_ns.load(), bp.count.load());
  double f_hand = avg(fp.total_ns.load(), fp.count.load());
  std::printf("hand-off, 2 threads, one key (release -> other thread runs): sluice %7.0f ns   baseline %7.0f ns (ratio %.2fx)   FIFO baseline %7.0f ns (ratio %.2fx)\n",
              s_hand, b_hand, b_hand / s_hand, f_hand, f_hand / s_hand);
  std::printf("   hand-offs: sluice %llu of %ld acquisitions (FIFO); baseline %llu, %llu re-taken by the releaser; FIFO baseline %llu\n",
              (unsigned long long)pp.count.load(), 2 * handoffs, (unsigned long long)bp.count.load(),
              (unsigned long long)bp.same.load(), (unsigned long long)fp.count.load());

  LoopPass lp;
  lp.l = l;
  lp.left = handoffs * 2;
  uint64_t t0 = bench_now_ns();
  check(sluice_locks_acquire(l, "loop", 4, 0, -1, loop_pass_cb, &lp, nullptr, nullptr), "acquire");
  check(sluice_locks_acquire(l, "loop", 4, 0, -1, loop_pass_cb, &lp, nullptr, nullptr), "acquire");
  while (lp.done.load(std::memory_order_acquire) < 1) std::this_thread::yield();
  double s_loop = double(bench_now_ns() - t0) / double(handoffs * 2);
  std::printf("hand-off on the loop thread (queue + release + grant callback): sluice %6.0f ns\n",
              s_loop);

  // ---- memory ------------------------------------------------------------
  sluice_locks_free(l);
  sluice_locks_options o = SLUICE_LOCKS_OPTIONS_INIT;
  o.max_keys = 1u << 20;
  check(sluice_locks_new(&l, rt, &o), "locks");
  {
    const long live = 100000;
    Keys many(live, "live:");
    std::vector<sluice_lock_guard *> held(size_t(live), nullptr);
    uint64_t before = lib_bytes();
    for (long i = 0; i < live; i++)
      check(sluice_locks_try(l, many.k[size_t(i)].data(), many.k[size_t(i)].size(), 0, &held[size_t(i)]),
            "try");
    uint64_t after = lib_bytes();
    std::printf("bytes per live key (entry, grant record, hash slot; keys ~11 bytes): %.0f\n",
                double(after - before) / double(live));
    for (sluice_lock_guard *g : held) sluice_locks_release(l, g);
    sluice_locks_trim(l);
  }
  long rss0 = rss_kb();
  char key[48];
  for (long i = 0; i < million; i++) {
    int n = std::snprintf(key, sizeof key, "user:%ld:group:%ld", i, i % 977);
    sluice_lock_guard *g;
    check(sluice_locks_try(l, key, size_t(n), 0, &g), "try");
    sluice_locks_release(l, g);
  }
  long rss1 = rss_kb();
  sluice_locks_stats st{};
  st.size = sizeof st;
  sluice_locks_stats_get(l, &st);
  for (long i = 0; i < million; i++) {
    int n = std::snprintf(key, sizeof key, "user:%ld:group:%ld", i, i % 977);
    base.try_lock(key, size_t(n));
    base.unlock(key, size_t(n));
  }
  long rss2 = rss_kb();
  std::printf("after %ld distinct keys: sluice RSS +%ld KiB (live %llu, cached %llu)   baseline RSS +%ld KiB (%zu entries kept)\n",
              million, rss1 - rss0, (unsigned long long)st.live_keys,
              (unsigned long long)st.cached_entries, rss2 - rss1, base.locks.size());
  std::printf("peak RSS %ld KiB\n", rss2);
  sluice_locks_free(l);
  sluice_runtime_free(rt);
  return 0;
}

// Limiter check cost and memory, each against the straightforward code it
// replaces (one std::mutex over a std::unordered_map<std::string, state>,
// with a std::deque of timestamps for the sliding log), in the same run:
//  - check on existing keys, per algorithm, 1 thread;
//  - the same with 2 threads on distinct keys (throughput against 1 thread);
//  - bytes per GCRA key, and RSS after one million distinct keys (in child
//    processes, so each figure starts from a clean heap).
//
//   bench_limiter [--ops=4000000] [--keys=1000] [--limit=20] [--window-us=1000000]
//                 [--threads=2] [--rounds=5] [--million=1000000] [--algo=gcra|log|window]
//   bench_limiter --only=gcra|log|window|mutex-gcra|mutex-log|mutex-window --iters=N
//
// --only runs N checks of one kind and nothing else, for callgrind
// (bench/callgrind_limiter.sh takes the difference of two N).
#include <sluice.h>
#include <sluice/limiter.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench.h"

namespace {

// ---- what the library replaces ----------------------------------------

struct MutexLimiter {
  int algo;
  uint64_t N, W, T, tau;
  struct State {
    uint64_t tat = 0;            // GCRA
    std::deque<uint64_t> log;    // sliding log
    uint64_t start = 0, prev = 0, cur = 0;  // sliding window
  };
  std::mutex mu;
  std::unordered_map<std::string, State> map;

  MutexLimiter(int a, uint64_t n, uint64_t w) : algo(a), N(n), W(w) {
    T = (w + n - 1) / n;
    tau = n * T;
  }

  bool check(const char *key, size_t len) {
    uint64_t now = bench_now_ns();
    std::lock_guard<std::mutex> g(mu);
    State &s = map[std::string(key, len)];
    switch (algo) {
      case SLUICE_LIMITER_GCRA: {
        uint64_t tat = std::max(s.tat, now) + T;
        if (tat - now > tau) return false;
        s.tat = tat;
        return true;
      }
      case SLUICE_LIMITER_SLIDING_LOG:
        while (!s.log.empty() && s.log.front() + W <= now) s.log.pop_front();
        if (s.log.size() >= N) return false;
        s.log.push_back(now);
        return true;
      default: {
        uint64_t start = now / W * W;
        if (start != s.start) {
          s.prev = start - s.start == W ? s.cur : 0;
          s.cur = 0;
          s.start = start;
        }
        double weight = double(W - (now - start)) / double(W);
        if (double(s.prev) * weight + double(s.cur) + 1 > double(N)) return false;
        s.cur++;
        return true;
      }
    }
  }
};

// ---- helpers --------------------------------------------------------------

const char *algo_name(int a) {
  return a == SLUICE_LIMITER_GCRA ? "gcra" : a == SLUICE_LIMITER_SLIDING_LOG ? "sliding log"
                                                                             : "sliding window";
}

sluice_limiter *make(int algo, uint64_t limit, uint64_t window_ns, uint64_t max_keys) {
  sluice_limiter_options o = SLUICE_LIMITER_OPTIONS_INIT;
  o.algorithm = algo;
  o.limit = limit;
  o.window_ns = window_ns;
  o.max_keys = max_keys;
  sluice_limiter *l = nullptr;
  if (sluice_limiter_new(&l, nullptr, &o) != 0) {
    std::fprintf(stderr, "sluice_limiter_new: %s\n", sluice_error_message());
    std::exit(1);
  }
  return l;
}

std::vector<std::string> keys_for(int thread, long n) {
  std::vector<std::string> v;
  for (long i = 0; i < n; i++) v.push_back("user:" + std::to_string(thread) + ":" + std::to_string(i));
  return v;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string spread(const std::vector<double> &v) {
  std::string out;
  char buf[32];
  for (size_t i = 0; i < v.size(); i++) {
    std::snprintf(buf, sizeof buf, i ? " %.1f" : "%.1f", v[i]);
    out += buf;
  }
  return out;
}

// Wall time per op of `threads` threads each running `ops` calls of
// body(thread, i), started together.
template <class F>
double wall_per_op(int threads, long ops, F &&body) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; t++)
    ts.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      for (long i = 0; i < ops; i++) body(t, i);
    });
  while (ready.load() < threads) {
  }
  uint64_t t0 = bench_now_ns();
  go.store(true, std::memory_order_release);
  for (auto &t : ts) t.join();
  return double(bench_now_ns() - t0) / double(ops);
}

uint64_t rss_bytes() {
  long pages = 0, resident = 0;
  FILE *f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return uint64_t(resident) * uint64_t(sysconf(_SC_PAGESIZE));
}

// Runs fn in a child process (a clean heap for memory figures).
template <class F>
void in_child(F &&fn) {
  std::fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    fn();
    std::fflush(stdout);
    _exit(0);
  }
  int st;
  waitpid(pid, &st, 0);
}

// ---- figures ---------------------------------------------------------------

void memory_figures(long million) {
  in_child([&] {
    // Every key live: a window of a day, so none becomes fresh.
    const uint64_t day = 86400ull * 1000000000ull;
    sluice_memory_stats m0 = {sizeof m0};
    sluice_runtime_memory(nullptr, &m0);
    uint64_t rss0 = rss_bytes();
    sluice_limiter *l = make(SLUICE_LIMITER_GCRA, 20, day, uint64_t(million));
    uint64_t key_bytes = 0;
    char key[32];
    for (long i = 0; i < million; i++) {
      int n = std::snprintf(key, sizeof key, "user:%ld", i);
      key_bytes += uint64_t(n);
      sluice_limiter_check(l, key, size_t(n), 1, nullptr);
    }
    uint64_t rss1 = rss_bytes();
    sluice_memory_stats m1 = {sizeof m1};
    sluice_runtime_memory(nullptr, &m1);
    sluice_limiter_stats st = {sizeof st};
    sluice_limiter_stats_get(l, &st);
    double avg_key = double(key_bytes) / double(million);
    std::printf("memory, GCRA, %ld distinct live keys (average key %.1f bytes):\n", million, avg_key);
    std::printf("  sluice: %.1f bytes per key beyond the key (own accounting), %.1f (allocator, %s); "
                "RSS +%.1f MiB\n",
                double(st.bytes) / double(st.keys) - avg_key,
                double(m1.allocated - m0.allocated) / double(million) - avg_key,
                m1.jemalloc ? "jemalloc arena" : "malloc", double(rss1 - rss0) / 1048576.0);
    sluice_limiter_free(l);
  });
  in_child([&] {
    uint64_t rss0 = rss_bytes();
    MutexLimiter ml(SLUICE_LIMITER_GCRA, 20, 86400ull * 1000000000ull);
    char key[32];
    for (long i = 0; i < million; i++) {
      int n = std::snprintf(key, sizeof key, "user:%ld", i);
      ml.check(key, size_t(n));
    }
    uint64_t rss1 = rss_bytes();
    std::printf("  std::mutex+unordered_map: RSS +%.1f MiB (%.1f bytes per key, key included)\n",
                double(rss1 - rss0) / 1048576.0, double(rss1 - rss0) / double(million));
  });
  in_child([&] {
    // Churn: a million users, each seen once, through the default cap.
    uint64_t rss0 = rss_bytes();
    sluice_limiter *l = make(SLUICE_LIMITER_GCRA, 20, 1000000, 100000);  // fresh 50 us after use
    char key[32];
    long refused = 0;
    for (long i = 0; i < million; i++) {
      int n = std::snprintf(key, sizeof key, "user:%ld", i);
      if (sluice_limiter_check(l, key, size_t(n), 1, nullptr) == SLUICE_ELIMIT) refused++;
    }
    uint64_t rss1 = rss_bytes();
    sluice_limiter_stats st = {sizeof st};
    sluice_limiter_stats_get(l, &st);
    std::printf("  churn: %ld distinct keys, each idle after use, max_keys 100000: peak %llu keys, "
                "%llu reclaimed, %ld refused, %llu bytes held at the end; RSS +%.1f MiB\n",
                million, (unsigned long long)st.peak_keys, (unsigned long long)st.reclaimed,
                refused, (unsigned long long)st.bytes, double(rss1 - rss0) / 1048576.0);
    sluice_limiter_free(l);
  });
}

struct Setup {
  int algo;  // -1: all
  long ops, keys;
  uint64_t limit, window;
  int threads, rounds;
};

void check_figures(const Setup &s) {
  const int algos[] = {SLUICE_LIMITER_GCRA, SLUICE_LIMITER_SLIDING_LOG, SLUICE_LIMITER_SLIDING_WINDOW};
  double clock = wall_per_op(1, s.ops, [](int, long) { bench_keep(bench_now_ns()); });
  std::printf("clock read (CLOCK_MONOTONIC, part of every check below): %.1f ns\n", clock);
  std::printf("check on existing keys (%ld keys per thread round robin, limit %llu per %.3f ms, "
              "%ld ops; median of %d rounds):\n",
              s.keys, (unsigned long long)s.limit, double(s.window) / 1e6, s.ops, s.rounds);
  for (int a : algos) {
    if (s.algo >= 0 && a != s.algo) continue;
    std::vector<std::vector<std::string>> keys;
    for (int t = 0; t < s.threads; t++) keys.push_back(keys_for(t, s.keys));
    sluice_limiter *l = make(a, s.limit, s.window, 1000000);
    MutexLimiter ml(a, s.limit, s.window);
    // Keys round robin without a division per call (which would weigh on
    // both sides alike).
    std::vector<size_t> next(size_t(s.threads) * 16, 0);
    auto key_of = [&](int t) -> const std::string & {
      size_t &j = next[size_t(t) * 16];
      const std::string &k = keys[t][j];
      if (++j == size_t(s.keys)) j = 0;
      return k;
    };
    auto sl = [&](int t, long) {
      const std::string &k = key_of(t);
      sluice_limiter_result r = {sizeof r};
      bench_keep(uint64_t(sluice_limiter_check(l, k.data(), k.size(), 1, &r)));
    };
    auto mu = [&](int t, long) {
      const std::string &k = key_of(t);
      bench_keep(ml.check(k.data(), k.size()));
    };
    // Warm: every key exists before timing.
    for (int t = 0; t < s.threads; t++)
      for (long i = 0; i < s.keys; i++) {
        sl(t, i);
        mu(t, i);
      }
    std::vector<double> s1, m1, sN, mN;
    for (int r = 0; r < s.rounds; r++) {
      s1.push_back(wall_per_op(1, s.ops, sl));
      m1.push_back(wall_per_op(1, s.ops, mu));
      sN.push_back(wall_per_op(s.threads, s.ops, sl));
      mN.push_back(wall_per_op(s.threads, s.ops, mu));
    }
    double a1 = median(s1), b1 = median(m1), aN = median(sN), bN = median(mN);
    // Throughput of N threads against one: N ops per wall time per op.
    double scale = a1 / aN * s.threads, mscale = b1 / bN * s.threads;
    std::printf("  %-14s 1 thread:  sluice %5.1f ns (%s)   mutex map %5.1f ns (%s)   ratio %.2fx\n",
                algo_name(a), a1, spread(s1).c_str(), b1, spread(m1).c_str(), b1 / a1);
    std::printf("  %-14s %d threads: sluice %5.1f ns per op per thread, throughput %.2fx one "
                "thread (%s)   mutex map %.2fx (%.1f ns)\n",
                "", s.threads, aN, scale, spread(sN).c_str(), mscale, bN);
    sluice_limiter_stats st = {sizeof st};
    sluice_limiter_stats_get(l, &st);
    std::printf("  %-14s (sluice allowed %.0f%% of the checks)\n", "",
                100.0 * double(st.allowed) / double(st.allowed + st.rejected));
    sluice_limiter_free(l);
  }
}

int only(const char *what, long iters, const Setup &s) {
  std::string w = what;
  bool mutex = w.rfind("mutex-", 0) == 0;
  if (mutex) w = w.substr(6);
  int a = w == "gcra" ? SLUICE_LIMITER_GCRA : w == "log" ? SLUICE_LIMITER_SLIDING_LOG
          : w == "window" ? SLUICE_LIMITER_SLIDING_WINDOW : -1;
  if (a < 0) return 2;
  std::vector<std::string> keys = keys_for(0, s.keys);
  sluice_limiter *l = make(a, s.limit, s.window, 1000000);
  MutexLimiter ml(a, s.limit, s.window);
  for (long i = 0; i < s.keys; i++) {
    sluice_limiter_check(l, keys[size_t(i)].data(), keys[size_t(i)].size(), 1, nullptr);
    ml.check(keys[size_t(i)].data(), keys[size_t(i)].size());
  }
  size_t j = 0;
  for (long i = 0; i < iters; i++) {
    const std::string &k = keys[j];
    if (++j == size_t(s.keys)) j = 0;
    if (mutex) {
      bench_keep(ml.check(k.data(), k.size()));
    } else {
      sluice_limiter_result r = {sizeof r};
      bench_keep(uint64_t(sluice_limiter_check(l, k.data(), k.size(), 1, &r)));
    }
  }
  sluice_limiter_free(l);
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  Setup s;
  s.ops = long(bench_opt(argc, argv, "ops", 4000000));
  s.keys = long(bench_opt(argc, argv, "keys", 1000));
  s.limit = uint64_t(bench_opt(argc, argv, "limit", 20));
  s.window = uint64_t(bench_opt(argc, argv, "window-us", 1000000) * 1000);
  s.threads = int(bench_opt(argc, argv, "threads", 2));
  s.rounds = int(bench_opt(argc, argv, "rounds", 5));
  long million = long(bench_opt(argc, argv, "million", 1000000));
  s.algo = -1;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--algo=gcra") == 0) s.algo = SLUICE_LIMITER_GCRA;
    if (std::strcmp(argv[i], "--algo=log") == 0) s.algo = SLUICE_LIMITER_SLIDING_LOG;
    if (std::strcmp(argv[i], "--algo=window") == 0) s.algo = SLUICE_LIMITER_SLIDING_WINDOW;
  }
  if (bench_flag(argc, argv, "help")) {
    std::printf("bench_limiter [--ops=N] [--keys=N] [--limit=N] [--window-us=N] [--threads=N] "
                "[--rounds=N] [--million=N] [--algo=gcra|log|window] | --only=KIND --iters=N\n");
    return 0;
  }
  for (int i = 1; i < argc; i++)
    if (std::strncmp(argv[i], "--only=", 7) == 0)
      return only(argv[i] + 7, long(bench_opt(argc, argv, "iters", 100000)), s);
  if (million > 0) memory_figures(million);
  check_figures(s);
  return 0;
}

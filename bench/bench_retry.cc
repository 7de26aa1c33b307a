// Retry and breaker overhead, each against the straightforward code it
// replaces, in the same run:
//  - a run whose first attempt succeeds: as a session (caller-driven), as
//    an asynchronous run on the loop, against a plain call of the attempt
//    and a hand-written retry loop (with its counters behind a std::mutex,
//    as the origin's decorator kept them);
//  - breaker allow+record: sluice_breaker against a count window behind a
//    std::mutex, on 1 and on N threads.
//
//   bench_retry [--ops=5000000] [--threads=2] [--window=256] [--time-window]
//   bench_retry --only=session|async|breaker|plain --iters=N
//
// --only runs one primitive N times and nothing else, for callgrind
// (bench/callgrind_retry.sh takes the difference of two N).
#include <sluice.h>
#include <sluice/breaker.h>
#include <sluice/retry.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench.h"

namespace {

// ---- what the library replaces ----------------------------------------

__attribute__((noinline)) int the_call(long i) {
  bench_keep(uint64_t(i));
  return 0;
}

// The origin's retry_with_backoff in C++: a loop, counters under a lock.
struct HandRetry {
  std::mutex mu;
  uint64_t calls = 0, successes = 0, failures = 0, retries = 0;
  int run(long i, int max_attempts) {
    int rc = 0;
    for (int attempt = 1; attempt <= max_attempts; attempt++) {
      rc = the_call(i);
      if (rc == 0) break;
      std::lock_guard<std::mutex> lock(mu);
      retries++;
      // (a sleep would go here)
    }
    std::lock_guard<std::mutex> lock(mu);
    calls++;
    (rc == 0 ? successes : failures)++;
    return rc;
  }
};

// A breaker as one would write it first: a ring of the last N outcomes
// and the state, all behind one std::mutex.
struct MutexBreaker {
  std::mutex mu;
  std::vector<uint8_t> ring = std::vector<uint8_t>(100, 0);
  size_t pos = 0, filled = 0, failures = 0;
  int state = 0;
  uint64_t open_until = 0;
  int allow() {
    std::lock_guard<std::mutex> lock(mu);
    if (state == 0) return 0;
    return sluice_now_ns() >= open_until ? 0 : SLUICE_EOPEN;
  }
  void record(bool failed) {
    std::lock_guard<std::mutex> lock(mu);
    if (filled == ring.size())
      failures -= ring[pos];
    else
      filled++;
    ring[pos] = failed;
    failures += failed;
    pos = (pos + 1) % ring.size();
    if (filled >= 10 && failures * 2 >= filled) {
      state = 1;
      open_until = sluice_now_ns() + 30000000000ull;
    }
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

double median(const double *v, int n) {
  std::vector<double> s(v, v + n);
  std::sort(s.begin(), s.end());
  return s[n / 2];
}

std::string spread(const double *v, int n) {
  std::string out;
  char buf[32];
  for (int i = 0; i < n; i++) {
    std::snprintf(buf, sizeof buf, i ? " %.0f" : "%.0f", v[i]);
    out += buf;
  }
  return out;
}

// ---- sluice ------------------------------------------------------------

sluice_retry *g_policy;

void session_once() {
  sluice_retry_session *s;
  int status;
  sluice_retry_session_new(g_policy, 0, &s);
  sluice_retry_session_begin(s, nullptr, &status);
  sluice_retry_session_end(s, SLUICE_RETRY_SUCCESS, 0, 0, nullptr, &status);
  sluice_retry_session_free(s);
}

// Asynchronous runs started on the loop thread, `window` of them in flight:
// each one that ends starts the next, so the loop drains its own queue
// without a turn in between, as a busy bot's loop does.
struct AsyncBench {
  long total = 0, started = 0, done = 0;  // loop thread only
  std::atomic<bool> finished{false};
};

void attempt_ok(void *, sluice_retry_attempt *a) {
  sluice_retry_attempt_done(a, SLUICE_RETRY_SUCCESS, 0, 0);
}

void start_one(AsyncBench *b) {
  b->started++;
  sluice_retry_run(
      g_policy, 0, attempt_ok,
      [](void *ud, int, int, uint32_t) {
        auto *b = static_cast<AsyncBench *>(ud);
        if (++b->done == b->total) {
          b->finished.store(true, std::memory_order_release);
          b->finished.notify_one();
        } else if (b->started < b->total) {
          start_one(b);
        }
      },
      b, nullptr, nullptr);
}

double async_runs(sluice_runtime *rt, long n, long window) {
  AsyncBench b;
  b.total = n;
  struct Kick {
    AsyncBench *b;
    long window;
  } kick{&b, window};
  uint64_t t0 = bench_now_ns();
  sluice_runtime_post(
      rt,
      [](void *ud, int) {
        auto *k = static_cast<Kick *>(ud);
        for (long i = 0; i < k->window && k->b->started < k->b->total; i++) start_one(k->b);
      },
      &kick, nullptr);
  b.finished.wait(false, std::memory_order_acquire);
  return double(bench_now_ns() - t0) / double(n);
}

void breaker_once(sluice_breaker *br) {
  uint64_t t;
  if (sluice_breaker_allow(br, &t) == 0) sluice_breaker_record(br, t, SLUICE_BREAKER_SUCCESS, 1000);
}

}  // namespace

int main(int argc, char **argv) {
  long ops = long(bench_opt(argc, argv, "ops", 5000000));
  int threads = int(bench_opt(argc, argv, "threads", 2));
  long window = long(bench_opt(argc, argv, "window", 256));
  bool time_window = bench_flag(argc, argv, "time-window");

  sluice_runtime_options ro = SLUICE_RUNTIME_OPTIONS_INIT;
  ro.lag_interval_ms = 0;  // nothing on the loop but the benchmark
  sluice_runtime *rt = nullptr;
  if (sluice_runtime_new(&rt, &ro) != 0) return 1;
  sluice_retry_options po = SLUICE_RETRY_OPTIONS_INIT;  // defaults: budget on, full jitter
  if (sluice_retry_new(&g_policy, rt, &po) != 0) return 1;
  sluice_breaker_options bo = SLUICE_BREAKER_OPTIONS_INIT;
  if (time_window) bo.window = SLUICE_BREAKER_WINDOW_TIME;
  sluice_breaker *br = nullptr;
  if (sluice_breaker_new(&br, rt, &bo) != 0) return 1;

  char only[32] = "";
  for (int i = 1; i < argc; i++)
    if (std::strncmp(argv[i], "--only=", 7) == 0) std::snprintf(only, sizeof only, "%s", argv[i] + 7);
  if (*only) {
    long iters = long(bench_opt(argc, argv, "iters", 100000));
    std::string o = only;
    if (o == "session")
      for (long i = 0; i < iters; i++) session_once();
    else if (o == "async")
      async_runs(rt, iters, window);
    else if (o == "breaker")
      for (long i = 0; i < iters; i++) breaker_once(br);
    else if (o == "plain")
      for (long i = 0; i < iters; i++) the_call(i);
    else
      return 2;
    sluice_breaker_free(br);
    sluice_retry_free(g_policy);
    sluice_runtime_free(rt);
    return 0;
  }

  std::printf("ops per figure: %ld (threads %d, async window %ld, breaker window %s)\n", ops,
              threads, window, time_window ? "time" : "count");
  HandRetry hand;
  double plain = per_op(1, ops, [&](int, long i) { the_call(i); });
  double handloop = per_op(1, ops, [&](int, long i) { hand.run(i, 3); });
  double session = per_op(1, ops, [&](int, long) { session_once(); });
  double async = async_runs(rt, ops, window);
  std::printf("retry, first attempt succeeds (1 thread):\n");
  std::printf("  plain call of the attempt            %6.1f ns\n", plain);
  std::printf("  hand-written loop, std::mutex stats  %6.1f ns\n", handloop);
  std::printf("  sluice session                       %6.1f ns   overhead over plain %6.1f ns   ratio to hand loop %.2fx\n",
              session, session - plain, session / handloop);
  std::printf("  sluice async run on the loop         %6.1f ns   overhead over plain %6.1f ns   ratio to hand loop %.2fx\n",
              async, async - plain, async / handloop);

  // Contended figures swing with where the scheduler puts the two threads
  // (one core each, or sharing one): interleaved rounds, medians reported.
  constexpr int kRounds = 5;
  double hs[kRounds], ss[kRounds], bs[kRounds], ms[kRounds];
  HandRetry hand2;
  MutexBreaker mb2;
  for (int r = 0; r < kRounds; r++) {
    hs[r] = per_op(threads, ops / kRounds, [&](int, long i) { hand2.run(i, 3); });
    ss[r] = per_op(threads, ops / kRounds, [&](int, long) { session_once(); });
    bs[r] = per_op(threads, ops / kRounds, [&](int, long) { breaker_once(br); });
    ms[r] = per_op(threads, ops / kRounds, [&](int, long) {
      if (mb2.allow() == 0) mb2.record(false);
    });
  }
  double handloop2 = median(hs, kRounds), session2 = median(ss, kRounds);
  double b2 = median(bs, kRounds), m2 = median(ms, kRounds);
  std::printf("retry, first attempt succeeds (%d threads, one policy; median of %d rounds):\n",
              threads, kRounds);
  std::printf("  hand-written loop, std::mutex stats  %6.1f ns  (rounds %s)\n", handloop2,
              spread(hs, kRounds).c_str());
  std::printf("  sluice session                       %6.1f ns  (rounds %s)   ratio %.2fx\n",
              session2, spread(ss, kRounds).c_str(), session2 / handloop2);

  MutexBreaker mb;
  double b1 = per_op(1, ops, [&](int, long) { breaker_once(br); });
  double m1 = per_op(1, ops, [&](int, long) {
    if (mb.allow() == 0) mb.record(false);
  });
  std::printf("breaker allow+record, closed:\n");
  std::printf("  1 thread:   sluice %6.1f ns   std::mutex breaker %6.1f ns   ratio %.2fx\n", b1, m1,
              m1 / b1);
  std::printf("  %d threads (median of %d rounds):  sluice %6.1f ns (rounds %s)   std::mutex breaker "
              "%6.1f ns (rounds %s)   ratio %.2fx\n",
              threads, kRounds, b2, spread(bs, kRounds).c_str(), m2, spread(ms, kRounds).c_str(),
              m2 / b2);

  sluice_breaker_free(br);
  sluice_retry_free(g_policy);
  sluice_runtime_free(rt);
  return 0;
}

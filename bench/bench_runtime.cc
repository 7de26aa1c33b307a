// Runtime benchmark: cross-thread posting onto the loop, against the obvious
// alternative (a std::mutex + std::condition_variable queue drained by one
// worker thread), in the same run; plus the cost of a waiting op (a zero
// timer started, completed and waited for).
//
//   bench_runtime [--threads=2] [--posts=200000] [--ops=20000] [--rounds=3]
#include <sluice.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "bench.h"

namespace {

std::atomic<uint64_t> g_ran{0};
void count(void *, int) { g_ran.fetch_add(1, std::memory_order_relaxed); }

// Posts from `threads` threads, then waits until the loop has run them all.
double sluice_posts(sluice_runtime *rt, int threads, long posts) {
  g_ran = 0;
  uint64_t t0 = bench_now_ns();
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; i++)
    ts.emplace_back([&] {
      for (long j = 0; j < posts; j++) sluice_runtime_post(rt, count, nullptr, nullptr);
    });
  for (auto &t : ts) t.join();
  // A zero timer is queued behind every post, so its completion means all ran.
  sluice_op *op = nullptr;
  sluice_runtime_timer(rt, 0, count, nullptr, nullptr, &op);
  sluice_op_wait(op, -1, nullptr);
  sluice_op_free(op);
  uint64_t dt = bench_now_ns() - t0;
  if (g_ran.load() != uint64_t(threads) * posts + 1) std::fprintf(stderr, "lost posts!\n");
  return double(dt) / double(threads * posts);
}

// The alternative: the queue most code bases write by hand.
struct CondvarQueue {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> q;
  bool stop = false;
  std::thread worker{[this] {
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      cv.wait(lock, [this] { return stop || !q.empty(); });
      if (q.empty()) return;
      auto fn = std::move(q.front());
      q.pop_front();
      lock.unlock();
      fn();
      lock.lock();
    }
  }};
  void post(std::function<void()> fn) {
    { std::lock_guard<std::mutex> lock(mu); q.push_back(std::move(fn)); }
    cv.notify_one();
  }
  ~CondvarQueue() {
    { std::lock_guard<std::mutex> lock(mu); stop = true; }
    cv.notify_one();
    worker.join();
  }
};

double condvar_posts(int threads, long posts) {
  g_ran = 0;
  uint64_t t0;
  {
    CondvarQueue q;
    t0 = bench_now_ns();
    std::vector<std::thread> ts;
    for (int i = 0; i < threads; i++)
      ts.emplace_back([&] {
        for (long j = 0; j < posts; j++) q.post([] { count(nullptr, 0); });
      });
    for (auto &t : ts) t.join();
  }  // the destructor drains the queue and joins
  uint64_t dt = bench_now_ns() - t0;
  return double(dt) / double(threads * posts);
}

double op_roundtrip(sluice_runtime *rt, long ops) {
  uint64_t t0 = bench_now_ns();
  for (long i = 0; i < ops; i++) {
    sluice_op *op = nullptr;
    sluice_runtime_timer(rt, 0, count, nullptr, nullptr, &op);
    sluice_op_wait(op, -1, nullptr);
    sluice_op_free(op);
  }
  return double(bench_now_ns() - t0) / double(ops);
}

}  // namespace

int main(int argc, char **argv) {
  if (bench_flag(argc, argv, "help")) {
    std::puts("bench_runtime [--threads=2] [--posts=200000] [--ops=20000] [--rounds=3]");
    return 0;
  }
  int threads = int(bench_opt(argc, argv, "threads", 2));
  long posts = long(bench_opt(argc, argv, "posts", 200000));
  long ops = long(bench_opt(argc, argv, "ops", 20000));
  int rounds = int(bench_opt(argc, argv, "rounds", 3));
  if (threads < 1 || posts < 1 || ops < 1 || rounds < 1) {
    std::fprintf(stderr, "all options must be positive\n");
    return 2;
  }
  sluice_runtime *rt = nullptr;
  if (int rc = sluice_runtime_new(&rt, nullptr)) {
    std::fprintf(stderr, "runtime: %s\n", sluice_error_message());
    return 1;
  }
  std::printf("sluice %s, %d posting threads, %ld posts each, best of %d rounds\n",
              sluice_version_string(), threads, posts, rounds);
  double best_s = 1e18, best_c = 1e18, best_op = 1e18;
  for (int r = 0; r < rounds; r++) {
    best_s = std::min(best_s, sluice_posts(rt, threads, posts));
    best_c = std::min(best_c, condvar_posts(threads, posts));
    best_op = std::min(best_op, op_roundtrip(rt, ops));
  }
  std::printf("post -> run on loop      sluice %8.1f ns/item   mutex+condvar queue %8.1f ns/item   ratio %.2fx\n",
              best_s, best_c, best_c / best_s);
  std::printf("waiting op (timer 0 + wait from another thread)  %8.0f ns/op\n", best_op);
  sluice_runtime_free(rt);
  return 0;
}

// Monitor recording cost against the origin's recorder (a mutex around a
// vector of raw samples, capped at 5000 records), in the same run.
//
//   bench_monitor [--records=5000000] [--threads=2] [--series=1000] [--only=record]
//
// --only=record --records=N records N samples on one thread and nothing
// else, for callgrind (bench/callgrind_monitor.sh takes the difference of
// two N to get instructions per record).
#include <sluice/monitor.h>
#include <sys/resource.h>

#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "bench.h"

namespace {

// The origin's PerformanceMonitor in C++: every sample kept, under a lock.
struct OriginRecorder {
  std::mutex mu;
  std::vector<uint64_t> samples;
  size_t max_records = 5000;
  void record(uint64_t d) {
    std::lock_guard<std::mutex> lock(mu);
    if (samples.size() >= max_records) samples.erase(samples.begin());
    samples.push_back(d);
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

}  // namespace

int main(int argc, char **argv) {
  long records = long(bench_opt(argc, argv, "records", 5000000));
  int threads = int(bench_opt(argc, argv, "threads", 2));
  long series = long(bench_opt(argc, argv, "series", 1000));
  sluice_monitor_options o = SLUICE_MONITOR_OPTIONS_INIT;
  o.max_series = uint32_t(series + 10);
  sluice_monitor *m = nullptr;
  if (sluice_monitor_new(&m, nullptr, &o) != 0) return 1;
  uint32_t id;
  sluice_monitor_series(m, "op", 2, &id);
  if (bench_flag(argc, argv, "only")) {
    for (long i = 0; i < records; i++) sluice_monitor_record_id(m, id, uint64_t(i & 0xfffff) + 1000, 0);
    sluice_monitor_free(m);
    return 0;
  }
  std::printf("records per thread: %ld\n", records);
  double s1 = per_op(1, records, [&](int, long i) { sluice_monitor_record_id(m, id, uint64_t(i & 0xfffff) + 1000, 0); });
  double sn = per_op(1, records, [&](int, long i) { sluice_monitor_record(m, "op", 2, uint64_t(i & 0xfffff) + 1000, 0); });
  double s2 = per_op(threads, records, [&](int, long i) { sluice_monitor_record_id(m, id, uint64_t(i & 0xfffff) + 1000, 0); });
  OriginRecorder origin;
  double o1 = per_op(1, records / 10, [&](int, long i) { origin.record(uint64_t(i) + 1000); });
  OriginRecorder origin2;
  double o2 = per_op(threads, records / 10, [&](int, long i) { origin2.record(uint64_t(i) + 1000); });
  std::printf("record, 1 thread:               sluice %6.1f ns (by name %6.1f ns)   origin recorder %7.1f ns   ratio %.1fx\n",
              s1, sn, o1, o1 / s1);
  std::printf("record, %d threads, same op:     sluice %6.1f ns   origin recorder %7.1f ns   ratio %.1fx\n",
              threads, s2, o2, o2 / s2);
  long before = rss_kb();
  char name[32];
  for (long i = 0; i < series; i++) {
    int n = std::snprintf(name, sizeof name, "series-%ld", i);
    sluice_monitor_record(m, name, size_t(n), 1000, 0);
  }
  long after = rss_kb();
  std::printf("memory per series: %.1f KiB (max RSS grew %ld KiB for %ld series)\n",
              double(after - before) / double(series), after - before, series);
  sluice_monitor_free(m);
  return 0;
}

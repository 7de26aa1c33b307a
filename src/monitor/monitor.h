// The monitor: a lock-free table of series, each a whole-run histogram plus
// five one-minute slots for the recent windows, and an error table.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "alloc/alloc.h"
#include "monitor/histogram.h"
#include "runtime/runtime.h"
#include "sluice/monitor.h"

namespace sluice::mon {

constexpr size_t kMaxName = 128;
constexpr int kStripes = 4;  // counters spread over cache lines by thread
constexpr int kSlots = 5;        // minutes kept for the windows
constexpr int kErrorCodes = 15;  // distinct error codes kept per series

// Plain sums of a part of a series, for reading.
struct Totals {
  uint64_t count = 0, errors = 0, sum = 0, min = UINT64_MAX, max = 0;
  std::vector<uint64_t> hist = std::vector<uint64_t>(hist::kBuckets, 0);
  void fill(sluice_monitor_op_stats *out) const;
  uint64_t percentile(double q) const;
};

// Count, errors and sum, one set per stripe: threads recording the same
// operation then do not fight over one cache line.
struct alignas(64) Scalars {
  std::atomic<uint64_t> count{0}, errors{0}, sum{0};
};

struct StripedScalars {
  Scalars stripe[kStripes];
  void add(uint64_t d, bool error);
  void add_to(Totals &t) const;
  void reset();
};

struct Slot {
  std::atomic<uint64_t> minute{UINT64_MAX};
  StripedScalars scalars;
  std::atomic<uint64_t> min{UINT64_MAX}, max{0};
  std::atomic<uint32_t> hist[hist::kBuckets]{};
  void reset(uint64_t m);
  void add_to(Totals &t) const;
};

struct Series : mem::Allocated {
  char name[kMaxName + 1] = {};
  size_t len = 0;
  std::atomic<uint32_t> id{UINT32_MAX};        // published after insertion
  std::atomic<Series *> redirect{nullptr};     // lost the race for the cap
  StripedScalars scalars;
  std::atomic<uint64_t> min{UINT64_MAX}, max{0};
  std::atomic<uint64_t> hist[hist::kBuckets]{};
  Slot slots[kSlots];
  std::atomic<int> codes[kErrorCodes]{};
  std::atomic<uint64_t> code_counts[kErrorCodes + 1]{};  // [kErrorCodes]: other
  void record(uint64_t minute, uint64_t d, int outcome);
  Totals totals(sluice_monitor_window w, uint64_t minute) const;
};

class Monitor : public mem::Allocated {
 public:
  static int create(Runtime *rt, const sluice_monitor_options &o, Monitor **out);
  ~Monitor();
  int series(const char *name, size_t len, uint32_t *id);
  Series *lookup(const char *name, size_t len);  // never null
  int record_id(uint32_t id, uint64_t d, int outcome);
  uint64_t now() const { return clock_ ? clock_(clock_ud_) : uv_hrtime(); }
  uint64_t minute() const;
  uint32_t count() const {
    uint32_t n = std::min(n_.load(std::memory_order_acquire), max_series_);
    return n + (overflow_.load(std::memory_order_acquire) ? 1 : 0);
  }
  const Series *at(uint32_t i) const { return order_[i].load(std::memory_order_acquire); }
  void process(sluice_process_stats *out);
  Runtime *runtime() const { return rt_; }
  sluice_monitor_options opts{};
  struct Reporter *reporter = nullptr;  // the periodic report, if any

 private:
  Series *find_or_add(const char *name, size_t len);
  Series *overflow();
  Runtime *rt_ = nullptr;
  sluice_clock_cb clock_ = nullptr;
  void *clock_ud_ = nullptr;
  std::string disk_path_ = "/";
  size_t mask_ = 0;
  std::vector<std::atomic<Series *>> table_;  // open addressing by name hash
  std::vector<std::atomic<Series *>> order_;  // by id (order of first use)
  std::atomic<uint32_t> n_{0};
  std::atomic<Series *> overflow_{nullptr};
  uint32_t max_series_ = 0;
  std::mutex cpu_mu_;
  uint64_t cpu_prev_ns_ = 0, cpu_prev_at_ = 0;
};

}  // namespace sluice::mon

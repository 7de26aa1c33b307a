#include "monitor/monitor.h"

#include <dirent.h>
#include <time.h>
#include <sys/statvfs.h>

#include <cstring>

#include "common/error.h"

namespace sluice::mon {
namespace {

void atomic_min(std::atomic<uint64_t> &a, uint64_t v) {
  uint64_t cur = a.load(std::memory_order_relaxed);
  while (v < cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

void atomic_max(std::atomic<uint64_t> &a, uint64_t v) {
  uint64_t cur = a.load(std::memory_order_relaxed);
  while (v > cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

uint64_t hash_name(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (size_t i = 0; i < n; i++) h = (h ^ uint8_t(s[i])) * 1099511628211ull;
  return h;
}

// Threads have stacks megabytes apart, so bits of the stack address tell
// them apart without thread-local storage (which costs a __tls_get_addr
// call from a shared library).
int stripe_of_thread() {
  auto sp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  return int((sp >> 21) ^ (sp >> 23)) & (kStripes - 1);
}

}  // namespace

// ---- series -------------------------------------------------------------

void StripedScalars::add(uint64_t d, bool error) {
  Scalars &s = stripe[stripe_of_thread()];
  s.count.fetch_add(1, std::memory_order_relaxed);
  s.sum.fetch_add(d, std::memory_order_relaxed);
  if (error) s.errors.fetch_add(1, std::memory_order_relaxed);
}

void StripedScalars::add_to(Totals &t) const {
  for (const Scalars &s : stripe) {
    t.count += s.count.load(std::memory_order_relaxed);
    t.errors += s.errors.load(std::memory_order_relaxed);
    t.sum += s.sum.load(std::memory_order_relaxed);
  }
}

void StripedScalars::reset() {
  for (Scalars &s : stripe) {
    s.count.store(0, std::memory_order_relaxed);
    s.errors.store(0, std::memory_order_relaxed);
    s.sum.store(0, std::memory_order_relaxed);
  }
}

uint64_t Monitor::minute() const {
  if (clock_) return clock_(clock_ud_) / 60000000000ull;
  // Minute slots need no precision: the coarse clock is a few ns cheaper
  // than a full one on the recording path.
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return uint64_t(ts.tv_sec) / 60;
}

void Slot::reset(uint64_t m) {
  // A few samples recorded into this slot while it is cleared can be lost
  // from the recent windows (never from the whole run).
  scalars.reset();
  min.store(UINT64_MAX, std::memory_order_relaxed);
  max.store(0, std::memory_order_relaxed);
  for (auto &h : hist) h.store(0, std::memory_order_relaxed);
  minute.store(m, std::memory_order_release);
}

void Series::record(uint64_t m, uint64_t d, int outcome) {
  uint32_t i = hist::index_of(d);
  scalars.add(d, outcome != 0);
  hist[i].fetch_add(1, std::memory_order_relaxed);
  atomic_min(min, d);
  atomic_max(max, d);
  Slot &s = slots[m % kSlots];
  uint64_t sm = s.minute.load(std::memory_order_acquire);
  if (sm != m) {
    if (sm == UINT64_MAX || sm < m) {
      if (s.minute.compare_exchange_strong(sm, UINT64_MAX - 1, std::memory_order_acq_rel)) s.reset(m);
    }
  }
  if (s.minute.load(std::memory_order_acquire) == m) {
    s.scalars.add(d, outcome != 0);
    s.hist[i].fetch_add(1, std::memory_order_relaxed);
    atomic_min(s.min, d);
    atomic_max(s.max, d);
  }
  if (outcome == 0) return;
  for (int k = 0; k < kErrorCodes; k++) {
    int c = codes[k].load(std::memory_order_acquire);
    if (c == 0) {
      int expected = 0;
      if (codes[k].compare_exchange_strong(expected, outcome, std::memory_order_acq_rel) ||
          expected == outcome) {
        code_counts[k].fetch_add(1, std::memory_order_relaxed);
        return;
      }
      c = expected;
    }
    if (c == outcome) {
      code_counts[k].fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  code_counts[kErrorCodes].fetch_add(1, std::memory_order_relaxed);
}

void Slot::add_to(Totals &t) const {
  scalars.add_to(t);
  t.min = std::min(t.min, min.load(std::memory_order_relaxed));
  t.max = std::max(t.max, max.load(std::memory_order_relaxed));
  for (uint32_t i = 0; i < hist::kBuckets; i++) t.hist[i] += hist[i].load(std::memory_order_relaxed);
}

Totals Series::totals(sluice_monitor_window w, uint64_t m) const {
  Totals t;
  if (w == SLUICE_WINDOW_ALL) {
    scalars.add_to(t);
    t.min = min.load(std::memory_order_relaxed);
    t.max = max.load(std::memory_order_relaxed);
    for (uint32_t i = 0; i < hist::kBuckets; i++) t.hist[i] = hist[i].load(std::memory_order_relaxed);
    return t;
  }
  uint64_t span = w == SLUICE_WINDOW_1M ? 2 : kSlots;
  for (const Slot &s : slots) {
    uint64_t sm = s.minute.load(std::memory_order_acquire);
    if (sm <= m && m - sm < span) s.add_to(t);
  }
  return t;
}

uint64_t Totals::percentile(double q) const {
  uint64_t n = 0;
  for (uint64_t c : hist) n += c;
  if (n == 0) return 0;
  uint64_t rank = uint64_t(q * double(n));
  if (double(rank) < q * double(n)) rank++;
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (uint32_t i = 0; i < hist::kBuckets; i++) {
    seen += hist[i];
    if (seen >= rank) return std::min(std::max(hist::value_of(i), min), max);
  }
  return max;
}

void Totals::fill(sluice_monitor_op_stats *o) const {
  o->count = count;
  o->errors = errors;
  o->sum_ns = sum;
  o->success_rate = count ? double(count - errors) / double(count) : 1.0;
  o->min_ns = count ? min : 0;
  o->max_ns = max;
  o->mean_ns = count ? sum / count : 0;
  o->p50_ns = percentile(0.50);
  o->p90_ns = percentile(0.90);
  o->p99_ns = percentile(0.99);
  o->p999_ns = percentile(0.999);
}

// ---- the monitor --------------------------------------------------------

int Monitor::create(Runtime *rt, const sluice_monitor_options &o, Monitor **out) {
  auto *m = new Monitor();
  m->rt_ = rt;
  m->opts = o;
  m->clock_ = o.clock;
  m->clock_ud_ = o.clock_user_data;
  if (o.disk_path) m->disk_path_ = o.disk_path;
  m->opts.disk_path = m->disk_path_.c_str();
  m->max_series_ = o.max_series;
  size_t cap = 16;
  while (cap < size_t(o.max_series) * 2 + 2) cap <<= 1;
  m->mask_ = cap - 1;
  m->table_ = std::vector<std::atomic<Series *>>(cap);
  m->order_ = std::vector<std::atomic<Series *>>(size_t(o.max_series) + 1);
  *out = m;
  return 0;
}

Monitor::~Monitor() {
  for (auto &s : table_) delete s.load(std::memory_order_relaxed);
  delete overflow_.load(std::memory_order_relaxed);
}

Series *Monitor::find_or_add(const char *name, size_t len) {
  size_t i = hash_name(name, len) & mask_;
  for (;;) {
    Series *s = table_[i].load(std::memory_order_acquire);
    if (!s) {
      if (n_.load(std::memory_order_acquire) >= max_series_) return overflow();
      auto *fresh = new Series();
      std::memcpy(fresh->name, name, len);
      fresh->len = len;
      Series *expected = nullptr;
      if (table_[i].compare_exchange_strong(expected, fresh, std::memory_order_acq_rel)) {
        // Ids are handed out in order of first use. Two names racing for the
        // last place can both get in the table: the later one then records
        // into the overflow series.
        uint32_t id = n_.fetch_add(1, std::memory_order_acq_rel);
        if (id < max_series_) {
          order_[id].store(fresh, std::memory_order_release);
          fresh->id.store(id, std::memory_order_release);
        } else {
          fresh->redirect.store(overflow(), std::memory_order_release);
        }
        return fresh;
      }
      delete fresh;
      s = expected;
    }
    if (s->len == len && std::memcmp(s->name, name, len) == 0) return s;
    i = (i + 1) & mask_;
  }
}

Series *Monitor::overflow() {
  Series *s = overflow_.load(std::memory_order_acquire);
  if (s) return s;
  std::lock_guard<std::mutex> lock(cpu_mu_);
  s = overflow_.load(std::memory_order_relaxed);
  if (!s) {
    s = new Series();
    std::memcpy(s->name, "_overflow", 9);
    s->len = 9;
    s->id.store(max_series_, std::memory_order_relaxed);
    order_[max_series_].store(s, std::memory_order_release);
    overflow_.store(s, std::memory_order_release);
  }
  return s;
}

Series *Monitor::lookup(const char *name, size_t len) {
  Series *s = find_or_add(name, len);
  if (Series *r = s->redirect.load(std::memory_order_acquire)) return r;
  return s;
}

int Monitor::series(const char *name, size_t len, uint32_t *id) {
  Series *s = lookup(name, len);
  uint32_t v;
  // The thread that inserted it publishes the id right after; wait for it.
  while ((v = s->id.load(std::memory_order_acquire)) == UINT32_MAX) {
  }
  *id = v;
  return 0;
}

int Monitor::record_id(uint32_t id, uint64_t d, int outcome) {
  Series *s = id < order_.size() ? order_[id].load(std::memory_order_acquire) : nullptr;
  if (!s) return fail(SLUICE_EINVAL, "sluice_monitor_record_id: unknown id %u", id);
  s->record(minute(), d, outcome);
  return 0;
}

void Monitor::process(sluice_process_stats *o) {
  size_t rss = 0;
  if (uv_resident_set_memory(&rss) == 0) o->rss_bytes = rss;
  uv_rusage_t ru;
  if (uv_getrusage(&ru) == 0) {
    o->cpu_user_ns = uint64_t(ru.ru_utime.tv_sec) * 1000000000ull + uint64_t(ru.ru_utime.tv_usec) * 1000;
    o->cpu_system_ns = uint64_t(ru.ru_stime.tv_sec) * 1000000000ull + uint64_t(ru.ru_stime.tv_usec) * 1000;
    uint64_t cpu = o->cpu_user_ns + o->cpu_system_ns, at = uv_hrtime();
    std::lock_guard<std::mutex> lock(cpu_mu_);
    if (cpu_prev_at_ && at > cpu_prev_at_)
      o->cpu_percent = 100.0 * double(cpu - cpu_prev_ns_) / double(at - cpu_prev_at_);
    cpu_prev_ns_ = cpu, cpu_prev_at_ = at;
  }
  o->mem_free_bytes = uv_get_free_memory();
  o->mem_total_bytes = uv_get_total_memory();
  struct statvfs vfs;
  if (statvfs(disk_path_.c_str(), &vfs) == 0) {
    o->disk_free_bytes = uint64_t(vfs.f_bavail) * vfs.f_frsize;
    o->disk_total_bytes = uint64_t(vfs.f_blocks) * vfs.f_frsize;
  }
  if (DIR *d = opendir("/proc/self/fd")) {
    uint64_t n = 0;
    while (dirent *e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
    o->open_fds = n > 0 ? n - 1 : 0;  // not counting the one opendir holds
  }
  if (rt_) {
    sluice_runtime_stats st{};
    st.size = sizeof st;
    rt_->fill_stats(&st);
    o->loop_lag_last_ns = st.lag_last_ns;
    o->loop_lag_max_ns = st.lag_max_ns;
    o->loop_lag_mean_ns = st.lag_mean_ns;
  }
  sluice_memory_stats ms{};
  ms.size = sizeof ms;
  mem::fill_stats(&ms);
  o->jemalloc = ms.jemalloc;
  o->alloc_allocated = ms.allocated;
  o->alloc_active = ms.active;
  o->alloc_resident = ms.resident;
}

}  // namespace sluice::mon

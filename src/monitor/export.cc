// The monitor's snapshot as JSON and as Prometheus text (format 0.0.4).
#include <cinttypes>
#include <cstdarg>
#include <cstring>
#include <cstdio>
#include <string>

#include "monitor/monitor.h"

namespace sluice::mon {
namespace {

void appendf(std::string &s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void appendf(std::string &s, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) s.append(buf, size_t(n) < sizeof buf ? size_t(n) : sizeof buf - 1);
}

// Names may hold any bytes: anything outside printable ASCII is escaped.
void json_string(std::string &s, const char *p, size_t n) {
  s += '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = uint8_t(p[i]);
    if (c == '"' || c == '\\') {
      s += '\\';
      s += char(c);
    } else if (c < 0x20 || c >= 0x7f) {
      appendf(s, "\\u%04x", c);
    } else {
      s += char(c);
    }
  }
  s += '"';
}

void prom_label(std::string &s, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (c == '\\') s += "\\\\";
    else if (c == '"') s += "\\\"";
    else if (c == '\n') s += "\\n";
    else s += c;
  }
}

void json_totals(std::string &s, const Totals &t) {
  sluice_monitor_op_stats o{};
  t.fill(&o);
  appendf(s,
          "{\"count\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"success_rate\":%.6f,\"min_ns\":%" PRIu64
          ",\"max_ns\":%" PRIu64 ",\"mean_ns\":%" PRIu64 ",\"p50_ns\":%" PRIu64 ",\"p90_ns\":%" PRIu64
          ",\"p99_ns\":%" PRIu64 ",\"p999_ns\":%" PRIu64 "}",
          o.count, o.errors, o.success_rate, o.min_ns, o.max_ns, o.mean_ns, o.p50_ns, o.p90_ns,
          o.p99_ns, o.p999_ns);
}

}  // namespace

std::string to_json(Monitor &m) {
  std::string s = "{\"series\":[";
  uint64_t minute = m.minute();
  for (uint32_t i = 0; i < m.count(); i++) {
    const Series *se = m.at(i);
    if (!se) continue;
    if (s.back() != '[') s += ',';
    s += "{\"name\":";
    json_string(s, se->name, se->len);
    const char *keys[3] = {"all", "1m", "5m"};
    for (int w = 0; w < 3; w++) {
      appendf(s, ",\"%s\":", keys[w]);
      json_totals(s, se->totals(sluice_monitor_window(w), minute));
    }
    s += ",\"errors\":[";
    bool first = true;
    for (int k = 0; k <= kErrorCodes; k++) {
      uint64_t c = se->code_counts[k].load(std::memory_order_relaxed);
      if (!c) continue;
      int code = k < kErrorCodes ? se->codes[k].load(std::memory_order_relaxed) : 0;
      appendf(s, "%s{\"code\":%d,\"name\":\"%s\",\"count\":%" PRIu64 "}", first ? "" : ",", code,
              code ? sluice_err_name(code) : "other", c);
      first = false;
    }
    s += "]}";
  }
  sluice_process_stats p{};
  p.size = sizeof p;
  m.process(&p);
  appendf(s,
          "],\"process\":{\"rss_bytes\":%" PRIu64 ",\"cpu_user_ns\":%" PRIu64 ",\"cpu_system_ns\":%" PRIu64
          ",\"cpu_percent\":%.2f,\"mem_free_bytes\":%" PRIu64 ",\"mem_total_bytes\":%" PRIu64
          ",\"disk_free_bytes\":%" PRIu64 ",\"disk_total_bytes\":%" PRIu64 ",\"open_fds\":%" PRIu64
          ",\"loop_lag_last_ns\":%" PRIu64 ",\"loop_lag_max_ns\":%" PRIu64 ",\"loop_lag_mean_ns\":%" PRIu64
          ",\"jemalloc\":%s,\"alloc_allocated\":%" PRIu64 ",\"alloc_active\":%" PRIu64
          ",\"alloc_resident\":%" PRIu64 "}}",
          p.rss_bytes, p.cpu_user_ns, p.cpu_system_ns, p.cpu_percent, p.mem_free_bytes,
          p.mem_total_bytes, p.disk_free_bytes, p.disk_total_bytes, p.open_fds, p.loop_lag_last_ns,
          p.loop_lag_max_ns, p.loop_lag_mean_ns, p.jemalloc ? "true" : "false", p.alloc_allocated,
          p.alloc_active, p.alloc_resident);
  return s;
}

std::string to_prometheus(Monitor &m) {
  std::string s;
  s += "# HELP sluice_op_duration_seconds Duration of operations recorded by sluice.\n";
  s += "# TYPE sluice_op_duration_seconds histogram\n";
  uint64_t minute = m.minute();
  for (uint32_t i = 0; i < m.count(); i++) {
    const Series *se = m.at(i);
    if (!se) continue;
    Totals t = se->totals(SLUICE_WINDOW_ALL, minute);
    std::string label;
    prom_label(label, se->name, se->len);
    // Power-of-two bounds line up with the histogram's own buckets, so
    // every cumulative count is exact.
    uint64_t cum = 0;
    uint32_t b = 0;
    for (int k = 10; k <= hist::kMaxExp + 1; k++) {
      for (uint32_t end = hist::buckets_below_pow2(k); b < end; b++) cum += t.hist[b];
      appendf(s, "sluice_op_duration_seconds_bucket{op=\"%s\",le=\"%.9g\"} %" PRIu64 "\n",
              label.c_str(), double(uint64_t{1} << k) / 1e9, cum);
    }
    appendf(s, "sluice_op_duration_seconds_bucket{op=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", label.c_str(), t.count);
    appendf(s, "sluice_op_duration_seconds_sum{op=\"%s\"} %.9f\n", label.c_str(), double(t.sum) / 1e9);
    appendf(s, "sluice_op_duration_seconds_count{op=\"%s\"} %" PRIu64 "\n", label.c_str(), t.count);
  }
  s += "# HELP sluice_op_errors_total Failed operations by error code.\n";
  s += "# TYPE sluice_op_errors_total counter\n";
  for (uint32_t i = 0; i < m.count(); i++) {
    const Series *se = m.at(i);
    if (!se) continue;
    std::string label;
    prom_label(label, se->name, se->len);
    for (int k = 0; k <= kErrorCodes; k++) {
      uint64_t c = se->code_counts[k].load(std::memory_order_relaxed);
      if (!c) continue;
      int code = k < kErrorCodes ? se->codes[k].load(std::memory_order_relaxed) : 0;
      appendf(s, "sluice_op_errors_total{op=\"%s\",code=\"%s\"} %" PRIu64 "\n", label.c_str(),
              code ? sluice_err_name(code) : "other", c);
    }
  }
  sluice_process_stats p{};
  p.size = sizeof p;
  m.process(&p);
  struct Gauge {
    const char *name, *help;
    double value;
  } gauges[] = {
      {"sluice_process_resident_memory_bytes", "Resident set size.", double(p.rss_bytes)},
      {"sluice_process_cpu_user_seconds_total", "User CPU time.", double(p.cpu_user_ns) / 1e9},
      {"sluice_process_cpu_system_seconds_total", "System CPU time.", double(p.cpu_system_ns) / 1e9},
      {"sluice_memory_free_bytes", "Free memory of the machine.", double(p.mem_free_bytes)},
      {"sluice_memory_total_bytes", "Total memory of the machine.", double(p.mem_total_bytes)},
      {"sluice_disk_free_bytes", "Free space of the monitored file system.", double(p.disk_free_bytes)},
      {"sluice_disk_total_bytes", "Size of the monitored file system.", double(p.disk_total_bytes)},
      {"sluice_process_open_fds", "Open file descriptors.", double(p.open_fds)},
      {"sluice_loop_lag_seconds", "Latest event-loop lag sample.", double(p.loop_lag_last_ns) / 1e9},
      {"sluice_loop_lag_max_seconds", "Largest event-loop lag sample.", double(p.loop_lag_max_ns) / 1e9},
      {"sluice_allocator_allocated_bytes", "Bytes sluice holds in its allocator.", double(p.alloc_allocated)},
      {"sluice_allocator_resident_bytes", "Resident bytes of sluice's jemalloc arena.", double(p.alloc_resident)},
  };
  for (const Gauge &g : gauges) {
    bool counter = std::strstr(g.name, "_total") != nullptr;
    appendf(s, "# HELP %s %s\n# TYPE %s %s\n%s %.9g\n", g.name, g.help, g.name,
            counter ? "counter" : "gauge", g.name, g.value);
  }
  return s;
}

}  // namespace sluice::mon

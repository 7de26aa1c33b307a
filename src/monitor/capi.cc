// extern "C" entry points of sluice/monitor.h.
#include <algorithm>
#include <cstring>
#include <string>

#include "common/buf.h"
#include "common/error.h"
#include "common/sized.h"
#include "monitor/monitor.h"

using namespace sluice;
using namespace sluice::mon;

namespace sluice::mon {
std::string to_json(Monitor &m);
std::string to_prometheus(Monitor &m);

// The periodic report's timer lives on the loop; runtime shutdown closes it.
struct Reporter final : ShutdownHook, mem::Allocated {
  Monitor *m;
  uv_timer_t timer{};
  explicit Reporter(Monitor *mon) : m(mon) {}
  void on_runtime_shutdown() override { close(); }
  void close() {
    uv_close(reinterpret_cast<uv_handle_t *>(&timer),
             [](uv_handle_t *h) { delete static_cast<Reporter *>(h->data); });
  }
};
}  // namespace sluice::mon

namespace {

Monitor *M(sluice_monitor *m) { return reinterpret_cast<Monitor *>(m); }
const Monitor *M(const sluice_monitor *m) { return reinterpret_cast<const Monitor *>(m); }

int check_name(const char *fn, const char *name, size_t len) {
  if (!name) return fail(SLUICE_EINVAL, "%s: name is NULL", fn);
  if (len == 0 || len > kMaxName)
    return fail(SLUICE_EINVAL, "%s: name length %zu is outside 1..%zu", fn, len, kMaxName);
  return 0;
}


}  // namespace

extern "C" {

int sluice_monitor_options_init(sluice_monitor_options *o, unsigned int version) {
  if (!o) return fail(SLUICE_EINVAL, "sluice_monitor_options_init: opts is NULL");
  if (int rc = check_version("sluice_monitor_options", version, SLUICE_MONITOR_OPTIONS_VERSION)) return rc;
  sluice_monitor_options d = SLUICE_MONITOR_OPTIONS_INIT;
  *o = d;
  o->version = version;
  return 0;
}

int sluice_monitor_new(sluice_monitor **out, sluice_runtime *rt, const sluice_monitor_options *opts) {
  if (!out) return fail(SLUICE_EINVAL, "sluice_monitor_new: out is NULL");
  *out = nullptr;
  sluice_monitor_options o = SLUICE_MONITOR_OPTIONS_INIT;
  if (opts) {
    if (int rc = check_version("sluice_monitor_options", opts->version, SLUICE_MONITOR_OPTIONS_VERSION))
      return rc;
    o = *opts;
  }
  if (o.max_series == 0 || o.max_series > 65536)
    return fail(SLUICE_EINVAL, "sluice_monitor_options.max_series %u is outside 1..65536", o.max_series);
  if (o.report_interval_ms && (!o.report_cb || !rt))
    return fail(SLUICE_EINVAL, "a report interval needs report_cb and a runtime");
  Runtime *r = rt ? unwrap(rt) : nullptr;
  return guarded([&] {
    Monitor *m = nullptr;
    Monitor::create(r, o, &m);
    if (o.report_interval_ms) {
      auto *rep = new Reporter(m);
      struct Start {
        Reporter *rep;
        Runtime *rt;
        int rc;
      } st{rep, r, 0};
      int rc = r->call(
          [](void *a) {
            auto *st = static_cast<Start *>(a);
            Reporter *rep = st->rep;
            if ((st->rc = st->rt->add_hook(rep)) != 0) return;
            uv_timer_init(st->rt->loop(), &rep->timer);
            rep->timer.data = rep;
            uint64_t ms = rep->m->opts.report_interval_ms;
            uv_timer_start(
                &rep->timer,
                [](uv_timer_t *t) {
                  auto *rep = static_cast<Reporter *>(t->data);
                  rep->m->opts.report_cb(rep->m->opts.report_user_data,
                                         reinterpret_cast<sluice_monitor *>(rep->m));
                },
                ms, ms);
            rep->m->reporter = rep;
          },
          &st);
      if (rc != 0 || st.rc != 0) {
        delete rep;
        delete m;
        return rc ? rc : st.rc;
      }
    }
    *out = reinterpret_cast<sluice_monitor *>(m);
    return 0;
  });
}

void sluice_monitor_free(sluice_monitor *handle) {
  if (!handle) return;
  Monitor *m = M(handle);
  if (Reporter *rep = m->reporter) {
    // Stopped on the loop, so no report runs once free has returned.
    int rc = m->runtime()->call(
        [](void *a) {
          auto *rep = static_cast<Reporter *>(a);
          rep->m->runtime()->remove_hook(rep);
          rep->close();
        },
        rep);
    (void)rc;  // ECLOSED: the runtime's shutdown closed it already
  }
  delete m;
}

int sluice_monitor_series(sluice_monitor *m, const char *name, size_t len, uint32_t *id) {
  if (!m || !id) return fail(SLUICE_EINVAL, "sluice_monitor_series: NULL argument");
  if (int rc = check_name("sluice_monitor_series", name, len)) return rc;
  return guarded([&] { return M(m)->series(name, len, id); });
}

int sluice_monitor_record(sluice_monitor *m, const char *name, size_t len, uint64_t d, int outcome) {
  if (!m) return fail(SLUICE_EINVAL, "sluice_monitor_record: monitor is NULL");
  if (int rc = check_name("sluice_monitor_record", name, len)) return rc;
  return guarded([&] {
    Monitor *mon = M(m);
    mon->lookup(name, len)->record(mon->minute(), d, outcome);
    return 0;
  });
}

int sluice_monitor_record_id(sluice_monitor *m, uint32_t id, uint64_t d, int outcome) {
  if (!m) return fail(SLUICE_EINVAL, "sluice_monitor_record_id: monitor is NULL");
  return M(m)->record_id(id, d, outcome);
}

int sluice_monitor_span_begin(sluice_monitor *m, const char *name, size_t len, sluice_span *span) {
  if (!span) return fail(SLUICE_EINVAL, "sluice_monitor_span_begin: span is NULL");
  span->monitor = nullptr;
  if (int rc = sluice_monitor_series(m, name, len, &span->id)) return rc;
  span->monitor = m;
  span->start_ns = M(m)->now();
  return 0;
}

int sluice_monitor_span_end(sluice_span *span, int outcome) {
  if (!span || !span->monitor) return fail(SLUICE_EINVAL, "sluice_monitor_span_end: span not begun");
  Monitor *m = M(span->monitor);
  uint64_t now = m->now();
  int rc = m->record_id(span->id, now > span->start_ns ? now - span->start_ns : 0, outcome);
  span->monitor = nullptr;
  return rc;
}

uint32_t sluice_monitor_series_count(const sluice_monitor *m) { return m ? M(m)->count() : 0; }

int sluice_monitor_op_stats_get(const sluice_monitor *m, uint32_t index, sluice_monitor_window w,
                                sluice_monitor_op_stats *out) {
  if (!m || !out) return fail(SLUICE_EINVAL, "sluice_monitor_op_stats_get: NULL argument");
  // A C caller can pass any int here: look at it as one, not as the enum.
  int wv;
  std::memcpy(&wv, &w, sizeof wv);
  if (wv < SLUICE_WINDOW_ALL || wv > SLUICE_WINDOW_5M)
    return fail(SLUICE_EINVAL, "sluice_monitor_op_stats_get: unknown window %d", wv);
  if (index >= M(m)->count()) return fail(SLUICE_ERANGE, "sluice_monitor_op_stats_get: no series %u", index);
  const Series *s = M(m)->at(index);
  if (!s) return fail(SLUICE_ERANGE, "sluice_monitor_op_stats_get: no series %u", index);
  return guarded([&] {
    sluice_monitor_op_stats full{};
    full.size = sizeof full;
    std::memcpy(full.name, s->name, s->len);
    full.name[s->len] = '\0';
    s->totals(w, M(m)->minute()).fill(&full);
    return copy_sized(out, full, "sluice_monitor_op_stats_get");
  });
}

int sluice_monitor_op_errors(const sluice_monitor *m, uint32_t index, int *codes, uint64_t *counts, size_t n) {
  if (!m || (n && (!codes || !counts))) return fail(SLUICE_EINVAL, "sluice_monitor_op_errors: NULL argument");
  if (index >= M(m)->count() || !M(m)->at(index))
    return fail(SLUICE_ERANGE, "sluice_monitor_op_errors: no series %u", index);
  const Series *s = M(m)->at(index);
  struct Pair {
    int code;
    uint64_t count;
  } pairs[kErrorCodes + 1];
  int k = 0;
  for (int i = 0; i <= kErrorCodes; i++) {
    uint64_t c = s->code_counts[i].load(std::memory_order_relaxed);
    if (c) pairs[k++] = {i < kErrorCodes ? s->codes[i].load(std::memory_order_relaxed) : 0, c};
  }
  std::sort(pairs, pairs + k, [](const Pair &a, const Pair &b) { return a.count > b.count; });
  for (int i = 0; i < k && size_t(i) < n; i++) codes[i] = pairs[i].code, counts[i] = pairs[i].count;
  return k;
}

int sluice_monitor_process(sluice_monitor *m, sluice_process_stats *out) {
  if (!m || !out) return fail(SLUICE_EINVAL, "sluice_monitor_process: NULL argument");
  sluice_process_stats full{};
  full.size = sizeof full;
  M(m)->process(&full);
  return copy_sized(out, full, "sluice_monitor_process");
}

int sluice_monitor_json(sluice_monitor *m, sluice_buf *out) {
  if (!m || !out) return fail(SLUICE_EINVAL, "sluice_monitor_json: NULL argument");
  return guarded([&] { return buf_set(out, to_json(*M(m))); });
}

int sluice_monitor_prometheus(sluice_monitor *m, sluice_buf *out) {
  if (!m || !out) return fail(SLUICE_EINVAL, "sluice_monitor_prometheus: NULL argument");
  return guarded([&] { return buf_set(out, to_prometheus(*M(m))); });
}

}  // extern "C"

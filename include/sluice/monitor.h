/*
 * sluice/monitor.h - latency histograms and outcomes per operation, process
 * figures, and their export (JSON, Prometheus text).
 *
 * Recording is lock-free and never allocates once an operation's series
 * exists: any thread may record at any time. Latencies go into fixed-size
 * log-linear histograms (64 sub-buckets per power of two: a reported
 * percentile is within 0.8% of the true sample value), kept for the whole
 * run and per minute for the recent windows.
 */
#ifndef SLUICE_MONITOR_H
#define SLUICE_MONITOR_H

#include "common.h"
#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sluice_monitor sluice_monitor;

/* Monotonic nanoseconds; for tests that drive time themselves. */
typedef uint64_t (*sluice_clock_cb)(void *user_data);

/* Called on the loop thread every report_interval_ms. */
typedef void (*sluice_monitor_report_cb)(void *user_data, sluice_monitor *monitor);

#define SLUICE_MONITOR_OPTIONS_VERSION 1

typedef struct sluice_monitor_options {
  unsigned int version;          /* SLUICE_MONITOR_OPTIONS_VERSION */
  uint32_t max_series;           /* operation names kept; default 256
                                    (1..65536). Names beyond it are counted
                                    in the series "_overflow". */
  const char *disk_path;         /* whose file system's use is reported;
                                    default "/" (copied) */
  uint32_t report_interval_ms;   /* 0 (default): no periodic report */
  sluice_monitor_report_cb report_cb;
  void *report_user_data;
  sluice_clock_cb clock;         /* NULL: sluice_now_ns */
  void *clock_user_data;
} sluice_monitor_options;

#define SLUICE_MONITOR_OPTIONS_INIT \
  {SLUICE_MONITOR_OPTIONS_VERSION, 256, NULL, 0, NULL, NULL, NULL, NULL}

/* Errors: SLUICE_EINVAL (opts NULL), SLUICE_EVERSION. */
SLUICE_EXTERN int sluice_monitor_options_init(sluice_monitor_options *opts,
                                              unsigned int version);

/*
 * Creates a monitor. `rt` may be NULL unless a periodic report is asked
 * for; with a runtime, the process figures include its loop lag and the
 * monitor must be freed before the runtime. `opts` may be NULL.
 * Errors: SLUICE_EINVAL (out NULL; max_series 0 or above 65536; a report
 * interval without a callback or runtime), SLUICE_EVERSION, SLUICE_ENOMEM,
 * SLUICE_ECLOSED (the runtime is shutting down).
 */
SLUICE_EXTERN int sluice_monitor_new(sluice_monitor **out, sluice_runtime *rt,
                                     const sluice_monitor_options *opts);

/* Stops the periodic report and frees everything. NULL is a no-op. Not
 * while other threads still record; not from inside the report callback. */
SLUICE_EXTERN void sluice_monitor_free(sluice_monitor *m);

/* ---- recording (any thread, lock-free) --------------------------------- */

/*
 * Records one completed operation: its name (any bytes, 1..128 long), how
 * long it took, and its outcome: 0 for success, else an error code (any
 * negative int, sluice's or the caller's own).
 * Errors: SLUICE_EINVAL (m or name NULL, name empty or longer than 128).
 * A name beyond max_series is recorded in "_overflow" and returns 0.
 */
SLUICE_EXTERN int sluice_monitor_record(sluice_monitor *m, const char *name, size_t name_len,
                                        uint64_t duration_ns, int outcome);

/*
 * The faster form for a hot path: resolve the name once, then record by id.
 * Errors: as sluice_monitor_record; sluice_monitor_record_id returns
 * SLUICE_EINVAL for an id the monitor never gave out.
 */
SLUICE_EXTERN int sluice_monitor_series(sluice_monitor *m, const char *name, size_t name_len,
                                        uint32_t *id);
SLUICE_EXTERN int sluice_monitor_record_id(sluice_monitor *m, uint32_t id,
                                           uint64_t duration_ns, int outcome);

/* A span: begin, then end with the outcome. Lives on the caller's stack. */
typedef struct sluice_span {
  sluice_monitor *monitor;
  uint32_t id;
  uint64_t start_ns;
} sluice_span;

/* Errors: as sluice_monitor_series; span NULL is SLUICE_EINVAL. */
SLUICE_EXTERN int sluice_monitor_span_begin(sluice_monitor *m, const char *name,
                                            size_t name_len, sluice_span *span);
/* Records the time since begin. Errors: SLUICE_EINVAL (span NULL or not begun). */
SLUICE_EXTERN int sluice_monitor_span_end(sluice_span *span, int outcome);

/* ---- reading --------------------------------------------------------- */

typedef enum sluice_monitor_window {
  SLUICE_WINDOW_ALL = 0,  /* since the monitor was created */
  SLUICE_WINDOW_1M = 1,   /* the current and the previous minute */
  SLUICE_WINDOW_5M = 2    /* the current and the previous four minutes */
} sluice_monitor_window;

typedef struct sluice_monitor_op_stats {
  size_t size;            /* caller sets sizeof(sluice_monitor_op_stats) */
  char name[132];         /* NUL-terminated (names are at most 128 bytes) */
  uint64_t count, errors;
  double success_rate;    /* 1.0 with no samples */
  uint64_t min_ns, max_ns, mean_ns;
  uint64_t p50_ns, p90_ns, p99_ns, p999_ns;
  uint64_t sum_ns;
} sluice_monitor_op_stats;

/* Number of series (operation names) so far, "_overflow" included. */
SLUICE_EXTERN uint32_t sluice_monitor_series_count(const sluice_monitor *m);

/*
 * Figures of series `index` (0..count-1, in order of first use) over
 * `window`. Any thread; concurrent recording may or may not be included.
 * Errors: SLUICE_EINVAL (NULL, bad window, out->size too small),
 * SLUICE_ERANGE (index).
 */
SLUICE_EXTERN int sluice_monitor_op_stats_get(const sluice_monitor *m, uint32_t index,
                                              sluice_monitor_window window,
                                              sluice_monitor_op_stats *out);

/*
 * Errors by code for series `index` over the whole run: fills up to `n`
 * pairs (codes[i], counts[i]), most frequent first, and returns how many
 * distinct codes there are (which may exceed n). The 15 most frequent codes
 * are kept per series; others count as code 0 ("other").
 * Errors: SLUICE_EINVAL, SLUICE_ERANGE.
 */
SLUICE_EXTERN int sluice_monitor_op_errors(const sluice_monitor *m, uint32_t index, int *codes,
                                           uint64_t *counts, size_t n);

typedef struct sluice_process_stats {
  size_t size;                 /* caller sets sizeof(sluice_process_stats) */
  uint64_t rss_bytes;
  uint64_t cpu_user_ns, cpu_system_ns;
  double cpu_percent;          /* of one core, since the previous call */
  uint64_t mem_free_bytes, mem_total_bytes;
  uint64_t disk_free_bytes, disk_total_bytes;
  uint64_t open_fds;
  uint64_t loop_lag_last_ns, loop_lag_max_ns, loop_lag_mean_ns; /* 0 without runtime */
  int jemalloc;
  uint64_t alloc_allocated, alloc_active, alloc_resident;
} sluice_process_stats;

/* Errors: SLUICE_EINVAL (NULL, out->size too small). */
SLUICE_EXTERN int sluice_monitor_process(sluice_monitor *m, sluice_process_stats *out);

/*
 * The whole snapshot (every series, all three windows, errors by code,
 * process figures) as a JSON object, into `out` (freed first).
 * Errors: SLUICE_EINVAL, SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_monitor_json(sluice_monitor *m, sluice_buf *out);

/*
 * Prometheus text exposition format 0.0.4: per series a histogram
 * `sluice_op_duration_seconds{op="..."}` (cumulative buckets with
 * power-of-two bounds from 1.024 us to 68.7 s, `+Inf`, `_sum`, `_count`), a
 * counter `sluice_op_errors_total{op,code}`, and the process gauges.
 * Errors: SLUICE_EINVAL, SLUICE_ENOMEM.
 */
SLUICE_EXTERN int sluice_monitor_prometheus(sluice_monitor *m, sluice_buf *out);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_MONITOR_H */

/* The monitor: percentiles against exact values, windows with an injected
 * clock, the series cap, errors by code, exports parsed back, recording
 * from two threads, the periodic report. SLUICE_TEST_CONCURRENT */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/monitor.h>

#include "testutil.h"

static uint64_t g_now;
static uint64_t fake_clock(void *ud) {
  (void)ud;
  return g_now;
}

static sluice_monitor *fake_monitor(uint32_t max_series) {
  sluice_monitor_options o = SLUICE_MONITOR_OPTIONS_INIT;
  o.clock = fake_clock;
  o.max_series = max_series;
  sluice_monitor *m = NULL;
  assert_ok(sluice_monitor_new(&m, NULL, &o));
  return m;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static uint64_t rng_state = 0x853c49e6748fea9bull;
static uint64_t rng(void) {
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
  return rng_state;
}

static void assert_close(uint64_t got, uint64_t want, const char *what) {
  double err = want ? ((double)got - (double)want) / (double)want : (double)got;
  if (err < 0) err = -err;
  if (err > 0.01) fail_msg("%s: got %llu, exact %llu (%.3f%% off)", what, (unsigned long long)got,
                           (unsigned long long)want, err * 100);
}

static uint64_t exact_rank(const uint64_t *sorted, size_t n, double q) {
  size_t rank = (size_t)(q * (double)n);
  if ((double)rank < q * (double)n) rank++;
  if (rank == 0) rank = 1;
  return sorted[rank - 1];
}

static void test_percentiles_within_one_percent(void **state) {
  (void)state;
  enum { N = 200000 };
  sluice_monitor *m = fake_monitor(16);
  uint64_t *v = malloc(N * sizeof *v);
  uint64_t sum = 0;
  for (size_t i = 0; i < N; i++) {
    /* Log-uniform from 50 ns to ~30 s: every octave of the histogram. */
    double e = 5.6 + (double)(rng() % 1000000) / 1000000.0 * 29.2;
    v[i] = (uint64_t)__builtin_exp2(e);
    sum += v[i];
    assert_ok(sluice_monitor_record(m, "db.query", 8, v[i], 0));
  }
  qsort(v, N, sizeof *v, cmp_u64);
  sluice_monitor_op_stats st = {sizeof st};
  assert_ok(sluice_monitor_op_stats_get(m, 0, SLUICE_WINDOW_ALL, &st));
  assert_string_equal(st.name, "db.query");
  assert_int_equal(st.count, N);
  assert_int_equal(st.min_ns, v[0]);
  assert_int_equal(st.max_ns, v[N - 1]);
  assert_int_equal(st.mean_ns, sum / N);
  assert_close(st.p50_ns, exact_rank(v, N, 0.50), "p50");
  assert_close(st.p90_ns, exact_rank(v, N, 0.90), "p90");
  assert_close(st.p99_ns, exact_rank(v, N, 0.99), "p99");
  assert_close(st.p999_ns, exact_rank(v, N, 0.999), "p99.9");
  assert_true(st.success_rate == 1.0);
  free(v);
  sluice_monitor_free(m);
}

static void test_windows_roll_with_the_clock(void **state) {
  (void)state;
  const uint64_t MIN = 60ull * 1000000000ull;
  g_now = 10 * MIN;
  sluice_monitor *m = fake_monitor(16);
  for (int i = 0; i < 100; i++) assert_ok(sluice_monitor_record(m, "op", 2, 1000, 0));
  g_now += MIN; /* minute 11 */
  for (int i = 0; i < 50; i++) assert_ok(sluice_monitor_record(m, "op", 2, 5000000, i % 10 ? 0 : -6));
  sluice_monitor_op_stats all = {sizeof all}, w1 = {sizeof w1}, w5 = {sizeof w5};
  assert_ok(sluice_monitor_op_stats_get(m, 0, SLUICE_WINDOW_ALL, &all));
  assert_ok(sluice_monitor_op_stats_get(m, 0, SLUICE_WINDOW_1M, &w1));
  assert_ok(sluice_monitor_op_stats_get(m, 0, SLUICE_WINDOW_5M, &w5));
  /* The windows merge their minutes: here both minutes are in each. */
  assert_int_equal(all.count, 150);
  assert_int_equal(w1.count, 150);
  assert_int_equal(w5.count, 150);
  assert_int_equal(w5.errors, 5);
  assert_int_equal(w5.p50_ns, all.p50_ns);
  assert_int_equal(w5.max_ns, 5000000);
  g_now += MIN; /* minute 12: minute 10 has left the 1-minute window */
  assert_ok(sluice_monitor_op_stats_get(m, 0, SLUICE_WINDOW_1M, &w1));
  assert_int_equal(w1.count, 50);
  assert_int_equal(w1.min_ns, 5000000);
  g_now += 3 * MIN; /* minute 15 */
  assert_ok(sluice_monitor_op_stats_get(m, 0, SLUICE_WINDOW_1M, &w1));
  assert_int_equal(w1.count, 0);
  assert_ok(sluice_monitor_op_stats_get(m, 0, SLUICE_WINDOW_5M, &w5));
  assert_int_equal(w5.count, 50); /* minute 11 is still within five */
  g_now += MIN; /* minute 16 */
  assert_ok(sluice_monitor_op_stats_get(m, 0, SLUICE_WINDOW_5M, &w5));
  assert_int_equal(w5.count, 0);
  assert_true(w5.success_rate == 1.0);
  /* A slot reused five minutes later starts empty. */
  for (int i = 0; i < 7; i++) assert_ok(sluice_monitor_record(m, "op", 2, 10, 0));
  assert_ok(sluice_monitor_op_stats_get(m, 0, SLUICE_WINDOW_5M, &w5));
  assert_int_equal(w5.count, 7);
  assert_ok(sluice_monitor_op_stats_get(m, 0, SLUICE_WINDOW_ALL, &all));
  assert_int_equal(all.count, 157);
  sluice_monitor_free(m);
}

static void test_spans_errors_and_cap(void **state) {
  (void)state;
  g_now = 1000;
  sluice_monitor *m = fake_monitor(3);
  sluice_span sp;
  assert_ok(sluice_monitor_span_begin(m, "ai.call", 7, &sp));
  g_now += 1234567;
  assert_ok(sluice_monitor_span_end(&sp, SLUICE_ETIMEDOUT));
  assert_err(SLUICE_EINVAL, sluice_monitor_span_end(&sp, 0)); /* ended already */
  for (int i = 0; i < 20; i++) assert_ok(sluice_monitor_record(m, "ai.call", 7, 10, i < 12 ? -7 : -8));
  int codes[4];
  uint64_t counts[4];
  assert_int_equal(sluice_monitor_op_errors(m, 0, codes, counts, 4), 3);
  assert_int_equal(codes[0], -7);
  assert_int_equal(counts[0], 12);
  assert_int_equal(codes[1], -8);
  assert_int_equal(counts[1], 8);
  assert_int_equal(codes[2], SLUICE_ETIMEDOUT);
  sluice_monitor_op_stats st = {sizeof st};
  assert_ok(sluice_monitor_op_stats_get(m, 0, SLUICE_WINDOW_ALL, &st));
  assert_int_equal(st.max_ns, 1234567);
  assert_int_equal(st.errors, 21);

  /* Three names fit; the rest share "_overflow". */
  char name[16];
  for (int i = 0; i < 10; i++) {
    snprintf(name, sizeof name, "op%d", i);
    assert_ok(sluice_monitor_record(m, name, strlen(name), 100, 0));
  }
  assert_int_equal(sluice_monitor_series_count(m), 4);
  assert_ok(sluice_monitor_op_stats_get(m, 3, SLUICE_WINDOW_ALL, &st));
  assert_string_equal(st.name, "_overflow");
  assert_int_equal(st.count, 8);
  uint32_t id = 99;
  assert_ok(sluice_monitor_series(m, "op0", 3, &id));
  assert_int_equal(id, 1);
  assert_ok(sluice_monitor_series(m, "brand-new", 9, &id));
  assert_int_equal(id, 3);
  assert_ok(sluice_monitor_record_id(m, id, 5, 0));
  assert_err(SLUICE_EINVAL, sluice_monitor_record_id(m, 4, 5, 0));
  sluice_monitor_free(m);
}

static void test_bad_input(void **state) {
  (void)state;
  sluice_monitor *m = fake_monitor(4);
  char big[200];
  memset(big, 'x', sizeof big);
  sluice_span sp;
  uint32_t id;
  assert_err(SLUICE_EINVAL, sluice_monitor_record(NULL, "a", 1, 1, 0));
  assert_err(SLUICE_EINVAL, sluice_monitor_record(m, NULL, 1, 1, 0));
  assert_err(SLUICE_EINVAL, sluice_monitor_record(m, "a", 0, 1, 0));
  assert_err(SLUICE_EINVAL, sluice_monitor_record(m, big, 129, 1, 0));
  assert_ok(sluice_monitor_record(m, big, 128, 1, 0));
  assert_err(SLUICE_EINVAL, sluice_monitor_series(m, "a", 1, NULL));
  assert_err(SLUICE_EINVAL, sluice_monitor_span_begin(m, "a", 1, NULL));
  assert_err(SLUICE_EINVAL, sluice_monitor_span_begin(NULL, "a", 1, &sp));
  assert_err(SLUICE_EINVAL, sluice_monitor_span_end(NULL, 0));
  (void)id;
  sluice_monitor_op_stats st = {sizeof st};
  assert_err(SLUICE_EINVAL, sluice_monitor_op_stats_get(m, 0, (sluice_monitor_window)7, &st));
  assert_err(SLUICE_ERANGE, sluice_monitor_op_stats_get(m, 5, SLUICE_WINDOW_ALL, &st));
  st.size = 1;
  assert_err(SLUICE_EINVAL, sluice_monitor_op_stats_get(m, 0, SLUICE_WINDOW_ALL, &st));
  assert_err(SLUICE_ERANGE, sluice_monitor_op_errors(m, 9, NULL, NULL, 0));
  sluice_monitor_options o = SLUICE_MONITOR_OPTIONS_INIT;
  sluice_monitor *bad = NULL;
  o.max_series = 0;
  assert_err(SLUICE_EINVAL, sluice_monitor_new(&bad, NULL, &o));
  o.max_series = 4, o.report_interval_ms = 10; /* no callback, no runtime */
  assert_err(SLUICE_EINVAL, sluice_monitor_new(&bad, NULL, &o));
  o.version = 9;
  assert_err(SLUICE_EVERSION, sluice_monitor_new(&bad, NULL, &o));
  assert_err(SLUICE_EINVAL, sluice_monitor_new(NULL, NULL, NULL));
  sluice_monitor_free(NULL);
  assert_int_equal(sluice_monitor_series_count(NULL), 0);
  sluice_monitor_free(m);
}

/* A small JSON checker: true if `s` is exactly one well-formed value. */
static const char *json_value(const char *s);
static const char *ws(const char *s) {
  while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
  return s;
}
static const char *json_string(const char *s) {
  if (*s++ != '"') return NULL;
  while (*s && *s != '"') {
    if ((unsigned char)*s < 0x20) return NULL;
    if (*s == '\\') {
      s++;
      if (*s == 'u') {
        for (int i = 1; i <= 4; i++)
          if (!strchr("0123456789abcdefABCDEF", s[i]) || !s[i]) return NULL;
        s += 4;
      } else if (!strchr("\"\\/bfnrt", *s) || !*s) {
        return NULL;
      }
    }
    s++;
  }
  return *s == '"' ? s + 1 : NULL;
}
static const char *json_value(const char *s) {
  s = ws(s);
  if (*s == '{' || *s == '[') {
    char close = *s == '{' ? '}' : ']';
    int obj = *s == '{';
    s = ws(s + 1);
    if (*s == close) return s + 1;
    for (;;) {
      if (obj) {
        if (!(s = json_string(ws(s)))) return NULL;
        s = ws(s);
        if (*s++ != ':') return NULL;
      }
      if (!(s = json_value(s))) return NULL;
      s = ws(s);
      if (*s == ',') {
        s++;
        continue;
      }
      return *s == close ? s + 1 : NULL;
    }
  }
  if (*s == '"') return json_string(s);
  if (!strncmp(s, "true", 4)) return s + 4;
  if (!strncmp(s, "false", 5)) return s + 5;
  if (!strncmp(s, "null", 4)) return s + 4;
  char *end;
  strtod(s, &end);
  return end == s ? NULL : end;
}

static void test_exports_parse_back(void **state) {
  (void)state;
  g_now = 5;
  sluice_monitor *m = fake_monitor(8);
  const char weird[] = "we\"ird\\name\x01\xff";
  for (int i = 0; i < 1000; i++) {
    assert_ok(sluice_monitor_record(m, "lock.wait", 9, (uint64_t)(i + 1) * 1000, 0));
    assert_ok(sluice_monitor_record(m, weird, sizeof weird - 1, 500, i % 100 ? 0 : SLUICE_EREJECTED));
  }
  assert_ok(sluice_monitor_record(m, "lock.wait", 9, 200ull * 1000000000ull, 0)); /* above the range */
  sluice_buf js = SLUICE_BUF_INIT, pr = SLUICE_BUF_INIT;
  assert_ok(sluice_monitor_json(m, &js));
  const char *end = json_value(js.ptr);
  assert_non_null(end);
  assert_int_equal(*ws(end), '\0');
  assert_non_null(strstr(js.ptr, "\"name\":\"lock.wait\""));
  assert_non_null(strstr(js.ptr, "\\u0001\\u00ff"));
  assert_non_null(strstr(js.ptr, "SLUICE_EREJECTED"));

  assert_ok(sluice_monitor_prometheus(m, &pr));
  /* Every bucket line of lock.wait: cumulative, ending at _count. */
  uint64_t prev = 0, inf = 0, count = 0;
  int buckets = 0;
  double sum = -1;
  for (char *line = strtok(pr.ptr, "\n"); line; line = strtok(NULL, "\n")) {
    unsigned long long v;
    double d;
    char le[32];
    if (sscanf(line, "sluice_op_duration_seconds_bucket{op=\"lock.wait\",le=\"%31[^\"]\"} %llu", le, &v) == 2) {
      assert_true(v >= prev);
      prev = v;
      buckets++;
      if (!strcmp(le, "+Inf")) inf = v;
    } else if (sscanf(line, "sluice_op_duration_seconds_count{op=\"lock.wait\"} %llu", &v) == 1) {
      count = v;
    } else if (sscanf(line, "sluice_op_duration_seconds_sum{op=\"lock.wait\"} %lf", &d) == 1) {
      sum = d;
    } else if (line[0] != '#') {
      /* every other line is "name{labels} value" or "name value" */
      assert_non_null(strrchr(line, ' '));
    }
  }
  assert_int_equal(count, 1001);
  assert_int_equal(inf, 1001);
  assert_true(buckets >= 20);
  assert_true(prev == inf);
  double want = 200.0 + 1000.0 * 1001.0 / 2.0 * 1000.0 / 1e9;
  assert_true(sum > want - 1e-6 && sum < want + 1e-6);
  sluice_buf_free(&js);
  sluice_buf_free(&pr);
  sluice_monitor_free(m);
}

struct recorder {
  sluice_monitor *m;
  uint32_t id;
  int n;
};
static void *record_many(void *arg) {
  struct recorder *r = arg;
  for (int i = 0; i < r->n; i++) sluice_monitor_record_id(r->m, r->id, (uint64_t)(i % 5000) + 1, i % 50 ? 0 : -1);
  char name[32];
  for (int i = 0; i < 200; i++) { /* new names from both threads at once */
    snprintf(name, sizeof name, "n%d", i);
    sluice_monitor_record(r->m, name, strlen(name), 1, 0);
  }
  return NULL;
}

static void test_two_threads_record_exactly(void **state) {
  (void)state;
  enum { N = 100000 };
  sluice_monitor *m = fake_monitor(64);
  uint32_t id;
  assert_ok(sluice_monitor_series(m, "hot", 3, &id));
  struct recorder r = {m, id, N};
  pthread_t a, b;
  pthread_create(&a, NULL, record_many, &r);
  pthread_create(&b, NULL, record_many, &r);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  sluice_monitor_op_stats st = {sizeof st};
  assert_ok(sluice_monitor_op_stats_get(m, 0, SLUICE_WINDOW_ALL, &st));
  assert_int_equal(st.count, 2 * N);
  assert_int_equal(st.errors, 2 * N / 50);
  assert_int_equal(st.min_ns, 1);
  assert_int_equal(st.max_ns, 5000);
  /* 64 names fit: "hot" and 63 of the 200; the rest in "_overflow". */
  assert_int_equal(sluice_monitor_series_count(m), 65);
  uint64_t total = 0;
  for (uint32_t i = 1; i < 65; i++) {
    assert_ok(sluice_monitor_op_stats_get(m, i, SLUICE_WINDOW_ALL, &st));
    total += st.count;
  }
  assert_int_equal(total, 400);
  sluice_monitor_free(m);
}

static atomic_int g_reports;
static void on_report(void *ud, sluice_monitor *m) {
  (void)ud;
  sluice_process_stats p = {sizeof p};
  if (sluice_monitor_process(m, &p) == 0 && p.rss_bytes > 0) atomic_fetch_add(&g_reports, 1);
}
static int two_reports(void *arg) {
  (void)arg;
  return atomic_load(&g_reports) >= 2;
}

static void test_process_figures_and_periodic_report(void **state) {
  (void)state;
  sluice_runtime *rt = tu_runtime();
  sluice_monitor_options o = SLUICE_MONITOR_OPTIONS_INIT;
  o.report_interval_ms = 10;
  o.report_cb = on_report;
  sluice_monitor *m = NULL;
  assert_ok(sluice_monitor_new(&m, rt, &o));
  extern void tu_wait_until(int (*)(void *), void *, const char *);
  tu_wait_until(two_reports, NULL, "two periodic reports");
  sluice_process_stats p = {sizeof p};
  assert_ok(sluice_monitor_process(m, &p));
  assert_true(p.rss_bytes > 0);
  assert_true(p.mem_total_bytes >= p.mem_free_bytes && p.mem_total_bytes > 0);
  assert_true(p.disk_total_bytes >= p.disk_free_bytes && p.disk_total_bytes > 0);
  assert_true(p.open_fds >= 3);
  assert_true(p.cpu_user_ns + p.cpu_system_ns > 0);
  sluice_monitor_free(m);
  int after = atomic_load(&g_reports);
  sluice_op *t = NULL;
  tu_counter c = {0};
  assert_ok(sluice_runtime_timer(rt, 50, tu_count_cb, &c, NULL, &t));
  assert_ok(sluice_op_wait(t, -1, NULL));
  sluice_op_free(t);
  assert_int_equal(atomic_load(&g_reports), after); /* none after free */
  /* A monitor with a report still running when the runtime shuts down. */
  assert_ok(sluice_monitor_new(&m, rt, &o));
  sluice_runtime_close(rt);
  sluice_monitor_free(m);
  sluice_runtime_free(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_percentiles_within_one_percent),
      cmocka_unit_test(test_windows_roll_with_the_clock),
      cmocka_unit_test(test_spans_errors_and_cap),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_exports_parse_back),
      cmocka_unit_test(test_two_threads_record_exactly),
      cmocka_unit_test(test_process_figures_and_periodic_report),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

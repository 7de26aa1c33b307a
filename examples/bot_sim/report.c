/* What the operator sees: a live progress line, the closing table, the
 * Prometheus file, and the check of the database against the run. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bot_sim.h"

struct answer {
  int status;
  char *out;
  size_t out_len;
  char message[200];
};

static void answered(void *ud, int status, sluice_pg_result *r) {
  struct answer *a = ud;
  const char *v = NULL;
  size_t len = 0;
  a->status = status;
  if (status == 0 && a->out && sluice_pg_result_rows(r) > 0 &&
      sluice_pg_result_value(r, 0, 0, &v, &len) == 0)
    snprintf(a->out, a->out_len, "%.*s", (int)len, v ? v : "");
  if (status != 0) snprintf(a->message, sizeof a->message, "%s", sluice_pg_result_message(r));
  sluice_pg_result_free(r);
}

int sim_query(struct sim *s, const char *sql, char *out, size_t out_len) {
  struct answer a = {0, out, out_len, ""};
  sluice_op *op = NULL;
  if (out && out_len) out[0] = '\0';
  int rc = sluice_pg_pool_query(s->pool, sql, 0, NULL, NULL, NULL, NULL, answered, &a, NULL, &op);
  if (rc != 0) {
    fprintf(stderr, "bot_sim: %s: %s\n", sql, sluice_error_message());
    return rc;
  }
  sluice_op_wait(op, -1, NULL);
  sluice_op_free(op);
  if (a.status != 0) fprintf(stderr, "bot_sim: %.60s...: %s\n", sql, a.message);
  return a.status;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

void sim_progress(struct sim *s) {
  /* A line rewritten in place on a terminal; a line every 5 s in a log. */
  int tty = isatty(STDERR_FILENO);
  long every = tty ? 250 : 5000, waited = 0;
  while (!atomic_load(&s->done)) {
    sleep_ms(50);
    waited += 50;
    if (s->opt.quiet || waited < every) continue;
    waited = 0;
    double secs = (double)(sluice_now_ns() - s->start_ns) / 1e9;
    long fin = atomic_load(&s->finished);
    fprintf(stderr, "%s%6.1f s  %ld/%ld messages  %.0f/s  accepted %ld  rate-limited %ld  "
            "AI calls %ld (failed %ld)  failed %ld%s",
            tty ? "\r" : "", secs, fin, s->opt.messages, secs > 0 ? fin / secs : 0.0,
            atomic_load(&s->accepted), atomic_load(&s->rate_limited), atomic_load(&s->ai_calls),
            atomic_load(&s->ai_failed), atomic_load(&s->lock_failed) + atomic_load(&s->db_failed),
            tty ? "   " : "\n");
  }
  if (tty && !s->opt.quiet) fputc('\n', stderr);
}

static double ms(uint64_t ns) { return (double)ns / 1e6; }

static void print_operations(struct sim *s) {
  printf("\n%-22s %9s %9s %10s %10s %10s\n", "operation", "count", "success", "p50 ms",
         "p99 ms", "max ms");
  uint32_t n = sluice_monitor_series_count(s->mon);
  for (uint32_t i = 0; i < n; i++) {
    sluice_monitor_op_stats st = {sizeof st};
    if (sluice_monitor_op_stats_get(s->mon, i, SLUICE_WINDOW_ALL, &st) != 0 || st.count == 0)
      continue;
    printf("%-22s %9llu %8.2f%% %10.3f %10.3f %10.3f\n", st.name, (unsigned long long)st.count,
           st.success_rate * 100, ms(st.p50_ns), ms(st.p99_ns), ms(st.max_ns));
  }
}

static void print_objects(struct sim *s) {
  sluice_limiter_stats us = {sizeof us}, gs = {sizeof gs};
  sluice_limiter_stats_get(s->user_limit, &us);
  sluice_limiter_stats_get(s->group_limit, &gs);
  printf("\nlimits   user: %llu allowed, %llu refused, %llu keys now (peak %llu)\n"
         "         group: %llu allowed, %llu refused, %llu keys now (peak %llu)\n",
         (unsigned long long)us.allowed, (unsigned long long)us.rejected,
         (unsigned long long)us.keys, (unsigned long long)us.peak_keys,
         (unsigned long long)gs.allowed, (unsigned long long)gs.rejected,
         (unsigned long long)gs.keys, (unsigned long long)gs.peak_keys);
  sluice_locks_stats ls = {sizeof ls};
  sluice_locks_stats_get(s->locks, &ls);
  printf("locks    %llu acquisitions, %llu had to wait (mean wait %.3f ms), %llu timeouts, "
         "peak %llu users locked\n",
         (unsigned long long)ls.acquisitions, (unsigned long long)ls.contended,
         ls.contended ? ms(ls.wait_ns / ls.contended) : 0.0, (unsigned long long)ls.timeouts,
         (unsigned long long)ls.peak_live_keys);
  sluice_taskpool_stats ts = {sizeof ts};
  sluice_taskpool_stats_get(s->tasks, &ts);
  printf("tasks    %llu AI calls run, %llu failed, %llu rejected, %llu expired, peak %llu "
         "running, mean queue wait %.3f ms\n",
         (unsigned long long)(ts.completed + ts.failed), (unsigned long long)ts.failed,
         (unsigned long long)ts.rejected, (unsigned long long)ts.expired,
         (unsigned long long)ts.peak_running,
         ts.completed + ts.failed ? ms(ts.queue_wait_ns_total / (ts.completed + ts.failed)) : 0.0);
  sluice_retry_stats ai = {sizeof ai}, db = {sizeof db};
  sluice_retry_stats_get(s->ai_retry, &ai);
  sluice_retry_stats_get(s->db_retry, &db);
  sluice_breaker_stats bs = {sizeof bs};
  sluice_breaker_stats_get(s->ai_breaker, &bs);
  static const char *states[] = {"closed", "open", "half-open"};
  printf("retries  AI: %llu attempts for %llu runs (%llu refused by the budget, %llu by the "
         "breaker: %s, tripped %llu times); database: %llu attempts for %llu runs\n",
         (unsigned long long)ai.attempts, (unsigned long long)ai.runs,
         (unsigned long long)ai.budget_refusals, (unsigned long long)ai.breaker_refusals,
         bs.state >= 0 && bs.state <= 2 ? states[bs.state] : "?", (unsigned long long)bs.opened,
         (unsigned long long)db.attempts, (unsigned long long)db.runs);
  sluice_pg_pool_stats ps = {sizeof ps};
  sluice_pg_pool_stats_get(s->pool, &ps);
  printf("pool     %u connections (peak %u), %llu queries, %llu errors, %llu timeouts, "
         "mean wait for a connection %.3f ms\n",
         ps.total, ps.peak_total, (unsigned long long)ps.queries,
         (unsigned long long)ps.query_errors, (unsigned long long)ps.query_timeouts,
         ps.acquires ? ms(ps.wait_ns_total / ps.acquires) : 0.0);
  sluice_process_stats pr = {sizeof pr};
  sluice_monitor_process(s->mon, &pr);
  printf("process  RSS %.1f MiB, CPU user %.2f s system %.2f s, loop lag max %.3f ms, "
         "%llu open files\n",
         (double)pr.rss_bytes / 1048576.0, (double)pr.cpu_user_ns / 1e9,
         (double)pr.cpu_system_ns / 1e9, ms(pr.loop_lag_max_ns), (unsigned long long)pr.open_fds);
}

static int write_prometheus(struct sim *s) {
  sluice_buf text = SLUICE_BUF_INIT;
  if (sluice_monitor_prometheus(s->mon, &text) != 0) return -1;
  FILE *f = fopen(s->opt.prom_path, "w");
  int ok = f && fwrite(text.ptr, 1, text.size, f) == text.size;
  if (f && fclose(f) != 0) ok = 0;
  sluice_buf_free(&text);
  if (!ok) perror(s->opt.prom_path);
  return ok ? 0 : -1;
}

int sim_report(struct sim *s, double seconds) {
  long fin = atomic_load(&s->finished), acc = atomic_load(&s->accepted);
  long limited = atomic_load(&s->rate_limited), lock_failed = atomic_load(&s->lock_failed);
  long db_failed = atomic_load(&s->db_failed);
  printf("\n%ld messages from %ld users in %ld groups in %.2f s: %.0f messages/s\n", fin,
         s->opt.users, s->opt.groups, seconds, fin / seconds);
  printf("accepted %ld, rate-limited %ld, lock timeouts %ld, database failures %ld; "
         "AI calls %ld, %ld of them answered with the fallback\n",
         acc, limited, lock_failed, db_failed, atomic_load(&s->ai_calls),
         atomic_load(&s->ai_failed));
  print_operations(s);
  print_objects(s);
  int rc = write_prometheus(s);
  if (rc == 0) printf("\nPrometheus text written to %s\n", s->opt.prom_path);

  /* The check: every accepted message is one point and one message row;
   * nothing refused or failed left a trace. */
  char points[32], rows[32];
  if (sim_query(s, "SELECT coalesce(sum(points), 0) FROM bot_users", points, sizeof points) != 0 ||
      sim_query(s, "SELECT count(*) FROM bot_msgs", rows, sizeof rows) != 0)
    return 1;
  long p = atol(points), r = atol(rows);
  int books_ok = fin == acc + limited + lock_failed + db_failed;
  if (p == acc && r == acc && books_ok) {
    printf("check: %ld points stored = %ld messages accepted: OK\n", p, acc);
    return rc == 0 ? 0 : 1;
  }
  printf("check FAILED: %ld points and %ld message rows stored, %ld messages accepted "
         "(%ld finished = %ld accepted + %ld limited + %ld lock + %ld db: %s)\n",
         p, r, acc, fin, acc, limited, lock_failed, db_failed, books_ok ? "adds up" : "does not add up");
  return 1;
}

/* bot_sim: the origin's chat bot under load, on sluice. See bot_sim.h for
 * what a message does, and `bot_sim --help` for the workload options.
 *
 *   bot_sim --conninfo="host=127.0.0.1 port=5432 dbname=postgres" --users=1000
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bot_sim.h"

/* The schema. bot_add_point is idempotent by message id (a retry after an
 * ambiguous failure adds nothing twice), and raises a real serialization
 * failure when asked to, so the retry path runs against the server. */
static const char *const setup_sql[] = {
    "DROP TABLE IF EXISTS bot_msgs, bot_users",
    "CREATE TABLE bot_users (id int PRIMARY KEY, points bigint NOT NULL DEFAULT 0)",
    "CREATE TABLE bot_msgs (id bigint PRIMARY KEY, user_id int NOT NULL)",
    "CREATE OR REPLACE FUNCTION bot_add_point(p_msg bigint, p_user int, p_fail boolean)\n"
    "RETURNS void LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "  IF p_fail THEN\n"
    "    RAISE EXCEPTION 'simulated conflict' USING ERRCODE = 'serialization_failure';\n"
    "  END IF;\n"
    "  INSERT INTO bot_msgs (id, user_id) VALUES (p_msg, p_user) ON CONFLICT (id) DO NOTHING;\n"
    "  IF FOUND THEN\n"
    "    UPDATE bot_users SET points = points + 1 WHERE id = p_user;\n"
    "  END IF;\n"
    "END $$",
};

static int fail_with(const char *what) {
  fprintf(stderr, "bot_sim: %s: %s\n", what, sluice_error_message());
  return 1;
}

static void begin(void *ud, int status) {
  (void)status;
  sim_pump(ud); /* start_ns was set before the post, which orders it */
}

static int make_objects(struct sim *s) {
  const struct sim_options *o = &s->opt;
  if (sluice_runtime_new(&s->rt, NULL) != 0) return fail_with("runtime");
  if (sluice_monitor_new(&s->mon, s->rt, NULL) != 0) return fail_with("monitor");
  sluice_monitor_series(s->mon, "message", 7, &s->series_message);

  sluice_pg_pool_options po = SLUICE_PG_POOL_OPTIONS_INIT;
  po.conninfo = o->conninfo;
  po.min_size = 1;
  po.max_size = (uint32_t)o->pool_size;
  po.monitor = s->mon;
  if (sluice_pg_pool_new(&s->pool, s->rt, &po) != 0) return fail_with("PostgreSQL pool");

  sluice_limiter_options lo = SLUICE_LIMITER_OPTIONS_INIT;
  lo.algorithm = SLUICE_LIMITER_SLIDING_LOG; /* users are told an exact rule */
  lo.limit = (uint64_t)o->user_limit;
  lo.window_ns = (uint64_t)o->user_window_ms * 1000000u;
  lo.max_keys = (uint64_t)o->users + 1000;
  lo.monitor = s->mon;
  lo.name = "limit.user";
  if (sluice_limiter_new(&s->user_limit, s->rt, &lo) != 0) return fail_with("user limiter");
  lo.algorithm = SLUICE_LIMITER_SLIDING_WINDOW; /* O(1) per group whatever the limit */
  lo.limit = (uint64_t)o->group_limit;
  lo.window_ns = (uint64_t)o->group_window_ms * 1000000u;
  lo.max_keys = (uint64_t)o->groups + 1000;
  lo.name = "limit.group";
  if (sluice_limiter_new(&s->group_limit, s->rt, &lo) != 0) return fail_with("group limiter");

  sluice_locks_options ko = SLUICE_LOCKS_OPTIONS_INIT;
  ko.monitor = s->mon;
  if (sluice_locks_new(&s->locks, s->rt, &ko) != 0) return fail_with("locks");

  sluice_taskpool_options to = SLUICE_TASKPOOL_OPTIONS_INIT;
  to.max_concurrent = (uint32_t)o->workers;
  to.max_queued = (uint32_t)(o->inflight * 4 + 100);
  to.monitor = s->mon;
  to.name = "ai.task";
  if (sluice_taskpool_new(&s->tasks, s->rt, &to) != 0) return fail_with("task pool");

  sluice_breaker_options bo = SLUICE_BREAKER_OPTIONS_INIT;
  bo.window_calls = 50;
  bo.minimum_calls = 20;
  bo.failure_rate_percent = 80; /* trips when the service is down, not when flaky */
  bo.open_ms = 2000;
  bo.monitor = s->mon;
  bo.name = "ai.breaker";
  if (sluice_breaker_new(&s->ai_breaker, s->rt, &bo) != 0) return fail_with("breaker");

  sluice_retry_options ro = SLUICE_RETRY_OPTIONS_INIT;
  ro.max_attempts = 3;
  ro.base_delay_ms = 20;
  ro.max_delay_ms = 500;
  ro.total_timeout_ms = 10000;
  ro.budget_ratio = 0.5; /* room for retries at the default 20% failure rate */
  ro.breaker = s->ai_breaker;
  ro.monitor = s->mon;
  ro.name = "ai";
  ro.seed = o->seed;
  if (sluice_retry_new(&s->ai_retry, s->rt, &ro) != 0) return fail_with("AI retry policy");
  ro.max_attempts = 5;
  ro.base_delay_ms = 5;
  ro.max_delay_ms = 200;
  ro.budget_ratio = 0.2;
  ro.breaker = NULL;
  ro.name = "db";
  if (sluice_retry_new(&s->db_retry, s->rt, &ro) != 0) return fail_with("database retry policy");
  return 0;
}

static void free_objects(struct sim *s) {
  sluice_retry_free(s->db_retry);
  sluice_retry_free(s->ai_retry);
  if (s->tasks) sluice_taskpool_shutdown(s->tasks, 10000);
  sluice_taskpool_free(s->tasks);
  sluice_breaker_free(s->ai_breaker);
  sluice_locks_free(s->locks);
  sluice_limiter_free(s->group_limit);
  sluice_limiter_free(s->user_limit);
  sluice_pg_pool_free(s->pool);
  sluice_monitor_free(s->mon);
  sluice_runtime_free(s->rt);
}

int main(int argc, char **argv) {
  static struct sim s; /* zeroed; lives for the whole run */
  int rc = sim_parse_options(argc, argv, &s.opt);
  if (rc != 0) return rc == 1 ? 0 : rc;
  s.rng = s.opt.seed * 0x9E3779B97F4A7C15ull + 1;

  if (make_objects(&s) != 0) {
    free_objects(&s);
    return 1;
  }
  for (size_t i = 0; i < sizeof setup_sql / sizeof *setup_sql; i++)
    if (sim_query(&s, setup_sql[i], NULL, 0) != 0) {
      free_objects(&s);
      return 1;
    }
  char sql[128];
  snprintf(sql, sizeof sql, "INSERT INTO bot_users (id) SELECT generate_series(0, %ld)",
           s.opt.users - 1);
  if (sim_query(&s, sql, NULL, 0) != 0) {
    free_objects(&s);
    return 1;
  }

  printf("bot_sim: %ld messages from %ld users in %ld groups, %ld in flight%s; limits %ld per "
         "%ld ms per user, %ld per %ld ms per group; AI on %.0f%% of messages (%ld ms, %.0f%% "
         "failing), %ld AI workers, %ld connections\n",
         s.opt.messages, s.opt.users, s.opt.groups, s.opt.inflight,
         s.opt.rate > 0 ? ", paced" : "", s.opt.user_limit, s.opt.user_window_ms,
         s.opt.group_limit, s.opt.group_window_ms, s.opt.ai_percent, s.opt.ai_ms,
         s.opt.ai_fail_percent, s.opt.workers, s.opt.pool_size);
  fflush(stdout);
  uint64_t t0 = sluice_now_ns();
  s.start_ns = t0;
  if (sluice_runtime_post(s.rt, begin, &s, NULL) != 0) {
    free_objects(&s);
    return fail_with("start");
  }
  sim_progress(&s);
  double seconds = (double)(sluice_now_ns() - t0) / 1e9;
  rc = sim_report(&s, seconds);
  free_objects(&s);
  return rc;
}

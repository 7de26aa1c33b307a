/* The bot simulation: users in groups send messages; each message passes
 * the user's and the group's rate limits, takes the user's lock, sometimes
 * asks a simulated "AI service" (blocking calls on the task pool that fail
 * transiently, retried behind a circuit breaker), adds a point to the user
 * in PostgreSQL through the pool (retried), and releases the lock. It ends
 * with a table and checks that the points stored equal the messages
 * accepted.
 *
 * Files: options.c (the command line), message.c (one message's path, on
 * the loop thread), report.c (progress, the table, the Prometheus file, the
 * database check), main.c (wiring). */
#ifndef BOT_SIM_H
#define BOT_SIM_H

#include <stdatomic.h>
#include <stdint.h>

#include <sluice.h>
#include <sluice/taskpool.h>

struct sim_options {
  const char *conninfo;   /* --conninfo, else $SLUICE_PG_CONNINFO */
  long users;             /* --users */
  long groups;            /* --groups: user u is in group u % groups */
  long messages;          /* --messages: how many to send in all */
  long inflight;          /* --inflight: messages being handled at once */
  double rate;            /* --rate: messages per second offered; 0 = as
                             fast as in-flight allows */
  long user_limit;        /* --user-limit per --user-window-ms (sliding log) */
  long user_window_ms;
  long group_limit;       /* --group-limit per --group-window-ms (window counter) */
  long group_window_ms;
  double ai_percent;      /* --ai-percent: messages that call the AI */
  double ai_fail_percent; /* --ai-fail-percent: AI calls that fail (retried) */
  double db_fail_percent; /* --db-fail-percent: updates that hit a simulated
                             serialization failure first (retried) */
  long ai_ms;             /* --ai-ms: how long an AI call blocks its worker */
  long workers;           /* --workers: task pool limit (origin default 20) */
  long pool_size;         /* --pool-size: PostgreSQL connections */
  const char *prom_path;  /* --prom: where the Prometheus text goes */
  uint64_t seed;          /* --seed */
  int quiet;              /* --quiet: no progress line */
};

/* Parses argv into *o (defaults first). Returns 0, or 2 after printing the
 * problem (or 1 after printing --help). */
int sim_parse_options(int argc, char **argv, struct sim_options *o);

/* Everything the messages share. */
struct sim {
  struct sim_options opt;
  sluice_runtime *rt;
  sluice_monitor *mon;
  sluice_limiter *user_limit, *group_limit;
  sluice_locks *locks;
  sluice_taskpool *tasks;
  sluice_breaker *ai_breaker;
  sluice_retry *ai_retry, *db_retry;
  sluice_pg_pool *pool;
  uint32_t series_message;

  /* Loop thread only. */
  long started, inflight;
  uint64_t start_ns, rng;
  int pacing_timer; /* a timer for the next paced message is pending */
  int pumping;      /* inside sim_pump: a nested call returns at once */

  /* Read by the progress line on the main thread. */
  atomic_long finished, accepted, rate_limited, lock_failed, db_failed, ai_failed, ai_calls;
  atomic_int done; /* 1 once every message finished */
};

/* Loop thread: starts messages while in-flight, the count and the pacing
 * allow. Called once to begin and again as messages finish. */
void sim_pump(struct sim *s);

/* Main thread: prints progress until every message has finished. */
void sim_progress(struct sim *s);

/* Main thread, after the run: the table, the Prometheus file, and the
 * database check. Returns 0 if the points stored match. */
int sim_report(struct sim *s, double seconds);

/* Runs one statement on the pool and waits (main thread). Fills the first
 * value of the first row into `out` (may be NULL). Returns the status. */
int sim_query(struct sim *s, const char *sql, char *out, size_t out_len);

#endif

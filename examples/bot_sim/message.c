/* One message's path, every step on the loop thread:
 *   limits (user AND group, all or nothing)
 *   -> the user's lock (FIFO, with a deadline)
 *   -> sometimes the AI service (a blocking call on the task pool, retried
 *      behind a circuit breaker; a failure gets the fallback reply)
 *   -> one point for the user in PostgreSQL (retried; idempotent by the
 *      message id, so a retry after an ambiguous failure never counts twice)
 *   -> release the lock.
 * The random choices come from one seeded generator read only on the loop
 * thread, so a run is the same sequence of decisions for the same seed. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bot_sim.h"

struct message {
  struct sim *s;
  long id;
  long user;
  char ukey[24], gkey[24];
  size_t ulen, glen;
  uint64_t t0;
  int want_ai;
  sluice_lock_guard *guard;
};

/* One AI attempt, handed to a task pool worker. */
struct ai_call {
  sluice_retry_attempt *attempt;
  long ms;
  int fail;
};

static uint64_t next_random(struct sim *s) {
  /* xorshift64*: plenty for picking users and failures. */
  s->rng ^= s->rng >> 12;
  s->rng ^= s->rng << 25;
  s->rng ^= s->rng >> 27;
  return s->rng * 0x2545F4914F6CDD1Dull;
}

static int chance(struct sim *s, double percent) {
  return (double)(next_random(s) >> 11) * (100.0 / 9007199254740992.0) < percent;
}

/* The end of a message: figures, then the slot goes back to the pump. */
static void finish(struct message *m, int status, int passed_limits) {
  struct sim *s = m->s;
  if (passed_limits)
    sluice_monitor_record_id(s->mon, s->series_message, sluice_now_ns() - m->t0, status);
  if (m->guard) sluice_locks_release(s->locks, m->guard);
  free(m);
  s->inflight--;
  if (atomic_fetch_add(&s->finished, 1) + 1 == s->opt.messages) atomic_store(&s->done, 1);
}

static void finish_and_pump(struct message *m, int status) {
  struct sim *s = m->s;
  finish(m, status, 1);
  sim_pump(s);
}

/* ---- the database step ------------------------------------------------- */

static void db_result(void *ud, int status, sluice_pg_result *r) {
  sluice_retry_attempt *attempt = ud;
  /* Serialization failures (40001) and failures before sending are
   * retryable; the statement is idempotent, so an ambiguous one is too. */
  sluice_retry_attempt_done(attempt, sluice_pg_retry_outcome(r, 1), status, 0);
  sluice_pg_result_free(r);
}

static void db_attempt(void *ud, sluice_retry_attempt *attempt) {
  struct message *m = ud;
  struct sim *s = m->s;
  char id[24], user[24];
  snprintf(id, sizeof id, "%ld", m->id);
  snprintf(user, sizeof user, "%ld", m->user);
  const char *params[] = {id, user, chance(s, s->opt.db_fail_percent) ? "t" : "f"};
  sluice_pg_query_options qo = SLUICE_PG_QUERY_OPTIONS_INIT;
  qo.timeout_ms = 5000;
  qo.flags = SLUICE_PG_IDEMPOTENT;
  int rc = sluice_pg_pool_query(s->pool, "SELECT bot_add_point($1::bigint, $2::int, $3::boolean)",
                                3, params, NULL, NULL, &qo, db_result, attempt, NULL, NULL);
  if (rc != 0)
    sluice_retry_attempt_done(attempt, rc == SLUICE_EFULL ? SLUICE_RETRY_RETRYABLE
                                                          : SLUICE_RETRY_PERMANENT, rc, 0);
}

static void db_done(void *ud, int status, int last_code, uint32_t attempts) {
  struct message *m = ud;
  (void)last_code;
  (void)attempts;
  atomic_fetch_add(status == 0 ? &m->s->accepted : &m->s->db_failed, 1);
  finish_and_pump(m, status);
}

static void db_start(struct message *m) {
  int rc = sluice_retry_run(m->s->db_retry, 0, db_attempt, db_done, m, NULL, NULL);
  if (rc != 0) {
    atomic_fetch_add(&m->s->db_failed, 1);
    finish_and_pump(m, rc);
  }
}

/* ---- the AI step ------------------------------------------------------- */

/* On a task pool worker: the blocking call to the "AI service". */
static int ai_work(void *ud) {
  struct ai_call *c = ud;
  struct timespec ts = {c->ms / 1000, (c->ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
  return c->fail ? SLUICE_EUNREACHABLE : 0;
}

static void ai_work_done(void *ud, int status) {
  struct ai_call *c = ud;
  int outcome = status == 0 ? SLUICE_RETRY_SUCCESS
                : status == SLUICE_EUNREACHABLE || status == SLUICE_ETIMEDOUT ||
                        status == SLUICE_EFULL
                    ? SLUICE_RETRY_RETRYABLE
                    : SLUICE_RETRY_PERMANENT;
  sluice_retry_attempt_done(c->attempt, outcome, status, 0);
}

static void ai_attempt(void *ud, sluice_retry_attempt *attempt) {
  struct message *m = ud;
  struct sim *s = m->s;
  struct ai_call *c = malloc(sizeof *c);
  if (!c) {
    sluice_retry_attempt_done(attempt, SLUICE_RETRY_PERMANENT, SLUICE_ENOMEM, 0);
    return;
  }
  c->attempt = attempt;
  c->ms = s->opt.ai_ms;
  c->fail = chance(s, s->opt.ai_fail_percent);
  int rc = sluice_taskpool_submit(s->tasks, ai_work, SLUICE_PRIORITY_NORMAL, 10000, ai_work_done,
                                  c, free, NULL);
  if (rc != 0) {
    free(c);
    sluice_retry_attempt_done(attempt, rc == SLUICE_EFULL ? SLUICE_RETRY_RETRYABLE
                                                          : SLUICE_RETRY_PERMANENT, rc, 0);
  }
}

static void ai_done(void *ud, int status, int last_code, uint32_t attempts) {
  struct message *m = ud;
  (void)last_code;
  (void)attempts;
  /* The bot answers with its fallback reply; the message still counts. */
  if (status != 0) atomic_fetch_add(&m->s->ai_failed, 1);
  db_start(m);
}

/* ---- the lock and the start -------------------------------------------- */

static void on_locked(void *ud, int status, sluice_lock_guard *guard) {
  struct message *m = ud;
  struct sim *s = m->s;
  if (status != 0) {
    atomic_fetch_add(&s->lock_failed, 1);
    finish_and_pump(m, status);
    return;
  }
  m->guard = guard;
  if (!m->want_ai) {
    db_start(m);
    return;
  }
  atomic_fetch_add(&s->ai_calls, 1);
  int rc = sluice_retry_run(s->ai_retry, 0, ai_attempt, ai_done, m, NULL, NULL);
  if (rc != 0) {
    atomic_fetch_add(&s->ai_failed, 1);
    db_start(m);
  }
}

/* Starts one message. Returns 1 if it already finished (refused or failed
 * at once), so the pump goes on without recursing. */
static int start_message(struct sim *s) {
  struct message *m = calloc(1, sizeof *m);
  if (!m) {
    fprintf(stderr, "bot_sim: out of memory\n");
    abort();
  }
  m->s = s;
  m->id = s->started;
  m->user = (long)(next_random(s) % (uint64_t)s->opt.users);
  m->ulen = (size_t)snprintf(m->ukey, sizeof m->ukey, "u%ld", m->user);
  m->glen = (size_t)snprintf(m->gkey, sizeof m->gkey, "g%ld", m->user % s->opt.groups);
  m->want_ai = chance(s, s->opt.ai_percent);
  m->t0 = sluice_now_ns();

  sluice_limiter_item items[2] = {{s->user_limit, m->ukey, m->ulen, 1},
                                  {s->group_limit, m->gkey, m->glen, 1}};
  int rc = sluice_limiter_check_many(items, 2, NULL);
  if (rc != 0) {
    /* EREJECTED, or ELIMIT if more users are active than the limiter
     * tracks: either way the bot answers "slow down". */
    atomic_fetch_add(&s->rate_limited, 1);
    finish(m, rc, 0);
    return 1;
  }
  rc = sluice_locks_acquire(s->locks, m->ukey, m->ulen, SLUICE_LOCK_EXCLUSIVE, 5000, on_locked, m,
                            NULL, NULL);
  if (rc != 0) {
    atomic_fetch_add(&s->lock_failed, 1);
    finish(m, rc, 1);
    return 1;
  }
  return 0;
}

static void on_pace(void *ud, int status) {
  struct sim *s = ud;
  s->pacing_timer = 0;
  if (status == 0) sim_pump(s);
}

void sim_pump(struct sim *s) {
  if (s->pumping) return; /* the outer call's loop picks up the free slot */
  s->pumping = 1;
  while (s->started < s->opt.messages && s->inflight < s->opt.inflight) {
    if (s->opt.rate > 0) {
      uint64_t due = s->start_ns + (uint64_t)((double)s->started * 1e9 / s->opt.rate);
      uint64_t now = sluice_now_ns();
      if (now < due) {
        if (!s->pacing_timer &&
            sluice_runtime_timer(s->rt, (due - now + 999999) / 1000000, on_pace, s, NULL, NULL) == 0)
          s->pacing_timer = 1;
        break;
      }
    }
    s->started++;
    s->inflight++;
    start_message(s);
  }
  s->pumping = 0;
}

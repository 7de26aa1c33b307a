/* Keyed locks in a chat bot: one handler at a time per user, a user and
 * their group taken together, a database write fenced by the lock's token,
 * and a handler that forgot to release found by the held-too-long report.
 *
 *   locks_example
 */
#include <sluice.h>
#include <sluice/locks.h>
#include <stdio.h>
#include <string.h>

/* The "database": a row per user with the fencing token of its last
 * writer. A write carrying an older token than the row's is refused, so a
 * holder that lost its lock (it stalled past a deadline) cannot clobber a
 * newer holder's write. */
static uint64_t row_token;
static int row_points;

static int db_add_points(uint64_t token, int points) {
  if (token < row_token) return -1; /* stale holder */
  row_token = token;
  row_points += points;
  return 0;
}

static void on_held_too_long(void *ud, const void *key, size_t len, uint64_t token,
                             uint64_t held_ns) {
  (void)ud;
  printf("warning: %.*s held for %.0f ms (token %llu): a handler forgot to release?\n",
         (int)len, (const char *)key, held_ns / 1e6, (unsigned long long)token);
}

/* An asynchronous acquire completes on the loop thread with the guard. */
static void on_user_locked(void *ud, int status, sluice_lock_guard *g) {
  sluice_locks *locks = ud;
  if (status != 0) {
    printf("async lock failed: %s\n", sluice_strerror(status));
    return;
  }
  uint64_t token;
  sluice_locks_token(locks, g, &token);
  db_add_points(token, 5);
  printf("async handler: +5 points (token %llu)\n", (unsigned long long)token);
  sluice_locks_release(locks, g);
}

static void nap_done(void *ud, int status) {
  (void)ud;
  (void)status;
}

int main(void) {
  sluice_runtime *rt;
  if (sluice_runtime_new(&rt, NULL) != 0) return 1;
  sluice_locks_options o = SLUICE_LOCKS_OPTIONS_INIT;
  o.hold_limit_ms = 50;
  o.on_held_too_long = on_held_too_long;
  sluice_locks *locks;
  if (sluice_locks_new(&locks, rt, &o) != 0) {
    fprintf(stderr, "sluice_locks_new: %s\n", sluice_error_message());
    return 1;
  }

  /* 1. A message handler: one at a time per user (blocking form). */
  sluice_lock_guard *g;
  if (sluice_locks_lock(locks, "user:42", 7, SLUICE_LOCK_EXCLUSIVE, 1000, &g) == 0) {
    uint64_t token;
    sluice_locks_token(locks, g, &token);
    db_add_points(token, 10);
    printf("handler: +10 points (token %llu)\n", (unsigned long long)token);
    sluice_locks_release(locks, g);
  }

  /* 2. A second release of the same guard is refused, not a corruption. */
  int rc = sluice_locks_release(locks, g);
  printf("second release: %s\n", sluice_err_name(rc));

  /* 3. The user and their group at once, all or nothing; the order of the
   *    keys does not matter (they are sorted), so no two handlers deadlock. */
  sluice_lock_key both[2] = {{"group:7", 7, SLUICE_LOCK_SHARED},
                             {"user:42", 7, SLUICE_LOCK_EXCLUSIVE}};
  if (sluice_locks_lock_many(locks, both, 2, 1000, &g) == 0) {
    printf("user and group held together\n");
    sluice_locks_release(locks, g);
  }

  /* 4. Asynchronous: the callback runs on the loop thread. */
  sluice_op *op;
  if (sluice_locks_acquire(locks, "user:42", 7, SLUICE_LOCK_EXCLUSIVE, 1000, on_user_locked,
                           locks, NULL, &op) == 0) {
    sluice_op_wait(op, -1, NULL);
    sluice_op_free(op);
  }

  /* 5. A try that finds the key busy does not wait. */
  sluice_lock_guard *forgotten, *other;
  sluice_locks_try(locks, "user:99", 7, SLUICE_LOCK_EXCLUSIVE, &forgotten);
  rc = sluice_locks_try(locks, "user:99", 7, SLUICE_LOCK_EXCLUSIVE, &other);
  printf("try on a held key: %s\n", sluice_err_name(rc));

  /* 6. ... and "forgotten" is reported once it has been held 50 ms (the
   *    report runs on the loop thread while this thread waits). */
  sluice_op *nap;
  if (sluice_runtime_timer(rt, 200, nap_done, NULL, NULL, &nap) == 0) {
    sluice_op_wait(nap, -1, NULL);
    sluice_op_free(nap);
  }
  sluice_locks_release(locks, forgotten);

  sluice_locks_stats st;
  memset(&st, 0, sizeof st);
  st.size = sizeof st;
  sluice_locks_stats_get(locks, &st);
  printf("points %d; grants %llu, held too long %llu, live keys %llu, cached entries %llu\n",
         row_points, (unsigned long long)st.acquisitions, (unsigned long long)st.held_too_long,
         (unsigned long long)st.live_keys, (unsigned long long)st.cached_entries);
  sluice_locks_free(locks);
  sluice_runtime_free(rt);
  return 0;
}

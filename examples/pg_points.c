/*
 * pg_points: many "users" add points concurrently through the pool, the way
 * a bot records activity, then the total is checked against the updates
 * that were accepted. Shows one-shot queries with deadlines, a transaction
 * on a borrowed connection, and the pool's figures.
 *
 *   pg_points CONNINFO [users] [updates-per-user] [max-size]
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <sluice.h>
#include <sluice/pg.h>

static atomic_long g_ok, g_failed;
static sluice_pg_pool *g_pool;

/* Each user sends its updates one after another, as chat messages come:
 * the next one leaves when the previous one is answered. */
struct user {
  char id[16];
  int left;
};

static void send_update(struct user *u);

static void updated(void *ud, int status, sluice_pg_result *r) {
  struct user *u = ud;
  if (status == 0) {
    atomic_fetch_add(&g_ok, 1);
  } else if (atomic_fetch_add(&g_failed, 1) < 5) {
    fprintf(stderr, "update failed: %s: %s\n", sluice_err_name(status), sluice_pg_result_message(r));
  }
  sluice_pg_result_free(r);
  if (--u->left > 0) send_update(u);
}

static void send_update(struct user *u) {
  sluice_pg_query_options qo = SLUICE_PG_QUERY_OPTIONS_INIT;
  qo.timeout_ms = 30000;
  const char *params[] = {u->id};
  int rc = sluice_pg_pool_query(g_pool,
                                "INSERT INTO points_demo VALUES ($1::int, 1) ON CONFLICT (user_id) "
                                "DO UPDATE SET points = points_demo.points + 1",
                                1, params, NULL, NULL, &qo, updated, u, NULL, NULL);
  if (rc != 0) atomic_fetch_add(&g_failed, u->left); /* not taken: nor are the rest */
}

struct answer {
  int status;
  char text[160];
};

static void answered(void *ud, int status, sluice_pg_result *r) {
  struct answer *a = ud;
  const char *v = NULL;
  size_t len = 0;
  a->status = status;
  if (status == 0 && sluice_pg_result_value(r, 0, 0, &v, &len) == 0)
    snprintf(a->text, sizeof a->text, "%s", v);
  else
    snprintf(a->text, sizeof a->text, "%s", sluice_pg_result_message(r));
  sluice_pg_result_free(r);
}

/* Runs one statement on the pool or on a borrowed connection and waits. */
static int run(sluice_pg_pool *pool, sluice_pg_conn *conn, const char *sql, struct answer *a) {
  sluice_op *op = NULL;
  int rc = conn ? sluice_pg_conn_query(conn, sql, 0, NULL, NULL, NULL, NULL, answered, a, NULL, &op)
                : sluice_pg_pool_query(pool, sql, 0, NULL, NULL, NULL, NULL, answered, a, NULL, &op);
  if (rc != 0) {
    snprintf(a->text, sizeof a->text, "%s", sluice_error_message());
    return rc;
  }
  sluice_op_wait(op, -1, NULL);
  sluice_op_free(op);
  return a->status;
}

static void nothing(void *ud, int status) {
  (void)ud;
  (void)status;
}

static void close_done(void *ud, int status) { ((struct answer *)ud)->status = status; }

static void pause_ms(sluice_runtime *rt, uint64_t ms) {
  sluice_op *t = NULL;
  if (sluice_runtime_timer(rt, ms, nothing, NULL, NULL, &t) == 0) {
    sluice_op_wait(t, -1, NULL);
    sluice_op_free(t);
  }
}

static void acquired(void *ud, int status, sluice_pg_conn *conn) {
  if (status == 0) *(sluice_pg_conn **)ud = conn;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: pg_points CONNINFO [users] [updates-per-user] [max-size]\n");
    return 2;
  }
  int users = argc > 2 ? atoi(argv[2]) : 100;
  int updates = argc > 3 ? atoi(argv[3]) : 50;
  int max_size = argc > 4 ? atoi(argv[4]) : 8;
  if (users < 1 || updates < 1 || max_size < 1 || max_size > 1000) {
    fprintf(stderr, "users, updates and max-size must be positive (max-size at most 1000)\n");
    return 2;
  }

  sluice_runtime *rt = NULL;
  if (sluice_runtime_new(&rt, NULL) != 0) return 1;
  sluice_pg_pool_options o = SLUICE_PG_POOL_OPTIONS_INIT;
  o.conninfo = argv[1];
  o.min_size = 2;
  o.max_size = (uint32_t)max_size;
  sluice_pg_pool *pool = NULL;
  if (sluice_pg_pool_new(&pool, rt, &o) != 0) {
    fprintf(stderr, "pool: %s\n", sluice_error_message());
    return 1;
  }

  /* Setup in one transaction on a borrowed connection. */
  sluice_pg_conn *conn = NULL;
  sluice_op *op = NULL;
  sluice_pg_pool_acquire(pool, 10000, acquired, &conn, NULL, &op);
  sluice_op_wait(op, -1, NULL);
  sluice_op_free(op);
  struct answer a;
  if (!conn || run(NULL, conn, "BEGIN", &a) != 0 ||
      run(NULL, conn, "DROP TABLE IF EXISTS points_demo", &a) != 0 ||
      run(NULL, conn, "CREATE TABLE points_demo (user_id int PRIMARY KEY, points bigint NOT NULL)", &a) != 0 ||
      run(NULL, conn, "COMMIT", &a) != 0) {
    fprintf(stderr, "setup failed: %s\n", conn ? a.text : "no connection");
    return 1;
  }
  sluice_pg_conn_release(conn);

  uint64_t t0 = sluice_now_ns();
  long total = (long)users * updates;
  struct user *all = calloc((size_t)users, sizeof *all);
  g_pool = pool;
  for (int u = 0; u < users; u++) {
    snprintf(all[u].id, sizeof all[u].id, "%d", u);
    all[u].left = updates;
    send_update(&all[u]);
  }
  while (atomic_load(&g_ok) + atomic_load(&g_failed) < total) pause_ms(rt, 2);
  double secs = (double)(sluice_now_ns() - t0) / 1e9;

  int rc = run(pool, NULL, "SELECT coalesce(sum(points), 0) FROM points_demo", &a);
  long stored = rc == 0 ? atol(a.text) : -1;
  sluice_pg_pool_stats st = {sizeof st};
  sluice_pg_pool_stats_get(pool, &st);
  printf("%ld updates by %d users in %.2f s (%.0f/s), %ld failed\n", total, users, secs,
         (double)total / secs, atomic_load(&g_failed));
  printf("pool: %u connections (peak %u), %llu connects, peak waiting %u, mean hold %.2f ms\n",
         st.total, st.peak_total, (unsigned long long)st.connects, st.peak_waiting,
         (double)st.hold_ns_recent / 1e6);
  printf("points stored %ld, updates accepted %ld: %s\n", stored, atomic_load(&g_ok),
         stored == atomic_load(&g_ok) ? "consistent" : "MISMATCH");

  struct answer closed = {1, ""};
  sluice_pg_pool_close(pool, 5000, close_done, &closed, NULL, &op);
  sluice_op_wait(op, -1, NULL);
  sluice_op_free(op);
  sluice_pg_pool_free(pool);
  sluice_runtime_free(rt);
  free(all);
  return stored == atomic_load(&g_ok) && atomic_load(&g_failed) == 0 ? 0 : 1;
}

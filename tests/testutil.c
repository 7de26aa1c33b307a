#include "testutil.h"

#include <string.h>

sluice_runtime *tu_runtime(void) {
  sluice_runtime *rt = NULL;
  assert_ok(sluice_runtime_new(&rt, NULL));
  assert_non_null(rt);
  return rt;
}

void tu_count_cb(void *user_data, int status) {
  tu_counter *c = user_data;
  c->calls++;
  c->last_status = status;
  if (status <= 0 && status > -32) c->by_status[-status]++;
}

void tu_count_free(void *user_data) { ((tu_counter *)user_data)->freed++; }

struct on_loop {
  void (*fn)(void *);
  void *arg;
};

static void on_loop_cb(void *user_data, int status) {
  struct on_loop *o = user_data;
  if (status == 0) o->fn(o->arg);
}

void tu_on_loop(sluice_runtime *rt, void (*fn)(void *), void *arg) {
  /* A zero-delay timer gives an op to wait on; posts do not. */
  struct on_loop o = {fn, arg};
  sluice_op *op = NULL;
  assert_ok(sluice_runtime_timer(rt, 0, on_loop_cb, &o, NULL, &op));
  int status = -1;
  assert_ok(sluice_op_wait(op, -1, &status));
  assert_int_equal(status, 0);
  sluice_op_free(op);
}

/* ---- the throwaway PostgreSQL server ---------------------------------- */

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

static void load_pg_env(void) {
  static int loaded = 0;
  if (loaded) return;
  loaded = 1;
  const char *path = getenv("SLUICE_PG_ENV");
  if (!path) return;
  FILE *f = fopen(path, "r");
  if (!f) return;
  char line[1024];
  while (fgets(line, sizeof line, f)) {
    char key[128], val[896];
    if (sscanf(line, "export %127[^=]='%895[^']'", key, val) == 2) setenv(key, val, 1);
  }
  fclose(f);
}

const char *tu_pg_conninfo(void) {
  load_pg_env();
  const char *c = getenv("SLUICE_PG_CONNINFO");
  if (!c) fail_msg("no PostgreSQL: run through ctest (fixture pg_start) or set SLUICE_PG_CONNINFO");
  return c;
}

void tu_pg_ctl(const char *args) {
  load_pg_env();
  const char *ctl = getenv("SLUICE_PG_CTL");
  if (!ctl) fail_msg("SLUICE_PG_CTL is not set");
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s %s", ctl, args);
  if (system(cmd) != 0) fail_msg("failed: %s", cmd);
}

static PGresult *exec_blocking(const char *sql, PGconn **out) {
  PGconn *c = PQconnectdb(tu_pg_conninfo());
  if (PQstatus(c) != CONNECTION_OK) fail_msg("test connection: %s", PQerrorMessage(c));
  PGresult *r = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) fail_msg("%s: %s", sql, PQerrorMessage(c));
  *out = c;
  return r;
}

void tu_pg_exec(const char *sql) {
  PGconn *c;
  PQclear(exec_blocking(sql, &c));
  PQfinish(c);
}

long tu_pg_long(const char *sql) {
  PGconn *c;
  PGresult *r = exec_blocking(sql, &c);
  long v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? atol(PQgetvalue(r, 0, 0)) : -1;
  PQclear(r);
  PQfinish(c);
  return v;
}

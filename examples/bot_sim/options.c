/* The bot simulation's command line: every workload figure is an option. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bot_sim.h"

static const char usage[] =
    "usage: bot_sim [options]\n"
    "  --conninfo=S          PostgreSQL to use (default $SLUICE_PG_CONNINFO)\n"
    "  --users=N             users (default 1000)\n"
    "  --groups=N            groups; user u is in group u %% groups (default 50)\n"
    "  --messages=N          messages to send in all (default 20000)\n"
    "  --inflight=N          messages handled at once (default 64)\n"
    "  --rate=R              messages offered per second; 0: as fast as in-flight allows (default 0)\n"
    "  --user-limit=N        per user, per --user-window-ms (default 20 per 60000: the origin's)\n"
    "  --user-window-ms=MS\n"
    "  --group-limit=N       per group, per --group-window-ms (default 300 per 60000)\n"
    "  --group-window-ms=MS\n"
    "  --ai-percent=P        messages that call the AI service (default 10)\n"
    "  --ai-fail-percent=P   AI calls that fail transiently (default 20)\n"
    "  --ai-ms=MS            how long an AI call takes (default 20)\n"
    "  --db-fail-percent=P   updates the server rejects with a serialization\n"
    "                        failure first, retried (default 5)\n"
    "  --workers=N           task pool limit for AI calls (default 20, the origin's)\n"
    "  --pool-size=N         PostgreSQL connections (default 8)\n"
    "  --prom=PATH           Prometheus text output (default bot_sim.prom)\n"
    "  --seed=N              random source (default 1)\n"
    "  --quiet               no progress line\n";

/* "--name=value": the value if arg is that option, else NULL. */
static const char *value_of(const char *arg, const char *name) {
  size_t n = strlen(name);
  if (strncmp(arg, "--", 2) != 0 || strncmp(arg + 2, name, n) != 0 || arg[2 + n] != '=')
    return NULL;
  return arg + 3 + n;
}

static int parse_long(const char *name, const char *v, long min, long max, long *out) {
  char *end;
  long x = strtol(v, &end, 10);
  if (*v == '\0' || *end != '\0' || x < min || x > max) {
    fprintf(stderr, "bot_sim: --%s=%s: expected an integer in %ld..%ld\n", name, v, min, max);
    return 2;
  }
  *out = x;
  return 0;
}

static int parse_double(const char *name, const char *v, double min, double max, double *out) {
  char *end;
  double x = strtod(v, &end);
  if (*v == '\0' || *end != '\0' || !(x >= min && x <= max)) {
    fprintf(stderr, "bot_sim: --%s=%s: expected a number in %g..%g\n", name, v, min, max);
    return 2;
  }
  *out = x;
  return 0;
}

int sim_parse_options(int argc, char **argv, struct sim_options *o) {
  *o = (struct sim_options){
      .conninfo = getenv("SLUICE_PG_CONNINFO"),
      .users = 1000, .groups = 50, .messages = 20000, .inflight = 64, .rate = 0,
      .user_limit = 20, .user_window_ms = 60000, .group_limit = 300, .group_window_ms = 60000,
      .ai_percent = 10, .ai_fail_percent = 20, .db_fail_percent = 5, .ai_ms = 20,
      .workers = 20, .pool_size = 8, .prom_path = "bot_sim.prom", .seed = 1, .quiet = 0,
  };
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    long seed = 0;
    int rc = 0;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(usage, stdout);
      return 1;
    } else if (strcmp(a, "--quiet") == 0) {
      o->quiet = 1;
    } else if ((v = value_of(a, "conninfo"))) {
      o->conninfo = v;
    } else if ((v = value_of(a, "prom"))) {
      o->prom_path = v;
    } else if ((v = value_of(a, "users"))) {
      rc = parse_long("users", v, 1, 100000000, &o->users);
    } else if ((v = value_of(a, "groups"))) {
      rc = parse_long("groups", v, 1, 100000000, &o->groups);
    } else if ((v = value_of(a, "messages"))) {
      rc = parse_long("messages", v, 1, 1000000000, &o->messages);
    } else if ((v = value_of(a, "inflight"))) {
      rc = parse_long("inflight", v, 1, 100000, &o->inflight);
    } else if ((v = value_of(a, "rate"))) {
      rc = parse_double("rate", v, 0, 1e7, &o->rate);
    } else if ((v = value_of(a, "user-limit"))) {
      rc = parse_long("user-limit", v, 1, SLUICE_LIMITER_MAX_LOG, &o->user_limit);
    } else if ((v = value_of(a, "user-window-ms"))) {
      rc = parse_long("user-window-ms", v, 1, 86400000, &o->user_window_ms);
    } else if ((v = value_of(a, "group-limit"))) {
      rc = parse_long("group-limit", v, 1, 1000000000, &o->group_limit);
    } else if ((v = value_of(a, "group-window-ms"))) {
      rc = parse_long("group-window-ms", v, 1, 86400000, &o->group_window_ms);
    } else if ((v = value_of(a, "ai-percent"))) {
      rc = parse_double("ai-percent", v, 0, 100, &o->ai_percent);
    } else if ((v = value_of(a, "ai-fail-percent"))) {
      rc = parse_double("ai-fail-percent", v, 0, 100, &o->ai_fail_percent);
    } else if ((v = value_of(a, "db-fail-percent"))) {
      rc = parse_double("db-fail-percent", v, 0, 100, &o->db_fail_percent);
    } else if ((v = value_of(a, "ai-ms"))) {
      rc = parse_long("ai-ms", v, 0, 60000, &o->ai_ms);
    } else if ((v = value_of(a, "workers"))) {
      rc = parse_long("workers", v, 1, 65536, &o->workers);
    } else if ((v = value_of(a, "pool-size"))) {
      rc = parse_long("pool-size", v, 1, 1000, &o->pool_size);
    } else if ((v = value_of(a, "seed"))) {
      rc = parse_long("seed", v, 0, 0x7fffffffL, &seed);
      o->seed = (uint64_t)seed;
    } else {
      fprintf(stderr, "bot_sim: unknown option %s\n%s", a, usage);
      return 2;
    }
    if (rc) return rc;
  }
  if (!o->conninfo || !*o->conninfo) {
    fprintf(stderr, "bot_sim: no database: give --conninfo or set SLUICE_PG_CONNINFO\n");
    return 2;
  }
  return 0;
}

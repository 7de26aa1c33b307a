/* Shared helpers for the cmocka suite. */
#ifndef SLUICE_TESTUTIL_H
#define SLUICE_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sluice.h>

/* Fails the test with the code's name and the library's message. */
#define assert_ok(expr)                                                     \
  do {                                                                      \
    int rc_ = (expr);                                                       \
    if (rc_ != 0)                                                           \
      fail_msg("%s -> %s (%s)", #expr, sluice_err_name(rc_),               \
               sluice_error_message());                                     \
  } while (0)

#define assert_err(code, expr) assert_int_equal((code), (expr))

/* A runtime with its own loop thread and default options. */
sluice_runtime *tu_runtime(void);

/* Counts completions by status, from the loop thread. */
typedef struct tu_counter {
  int calls;
  int last_status;
  int by_status[32]; /* index: -status, 0..31 */
  int freed;
} tu_counter;

void tu_count_cb(void *user_data, int status);
void tu_count_free(void *user_data);

/* Runs fn on the loop thread and waits for it. */
void tu_on_loop(sluice_runtime *rt, void (*fn)(void *), void *arg);

/* The throwaway PostgreSQL server that the ctest fixture started: reads the
 * file named by $SLUICE_PG_ENV (lines `export KEY='value'`) into the
 * environment. Returns the conninfo; fails the test if there is none. */
const char *tu_pg_conninfo(void);
/* Runs `pg_ctl ARGS` on that server (restart, stop, start). */
void tu_pg_ctl(const char *args);
/* Runs one statement on a fresh blocking libpq connection (test side). */
void tu_pg_exec(const char *sql);
/* Same, returning the first value of the first row as an integer. */
long tu_pg_long(const char *sql);

#endif

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

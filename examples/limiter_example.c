/* Rate limits in a chat bot: each user may send 3 messages per second, each
 * group 5, the whole bot 100 (one check across the three, all or nothing);
 * a spammer is blocked for a while; a background job waits its turn instead
 * of being refused. The limiter reads a clock this program moves by hand, so
 * the output is the same on every run.
 *
 *   limiter_example
 */
#include <sluice.h>
#include <sluice/limiter.h>
#include <stdio.h>
#include <string.h>

static uint64_t fake_now = 1000000000ull; /* ns */

static uint64_t read_clock(void *ud) {
  (void)ud;
  return fake_now;
}

static sluice_limiter *make(int algorithm, uint64_t limit, const char *name) {
  sluice_limiter_options o = SLUICE_LIMITER_OPTIONS_INIT;
  o.algorithm = algorithm;
  o.limit = limit;
  o.window_ns = 1000000000ull; /* one second */
  o.clock = read_clock;
  o.name = name;
  sluice_limiter *l = NULL;
  if (sluice_limiter_new(&l, NULL, &o) != 0)
    fprintf(stderr, "limiter %s: %s\n", name, sluice_error_message());
  return l;
}

/* One message: passes the user's, the group's and the global limit, or
 * none of them is charged. */
static void message(sluice_limiter *user, sluice_limiter *group, sluice_limiter *global,
                    const char *uid, const char *gid) {
  sluice_limiter_item items[3] = {
      {user, uid, strlen(uid), 1},
      {group, gid, strlen(gid), 1},
      {global, "bot", 3, 1},
  };
  sluice_limiter_result r = {sizeof r};
  int rc = sluice_limiter_check_many(items, 3, &r);
  static const char *which[] = {"user", "group", "global"};
  if (rc == 0)
    printf("t=%4.0f ms %s in %s: ok (%llu left in the tightest limit)\n",
           (fake_now - 1000000000ull) / 1e6, uid, gid, (unsigned long long)r.remaining);
  else if (rc == SLUICE_EREJECTED)
    printf("t=%4.0f ms %s in %s: refused by the %s limit%s, retry in %.0f ms\n",
           (fake_now - 1000000000ull) / 1e6, uid, gid, which[r.index],
           r.reason == SLUICE_LIMITER_BLOCKED ? " (blocked)" : "", r.retry_after_ns / 1e6);
  else
    printf("error: %s\n", sluice_error_message());
}

static void on_turn(void *ud, int status) {
  printf("background job: %s\n", status == 0 ? "its turn came" : sluice_strerror(status));
  (void)ud;
}

int main(void) {
  sluice_limiter *user = make(SLUICE_LIMITER_SLIDING_LOG, 3, "user");
  sluice_limiter *group = make(SLUICE_LIMITER_SLIDING_WINDOW, 5, "group");
  sluice_limiter *global = make(SLUICE_LIMITER_GCRA, 100, "global");
  if (!user || !group || !global) return 1;

  /* alice sends four messages 100 ms apart: the fourth is refused by her
   * own limit, and the group is not charged for it. */
  for (int i = 0; i < 4; i++, fake_now += 100000000ull) message(user, group, global, "alice", "g1");
  /* bob in the same group: the group has room for two more. */
  for (int i = 0; i < 3; i++) message(user, group, global, "bob", "g1");
  /* one second after alice's first message, her oldest has aged out. */
  fake_now = 2000000000ull;
  message(user, group, global, "alice", "g2");

  /* mallory spams: blocked for ten seconds. */
  sluice_limiter_block(user, "mallory", 7, 10000000000ull);
  message(user, group, global, "mallory", "g2");

  /* A peek answers without consuming. */
  sluice_limiter_result r = {sizeof r};
  sluice_limiter_peek(user, "alice", 5, 1, &r);
  printf("peek alice: %s, %llu left\n", r.allowed ? "would pass" : "would be refused",
         (unsigned long long)r.remaining);

  sluice_limiter_stats st = {sizeof st};
  sluice_limiter_stats_get(user, &st);
  printf("user limiter: %llu keys, %llu allowed, %llu rejected\n", (unsigned long long)st.keys,
         (unsigned long long)st.allowed, (unsigned long long)st.rejected);
  sluice_limiter_free(user);
  sluice_limiter_free(group);
  sluice_limiter_free(global);

  /* Waiting: a job that may send 2 reports per 200 ms waits for its turn
   * (on the runtime's loop) instead of being refused. This limiter uses the
   * real clock. */
  sluice_runtime *rt;
  if (sluice_runtime_new(&rt, NULL) != 0) return 1;
  sluice_limiter_options o = SLUICE_LIMITER_OPTIONS_INIT;
  o.algorithm = SLUICE_LIMITER_GCRA;
  o.limit = 2;
  o.window_ns = 200000000ull;
  sluice_limiter *jobs;
  if (sluice_limiter_new(&jobs, rt, &o) != 0) return 1;
  for (int i = 0; i < 3; i++) {
    uint64_t t0 = sluice_now_ns();
    int rc = sluice_limiter_wait(jobs, "report", 6, 1, 1000);
    printf("report %d: %s after %s\n", i + 1, rc == 0 ? "sent" : sluice_strerror(rc),
           sluice_now_ns() - t0 > 50000000ull ? "waiting its turn" : "no wait");
  }
  sluice_op *op;
  sluice_limiter_acquire(jobs, "report", 6, 1, 1000, on_turn, NULL, NULL, &op);
  sluice_op_wait(op, -1, NULL);
  sluice_op_free(op);
  sluice_limiter_free(jobs);
  sluice_runtime_free(rt);
  return 0;
}

/* The task pool in a chat bot: blocking work (rendering a reply card) on
 * the pool's worker threads, asynchronous permits around a slow call to an
 * AI service (simulated with a timer), a "busy, try later" answer when
 * nothing is free, priorities, and a graceful shutdown with the figures.
 *
 *   taskpool_example            (prints what happens, exits 0)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice.h>

static void die(const char *what, int rc) {
  fprintf(stderr, "%s: %s (%s)\n", what, sluice_err_name(rc), sluice_error_message());
  exit(1);
}

/* ---- blocking work: runs on a worker thread ---------------------------- */

typedef struct card {
  int user;
  char text[64];
} card;

static int render_card(void *ud) {
  card *c = ud;
  /* Pretend CPU work: build the text. */
  snprintf(c->text, sizeof c->text, "card for user %d", c->user);
  return c->user == 13 ? -1000 : 0; /* an application error, passed on */
}

/* Written by callbacks on the loop thread; main reads them once
 * sluice_taskpool_shutdown has returned (every callback has run by then). */
static int cards_done;

static void card_done(void *ud, int status) { /* the loop thread */
  card *c = ud;
  if (status == 0)
    printf("  rendered: %s\n", c->text);
  else if (status == SLUICE_ECLOSED)
    printf("  user %d: not rendered, shutting down\n", c->user);
  else
    printf("  user %d: failed with %d\n", c->user, status);
  cards_done++;
}

/* ---- asynchronous work under a permit ----------------------------------- */

typedef struct ai_call {
  sluice_taskpool *pool;
  sluice_runtime *rt;
  sluice_permit *permit;
  int user;
} ai_call;

static int calls_done;

static void ai_answered(void *ud, int status) { /* the timer: the "HTTP reply" */
  ai_call *call = ud;
  printf("  AI answered user %d\n", call->user);
  /* The outcome feeds the figures (and the adaptive limit, if on). */
  sluice_taskpool_release(call->pool, call->permit, status == 0 ? 0 : -1);
  calls_done++;
}

static void ai_slot(void *ud, int status, sluice_permit *permit) { /* the loop thread */
  ai_call *call = ud;
  if (status != 0) {
    printf("  user %d: no AI slot (%s)\n", call->user, sluice_err_name(status));
    calls_done++;
    free(call);
    return;
  }
  call->permit = permit;
  /* Start the slow asynchronous call; the permit is held until it ends. */
  int rc = sluice_runtime_timer(call->rt, 20, ai_answered, call, free, NULL);
  if (rc != 0) {
    sluice_taskpool_release(call->pool, permit, rc);
    calls_done++;
    free(call);
  }
}

int main(void) {
  sluice_runtime *rt = NULL;
  int rc = sluice_runtime_new(&rt, NULL);
  if (rc) die("runtime", rc);

  /* The origin's "small machine" configuration: 10 at once. */
  sluice_taskpool_options o = SLUICE_TASKPOOL_OPTIONS_INIT;
  o.max_concurrent = 10;
  o.max_queued = 100;
  o.name = "bot";
  sluice_taskpool *pool = NULL;
  if ((rc = sluice_taskpool_new(&pool, rt, &o))) die("taskpool", rc);

  printf("blocking work, three priorities:\n");
  card cards[6];
  sluice_op *ops[6];
  for (int i = 0; i < 6; i++) {
    cards[i].user = 10 + i;
    int prio = i == 0 ? SLUICE_PRIORITY_HIGH : i < 4 ? SLUICE_PRIORITY_NORMAL : SLUICE_PRIORITY_LOW;
    if ((rc = sluice_taskpool_submit(pool, render_card, prio, 5000, card_done, &cards[i], NULL,
                                     &ops[i])))
      die("submit", rc);
  }
  for (int i = 0; i < 6; i++) {
    sluice_op_wait(ops[i], -1, NULL);
    sluice_op_free(ops[i]);
  }

  printf("AI calls under permits (10 slots, 14 callers):\n");
  for (int i = 0; i < 14; i++) {
    ai_call *call = calloc(1, sizeof *call);
    call->pool = pool;
    call->rt = rt;
    call->user = 100 + i;
    /* Wait at most 1 s for a slot; the callback gets it. */
    rc = sluice_taskpool_acquire(pool, SLUICE_PRIORITY_NORMAL, 1000, ai_slot, call, NULL, NULL);
    if (rc) die("acquire", rc);
  }

  /* "Busy, try later": take a slot only if one is free right now. */
  sluice_permit *p = NULL;
  rc = sluice_taskpool_try_acquire(pool, &p);
  if (rc == SLUICE_EAGAIN)
    printf("  a new message: every slot busy, reply \"try again in a moment\"\n");
  else if (rc == 0)
    sluice_taskpool_release(pool, p, 0);
  else
    die("try_acquire", rc);

  /* Graceful shutdown: nothing new, what runs finishes (within 5 s). */
  rc = sluice_taskpool_shutdown(pool, 5000);
  if (rc) die("shutdown", rc);
  printf("shut down: %d cards, %d AI calls finished\n", cards_done,
         calls_done);

  sluice_taskpool_stats st;
  memset(&st, 0, sizeof st);
  st.size = sizeof st;
  sluice_taskpool_stats_get(pool, &st);
  printf("figures: submitted %llu = completed %llu + failed %llu + rejected %llu + expired %llu"
         " + cancelled %llu + closed %llu + in flight %llu; peak running %llu, peak queued %llu\n",
         (unsigned long long)st.submitted, (unsigned long long)st.completed,
         (unsigned long long)st.failed, (unsigned long long)st.rejected,
         (unsigned long long)st.expired, (unsigned long long)st.cancelled,
         (unsigned long long)st.closed,
         (unsigned long long)(st.queued + st.room_waiting + st.running),
         (unsigned long long)st.peak_running, (unsigned long long)st.peak_queued);
  sluice_taskpool_free(pool);
  sluice_runtime_free(rt);
  return 0;
}

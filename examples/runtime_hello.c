/*
 * runtime_hello: a runtime with its own loop thread. Posts work from
 * several threads, starts a timer and cancels another, waits for one from
 * this thread, and prints the runtime's figures.
 *
 *   runtime_hello [threads] [posts-per-thread] [timer-ms]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <sluice.h>

struct feeder {
  sluice_runtime *rt;
  long posts;
};

static void count_cb(void *user_data, int status) {
  long *counter = user_data; /* only the loop thread touches it */
  if (status == 0) ++*counter;
}

static long g_ran = 0;

static void *feed(void *arg) {
  struct feeder *f = arg;
  for (long i = 0; i < f->posts; i++) {
    int rc = sluice_runtime_post(f->rt, count_cb, &g_ran, NULL);
    if (rc != 0) {
      fprintf(stderr, "post: %s (%s)\n", sluice_strerror(rc), sluice_error_message());
      return NULL;
    }
  }
  return NULL;
}

static void timer_cb(void *user_data, int status) {
  printf("timer '%s' completed: %s\n", (const char *)user_data, sluice_err_name(status));
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 4;
  long posts = argc > 2 ? atol(argv[2]) : 10000;
  uint64_t timer_ms = argc > 3 ? strtoull(argv[3], NULL, 10) : 20;
  if (threads < 1 || threads > 64 || posts < 0) {
    fprintf(stderr, "usage: runtime_hello [threads 1..64] [posts-per-thread] [timer-ms]\n");
    return 2;
  }
  if (sluice_version() >> 16 != SLUICE_VERSION_MAJOR) {
    fprintf(stderr, "loaded sluice %s, built against %s\n", sluice_version_string(),
            SLUICE_VERSION_STRING);
    return 1;
  }

  sluice_runtime_options opts;
  sluice_runtime_options_init(&opts, SLUICE_RUNTIME_OPTIONS_VERSION);
  opts.lag_interval_ms = 10;
  sluice_runtime *rt = NULL;
  int rc = sluice_runtime_new(&rt, &opts);
  if (rc != 0) {
    fprintf(stderr, "runtime: %s: %s\n", sluice_err_name(rc), sluice_error_message());
    return 1;
  }

  pthread_t tid[64];
  struct feeder f = {rt, posts};
  for (int i = 0; i < threads; i++) pthread_create(&tid[i], NULL, feed, &f);
  for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL);

  sluice_op *fires = NULL, *cancelled = NULL;
  sluice_runtime_timer(rt, timer_ms, timer_cb, "fires", NULL, &fires);
  sluice_runtime_timer(rt, 60000, timer_cb, "cancelled", NULL, &cancelled);
  sluice_op_cancel(cancelled);

  int status = 1;
  rc = sluice_op_wait(fires, -1, &status);
  printf("waited for the timer: rc=%s status=%s\n", sluice_err_name(rc), sluice_err_name(status));
  sluice_op_wait(cancelled, -1, NULL);
  sluice_op_free(fires);
  sluice_op_free(cancelled);

  sluice_runtime_close(rt); /* every posted item has run by now */
  printf("posted work ran %ld of %ld times\n", g_ran, (long)threads * posts);

  sluice_buf line = SLUICE_BUF_INIT;
  sluice_runtime_describe(rt, &line);
  printf("%s\n", line.ptr);
  sluice_buf_free(&line);

  sluice_memory_stats mem = {sizeof mem};
  sluice_runtime_memory(rt, &mem);
  printf("allocator: %s, allocated %llu bytes, resident %llu bytes\n",
         mem.jemalloc ? "jemalloc arena" : "system malloc", (unsigned long long)mem.allocated,
         (unsigned long long)mem.resident);
  sluice_runtime_free(rt);
  return g_ran == (long)threads * posts && status == 0 ? 0 : 1;
}

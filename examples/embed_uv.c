/*
 * embed_uv: sluice on a libuv loop the program runs itself. The runtime is
 * attached to the caller's loop; its callbacks run inside uv_run.
 *
 *   embed_uv [timers] [delay-ms]
 */
#include <stdio.h>
#include <stdlib.h>

#include <sluice.h>
#include <sluice/uv.h>

static int g_fired = 0;

static void fired(void *user_data, int status) {
  (void)user_data;
  if (status == 0) g_fired++;
}

int main(int argc, char **argv) {
  int timers = argc > 1 ? atoi(argv[1]) : 100;
  uint64_t delay = argc > 2 ? strtoull(argv[2], NULL, 10) : 5;
  if (timers < 0 || timers > 1000000) {
    fprintf(stderr, "usage: embed_uv [timers 0..1000000] [delay-ms]\n");
    return 2;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  sluice_runtime *rt = NULL;
  int rc = sluice_runtime_attach(&rt, &loop, NULL);
  if (rc != 0) {
    fprintf(stderr, "attach: %s: %s\n", sluice_err_name(rc), sluice_error_message());
    return 1;
  }
  for (int i = 0; i < timers; i++)
    sluice_runtime_timer(rt, delay + (uint64_t)(i % 7), fired, NULL, NULL, NULL);

  uv_run(&loop, UV_RUN_DEFAULT); /* returns once every timer has fired */
  printf("%d of %d timers fired inside the caller's uv_run\n", g_fired, timers);

  sluice_runtime_free(rt);       /* on the loop thread */
  uv_run(&loop, UV_RUN_DEFAULT); /* runs the close callbacks */
  rc = uv_loop_close(&loop);
  printf("loop closed: %s\n", rc == 0 ? "cleanly" : uv_strerror(rc));
  return g_fired == timers && rc == 0 ? 0 : 1;
}

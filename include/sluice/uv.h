/*
 * sluice/uv.h - embedding sluice in a program that already runs libuv.
 *
 * The only public header that includes <uv.h>. Include it only if you want
 * sluice to live on your own loop instead of starting a thread of its own.
 */
#ifndef SLUICE_UV_H
#define SLUICE_UV_H

#include <uv.h>

#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Creates a runtime on the caller's `loop`. Call it on the thread that runs
 * the loop: that thread becomes the runtime's loop thread, and all callbacks
 * run inside the caller's uv_run. The runtime's own handles are unreferenced,
 * so they do not keep uv_run(UV_RUN_DEFAULT) from returning; pending timers
 * and operations do. Work posted from other threads runs while the loop
 * runs; keep it running (or poll it) if other threads post.
 * `opts` may be NULL (thread_name is ignored in this mode). Release with
 * sluice_runtime_free on the loop thread (see runtime.h).
 * Errors: SLUICE_EINVAL (out or loop NULL, an option out of range),
 * SLUICE_EVERSION, SLUICE_ENOMEM, SLUICE_EUV.
 */
SLUICE_EXTERN int sluice_runtime_attach(sluice_runtime **out, uv_loop_t *loop,
                                        const sluice_runtime_options *opts);

/*
 * The loop the runtime lives on: the caller's in attached mode, the
 * runtime's own otherwise (touch it only from the loop thread, e.g. inside
 * a posted callback). NULL if rt is NULL.
 */
SLUICE_EXTERN uv_loop_t *sluice_runtime_loop(sluice_runtime *rt);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_UV_H */

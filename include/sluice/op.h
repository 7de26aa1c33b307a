/*
 * sluice/op.h - handle to a pending waiting operation: cancel it, wait for
 * it, read its outcome.
 *
 * Every waiting operation in sluice (a timer, a lock acquire, a limiter
 * wait, a pool acquire, a query) can hand back a `sluice_op *` through an
 * optional out-parameter. The handle is reference counted: the caller owns
 * one reference and gives it back with sluice_op_free, whenever it likes
 * (before or after completion; freeing does not cancel).
 *
 * Cancellation races with completion. Whatever the race, the operation's
 * callback runs exactly once, with either SLUICE_ECANCELED or its normal
 * outcome. A caller that cancelled and still sees success owns what it was
 * granted and must release it.
 */
#ifndef SLUICE_OP_H
#define SLUICE_OP_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sluice_op sluice_op;

/*
 * Asks for the operation to be cancelled. Returns at once; the callback
 * reports the outcome. Cancelling an operation that already completed, or
 * cancelling twice, has no effect and returns 0.
 * Any thread, including inside a callback on the loop thread. Called on the
 * loop thread, the cancellation is decided at once: the callback (with
 * SLUICE_ECANCELED) may run before this returns. From another thread it is
 * decided on the loop, after this returns.
 * Errors: SLUICE_EINVAL (op is NULL).
 */
SLUICE_EXTERN int sluice_op_cancel(sluice_op *op);

/*
 * Blocks the calling thread until the operation has completed (its
 * callback has returned) or `timeout_ms` milliseconds have passed
 * (timeout_ms < 0: no limit). On return 0, *status (if not NULL) holds the
 * status the callback received. A timeout does not cancel the operation.
 * Errors: SLUICE_EINVAL (op is NULL), SLUICE_EDEADLK (called on the loop
 * thread, where waiting would stop the loop that must complete it),
 * SLUICE_ETIMEDOUT (not completed in time).
 */
SLUICE_EXTERN int sluice_op_wait(sluice_op *op, int64_t timeout_ms,
                                 int *status);

/*
 * Non-blocking look: returns 1 and sets *status if the operation has
 * completed, 0 if it is still pending, SLUICE_EINVAL if op is NULL.
 * Any thread.
 */
SLUICE_EXTERN int sluice_op_done(const sluice_op *op, int *status);

/*
 * Gives back the caller's reference. sluice_op_free(NULL) is a no-op.
 * Any thread. Does not cancel the operation.
 *
 * A handle may be kept after its runtime is freed: every operation has
 * completed by then, and on a completed operation sluice_op_cancel,
 * sluice_op_wait and sluice_op_done never touch the runtime.
 */
SLUICE_EXTERN void sluice_op_free(sluice_op *op);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_OP_H */

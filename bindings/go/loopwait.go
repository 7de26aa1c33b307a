package sluice

// One wait queued on a runtime's loop and completed by a C callback: the
// lock manager's Lock, the limiter's Wait and the task pool's Acquire and
// Submit all go through it, so the handle, cancel and late-grant rules
// live in one place.

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"sync/atomic"
	"unsafe"
)

// queueFunc starts one wait on the live C object p: it passes h as the
// completion's user_data and opOut (nil when ctx cannot end) for the
// cancel handle, and returns the library's error. On error the library
// took nothing and queueWait releases h.
type queueFunc func(p unsafe.Pointer, h C.uintptr_t, opOut **C.sluice_op) error

// queueWait queues a wait with start, k being what the completion's handle
// points at and done closing on its one completion, then waits: if ctx
// ends first it cancels the wait and still waits for the completion. It
// reports whether it cancelled; an error means nothing was queued.
func (o *cobject) queueWait(ctx context.Context, k any, done <-chan struct{}, start queueFunc) (bool, error) {
	var op *C.sluice_op
	opOut := (**C.sluice_op)(nil)
	if ctx.Done() != nil {
		opOut = &op
	}
	err := o.use(func(p unsafe.Pointer) error {
		h := newHandle(k)
		if err := start(p, h, opOut); err != nil {
			dropHandle(h) // nothing was taken
			return err
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return waitOp(ctx, done, op, o.opCanceler()), nil
}

// grantWait describes a wait that ends with a grant (a lock guard, a
// permit) the caller must give back.
type grantWait struct {
	what     string                 // "Locks.Lock", for messages
	start    queueFunc              // queues the wait
	failed   func(status int) error // the error of a failing status
	giveBack func(v uint64)         // releases a grant nobody wants
	late     *int64                 // counts those (for the tests)
	lost     string                 // what the late grant's error says happened to it
}

// awaitGrant queues w and returns the grant's value. A grant that won the
// race with ctx's cancel is given back at once, so it never leaks, and
// the call fails with ctx's error.
func (o *cobject) awaitGrant(ctx context.Context, w grantWait) (uint64, error) {
	k := &valueCall{done: make(chan struct{})}
	canceled, err := o.queueWait(ctx, k, k.done, w.start)
	if err != nil {
		return 0, err
	}
	if k.status != 0 {
		return 0, w.failed(k.status)
	}
	if canceled {
		atomic.AddInt64(w.late, 1)
		w.giveBack(k.value)
		return 0, ctxEnded(ctx.Err(), w.what+": the context ended; "+w.lost)
	}
	return k.value, nil
}

// waitFailed is the error of a loop wait that completed with a failing
// status. msgs holds the messages particular to the object (after
// "what: "): its CodeClosed one, any codes only it ends a wait with, and
// optionally a CodeTimedOut one in place of the common one.
func waitFailed(ctx context.Context, what string, status int, msgs map[Code]string) error {
	cause := ctx.Err()
	code := Code(status)
	switch code {
	case CodeCanceled:
		if cause != nil {
			return ctxEnded(cause, what+": the context ended while waiting")
		}
	case CodeTimedOut:
		msg, ok := msgs[CodeTimedOut]
		if !ok {
			msg = "the context's deadline passed while waiting"
		}
		e := newError(CodeTimedOut, what+": "+msg)
		e.cause = deadlineCause(ctx)
		return e
	default:
		if msg, ok := msgs[code]; ok {
			return newError(code, what+": "+msg)
		}
	}
	e := newError(code, what+": the wait failed")
	e.cause = cause
	return e
}

package sluice

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// completions counts callbacks that reached Go, and duplicates those that
// reached an operation already completed (always 0 unless the exactly-once
// promise breaks); both are for the tests.
var completions, duplicates int64

// firstCompletion counts one completion of an operation and reports
// whether it is the first: fired is the operation's own flag. A later one
// is counted as a duplicate and must be ignored by the caller.
func firstCompletion(fired *int32) bool {
	atomic.AddInt64(&completions, 1)
	if !atomic.CompareAndSwapInt32(fired, 0, 1) {
		atomic.AddInt64(&duplicates, 1)
		return false
	}
	return true
}

// Post queues fn to run on the loop thread. It returns once fn is queued,
// not run. fn must not block: it would stall every completion of the
// runtime (this package's blocking calls fail there with ErrDeadlock). Work
// accepted before Close began always runs; after that Post fails with
// ErrClosed and fn never runs. A panic in fn ends the program, as in any
// goroutine.
func (rt *Runtime) Post(fn func()) error {
	if fn == nil {
		return newError(CodeInvalid, "Post: fn is nil")
	}
	return rt.use(func(p *C.sluice_runtime) error {
		h := newHandle(&postItem{fn: fn})
		var r C.sg_result
		C.sg_post(&r, p, h)
		err := resultErr(&r)
		if err != nil {
			dropHandle(h) // nothing was taken: the library never releases it
		}
		return err
	})
}

type postItem struct {
	fn   func()
	done int32
}

func (it *postItem) complete(status int) {
	if !firstCompletion(&it.done) {
		return
	}
	if status == 0 { // non-zero would mean the work did not run
		it.fn()
	}
}

// Timer is a one-shot sluice timer: it completes exactly once, with nil
// when it fires, ErrCanceled when Cancel won the race, or ErrClosed when
// the runtime shut down first.
type Timer struct {
	rt   *Runtime
	done chan struct{} // closed on completion, after err is set
	err  error

	// The op handle is released by whichever comes last: the completion or
	// a Cancel in flight. A Cancel on the loop thread completes the timer
	// inside sluice_op_cancel, so the completion must not free it then.
	mu      sync.Mutex
	op      *C.sluice_op
	fired   bool
	cancels int
}

// NewTimer starts a timer that fires after d (rounded up to whole
// milliseconds; negative is 0).
func (rt *Runtime) NewTimer(d time.Duration) (*Timer, error) {
	if d < 0 {
		d = 0
	}
	ms := uint64((d + time.Millisecond - 1) / time.Millisecond)
	t := &Timer{rt: rt, done: make(chan struct{})}
	err := rt.use(func(p *C.sluice_runtime) error {
		h := newHandle(t)
		var r C.sg_result
		var op *C.sluice_op
		C.sg_timer(&r, p, C.uint64_t(ms), h, &op)
		if err := resultErr(&r); err != nil {
			dropHandle(h)
			return err
		}
		t.mu.Lock()
		if t.fired { // completed before we got here
			C.sluice_op_free(op)
		} else {
			t.op = op
		}
		t.mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Timer) complete(status int) {
	atomic.AddInt64(&completions, 1)
	t.mu.Lock()
	if t.fired {
		t.mu.Unlock()
		atomic.AddInt64(&duplicates, 1)
		return
	}
	t.fired = true
	t.err = statusErr(status)
	if t.cancels == 0 && t.op != nil {
		C.sluice_op_free(t.op)
		t.op = nil
	}
	t.mu.Unlock()
	close(t.done)
}

// Cancel asks for the timer to be cancelled and returns at once; Wait
// reports the outcome (ErrCanceled, or nil if the timer fired first).
// Cancelling a completed timer does nothing. Safe on the loop thread.
func (t *Timer) Cancel() error {
	t.mu.Lock()
	op := t.op
	if op == nil {
		t.mu.Unlock()
		return nil // completed (or completing)
	}
	t.cancels++
	t.mu.Unlock()

	// Holding the runtime's read lock keeps it from being freed under
	// sluice_op_cancel, which posts to the loop.
	err := t.rt.use(func(*C.sluice_runtime) error {
		var r C.sg_result
		C.sg_op_cancel(&r, op)
		return resultErr(&r)
	})
	if err != nil && t.rt.isFreed() {
		err = nil // a freed runtime completed every op in its shutdown
	}

	t.mu.Lock()
	t.cancels--
	if t.cancels == 0 && t.fired && t.op != nil {
		C.sluice_op_free(t.op)
		t.op = nil
	}
	t.mu.Unlock()
	return err
}

// Done is closed when the timer has completed.
func (t *Timer) Done() <-chan struct{} { return t.done }

// Wait blocks until the timer completes and returns its outcome, or until
// ctx ends (returning ctx.Err(); the timer keeps running). On the loop
// thread, which must run to complete the timer, it fails with ErrDeadlock
// unless the timer has completed.
func (t *Timer) Wait(ctx context.Context) error {
	select {
	case <-t.done:
		return t.err
	default:
	}
	if t.rt.IsLoopThread() {
		return errLoopBlock("Timer.Wait")
	}
	select {
	case <-t.done:
		return t.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func errLoopBlock(what string) error {
	return newError(CodeDeadlock, what+" called on the loop thread, which must run to complete it")
}

// Sleep waits for d on the runtime's clock. If ctx ends first it cancels
// the timer and returns, once the timer has completed, an error matching
// both ErrCanceled and ctx.Err(); nil if the timer fired first anyway.
// On the loop thread it fails with ErrDeadlock.
func (rt *Runtime) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return canceledBy(err)
	}
	if rt.IsLoopThread() {
		return errLoopBlock("Runtime.Sleep")
	}
	t, err := rt.NewTimer(d)
	if err != nil {
		return err
	}
	select {
	case <-t.done:
		return t.err
	case <-ctx.Done():
	}
	if err := t.Cancel(); err != nil {
		return err
	}
	<-t.done // the completion always comes: cancel, fire or shutdown
	if t.err != nil && t.err.(*Error).Code == CodeCanceled {
		return canceledBy(ctx.Err())
	}
	return t.err
}

func canceledBy(cause error) error {
	e := newError(CodeCanceled, "context ended")
	e.cause = cause
	return e
}

func (rt *Runtime) isFreed() bool {
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	return rt.ptr == nil
}

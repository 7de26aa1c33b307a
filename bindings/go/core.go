package sluice

// What the lock manager, the limiter, the retry policy and the breaker
// share: the Go side of one C object (cobject), and the mapping of a
// context onto the library's timeout and cancellation.

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// cobject guards one C object. mu is held for reading around every C call
// on ptr and for writing only to take ptr away; the C free then runs
// without it, so a callback that runs inside the free (a lock's
// held-too-long report, a wait completed with ECLOSED) and calls back into
// the object finds it closed instead of deadlocking.
type cobject struct {
	mu     sync.RWMutex
	ptr    unsafe.Pointer // the C object; nil once taken for the free
	closed int32          // Close was called: calls fail from now on

	what  string            // "the lock manager", for messages
	rtp   *C.sluice_runtime // the runtime whose loop it uses, or nil
	deps  *depSet           // the set it is registered in, or nil
	rank  int               // freeRank
	cfree func(p unsafe.Pointer)

	// takeAll runs under the write lock as ptr is taken (retry policies
	// take their live sessions); after runs once the C object is freed
	// (releasing a monitor, a breaker, a callback handle).
	takeAll func()
	after   []func()
}

func (o *cobject) markClosed() { atomic.StoreInt32(&o.closed, 1) }

func (o *cobject) closedNow() bool { return atomic.LoadInt32(&o.closed) != 0 }

func (o *cobject) errClosed() error { return newError(CodeClosed, o.what+" is closed") }

// use runs f with the live C object, or fails with ErrClosed.
func (o *cobject) use(f func(p unsafe.Pointer) error) error {
	if o.closedNow() {
		return o.errClosed()
	}
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.ptr == nil {
		return o.errClosed()
	}
	return f(o.ptr)
}

// onLoop reports whether the caller runs on the loop thread of the
// object's runtime. The caller holds mu for reading with ptr live (a live
// object means a live runtime).
func (o *cobject) onLoop() bool {
	return o.rtp != nil && C.sluice_runtime_is_loop_thread(o.rtp) != 0
}

func (o *cobject) freeRank() int { return o.rank }

// free frees the C object once; later calls do nothing. Runtime.Close
// calls it through the dependents set, after the shutdown.
func (o *cobject) free() {
	o.mu.Lock()
	p := o.ptr
	o.ptr = nil
	if p != nil && o.takeAll != nil {
		o.takeAll()
	}
	o.mu.Unlock()
	if p == nil {
		return
	}
	o.cfree(p)
	if o.deps != nil {
		o.deps.remove(o)
	}
	for _, f := range o.after {
		f()
	}
}

// joinMonitorDeps ties an object just made on no runtime to deps, the set
// of the runtime its monitor lives on (nil: none), so that closing that
// runtime frees the object before the monitor. If that runtime is already
// closing it frees the C object again and fails with ErrClosed, naming
// whose runtime it was (whose: "LimiterOptions.Monitor").
func (o *cobject) joinMonitorDeps(deps *depSet, whose string) error {
	if deps == nil {
		return nil
	}
	o.deps = deps
	if !deps.add(o) {
		o.cfree(o.ptr)
		o.ptr = nil
		return newError(CodeClosed, whose+"'s runtime is closing")
	}
	return nil
}

// close is the object's own Close: calls fail with ErrClosed from now on,
// and the C object is freed. An object that uses the loop may not be
// freed during a runtime shutdown that another thread runs; that shutdown
// frees it itself, so close waits for it, or on the loop thread (which
// the shutdown waits for) leaves the free to it.
func (o *cobject) close() {
	o.markClosed()
	if o.rtp == nil || o.deps == nil {
		o.free()
		return
	}
	if o.deps.closing.TryRLock() {
		defer o.deps.closing.RUnlock()
		o.free()
		return
	}
	loop := false
	o.mu.RLock()
	if o.ptr != nil {
		loop = o.onLoop()
	}
	o.mu.RUnlock()
	if loop {
		return // Runtime.Close is running and frees it after the shutdown
	}
	o.deps.closing.RLock()
	defer o.deps.closing.RUnlock()
	o.free()
}

// ---- keys --------------------------------------------------------------

// strData is the address of s's bytes, for a C call that reads them during
// the call only (a string's bytes hold no Go pointers, so cgo allows it).
// nil for "". unsafe.StringData would say the same but needs Go 1.20.
func strData(s string) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return *(*unsafe.Pointer)(unsafe.Pointer(&s))
}

// ---- contexts ------------------------------------------------------------

// maxTimeoutMS is the largest timeout_ms the library takes (2^40).
const maxTimeoutMS = int64(1) << 40

// ctxTimeoutMS is the library's timeout_ms for a wait under ctx: the time
// left to ctx's deadline rounded up to a millisecond, -1 (no deadline) if
// ctx has none. It fails, with the error a wait that ended that way gets,
// if ctx has already ended.
func ctxTimeoutMS(ctx context.Context, what string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, ctxEnded(err, "the context ended before "+what+" could be granted")
	}
	d, ok := ctx.Deadline()
	if !ok {
		return -1, nil
	}
	left := time.Until(d)
	if left <= 0 {
		return 0, ctxEnded(context.DeadlineExceeded, "the context's deadline passed before "+what+" could be granted")
	}
	ms := int64((left + time.Millisecond - 1) / time.Millisecond)
	if ms > maxTimeoutMS {
		ms = -1 // further than the library can count: as good as none
	}
	return ms, nil
}

// ctxEnded is the error of a wait that ctx ended: ErrTimedOut for a
// deadline, ErrCanceled for a cancel, matching ctx.Err() as well.
func ctxEnded(cause error, msg string) *Error {
	code := CodeCanceled
	if cause == context.DeadlineExceeded {
		code = CodeTimedOut
	}
	e := newError(code, msg)
	e.cause = cause
	return e
}

// deadlineCause is the cause of a wait the library ended at its deadline:
// ctx.Err(), or DeadlineExceeded when the library's timer (the same
// deadline rounded up to a millisecond) beat ctx's own.
func deadlineCause(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); ok {
		return context.DeadlineExceeded
	}
	return nil
}

// waitOp waits for an operation's completion (done). If ctx ends first it
// cancels the operation through cancel and still waits for its one
// completion, which may be a success that won the race. It reports whether
// it cancelled, and frees op. op is nil when ctx cannot end.
func waitOp(ctx context.Context, done <-chan struct{}, op *C.sluice_op, cancel func(op *C.sluice_op)) bool {
	if op == nil {
		<-done
		return false
	}
	defer C.sluice_op_free(op)
	select {
	case <-done:
		return false
	case <-ctx.Done():
	}
	cancel(op)
	<-done
	return true
}

// opCanceler cancels op while o is live: a live object keeps its runtime
// alive under sluice_op_cancel; a freed one has completed every operation.
func (o *cobject) opCanceler() func(op *C.sluice_op) {
	return func(op *C.sluice_op) {
		_ = o.use(func(unsafe.Pointer) error {
			var r C.sg_result
			C.sg_op_cancel(&r, op)
			return resultErr(&r)
		})
	}
}

// valueCall is an operation that completes with a status and a 64-bit
// value (a lock guard).
type valueCall struct {
	done   chan struct{}
	fired  int32
	status int
	value  uint64
}

func (k *valueCall) completeValue(status int, value uint64) {
	if !firstCompletion(&k.fired) {
		return
	}
	k.status, k.value = status, value
	close(k.done)
}

// ---- conversions -----------------------------------------------------------

// msCeil is d in whole milliseconds, rounded up; negative stays negative
// (for the library to refuse with its message), and huge values saturate.
func msCeil(d time.Duration) int64 {
	if d <= 0 {
		return int64(d / time.Millisecond)
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// u32 is n as a C uint32_t option, or ok false if it does not fit.
func u32(n int) (C.uint32_t, bool) {
	if n < 0 || uint64(n) > math.MaxUint32 {
		return 0, false
	}
	return C.uint32_t(n), true
}

// nsDuration is a library nanosecond count as a Duration, saturating.
func nsDuration(ns C.uint64_t) time.Duration {
	if uint64(ns) > math.MaxInt64 {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(ns)
}

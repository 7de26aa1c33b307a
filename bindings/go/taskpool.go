package sluice

/*
#include "taskpool_shim.h"
*/
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Priority orders the requests waiting for a slot of a TaskPool: high
// before normal before low, first come first served within one, and a low
// request is passed over by at most MaxBypass grants in a row.
type Priority int

const (
	PriorityHigh   Priority = C.SLUICE_PRIORITY_HIGH
	PriorityNormal Priority = C.SLUICE_PRIORITY_NORMAL
	PriorityLow    Priority = C.SLUICE_PRIORITY_LOW
)

func (p Priority) String() string {
	switch p {
	case PriorityHigh:
		return "high"
	case PriorityNormal:
		return "normal"
	case PriorityLow:
		return "low"
	}
	return fmt.Sprintf("Priority(%d)", int(p))
}

// The most slots and the most worker threads a pool can have.
const (
	MaxTaskPoolConcurrent = C.SLUICE_TASKPOOL_MAX_CONCURRENT
	MaxTaskPoolWorkers    = C.SLUICE_TASKPOOL_MAX_WORKERS
)

// TaskPoolOptions configures NewTaskPool. The zero value of each field
// means the library's default (docs/taskpool.md).
type TaskPoolOptions struct {
	// MaxConcurrent is the number of slots: permits held plus tasks
	// running (default 20, at most MaxTaskPoolConcurrent). With Adaptive,
	// the starting limit.
	MaxConcurrent int
	// Workers bounds the worker threads that run Submit's functions
	// (default: as many as run at once, up to 256). Permits need none.
	Workers int
	// MaxQueued bounds the requests waiting for a slot (default 1000;
	// negative: no queue, a request finding no free slot is refused).
	MaxQueued int
	// WaitForRoom makes a request that finds the queue full wait for room
	// within its context; by default it fails at once with ErrFull.
	WaitForRoom bool
	// Adaptive moves the limit between MinConcurrent (default 1) and
	// MaxConcurrentCeiling (default twice MaxConcurrent) with the load:
	// down a quarter when over 10% of a window's work failed or took
	// longer than TargetLatency (required), up one when none did.
	Adaptive             bool
	MinConcurrent        int
	MaxConcurrentCeiling int
	TargetLatency        time.Duration
	// Monitor, if set, receives "<Name>.wait", "<Name>.run" and
	// "<Name>.rejected". It must be made on the same runtime, or on none.
	Monitor *Monitor
	// Name is the monitor's series prefix and the worker threads' name
	// (default "taskpool"; 1..64 bytes).
	Name string
	// Clock, if set, measures queue waits, run and hold times (figures,
	// monitor, adaptive limit); deadlines always use the real clock.
	Clock *ManualClock
	// MaxBypass is how many grants in a row may pass over a waiting lower
	// priority (default 4).
	MaxBypass int
}

// TaskPool bounds concurrency (sluice/taskpool.h): at most MaxConcurrent
// pieces of work at once, the rest waiting in a bounded priority queue.
// Work takes a slot as a permit (Acquire, TryAcquire, Run, Go: the work
// runs in Go) or as a task on the pool's own worker threads (Submit).
// Every method is safe for concurrent use.
//
//	p, err := pool.Acquire(ctx, sluice.PriorityNormal)
//	if err != nil {
//		return err
//	}
//	err = callAI(ctx)
//	p.Release(err)
type TaskPool struct {
	rt *Runtime // keeps the runtime reachable while the pool is
	o  *cobject
}

// NewTaskPool creates a task pool on rt, whose loop thread grants waiting
// requests. Close it when done; closing the runtime closes it too.
func NewTaskPool(rt *Runtime, o TaskPoolOptions) (*TaskPool, error) {
	if err := CheckVersion(); err != nil {
		return nil, err
	}
	if strings.IndexByte(o.Name, 0) >= 0 {
		return nil, newError(CodeInvalid, "TaskPoolOptions.Name contains a NUL byte")
	}
	var opts C.sluice_taskpool_options
	var r C.sg_result
	C.sg_taskpool_options_init(&r, &opts)
	if err := resultErr(&r); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		v    int
		dst  *C.uint32_t
	}{
		{"MaxConcurrent", o.MaxConcurrent, &opts.max_concurrent},
		{"Workers", o.Workers, &opts.workers},
		{"MinConcurrent", o.MinConcurrent, &opts.min_concurrent},
		{"MaxConcurrentCeiling", o.MaxConcurrentCeiling, &opts.max_concurrent_ceiling},
		{"MaxBypass", o.MaxBypass, &opts.max_bypass},
	} {
		if f.v == 0 {
			continue
		}
		v, ok := u32(f.v)
		if !ok {
			return nil, newError(CodeInvalid, fmt.Sprintf("TaskPoolOptions.%s %d is out of range", f.name, f.v))
		}
		*f.dst = v
	}
	switch {
	case o.MaxQueued < 0:
		opts.max_queued = 0
	case o.MaxQueued > 0:
		v, ok := u32(o.MaxQueued)
		if !ok {
			return nil, newError(CodeInvalid, fmt.Sprintf("TaskPoolOptions.MaxQueued %d is out of range", o.MaxQueued))
		}
		opts.max_queued = v
	}
	if o.WaitForRoom {
		opts.on_full = C.SLUICE_TASKPOOL_FULL_WAIT
	}
	if o.Adaptive {
		opts.adaptive = 1
	}
	if o.TargetLatency < 0 {
		return nil, newError(CodeInvalid, "TaskPoolOptions.TargetLatency is negative")
	}
	opts.target_latency_ns = C.uint64_t(o.TargetLatency)
	if o.Name != "" {
		name := C.CString(o.Name) // copied by the library
		defer C.free(unsafe.Pointer(name))
		opts.name = name
	}

	tp := &TaskPool{rt: rt}
	obj := &cobject{what: "the task pool", cfree: func(p unsafe.Pointer) {
		C.sluice_taskpool_free((*C.sluice_taskpool)(p))
	}}
	if o.Clock != nil {
		clock := o.Clock
		obj.after = append(obj.after, func() { runtime.KeepAlive(clock) })
	}
	err := rt.use(func(rtp *C.sluice_runtime) error {
		if o.Monitor != nil {
			mp, err := o.Monitor.c.acquireUseFor(rtp, "TaskPoolOptions.Monitor")
			if err != nil {
				return err
			}
			opts.monitor = mp
		}
		var p *C.sluice_taskpool
		var r C.sg_result
		C.sg_taskpool_new(&r, &p, rtp, &opts, o.Clock.cptr())
		if err := resultErr(&r); err != nil {
			if o.Monitor != nil {
				o.Monitor.c.releaseUse()
			}
			return err
		}
		if o.Monitor != nil {
			obj.after = append(obj.after, o.Monitor.c.releaseUse)
		}
		obj.ptr, obj.rtp, obj.deps = unsafe.Pointer(p), rtp, rt.deps
		rt.deps.add(obj) // under the runtime's read lock: Close frees it
		return nil
	})
	if err != nil {
		return nil, err
	}
	tp.o = obj
	runtime.SetFinalizer(tp, func(tp *TaskPool) { tp.o.close() }) // a safety net only
	return tp, nil
}

// Close frees the pool: requests still waiting fail with ErrClosed, tasks
// already running on the workers run to their end (Close waits for them;
// so it must not be called from inside one), permits still held become
// meaningless (their Release does nothing), and every method returns
// ErrClosed. Calling it again returns nil. Call Shutdown first to let the
// work in flight finish.
func (tp *TaskPool) Close() error {
	runtime.SetFinalizer(tp, nil)
	tp.o.close()
	return nil
}

// Shutdown stops accepting work (new requests fail with ErrClosed),
// completes every waiting request with ErrClosed, then waits up to
// timeout (negative: no limit) for the running tasks to end and the
// permits held to be released. It returns ErrTimedOut if work was still
// running at the deadline (the shutdown itself has happened; nothing is
// interrupted). Releasing permits and Stats keep working until Close.
// On the loop thread, and inside one of the pool's own tasks, only a
// timeout of 0 is allowed (else ErrDeadlock): it closes the queue and
// returns at once.
func (tp *TaskPool) Shutdown(timeout time.Duration) error {
	ms := int64(-1)
	if timeout >= 0 {
		ms = msCeil(timeout)
	}
	return tp.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		C.sg_taskpool_shutdown(&r, (*C.sluice_taskpool)(p), C.int64_t(ms))
		return resultErr(&r)
	})
}

// Resize sets the number of slots (1..MaxTaskPoolConcurrent). Raising it
// grants waiting requests at once; lowering it takes nothing away from
// work already granted. With Adaptive it moves the current limit, which
// must stay within MinConcurrent..MaxConcurrentCeiling (else ErrRange).
func (tp *TaskPool) Resize(maxConcurrent int) error {
	v, ok := u32(maxConcurrent)
	if !ok {
		return newError(CodeInvalid, fmt.Sprintf("TaskPool.Resize: %d slots is out of range", maxConcurrent))
	}
	return tp.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		C.sg_taskpool_resize(&r, (*C.sluice_taskpool)(p), v)
		return resultErr(&r)
	})
}

// Permit is one slot of a TaskPool, held until Release. It is not tied to
// a goroutine.
type Permit struct {
	tp       *TaskPool
	v        uint64 // the library's permit value
	start    time.Time
	released int32
}

// Release gives the slot back (to the next waiting request) and says how
// the work went: nil counts it as completed, an error as failed (the
// monitor records it under its code, as Monitor.Record does; the
// adaptive limit counts it against the pool). A second Release returns
// ErrState and changes nothing; after Close it does nothing and returns
// nil.
func (pm *Permit) Release(err error) error {
	if !atomic.CompareAndSwapInt32(&pm.released, 0, 1) {
		return newError(CodeState, "the permit was already released")
	}
	rerr := pm.tp.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		C.sg_taskpool_release(&r, (*C.sluice_taskpool)(p), C.uint64_t(pm.v), C.int(outcomeOf(err)))
		return resultErr(&r)
	})
	if isClosed(rerr) {
		return nil // the pool's free took every permit back
	}
	return rerr
}

// Held is how long the permit has been held (by the Go clock).
func (pm *Permit) Held() time.Duration { return time.Since(pm.start) }

func validPriority(what string, prio Priority) error {
	if prio < PriorityHigh || prio > PriorityLow {
		return newError(CodeInvalid, fmt.Sprintf("%s: priority %d is not PriorityHigh, PriorityNormal or PriorityLow", what, int(prio)))
	}
	return nil
}

// TryAcquire takes a free slot now or fails with ErrAgain (every slot
// taken, or requests waiting: they go first). It never waits, so it may
// be called on the loop thread. Other errors: ErrClosed.
func (tp *TaskPool) TryAcquire() (*Permit, error) {
	var v uint64
	err := tp.o.use(func(p unsafe.Pointer) (err error) {
		v, err = tryPermit(p, "TaskPool.TryAcquire: every slot is taken or requests are waiting")
		return err
	})
	if err != nil {
		return nil, err
	}
	return &Permit{tp: tp, v: v, start: time.Now()}, nil
}

// tryPermit takes a free slot of the live pool p now, or fails with
// ErrAgain saying again.
func tryPermit(p unsafe.Pointer, again string) (uint64, error) {
	var v C.uint64_t
	var r C.sg_result
	C.sg_taskpool_try(&r, (*C.sluice_taskpool)(p), &v)
	if r.rc == C.SLUICE_EAGAIN {
		return 0, newError(CodeAgain, again)
	}
	return uint64(v), resultErr(&r)
}

// latePermits counts permits granted after their wait was cancelled, and
// given back (for the tests).
var latePermits int64

// Acquire waits for a slot, in priority order, until ctx ends. A free
// slot with nobody waiting is taken in the calling goroutine; otherwise
// the request queues on the loop with ctx's deadline, and cancelling ctx
// cancels it. A grant that wins the race with the cancel is released at
// once (counted as completed) and the call reports the cancel, so no
// slot leaks. Errors: ErrTimedOut (also context.DeadlineExceeded),
// ErrCanceled (also ctx.Err()), ErrFull (the queue is full, without
// WaitForRoom), ErrClosed, ErrInvalid (priority), and ErrDeadlock on the
// loop thread, which must run to grant it.
func (tp *TaskPool) Acquire(ctx context.Context, prio Priority) (*Permit, error) {
	return tp.acquire(ctx, "TaskPool.Acquire", prio)
}

func (tp *TaskPool) acquire(ctx context.Context, what string, prio Priority) (*Permit, error) {
	defer runtime.KeepAlive(tp)
	if err := validPriority(what, prio); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, ctxEnded(err, "the context ended before "+what+" was called")
	}
	// Try first: a free slot needs no trip to the loop, and a try never
	// passes waiting requests, so priority order holds.
	var v uint64
	err := tp.o.use(func(p unsafe.Pointer) (err error) {
		if tp.o.onLoop() {
			return errLoopBlock(what)
		}
		v, err = tryPermit(p, "")
		return err
	})
	switch {
	case err == nil:
		return &Permit{tp: tp, v: v, start: time.Now()}, nil
	case !isCode(err, CodeAgain):
		return nil, err
	}

	ms, err := ctxTimeoutMS(ctx, what)
	if err != nil {
		return nil, err
	}
	pv, err := tp.o.awaitGrant(ctx, grantWait{
		what: what,
		start: func(p unsafe.Pointer, h C.uintptr_t, opOut **C.sluice_op) error {
			var r C.sg_result
			C.sg_taskpool_acquire(&r, (*C.sluice_taskpool)(p), C.int(prio), C.int64_t(ms), h, opOut)
			return resultErr(&r)
		},
		failed:   func(status int) error { return waitFailed(ctx, what, status, taskPoolWaitMsgs) },
		giveBack: func(v uint64) { _ = (&Permit{tp: tp, v: v}).Release(nil) },
		late:     &latePermits,
		lost:     "the slot granted meanwhile was given back",
	})
	if err != nil {
		return nil, err
	}
	return &Permit{tp: tp, v: pv, start: time.Now()}, nil
}

// taskPoolWaitMsgs are the task pool's own messages for a failed wait.
var taskPoolWaitMsgs = map[Code]string{
	CodeTimedOut: "the context's deadline passed while waiting for a slot",
	CodeClosed:   "the task pool or its runtime shut down while waiting",
}

// Run runs fn in the calling goroutine under a slot: Acquire, fn, then
// Release with fn's error. It returns fn's error, or Acquire's if fn never
// ran. fn should watch the same ctx for its own work. A panic in fn
// releases the slot (as failed) and goes on up.
func (tp *TaskPool) Run(ctx context.Context, prio Priority, fn func() error) error {
	if fn == nil {
		return newError(CodeInvalid, "TaskPool.Run: fn is nil")
	}
	pm, err := tp.acquire(ctx, "TaskPool.Run", prio)
	if err != nil {
		return err
	}
	return runHolding(pm, fn)
}

var errPanicked = newError(CodeInternal, "the function panicked")

func runHolding(pm *Permit, fn func() error) (err error) {
	finished := false
	defer func() {
		if !finished {
			_ = pm.Release(errPanicked)
		}
	}()
	err = fn()
	finished = true
	_ = pm.Release(err)
	return err
}

// Task is the work Go started: Wait for its result.
type Task struct {
	done chan struct{}
	err  error
}

// Done is closed when the task's function has returned and its slot is
// back.
func (t *Task) Done() <-chan struct{} { return t.done }

// Wait blocks until the task is done and returns its function's error.
func (t *Task) Wait() error {
	<-t.done
	return t.err
}

// Go waits for a slot as Acquire does (so a caller starting many pieces
// of work is held back when the pool is busy: back-pressure), then runs fn
// in a new goroutine under it and releases the slot with fn's error when
// fn returns. The error is Acquire's (fn never runs); fn's own comes from
// the Task. As in any goroutine, a panic in fn ends the program.
func (tp *TaskPool) Go(ctx context.Context, prio Priority, fn func() error) (*Task, error) {
	if fn == nil {
		return nil, newError(CodeInvalid, "TaskPool.Go: fn is nil")
	}
	pm, err := tp.acquire(ctx, "TaskPool.Go", prio)
	if err != nil {
		return nil, err
	}
	t := &Task{done: make(chan struct{})}
	go func() {
		defer close(t.done)
		t.err = runHolding(pm, fn)
	}()
	return t, nil
}

// taskCall is one Submit: fn runs on a worker thread (run), the status
// arrives on the loop thread (complete).
type taskCall struct {
	fn   func() error
	done chan struct{}

	mu       sync.Mutex
	ran      bool
	err      error
	panicked bool
	panicVal any

	fired  int32
	status int
}

func (t *taskCall) run() (status int) {
	t.mu.Lock()
	t.ran = true
	t.mu.Unlock()
	defer func() {
		if v := recover(); v != nil {
			t.mu.Lock()
			t.panicked, t.panicVal = true, v
			t.mu.Unlock()
			status = int(CodeInternal)
		}
	}()
	err := t.fn()
	t.mu.Lock()
	t.err = err
	t.mu.Unlock()
	return outcomeOf(err)
}

func (t *taskCall) complete(status int) {
	if !firstCompletion(&t.fired) {
		return
	}
	t.status = status
	close(t.done)
}

// Submit runs fn on one of the pool's own worker threads (never a Go
// scheduler thread, never libuv's shared pool) when a slot is free, and
// waits for it: for blocking work that should be confined to the pool's
// threads, such as a call into a blocking C library. A goroutine doing
// Go work wants Run instead, which costs no thread switch.
//
// It returns fn's error once fn has run. If fn never ran: ErrTimedOut
// (ctx's deadline passed while queued), ErrCanceled (ctx cancelled while
// queued), ErrFull, ErrClosed, ErrInvalid, or ErrDeadlock on the loop
// thread. Cancelling ctx once fn runs does not interrupt it: Submit still
// waits for its end and returns its error. A panic in fn is recovered on
// the worker thread and raised again in the caller's goroutine.
func (tp *TaskPool) Submit(ctx context.Context, prio Priority, fn func() error) error {
	const what = "TaskPool.Submit"
	defer runtime.KeepAlive(tp)
	if fn == nil {
		return newError(CodeInvalid, what+": fn is nil")
	}
	if err := validPriority(what, prio); err != nil {
		return err
	}
	ms, err := ctxTimeoutMS(ctx, what)
	if err != nil {
		return err
	}
	t := &taskCall{fn: fn, done: make(chan struct{})}
	_, err = tp.o.queueWait(ctx, t, t.done, func(p unsafe.Pointer, h C.uintptr_t, opOut **C.sluice_op) error {
		if tp.o.onLoop() {
			return errLoopBlock(what)
		}
		var r C.sg_result
		C.sg_taskpool_submit(&r, (*C.sluice_taskpool)(p), C.int(prio), C.int64_t(ms), h, opOut)
		return resultErr(&r)
	})
	if err != nil {
		return err
	}
	t.mu.Lock()
	ran, ferr, panicked, pv := t.ran, t.err, t.panicked, t.panicVal
	t.mu.Unlock()
	if panicked {
		panic(pv)
	}
	if ran {
		return ferr
	}
	return waitFailed(ctx, what, t.status, taskPoolWaitMsgs)
}

// TaskPoolStats are a pool's figures. Every request counted in Submitted
// ends up in exactly one of Completed, Failed, Rejected, Expired,
// Cancelled or Closed; until then it is Queued, RoomWaiting or Running.
type TaskPoolStats struct {
	Limit        uint64 // slots now
	Submitted    uint64 // requests counted (refused ones included; not busy tries)
	Queued       uint64 // waiting for a slot now
	Running      uint64 // holding a slot now (tasks and permits)
	Completed    uint64 // tasks that returned nil, permits released with nil
	Failed       uint64 // tasks and permits that ended with an error
	Rejected     uint64 // refused with ErrFull
	Expired      uint64 // ended by their deadline before running
	Cancelled    uint64 // ended by a cancel before running
	Closed       uint64 // ended by a shutdown before running
	PeakRunning  uint64
	PeakQueued   uint64
	QueueWait    time.Duration // total, over every request that got a slot
	RunTotal     time.Duration // task run times plus permit hold times
	RoomWaiting  uint64        // WaitForRoom requests waiting for room now
	Busy         uint64        // TryAcquire refusals (ErrAgain)
	BadReleases  uint64
	Threads      uint64 // worker threads started
	LimitRaised  uint64 // adaptive steps up
	LimitLowered uint64 // adaptive steps down
}

// Stats reads the pool's figures (exact when no call is in progress).
func (tp *TaskPool) Stats() (TaskPoolStats, error) {
	var s C.sluice_taskpool_stats
	err := tp.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		C.sg_taskpool_stats(&r, (*C.sluice_taskpool)(p), &s)
		return resultErr(&r)
	})
	if err != nil {
		return TaskPoolStats{}, err
	}
	return TaskPoolStats{
		Limit:        uint64(s.limit),
		Submitted:    uint64(s.submitted),
		Queued:       uint64(s.queued),
		Running:      uint64(s.running),
		Completed:    uint64(s.completed),
		Failed:       uint64(s.failed),
		Rejected:     uint64(s.rejected),
		Expired:      uint64(s.expired),
		Cancelled:    uint64(s.cancelled),
		Closed:       uint64(s.closed),
		PeakRunning:  uint64(s.peak_running),
		PeakQueued:   uint64(s.peak_queued),
		QueueWait:    nsDuration(s.queue_wait_ns_total),
		RunTotal:     nsDuration(s.run_ns_total),
		RoomWaiting:  uint64(s.room_waiting),
		Busy:         uint64(s.busy),
		BadReleases:  uint64(s.bad_releases),
		Threads:      uint64(s.threads),
		LimitRaised:  uint64(s.limit_raised),
		LimitLowered: uint64(s.limit_lowered),
	}, nil
}

package sluice

/*
#include "retry_shim.h"
*/
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// BreakerState is a circuit breaker's state.
type BreakerState int

const (
	BreakerClosed   BreakerState = C.SLUICE_BREAKER_CLOSED    // calls pass
	BreakerOpen     BreakerState = C.SLUICE_BREAKER_OPEN      // calls are refused with ErrOpen
	BreakerHalfOpen BreakerState = C.SLUICE_BREAKER_HALF_OPEN // a few trial calls pass
)

func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("BreakerState(%d)", int(s))
}

// BreakerOptions configures NewBreaker. The zero value of each field means
// the library's default (docs/retry.md).
type BreakerOptions struct {
	// TimeWindow judges the calls of the last Window; by default the last
	// WindowCalls calls.
	TimeWindow    bool
	WindowCalls   int           // count window: calls kept; default 100
	Window        time.Duration // time window: its length; default 60 s
	WindowBuckets int           // time window: steps of Window/WindowBuckets; default 10
	MinimumCalls  int           // calls judged before a verdict; default 10
	// FailureRate trips the breaker at this failure rate, in percent;
	// default 50; negative turns the failure trigger off.
	FailureRate float64
	// SlowCall makes a call lasting at least this long slow; SlowRate
	// (percent, default 100) of slow calls trips the breaker. Default:
	// slow calls are not tracked.
	SlowCall time.Duration
	SlowRate float64
	// OpenFor is how long an open breaker refuses calls before trials;
	// default 30 s.
	OpenFor        time.Duration
	HalfOpenTrials int // calls let through while half-open; default 3
	// Clock, if set, is the breaker's time; by default a coarse monotonic
	// clock (a few ms late to turn half-open, never early).
	Clock *ManualClock
	// OnStateChange, if set, is told of every state change (the
	// generation grows by one at each, to order racing reports). It runs
	// in the goroutine whose call changed the state, outside the breaker's
	// lock; it must not block.
	OnStateChange func(from, to BreakerState, generation uint64)
	// Classify decides, for Do, which errors count as the dependency's
	// failures (OutcomeRetryable); default DefaultClassify.
	Classify Classifier
	// Monitor, if set, receives "<Name>.opened" each time the breaker
	// trips and "<Name>.rejected" for every call refused while open (both
	// with duration 0 and outcome ErrOpen). The breaker keeps it until the
	// breaker is freed; if the monitor is made on a runtime, closing that
	// runtime frees the breaker (and the policies given it) first.
	Monitor *Monitor
	Name    string // series prefix; default "breaker" (1..64 bytes)
}

// Breaker is a circuit breaker (sluice/breaker.h): it stops calls to a
// dependency that is failing or slow, and tries it again after a while.
// Use it alone (Do, or Allow and Record), or give it to a retry policy
// (PolicyOptions.Breaker). It needs no runtime. Every method is safe for
// concurrent use.
type Breaker struct {
	c *breakerCore
}

// breakerCore outlives the Breaker while policies use it: the library
// needs a breaker to outlive every policy given it.
type breakerCore struct {
	o        *cobject
	classify Classifier
	clock    *ManualClock

	refMu    sync.Mutex
	users    int // policies holding it
	closeReq bool
}

// stateListener is what the state callback's handle points at.
type stateListener struct {
	fn func(from, to BreakerState, generation uint64)
}

func (l *stateListener) changed(from, to int, generation uint64) {
	l.fn(BreakerState(from), BreakerState(to), generation)
}

// NewBreaker creates a breaker, closed with an empty window. Close it
// when done.
func NewBreaker(o BreakerOptions) (*Breaker, error) {
	if err := CheckVersion(); err != nil {
		return nil, err
	}
	var opts C.sluice_breaker_options
	var r C.sg_result
	C.sg_breaker_options_init(&r, &opts)
	if err := resultErr(&r); err != nil {
		return nil, err
	}
	if o.TimeWindow {
		opts.window = C.SLUICE_BREAKER_WINDOW_TIME
	}
	for _, f := range []struct {
		name string
		v    int
		dst  *C.uint32_t
	}{
		{"WindowCalls", o.WindowCalls, &opts.window_calls},
		{"WindowBuckets", o.WindowBuckets, &opts.window_buckets},
		{"MinimumCalls", o.MinimumCalls, &opts.minimum_calls},
		{"HalfOpenTrials", o.HalfOpenTrials, &opts.half_open_trials},
	} {
		if f.v == 0 {
			continue
		}
		v, ok := u32(f.v)
		if !ok {
			return nil, newError(CodeInvalid, "BreakerOptions."+f.name+" is out of range")
		}
		*f.dst = v
	}
	if o.Window != 0 {
		opts.window_ms = C.int64_t(msCeil(o.Window))
	}
	switch {
	case o.FailureRate < 0:
		opts.failure_rate_percent = 0
	case o.FailureRate > 0:
		opts.failure_rate_percent = C.double(o.FailureRate)
	}
	if o.SlowCall != 0 {
		opts.slow_call_ms = C.int64_t(msCeil(o.SlowCall))
	}
	if o.SlowRate != 0 {
		opts.slow_rate_percent = C.double(o.SlowRate)
	}
	if o.OpenFor != 0 {
		opts.open_ms = C.int64_t(msCeil(o.OpenFor))
	}
	if strings.IndexByte(o.Name, 0) >= 0 {
		return nil, newError(CodeInvalid, "BreakerOptions.Name contains a NUL byte")
	}
	if o.Name != "" {
		name := C.CString(o.Name) // copied by the library
		defer C.free(unsafe.Pointer(name))
		opts.name = name
	}
	c := &breakerCore{classify: o.Classify, clock: o.Clock}
	if c.classify == nil {
		c.classify = DefaultClassify
	}
	obj := &cobject{what: "the breaker", cfree: func(p unsafe.Pointer) {
		C.sluice_breaker_free((*C.sluice_breaker)(p))
	}}
	var listener C.uintptr_t
	if o.OnStateChange != nil {
		listener = newHandle(&stateListener{fn: o.OnStateChange})
		obj.after = append(obj.after, func() { dropHandle(listener) })
	}
	// Freed after the policies that use it (rank 0), before the monitor.
	obj.rank = 1
	create := func(mp *C.sluice_monitor) error {
		opts.monitor = mp
		var p *C.sluice_breaker
		var r C.sg_result
		C.sg_breaker_new(&r, &p, &opts, o.Clock.cptr(), listener)
		if err := resultErr(&r); err != nil {
			return err
		}
		obj.ptr = unsafe.Pointer(p)
		return nil
	}
	var err error
	if o.Monitor != nil {
		err = o.Monitor.c.attachAny(func(mp *C.sluice_monitor, deps *depSet) error {
			if err := create(mp); err != nil {
				return err
			}
			obj.after = append(obj.after, o.Monitor.c.releaseUse)
			return obj.joinMonitorDeps(deps, "BreakerOptions.Monitor")
		})
	} else {
		err = create(nil)
	}
	if err != nil {
		if listener != 0 {
			dropHandle(listener)
		}
		return nil, err
	}
	c.o = obj
	b := &Breaker{c: c}
	runtime.SetFinalizer(b, func(b *Breaker) { b.Close() }) // a safety net only
	return b, nil
}

// Close frees the breaker once no retry policy uses it any more (policies
// keep it until they are closed); its methods return ErrClosed from now
// on either way. Calling it again returns nil.
func (b *Breaker) Close() error {
	runtime.SetFinalizer(b, nil)
	c := b.c
	c.refMu.Lock()
	c.closeReq = true
	c.o.markClosed()
	last := c.users == 0
	c.refMu.Unlock()
	if last {
		c.o.free()
	}
	return nil
}

// deps is the runtime set the breaker is freed with (its monitor's
// runtime), or nil.
func (c *breakerCore) depSet() *depSet {
	c.o.mu.RLock()
	defer c.o.mu.RUnlock()
	return c.o.deps
}

// acquireUse gives a policy the breaker's pointer and keeps the breaker
// until releaseUse.
func (c *breakerCore) acquireUse() (*C.sluice_breaker, error) {
	c.refMu.Lock()
	defer c.refMu.Unlock()
	c.o.mu.RLock()
	defer c.o.mu.RUnlock()
	if c.closeReq || c.o.ptr == nil {
		return nil, c.o.errClosed()
	}
	c.users++
	return (*C.sluice_breaker)(c.o.ptr), nil
}

func (c *breakerCore) releaseUse() {
	c.refMu.Lock()
	c.users--
	last := c.users == 0 && c.closeReq
	c.refMu.Unlock()
	if last {
		c.o.free()
	}
}

// BreakerTicket ties a call's result to the state that let it through: a
// result from an earlier state (a call admitted while closed that
// finishes after the breaker opened) is ignored, so it cannot pass for a
// half-open trial.
type BreakerTicket uint64

// Allow asks whether a call may go ahead: a ticket, or ErrOpen (open and
// its wait not over, or half-open with every trial taken). Every call let
// through must be followed by exactly one RecordSuccess, RecordFailure or
// Release, or a half-open breaker waits for the missing trial for ever.
func (b *Breaker) Allow() (BreakerTicket, error) {
	var t C.uint64_t
	err := b.c.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		C.sg_breaker_allow(&r, (*C.sluice_breaker)(p), &t)
		if r.rc == C.SLUICE_EOPEN {
			return newError(CodeOpen, "the circuit breaker refused the call")
		}
		return resultErr(&r)
	})
	return BreakerTicket(t), err
}

func (b *Breaker) record(t BreakerTicket, result C.int, d time.Duration) error {
	if d < 0 {
		d = 0
	}
	return b.c.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		C.sg_breaker_record(&r, (*C.sluice_breaker)(p), C.uint64_t(t), result, C.uint64_t(d))
		return resultErr(&r)
	})
}

// RecordSuccess records that the call of ticket t succeeded and took d
// (a slow success still counts towards the slow-call trigger). Ticket 0
// counts in the current state.
func (b *Breaker) RecordSuccess(t BreakerTicket, d time.Duration) error {
	return b.record(t, C.SLUICE_BREAKER_SUCCESS, d)
}

// RecordFailure records that the call of ticket t failed after d.
func (b *Breaker) RecordFailure(t BreakerTicket, d time.Duration) error {
	return b.record(t, C.SLUICE_BREAKER_FAILURE, d)
}

// Release gives back a call let through that did not happen (its caller
// gave up): while half-open it frees the trial for another caller.
func (b *Breaker) Release(t BreakerTicket) error {
	return b.c.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		C.sg_breaker_release(&r, (*C.sluice_breaker)(p), C.uint64_t(t))
		return resultErr(&r)
	})
}

// Do runs fn if the breaker allows it and records its result: nil and
// errors Classify calls permanent are successes (the dependency answered;
// the request was at fault), retryable ones failures, and a call whose ctx
// ended is released. It returns ErrOpen without calling fn when refused,
// else fn's error.
func (b *Breaker) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	if fn == nil {
		return newError(CodeInvalid, "Breaker.Do: fn is nil")
	}
	t, err := b.Allow()
	if err != nil {
		return err
	}
	start := time.Now()
	done := false
	defer func() {
		if !done { // fn panicked: the call did not report
			_ = b.Release(t)
		}
	}()
	err = fn(ctx)
	d := time.Since(start)
	done = true
	switch {
	case err == nil:
		_ = b.RecordSuccess(t, d)
	case ctx.Err() != nil:
		_ = b.Release(t)
	default:
		if out, _ := b.c.classify(err); out == OutcomeRetryable {
			_ = b.RecordFailure(t, d)
		} else {
			_ = b.RecordSuccess(t, d)
		}
	}
	return err
}

// State is the current state, as of the latest change: an open breaker
// whose wait has passed reads BreakerOpen until the next Allow turns it
// half-open.
func (b *Breaker) State() (BreakerState, error) {
	var s C.int
	err := b.c.o.use(func(p unsafe.Pointer) error {
		s = C.sluice_breaker_state_get((*C.sluice_breaker)(p))
		return nil
	})
	return BreakerState(s), err
}

// SetState forces a state (an operator's switch): closed or half-open
// start with an empty window, open starts a full OpenFor wait. Tickets
// given out before are from an earlier state now.
func (b *Breaker) SetState(s BreakerState) error {
	return b.c.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		C.sg_breaker_set_state(&r, (*C.sluice_breaker)(p), C.int(s))
		return resultErr(&r)
	})
}

// BreakerStats are a breaker's figures.
type BreakerStats struct {
	State          BreakerState
	Generation     uint64 // state changes so far, plus one
	Successes      uint64 // results recorded (not ignored), by kind
	Failures       uint64
	Slow           uint64 // of those, calls at least SlowCall long
	Refused        uint64 // Allow calls answered ErrOpen
	Ignored        uint64 // results from an earlier state, or while open
	Released       uint64
	Opened         uint64 // transitions into open
	HalfOpened     uint64
	Closed         uint64
	WindowCalls    uint64 // calls in the window now (closed)
	WindowFailures uint64
	WindowSlow     uint64
	TrialsTaken    uint32 // half-open: trials let through / reported
	TrialsReported uint32
}

// Stats reads the breaker's figures.
func (b *Breaker) Stats() (BreakerStats, error) {
	var s C.sluice_breaker_stats
	err := b.c.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		C.sg_breaker_stats(&r, (*C.sluice_breaker)(p), &s)
		return resultErr(&r)
	})
	if err != nil {
		return BreakerStats{}, err
	}
	return BreakerStats{
		State:          BreakerState(s.state),
		Generation:     uint64(s.generation),
		Successes:      uint64(s.successes),
		Failures:       uint64(s.failures),
		Slow:           uint64(s.slow),
		Refused:        uint64(s.refused),
		Ignored:        uint64(s.ignored),
		Released:       uint64(s.released),
		Opened:         uint64(s.opened),
		HalfOpened:     uint64(s.half_opened),
		Closed:         uint64(s.closed),
		WindowCalls:    uint64(s.window_calls),
		WindowFailures: uint64(s.window_failures),
		WindowSlow:     uint64(s.window_slow),
		TrialsTaken:    uint32(s.trials_taken),
		TrialsReported: uint32(s.trials_reported),
	}, nil
}

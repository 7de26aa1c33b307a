package sluice

/*
#include "limiter_shim.h"
*/
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"time"
	"unsafe"
)

// Algorithm is a limiter's algorithm (docs/limiter.md explains how to pick).
type Algorithm int

const (
	// SlidingLog is exact: in every window the costs that passed add up to
	// at most Limit. It keeps Limit timestamps per key (Limit at most
	// 65535). The zero value, and the origin's RateLimiter.
	SlidingLog Algorithm = C.SLUICE_LIMITER_SLIDING_LOG
	// SlidingWindow is the sliding-window counter: 16 bytes per key
	// whatever the limit, approximate (at most 2*Limit-1 in a sliding
	// window, at most Limit in each fixed one).
	SlidingWindow Algorithm = C.SLUICE_LIMITER_SLIDING_WINDOW
	// GCRA is a token bucket of Burst units refilled at Limit per Window,
	// 8 bytes per key.
	GCRA Algorithm = C.SLUICE_LIMITER_GCRA
)

func (a Algorithm) String() string {
	switch a {
	case SlidingLog:
		return "sliding-log"
	case SlidingWindow:
		return "sliding-window"
	case GCRA:
		return "gcra"
	}
	return fmt.Sprintf("Algorithm(%d)", int(a))
}

// LimitReason is why a request got the answer it got.
type LimitReason int

const (
	ReasonOK      LimitReason = C.SLUICE_LIMITER_OK      // passed (or would, for Peek)
	ReasonLimited LimitReason = C.SLUICE_LIMITER_LIMITED // refused: the key's limit
	ReasonBlocked LimitReason = C.SLUICE_LIMITER_BLOCKED // refused: the key is blocked
	ReasonQueued  LimitReason = C.SLUICE_LIMITER_QUEUED  // refused: requests wait on the key
	ReasonFull    LimitReason = C.SLUICE_LIMITER_FULL    // a new key while MaxKeys are tracked
)

func (r LimitReason) String() string {
	switch r {
	case ReasonOK:
		return "ok"
	case ReasonLimited:
		return "limited"
	case ReasonBlocked:
		return "blocked"
	case ReasonQueued:
		return "queued"
	case ReasonFull:
		return "full"
	}
	return fmt.Sprintf("LimitReason(%d)", int(r))
}

// Limits of the library.
const (
	MaxLimiterKey  = C.SLUICE_LIMITER_MAX_KEY  // the longest key, in bytes
	MaxLimiterLog  = C.SLUICE_LIMITER_MAX_LOG  // the largest Limit of a SlidingLog limiter
	MaxLimiterMany = C.SLUICE_LIMITER_MAX_MANY // the most items of one CheckMany
)

// LimiterOptions configures NewLimiter. The zero value of each field means
// the library's default.
type LimiterOptions struct {
	Algorithm Algorithm     // default SlidingLog
	Limit     uint64        // cost allowed per window; default 20
	Window    time.Duration // default 60 s; 1 µs to about 52 days
	Burst     uint64        // GCRA's bucket; default Limit
	MaxKeys   uint64        // keys tracked at most; default 100000
	// FailOpen lets a request for a new key pass untracked when MaxKeys
	// keys are tracked; by default it is refused with ErrLimit.
	FailOpen bool
	// Clock, if set, is the limiter's time (tests drive it exactly).
	// Wait's deadline still runs on real time; call Wake after moving the
	// clock so that waiting requests look again.
	Clock *ManualClock
	// Monitor, if set, receives "<Name>.rejected" for each refused check
	// and "<Name>.wait" for each wait that went to the loop. It must be
	// made on the limiter's runtime, or on none.
	Monitor *Monitor
	Name    string // the monitor series' prefix; default "limiter"
}

// Limiter is a per-key rate limiter with bounded memory
// (sluice/limiter.h). Checks run in the calling goroutine on sharded state
// and never wait; Wait waits on the runtime's loop, first come first
// served per key. Every method is safe for concurrent use.
//
//	if !limiter.Allow("user:42") {
//		return errSlowDown
//	}
//	if err := limiter.Wait(ctx, "user:42", 1); err != nil {
//		return err
//	}
type Limiter struct {
	rt    *Runtime
	o     *cobject
	clock *ManualClock
}

// NewLimiter creates a limiter. rt runs the waits and may be nil for a
// limiter that is only checked (Wait then fails with ErrInvalid). Close it
// when done; closing its runtime (or its monitor's) closes it too.
func NewLimiter(rt *Runtime, o LimiterOptions) (*Limiter, error) {
	if err := CheckVersion(); err != nil {
		return nil, err
	}
	if o.Window < 0 {
		return nil, newError(CodeInvalid, "LimiterOptions.Window is negative")
	}
	if strings.IndexByte(o.Name, 0) >= 0 {
		return nil, newError(CodeInvalid, "LimiterOptions.Name contains a NUL byte")
	}
	var name *C.char
	if o.Name != "" {
		name = C.CString(o.Name) // copied by the library
		defer C.free(unsafe.Pointer(name))
	}
	onFull := C.int(C.SLUICE_LIMITER_FULL_REJECT)
	if o.FailOpen {
		onFull = C.SLUICE_LIMITER_FULL_ALLOW
	}
	obj := &cobject{what: "the limiter", cfree: func(p unsafe.Pointer) {
		C.sluice_limiter_free((*C.sluice_limiter)(p))
	}}
	if o.Clock != nil {
		clock := o.Clock
		obj.after = append(obj.after, func() { runtime.KeepAlive(clock) })
	}
	create := func(rtp *C.sluice_runtime, mp *C.sluice_monitor) error {
		var p *C.sluice_limiter
		var r C.sg_result
		C.sg_limiter_new(&r, &p, rtp, C.int(o.Algorithm), C.uint64_t(o.Limit), C.uint64_t(o.Window),
			C.uint64_t(o.Burst), C.uint64_t(o.MaxKeys), onFull, o.Clock.cptr(), mp, name)
		if err := resultErr(&r); err != nil {
			return err
		}
		obj.ptr, obj.rtp = unsafe.Pointer(p), rtp
		return nil
	}
	var err error
	switch {
	case rt != nil:
		err = rt.use(func(rtp *C.sluice_runtime) error {
			var mp *C.sluice_monitor
			if o.Monitor != nil {
				var err error
				if mp, err = o.Monitor.c.acquireUseFor(rtp, "LimiterOptions.Monitor"); err != nil {
					return err
				}
			}
			if err := create(rtp, mp); err != nil {
				if mp != nil {
					o.Monitor.c.releaseUse()
				}
				return err
			}
			if mp != nil {
				obj.after = append(obj.after, o.Monitor.c.releaseUse)
			}
			obj.deps = rt.deps
			rt.deps.add(obj) // under the runtime's read lock: Close frees it
			return nil
		})
	case o.Monitor != nil:
		err = o.Monitor.c.attachAny(func(mp *C.sluice_monitor, deps *depSet) error {
			if err := create(nil, mp); err != nil {
				return err
			}
			obj.after = append(obj.after, o.Monitor.c.releaseUse)
			return obj.joinMonitorDeps(deps, "LimiterOptions.Monitor")
		})
	default:
		err = create(nil, nil)
	}
	if err != nil {
		return nil, err
	}
	l := &Limiter{rt: rt, o: obj, clock: o.Clock}
	runtime.SetFinalizer(l, func(l *Limiter) { l.o.close() }) // a safety net only
	return l, nil
}

// Close frees the limiter: waits still pending fail with ErrClosed and
// every method returns ErrClosed. Calling it again returns nil.
func (l *Limiter) Close() error {
	runtime.SetFinalizer(l, nil)
	l.o.close()
	return nil
}

// LimitResult is a limiter's full answer.
type LimitResult struct {
	Allowed bool        // the cost passed (Peek: would pass)
	Reason  LimitReason // why
	// Limit is the largest cost that can ever pass at once: Limit (GCRA:
	// Burst).
	Limit uint64
	// Remaining is the cost that could still pass now, after this request.
	Remaining uint64
	// RetryAfter: the same request passes at now + RetryAfter if nothing
	// else consumes the key (rounded up, never down); 0 when allowed.
	RetryAfter time.Duration
	// ResetAfter: until the key is back to a fresh key's state.
	ResetAfter time.Duration
	// Index is, for CheckMany, the item that decided; 0 otherwise.
	Index int
}

func limitResult(res *C.sluice_limiter_result) LimitResult {
	return LimitResult{
		Allowed:    res.allowed != 0,
		Reason:     LimitReason(res.reason),
		Limit:      uint64(res.limit),
		Remaining:  uint64(res.remaining),
		RetryAfter: nsDuration(res.retry_after_ns),
		ResetAfter: nsDuration(res.reset_after_ns),
		Index:      int(res.index),
	}
}

func (l *Limiter) check(key string, cost uint64, peek C.int) (LimitResult, error) {
	var res C.sluice_limiter_result
	err := l.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		C.sg_limiter_check(&r, (*C.sluice_limiter)(p), strData(key), C.size_t(len(key)),
			C.uint64_t(cost), peek, &res)
		if r.rc == C.SLUICE_EREJECTED {
			return nil // an answer, in res
		}
		return resultErr(&r)
	})
	if err != nil {
		if isCode(err, CodeLimit) {
			return limitResult(&res), err // Reason says FULL
		}
		return LimitResult{}, err
	}
	return limitResult(&res), nil
}

// Check asks for cost units of key now and takes them if they are there.
// A refusal is an answer, not an error: Allowed false, with Reason and
// RetryAfter. Errors: ErrInvalid (an empty or too long key; cost 0 or
// above Limit, which could never pass), ErrLimit (a new key while MaxKeys
// keys are tracked; the result says ReasonFull), ErrClosed.
func (l *Limiter) Check(key string, cost uint64) (LimitResult, error) {
	return l.check(key, cost, 0)
}

// Peek is what Check would answer now, without taking anything or
// creating the key.
func (l *Limiter) Peek(key string, cost uint64) (LimitResult, error) {
	return l.check(key, cost, 1)
}

// Allow is Check(key, 1).Allowed: true if one unit of key was taken now.
// Any error (see Check) counts as not allowed.
func (l *Limiter) Allow(key string) bool {
	res, err := l.check(key, 1, 0)
	return err == nil && res.Allowed
}

// LimitItem is one item of CheckMany.
type LimitItem struct {
	Limiter *Limiter
	Key     string
	Cost    uint64
}

// CheckMany is all or nothing across several limiters (the user's limit,
// the group's and a global one): every item's cost is taken, or none is.
// The result combines the items' (RetryAfter the largest, so a retry then
// passes every item; Remaining the smallest; Index and Reason from the
// deciding item). An item given twice counts with the sum of its costs.
// Errors: as Check, with the item's index in the message, and ErrInvalid
// for no items or more than MaxLimiterMany.
func CheckMany(items ...LimitItem) (LimitResult, error) {
	n := len(items)
	if n == 0 || n > MaxLimiterMany {
		return LimitResult{}, newError(CodeInvalid, fmt.Sprintf("CheckMany: %d items (1..%d)", n, MaxLimiterMany))
	}
	// Every limiter stays live for the call: read-lock each once, in one
	// order (by address) so that two calls never wait for each other
	// around a pending Close.
	objs := make([]*cobject, 0, n)
	seen := map[*cobject]bool{}
	total := 0
	for i, it := range items {
		if it.Limiter == nil {
			return LimitResult{}, newError(CodeInvalid, fmt.Sprintf("CheckMany: item %d has no limiter", i))
		}
		if !seen[it.Limiter.o] {
			seen[it.Limiter.o] = true
			objs = append(objs, it.Limiter.o)
		}
		total += len(it.Key)
	}
	sort.Slice(objs, func(i, j int) bool {
		return uintptr(unsafe.Pointer(objs[i])) < uintptr(unsafe.Pointer(objs[j]))
	})
	for i, o := range objs {
		o.mu.RLock()
		if o.ptr == nil || o.closedNow() {
			for _, u := range objs[:i+1] {
				u.mu.RUnlock()
			}
			return LimitResult{}, o.errClosed()
		}
	}
	defer func() {
		for _, o := range objs {
			o.mu.RUnlock()
		}
	}()
	limiters := make([]*C.sluice_limiter, n)
	bytes := make([]byte, 0, total)
	lens := make([]C.size_t, n)
	costs := make([]C.uint64_t, n)
	for i, it := range items {
		limiters[i] = (*C.sluice_limiter)(it.Limiter.o.ptr)
		bytes = append(bytes, it.Key...)
		lens[i] = C.size_t(len(it.Key))
		costs[i] = C.uint64_t(it.Cost)
	}
	var bp *C.char
	if len(bytes) > 0 {
		bp = (*C.char)(unsafe.Pointer(&bytes[0]))
	}
	var res C.sluice_limiter_result
	var r C.sg_result
	C.sg_limiter_check_many(&r, &limiters[0], bp, &lens[0], &costs[0], C.size_t(n), &res)
	if r.rc == C.SLUICE_EREJECTED {
		return limitResult(&res), nil
	}
	if err := resultErr(&r); err != nil {
		if isCode(err, CodeLimit) {
			return limitResult(&res), err
		}
		return LimitResult{}, err
	}
	return limitResult(&res), nil
}

// Wait waits until cost units of key can be taken and takes them: first
// come first served per key (a later request never passes an earlier one),
// within ctx. Cost that can pass at once is taken in the calling
// goroutine without a trip to the loop.
//
// It returns nil once the units were taken, also when ctx ended at the
// same moment (units cannot be given back). If ctx ends first the wait is
// cancelled: the error matches ErrCanceled and ctx.Err() (ErrTimedOut and
// context.DeadlineExceeded for a deadline). Other errors: as Check;
// ErrInvalid when the limit is lowered below cost while waiting, or the
// limiter has no runtime; ErrClosed; ErrDeadlock on the loop thread.
func (l *Limiter) Wait(ctx context.Context, key string, cost uint64) error {
	defer runtime.KeepAlive(l)
	if err := ctx.Err(); err != nil {
		return ctxEnded(err, "the context ended before Limiter.Wait was called")
	}
	passed := false
	err := l.o.use(func(p unsafe.Pointer) error {
		if l.o.rtp == nil {
			return newError(CodeInvalid, "Limiter.Wait: the limiter was made without a runtime")
		}
		if l.o.onLoop() {
			return errLoopBlock("Limiter.Wait")
		}
		var r C.sg_result
		var ok C.int
		C.sg_limiter_take_now(&r, (*C.sluice_limiter)(p), strData(key), C.size_t(len(key)), C.uint64_t(cost), &ok)
		passed = ok != 0
		return resultErr(&r)
	})
	if err != nil || passed {
		return err
	}
	ms, err := ctxTimeoutMS(ctx, "Limiter.Wait")
	if err != nil {
		return err
	}
	k := &statusCall{done: make(chan struct{})}
	_, err = l.o.queueWait(ctx, k, k.done, func(p unsafe.Pointer, h C.uintptr_t, opOut **C.sluice_op) error {
		var r C.sg_result
		C.sg_limiter_acquire(&r, (*C.sluice_limiter)(p), strData(key), C.size_t(len(key)), C.uint64_t(cost),
			C.int64_t(ms), h, opOut)
		return resultErr(&r)
	})
	if err != nil {
		return err
	}
	if k.status == 0 {
		return nil // the units were taken, even if ctx ended meanwhile
	}
	return waitFailed(ctx, "Limiter.Wait", k.status, limiterWaitMsgs)
}

// limiterWaitMsgs are the limiter's own messages for a failed wait.
var limiterWaitMsgs = map[Code]string{
	CodeClosed:  "the limiter or its runtime closed while waiting",
	CodeInvalid: "the limit was lowered below the cost while waiting",
}

// Wake makes every waiting request look at its key again now. The
// limiter's timers do this on real time by themselves; a program that
// moves the limiter's ManualClock calls it after each move.
func (l *Limiter) Wake() error {
	return l.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		C.sg_limiter_wake(&r, (*C.sluice_limiter)(p))
		return resultErr(&r)
	})
}

// SetLimit changes the limit, the window and the burst (0: Limit), keeping
// the algorithm and each key's state. Waiting requests look again; those
// whose cost is now above the limit fail with ErrInvalid.
func (l *Limiter) SetLimit(limit uint64, window time.Duration, burst uint64) error {
	if window < 0 {
		return newError(CodeInvalid, "Limiter.SetLimit: window is negative")
	}
	return l.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		C.sg_limiter_set_limit(&r, (*C.sluice_limiter)(p), C.uint64_t(limit), C.uint64_t(window), C.uint64_t(burst))
		return resultErr(&r)
	})
}

// Block refuses every request for key for d from now (abuse), replacing
// an earlier block; waiters on it wait until the block ends.
func (l *Limiter) Block(key string, d time.Duration) error {
	if d <= 0 {
		return newError(CodeInvalid, "Limiter.Block: the duration must be positive")
	}
	return l.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		C.sg_limiter_block(&r, (*C.sluice_limiter)(p), strData(key), C.size_t(len(key)), C.uint64_t(d))
		return resultErr(&r)
	})
}

// Unblock lifts a block of key (its rate state stays) and wakes its
// waiters. It reports whether the key was blocked.
func (l *Limiter) Unblock(key string) (bool, error) {
	was := false
	err := l.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		C.sg_limiter_unblock(&r, (*C.sluice_limiter)(p), strData(key), C.size_t(len(key)))
		was = r.rc == 1
		return resultErr(&r)
	})
	return was, err
}

// Sweep reclaims every key whose state is a fresh key's now (no accuracy
// is lost) and returns how many. The limiter also does this by itself as
// keys are inserted.
func (l *Limiter) Sweep() (int64, error) {
	var n int64
	err := l.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		n = int64(C.sg_limiter_sweep(&r, (*C.sluice_limiter)(p)))
		return resultErr(&r)
	})
	return n, err
}

// LimiterStats are a limiter's figures. Each count is exact; under
// concurrent use they are gathered shard by shard, not at one instant.
type LimiterStats struct {
	Algorithm    Algorithm
	Limit        uint64
	Window       time.Duration
	Burst        uint64 // GCRA's; 0 for the others
	Keys         uint64 // tracked now
	PeakKeys     uint64
	Allowed      uint64 // requests that passed (checks, CheckMany items, granted waits)
	Rejected     uint64 // checks refused
	FullRefused  uint64 // new keys refused at MaxKeys
	FullAllowed  uint64 // new keys passed untracked (FailOpen)
	Waits        uint64 // waits that went to the loop
	Waiting      uint64 // waits pending now
	WaitTimeouts uint64
	WaitCancels  uint64
	Reclaimed    uint64 // keys reclaimed (fresh again)
	Blocks       uint64
	Bytes        uint64 // memory held for keys
}

// Stats reads the limiter's figures.
func (l *Limiter) Stats() (LimiterStats, error) {
	var s C.sluice_limiter_stats
	err := l.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		C.sg_limiter_stats(&r, (*C.sluice_limiter)(p), &s)
		return resultErr(&r)
	})
	if err != nil {
		return LimiterStats{}, err
	}
	return LimiterStats{
		Algorithm:    Algorithm(s.algorithm),
		Limit:        uint64(s.limit),
		Window:       nsDuration(s.window_ns),
		Burst:        uint64(s.burst),
		Keys:         uint64(s.keys),
		PeakKeys:     uint64(s.peak_keys),
		Allowed:      uint64(s.allowed),
		Rejected:     uint64(s.rejected),
		FullRefused:  uint64(s.full_refused),
		FullAllowed:  uint64(s.full_allowed),
		Waits:        uint64(s.waits),
		Waiting:      uint64(s.waiting),
		WaitTimeouts: uint64(s.wait_timeouts),
		WaitCancels:  uint64(s.wait_cancels),
		Reclaimed:    uint64(s.reclaimed),
		Blocks:       uint64(s.blocks),
		Bytes:        uint64(s.bytes),
	}, nil
}

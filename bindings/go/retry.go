package sluice

/*
#include "retry_shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Jitter is how a retry policy spreads its delays (docs/retry.md).
type Jitter int

const (
	JitterFull         Jitter = iota // uniform in [0, e(n)]; the zero value and default
	JitterNone                       // exactly e(n)
	JitterEqual                      // in [e(n)/2, e(n)]
	JitterDecorrelated               // AWS's: grows from the previous delay; clumps at MaxDelay
	JitterSpread                     // decorrelated growth without the clump at MaxDelay
)

var jitterC = map[Jitter]C.int{
	JitterFull:         C.SLUICE_RETRY_JITTER_FULL,
	JitterNone:         C.SLUICE_RETRY_JITTER_NONE,
	JitterEqual:        C.SLUICE_RETRY_JITTER_EQUAL,
	JitterDecorrelated: C.SLUICE_RETRY_JITTER_DECORRELATED,
	JitterSpread:       C.SLUICE_RETRY_JITTER_SPREAD,
}

// Outcome is how a failed attempt is classified.
type Outcome int

const (
	OutcomeRetryable Outcome = C.SLUICE_RETRY_RETRYABLE // may succeed if tried again
	OutcomePermanent Outcome = C.SLUICE_RETRY_PERMANENT // trying again cannot help
)

// Classifier classifies an attempt's error (never nil): retryable or
// permanent, and how long the server asked to wait before the next
// attempt (0: no hint).
type Classifier func(err error) (Outcome, time.Duration)

// PolicyOptions configures NewPolicy. The zero value of each field means
// the library's default (docs/retry.md). Delays and timeouts have
// millisecond resolution in the library and are rounded up.
type PolicyOptions struct {
	MaxAttempts int           // attempts including the first; default 3
	BaseDelay   time.Duration // the first backoff; default 100 ms
	Multiplier  float64       // growth per retry; default 2
	MaxDelay    time.Duration // cap on the backoff (not on hints); default 10 s
	Jitter      Jitter        // default JitterFull
	// TotalTimeout is a deadline from the start of each Do; the earlier of
	// it and ctx's deadline applies. Default: none.
	TotalTimeout time.Duration
	// AttemptTimeout bounds each attempt: the attempt's ctx ends then
	// (a retryable timeout). Default: none.
	AttemptTimeout time.Duration
	// BudgetRatio is the retry tokens every Do earns (default 0.1);
	// BudgetTokens the balance's start and ceiling (default 10; negative:
	// 0). Over N runs, retries <= BudgetRatio*N + BudgetTokens however
	// the attempts fail. DisableBudget turns the budget off.
	BudgetRatio   float64
	BudgetTokens  int
	DisableBudget bool
	Seed          uint64 // jitter source; 0 seeds from the time
	// Breaker, if set, is asked before every attempt and told each
	// attempt's result; a refusal ends the run with ErrOpen. The policy
	// keeps it until the policy is closed.
	Breaker *Breaker
	// Monitor, if set, receives "<Name>.attempt" and "<Name>.run".
	Monitor *Monitor
	Name    string // default "retry"
	// Clock, if set, is the policy's time: its deadlines, and the
	// breaker's durations. Waits still take real time unless Sleep says
	// otherwise.
	Clock *ManualClock

	// Classify classifies each failed attempt; default DefaultClassify,
	// or ClassifyIdempotent if Idempotent is set.
	Classify   Classifier
	Idempotent bool
	// OnRetry, if set, is told of each retry before its wait: the attempt
	// that failed (1 for the first), its error and the wait.
	OnRetry func(attempt int, err error, delay time.Duration)
	// Sleep waits between attempts; default a timer that ctx cancels. A
	// test or a simulation passes its own (say, one that moves a
	// ManualClock and returns at once).
	Sleep func(ctx context.Context, d time.Duration) error
}

// cOptions fills a C options struct from o (everything but the breaker,
// the monitor and the name, which need the policy's lifetime).
func (o *PolicyOptions) cOptions(opts *C.sluice_retry_options) error {
	var r C.sg_result
	C.sg_retry_options_init(&r, opts)
	if err := resultErr(&r); err != nil {
		return err
	}
	if o.MaxAttempts != 0 {
		v, ok := u32(o.MaxAttempts)
		if !ok {
			return newError(CodeInvalid, "PolicyOptions.MaxAttempts is out of range")
		}
		opts.max_attempts = v
	}
	if o.BaseDelay != 0 {
		opts.base_delay_ms = C.int64_t(msCeil(o.BaseDelay))
	}
	if o.Multiplier != 0 {
		opts.multiplier = C.double(o.Multiplier)
	}
	if o.MaxDelay != 0 {
		opts.max_delay_ms = C.int64_t(msCeil(o.MaxDelay))
	}
	j, ok := jitterC[o.Jitter]
	if !ok {
		return newError(CodeInvalid, fmt.Sprintf("PolicyOptions.Jitter %d is unknown", int(o.Jitter)))
	}
	opts.jitter = j
	opts.total_timeout_ms = C.int64_t(msCeil(o.TotalTimeout))
	opts.attempt_timeout_ms = C.int64_t(msCeil(o.AttemptTimeout))
	switch {
	case o.DisableBudget:
		opts.budget_ratio = 0
	case o.BudgetRatio != 0:
		opts.budget_ratio = C.double(o.BudgetRatio)
	}
	switch {
	case o.BudgetTokens < 0:
		opts.budget_tokens = 0
	case o.BudgetTokens > 0:
		v, ok := u32(o.BudgetTokens)
		if !ok {
			return newError(CodeInvalid, "PolicyOptions.BudgetTokens is out of range")
		}
		opts.budget_tokens = v
	}
	opts.seed = C.uint64_t(o.Seed)
	return nil
}

// Policy is a retry policy (sluice/retry.h): backoff with jitter, a
// deadline, per-attempt timeouts, retry-after hints, a retry budget shared
// by every Do, and optionally a circuit breaker. Do runs each attempt in
// the calling goroutine and sleeps between attempts on a Go timer; the
// library decides every wait and keeps the budget, the breaker and the
// figures. Every method is safe for concurrent use.
type Policy struct {
	o     *cobject
	clock *ManualClock

	classify Classifier
	onRetry  func(attempt int, err error, delay time.Duration)
	sleep    func(ctx context.Context, d time.Duration) error

	// Sessions of the Do calls in flight. free (policy closed, or its
	// monitor's runtime closed) frees them before the policy: the library
	// needs the monitor and the breaker while one is open.
	sessMu   sync.Mutex
	sessions map[*retrySession]struct{}
	taken    []*retrySession
}

type retrySession struct {
	ptr *C.sluice_retry_session // nil once freed; under the policy's lock
}

// NewPolicy creates a retry policy. It needs no runtime. Close it when
// done (before its breaker is freed, which waits for it anyway).
func NewPolicy(o PolicyOptions) (*Policy, error) {
	if err := CheckVersion(); err != nil {
		return nil, err
	}
	if strings.IndexByte(o.Name, 0) >= 0 {
		return nil, newError(CodeInvalid, "PolicyOptions.Name contains a NUL byte")
	}
	var opts C.sluice_retry_options
	if err := o.cOptions(&opts); err != nil {
		return nil, err
	}
	if o.Name != "" {
		name := C.CString(o.Name) // copied by the library
		defer C.free(unsafe.Pointer(name))
		opts.name = name
	}
	p := &Policy{clock: o.Clock, classify: o.Classify, onRetry: o.OnRetry, sleep: o.Sleep,
		sessions: map[*retrySession]struct{}{}}
	switch {
	case p.classify != nil:
	case o.Idempotent:
		p.classify = ClassifyIdempotent
	default:
		p.classify = DefaultClassify
	}
	if p.sleep == nil {
		p.sleep = sleepCtx
	}
	obj := &cobject{what: "the retry policy"}
	obj.takeAll = func() {
		p.sessMu.Lock()
		for s := range p.sessions {
			p.taken = append(p.taken, s)
		}
		p.sessions = nil
		p.sessMu.Unlock()
	}
	obj.cfree = func(ptr unsafe.Pointer) {
		for _, s := range p.taken { // an open session counts as cancelled
			C.sluice_retry_session_free(s.ptr)
			s.ptr = nil
		}
		p.taken = nil
		C.sluice_retry_free((*C.sluice_retry)(ptr))
	}
	if o.Clock != nil {
		clock := o.Clock
		obj.after = append(obj.after, func() { runtime.KeepAlive(clock) })
	}
	if o.Breaker != nil {
		bp, err := o.Breaker.c.acquireUse()
		if err != nil {
			return nil, err
		}
		opts.breaker = bp
		obj.after = append(obj.after, o.Breaker.c.releaseUse)
	}
	create := func(mp *C.sluice_monitor) error {
		opts.monitor = mp
		var ptr *C.sluice_retry
		var r C.sg_result
		C.sg_retry_new(&r, &ptr, &opts, o.Clock.cptr())
		if err := resultErr(&r); err != nil {
			return err
		}
		obj.ptr = unsafe.Pointer(ptr)
		return nil
	}
	// A breaker that records into a runtime's monitor is freed when that
	// runtime closes; the policy holding it must go first, so it joins the
	// same set (one set only: both monitors must share the runtime).
	var breakerDeps *depSet
	if o.Breaker != nil {
		breakerDeps = o.Breaker.c.depSet()
	}
	var err error
	if o.Monitor != nil {
		err = o.Monitor.c.attachAny(func(mp *C.sluice_monitor, deps *depSet) error {
			if deps != nil && breakerDeps != nil && deps != breakerDeps {
				return newError(CodeInvalid, "PolicyOptions.Monitor and the breaker's monitor are on different runtimes")
			}
			if deps == nil {
				deps = breakerDeps
			}
			if err := create(mp); err != nil {
				return err
			}
			obj.after = append(obj.after, o.Monitor.c.releaseUse)
			return obj.joinMonitorDeps(deps, "PolicyOptions.Monitor")
		})
	} else {
		err = create(nil)
		if err == nil {
			err = obj.joinMonitorDeps(breakerDeps, "the breaker's monitor")
		}
	}
	if err != nil {
		if o.Breaker != nil {
			o.Breaker.c.releaseUse()
		}
		return nil, err
	}
	p.o = obj
	runtime.SetFinalizer(p, func(p *Policy) { p.o.close() }) // a safety net only
	return p, nil
}

// Close frees the policy: Do calls in flight end with ErrClosed at their
// next step (their attempt running now finishes first), and every method
// returns ErrClosed. Calling it again returns nil.
func (p *Policy) Close() error {
	runtime.SetFinalizer(p, nil)
	p.o.close()
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Do runs fn until it succeeds or the policy says stop, sleeping between
// attempts. Each attempt gets a ctx that ends with the attempt's timeout
// (AttemptTimeout, cut to the run's deadline). The run's deadline is ctx's
// (and TotalTimeout): a retry whose wait would reach it is not made.
//
// It returns nil on success. When the attempts ran out, or an attempt
// failed permanently, it returns that attempt's error as is. When the run
// was stopped otherwise it returns an *Error that wraps the last
// attempt's error (errors.Is finds both): ErrBudget (the retry budget is
// spent), ErrTimedOut (the deadline would pass before the next attempt),
// ErrOpen (the breaker refused; before the first attempt nothing is
// wrapped), ErrClosed (the policy was closed). If ctx ends, Do returns at
// once (after the attempt running then returns) with an error matching
// ErrCanceled and ctx.Err() (ErrTimedOut and DeadlineExceeded for a
// deadline). A panic in fn ends the run (as cancelled) and propagates.
func (p *Policy) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	if fn == nil {
		return newError(CodeInvalid, "Policy.Do: fn is nil")
	}
	if err := ctx.Err(); err != nil {
		return ctxEnded(err, "Policy.Do: the context ended before the first attempt")
	}
	var deadline uint64
	if d, ok := ctx.Deadline(); ok {
		left := time.Until(d)
		if left < 1 {
			left = 1
		}
		deadline = p.clock.nowNS() + uint64(left)
	}
	s, err := p.newSession(deadline)
	if err != nil {
		return err
	}
	defer p.freeSession(s)

	var lastErr error
	for attempt := 1; ; attempt++ {
		ok, attemptDeadline, status, err := p.begin(s)
		if err != nil {
			return wrapLast(err, lastErr)
		}
		if !ok {
			return p.stopped(status, attempt-1, lastErr)
		}
		actx, cancel := ctx, context.CancelFunc(func() {})
		if attemptDeadline != 0 {
			// The deadline is on the policy's clock; the attempt's ctx
			// gets the time left on it.
			left := time.Duration(0)
			if now := p.clock.nowNS(); attemptDeadline > now {
				left = nsDuration(C.uint64_t(attemptDeadline - now))
			}
			actx, cancel = context.WithTimeout(ctx, left)
		}
		err = fn(actx)
		cancel()
		if err == nil {
			// The work is done even if the policy was closed meanwhile
			// (the report then fails with ErrClosed and is dropped).
			_, _, _, _ = p.end(s, C.SLUICE_RETRY_SUCCESS, 0, 0)
			return nil
		}
		if ctx.Err() != nil { // the caller gave up: the deferred free cancels the run
			return ctxEnded(ctx.Err(), fmt.Sprintf("Policy.Do: the context ended during attempt %d (%v)", attempt, err))
		}
		outcome, hint := p.classify(err)
		if outcome != OutcomeRetryable && outcome != OutcomePermanent {
			e := newError(CodeInvalid, fmt.Sprintf("Policy.Do: the classifier returned outcome %d for %v", int(outcome), err))
			e.cause = err
			return e
		}
		if hint < 0 {
			hint = 0
		}
		code := outcomeOf(err)
		more, delay, status, cerr := p.end(s, C.int(outcome), C.int(code), C.uint64_t(hint))
		if cerr != nil {
			return wrapLast(cerr, err)
		}
		lastErr = err
		if !more {
			if int(status) == code {
				return err // attempts ran out, or a permanent failure
			}
			return p.stopped(status, attempt, lastErr)
		}
		if p.onRetry != nil {
			p.onRetry(attempt, err, delay)
		}
		if serr := p.sleep(ctx, delay); serr != nil {
			cause := ctx.Err()
			if cause == nil {
				cause = serr
			}
			e := ctxEnded(cause, fmt.Sprintf("Policy.Do: gave up waiting to retry after attempt %d (%v)", attempt, err))
			return e
		}
	}
}

// stopped is the error of a run the policy stopped with status.
func (p *Policy) stopped(status C.int, attempts int, last error) error {
	why := ""
	switch Code(status) {
	case CodeBudget:
		why = "the retry budget is spent"
	case CodeTimedOut:
		why = "the deadline would pass before the next attempt"
	case CodeOpen:
		why = "the circuit breaker refused the attempt"
	case CodeClosed:
		why = "the retry policy was closed"
	default:
		why = "the run ended"
	}
	e := newError(Code(status), fmt.Sprintf("retry: %s (%d attempts made)", why, attempts))
	e.cause = last
	return e
}

// wrapLast adds the last attempt's error to err, a failure of the policy
// itself (ErrClosed).
func wrapLast(err error, last error) error {
	if e, ok := err.(*Error); ok && last != nil && e.cause == nil {
		e.cause = last
	}
	return err
}

func (p *Policy) newSession(deadline uint64) (*retrySession, error) {
	s := &retrySession{}
	err := p.o.use(func(ptr unsafe.Pointer) error {
		var r C.sg_result
		C.sg_retry_session_new(&r, (*C.sluice_retry)(ptr), C.uint64_t(deadline), &s.ptr)
		if err := resultErr(&r); err != nil {
			return err
		}
		p.sessMu.Lock()
		p.sessions[s] = struct{}{}
		p.sessMu.Unlock()
		return nil
	})
	return s, err
}

// freeSession frees s unless the policy's free took it.
func (p *Policy) freeSession(s *retrySession) {
	p.o.mu.RLock()
	defer p.o.mu.RUnlock()
	if p.o.ptr == nil {
		return // taken and freed with the policy
	}
	p.sessMu.Lock()
	delete(p.sessions, s)
	p.sessMu.Unlock()
	C.sluice_retry_session_free(s.ptr)
	s.ptr = nil
}

// useSession runs f with s's C session while the policy is live. After
// Close it fails with ErrClosed even if the policy's free has not run yet:
// a session's next step must not start then.
func (p *Policy) useSession(s *retrySession, f func(*C.sluice_retry_session) error) error {
	return p.o.use(func(unsafe.Pointer) error { return f(s.ptr) })
}

func (p *Policy) begin(s *retrySession) (ok bool, attemptDeadline uint64, status C.int, err error) {
	err = p.useSession(s, func(cs *C.sluice_retry_session) error {
		var r C.sg_result
		var d C.uint64_t
		C.sg_retry_session_begin(&r, cs, &d, &status)
		ok, attemptDeadline = r.rc == 1, uint64(d)
		return resultErr(&r)
	})
	return
}

func (p *Policy) end(s *retrySession, outcome, code C.int, hint C.uint64_t) (more bool, delay time.Duration, status C.int, err error) {
	err = p.useSession(s, func(cs *C.sluice_retry_session) error {
		var r C.sg_result
		var d C.uint64_t
		C.sg_retry_session_end(&r, cs, outcome, code, hint, &d, &status)
		more, delay = r.rc == 1, nsDuration(d)
		return resultErr(&r)
	})
	return
}

// RetryStats are a policy's figures. Runs = successes + failures +
// in flight.
type RetryStats struct {
	Runs                uint64 // Do calls started
	InFlight            uint64
	Attempts            uint64 // first attempts included
	SuccessesFirst      uint64 // runs that succeeded at the first attempt
	SuccessesAfterRetry uint64
	FailuresFirst       uint64 // runs that failed with at most one attempt
	FailuresAfterRetry  uint64
	BudgetRefusals      uint64 // retries refused: ErrBudget
	BreakerRefusals     uint64 // attempts refused: ErrOpen
	DeadlineStops       uint64 // runs ended by the deadline
	AttemptTimeouts     uint64 // (asynchronous runs only; Do enforces its own)
	Cancelled           uint64 // runs whose caller gave up
	LateReports         uint64
	BudgetBalance       float64 // tokens now (0 with the budget off)
}

// Stats reads the policy's figures.
func (p *Policy) Stats() (RetryStats, error) {
	var s C.sluice_retry_stats
	err := p.o.use(func(ptr unsafe.Pointer) error {
		var r C.sg_result
		C.sg_retry_stats(&r, (*C.sluice_retry)(ptr), &s)
		return resultErr(&r)
	})
	if err != nil {
		return RetryStats{}, err
	}
	return RetryStats{
		Runs:                uint64(s.runs),
		InFlight:            uint64(s.in_flight),
		Attempts:            uint64(s.attempts),
		SuccessesFirst:      uint64(s.successes_first),
		SuccessesAfterRetry: uint64(s.successes_after_retry),
		FailuresFirst:       uint64(s.failures_first),
		FailuresAfterRetry:  uint64(s.failures_after_retry),
		BudgetRefusals:      uint64(s.budget_refusals),
		BreakerRefusals:     uint64(s.breaker_refusals),
		DeadlineStops:       uint64(s.deadline_stops),
		AttemptTimeouts:     uint64(s.attempt_timeouts),
		Cancelled:           uint64(s.cancelled),
		LateReports:         uint64(s.late_reports),
		BudgetBalance:       float64(s.budget_balance),
	}, nil
}

// NextDelay is the backoff arithmetic alone (sluice_retry_next_delay): the
// wait before retry number retry (1 = before the second attempt) under o's
// BaseDelay, Multiplier, MaxDelay and Jitter, given the previous delay it
// returned (0 for the first; the decorrelated modes grow from it) and a
// splitmix64 state, which it advances (nil is allowed with JitterNone).
// RetrySeed gives the state a seeded policy's runs start from.
func NextDelay(o PolicyOptions, retry int, prev time.Duration, rng *uint64) (time.Duration, error) {
	if retry < 1 || retry > math.MaxUint32 {
		return 0, newError(CodeInvalid, fmt.Sprintf("NextDelay: retry %d is out of range (1 and up)", retry))
	}
	if prev < 0 {
		prev = 0
	}
	var opts C.sluice_retry_options
	if err := o.cOptions(&opts); err != nil {
		return 0, err
	}
	var state C.uint64_t
	var sp *C.uint64_t
	if rng != nil {
		state = C.uint64_t(*rng)
		sp = &state
	}
	var r C.sg_result
	var d C.uint64_t
	C.sg_retry_next_delay(&r, &opts, C.uint32_t(retry), C.uint64_t(prev), sp, &d)
	if err := resultErr(&r); err != nil {
		return 0, err
	}
	if rng != nil {
		*rng = uint64(state)
	}
	return nsDuration(d), nil
}

// RetrySeed is the splitmix64 state from which the run-th run (0, 1, ...)
// of a policy seeded with seed to need a retry draws its delays, so a test
// can reproduce a policy's delays with NextDelay.
func RetrySeed(seed, run uint64) uint64 {
	return uint64(C.sluice_retry_seed(C.uint64_t(seed), C.uint64_t(run)))
}

// ---- classification --------------------------------------------------------

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// Permanent marks err as permanent for DefaultClassify: trying again
// cannot help (a 400 from an API, a unique-key violation). errors.Is and
// errors.As still see err.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// RetryAfter marks err as retryable with the server's hint (a 429's
// Retry-After): the next attempt starts no earlier than d from now, and
// if that is past the deadline the run ends at once with ErrTimedOut.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, after: d}
}

// DefaultClassify is the classification Policy.Do and Breaker.Do use
// unless told otherwise:
//   - Permanent(err) is permanent; RetryAfter(err, d) is retryable with
//     hint d;
//   - a failed PostgreSQL statement or acquire of this package's Pool
//     follows the library (sluice_pg_result_retryable, not idempotent):
//     retryable when nothing was sent (ErrTimedOut, ErrExhausted,
//     ErrUnreachable, ErrFull), for serialization failures, deadlocks and
//     connection errors; not for ErrAmbiguous, other server errors, or a
//     cancel;
//   - another *sluice.Error is retryable for ErrTimedOut, ErrAgain,
//     ErrExhausted, ErrUnreachable, ErrFull, ErrRejected and ErrLimit,
//     else permanent;
//   - context.DeadlineExceeded (an attempt's timeout) is retryable,
//     context.Canceled permanent;
//   - any other error is retryable, as the origin's retry_with_backoff
//     retried every exception: wrap the ones that are not with Permanent.
func DefaultClassify(err error) (Outcome, time.Duration) { return classify(err, false) }

// ClassifyIdempotent is DefaultClassify for work that is safe to run
// twice: a PostgreSQL statement whose outcome is unknown (ErrAmbiguous, a
// connection lost after sending) is retryable too.
func ClassifyIdempotent(err error) (Outcome, time.Duration) { return classify(err, true) }

func classify(err error, idempotent bool) (Outcome, time.Duration) {
	var ra *retryAfterError
	var pe *permanentError
	var se *Error
	switch {
	case errors.As(err, &ra):
		return OutcomeRetryable, ra.after
	case errors.As(err, &pe):
		return OutcomePermanent, 0
	case errors.As(err, &se):
		if se.classified {
			if se.Retryable || (idempotent || se.idempotent) && se.retryableIdem {
				return OutcomeRetryable, 0
			}
			return OutcomePermanent, 0
		}
		switch se.Code {
		case CodeTimedOut, CodeAgain, CodeExhausted, CodeUnreachable, CodeFull, CodeRejected, CodeLimit:
			return OutcomeRetryable, 0
		}
		return OutcomePermanent, 0
	case errors.Is(err, context.DeadlineExceeded):
		return OutcomeRetryable, 0
	case errors.Is(err, context.Canceled):
		return OutcomePermanent, 0
	}
	return OutcomeRetryable, 0
}

package sluice

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func newBreaker(t *testing.T, o BreakerOptions) *Breaker {
	t.Helper()
	b, err := NewBreaker(o)
	return closeAtEnd(t, "NewBreaker", b, err)
}

func allow(t *testing.T, b *Breaker) BreakerTicket {
	t.Helper()
	tk, err := b.Allow()
	if err != nil {
		t.Fatalf("Allow: %v", err)
	}
	return tk
}

type change struct {
	from, to BreakerState
	gen      uint64
}

// Trips at the failure rate, refuses for exactly OpenFor, lets exactly
// HalfOpenTrials through, then closes.
func TestBreakerLifecycle(t *testing.T) {
	clock := NewManualClock(time.Hour)
	var mu sync.Mutex
	var changes []change
	b := newBreaker(t, BreakerOptions{WindowCalls: 4, MinimumCalls: 4, FailureRate: 50, OpenFor: time.Second,
		HalfOpenTrials: 2, Clock: clock, OnStateChange: func(from, to BreakerState, gen uint64) {
			mu.Lock()
			changes = append(changes, change{from, to, gen})
			mu.Unlock()
		}})
	for i, fail := range []bool{false, true, false} {
		tk := allow(t, b)
		if fail {
			b.RecordFailure(tk, time.Millisecond)
		} else {
			b.RecordSuccess(tk, time.Millisecond)
		}
		if s, _ := b.State(); s != BreakerClosed {
			t.Fatalf("call %d: %v before MinimumCalls", i, s)
		}
	}
	stale := allow(t, b) // admitted while closed, reported after it opened
	b.RecordFailure(allow(t, b), time.Millisecond)
	if s, _ := b.State(); s != BreakerOpen {
		t.Fatalf("2 failures of 4: %v, want open", s)
	}
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatalf("Allow while open: %v", err)
	}
	clock.Advance(time.Second - 1)
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatalf("1 ns before OpenFor: %v", err)
	}
	clock.Advance(1)
	t1 := allow(t, b)
	t2 := allow(t, b)
	if s, _ := b.State(); s != BreakerHalfOpen {
		t.Fatalf("after OpenFor: %v", s)
	}
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatalf("a third trial: %v", err)
	}
	b.RecordSuccess(stale, 0) // from the closed state: ignored, not a trial
	b.RecordSuccess(t1, 0)
	if s, _ := b.State(); s != BreakerHalfOpen {
		t.Fatalf("one trial of two reported: %v", s)
	}
	b.RecordSuccess(t2, 0)
	if s, _ := b.State(); s != BreakerClosed {
		t.Fatalf("both trials good: %v", s)
	}
	st := mustGet(t, b.Stats)
	if st.Opened != 1 || st.HalfOpened != 1 || st.Closed != 1 || st.Ignored != 1 || st.Refused != 3 || st.Generation != 4 {
		t.Fatalf("stats %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []change{{BreakerClosed, BreakerOpen, 2}, {BreakerOpen, BreakerHalfOpen, 3}, {BreakerHalfOpen, BreakerClosed, 4}}
	if len(changes) != len(want) {
		t.Fatalf("changes %v, want %v", changes, want)
	}
	for i := range want {
		if changes[i] != want[i] {
			t.Fatalf("changes %v, want %v", changes, want)
		}
	}
}

func TestBreakerHalfOpenFailureAndRelease(t *testing.T) {
	clock := NewManualClock(time.Hour)
	b := newBreaker(t, BreakerOptions{WindowCalls: 2, MinimumCalls: 2, OpenFor: time.Second, HalfOpenTrials: 1, Clock: clock})
	if err := b.SetState(BreakerOpen); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	tk := allow(t, b)
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatalf("second trial: %v", err)
	}
	b.Release(tk) // the caller gave up: the trial is free again
	tk = allow(t, b)
	b.RecordFailure(tk, 0)
	if s, _ := b.State(); s != BreakerOpen {
		t.Fatalf("failed trial: %v, want open again", s)
	}
	if err := b.SetState(BreakerState(7)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SetState(7): %v", err)
	}
}

func TestBreakerSlowCalls(t *testing.T) {
	b := newBreaker(t, BreakerOptions{WindowCalls: 4, MinimumCalls: 4, FailureRate: -1, SlowCall: 100 * time.Millisecond,
		SlowRate: 50})
	for i := 0; i < 4; i++ {
		d := time.Millisecond
		if i%2 == 0 {
			d = 200 * time.Millisecond
		}
		b.RecordSuccess(allow(t, b), d)
	}
	if s, _ := b.State(); s != BreakerOpen {
		t.Fatalf("half the calls slow: %v", s)
	}
	if st := mustGet(t, b.Stats); st.Slow != 2 || st.Failures != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBreakerDo(t *testing.T) {
	b := newBreaker(t, BreakerOptions{WindowCalls: 2, MinimumCalls: 2})
	ctx := guardCtx(t)
	// Permanent errors are the request's fault: successes for the breaker.
	for i := 0; i < 4; i++ {
		if err := b.Do(ctx, func(context.Context) error { return Permanent(errFlaky) }); !errors.Is(err, errFlaky) {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	b.Do(cctx, func(ctx context.Context) error { return ctx.Err() }) // released, not recorded
	if st := mustGet(t, b.Stats); st.State != BreakerClosed || st.Successes != 4 || st.Released != 1 {
		t.Fatalf("stats %+v", st)
	}
	for i := 0; i < 2; i++ {
		b.Do(ctx, func(context.Context) error { return errFlaky })
	}
	called := false
	if err := b.Do(ctx, func(context.Context) error { called = true; return nil }); !errors.Is(err, ErrOpen) || called {
		t.Fatalf("open breaker: %v, called %v", err, called)
	}
	if err := b.Do(ctx, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("nil fn: %v", err)
	}
}

// Concurrent callers of a half-open breaker: exactly HalfOpenTrials get
// through.
func TestBreakerTrialsRace(t *testing.T) {
	clock := NewManualClock(time.Hour)
	b := newBreaker(t, BreakerOptions{OpenFor: time.Second, HalfOpenTrials: 5, Clock: clock})
	for round := 0; round < 50; round++ {
		b.SetState(BreakerOpen)
		clock.Advance(time.Second)
		var mu sync.Mutex
		var tickets []BreakerTicket
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 3; i++ {
					if tk, err := b.Allow(); err == nil {
						mu.Lock()
						tickets = append(tickets, tk)
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		if len(tickets) != 5 {
			t.Fatalf("round %d: %d trials admitted, want 5", round, len(tickets))
		}
		for _, tk := range tickets {
			b.RecordSuccess(tk, 0)
		}
		if s, _ := b.State(); s != BreakerClosed {
			t.Fatalf("round %d: %v after 5 good trials", round, s)
		}
	}
}

func TestBreakerBadInput(t *testing.T) {
	for name, o := range map[string]BreakerOptions{
		"both triggers off": {FailureRate: -1},
		"minimum > window":  {WindowCalls: 5, MinimumCalls: 6},
		"rate above 100":    {FailureRate: 150},
		"negative open":     {OpenFor: -time.Second},
		"calls range":       {WindowCalls: -1},
		"buckets":           {TimeWindow: true, Window: 5 * time.Millisecond, WindowBuckets: 10},
	} {
		_, err := NewBreaker(o)
		var se *Error
		if !errors.As(err, &se) || se.Code != CodeInvalid || se.Message == "" {
			t.Errorf("%s: %v, want ErrInvalid with a message", name, err)
		}
	}
	b, err := NewBreaker(BreakerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, err := b.Allow(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Allow after Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBreakerMonitorSeesOpenedAndRejected(t *testing.T) {
	rt := newRuntime(t)
	mon, err := NewMonitor(rt, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	b, err := NewBreaker(BreakerOptions{WindowCalls: 4, MinimumCalls: 2, Monitor: mon, Name: "ai.breaker",
		OpenFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := 0; i < 2; i++ {
		tk, err := b.Allow()
		if err != nil {
			t.Fatal(err)
		}
		b.RecordFailure(tk, time.Millisecond)
	}
	for i := 0; i < 3; i++ {
		if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
			t.Fatalf("Allow on an open breaker: %v", err)
		}
	}
	got := opStats(t, mon, WindowAll)
	if op := got["ai.breaker.opened"]; op.Count != 1 || op.Errors != 1 {
		t.Errorf("ai.breaker.opened: %+v, want one failed sample", op)
	}
	if op := got["ai.breaker.rejected"]; op.Count != 3 || op.Errors != 3 {
		t.Errorf("ai.breaker.rejected: %+v, want three failed samples", op)
	}
	// A policy using the breaker is freed before it when the runtime closes.
	p, err := NewPolicy(PolicyOptions{Breaker: b})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := NewBreaker(BreakerOptions{Monitor: mon, Name: ""}); err != nil {
		t.Fatalf("default name: %v", err)
	}
	if _, err := NewBreaker(BreakerOptions{Monitor: mon, Name: strings.Repeat("x", 65)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("65-byte name: %v, want ErrInvalid", err)
	}
	closeAndCheckHandles(t, rt)
	if _, err := b.Stats(); !errors.Is(err, ErrClosed) {
		t.Fatalf("breaker after its monitor's runtime closed: %v", err)
	}
	if err := p.Do(context.Background(), func(context.Context) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("policy after its breaker's runtime closed: %v", err)
	}
}

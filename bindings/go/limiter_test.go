package sluice

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newLimiter(t *testing.T, rt *Runtime, o LimiterOptions) *Limiter {
	t.Helper()
	l, err := NewLimiter(rt, o)
	return closeAtEnd(t, "NewLimiter", l, err)
}

func check(t *testing.T, l *Limiter, key string, cost uint64) LimitResult {
	t.Helper()
	res, err := l.Check(key, cost)
	if err != nil {
		t.Fatalf("Check(%q, %d): %v", key, cost, err)
	}
	return res
}

// On an injected clock every algorithm's answer is exact: a refused
// request passes at exactly now + RetryAfter and not one nanosecond
// earlier, for windows that do not divide by the limit.
func TestLimiterExactRetryAfter(t *testing.T) {
	for _, algo := range []Algorithm{SlidingLog, SlidingWindow, GCRA} {
		t.Run(fmt.Sprint(algo), func(t *testing.T) {
			clock := NewManualClock(123456789)
			l := newLimiter(t, nil, LimiterOptions{Algorithm: algo, Limit: 3, Window: 1000000007, Clock: clock})
			for round := 0; round < 30; round++ {
				cost := uint64(1 + round%3)
				var res LimitResult
				for res = check(t, l, "u", cost); res.Allowed; res = check(t, l, "u", cost) {
					clock.Advance(time.Duration(round * 7919))
				}
				if res.Reason != ReasonLimited || res.RetryAfter <= 0 || res.Limit != 3 {
					t.Fatalf("round %d: refusal %+v", round, res)
				}
				t0 := clock.Now()
				clock.Set(t0 + res.RetryAfter - 1)
				if early, err := l.Peek("u", cost); err != nil || early.Allowed {
					t.Fatalf("round %d: 1 ns before RetryAfter: %+v, %v", round, early, err)
				}
				clock.Set(t0 + res.RetryAfter)
				if on := check(t, l, "u", cost); !on.Allowed {
					t.Fatalf("round %d: at RetryAfter (%v): %+v", round, res.RetryAfter, on)
				}
			}
		})
	}
}

// The origin's RateLimiter(max_calls=5, time_window=60): exactly 5 pass
// per window, the 6th is told to come back when the first ages out.
func TestLimiterSlidingLogWindow(t *testing.T) {
	clock := NewManualClock(time.Hour)
	l := newLimiter(t, nil, LimiterOptions{Limit: 5, Window: time.Minute, Clock: clock})
	for i := 0; i < 5; i++ {
		res := check(t, l, "user:1", 1)
		if !res.Allowed || res.Remaining != uint64(4-i) || res.Reason != ReasonOK {
			t.Fatalf("call %d: %+v", i, res)
		}
		clock.Advance(time.Second)
	}
	res := check(t, l, "user:1", 1)
	if res.Allowed || res.Reason != ReasonLimited || res.RetryAfter != 55*time.Second || res.ResetAfter != 59*time.Second {
		t.Fatalf("6th call: %+v", res)
	}
	if !l.Allow("user:2") { // keys are independent
		t.Fatal("another key refused")
	}
	clock.Advance(55 * time.Second)
	if !l.Allow("user:1") || l.Allow("user:1") {
		t.Fatal("after 55 s exactly one more should pass")
	}
	st := mustGet(t, l.Stats)
	if st.Allowed != 7 || st.Rejected != 2 || st.Keys != 2 || st.Limit != 5 || st.Window != time.Minute {
		t.Fatalf("stats %+v", st)
	}
}

func TestLimiterGCRABurst(t *testing.T) {
	clock := NewManualClock(time.Second)
	l := newLimiter(t, nil, LimiterOptions{Algorithm: GCRA, Limit: 10, Window: time.Second, Burst: 4, Clock: clock})
	for i := 0; i < 4; i++ {
		if !l.Allow("k") {
			t.Fatalf("burst call %d refused", i)
		}
	}
	res := check(t, l, "k", 1)
	if res.Allowed || res.RetryAfter != 100*time.Millisecond || res.Limit != 4 {
		t.Fatalf("past the burst: %+v (one unit every 100 ms)", res)
	}
	if _, err := l.Check("k", 5); !errors.Is(err, ErrInvalid) {
		t.Fatalf("cost above the burst: %v", err)
	}
	clock.Advance(100 * time.Millisecond)
	if !l.Allow("k") || l.Allow("k") {
		t.Fatal("one unit should have flowed in")
	}
}

// Without an injected clock, a 60 s window makes the answer independent of
// wall time: goroutines racing for one key get exactly the limit.
func TestLimiterConcurrentExact(t *testing.T) {
	l := newLimiter(t, nil, LimiterOptions{Algorithm: SlidingWindow, Limit: 1000, Window: time.Minute})
	var passed int64
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				if l.Allow("hot") {
					atomic.AddInt64(&passed, 1)
				}
			}
		}()
	}
	wg.Wait()
	if passed != 1000 {
		t.Fatalf("%d passed of a limit of 1000", passed)
	}
	if st := mustGet(t, l.Stats); st.Allowed != 1000 || st.Rejected != 1400 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLimiterWaitOnInjectedClock(t *testing.T) {
	rt := newRuntime(t)
	clock := NewManualClock(time.Hour)
	l := newLimiter(t, rt, LimiterOptions{Limit: 2, Window: time.Minute, Clock: clock})
	ctx := guardCtx(t)
	if err := l.Wait(ctx, "k", 2); err != nil { // passes at once, no loop trip
		t.Fatal(err)
	}
	if st := mustGet(t, l.Stats); st.Waits != 0 || st.Allowed != 1 {
		t.Fatalf("a wait that could pass went to the loop: %+v", st)
	}
	// Two waiters, queued in order: the first needs 2 units, the second 1.
	order := make(chan int, 2)
	var wg sync.WaitGroup
	for i, cost := range []uint64{2, 1} {
		wg.Add(1)
		go func(i int, cost uint64) {
			defer wg.Done()
			if err := l.Wait(ctx, "k", cost); err != nil {
				t.Error(err)
			}
			order <- i
		}(i, cost)
		waitFor(t, "waiter", func() bool { return mustGet(t, l.Stats).Waiting == uint64(i+1) })
	}
	// Waiters go first: a check is refused while they queue.
	if res := check(t, l, "k", 1); res.Allowed || res.Reason != ReasonQueued {
		t.Fatalf("check past waiters: %+v", res)
	}
	clock.Advance(time.Minute) // both units age out: the first waiter takes them
	if err := l.Wake(); err != nil {
		t.Fatal(err)
	}
	if got := <-order; got != 0 {
		t.Fatalf("waiter %d passed first", got)
	}
	if st := mustGet(t, l.Stats); st.Waiting != 1 {
		t.Fatalf("the second waiter should still wait (nothing left): %+v", st)
	}
	clock.Advance(time.Minute)
	l.Wake()
	wg.Wait()
	if st := mustGet(t, l.Stats); st.Allowed != 3 || st.Waits != 2 || st.Waiting != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLimiterWaitDeadlineAndCancel(t *testing.T) {
	rt := newRuntime(t)
	l := newLimiter(t, rt, LimiterOptions{Limit: 1, Window: time.Minute})
	ctx := guardCtx(t)
	if !l.Allow("k") {
		t.Fatal("first call refused")
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	err := l.Wait(dctx, "k", 1)
	cancel()
	if !errors.Is(err, ErrTimedOut) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	got := make(chan error, 1)
	go func() { got <- l.Wait(cctx, "k", 1) }()
	waitFor(t, "waiter", func() bool { return mustGet(t, l.Stats).Waiting == 1 })
	cancel()
	if err := <-got; !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancel: %v", err)
	}
	if err := l.Wait(cctx, "k", 1); !errors.Is(err, ErrCanceled) {
		t.Fatalf("ended context: %v", err)
	}
	st := mustGet(t, l.Stats)
	if st.Waiting != 0 || st.Allowed != 1 || st.WaitTimeouts+st.WaitCancels != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// A cancel racing the grant: Wait returns nil exactly when the units were
// taken, so the limiter's count of passes equals the nil returns. Rounds
// cycle through a grant before the cancel, a cancel before the grant, and
// the two at once.
func TestLimiterCancelRacesGrant(t *testing.T) {
	rt := newRuntime(t)
	clock := NewManualClock(time.Hour)
	l := newLimiter(t, rt, LimiterOptions{Limit: 1, Window: time.Second, Clock: clock})
	ctx := guardCtx(t)
	var passed, canceled int
	for round := 0; round < 60; round++ {
		clock.Advance(time.Second)
		if !l.Allow("k") {
			t.Fatal("a fresh window refused")
		}
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		got := make(chan error, 1)
		go func() { got <- l.Wait(wctx, "k", 1) }()
		waitFor(t, "waiter", func() bool { return mustGet(t, l.Stats).Waiting == 1 })
		var err error
		switch round % 3 {
		case 0: // granted first
			clock.Advance(time.Second)
			l.Wake()
			err = <-got
			cancel()
			if err != nil {
				t.Fatalf("round %d: granted before the cancel: %v", round, err)
			}
		case 1: // cancelled first
			cancel()
			err = <-got
			clock.Advance(time.Second)
			if !errors.Is(err, ErrCanceled) {
				t.Fatalf("round %d: cancelled before the grant: %v", round, err)
			}
		case 2: // both at once
			clock.Advance(time.Second)
			go l.Wake()
			cancel()
			err = <-got
		}
		switch {
		case err == nil:
			passed++
		case errors.Is(err, ErrCanceled):
			canceled++
		default:
			t.Fatal(err)
		}
		waitFor(t, "no waiter", func() bool { return mustGet(t, l.Stats).Waiting == 0 })
		if st := mustGet(t, l.Stats); st.Allowed != uint64(round+1+passed) {
			t.Fatalf("round %d: %d passes counted, %d checks and %d waits returned nil", round, st.Allowed, round+1, passed)
		}
	}
	t.Logf("%d waits passed, %d cancelled", passed, canceled)
}

func TestLimiterCheckMany(t *testing.T) {
	clock := NewManualClock(time.Hour)
	user := newLimiter(t, nil, LimiterOptions{Limit: 2, Window: time.Minute, Clock: clock})
	group := newLimiter(t, nil, LimiterOptions{Limit: 3, Window: time.Minute, Clock: clock})
	both := func(u string) (LimitResult, error) {
		return CheckMany(LimitItem{Limiter: user, Key: u, Cost: 1}, LimitItem{Limiter: group, Key: "g", Cost: 1})
	}
	for i := 0; i < 2; i++ {
		if res, err := both("alice"); err != nil || !res.Allowed {
			t.Fatalf("call %d: %+v, %v", i, res, err)
		}
	}
	res, err := both("alice") // alice's own limit refuses; the group's unit is not taken
	if err != nil || res.Allowed || res.Index != 0 || res.Reason != ReasonLimited {
		t.Fatalf("alice's 3rd: %+v, %v", res, err)
	}
	if p, _ := group.Peek("g", 1); p.Remaining != 0 || !p.Allowed {
		t.Fatalf("the group lost a unit to a refused CheckMany: %+v", p)
	}
	if res, err := both("bob"); err != nil || !res.Allowed || res.Remaining != 0 {
		t.Fatalf("bob: %+v, %v", res, err)
	}
	res, err = both("carol") // the group is spent now
	if err != nil || res.Allowed || res.Index != 1 {
		t.Fatalf("carol: %+v, %v", res, err)
	}
	// The same item twice counts twice.
	if res, err := CheckMany(LimitItem{user, "dave", 1}, LimitItem{user, "dave", 2}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("summed cost above the limit: %+v, %v", res, err)
	}
	if _, err := CheckMany(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no items: %v", err)
	}
	if _, err := CheckMany(LimitItem{Key: "x", Cost: 1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no limiter: %v", err)
	}
	items := make([]LimitItem, MaxLimiterMany+1)
	for i := range items {
		items[i] = LimitItem{user, fmt.Sprint(i), 1}
	}
	if _, err := CheckMany(items...); !errors.Is(err, ErrInvalid) {
		t.Fatalf("%d items: %v", len(items), err)
	}
	var se *Error
	if _, err := CheckMany(LimitItem{user, "x", 1}, LimitItem{group, "", 1}); !errors.As(err, &se) || !strings.Contains(se.Message, "1") {
		t.Fatalf("empty key of item 1: %v", err)
	}
	// Concurrent CheckMany listing the limiters in both orders while one
	// of them closes: no deadlock, and afterwards ErrClosed.
	a := newLimiter(t, nil, LimiterOptions{Limit: 1000, Window: time.Minute})
	b := newLimiter(t, nil, LimiterOptions{Limit: 1000, Window: time.Minute})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				x, y := a, b
				if g%2 == 1 {
					x, y = b, a
				}
				_, err := CheckMany(LimitItem{x, "k", 1}, LimitItem{y, "k", 1})
				if err != nil && !errors.Is(err, ErrClosed) {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	b.Close()
	wg.Wait()
	if _, err := CheckMany(LimitItem{a, "k", 1}, LimitItem{b, "k", 1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("CheckMany with a closed limiter: %v", err)
	}
}

func TestLimiterBlockSetLimitSweep(t *testing.T) {
	rt := newRuntime(t)
	clock := NewManualClock(time.Hour)
	l := newLimiter(t, rt, LimiterOptions{Algorithm: GCRA, Limit: 10, Window: time.Second, Clock: clock})
	if err := l.Block("spammer", time.Minute); err != nil {
		t.Fatal(err)
	}
	res := check(t, l, "spammer", 1)
	if res.Allowed || res.Reason != ReasonBlocked || res.RetryAfter != time.Minute {
		t.Fatalf("blocked key: %+v", res)
	}
	if was, err := l.Unblock("spammer"); !was || err != nil {
		t.Fatalf("Unblock: %v, %v", was, err)
	}
	if was, err := l.Unblock("spammer"); was || err != nil {
		t.Fatalf("second Unblock: %v, %v", was, err)
	}
	if !l.Allow("spammer") {
		t.Fatal("refused after Unblock")
	}
	if err := l.Block("x", 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("zero block: %v", err)
	}

	// A waiter whose cost the new limit can never pass fails with ErrInvalid.
	for l.Allow("w") {
	}
	got := make(chan error, 1)
	go func() { got <- l.Wait(guardCtx(t), "w", 8) }()
	waitFor(t, "waiter", func() bool { return mustGet(t, l.Stats).Waiting == 1 })
	if err := l.SetLimit(5, time.Second, 0); err != nil {
		t.Fatal(err)
	}
	if err := <-got; !errors.Is(err, ErrInvalid) {
		t.Fatalf("waiter after the limit was lowered: %v", err)
	}
	if err := l.SetLimit(5, 999, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("window below 1 µs: %v", err)
	}
	if st := mustGet(t, l.Stats); st.Limit != 5 || st.Burst != 5 || st.Keys != 2 {
		t.Fatalf("stats %+v", st)
	}
	clock.Advance(time.Hour) // everything refills: both keys are fresh again
	if n, err := l.Sweep(); n != 2 || err != nil {
		t.Fatalf("Sweep: %d, %v", n, err)
	}
	if st := mustGet(t, l.Stats); st.Keys != 0 || st.Reclaimed < 2 {
		t.Fatalf("stats after Sweep %+v", st)
	}
}

func TestLimiterMaxKeys(t *testing.T) {
	l := newLimiter(t, nil, LimiterOptions{Limit: 5, MaxKeys: 2})
	l.Allow("a")
	l.Allow("b")
	res, err := l.Check("c", 1)
	if !errors.Is(err, ErrLimit) || res.Reason != ReasonFull {
		t.Fatalf("third key: %+v, %v", res, err)
	}
	if l.Allow("c") {
		t.Fatal("Allow past MaxKeys")
	}
	open := newLimiter(t, nil, LimiterOptions{Limit: 5, MaxKeys: 1, FailOpen: true})
	open.Allow("a")
	res, err = open.Check("b", 1)
	if err != nil || !res.Allowed || res.Reason != ReasonFull {
		t.Fatalf("FailOpen: %+v, %v", res, err)
	}
	if st := mustGet(t, open.Stats); st.Keys != 1 || st.FullAllowed != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLimiterBadInput(t *testing.T) {
	l := newLimiter(t, nil, LimiterOptions{Limit: 3})
	msg := func(err error) string {
		var se *Error
		if errors.As(err, &se) {
			return se.Message
		}
		return ""
	}
	for name, err := range map[string]error{
		"empty key":      func() error { _, err := l.Check("", 1); return err }(),
		"long key":       func() error { _, err := l.Check(strings.Repeat("k", MaxLimiterKey+1), 1); return err }(),
		"cost 0":         func() error { _, err := l.Check("k", 0); return err }(),
		"cost > limit":   func() error { _, err := l.Peek("k", 4); return err }(),
		"no runtime":     l.Wait(context.Background(), "k", 1),
		"negative block": l.Block("k", -time.Second),
	} {
		if !errors.Is(err, ErrInvalid) || msg(err) == "" {
			t.Errorf("%s: %v, want ErrInvalid with a message", name, err)
		}
	}
	for name, o := range map[string]LimiterOptions{
		"log_limit":  {Limit: MaxLimiterLog + 1},
		"window_ns":  {Window: time.Nanosecond},
		"algorithm":  {Algorithm: 9},
		"max_keys":   {MaxKeys: 1 << 31},
		"name":       {Name: strings.Repeat("n", 65)},
		"burst":      {Algorithm: GCRA, Burst: 1 << 33},
		"NUL":        {Name: "a\x00b"},
		"Window neg": {Window: -time.Second},
	} {
		_, err := NewLimiter(nil, o)
		if !errors.Is(err, ErrInvalid) || msg(err) == "" {
			t.Errorf("option %s: %v, want ErrInvalid with a message", name, err)
		}
	}
	if st := mustGet(t, l.Stats); st.Keys != 0 || st.Allowed != 0 {
		t.Fatalf("bad input changed state: %+v", st)
	}
	l.Close()
	if _, err := l.Check("k", 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Check after Close: %v", err)
	}
	if l.Allow("k") {
		t.Fatal("Allow after Close")
	}
}

func TestLimiterOnLoopThreadAndClose(t *testing.T) {
	rt := newRuntime(t) // closed again at the end: a no-op
	l, err := NewLimiter(rt, LimiterOptions{Limit: 1, Window: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 2)
	rt.Post(func() {
		got <- l.Wait(context.Background(), "k", 1)
		_, err := l.Check("k", 1)
		got <- err
	})
	if err := <-got; !errors.Is(err, ErrDeadlock) {
		t.Fatalf("Wait on the loop thread: %v", err)
	}
	if err := <-got; err != nil {
		t.Fatalf("Check on the loop thread: %v", err)
	}
	l.Allow("k")
	go func() { got <- l.Wait(context.Background(), "k", 1) }()
	waitFor(t, "waiter", func() bool { return mustGet(t, l.Stats).Waiting == 1 })
	closeAndCheckHandles(t, rt) // closes the limiter too
	if err := <-got; !errors.Is(err, ErrClosed) {
		t.Fatalf("waiter at runtime Close: %v", err)
	}
	if _, err := l.Stats(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Stats after runtime Close: %v", err)
	}
}

// A limiter on no runtime recording into a monitor on one is closed with
// that runtime, before the monitor.
func TestLimiterMonitor(t *testing.T) {
	rt := newRuntime(t) // closed again at the end: a no-op
	m := newMonitor(t, rt)
	l, err := NewLimiter(nil, LimiterOptions{Limit: 1, Window: time.Minute, Monitor: m, Name: "chat"})
	if err != nil {
		t.Fatal(err)
	}
	l.Allow("k")
	l.Allow("k")
	if st := opStats(t, m, WindowAll)["chat.rejected"]; st.Count != 1 || st.Errors != 1 {
		t.Fatalf("chat.rejected %+v", st)
	}
	m.Close() // the limiter keeps it until it is closed
	l.Allow("k")
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	if l.Allow("k") {
		t.Fatal("limiter alive after its monitor's runtime closed")
	}
	if _, err := NewLimiter(nil, LimiterOptions{Monitor: m}); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed monitor: %v", err)
	}
}

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

// fakeSleep waits by moving a ManualClock: the policy's delays are
// recorded exactly and no test sleeps.
type fakeSleep struct {
	clock  *ManualClock
	mu     sync.Mutex
	delays []time.Duration
}

func (f *fakeSleep) sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	f.delays = append(f.delays, d)
	f.mu.Unlock()
	f.clock.Advance(d)
	return ctx.Err()
}

func (f *fakeSleep) got() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.delays...)
}

// newFakePolicy is a policy on a ManualClock whose waits are fakeSleep's.
func newFakePolicy(t *testing.T, o PolicyOptions) (*Policy, *fakeSleep) {
	t.Helper()
	f := &fakeSleep{clock: o.Clock}
	if f.clock == nil {
		f.clock = NewManualClock(time.Hour)
		o.Clock = f.clock
	}
	o.Sleep = f.sleep
	p, err := NewPolicy(o)
	return closeAtEnd(t, "NewPolicy", p, err), f
}

var errFlaky = errors.New("flaky service")

// failing returns an attempt function that fails its first n calls with
// err and counts every call.
func failing(n int, err error, calls *int32) func(context.Context) error {
	return func(context.Context) error {
		if int(atomic.AddInt32(calls, 1)) <= n {
			return err
		}
		return nil
	}
}

func sameDelays(got, want []time.Duration) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// The origin's @retry_with_backoff(max_retries=3, base_delay=0.1) without
// jitter: 100 ms, then 200 ms; attempts counted exactly.
func TestRetryCountsAndDelays(t *testing.T) {
	var retries []int
	p, f := newFakePolicy(t, PolicyOptions{MaxAttempts: 4, BaseDelay: 100 * time.Millisecond,
		Jitter: JitterNone, DisableBudget: true,
		OnRetry: func(attempt int, err error, d time.Duration) {
			if !errors.Is(err, errFlaky) {
				t.Errorf("OnRetry got %v", err)
			}
			retries = append(retries, attempt)
		}})
	ctx := guardCtx(t)
	var calls int32
	err := p.Do(ctx, failing(100, errFlaky, &calls))
	if err != errFlaky || calls != 4 {
		t.Fatalf("always failing: %v after %d calls, want the attempt's own error after 4", err, calls)
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}
	if !sameDelays(f.got(), want) || fmt.Sprint(retries) != "[1 2 3]" {
		t.Fatalf("delays %v, retries %v; want %v, [1 2 3]", f.got(), retries, want)
	}
	calls = 0
	if err := p.Do(ctx, failing(2, errFlaky, &calls)); err != nil || calls != 3 {
		t.Fatalf("succeeding at the 3rd attempt: %v after %d calls", err, calls)
	}
	st := mustGet(t, p.Stats)
	if st.Runs != 2 || st.Attempts != 7 || st.FailuresAfterRetry != 1 || st.SuccessesAfterRetry != 1 || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A seeded policy's delays are those of NextDelay from RetrySeed: the run
// that needs retries k-th draws from RetrySeed(seed, k).
func TestRetrySeededJitter(t *testing.T) {
	for _, j := range []Jitter{JitterFull, JitterEqual, JitterDecorrelated, JitterSpread} {
		o := PolicyOptions{MaxAttempts: 6, BaseDelay: 10 * time.Millisecond, MaxDelay: 80 * time.Millisecond,
			Jitter: j, Seed: 42, DisableBudget: true}
		p, f := newFakePolicy(t, o)
		var want []time.Duration
		for run := uint64(0); run < 2; run++ {
			var calls int32
			if err := p.Do(guardCtx(t), failing(100, errFlaky, &calls)); err != errFlaky {
				t.Fatal(err)
			}
			rng := RetrySeed(42, run)
			prev := time.Duration(0)
			for r := 1; r < 6; r++ {
				d, err := NextDelay(o, r, prev, &rng)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, d)
				prev = d
			}
		}
		if got := f.got(); !sameDelays(got, want) {
			t.Fatalf("jitter %d: delays %v, NextDelay says %v", j, got, want)
		}
		for _, d := range want {
			if d < 0 || d > 80*time.Millisecond {
				t.Fatalf("jitter %d: delay %v outside [0, MaxDelay]", j, d)
			}
		}
	}
	// The arithmetic alone.
	o := PolicyOptions{BaseDelay: time.Second, Multiplier: 3, MaxDelay: 5 * time.Second, Jitter: JitterNone}
	for r, want := range []time.Duration{time.Second, 3 * time.Second, 5 * time.Second, 5 * time.Second} {
		if d, err := NextDelay(o, r+1, 0, nil); d != want || err != nil {
			t.Fatalf("NextDelay(%d) = %v, %v; want %v", r+1, d, err, want)
		}
	}
	if _, err := NextDelay(PolicyOptions{}, 1, 0, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("full jitter without a state: %v", err)
	}
	if _, err := NextDelay(o, 0, 0, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("retry 0: %v", err)
	}
}

func TestRetryClassification(t *testing.T) {
	p, f := newFakePolicy(t, PolicyOptions{MaxAttempts: 3, BaseDelay: 10 * time.Millisecond,
		Jitter: JitterNone, DisableBudget: true})
	ctx := guardCtx(t)
	run := func(err error) (int32, error) {
		var calls int32
		return calls, p.Do(ctx, func(context.Context) error { atomic.AddInt32(&calls, 1); return err })
	}
	for _, c := range []struct {
		name  string
		err   error
		calls int32
	}{
		{"plain error (the origin retried everything)", errFlaky, 3},
		{"Permanent", Permanent(errFlaky), 1},
		{"context.Canceled of the work's own", context.Canceled, 1},
		{"an attempt's deadline", context.DeadlineExceeded, 3},
		{"ErrTimedOut", newError(CodeTimedOut, ""), 3},
		{"ErrExhausted", newError(CodeExhausted, ""), 3},
		{"ErrInvalid", newError(CodeInvalid, ""), 1},
		{"ErrOpen", newError(CodeOpen, ""), 1},
		{"pg: retryable", &Error{Code: CodePG, classified: true, Retryable: true}, 3},
		{"pg: unique violation", &Error{Code: CodePG, classified: true, SQLState: "23505"}, 1},
		{"pg: ambiguous", &Error{Code: CodeAmbiguous, classified: true, retryableIdem: true}, 1},
		{"pg: ambiguous, flagged Idempotent", &Error{Code: CodeAmbiguous, classified: true, retryableIdem: true, idempotent: true}, 3},
		{"wrapped", fmt.Errorf("calling the AI: %w", Permanent(errFlaky)), 1},
	} {
		calls, err := run(c.err)
		if calls != c.calls || !errors.Is(err, c.err) {
			t.Errorf("%s: %d calls, %v; want %d calls and the error", c.name, calls, err, c.calls)
		}
	}
	// ClassifyIdempotent retries what may have run.
	if out, _ := ClassifyIdempotent(&Error{Code: CodeAmbiguous, classified: true, retryableIdem: true}); out != OutcomeRetryable {
		t.Error("ClassifyIdempotent: ambiguous not retryable")
	}
	// A retry-after hint longer than the backoff is honoured.
	before := len(f.got())
	if _, err := run(RetryAfter(errFlaky, 750*time.Millisecond)); !errors.Is(err, errFlaky) {
		t.Fatal(err)
	}
	if got := f.got()[before:]; !sameDelays(got, []time.Duration{750 * time.Millisecond, 750 * time.Millisecond}) {
		t.Fatalf("delays with a 750 ms hint: %v", got)
	}
	// A caller's classifier, and one that answers nonsense.
	q, _ := newFakePolicy(t, PolicyOptions{MaxAttempts: 3, Classify: func(err error) (Outcome, time.Duration) {
		if err == errFlaky {
			return OutcomePermanent, 0
		}
		return Outcome(9), 0
	}})
	var calls int32
	if err := q.Do(ctx, failing(10, errFlaky, &calls)); err != errFlaky || calls != 1 {
		t.Fatalf("custom classifier: %v, %d calls", err, calls)
	}
	err := q.Do(ctx, func(context.Context) error { return errors.New("other") })
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "outcome 9") {
		t.Fatalf("classifier answering 9: %v", err)
	}
}

// The retry budget: over any runs, retries <= ratio * runs + tokens.
func TestRetryBudget(t *testing.T) {
	p, _ := newFakePolicy(t, PolicyOptions{MaxAttempts: 3, BaseDelay: time.Millisecond, Jitter: JitterNone,
		BudgetRatio: 0.001, BudgetTokens: 2})
	ctx := guardCtx(t)
	var calls int32
	if err := p.Do(ctx, failing(100, errFlaky, &calls)); err != errFlaky || calls != 3 {
		t.Fatalf("first run: %v, %d calls (2 tokens pay its 2 retries)", err, calls)
	}
	calls = 0
	err := p.Do(ctx, failing(100, errFlaky, &calls))
	if !errors.Is(err, ErrBudget) || !errors.Is(err, errFlaky) || calls != 1 {
		t.Fatalf("second run: %v after %d calls, want ErrBudget wrapping the attempt's error after 1", err, calls)
	}
	if st := mustGet(t, p.Stats); st.BudgetRefusals != 1 || st.BudgetBalance >= 1 {
		t.Fatalf("stats %+v", st)
	}
	// First attempts are never refused, and a success needs no token.
	calls = 0
	if err := p.Do(ctx, failing(0, errFlaky, &calls)); err != nil || calls != 1 {
		t.Fatalf("a run that succeeds at once: %v", err)
	}
}

// The deadline, on the injected clock: a retry whose wait would reach it
// is not made.
func TestRetryDeadline(t *testing.T) {
	p, f := newFakePolicy(t, PolicyOptions{MaxAttempts: 10, BaseDelay: 40 * time.Millisecond, Multiplier: 1,
		Jitter: JitterNone, DisableBudget: true, TotalTimeout: 100 * time.Millisecond})
	ctx := guardCtx(t)
	var calls int32
	err := p.Do(ctx, failing(100, errFlaky, &calls))
	if !errors.Is(err, ErrTimedOut) || !errors.Is(err, errFlaky) || calls != 3 {
		t.Fatalf("%v after %d calls; want ErrTimedOut after attempts at 0, 40 and 80 ms", err, calls)
	}
	if len(f.got()) != 2 {
		t.Fatalf("slept %v: a wait past the deadline was made", f.got())
	}
	// A hint past the deadline ends the run at once.
	calls = 0
	err = p.Do(ctx, func(context.Context) error { calls++; return RetryAfter(errFlaky, time.Second) })
	if !errors.Is(err, ErrTimedOut) || calls != 1 {
		t.Fatalf("hint past the deadline: %v after %d calls", err, calls)
	}
	// ctx's deadline is the run's too (4 s waits, 10 s of context).
	q, _ := newFakePolicy(t, PolicyOptions{MaxAttempts: 10, BaseDelay: 4 * time.Second, Multiplier: 1,
		Jitter: JitterNone, DisableBudget: true})
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	calls = 0
	if err := q.Do(dctx, failing(100, errFlaky, &calls)); !errors.Is(err, ErrTimedOut) || calls != 3 {
		t.Fatalf("ctx deadline: %v after %d calls", err, calls)
	}
	if st := mustGet(t, q.Stats); st.DeadlineStops != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Each attempt's ctx ends at AttemptTimeout; that timeout is retryable.
func TestRetryAttemptTimeout(t *testing.T) {
	p, err := NewPolicy(PolicyOptions{MaxAttempts: 2, BaseDelay: time.Millisecond, AttemptTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var calls int32
	err = p.Do(guardCtx(t), func(ctx context.Context) error {
		if atomic.AddInt32(&calls, 1) == 1 {
			d, ok := ctx.Deadline()
			if !ok || time.Until(d) > 20*time.Millisecond {
				t.Errorf("attempt deadline %v, %v", d, ok)
			}
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("%v after %d calls", err, calls)
	}
}

// ctx ending while the policy sleeps, or during an attempt, ends the run at
// once; the library counts it cancelled.
func TestRetryCancel(t *testing.T) {
	p, err := NewPolicy(PolicyOptions{MaxAttempts: 5, BaseDelay: time.Hour, MaxDelay: time.Hour, Jitter: JitterNone})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// No deadline: with one, the policy would not even start the hour's
	// wait (it would end the run with ErrTimedOut).
	ctx, cancel := context.WithCancel(context.Background())
	start := time.Now()
	p.onRetry = func(int, error, time.Duration) { cancel() } // then the hour's sleep begins
	err = p.Do(ctx, func(context.Context) error { return errFlaky })
	if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) || time.Since(start) > hangGuard/2 {
		t.Fatalf("cancelled while sleeping: %v", err)
	}
	p.onRetry = nil
	ctx, cancel = context.WithCancel(guardCtx(t))
	err = p.Do(ctx, func(ctx context.Context) error { cancel(); return ctx.Err() })
	if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled during an attempt: %v", err)
	}
	if err := p.Do(ctx, func(context.Context) error { return nil }); !errors.Is(err, ErrCanceled) {
		t.Fatalf("ended context: %v", err)
	}
	if st := mustGet(t, p.Stats); st.Cancelled != 2 || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A breaker in the policy: once the failures trip it the run ends at once
// with ErrOpen, and later runs fail fast without calling the dependency.
func TestRetryWithBreaker(t *testing.T) {
	clock := NewManualClock(time.Hour)
	b := newBreaker(t, BreakerOptions{WindowCalls: 2, MinimumCalls: 2, OpenFor: time.Second, HalfOpenTrials: 1, Clock: clock})
	p, f := newFakePolicy(t, PolicyOptions{MaxAttempts: 5, BaseDelay: time.Millisecond, Jitter: JitterNone,
		DisableBudget: true, Breaker: b, Clock: NewManualClock(0)})
	ctx := guardCtx(t)
	var calls int32
	err := p.Do(ctx, failing(100, errFlaky, &calls))
	if !errors.Is(err, ErrOpen) || !errors.Is(err, errFlaky) || calls != 2 || len(f.got()) != 1 {
		t.Fatalf("%v after %d calls and %d sleeps; want ErrOpen after 2 calls, 1 sleep", err, calls, len(f.got()))
	}
	calls = 0
	if err := p.Do(ctx, failing(0, errFlaky, &calls)); !errors.Is(err, ErrOpen) || calls != 0 {
		t.Fatalf("open breaker: %v after %d calls", err, calls)
	}
	clock.Advance(time.Second) // the half-open trial succeeds and closes it
	if err := p.Do(ctx, failing(0, errFlaky, &calls)); err != nil || calls != 1 {
		t.Fatalf("trial: %v", err)
	}
	if s, _ := b.State(); s != BreakerClosed {
		t.Fatalf("state %v after a good trial", s)
	}
	// Permanent failures are the request's fault: they never trip it.
	for i := 0; i < 5; i++ {
		p.Do(ctx, func(context.Context) error { return Permanent(errFlaky) })
	}
	if s, _ := b.State(); s != BreakerClosed {
		t.Fatalf("permanent failures tripped the breaker: %v", s)
	}
	// The run that tripped it and the run it refused.
	if st := mustGet(t, p.Stats); st.BreakerRefusals != 2 {
		t.Fatalf("stats %+v", st)
	}
	// The policy keeps its breaker after the breaker's Close.
	b.Close()
	if err := p.Do(ctx, failing(0, errFlaky, &calls)); err != nil {
		t.Fatalf("policy after its breaker's Close: %v", err)
	}
	if _, err := b.State(); !errors.Is(err, ErrClosed) {
		t.Fatalf("breaker method after Close: %v", err)
	}
	if _, err := NewPolicy(PolicyOptions{Breaker: b}); !errors.Is(err, ErrClosed) {
		t.Fatalf("policy with a closed breaker: %v", err)
	}
}

// The binding's PostgreSQL errors are classified by the library: a unique
// violation is not retried, a serialization failure is, and an ambiguous
// statement only when it is idempotent.
func TestRetryPostgres(t *testing.T) {
	rt := newRuntime(t)
	pool := newPool(t, rt, PoolOptions{MaxSize: 2})
	ctx := guardCtx(t)
	tbl := table(t, pool, "id int PRIMARY KEY")
	p, _ := newFakePolicy(t, PolicyOptions{MaxAttempts: 3, BaseDelay: time.Millisecond, DisableBudget: true})
	var calls int32
	err := p.Do(ctx, func(ctx context.Context) error {
		atomic.AddInt32(&calls, 1)
		_, err := pool.Exec(ctx, "INSERT INTO "+tbl+" VALUES (1)")
		return err
	})
	if err != nil || calls != 1 {
		t.Fatalf("insert: %v", err)
	}
	calls = 0
	err = p.Do(ctx, func(ctx context.Context) error {
		atomic.AddInt32(&calls, 1)
		_, err := pool.Exec(ctx, "INSERT INTO "+tbl+" VALUES (1)")
		return err
	})
	if se := asError(t, err); se.SQLState != "23505" || calls != 1 {
		t.Fatalf("unique violation: %v after %d calls", err, calls)
	}
	calls = 0
	err = p.Do(ctx, func(ctx context.Context) error {
		if atomic.AddInt32(&calls, 1) < 3 {
			_, err := pool.Exec(ctx, "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40001'; END $$")
			return err
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("serialization failures: %v after %d calls", err, calls)
	}
	// pg_sleep past the attempt's timeout: sent, outcome unknown.
	for _, idem := range []bool{false, true} {
		q, _ := newFakePolicy(t, PolicyOptions{MaxAttempts: 2, BaseDelay: time.Millisecond, DisableBudget: true,
			Idempotent: idem})
		calls = 0
		err = q.Do(ctx, func(ctx context.Context) error {
			atomic.AddInt32(&calls, 1)
			actx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
			defer cancel()
			_, err := pool.Exec(actx, "SELECT pg_sleep(10)")
			return err
		})
		want := int32(1)
		if idem {
			want = 2
		}
		if !errors.Is(err, ErrAmbiguous) || calls != want {
			t.Fatalf("ambiguous, idempotent %v: %v after %d calls, want %d", idem, err, calls, want)
		}
	}
}

// Many goroutines share one policy: its figures add up.
func TestRetryConcurrent(t *testing.T) {
	p, _ := newFakePolicy(t, PolicyOptions{MaxAttempts: 3, BaseDelay: time.Millisecond, DisableBudget: true})
	ctx := guardCtx(t)
	var calls, failed int32
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				n := 0
				err := p.Do(ctx, func(context.Context) error {
					atomic.AddInt32(&calls, 1)
					n++
					if n <= (g+i)%4 { // 0 to 3 failures: 3 is one too many
						return errFlaky
					}
					return nil
				})
				if err != nil {
					atomic.AddInt32(&failed, 1)
				}
			}
		}(g)
	}
	wg.Wait()
	st := mustGet(t, p.Stats)
	if st.Runs != 800 || st.Attempts != uint64(calls) || uint64(failed) != st.FailuresAfterRetry ||
		st.Runs != st.SuccessesFirst+st.SuccessesAfterRetry+st.FailuresFirst+st.FailuresAfterRetry || failed != 200 {
		t.Fatalf("stats %+v for %d calls, %d failed runs", st, calls, failed)
	}
}

func TestRetryCloseAndPanic(t *testing.T) {
	p, err := NewPolicy(PolicyOptions{MaxAttempts: 3, BaseDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// A panic in the attempt ends the run (cancelled) and propagates.
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic did not propagate")
			}
		}()
		p.Do(guardCtx(t), func(context.Context) error { panic("attempt") })
	}()
	if st := mustGet(t, p.Stats); st.InFlight != 0 || st.Cancelled != 1 {
		t.Fatalf("stats after a panic %+v", st)
	}
	// Close while an attempt runs: the attempt finishes, then Do ends.
	started, release := make(chan struct{}), make(chan error)
	got := make(chan error, 1)
	go func() {
		got <- p.Do(guardCtx(t), func(context.Context) error { close(started); return <-release })
	}()
	<-started
	p.Close()
	release <- errFlaky
	if err := <-got; !errors.Is(err, ErrClosed) || !errors.Is(err, errFlaky) {
		t.Fatalf("Do across Close: %v", err)
	}
	if err := p.Do(guardCtx(t), func(context.Context) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after Close: %v", err)
	}
	if _, err := p.Stats(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Stats after Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRetryBadInput(t *testing.T) {
	msg := func(err error) string {
		var se *Error
		if errors.As(err, &se) {
			return se.Message
		}
		return ""
	}
	for name, o := range map[string]PolicyOptions{
		"attempts":   {MaxAttempts: -1},
		"base_delay": {BaseDelay: -time.Second},
		"multiplier": {Multiplier: 0.5},
		"jitter":     {Jitter: 9},
		"max_delay":  {BaseDelay: time.Second, MaxDelay: time.Millisecond},
		"budget":     {BudgetRatio: 1000},
		"name":       {Name: strings.Repeat("n", 65)},
		"NUL":        {Name: "a\x00"},
	} {
		if _, err := NewPolicy(o); !errors.Is(err, ErrInvalid) || msg(err) == "" {
			t.Errorf("%s: %v, want ErrInvalid with a message", name, err)
		}
	}
	p, _ := newFakePolicy(t, PolicyOptions{})
	if err := p.Do(guardCtx(t), nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("nil fn: %v", err)
	}
}

// "<name>.attempt" and "<name>.run" in the monitor; a policy recording
// into a monitor on a runtime is closed with that runtime.
func TestRetryMonitor(t *testing.T) {
	rt := newRuntime(t) // closed again at the end: a no-op
	m := newMonitor(t, rt)
	p, _ := newFakePolicy(t, PolicyOptions{MaxAttempts: 3, BaseDelay: time.Millisecond, Monitor: m, Name: "ai"})
	var calls int32
	if err := p.Do(guardCtx(t), failing(1, errFlaky, &calls)); err != nil {
		t.Fatal(err)
	}
	st := opStats(t, m, WindowAll)
	if st["ai.attempt"].Count != 2 || st["ai.attempt"].Errors != 1 || st["ai.run"].Count != 1 || st["ai.run"].Errors != 0 {
		t.Fatalf("series %+v", st)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Do(guardCtx(t), failing(0, errFlaky, &calls)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after the monitor's runtime closed: %v", err)
	}
}

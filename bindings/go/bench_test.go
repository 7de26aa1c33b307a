package sluice

// Benchmarks of the binding's hot paths: what a call costs through cgo on
// top of the library. Not part of test.sh (go test runs no benchmarks
// unless asked):
//
//	go test -run '^$' -bench . -benchtime 200000x ./bindings/go

import (
	"context"
	"testing"
	"time"
)

func benchRuntime(b *testing.B) *Runtime {
	rt, err := New()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close() })
	return rt
}

// The cost of one cgo call that does nothing, for comparison.
func BenchmarkCgoCall(b *testing.B) {
	for i := 0; i < b.N; i++ {
		_ = VersionHex()
	}
}

func BenchmarkLocksTryUnlock(b *testing.B) {
	l, err := NewLocks(benchRuntime(b), LocksOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		g, err := l.TryLock("user:42", Exclusive)
		if err != nil {
			b.Fatal(err)
		}
		g.Unlock()
	}
}

// Lock on a free key: the try path, no trip to the loop.
func BenchmarkLocksLockUnlockFree(b *testing.B) {
	l, err := NewLocks(benchRuntime(b), LocksOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		g, err := l.Lock(ctx, "user:42")
		if err != nil {
			b.Fatal(err)
		}
		g.Unlock()
	}
}

// Two goroutines taking one key in turns as fast as they can: grants mix
// the try path and waits on the loop (a released key passes straight to
// its waiter). ns/op is per Lock+Unlock.
func BenchmarkLocksContended2(b *testing.B) {
	l, err := NewLocks(benchRuntime(b), LocksOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	done := make(chan struct{})
	work := func(n int) {
		defer func() { done <- struct{}{} }()
		for i := 0; i < n; i++ {
			g, err := l.Lock(ctx, "k")
			if err != nil {
				b.Error(err)
				return
			}
			g.Unlock()
		}
	}
	go work(b.N / 2)
	go work(b.N - b.N/2)
	<-done
	<-done
	st, _ := l.Stats()
	b.ReportMetric(float64(st.Contended)/float64(b.N), "waited/op")
}

func BenchmarkLimiterAllow(b *testing.B) {
	l, err := NewLimiter(nil, LimiterOptions{Algorithm: GCRA, Limit: 1 << 30, Window: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < b.N; i++ {
		l.Allow("user:42")
	}
}

func BenchmarkLimiterCheck(b *testing.B) {
	l, err := NewLimiter(nil, LimiterOptions{Limit: 20, Window: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < b.N; i++ {
		l.Check("user:42", 1) // refused after 20: the common case under abuse
	}
}

func BenchmarkLimiterCheckMany2(b *testing.B) {
	u, _ := NewLimiter(nil, LimiterOptions{Algorithm: GCRA, Limit: 1 << 30, Window: time.Second})
	g, _ := NewLimiter(nil, LimiterOptions{Algorithm: GCRA, Limit: 1 << 30, Window: time.Second})
	defer u.Close()
	defer g.Close()
	for i := 0; i < b.N; i++ {
		CheckMany(LimitItem{u, "user:42", 1}, LimitItem{g, "group:7", 1})
	}
}

// Wait on a key that has room: the peek-and-check path.
func BenchmarkLimiterWaitFree(b *testing.B) {
	l, err := NewLimiter(benchRuntime(b), LimiterOptions{Algorithm: GCRA, Limit: 1 << 30, Window: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		if err := l.Wait(ctx, "user:42", 1); err != nil {
			b.Fatal(err)
		}
	}
}

// A run whose first attempt succeeds: session new, begin, end, free.
func BenchmarkPolicyDoFirstTry(b *testing.B) {
	p, err := NewPolicy(PolicyOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	for i := 0; i < b.N; i++ {
		p.Do(ctx, fn)
	}
}

func BenchmarkBreakerDo(b *testing.B) {
	br, err := NewBreaker(BreakerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	for i := 0; i < b.N; i++ {
		br.Do(ctx, fn)
	}
}

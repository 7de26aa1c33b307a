package sluice

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestTimerFires(t *testing.T) {
	rt := newRuntime(t)
	start := time.Now()
	tm, err := rt.NewTimer(15 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := tm.Wait(guardCtx(t)); err != nil {
		t.Fatalf("timer: %v", err)
	}
	if el := time.Since(start); el < 15*time.Millisecond {
		t.Fatalf("fired after %v, asked 15ms", el)
	}
	if err := tm.Cancel(); err != nil { // after completion: no effect
		t.Fatal(err)
	}
	if err := tm.Wait(guardCtx(t)); err != nil {
		t.Fatalf("second Wait: %v", err)
	}
}

func TestTimerCancel(t *testing.T) {
	rt := newRuntime(t)
	tm, err := rt.NewTimer(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := tm.Cancel(); err != nil {
		t.Fatal(err)
	}
	if err := tm.Wait(guardCtx(t)); !errors.Is(err, ErrCanceled) {
		t.Fatalf("cancelled timer: %v, want ErrCanceled", err)
	}
	closeAndCheckHandles(t, rt)
}

func TestSleep(t *testing.T) {
	rt := newRuntime(t)
	if err := rt.Sleep(guardCtx(t), 2*time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

func TestSleepContextEnds(t *testing.T) {
	rt := newRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	err := rt.Sleep(ctx, time.Hour)
	if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sleep: %v, want ErrCanceled wrapping DeadlineExceeded", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if err := rt.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) || !errors.Is(err, ErrCanceled) {
		t.Fatalf("Sleep with an ended context: %v", err)
	}
	closeAndCheckHandles(t, rt)
}

func TestPendingTimerClosed(t *testing.T) {
	rt := newRuntime(t)
	tm, err := rt.NewTimer(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	closeAndCheckHandles(t, rt)
	if err := tm.Wait(guardCtx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("timer pending at Close: %v, want ErrClosed", err)
	}
	if err := tm.Cancel(); err != nil {
		t.Fatalf("Cancel after Close: %v", err)
	}
}

// Cancel and expiry race; whoever wins, the timer completes exactly once
// and every handle is released.
func TestCancelRacesCompletion(t *testing.T) {
	rt := newRuntime(t)
	ctx := guardCtx(t)
	const n = 3000
	before := atomic.LoadInt64(&completions)
	st0, err := rt.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var fired, canceled int
	for i := 0; i < n; i++ {
		tm, err := rt.NewTimer(time.Duration(i%2) * time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		// Cancel from here, another goroutine, the loop thread, or after a
		// jitter around the delay, so both outcomes happen.
		switch i % 4 {
		case 0:
			err = tm.Cancel()
		case 1:
			go tm.Cancel()
		case 2:
			err = rt.Post(func() { _ = tm.Cancel() })
		case 3:
			time.Sleep(time.Duration(i%7) * 250 * time.Microsecond)
			err = tm.Cancel()
		}
		if err != nil {
			t.Fatal(err)
		}
		switch err := tm.Wait(ctx); {
		case err == nil:
			fired++
		case errors.Is(err, ErrCanceled):
			canceled++
		default:
			t.Fatalf("timer %d: %v", i, err)
		}
	}
	// Sleep races its context the same way.
	for i := 0; i < 500; i++ {
		sctx, cancel := context.WithTimeout(ctx, time.Millisecond)
		err := rt.Sleep(sctx, time.Millisecond)
		cancel()
		if err != nil && !(errors.Is(err, ErrCanceled) && errors.Is(err, context.DeadlineExceeded)) {
			t.Fatalf("Sleep %d: %v", i, err)
		}
	}
	// A Sleep whose 1 ms context ended before it started made no timer, so
	// count the timers the library started.
	st, err := rt.Stats()
	if err != nil {
		t.Fatal(err)
	}
	timers := int64(st.OpsStarted - st0.OpsStarted)
	closeAndCheckHandles(t, rt)
	if timers < n || timers > n+500 {
		t.Fatalf("%d timers started for %d timers and 500 Sleeps", timers, n)
	}
	// Every timer, every Sleep's timer and every posted cancel, once each.
	if got, want := atomic.LoadInt64(&completions)-before, timers+n/4; got != want {
		t.Fatalf("%d completions for %d operations", got, want)
	}
	t.Logf("%d fired, %d cancelled", fired, canceled)
}

// On the loop thread the cancel completes the timer inside Cancel itself.
func TestCancelOnLoopThread(t *testing.T) {
	rt := newRuntime(t)
	tm, err := rt.NewTimer(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan bool, 1)
	err = rt.Post(func() {
		_ = tm.Cancel()
		select {
		case <-tm.Done():
			done <- true
		default:
			done <- false
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !<-done {
		t.Fatal("cancel on the loop thread did not complete the timer at once")
	}
	if err := tm.Wait(guardCtx(t)); !errors.Is(err, ErrCanceled) {
		t.Fatalf("got %v", err)
	}
	closeAndCheckHandles(t, rt)
}

func TestManyConcurrentTimers(t *testing.T) {
	rt := newRuntime(t)
	ctx := guardCtx(t)
	const n = 2000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := rt.Sleep(ctx, time.Duration(i%20)*time.Millisecond); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st, err := rt.Stats()
	// The library counts a completion after its callback returns, so the
	// last few may still show as pending here.
	if err != nil || st.OpsStarted < n {
		t.Fatalf("stats %+v, %v", st, err)
	}
	closeAndCheckHandles(t, rt)
}

func TestPostRunsOnLoopThread(t *testing.T) {
	rt := newRuntime(t)
	const posters, each = 8, 2000
	var ran, offLoop int64
	var wg sync.WaitGroup
	all := make(chan struct{})
	wg.Add(posters * each)
	go func() { wg.Wait(); close(all) }()
	for g := 0; g < posters; g++ {
		go func() {
			for i := 0; i < each; i++ {
				err := rt.Post(func() {
					if !rt.IsLoopThread() {
						atomic.AddInt64(&offLoop, 1)
					}
					atomic.AddInt64(&ran, 1)
					wg.Done()
				})
				if err != nil {
					t.Error(err)
					wg.Done()
				}
			}
		}()
	}
	waitClosed(t, all, "posted work")
	if atomic.LoadInt64(&ran) != posters*each || atomic.LoadInt64(&offLoop) != 0 {
		t.Fatalf("ran %d of %d, %d off the loop thread", ran, posters*each, offLoop)
	}
	if err := rt.Post(nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Post(nil): %v", err)
	}
	closeAndCheckHandles(t, rt)
}

// Posting from the loop thread runs on a later turn, never inline.
func TestPostFromLoopThread(t *testing.T) {
	rt := newRuntime(t)
	order := make(chan string, 2)
	err := rt.Post(func() {
		if err := rt.Post(func() { order <- "inner" }); err != nil {
			t.Error(err)
		}
		order <- "outer"
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"outer", "inner"} {
		select {
		case got := <-order:
			if got != want {
				t.Fatalf("got %s, want %s", got, want)
			}
		case <-time.After(hangGuard):
			t.Fatal("hang")
		}
	}
}

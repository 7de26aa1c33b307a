package sluice

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newLocks(t *testing.T, rt *Runtime, o LocksOptions) *Locks {
	t.Helper()
	l, err := NewLocks(rt, o)
	return closeAtEnd(t, "NewLocks", l, err)
}

// Exclusive holders never overlap, shared holders never overlap an
// exclusive one, through Lock, RLock and TryLock, from goroutines on
// threads of their own too.
func TestLocksMutualExclusion(t *testing.T) {
	rt := newRuntime(t)
	l := newLocks(t, rt, LocksOptions{})
	ctx := guardCtx(t)
	const goroutines, each = 8, 250
	var writers, readers int32
	var bad int64
	counter := 0
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			if g%2 == 1 {
				runtime.LockOSThread() // a thread of its own
				defer runtime.UnlockOSThread()
			}
			for i := 0; i < each; i++ {
				var lg *LockGuard
				var err error
				shared := (g+i)%4 == 0
				switch {
				case shared:
					lg, err = l.RLock(ctx, "user:42")
				case i%3 == 0:
					for {
						if lg, err = l.TryLock("user:42", Exclusive); !errors.Is(err, ErrAgain) {
							break
						}
						runtime.Gosched()
					}
				default:
					lg, err = l.Lock(ctx, "user:42")
				}
				if err != nil {
					t.Error(err)
					return
				}
				if shared {
					atomic.AddInt32(&readers, 1)
					if atomic.LoadInt32(&writers) != 0 {
						atomic.AddInt64(&bad, 1)
					}
					_ = counter // readers read the guarded state
					atomic.AddInt32(&readers, -1)
				} else {
					if atomic.AddInt32(&writers, 1) != 1 || atomic.LoadInt32(&readers) != 0 {
						atomic.AddInt64(&bad, 1)
					}
					counter++
					atomic.AddInt32(&writers, -1)
				}
				if err := lg.Unlock(); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	if bad != 0 {
		t.Fatalf("%d overlapping grants", bad)
	}
	writes := 0
	for g := 0; g < goroutines; g++ {
		for i := 0; i < each; i++ {
			if (g+i)%4 != 0 {
				writes++
			}
		}
	}
	if counter != writes {
		t.Fatalf("counter %d, want %d", counter, writes)
	}
	st := mustGet(t, l.Stats)
	if st.Held != 0 || st.LiveKeys != 0 || st.Waiters != 0 || st.Acquisitions != goroutines*each {
		t.Fatalf("stats after the run: %+v", st)
	}
}

// Data guarded by a key is handed from goroutine to goroutine through C.
// The race detector takes every cgo call as a synchronisation point (the
// Go runtime's racecgosync), so it sees the order the lock imposes and
// this plain counter, guarded by nothing else, is not reported.
func TestLocksRaceDetectorSeesTheLock(t *testing.T) {
	rt := newRuntime(t)
	l := newLocks(t, rt, LocksOptions{})
	ctx := guardCtx(t)
	counter := 0
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				var lg *LockGuard
				var err error
				if g%2 == 0 {
					for lg, err = l.TryLock("shared-state", Exclusive); errors.Is(err, ErrAgain); lg, err = l.TryLock("shared-state", Exclusive) {
						runtime.Gosched()
					}
				} else {
					lg, err = l.Lock(ctx, "shared-state")
				}
				if err != nil {
					t.Error(err)
					return
				}
				counter++
				lg.Unlock()
			}
		}(g)
	}
	wg.Wait()
	if counter != 800 {
		t.Fatalf("counter %d, want 800", counter)
	}
}

// Waiters are granted in the order they queued; a queued exclusive waiter
// keeps later shared requests out.
func TestLocksFIFO(t *testing.T) {
	rt := newRuntime(t)
	l := newLocks(t, rt, LocksOptions{})
	ctx := guardCtx(t)
	holder, err := l.Lock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	const n = 6
	order := make(chan int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			g, err := l.Lock(ctx, "k")
			if err != nil {
				t.Error(err)
				return
			}
			order <- i
			g.Unlock()
		}(i)
		waitFor(t, "waiter to queue", func() bool { return mustGet(t, l.Stats).Waiters == uint64(i+1) })
	}
	if err := holder.Unlock(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(order)
	want := 0
	for got := range order {
		if got != want {
			t.Fatalf("granted %d, want %d (first come, first served)", got, want)
		}
		want++
	}

	// Shared holder, then a queued writer: a new reader may not jump it.
	r1, err := l.RLock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l.TryLock("k", Shared)
	if err != nil {
		t.Fatalf("second shared holder: %v", err)
	}
	wdone := make(chan *LockGuard, 1)
	go func() {
		g, err := l.Lock(ctx, "k")
		if err != nil {
			t.Error(err)
		}
		wdone <- g
	}()
	waitFor(t, "writer to queue", func() bool { return mustGet(t, l.Stats).Waiters == 1 })
	if _, err := l.TryLock("k", Shared); !errors.Is(err, ErrAgain) {
		t.Fatalf("shared try past a queued writer: %v, want ErrAgain", err)
	}
	r1.Unlock()
	r2.Unlock()
	w := <-wdone
	if w == nil {
		t.FailNow()
	}
	w.Unlock()
}

func TestLocksDeadlineAndCancel(t *testing.T) {
	rt := newRuntime(t)
	l := newLocks(t, rt, LocksOptions{})
	ctx := guardCtx(t)
	holder, err := l.Lock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	_, err = l.Lock(dctx, "k")
	cancel()
	if !errors.Is(err, ErrTimedOut) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v, want ErrTimedOut and DeadlineExceeded", err)
	}
	// A deadline already passed: a free key is still granted (try), a
	// held one fails at once.
	past, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	if _, err := l.Lock(past, "k"); !errors.Is(err, ErrTimedOut) {
		t.Fatalf("ended context: %v", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	got := lockAndUnlock(cctx, l, "k")
	waitFor(t, "waiter to queue", func() bool { return mustGet(t, l.Stats).Waiters == 1 })
	cancel()
	if err := <-got; !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancel: %v, want ErrCanceled and context.Canceled", err)
	}
	st := mustGet(t, l.Stats)
	if st.Waiters != 0 || st.Held != 1 || st.Cancellations+st.Timeouts < 2 {
		t.Fatalf("stats %+v", st)
	}
	holder.Unlock()
	if st := mustGet(t, l.Stats); st.LiveKeys != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A cancel racing the grant: whichever wins, the waiter holds the key or
// nobody does; a grant that arrived after the cancel is released, never
// leaked. Rounds cycle through a grant before the cancel, a cancel before
// the grant, and the two at once, until a late grant (the race lost by
// the cancel) has been seen.
func TestLocksCancelRacesGrant(t *testing.T) {
	rt := newRuntime(t)
	l := newLocks(t, rt, LocksOptions{})
	ctx := guardCtx(t)
	late0 := atomic.LoadInt64(&lateGrants)
	late := func() int64 { return atomic.LoadInt64(&lateGrants) - late0 }
	var granted, canceled int
	deadline := time.Now().Add(hangGuard / 2)
	for round := 0; round < 30 || late() == 0; round++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d rounds: %d granted, %d cancelled, %d late", round, granted, canceled, late())
		}
		holder, err := l.Lock(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		got := make(chan error, 1)
		var g *LockGuard
		go func() {
			var err error
			g, err = l.Lock(wctx, "k")
			got <- err
		}()
		waitFor(t, "waiter to queue", func() bool { return mustGet(t, l.Stats).Waiters == 1 })
		var err2 error
		switch round % 3 {
		case 0: // granted first
			holder.Unlock()
			err2 = <-got
			cancel()
			if err2 != nil {
				t.Fatalf("round %d: granted before the cancel: %v", round, err2)
			}
		case 1: // cancelled first
			cancel()
			err2 = <-got
			holder.Unlock()
			if !errors.Is(err2, ErrCanceled) {
				t.Fatalf("round %d: cancelled before the grant: %v", round, err2)
			}
		case 2: // both at once
			go holder.Unlock()
			cancel()
			err2 = <-got
		}
		switch {
		case err2 == nil:
			granted++
			if err := g.Unlock(); err != nil {
				t.Fatal(err)
			}
		case errors.Is(err2, ErrCanceled) && errors.Is(err2, context.Canceled):
			canceled++
		default:
			t.Fatalf("round %d: %v", round, err2)
		}
		waitFor(t, "key free", func() bool { st := mustGet(t, l.Stats); return st.Held == 0 && st.LiveKeys == 0 })
	}
	t.Logf("%d granted, %d cancelled (%d granted after the cancel and released)", granted, canceled, late())
}

func TestLocksMany(t *testing.T) {
	rt := newRuntime(t)
	l := newLocks(t, rt, LocksOptions{})
	ctx := guardCtx(t)

	// All or nothing: with b held, TryLockMany(a, b) takes neither.
	b, err := l.TryLock("b", Exclusive)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.TryLockMany(LockKey{Key: "a"}, LockKey{Key: "b"}); !errors.Is(err, ErrAgain) {
		t.Fatalf("TryLockMany with b held: %v", err)
	}
	a, err := l.TryLock("a", Exclusive)
	if err != nil {
		t.Fatalf("a was left held by a failed TryLockMany: %v", err)
	}
	a.Unlock()

	// LockMany waits for b, then holds both under one guard.
	got := make(chan *LockGuard, 1)
	go func() {
		g, err := l.LockMany(ctx, LockKey{Key: "b"}, LockKey{Key: "a"})
		if err != nil {
			t.Error(err)
		}
		got <- g
	}()
	waitFor(t, "LockMany to queue", func() bool { return mustGet(t, l.Stats).Waiters == 1 })
	b.Unlock()
	both := <-got
	if both == nil {
		t.FailNow()
	}
	for _, k := range []string{"a", "b"} {
		if _, err := l.TryLock(k, Shared); !errors.Is(err, ErrAgain) {
			t.Fatalf("%s not held by LockMany: %v", k, err)
		}
	}
	if err := both.Unlock(); err != nil {
		t.Fatal(err)
	}
	if st := mustGet(t, l.Stats); st.Held != 0 {
		t.Fatalf("one Unlock did not release both: %+v", st)
	}

	// A key given twice is taken once, exclusive if either asks.
	g, err := l.TryLockMany(LockKey{Key: "c", Mode: Shared}, LockKey{Key: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.TryLock("c", Shared); !errors.Is(err, ErrAgain) {
		t.Fatalf("duplicate key not exclusive: %v", err)
	}
	g.Unlock()

	// Opposite orders never deadlock.
	var wg sync.WaitGroup
	var held int32
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			keys := []LockKey{{Key: "user:1"}, {Key: "group:1"}}
			if w%2 == 1 {
				keys[0], keys[1] = keys[1], keys[0]
			}
			for i := 0; i < 200; i++ {
				g, err := l.LockMany(ctx, keys...)
				if err != nil {
					t.Error(err)
					return
				}
				if atomic.AddInt32(&held, 1) != 1 {
					t.Error("two holders of the same pair")
				}
				atomic.AddInt32(&held, -1)
				g.Unlock()
			}
		}(w)
	}
	wg.Wait()
}

func TestLocksTokens(t *testing.T) {
	rt := newRuntime(t)
	l := newLocks(t, rt, LocksOptions{})
	ctx := guardCtx(t)
	var prev uint64
	for i := 0; i < 50; i++ {
		var g *LockGuard
		var err error
		if i%2 == 0 {
			g, err = l.Lock(ctx, "fence")
		} else {
			g, err = l.LockMany(ctx, LockKey{Key: "fence"}, LockKey{Key: "other"})
		}
		if err != nil {
			t.Fatal(err)
		}
		if g.Token() <= prev {
			t.Fatalf("grant %d: token %d not above the previous %d", i, g.Token(), prev)
		}
		prev = g.Token()
		g.Unlock()
	}
	// A token that came through the wait path too.
	h, _ := l.Lock(ctx, "fence")
	got := make(chan *LockGuard, 1)
	go func() { g, _ := l.Lock(ctx, "fence"); got <- g }()
	waitFor(t, "waiter", func() bool { return mustGet(t, l.Stats).Waiters == 1 })
	h.Unlock()
	w := <-got
	if w == nil || w.Token() <= h.Token() {
		t.Fatalf("waited grant's token %v not above %d", w, h.Token())
	}
	w.Unlock()
}

func TestLocksBadInput(t *testing.T) {
	rt := newRuntime(t)
	l := newLocks(t, rt, LocksOptions{})
	ctx := guardCtx(t)
	msg := func(err error) string {
		var se *Error
		if errors.As(err, &se) {
			return se.Message
		}
		return ""
	}
	_, err := l.Lock(ctx, "")
	if !errors.Is(err, ErrInvalid) || msg(err) == "" {
		t.Fatalf("empty key: %v", err)
	}
	if _, err := l.TryLock(strings.Repeat("x", MaxLockKey+1), Exclusive); !errors.Is(err, ErrInvalid) {
		t.Fatalf("key too long: %v", err)
	}
	if _, err := l.TryLock("k", LockMode(7)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown mode: %v", err)
	}
	if _, err := l.LockMany(ctx); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no keys: %v", err)
	}
	many := make([]LockKey, MaxLockMany+1)
	for i := range many {
		many[i].Key = fmt.Sprint(i)
	}
	if _, err := l.TryLockMany(many...); !errors.Is(err, ErrInvalid) {
		t.Fatalf("%d keys: %v", len(many), err)
	}
	_, err = l.TryLockMany(LockKey{Key: "a"}, LockKey{Key: ""})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(msg(err), "1") {
		t.Fatalf("empty second key: %v (the message should name index 1)", err)
	}
	// Keys are any bytes.
	g, err := l.Lock(ctx, "\x00\xff\x00")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := g.Unlock(); !errors.Is(err, ErrState) {
		t.Fatalf("second Unlock: %v, want ErrState", err)
	}
	if _, err := NewLocks(rt, LocksOptions{MaxKeys: 1 << 31}); !errors.Is(err, ErrInvalid) || !strings.Contains(msg(err), "max_keys") {
		t.Fatalf("MaxKeys 2^31: %v", err)
	}
	if _, err := NewLocks(rt, LocksOptions{HoldLimit: -time.Second}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("negative HoldLimit: %v", err)
	}
	if st := mustGet(t, l.Stats); st.Held != 0 || st.LiveKeys != 0 {
		t.Fatalf("bad input left state behind: %+v", st)
	}
}

func TestLocksKeyLimit(t *testing.T) {
	rt := newRuntime(t)
	ctx := guardCtx(t)
	l := newLocks(t, rt, LocksOptions{MaxKeys: 1})
	a, err := l.Lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.TryLock("b", Exclusive); !errors.Is(err, ErrLimit) {
		t.Fatalf("TryLock past MaxKeys: %v", err)
	}
	if _, err := l.Lock(ctx, "b"); !errors.Is(err, ErrLimit) {
		t.Fatalf("Lock past MaxKeys: %v", err)
	}
	a.Unlock()

	w := newLocks(t, rt, LocksOptions{MaxKeys: 1, WaitForRoom: true})
	a, err = w.Lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	got := lockAndUnlock(ctx, w, "b")
	waitFor(t, "room waiter", func() bool { return mustGet(t, w.Stats).RoomWaiters == 1 })
	a.Unlock()
	if err := <-got; err != nil {
		t.Fatalf("waiting for room: %v", err)
	}
}

func TestLocksOnLoopThread(t *testing.T) {
	rt := newRuntime(t)
	l := newLocks(t, rt, LocksOptions{})
	got := make(chan error, 2)
	err := rt.Post(func() {
		_, err := l.Lock(context.Background(), "k")
		got <- err
		g, err := l.TryLock("k", Exclusive)
		if err == nil {
			err = g.Unlock()
		}
		got <- err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-got; !errors.Is(err, ErrDeadlock) {
		t.Fatalf("Lock on the loop thread: %v, want ErrDeadlock", err)
	}
	if err := <-got; err != nil {
		t.Fatalf("TryLock on the loop thread: %v", err)
	}
}

// A grant held past HoldLimit is reported on the loop thread, which may
// release it.
func TestLocksHeldTooLong(t *testing.T) {
	rt := newRuntime(t)
	type report struct {
		key   string
		token uint64
		held  time.Duration
	}
	reports := make(chan report, 1)
	var l *Locks
	var mu sync.Mutex
	guards := map[uint64]*LockGuard{}
	l = newLocks(t, rt, LocksOptions{HoldLimit: 5 * time.Millisecond,
		OnHeldTooLong: func(key string, token uint64, held time.Duration) {
			mu.Lock()
			g := guards[token]
			mu.Unlock()
			if g != nil {
				g.Unlock()
			}
			reports <- report{key, token, held}
		}})
	mu.Lock()
	g, err := l.Lock(guardCtx(t), "slow\x00handler")
	if err != nil {
		t.Fatal(err)
	}
	guards[g.Token()] = g
	mu.Unlock()
	var r report
	select {
	case r = <-reports:
	case <-time.After(hangGuard):
		t.Fatal("no held-too-long report")
	}
	if r.key != "slow\x00handler" || r.token != g.Token() || r.held < 5*time.Millisecond {
		t.Fatalf("report %+v for token %d", r, g.Token())
	}
	st := mustGet(t, l.Stats)
	if st.HeldTooLong != 1 || st.Held != 0 {
		t.Fatalf("stats %+v (the callback released the guard)", st)
	}
}

// lockAndUnlock locks key in a goroutine, unlocks it at once if granted,
// and sends Lock's error: a waiter the test can queue behind a holder.
func lockAndUnlock(ctx context.Context, l *Locks, key string) <-chan error {
	got := make(chan error, 1)
	go func() {
		g, err := l.Lock(ctx, key)
		if err == nil {
			g.Unlock()
		}
		got <- err
	}()
	return got
}

func TestLocksClose(t *testing.T) {
	rt := newRuntime(t) // closed again at the end: a no-op
	ctx := guardCtx(t)
	l, err := NewLocks(rt, LocksOptions{})
	if err != nil {
		t.Fatal(err)
	}
	held, _ := l.Lock(ctx, "k")
	got := lockAndUnlock(ctx, l, "k")
	waitFor(t, "waiter", func() bool { return mustGet(t, l.Stats).Waiters == 1 })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; !errors.Is(err, ErrClosed) {
		t.Fatalf("waiter at Close: %v, want ErrClosed", err)
	}
	if err := held.Unlock(); err != nil {
		t.Fatalf("Unlock after Close: %v, want nil", err)
	}
	if _, err := l.Lock(ctx, "k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Lock after Close: %v", err)
	}
	if _, err := l.Stats(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Stats after Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// Closing the runtime closes its managers; a waiter gets ErrClosed,
	// and a Close from the loop thread during the shutdown does not hang.
	l2, err := NewLocks(rt, LocksOptions{})
	if err != nil {
		t.Fatal(err)
	}
	held, _ = l2.Lock(ctx, "k")
	got = lockAndUnlock(ctx, l2, "k")
	waitFor(t, "waiter", func() bool { return mustGet(t, l2.Stats).Waiters == 1 })
	closedOnLoop := make(chan error, 1)
	if err := rt.Post(func() {
		for st, _ := rt.Stats(); !st.Closed; st, _ = rt.Stats() {
			runtime.Gosched()
		}
		closedOnLoop <- l2.Close()
	}); err != nil {
		t.Fatal(err)
	}
	closeAndCheckHandles(t, rt)
	if err := <-got; !errors.Is(err, ErrClosed) {
		t.Fatalf("waiter at runtime Close: %v", err)
	}
	if err := <-closedOnLoop; err != nil {
		t.Fatalf("Close on the loop thread during shutdown: %v", err)
	}
	if err := held.Unlock(); err != nil {
		t.Fatal(err)
	}
	if _, err := NewLocks(rt, LocksOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewLocks on a closed runtime: %v", err)
	}
}

func TestLocksMonitor(t *testing.T) {
	rt := newRuntime(t)
	m := newMonitor(t, rt)
	l := newLocks(t, rt, LocksOptions{Monitor: m})
	ctx := guardCtx(t)
	h, _ := l.Lock(ctx, "k")
	got := lockAndUnlock(ctx, l, "k")
	waitFor(t, "waiter", func() bool { return mustGet(t, l.Stats).Waiters == 1 })
	h.Unlock()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if st := opStats(t, m, WindowAll)["locks.wait"]; st.Count != 1 || st.Errors != 0 {
		t.Fatalf("locks.wait %+v", st)
	}
	other := newMonitor(t, nil)
	rt2 := newRuntime(t)
	if _, err := NewLocks(rt2, LocksOptions{Monitor: m}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("monitor of another runtime: %v", err)
	}
	if _, err := NewLocks(rt2, LocksOptions{Monitor: other}); err != nil {
		t.Fatalf("monitor on no runtime: %v", err)
	}
}

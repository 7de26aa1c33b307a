package sluice

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func newTaskPool(t *testing.T, rt *Runtime, o TaskPoolOptions) *TaskPool {
	t.Helper()
	tp, err := NewTaskPool(rt, o)
	return closeAtEnd(t, "NewTaskPool", tp, err)
}

// waitFor polls cond (a condition the library reports, not elapsed time)
// until it holds, failing at the hang guard.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("hang: %s", what)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// checkBooks checks that the pool is idle and every request is accounted
// for exactly once.
func checkBooks(t *testing.T, tp *TaskPool) TaskPoolStats {
	t.Helper()
	s := mustGet(t, tp.Stats)
	if s.Running != 0 || s.Queued != 0 || s.RoomWaiting != 0 {
		t.Fatalf("not idle: %+v", s)
	}
	ended := s.Completed + s.Failed + s.Rejected + s.Expired + s.Cancelled + s.Closed
	if s.Submitted != ended {
		t.Fatalf("submitted %d != ended %d: %+v", s.Submitted, ended, s)
	}
	return s
}

func TestTaskPoolLimitNeverExceeded(t *testing.T) {
	rt := newRuntime(t)
	const limit = 4
	tp := newTaskPool(t, rt, TaskPoolOptions{MaxConcurrent: limit, MaxQueued: 10000})
	ctx := guardCtx(t)
	var holders, peak int32
	enter := func() error {
		n := atomic.AddInt32(&holders, 1)
		for {
			p := atomic.LoadInt32(&peak)
			if n <= p || atomic.CompareAndSwapInt32(&peak, p, n) {
				break
			}
		}
		if n > limit {
			return fmt.Errorf("%d holders", n)
		}
		// Give the others a chance to run while the slot is held.
		for i := 0; i < 3; i++ {
			time.Sleep(0)
		}
		atomic.AddInt32(&holders, -1)
		return nil
	}
	const users, rounds = 48, 40
	var wg sync.WaitGroup
	errs := make(chan error, users)
	for u := 0; u < users; u++ {
		wg.Add(1)
		go func(u int) {
			defer wg.Done()
			prio := Priority(u % 3)
			for i := 0; i < rounds; i++ {
				var err error
				switch (u + i) % 3 {
				case 0:
					var pm *Permit
					if pm, err = tp.Acquire(ctx, prio); err == nil {
						err = enter()
						pm.Release(err)
					}
				case 1:
					err = tp.Run(ctx, prio, enter)
				case 2:
					var task *Task
					if task, err = tp.Go(ctx, prio, enter); err == nil {
						err = task.Wait()
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(u)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s := checkBooks(t, tp)
	if peak > limit || s.PeakRunning > limit {
		t.Fatalf("limit %d exceeded: Go saw %d, library %d", limit, peak, s.PeakRunning)
	}
	if s.Completed != users*rounds || s.Failed != 0 {
		t.Fatalf("completed %d failed %d, want %d and 0", s.Completed, s.Failed, users*rounds)
	}
}

func TestTaskPoolPriorityOrder(t *testing.T) {
	rt := newRuntime(t)
	tp := newTaskPool(t, rt, TaskPoolOptions{MaxConcurrent: 1})
	ctx := guardCtx(t)
	hold, err := tp.TryAcquire()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []Priority
	var wg sync.WaitGroup
	// Queue low, normal, high in that order, each queued before the next.
	for i, prio := range []Priority{PriorityLow, PriorityNormal, PriorityHigh} {
		wg.Add(1)
		go func(prio Priority) {
			defer wg.Done()
			err := tp.Run(ctx, prio, func() error {
				mu.Lock()
				order = append(order, prio)
				mu.Unlock()
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}(prio)
		want := uint64(i + 1)
		waitCond(t, "request queued", func() bool { return mustGet(t, tp.Stats).Queued == want })
	}
	if _, err := tp.TryAcquire(); !errors.Is(err, ErrAgain) {
		t.Fatalf("TryAcquire with requests waiting: %v, want ErrAgain", err)
	}
	hold.Release(nil)
	wg.Wait()
	want := []Priority{PriorityHigh, PriorityNormal, PriorityLow}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("granted %v, want %v", order, want)
	}
	// The refused TryAcquire is counted as busy, not as submitted (so are
	// the binding's own tries before each wait).
	if s := checkBooks(t, tp); s.Busy < 1 || s.Submitted != 4 {
		t.Fatalf("busy %d submitted %d, want >= 1 and 4", s.Busy, s.Submitted)
	}
}

func TestTaskPoolQueueFull(t *testing.T) {
	rt := newRuntime(t)
	tp := newTaskPool(t, rt, TaskPoolOptions{MaxConcurrent: 1, MaxQueued: 1})
	ctx := guardCtx(t)
	hold, _ := tp.TryAcquire()
	queued := make(chan error, 1)
	go func() {
		pm, err := tp.Acquire(ctx, PriorityNormal)
		if err == nil {
			pm.Release(nil)
		}
		queued <- err
	}()
	waitCond(t, "request queued", func() bool { return mustGet(t, tp.Stats).Queued == 1 })
	_, err := tp.Acquire(ctx, PriorityHigh)
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Acquire on a full queue: %v, want ErrFull", err)
	}
	if err := tp.Submit(ctx, PriorityNormal, func() error { return nil }); !errors.Is(err, ErrFull) {
		t.Fatalf("Submit on a full queue: %v, want ErrFull", err)
	}
	hold.Release(nil)
	if err := <-queued; err != nil {
		t.Fatal(err)
	}
	if s := checkBooks(t, tp); s.Rejected != 2 {
		t.Fatalf("rejected %d, want 2", s.Rejected)
	}
}

func TestTaskPoolNoQueueRejects(t *testing.T) {
	rt := newRuntime(t)
	tp := newTaskPool(t, rt, TaskPoolOptions{MaxConcurrent: 1, MaxQueued: -1})
	hold, _ := tp.TryAcquire()
	if _, err := tp.Acquire(guardCtx(t), PriorityNormal); !errors.Is(err, ErrFull) {
		t.Fatalf("Acquire without a queue: %v, want ErrFull", err)
	}
	hold.Release(nil)
	checkBooks(t, tp)
}

func TestTaskPoolDeadline(t *testing.T) {
	rt := newRuntime(t)
	tp := newTaskPool(t, rt, TaskPoolOptions{MaxConcurrent: 1})
	hold, _ := tp.TryAcquire()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := tp.Acquire(ctx, PriorityNormal)
	if !errors.Is(err, ErrTimedOut) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire past its deadline: %v, want ErrTimedOut and DeadlineExceeded", err)
	}
	ran := false
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	err = tp.Submit(ctx2, PriorityNormal, func() error { ran = true; return nil })
	if !errors.Is(err, ErrTimedOut) || ran {
		t.Fatalf("Submit past its deadline: %v (ran %v), want ErrTimedOut, not run", err, ran)
	}
	hold.Release(nil)
	// Whichever deadline fired first, the library's or ctx's (a cancel),
	// both requests ended without a slot.
	if s := checkBooks(t, tp); s.Expired+s.Cancelled != 2 || s.Completed != 1 {
		t.Fatalf("expired %d + cancelled %d, want 2: %+v", s.Expired, s.Cancelled, s)
	}
	// A context that has ended is refused before anything is counted.
	if _, err := tp.Acquire(ctx, PriorityNormal); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire with an ended context: %v", err)
	}
}

// TestTaskPoolCancelRacesGrant cancels waits at the moment their slot is
// handed over, until a grant has won the race at least once, and checks
// after every round that no slot leaked.
func TestTaskPoolCancelRacesGrant(t *testing.T) {
	rt := newRuntime(t)
	tp := newTaskPool(t, rt, TaskPoolOptions{MaxConcurrent: 1})
	before := atomic.LoadInt64(&latePermits)
	var canceled, granted int
	for round := 0; round < 3000; round++ {
		hold, err := tp.TryAcquire()
		if err != nil {
			t.Fatalf("round %d: %v (a slot leaked)", round, err)
		}
		ctx, cancel := context.WithCancel(guardCtx(t))
		res := make(chan error, 1)
		go func() {
			pm, err := tp.Acquire(ctx, PriorityNormal)
			if err == nil {
				pm.Release(nil)
			}
			res <- err
		}()
		waitCond(t, "request queued", func() bool { return mustGet(t, tp.Stats).Queued == 1 })
		switch round % 3 {
		case 0: // the cancel lands first
			was := mustGet(t, tp.Stats).Cancelled
			cancel()
			waitCond(t, "cancel taken", func() bool { return mustGet(t, tp.Stats).Cancelled > was })
			hold.Release(nil)
		case 1: // the cancel is on its way to the loop as the slot frees
			cancel()
			hold.Release(nil)
		case 2: // the slot frees as the cancel starts
			go cancel()
			hold.Release(nil)
		}
		switch err := <-res; {
		case err == nil:
			granted++
		case errors.Is(err, ErrCanceled) && errors.Is(err, context.Canceled):
			canceled++
		default:
			t.Fatalf("round %d: %v", round, err)
		}
		cancel()
		checkBooks(t, tp)
		if atomic.LoadInt64(&latePermits) > before && round >= 30 {
			break
		}
	}
	t.Logf("granted %d, cancelled %d, late grants given back %d", granted, canceled,
		atomic.LoadInt64(&latePermits)-before)
	s := checkBooks(t, tp)
	if s.Cancelled == 0 || atomic.LoadInt64(&latePermits) == before {
		t.Fatalf("the race was not covered (a cancel taken, a grant winning): %+v", s)
	}
}

func TestTaskPoolSubmitRunsOnWorkerThread(t *testing.T) {
	rt := newRuntime(t)
	tp := newTaskPool(t, rt, TaskPoolOptions{MaxConcurrent: 2, Workers: 2, Name: "gotasks"})
	ctx := guardCtx(t)
	var comm string
	err := tp.Submit(ctx, PriorityHigh, func() error {
		b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/comm", syscall.Gettid()))
		comm = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(comm, "gotasks-") {
		t.Fatalf("ran on thread %q, want a pool worker named gotasks-<n>", comm)
	}
	boom := errors.New("boom")
	if err := tp.Submit(ctx, PriorityNormal, func() error { return boom }); err != boom {
		t.Fatalf("Submit returned %v, want fn's own error", err)
	}
	func() {
		defer func() {
			if v := recover(); v != "kaput" {
				t.Fatalf("recovered %v, want the task's panic", v)
			}
		}()
		tp.Submit(ctx, PriorityNormal, func() error { panic("kaput") })
	}()
	s := checkBooks(t, tp)
	if s.Completed != 1 || s.Failed != 2 {
		t.Fatalf("completed %d failed %d, want 1 and 2", s.Completed, s.Failed)
	}
}

func TestTaskPoolShutdown(t *testing.T) {
	rt := newRuntime(t)
	tp := newTaskPool(t, rt, TaskPoolOptions{MaxConcurrent: 1})
	ctx := guardCtx(t)
	hold, _ := tp.TryAcquire()
	waiting := make(chan error, 1)
	go func() {
		_, err := tp.Acquire(ctx, PriorityLow)
		waiting <- err
	}()
	waitCond(t, "request queued", func() bool { return mustGet(t, tp.Stats).Queued == 1 })
	if err := tp.Shutdown(0); !errors.Is(err, ErrTimedOut) {
		t.Fatalf("Shutdown with a permit held: %v, want ErrTimedOut", err)
	}
	if err := <-waiting; !errors.Is(err, ErrClosed) {
		t.Fatalf("waiting request: %v, want ErrClosed", err)
	}
	if _, err := tp.Acquire(ctx, PriorityNormal); !errors.Is(err, ErrClosed) {
		t.Fatalf("Acquire after Shutdown: %v, want ErrClosed", err)
	}
	if err := hold.Release(nil); err != nil {
		t.Fatalf("Release after Shutdown: %v", err)
	}
	if err := tp.Shutdown(-1); err != nil {
		t.Fatalf("Shutdown once idle: %v", err)
	}
	if s := checkBooks(t, tp); s.Closed != 1 {
		t.Fatalf("closed %d, want 1", s.Closed)
	}
	// Close makes every method fail and later Releases do nothing.
	tp2 := newTaskPool(t, rt, TaskPoolOptions{})
	pm, _ := tp2.TryAcquire()
	tp2.Close()
	if err := pm.Release(nil); err != nil {
		t.Fatalf("Release after Close: %v", err)
	}
	if _, err := tp2.Stats(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Stats after Close: %v", err)
	}
}

func TestTaskPoolResizeGrantsWaiters(t *testing.T) {
	rt := newRuntime(t)
	tp := newTaskPool(t, rt, TaskPoolOptions{MaxConcurrent: 1})
	ctx := guardCtx(t)
	hold, _ := tp.TryAcquire()
	got := make(chan error, 1)
	go func() { got <- tp.Run(ctx, PriorityNormal, func() error { return nil }) }()
	waitCond(t, "request queued", func() bool { return mustGet(t, tp.Stats).Queued == 1 })
	if err := tp.Resize(2); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil { // granted while hold still holds its slot
		t.Fatal(err)
	}
	hold.Release(nil)
	if s := checkBooks(t, tp); s.Limit != 2 {
		t.Fatalf("limit %d, want 2", s.Limit)
	}
}

func TestTaskPoolBadInput(t *testing.T) {
	rt := newRuntime(t)
	for _, o := range []TaskPoolOptions{
		{MaxConcurrent: MaxTaskPoolConcurrent + 1},
		{MaxConcurrent: -1},
		{Workers: MaxTaskPoolWorkers + 1},
		{Name: strings.Repeat("n", 65)},
		{Name: "a\x00b"},
		{Adaptive: true}, // no TargetLatency
		{MaxBypass: -3},
	} {
		if _, err := NewTaskPool(rt, o); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewTaskPool(%+v): %v, want ErrInvalid", o, err)
		}
	}
	tp := newTaskPool(t, rt, TaskPoolOptions{MaxConcurrent: 2})
	ctx := guardCtx(t)
	if _, err := tp.Acquire(ctx, Priority(7)); !errors.Is(err, ErrInvalid) {
		t.Errorf("priority 7: %v", err)
	}
	if err := tp.Submit(ctx, Priority(-1), func() error { return nil }); !errors.Is(err, ErrInvalid) {
		t.Errorf("priority -1: %v", err)
	}
	if err := tp.Run(ctx, PriorityNormal, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Run(nil): %v", err)
	}
	if _, err := tp.Go(ctx, PriorityNormal, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Go(nil): %v", err)
	}
	if err := tp.Submit(ctx, PriorityNormal, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Submit(nil): %v", err)
	}
	for _, n := range []int{0, -1, MaxTaskPoolConcurrent + 1} {
		if err := tp.Resize(n); !errors.Is(err, ErrInvalid) {
			t.Errorf("Resize(%d): %v", n, err)
		}
	}
	pm, err := tp.TryAcquire()
	if err != nil {
		t.Fatal(err)
	}
	if err := pm.Release(nil); err != nil {
		t.Fatal(err)
	}
	if err := pm.Release(nil); !errors.Is(err, ErrState) {
		t.Errorf("second Release: %v, want ErrState", err)
	}
	// On the loop thread the waiting forms refuse; TryAcquire works.
	res := make(chan [2]error, 1)
	rt.Post(func() {
		_, e1 := tp.Acquire(context.Background(), PriorityNormal)
		pm, e2 := tp.TryAcquire()
		if e2 == nil {
			pm.Release(nil)
		}
		res <- [2]error{e1, e2}
	})
	if e := <-res; !errors.Is(e[0], ErrDeadlock) || e[1] != nil {
		t.Errorf("on the loop thread: Acquire %v (want ErrDeadlock), TryAcquire %v", e[0], e[1])
	}
	checkBooks(t, tp)
}

func TestTaskPoolMonitorAndAdaptive(t *testing.T) {
	rt := newRuntime(t)
	mon, err := NewMonitor(rt, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	clock := NewManualClock(time.Second)
	tp := newTaskPool(t, rt, TaskPoolOptions{MaxConcurrent: 4, Adaptive: true, MinConcurrent: 1,
		TargetLatency: 10 * time.Millisecond, Monitor: mon, Name: "ai.task", Clock: clock})
	ctx := guardCtx(t)
	// Four slow pieces of work (by the manual clock) in a window of four:
	// the limit drops by a quarter.
	for i := 0; i < 4; i++ {
		err := tp.Run(ctx, PriorityNormal, func() error { clock.Advance(50 * time.Millisecond); return nil })
		if err != nil {
			t.Fatal(err)
		}
	}
	s := checkBooks(t, tp)
	if s.Limit != 3 || s.LimitLowered != 1 {
		t.Fatalf("limit %d (lowered %d times), want 3 after one slow window", s.Limit, s.LimitLowered)
	}
	if err := tp.Resize(10); !errors.Is(err, ErrRange) {
		t.Fatalf("Resize above the ceiling: %v, want ErrRange", err)
	}
	ops, _ := mon.Stats(WindowAll)
	found := false
	for _, op := range ops {
		if op.Name == "ai.task.run" {
			found = op.Count == 4 && op.P50 >= 45*time.Millisecond
		}
	}
	if !found {
		t.Fatalf("monitor has no ai.task.run of 4 runs of 50 ms: %+v", ops)
	}
}

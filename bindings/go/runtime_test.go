package sluice

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRuntimeLifecycle(t *testing.T) {
	rt, err := New(WithThreadName("sluice-go-test"), WithLagInterval(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	st, err := rt.Stats()
	if err != nil || !st.OwnThread || st.Closed {
		t.Fatalf("stats %+v, %v", st, err)
	}
	if rt.IsLoopThread() {
		t.Fatal("test goroutine reported as the loop thread")
	}
	if err := rt.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := rt.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestOperationsAfterClose(t *testing.T) {
	rt := newRuntime(t)
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	_, statsErr := rt.Stats()
	_, memErr := rt.Memory()
	_, descErr := rt.Describe()
	_, timerErr := rt.NewTimer(time.Millisecond)
	for name, err := range map[string]error{
		"Stats":    statsErr,
		"Memory":   memErr,
		"Describe": descErr,
		"NewTimer": timerErr,
		"Post":     rt.Post(func() {}),
		"Sleep":    rt.Sleep(context.Background(), time.Millisecond),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if s := rt.String(); !strings.Contains(s, "SLUICE_ECLOSED") {
		t.Errorf("String after Close = %q", s)
	}
}

func TestStatsMemoryDescribe(t *testing.T) {
	rt := newRuntime(t, WithLagInterval(time.Millisecond))
	ctx := guardCtx(t)
	ran := make(chan struct{})
	if err := rt.Post(func() { close(ran) }); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, ran, "posted work")
	// Loop lag is sampled every millisecond; sleep on the loop until one is.
	var st Stats
	for st.LagSamples == 0 {
		if err := rt.Sleep(ctx, time.Millisecond); err != nil {
			t.Fatalf("no lag sample before the hang guard: %v", err)
		}
		var err error
		if st, err = rt.Stats(); err != nil {
			t.Fatal(err)
		}
	}
	if st.Posted < 1 || st.OpsStarted < 1 {
		t.Fatalf("stats %+v miss the post and the timers", st)
	}
	m, err := rt.Memory()
	if err != nil {
		t.Fatal(err)
	}
	if m.Allocated == 0 {
		t.Errorf("memory %+v: nothing allocated by a live runtime", m)
	}
	d, err := rt.Describe()
	if err != nil || !strings.Contains(d, "sluice runtime "+Version()) || !strings.Contains(d, "own thread") {
		t.Fatalf("Describe = %q, %v", d, err)
	}
	if rt.String() != d {
		t.Errorf("String %q != Describe %q", rt.String(), d)
	}
}

// Blocking calls on the loop thread would stop the loop that must finish
// them; they fail instead of hanging.
func TestBlockingOnLoopThread(t *testing.T) {
	rt := newRuntime(t)
	tm, err := rt.NewTimer(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 3)
	err = rt.Post(func() {
		got <- rt.Close()
		got <- rt.Sleep(context.Background(), time.Millisecond)
		got <- tm.Wait(context.Background())
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, what := range []string{"Close", "Sleep", "Timer.Wait"} {
		select {
		case err := <-got:
			if !errors.Is(err, ErrDeadlock) {
				t.Fatalf("%s on the loop thread: %v, want ErrDeadlock", what, err)
			}
		case <-time.After(hangGuard):
			t.Fatal("hang")
		}
	}
}

// Work running during the shutdown may call back into the Runtime; the
// library refuses new work with its own ECLOSED and message.
func TestPostDuringShutdown(t *testing.T) {
	rt, err := New()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	err = rt.Post(func() {
		deadline := time.Now().Add(hangGuard)
		for time.Now().Before(deadline) {
			if st, err := rt.Stats(); err == nil && st.Closed {
				break
			}
		}
		got <- rt.Post(func() { t.Error("work posted during shutdown ran") })
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	err = <-got // Close returned, so the posted work has run
	var se *Error
	if !errors.As(err, &se) || se.Code != CodeClosed || se.Message == "" {
		t.Fatalf("post during shutdown: %v, want SLUICE_ECLOSED with a message", err)
	}
}

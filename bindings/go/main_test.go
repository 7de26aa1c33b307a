package sluice

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// hangGuard bounds every wait; reaching it means a hang, not slowness.
const hangGuard = 20 * time.Second

// TestMain fails the run if any handle given to the library was not
// released, any operation completed twice, or any query result or borrowed
// connection was not given back, across all tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if n := atomic.LoadInt64(&liveHandles); n != 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d cgo handles never released\n", n)
		code = 1
	}
	if n := atomic.LoadInt64(&duplicates); n != 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d duplicate completions\n", n)
		code = 1
	}
	if n := atomic.LoadInt64(&liveResults); n != 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d query results never freed\n", n)
		code = 1
	}
	if n := atomic.LoadInt64(&liveLeases); n != 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d connections never released\n", n)
		code = 1
	}
	os.Exit(code)
}

func newRuntime(t *testing.T, opts ...Option) *Runtime {
	t.Helper()
	rt, err := New(opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := rt.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return rt
}

func guardCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	t.Cleanup(cancel)
	return ctx
}

// waitClosed waits for ch to be closed, failing the test at the hang guard.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(hangGuard):
		t.Fatalf("hang: %s", what)
	}
}

// closeAndCheckHandles closes rt (every completion has run and released its
// handle when Close returns) and checks no handle is left.
func closeAndCheckHandles(t *testing.T, rt *Runtime) {
	t.Helper()
	if err := rt.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := atomic.LoadInt64(&liveHandles); n != 0 {
		t.Fatalf("%d handles still live after Close", n)
	}
	if n := atomic.LoadInt64(&duplicates); n != 0 {
		t.Fatalf("%d duplicate completions", n)
	}
}

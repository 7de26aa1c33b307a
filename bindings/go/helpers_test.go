package sluice

// Fixtures every test file uses: making an object that the test closes at
// its end, reading figures that must be readable, and waiting for a
// condition with only a hang guard (never a fixed sleep).

import (
	"runtime"
	"testing"
	"time"
)

// closeAtEnd returns v, made by the call what, and closes it when the test
// ends; a failed make stops the test.
func closeAtEnd[T interface{ Close() error }](t *testing.T, what string, v T, err error) T {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// mustGet returns what get reads (an object's Stats), stopping the test if
// it fails.
func mustGet[S any](t *testing.T, get func() (S, error)) S {
	t.Helper()
	s, err := get()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitFor polls cond until it holds; the hang guard only catches a hang.
// It yields first, then sleeps a little longer each round up to a
// millisecond: quick to notice a change another goroutine makes at once,
// cheap over a wait for the server.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	nap := 50 * time.Microsecond
	for i := 0; !cond(); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("hang: %s", what)
		}
		if i < 1000 {
			runtime.Gosched()
			continue
		}
		time.Sleep(nap)
		if nap < time.Millisecond {
			nap *= 2
		}
	}
}

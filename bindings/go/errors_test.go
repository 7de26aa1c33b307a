package sluice

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var allSentinels = []*Error{
	ErrInvalid, ErrNoMemory, ErrVersion, ErrClosed, ErrCanceled, ErrTimedOut,
	ErrDeadlock, ErrAgain, ErrLimit, ErrState, ErrRange, ErrNotSupported,
	ErrInternal, ErrUV, ErrRejected, ErrFull, ErrOpen, ErrBudget, ErrExhausted,
	ErrUnreachable, ErrAmbiguous, ErrPG,
}

// installedHeader finds sluice/common.h of the installed library.
func installedHeader(t *testing.T) string {
	dir := ""
	if p := os.Getenv("SLUICE_PREFIX"); p != "" {
		dir = filepath.Join(p, "include")
	} else {
		out, err := exec.Command("pkg-config", "--variable=includedir", "sluice").Output()
		if err != nil {
			t.Fatalf("no SLUICE_PREFIX and pkg-config failed: %v", err)
		}
		dir = strings.TrimSpace(string(out))
	}
	return filepath.Join(dir, "sluice", "common.h")
}

func TestCodesMatchHeader(t *testing.T) {
	src, err := os.ReadFile(installedHeader(t))
	if err != nil {
		t.Fatal(err)
	}
	entry := regexp.MustCompile(`XX\((\w+),\s*(-?\d+),\s*"([^"]*)"\)`)
	found := entry.FindAllStringSubmatch(string(src), -1)
	if len(found) == 0 {
		t.Fatal("no SLUICE_ERRNO_MAP entries in the header")
	}
	seen := map[Code]bool{}
	for _, m := range found {
		v, _ := strconv.Atoi(m[2])
		c, name, text := Code(v), "SLUICE_"+m[1], m[3]
		seen[c] = true
		if codeNames[c] != name {
			t.Errorf("header %s = %d, binding calls %d %q", name, v, v, codeNames[c])
		}
		if got := libName(c); got != name {
			t.Errorf("sluice_err_name(%d) = %q, header says %q", v, got, name)
		}
		if got := c.Description(); got != text {
			t.Errorf("sluice_strerror(%d) = %q, header says %q", v, got, text)
		}
	}
	for c, name := range codeNames {
		if !seen[c] {
			t.Errorf("binding has %s (%d), header does not", name, c)
		}
	}
	// One sentinel per code, each with the header's name.
	if len(allSentinels) != len(found) {
		t.Errorf("%d sentinels for %d codes", len(allSentinels), len(found))
	}
	for _, s := range allSentinels {
		if !seen[s.Code] || s.Name != codeNames[s.Code] {
			t.Errorf("sentinel %v does not match the header", s)
		}
	}
	// The loaded library knows no code past the list.
	if got := libName(Code(-len(found) - 1)); got != "SLUICE_EUNKNOWN" {
		t.Errorf("library knows code %d as %s: the binding is behind", -len(found)-1, got)
	}
}

func TestIsByCode(t *testing.T) {
	err := error(newError(CodeClosed, "some detail"))
	if !errors.Is(err, ErrClosed) || errors.Is(err, ErrCanceled) {
		t.Fatalf("errors.Is by code broken for %v", err)
	}
	var se *Error
	if !errors.As(err, &se) || se.Name != "SLUICE_ECLOSED" || se.Message != "some detail" {
		t.Fatalf("errors.As gave %+v", se)
	}
	if want := "sluice: SLUICE_ECLOSED (closed or shutting down): some detail"; err.Error() != want {
		t.Fatalf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestErrorFromBadVersion(t *testing.T) {
	rt, err := New(withOptionsVersion(99))
	if err == nil {
		rt.Close()
		t.Fatal("options version 99 accepted")
	}
	var se *Error
	if !errors.As(err, &se) || se.Code != CodeVersion || !errors.Is(err, ErrVersion) {
		t.Fatalf("got %v, want SLUICE_EVERSION", err)
	}
	if !strings.Contains(se.Message, "sluice_runtime_options: version 99") {
		t.Fatalf("message %q does not name the bad version", se.Message)
	}
}

func TestErrorFromBadOption(t *testing.T) {
	_, err := New(WithLagInterval(70 * time.Second))
	var se *Error
	if !errors.As(err, &se) || !errors.Is(err, ErrInvalid) || se.Name != "SLUICE_EINVAL" {
		t.Fatalf("got %v, want SLUICE_EINVAL", err)
	}
	if !strings.Contains(se.Message, "lag_interval_ms: 70000") {
		t.Fatalf("message %q does not name the bad option", se.Message)
	}
	if _, err := New(WithThreadName("a\x00b")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("NUL in thread name: got %v", err)
	}
}

// Goroutines hop between OS threads; each failure must still carry its own
// message, read inside the same cgo call.
func TestErrorMessagesPerCall(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				var err error
				want := ""
				if (g+i)%2 == 0 {
					_, err = New(withOptionsVersion(uint(50 + g)))
					want = "version " + strconv.Itoa(50+g)
				} else {
					_, err = New(WithLagInterval(time.Duration(61000+g) * time.Millisecond))
					want = strconv.Itoa(61000 + g)
				}
				var se *Error
				if !errors.As(err, &se) || !strings.Contains(se.Message, want) {
					errs <- fmt.Sprint(err) + " lacks " + want
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

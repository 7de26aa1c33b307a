package sluice

/*
#include "shim.h"
*/
import "C"

import (
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"
)

// ManualClock is a clock that only moves when the program moves it, for
// tests and simulations: give it to LimiterOptions.Clock,
// PolicyOptions.Clock or BreakerOptions.Clock and time is exactly what you
// set, with no waiting. Its reading is one C atomic load, so the library
// reads it as cheaply as its own clock, from any thread, even under its
// locks. (A clock calling back into a Go function would cost a cgo
// callback per reading, inside the library's locks; this binding offers
// none.)
//
// Readings are nanoseconds on a monotonic scale of your choosing. Every
// method is safe for concurrent use.
type ManualClock struct {
	p *C.uint64_t // C memory: the library keeps the pointer
}

// NewManualClock returns a clock reading start.
func NewManualClock(start time.Duration) *ManualClock {
	c := &ManualClock{p: (*C.uint64_t)(C.malloc(C.size_t(unsafe.Sizeof(C.uint64_t(0)))))}
	c.Set(start)
	// The objects using the clock hold it, so it is freed after them.
	runtime.SetFinalizer(c, func(c *ManualClock) { C.free(unsafe.Pointer(c.p)) })
	return c
}

func (c *ManualClock) word() *uint64 { return (*uint64)(unsafe.Pointer(c.p)) }

// Now is the clock's reading.
func (c *ManualClock) Now() time.Duration {
	return time.Duration(atomic.LoadUint64(c.word()))
}

// Set moves the clock to t (negative is 0). Moving it back is allowed: the
// library takes a reading earlier than one it has seen as that one.
func (c *ManualClock) Set(t time.Duration) {
	if t < 0 {
		t = 0
	}
	atomic.StoreUint64(c.word(), uint64(t))
}

// Advance moves the clock forward by d and returns the new reading.
func (c *ManualClock) Advance(d time.Duration) time.Duration {
	return time.Duration(atomic.AddUint64(c.word(), uint64(d)))
}

// cptr is the clock's word for a C options struct, or nil for no clock.
func (c *ManualClock) cptr() *C.uint64_t {
	if c == nil {
		return nil
	}
	return c.p
}

// nowNS reads c, or the library's clock (sluice_now_ns) for a nil c.
func (c *ManualClock) nowNS() uint64 {
	if c == nil {
		return uint64(C.sluice_now_ns())
	}
	return atomic.LoadUint64(c.word())
}

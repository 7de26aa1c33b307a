package sluice

// The Go entry points the loop thread calls through the trampolines in
// shim.h. This file holds only them: a cgo file with //export may not
// define C functions in its preamble.

/*
#include <stdint.h>
*/
import "C"

import (
	"runtime/cgo"
	"sync/atomic"
)

// completer is what a handle passed as user_data points at.
type completer interface {
	complete(status int)
}

// liveHandles counts handles given to the library and not yet released;
// the tests use it to prove each is released exactly once.
var liveHandles int64

func newHandle(c completer) C.uintptr_t {
	atomic.AddInt64(&liveHandles, 1)
	return C.uintptr_t(cgo.NewHandle(c))
}

// dropHandle releases a handle the library never took (the start call
// failed), or the one it hands back through free_user_data.
func dropHandle(h C.uintptr_t) {
	cgo.Handle(h).Delete()
	atomic.AddInt64(&liveHandles, -1)
}

//export sluiceGoComplete
func sluiceGoComplete(h C.uintptr_t, status C.int) {
	cgo.Handle(h).Value().(completer).complete(int(status))
}

//export sluiceGoRelease
func sluiceGoRelease(h C.uintptr_t) { dropHandle(h) }

package sluice

// The Go entry points the loop thread calls through the trampolines in
// shim.h. This file holds only them: a cgo file with //export may not
// define C functions in its preamble.

/*
#include <stddef.h>
#include <stdint.h>
*/
import "C"

import (
	"runtime/cgo"
	"sync/atomic"
	"unsafe"
)

// completer is what a handle passed as user_data points at.
type completer interface {
	complete(status int)
}

// valueCompleter is what the handle of an operation that completes with a
// 64-bit value (a lock guard) points at.
type valueCompleter interface {
	completeValue(status int, value uint64)
}

// ptrCompleter is what the handle of an operation that hands something over
// (a query's result, an acquire's connection) points at. ptr is C memory or
// nil; msg is the failure's detail or "".
type ptrCompleter interface {
	completeWith(status int, ptr unsafe.Pointer, msg string)
}

// liveHandles counts handles given to the library and not yet released;
// the tests use it to prove each is released exactly once.
var liveHandles int64

// newHandle makes the user_data of one operation; v is a completer or a
// ptrCompleter, matching the trampoline the operation is started with.
func newHandle(v any) C.uintptr_t {
	atomic.AddInt64(&liveHandles, 1)
	return C.uintptr_t(cgo.NewHandle(v))
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

//export sluiceGoCompletePtr
func sluiceGoCompletePtr(h C.uintptr_t, status C.int, ptr unsafe.Pointer, msg *C.char, msgLen C.size_t) {
	text := ""
	if msg != nil {
		text = C.GoStringN(msg, C.int(msgLen))
	}
	cgo.Handle(h).Value().(ptrCompleter).completeWith(int(status), ptr, text)
}

//export sluiceGoRelease
func sluiceGoRelease(h C.uintptr_t) { dropHandle(h) }

//export sluiceGoCompleteValue
func sluiceGoCompleteValue(h C.uintptr_t, status C.int, value C.uint64_t) {
	cgo.Handle(h).Value().(valueCompleter).completeValue(int(status), uint64(value))
}

// sluiceGoLockHeld is a lock manager's held-too-long report (loop thread);
// key is valid during the call only.
//
//export sluiceGoLockHeld
func sluiceGoLockHeld(h C.uintptr_t, key unsafe.Pointer, n C.size_t, token, heldNS C.uint64_t) {
	cgo.Handle(h).Value().(*heldReporter).report(C.GoStringN((*C.char)(key), C.int(n)),
		uint64(token), uint64(heldNS))
}

// sluiceGoBreakerState is a breaker's state listener (in the thread whose
// call changed the state, after the breaker's lock is released).
//
//export sluiceGoBreakerState
func sluiceGoBreakerState(h C.uintptr_t, from, to C.int, generation C.uint64_t) {
	cgo.Handle(h).Value().(*stateListener).changed(int(from), int(to), uint64(generation))
}

// sluiceGoTaskRun runs a submitted task's Go function on one of the task
// pool's worker threads and returns its status (taskpool.go).
//
//export sluiceGoTaskRun
func sluiceGoTaskRun(h C.uintptr_t) C.int {
	return C.int(cgo.Handle(h).Value().(*taskCall).run())
}

// Package sluice is the Go binding of libsluice, the concurrency machinery
// for chat-bot services (keyed locks, rate limits, task pool, retry,
// PostgreSQL pool, monitor) on a libuv event loop.
//
// The package links the installed C library through pkg-config (package
// "sluice"). A Runtime owns the loop thread every other object lives on;
// asynchronous completions run on that thread and reach Go through cgo
// callbacks (see README.md).
//
// It does not link jemalloc: Debian's jemalloc exports malloc and would
// replace the C allocator of the whole program, which sluice promises never
// to do. The library uses jemalloc's arena only when the program has loaded
// jemalloc itself (docs/runtime.md).
package sluice

/*
#cgo pkg-config: sluice
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"sync"
)

// BindingMajor is the library major version this binding was written for.
const BindingMajor = 0

// Version is the version string of the loaded library ("MAJOR.MINOR.PATCH").
func Version() string { return C.GoString(C.sluice_version_string()) }

// VersionHex is the loaded library's version as 0xMMmmpp.
func VersionHex() uint { return uint(C.sluice_version()) }

var (
	versionOnce sync.Once
	versionErr  error
)

// CheckVersion reports whether the loaded library can serve this binding.
// New calls it, so a mismatch fails there, clearly, instead of in some
// later call with a struct of the wrong shape.
func CheckVersion() error {
	versionOnce.Do(func() {
		versionErr = checkVersion(VersionHex(), uint(C.SLUICE_VERSION_HEX))
	})
	return versionErr
}

// checkVersion compares the loaded library (loaded) with the headers the
// binding was compiled against (built): same major as the binding, and a
// minor at least the headers' (the ABI only grows within a major).
func checkVersion(loaded, built uint) error {
	bad := func(why string) error {
		return &Error{Code: CodeVersion, Name: CodeVersion.String(), Message: fmt.Sprintf(
			"loaded libsluice %d.%d.%d, binding built against %d.%d.%d for major %d: %s",
			loaded>>16, loaded>>8&0xff, loaded&0xff, built>>16, built>>8&0xff, built&0xff,
			BindingMajor, why)}
	}
	switch {
	case built>>16 != BindingMajor:
		return bad("headers of another major")
	case loaded>>16 != BindingMajor:
		return bad("library of another major")
	case loaded>>8&0xff < built>>8&0xff:
		return bad("library older than the headers")
	}
	return nil
}

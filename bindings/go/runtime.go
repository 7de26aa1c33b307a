package sluice

/*
#include "shim.h"
*/
import "C"

import (
	"math"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Runtime is a sluice event loop on its own thread. Every method is safe for
// concurrent use. Close it when done; a finalizer closes a forgotten one.
type Runtime struct {
	// mu is held for reading around every C call that uses ptr and for
	// writing only to free it, so no call can touch a freed runtime. Close
	// runs the C shutdown without it: callbacks that run during the
	// shutdown may call back into the Runtime.
	mu      sync.RWMutex
	ptr     *C.sluice_runtime
	closeMu sync.Mutex // one Close at a time
	deps    *depSet    // the C objects made on it, freed before the runtime
}

// dependent is a C object made on a runtime that must be freed before the
// runtime is (a pool, a lock manager, a monitor that reads the runtime's
// figures, an object that records into such a monitor).
type dependent interface {
	freeRank() int // lower ranks are freed first: a pool before its monitor
	free()         // idempotent
}

// depSet is a runtime's dependents. It is its own object, not a field the
// dependents reach through the Runtime, so that a dependent never points
// back at the Runtime and the Runtime's finalizer still runs when a
// program drops both.
type depSet struct {
	mu   sync.Mutex
	m    map[dependent]struct{}
	dead bool // freeAll has taken the set

	// closing is held for writing by Runtime.Close from before the shutdown
	// until the runtime is freed, and for reading by a dependent's own
	// Close while it frees a C object that uses the loop: the library
	// forbids freeing such an object during a shutdown another thread runs.
	closing sync.RWMutex
}

// add registers d. A caller holding the runtime's read lock always
// succeeds (Close has not taken the set yet); one that reaches the set
// through a monitor may find it already taken by Close, and then gets
// false and must free d itself.
func (s *depSet) add(d dependent) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return false
	}
	if s.m == nil {
		s.m = map[dependent]struct{}{}
	}
	s.m[d] = struct{}{}
	return true
}

func (s *depSet) remove(d dependent) {
	s.mu.Lock()
	delete(s.m, d)
	s.mu.Unlock()
}

// freeAll frees every dependent, lowest rank first. Runtime.Close calls it
// after the shutdown and before the free.
func (s *depSet) freeAll() {
	s.mu.Lock()
	all := make([]dependent, 0, len(s.m))
	for d := range s.m {
		all = append(all, d)
	}
	s.m = nil
	s.dead = true
	s.mu.Unlock()
	for rank := 0; len(all) > 0; rank++ {
		rest := all[:0]
		for _, d := range all {
			if d.freeRank() == rank {
				d.free()
			} else {
				rest = append(rest, d)
			}
		}
		all = rest
	}
}

type options struct {
	version    uint
	threadName *string
	lagMS      uint32
	err        error
}

// Option configures New.
type Option func(*options)

// WithThreadName names the loop thread (the OS shows at most 15 bytes).
func WithThreadName(name string) Option {
	return func(o *options) {
		if strings.IndexByte(name, 0) >= 0 {
			o.err = newError(CodeInvalid, "thread name contains a NUL byte")
			return
		}
		o.threadName = &name
	}
}

// WithLagInterval sets how often loop lag is sampled (rounded up to whole
// milliseconds; 0 turns sampling off; the library allows at most 60 s).
func WithLagInterval(d time.Duration) Option {
	return func(o *options) {
		if d < 0 {
			o.err = newError(CodeInvalid, "lag interval is negative")
			return
		}
		ms := (d + time.Millisecond - 1) / time.Millisecond
		if ms > math.MaxUint32 {
			ms = math.MaxUint32 // still rejected by the library, with its message
		}
		o.lagMS = uint32(ms)
	}
}

// withOptionsVersion lets the tests send an options version the library
// does not know.
func withOptionsVersion(v uint) Option { return func(o *options) { o.version = v } }

// New starts a runtime and its loop thread.
func New(opts ...Option) (*Runtime, error) {
	if err := CheckVersion(); err != nil {
		return nil, err
	}
	o := options{version: C.SLUICE_RUNTIME_OPTIONS_VERSION, lagMS: 100}
	for _, opt := range opts {
		opt(&o)
	}
	if o.err != nil {
		return nil, o.err
	}
	var name *C.char
	if o.threadName != nil {
		name = C.CString(*o.threadName)
		defer C.free(unsafe.Pointer(name))
	}
	var r C.sg_result
	var p *C.sluice_runtime
	C.sg_runtime_new(&r, &p, C.uint(o.version), name, C.uint32_t(o.lagMS))
	if err := resultErr(&r); err != nil {
		return nil, err
	}
	rt := &Runtime{ptr: p, deps: &depSet{}}
	runtime.SetFinalizer(rt, func(rt *Runtime) { _ = rt.Close() })
	return rt, nil
}

func errRuntimeClosed() error { return newError(CodeClosed, "runtime is closed") }

// use runs f with the live runtime pointer, or fails with ErrClosed.
func (rt *Runtime) use(f func(p *C.sluice_runtime) error) error {
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	if rt.ptr == nil {
		return errRuntimeClosed()
	}
	return f(rt.ptr)
}

// Close shuts the runtime down: new work fails with ErrClosed, posted work
// accepted before runs, pending operations complete with ErrClosed, the loop
// thread ends, pools and monitors made on it are freed (their methods
// return ErrClosed afterwards), then the runtime is freed. Calling it again
// returns nil.
// On the loop thread (inside a callback) it fails with ErrDeadlock.
func (rt *Runtime) Close() error {
	if rt.IsLoopThread() {
		return errLoopBlock("Runtime.Close")
	}
	rt.closeMu.Lock()
	defer rt.closeMu.Unlock()
	rt.mu.RLock()
	p := rt.ptr
	rt.mu.RUnlock()
	if p == nil {
		return nil
	}
	// Only Close frees p, and closeMu keeps other Closes out, so p stays
	// valid here without holding mu.
	rt.deps.closing.Lock()
	defer rt.deps.closing.Unlock()
	var r C.sg_result
	C.sg_runtime_close(&r, p)
	if err := resultErr(&r); err != nil {
		return err
	}
	rt.mu.Lock()
	// Pools and monitors made on the runtime go first: the C objects
	// must not outlive it. Nothing new can join: creating one holds the
	// read lock.
	rt.deps.freeAll()
	C.sluice_runtime_free(p)
	rt.ptr = nil
	rt.mu.Unlock()
	runtime.SetFinalizer(rt, nil)
	return nil
}

// IsLoopThread reports whether the caller runs on the runtime's loop thread
// (inside a Post function or another callback).
func (rt *Runtime) IsLoopThread() bool {
	yes := false
	_ = rt.use(func(p *C.sluice_runtime) error {
		yes = C.sluice_runtime_is_loop_thread(p) != 0
		return nil
	})
	return yes
}

// Stats are the runtime's figures.
type Stats struct {
	Posted       uint64 // items queued for the loop thread, by Post and by sluice
	OpsStarted   uint64 // waiting operations started (timers, ...)
	OpsCompleted uint64 // ... and completed, any status
	OpsPending   uint64
	LagSamples   uint64
	LagLast      time.Duration
	LagMax       time.Duration
	LagMean      time.Duration // exponentially weighted (alpha 1/8)
	OwnThread    bool
	Closed       bool // shutdown has begun
}

// Stats reads the runtime's figures.
func (rt *Runtime) Stats() (Stats, error) {
	var s C.sluice_runtime_stats
	err := rt.use(func(p *C.sluice_runtime) error {
		var r C.sg_result
		C.sg_stats(&r, p, &s)
		return resultErr(&r)
	})
	if err != nil {
		return Stats{}, err
	}
	return Stats{
		Posted:       uint64(s.posted),
		OpsStarted:   uint64(s.ops_started),
		OpsCompleted: uint64(s.ops_completed),
		OpsPending:   uint64(s.ops_pending),
		LagSamples:   uint64(s.lag_samples),
		LagLast:      time.Duration(s.lag_last_ns),
		LagMax:       time.Duration(s.lag_max_ns),
		LagMean:      time.Duration(s.lag_mean_ns),
		OwnThread:    s.is_own_thread != 0,
		Closed:       s.is_closed != 0,
	}, nil
}

// MemoryStats are the figures of the library's own allocator.
type MemoryStats struct {
	Jemalloc  bool   // the figures are jemalloc's dedicated arena; else system malloc
	Allocated uint64 // bytes in live allocations
	Active    uint64 // bytes in active pages (jemalloc only)
	Resident  uint64 // bytes resident for the arena (jemalloc only)
	Arena     uint64 // jemalloc arena index
}

// Memory reads the library's allocator figures (process-wide for the
// library, not only this runtime's).
func (rt *Runtime) Memory() (MemoryStats, error) {
	var m C.sluice_memory_stats
	err := rt.use(func(p *C.sluice_runtime) error {
		var r C.sg_result
		C.sg_memory(&r, p, &m)
		return resultErr(&r)
	})
	if err != nil {
		return MemoryStats{}, err
	}
	return MemoryStats{
		Jemalloc:  m.jemalloc != 0,
		Allocated: uint64(m.allocated),
		Active:    uint64(m.active),
		Resident:  uint64(m.resident),
		Arena:     uint64(m.arena),
	}, nil
}

// Describe is the library's one-line summary of the runtime.
func (rt *Runtime) Describe() (string, error) {
	var line string
	err := rt.use(func(p *C.sluice_runtime) error {
		var r C.sg_result
		var buf C.sluice_buf
		C.sg_describe(&r, p, &buf)
		if err := resultErr(&r); err != nil {
			return err
		}
		line = C.GoStringN(buf.ptr, C.int(buf.size))
		C.sluice_buf_free(&buf)
		return nil
	})
	return line, err
}

// String is Describe, or the error (e.g. once closed).
func (rt *Runtime) String() string {
	s, err := rt.Describe()
	if err != nil {
		return "sluice runtime: " + err.Error()
	}
	return s
}

package sluice

/*
#include "locks_shim.h"
*/
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"
)

// LockMode is how a key is held: Exclusive (one holder) or Shared (any
// number of shared holders and no exclusive one).
type LockMode int

const (
	Exclusive LockMode = C.SLUICE_LOCK_EXCLUSIVE // the zero value
	Shared    LockMode = C.SLUICE_LOCK_SHARED
)

// The longest key, and the most keys in one LockMany or TryLockMany call.
const (
	MaxLockKey  = C.SLUICE_LOCKS_MAX_KEY
	MaxLockMany = C.SLUICE_LOCKS_MAX_MANY
)

// LockKey is one key of LockMany and TryLockMany.
type LockKey struct {
	Key  string   // 1..MaxLockKey bytes, any bytes
	Mode LockMode // a key given twice is taken once, exclusive if either asks
}

// LocksOptions configures NewLocks. The zero value of each field means the
// library's default (docs/locks.md).
type LocksOptions struct {
	// MaxLocks is how many idle key entries are kept for reuse (default
	// 2000; negative: none).
	MaxLocks int
	// MaxKeys bounds the keys held or waited on at once (default 100000).
	MaxKeys int
	// WaitForRoom makes a lock that needs a new key while MaxKeys keys are
	// live wait for room within its context; by default it fails at once
	// with ErrLimit.
	WaitForRoom bool
	// CleanupInterval is how often idle cached entries are freed (default
	// 5 minutes; negative: never, the cache stays bounded by MaxLocks).
	CleanupInterval time.Duration
	// HoldLimit reports each grant held longer than this (default: off).
	HoldLimit time.Duration
	// OnHeldTooLong, if set, is told of each such grant: its key, its
	// fencing token and how long it had been held. It runs on the loop
	// thread: it must not block, and it may Unlock the guard.
	OnHeldTooLong func(key string, token uint64, held time.Duration)
	// Monitor, if set, receives "locks.wait" (each lock that had to wait:
	// its wait and outcome). It must be made on the same runtime, or on
	// none.
	Monitor *Monitor
}

// Locks is a keyed lock manager: mutual exclusion by byte-string key
// ("only one handler touches user 42's state at a time"), exclusive or
// shared, first come first served per key, with a fencing token per grant
// and bounded memory (sluice/locks.h). Every method is safe for concurrent
// use.
//
//	g, err := locks.Lock(ctx, "user:42")
//	if err != nil {
//		return err
//	}
//	defer g.Unlock()
type Locks struct {
	rt   *Runtime // keeps the runtime reachable while the manager is
	o    *cobject
	wait bool // WaitForRoom
}

// heldReporter is what the held-too-long callback's handle points at.
type heldReporter struct {
	fn func(key string, token uint64, held time.Duration)
}

func (h *heldReporter) report(key string, token, heldNS uint64) {
	h.fn(key, token, time.Duration(heldNS))
}

// NewLocks creates a lock manager on rt. Close it when done; closing the
// runtime closes it too.
func NewLocks(rt *Runtime, o LocksOptions) (*Locks, error) {
	if err := CheckVersion(); err != nil {
		return nil, err
	}
	var maxLocks, maxKeys, cleanupMS C.uint32_t
	C.sg_locks_defaults(&maxLocks, &maxKeys, &cleanupMS)
	switch {
	case o.MaxLocks < 0:
		maxLocks = 0
	case o.MaxLocks > 0:
		v, ok := u32(o.MaxLocks)
		if !ok {
			return nil, newError(CodeInvalid, "LocksOptions.MaxLocks is out of range")
		}
		maxLocks = v
	}
	if o.MaxKeys != 0 {
		v, ok := u32(o.MaxKeys)
		if !ok {
			return nil, newError(CodeInvalid, "LocksOptions.MaxKeys is out of range")
		}
		maxKeys = v
	}
	switch {
	case o.CleanupInterval < 0:
		cleanupMS = 0
	case o.CleanupInterval > 0:
		cleanupMS = C.uint32_t(durationMS(o.CleanupInterval))
	}
	if o.HoldLimit < 0 {
		return nil, newError(CodeInvalid, "LocksOptions.HoldLimit is negative")
	}
	holdMS := durationMS(o.HoldLimit)
	onFull := C.int(C.SLUICE_LOCKS_FULL_REJECT)
	if o.WaitForRoom {
		onFull = C.SLUICE_LOCKS_FULL_WAIT
	}

	l := &Locks{rt: rt, wait: o.WaitForRoom}
	obj := &cobject{what: "the lock manager", cfree: func(p unsafe.Pointer) {
		C.sluice_locks_free((*C.sluice_locks)(p))
	}}
	var held C.uintptr_t
	if o.OnHeldTooLong != nil {
		held = newHandle(&heldReporter{fn: o.OnHeldTooLong})
		obj.after = append(obj.after, func() { dropHandle(held) })
	}
	err := rt.use(func(rtp *C.sluice_runtime) error {
		var mp *C.sluice_monitor
		if o.Monitor != nil {
			var err error
			if mp, err = o.Monitor.c.acquireUseFor(rtp, "LocksOptions.Monitor"); err != nil {
				return err
			}
		}
		var p *C.sluice_locks
		var r C.sg_result
		C.sg_locks_new(&r, &p, rtp, maxLocks, maxKeys, onFull, cleanupMS, C.uint32_t(holdMS), held, mp)
		if err := resultErr(&r); err != nil {
			if mp != nil {
				o.Monitor.c.releaseUse()
			}
			return err
		}
		if mp != nil {
			obj.after = append(obj.after, o.Monitor.c.releaseUse)
		}
		obj.ptr, obj.rtp, obj.deps = unsafe.Pointer(p), rtp, rt.deps
		rt.deps.add(obj) // under the runtime's read lock: Close frees it
		return nil
	})
	if err != nil {
		if held != 0 {
			dropHandle(held)
		}
		return nil, err
	}
	l.o = obj
	runtime.SetFinalizer(l, func(l *Locks) { l.o.close() }) // a safety net only
	return l, nil
}

// Close frees the manager: locks still waiting fail with ErrClosed, guards
// still held become meaningless (their Unlock does nothing), and every
// method returns ErrClosed. Calling it again returns nil.
func (l *Locks) Close() error {
	runtime.SetFinalizer(l, nil)
	l.o.close()
	return nil
}

// LockGuard is one grant: of one key, or of every key of a LockMany. It
// may be unlocked from any goroutine.
type LockGuard struct {
	l        *Locks
	g        uint64 // the library's guard value
	token    uint64
	released int32
}

// Token is the grant's fencing token: larger than the token of every
// earlier grant of the same key released before this one was granted.
// Store it with a write (UPDATE ... WHERE fence <= $token) and a holder
// that stalled past its lock can never overwrite a newer holder's work.
// The token of a LockMany grant is valid for each of its keys.
func (g *LockGuard) Token() uint64 { return g.token }

// Unlock releases the grant (every key of it); the key passes to the head
// of its queue. A second Unlock returns ErrState and changes nothing;
// after the manager was closed it does nothing and returns nil.
func (g *LockGuard) Unlock() error {
	if !atomic.CompareAndSwapInt32(&g.released, 0, 1) {
		return newError(CodeState, "the lock guard was already unlocked")
	}
	err := g.l.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		C.sg_locks_release(&r, (*C.sluice_locks)(p), C.uint64_t(g.g))
		return resultErr(&r)
	})
	if isClosed(err) {
		return nil // the manager's free released everything
	}
	return err
}

// Lock takes key exclusively, waiting first come first served until ctx
// ends. If ctx is cancelled the wait is cancelled, and a grant that raced
// the cancel is released, never leaked; the error then matches
// ErrCanceled and ctx.Err() (ErrTimedOut and context.DeadlineExceeded for
// a deadline). Other errors: ErrInvalid (an empty or too long key),
// ErrLimit (MaxKeys keys live, without WaitForRoom), ErrClosed, and
// ErrDeadlock on the loop thread, which must run to grant it.
func (l *Locks) Lock(ctx context.Context, key string) (*LockGuard, error) {
	return l.lock(ctx, "Locks.Lock", []LockKey{{Key: key, Mode: Exclusive}})
}

// RLock is Lock in shared mode: any number of shared holders at once, no
// exclusive one. A queued exclusive request blocks shared requests that
// come after it.
func (l *Locks) RLock(ctx context.Context, key string) (*LockGuard, error) {
	return l.lock(ctx, "Locks.RLock", []LockKey{{Key: key, Mode: Shared}})
}

// LockMany takes every key, each in its mode, as one grant: all of them
// or none. Keys are taken in one fixed order, so two callers listing the
// same keys in opposite orders never deadlock each other. Errors as Lock,
// and ErrInvalid for no keys or more than MaxLockMany.
func (l *Locks) LockMany(ctx context.Context, keys ...LockKey) (*LockGuard, error) {
	return l.lock(ctx, "Locks.LockMany", keys)
}

// TryLock takes key in mode now if it can without waiting (nor jumping
// the queue of waiters), else fails with ErrAgain. It never waits, so it
// may be called on the loop thread.
func (l *Locks) TryLock(key string, mode LockMode) (*LockGuard, error) {
	return l.try("Locks.TryLock", []LockKey{{Key: key, Mode: mode}})
}

// TryLockMany is TryLock for several keys: all of them now, or none.
func (l *Locks) TryLockMany(keys ...LockKey) (*LockGuard, error) {
	return l.try("Locks.TryLockMany", keys)
}

// keyBlock is keys as the shim takes them: their bytes back to back, their
// lengths and their modes.
type keyBlock struct {
	bytes []byte
	lens  []C.size_t
	modes []C.int
}

func newKeyBlock(what string, keys []LockKey) (*keyBlock, error) {
	if len(keys) == 0 || len(keys) > MaxLockMany {
		return nil, newError(CodeInvalid, fmt.Sprintf("%s: %d keys (1..%d)", what, len(keys), MaxLockMany))
	}
	n := 0
	for _, k := range keys {
		n += len(k.Key)
	}
	b := &keyBlock{bytes: make([]byte, 0, n), lens: make([]C.size_t, len(keys)), modes: make([]C.int, len(keys))}
	for i, k := range keys {
		b.bytes = append(b.bytes, k.Key...)
		b.lens[i] = C.size_t(len(k.Key))
		b.modes[i] = C.int(k.Mode)
	}
	return b, nil
}

func (b *keyBlock) ptrs() (*C.char, *C.size_t, *C.int, C.size_t) {
	var bytes *C.char
	if len(b.bytes) > 0 {
		bytes = (*C.char)(unsafe.Pointer(&b.bytes[0]))
	}
	return bytes, &b.lens[0], &b.modes[0], C.size_t(len(b.lens))
}

// tryLocked is one try; the caller holds the object's read lock.
func (l *Locks) tryLocked(p *C.sluice_locks, keys []LockKey, blk *keyBlock) (guard, token uint64, err error) {
	var r C.sg_result
	var g, tok C.uint64_t
	if blk == nil {
		k := keys[0]
		C.sg_locks_try(&r, p, strData(k.Key), C.size_t(len(k.Key)), C.int(k.Mode), &g, &tok)
	} else {
		bytes, lens, modes, n := blk.ptrs()
		C.sg_locks_try_many(&r, p, bytes, lens, modes, n, &g, &tok)
	}
	return uint64(g), uint64(tok), resultErr(&r)
}

func (l *Locks) try(what string, keys []LockKey) (*LockGuard, error) {
	var blk *keyBlock
	if len(keys) != 1 || what == "Locks.TryLockMany" {
		var err error
		if blk, err = newKeyBlock(what, keys); err != nil {
			return nil, err
		}
	}
	var g, tok uint64
	err := l.o.use(func(p unsafe.Pointer) (err error) {
		g, tok, err = l.tryLocked((*C.sluice_locks)(p), keys, blk)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &LockGuard{l: l, g: g, token: tok}, nil
}

// lateGrants counts grants that arrived after their wait was cancelled and
// were released (for the tests).
var lateGrants int64

func (l *Locks) lock(ctx context.Context, what string, keys []LockKey) (*LockGuard, error) {
	defer runtime.KeepAlive(l)
	if err := ctx.Err(); err != nil {
		return nil, ctxEnded(err, "the context ended before "+what+" was called")
	}
	var blk *keyBlock
	if what == "Locks.LockMany" {
		var err error
		if blk, err = newKeyBlock(what, keys); err != nil {
			return nil, err
		}
	}
	// Try first: a free key needs no trip to the loop. A try never jumps
	// the queue, so this keeps first come, first served.
	var g, tok uint64
	err := l.o.use(func(p unsafe.Pointer) (err error) {
		if l.o.onLoop() {
			return errLoopBlock(what)
		}
		g, tok, err = l.tryLocked((*C.sluice_locks)(p), keys, blk)
		return err
	})
	switch {
	case err == nil:
		return &LockGuard{l: l, g: g, token: tok}, nil
	case isCode(err, CodeAgain), isCode(err, CodeLimit) && l.wait:
	default:
		return nil, err
	}

	ms, err := ctxTimeoutMS(ctx, what)
	if err != nil {
		return nil, err
	}
	g, err = l.o.awaitGrant(ctx, grantWait{
		what: what,
		start: func(p unsafe.Pointer, h C.uintptr_t, opOut **C.sluice_op) error {
			var r C.sg_result
			if blk == nil {
				key := keys[0]
				C.sg_locks_acquire(&r, (*C.sluice_locks)(p), strData(key.Key), C.size_t(len(key.Key)),
					C.int(key.Mode), C.int64_t(ms), h, opOut)
			} else {
				bytes, lens, modes, n := blk.ptrs()
				C.sg_locks_acquire_many(&r, (*C.sluice_locks)(p), bytes, lens, modes, n, C.int64_t(ms), h, opOut)
			}
			return resultErr(&r)
		},
		failed:   func(status int) error { return waitFailed(ctx, what, status, locksWaitMsgs) },
		giveBack: func(v uint64) { (&LockGuard{l: l, g: v}).Unlock() },
		late:     &lateGrants,
		lost:     "the lock granted meanwhile was released",
	})
	if err != nil {
		return nil, err
	}
	lg := &LockGuard{l: l, g: g}
	err = l.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		var tok C.uint64_t
		C.sg_locks_token(&r, (*C.sluice_locks)(p), C.uint64_t(lg.g), &tok)
		lg.token = uint64(tok)
		return resultErr(&r)
	})
	if err != nil { // closed meanwhile: the grant went with the manager
		return nil, err
	}
	return lg, nil
}

// locksWaitMsgs are the lock manager's own messages for a failed wait.
var locksWaitMsgs = map[Code]string{
	CodeClosed: "the lock manager or its runtime closed while waiting",
	CodeLimit:  "no room for a new key (MaxKeys keys are held or waited on)",
}

func isCode(err error, c Code) bool {
	se, ok := err.(*Error)
	return ok && se.Code == c
}

// Trim frees every cached idle key entry now (what the cleanup timer does
// to entries idle for a whole interval). Held and waited-on keys are
// untouched.
func (l *Locks) Trim() error {
	return l.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		C.sg_locks_trim(&r, (*C.sluice_locks)(p))
		return resultErr(&r)
	})
}

// LocksStats are a lock manager's figures. Each count is exact; under
// concurrent use they are gathered shard by shard, not at one instant.
type LocksStats struct {
	LiveKeys      uint64 // keys held or waited on now
	PeakLiveKeys  uint64
	CachedEntries uint64 // idle entries kept for reuse
	Held          uint64 // grants held now (per key; 3 shared holders count 3)
	Waiters       uint64 // requests queued on a held key now
	RoomWaiters   uint64 // requests waiting for room (WaitForRoom)
	Acquisitions  uint64 // grants made (per key)
	Contended     uint64 // grants made after waiting (per request)
	Timeouts      uint64 // waits ended by their deadline
	Cancellations uint64 // waits ended by a cancel
	WaitTotal     time.Duration
	Busy          uint64 // tries refused with ErrAgain
	LimitRefusals uint64 // requests refused with ErrLimit
	HeldTooLong   uint64 // grants reported as held too long
	BadReleases   uint64 // releases of a guard already released
	Trimmed       uint64 // cached entries freed
}

// Stats reads the manager's figures.
func (l *Locks) Stats() (LocksStats, error) {
	var s C.sluice_locks_stats
	err := l.o.use(func(p unsafe.Pointer) error {
		var r C.sg_result
		C.sg_locks_stats(&r, (*C.sluice_locks)(p), &s)
		return resultErr(&r)
	})
	if err != nil {
		return LocksStats{}, err
	}
	return LocksStats{
		LiveKeys:      uint64(s.live_keys),
		PeakLiveKeys:  uint64(s.peak_live_keys),
		CachedEntries: uint64(s.cached_entries),
		Held:          uint64(s.held),
		Waiters:       uint64(s.waiters),
		RoomWaiters:   uint64(s.room_waiters),
		Acquisitions:  uint64(s.acquisitions),
		Contended:     uint64(s.contended),
		Timeouts:      uint64(s.timeouts),
		Cancellations: uint64(s.cancellations),
		WaitTotal:     nsDuration(s.wait_ns),
		Busy:          uint64(s.busy),
		LimitRefusals: uint64(s.limit_refusals),
		HeldTooLong:   uint64(s.held_too_long),
		BadReleases:   uint64(s.bad_releases),
		Trimmed:       uint64(s.trimmed),
	}, nil
}

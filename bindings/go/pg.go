package sluice

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// PoolOptions configures NewPool. The zero value of each field means the
// library's default (docs/pg.md, sluice/pg.h).
type PoolOptions struct {
	MinSize    int // connections kept open; default 1
	MaxSize    int // never more; default 10 (1..10000)
	MaxWaiters int // callers queued for a connection; beyond it ErrFull; default 10000

	ConnectTimeout time.Duration // per connect attempt; default 5 s
	// A connection idle longer than this is pinged before it is lent;
	// default 1 s, negative: always.
	CheckIdleAfter time.Duration

	// DisableAdmission turns the admission check off: callers whose
	// deadline is shorter than the foreseeable wait then queue instead of
	// failing at once with ErrExhausted.
	DisableAdmission bool
	// WaitWhileDown makes callers wait up to their deadline for the next
	// connect probe while the server is unreachable, instead of failing at
	// once with ErrUnreachable.
	WaitWhileDown bool
	// DisableStatementCache runs every statement unnamed (for
	// transaction-mode poolers such as PgBouncer); default: 256 prepared
	// statements cached per connection.
	DisableStatementCache bool

	// Monitor, if set, receives "pg.acquire", "pg.query" and "pg.connect".
	// It must be made on the same runtime as the pool, or on none; Close
	// on it waits for the pool to be closed before freeing it.
	Monitor *Monitor

	// DefaultTimeout bounds a call whose context has no deadline; 0: the
	// library's 30 s.
	DefaultTimeout time.Duration
}

// QueryFlag changes how one statement runs (QueryFlags, ExecFlags).
type QueryFlag uint32

const (
	// NoPrepare runs the statement unnamed even with a statement cache.
	NoPrepare QueryFlag = C.SLUICE_PG_NO_PREPARE
	// Idempotent says the statement is safe to run twice: a one-shot pool
	// query may then be retried on another connection after an ambiguous
	// failure. It has no effect on a Conn or Tx.
	Idempotent QueryFlag = C.SLUICE_PG_IDEMPOTENT
)

// Pool is sluice's asynchronous PostgreSQL connection pool. Every method is
// safe for concurrent use. Statements run on the runtime's loop; a method
// blocks its goroutine until the result is there (it fails with
// ErrDeadlock on the loop thread, which must run to finish it).
type Pool struct {
	rt *Runtime // keeps the runtime reachable while the pool is
	c  *poolCore
}

// poolCore is the part a Runtime's dependents set holds (see depSet); it
// never points back at the Runtime.
type poolCore struct {
	// mu is held for reading around every C call on the pool or one of its
	// leases, and for writing only to free the pool. A live pool means a
	// live runtime: the runtime frees its pools before itself.
	mu      sync.RWMutex
	ptr     *C.sluice_pg_pool
	rtp     *C.sluice_runtime
	deps    *depSet
	mon     *monitorCore // released after the free, or nil
	closeMu sync.Mutex   // one Close at a time

	defaultMS int64 // timeout_ms of a call whose context has no deadline

	leaseMu sync.Mutex
	leases  map[*Conn]struct{} // lent and not released; Close releases them
}

// Test figures: results delivered to Go and not freed, leases granted and
// not released (TestMain checks both are 0 at the end), and successes that
// arrived after a cancel and were given back.
var liveResults, liveLeases, lateSuccesses int64

func durationMS(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(ms)
}

// NewPool creates a pool on rt for conninfo ("host=... dbname=..." or a
// postgresql:// URI) and returns at once; MinSize connections open in the
// background. A malformed conninfo fails here. Close the pool when done;
// closing the runtime closes it too.
func NewPool(rt *Runtime, conninfo string, o PoolOptions) (*Pool, error) {
	if strings.IndexByte(conninfo, 0) >= 0 {
		return nil, newError(CodeInvalid, "NewPool: conninfo contains a NUL byte")
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"MinSize", o.MinSize}, {"MaxSize", o.MaxSize}, {"MaxWaiters", o.MaxWaiters}} {
		if f.v < 0 || f.v > math.MaxUint32 {
			return nil, newError(CodeInvalid, "PoolOptions."+f.name+" is out of range")
		}
	}
	if o.ConnectTimeout < 0 || o.DefaultTimeout < 0 {
		return nil, newError(CodeInvalid, "PoolOptions: negative timeout")
	}
	var opts C.sluice_pg_pool_options
	var r C.sg_result
	C.sg_pg_pool_options_init(&r, &opts)
	if err := resultErr(&r); err != nil {
		return nil, err
	}
	ci := C.CString(conninfo) // copied by the library
	defer C.free(unsafe.Pointer(ci))
	opts.conninfo = ci
	if o.MinSize > 0 {
		opts.min_size = C.uint32_t(o.MinSize)
	}
	if o.MaxSize > 0 {
		opts.max_size = C.uint32_t(o.MaxSize)
	}
	if o.MaxWaiters > 0 {
		opts.max_waiters = C.uint32_t(o.MaxWaiters)
	}
	if o.ConnectTimeout > 0 {
		opts.connect_timeout_ms = C.uint32_t(durationMS(o.ConnectTimeout))
	}
	switch {
	case o.CheckIdleAfter < 0:
		opts.check_idle_after_ms = 0
	case o.CheckIdleAfter > 0:
		opts.check_idle_after_ms = C.uint32_t(durationMS(o.CheckIdleAfter))
	}
	if o.DisableAdmission {
		opts.admission_check = 0
	}
	if o.WaitWhileDown {
		opts.fail_fast = 0
	}
	if o.DisableStatementCache {
		opts.statement_cache = 0
	}
	c := &poolCore{defaultMS: int64(C.sg_pg_default_timeout_ms()), deps: rt.deps}
	if o.DefaultTimeout > 0 {
		c.defaultMS = int64(durationMS(o.DefaultTimeout))
	}
	err := rt.use(func(p *C.sluice_runtime) error {
		if o.Monitor != nil {
			mp, err := o.Monitor.c.acquireUse(p)
			if err != nil {
				return err
			}
			c.mon = o.Monitor.c
			opts.monitor = mp
		}
		var r C.sg_result
		C.sg_pg_pool_new(&r, &c.ptr, p, &opts)
		if err := resultErr(&r); err != nil {
			if c.mon != nil {
				c.mon.releaseUse()
			}
			return err
		}
		c.rtp = p
		rt.deps.add(c) // under the runtime's read lock: Close frees it
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Pool{rt: rt, c: c}, nil
}

func errPoolClosed() error { return newError(CodeClosed, "the pool is closed") }

// use runs f with the live pool, or fails with ErrClosed.
func (c *poolCore) use(f func(p *C.sluice_pg_pool) error) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return errPoolClosed()
	}
	return f(c.ptr)
}

// onLoop reports whether the caller runs on the loop thread; the caller
// holds mu for reading with the pool live.
func (c *poolCore) onLoop() bool { return C.sluice_runtime_is_loop_thread(c.rtp) != 0 }

func (c *poolCore) freeRank() int { return 0 }

// free releases the leases still out and frees the pool (closing it with
// no drain time if Close did not run).
func (c *poolCore) free() {
	c.mu.Lock()
	if c.ptr == nil {
		c.mu.Unlock()
		return
	}
	c.leaseMu.Lock()
	leases := c.leases
	c.leases = nil
	c.leaseMu.Unlock()
	for cn := range leases {
		// Nobody holds cn.mu: every Conn method takes c.mu first.
		if cn.ptr != nil {
			var r C.sg_result
			C.sg_pg_release(&r, cn.ptr)
			cn.ptr = nil
			atomic.AddInt64(&liveLeases, -1)
		}
	}
	C.sluice_pg_pool_free(c.ptr)
	c.ptr = nil
	c.mu.Unlock()
	c.deps.remove(c)
	if c.mon != nil {
		c.mon.releaseUse()
	}
}

// Close shuts the pool down: new calls fail with ErrClosed, work in flight
// (queued callers included) may finish within drain, then statements still
// running are cancelled on the server (their callers get ErrAmbiguous),
// waiters fail with ErrClosed, connections still leased are released and
// every connection is closed. It returns when all that is done. Calling it
// again returns nil. On the loop thread it fails with ErrDeadlock.
func (p *Pool) Close(drain time.Duration) error {
	c := p.c
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	call := &statusCall{done: make(chan struct{})}
	started := false
	err := c.use(func(pp *C.sluice_pg_pool) error {
		if c.onLoop() {
			return errLoopBlock("Pool.Close")
		}
		h := newHandle(call)
		var r C.sg_result
		C.sg_pg_pool_close(&r, pp, C.uint32_t(durationMS(drain)), h)
		if err := resultErr(&r); err != nil {
			dropHandle(h) // ECLOSED: the runtime is shutting down; free closes it
			return nil
		}
		started = true
		return nil
	})
	if err != nil {
		if isClosed(err) {
			return nil // freed already (by an earlier Close or the runtime's)
		}
		return err
	}
	if started {
		<-call.done // the close always completes, at the latest at runtime shutdown
	}
	c.free()
	return nil
}

func isClosed(err error) bool {
	se, ok := err.(*Error)
	return ok && se.Code == CodeClosed
}

// statusCall is an operation that completes with a status only.
type statusCall struct {
	done   chan struct{}
	fired  int32
	status int
}

func (s *statusCall) complete(status int) {
	if !firstCompletion(&s.fired) {
		return
	}
	s.status = status
	close(s.done)
}

// PoolStats are the pool's figures.
type PoolStats struct {
	Total, Idle, InUse, Connecting, Waiting int
	PeakTotal, PeakWaiting                  int
	Down                                    bool // the server is known to be unreachable

	Acquires, AcquireTimeouts, AcquireExhausted, AcquireUnreachable uint64
	ConnectAttempts, Connects, ConnectFailures                      uint64
	// Evictions by reason: index with EvictBroken ... EvictClose.
	Evictions [C.SLUICE_PG_EVICT_REASONS_]uint64

	Queries, QueryErrors, QueryTimeouts, Ambiguous uint64
	// Server errors by SQLSTATE class.
	Errors08, Errors22, Errors23, Errors25, Errors40, Errors42, Errors53, Errors57, ErrorsOther uint64

	WaitTotal  time.Duration // time callers spent waiting for a connection
	QueryTotal time.Duration // time from send to result
	HoldRecent time.Duration // recent mean time a connection is held
}

// Why a connection was closed (PoolStats.Evictions).
const (
	EvictBroken   = C.SLUICE_PG_EVICT_BROKEN    // the connection broke
	EvictFatal    = C.SLUICE_PG_EVICT_FATAL     // a connection-fatal SQLSTATE
	EvictReadOnly = C.SLUICE_PG_EVICT_READ_ONLY // 25006: a demoted primary
	EvictLifetime = C.SLUICE_PG_EVICT_LIFETIME  // its lifetime ended
	EvictIdle     = C.SLUICE_PG_EVICT_IDLE      // idle too long above MinSize
	EvictHealth   = C.SLUICE_PG_EVICT_HEALTH    // a health check failed
	EvictDirty    = C.SLUICE_PG_EVICT_DIRTY     // given back in a state that could not be reset
	EvictClose    = C.SLUICE_PG_EVICT_CLOSE     // the pool closed
)

// Stats reads the pool's figures.
func (p *Pool) Stats() (PoolStats, error) {
	var s C.sluice_pg_pool_stats
	err := p.c.use(func(pp *C.sluice_pg_pool) error {
		var r C.sg_result
		C.sg_pg_pool_stats(&r, pp, &s)
		return resultErr(&r)
	})
	if err != nil {
		return PoolStats{}, err
	}
	out := PoolStats{
		Total: int(s.total), Idle: int(s.idle), InUse: int(s.in_use),
		Connecting: int(s.connecting), Waiting: int(s.waiting),
		PeakTotal: int(s.peak_total), PeakWaiting: int(s.peak_waiting),
		Down:               s.down != 0,
		Acquires:           uint64(s.acquires),
		AcquireTimeouts:    uint64(s.acquire_timeouts),
		AcquireExhausted:   uint64(s.acquire_exhausted),
		AcquireUnreachable: uint64(s.acquire_unreachable),
		ConnectAttempts:    uint64(s.connect_attempts),
		Connects:           uint64(s.connects),
		ConnectFailures:    uint64(s.connect_failures),
		Queries:            uint64(s.queries),
		QueryErrors:        uint64(s.query_errors),
		QueryTimeouts:      uint64(s.query_timeouts),
		Ambiguous:          uint64(s.ambiguous),
		Errors08:           uint64(s.errors_08),
		Errors22:           uint64(s.errors_22),
		Errors23:           uint64(s.errors_23),
		Errors25:           uint64(s.errors_25),
		Errors40:           uint64(s.errors_40),
		Errors42:           uint64(s.errors_42),
		Errors53:           uint64(s.errors_53),
		Errors57:           uint64(s.errors_57),
		ErrorsOther:        uint64(s.errors_other),
		WaitTotal:          time.Duration(s.wait_ns_total),
		QueryTotal:         time.Duration(s.query_ns_total),
		HoldRecent:         time.Duration(s.hold_ns_recent),
	}
	for i := range out.Evictions {
		out.Evictions[i] = uint64(s.evictions[i])
	}
	return out, nil
}

// ---- waiting for one operation ---------------------------------------

// pgCall is a query or an acquire in flight: the completion stores what
// the library handed over and closes done. The waiting goroutine owns it
// afterwards (frees the result, registers or releases the lease).
type pgCall struct {
	done   chan struct{}
	fired  int32
	status int
	ptr    unsafe.Pointer
	msg    string
	lease  bool // ptr is a sluice_pg_conn, else a sluice_pg_result
}

func (k *pgCall) completeWith(status int, ptr unsafe.Pointer, msg string) {
	if !firstCompletion(&k.fired) {
		return
	}
	if ptr != nil {
		if k.lease {
			atomic.AddInt64(&liveLeases, 1)
		} else {
			atomic.AddInt64(&liveResults, 1)
		}
	}
	k.status, k.ptr, k.msg = status, ptr, msg
	close(k.done)
}

func freeResult(res *C.sluice_pg_result) {
	if res != nil {
		C.sluice_pg_result_free(res)
		atomic.AddInt64(&liveResults, -1)
	}
}

// deadlineGrace is how long a call whose context's deadline passed waits
// for the library's own deadline (the same instant, rounded up to a
// millisecond) before it cancels; it matters only for a context whose
// Deadline() did not tell the truth.
const deadlineGrace = time.Second

// timeout is the library's timeout_ms for a call under ctx: the time left
// to ctx's deadline rounded up to a millisecond, or the pool's default.
// It fails (nothing was sent) if ctx has already ended.
func (c *poolCore) timeout(ctx context.Context, what string) (int64, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return 0, time.Time{}, endedBefore(err, what)
	}
	now := time.Now()
	if d, ok := ctx.Deadline(); ok {
		left := d.Sub(now)
		if left <= 0 {
			return 0, time.Time{}, endedBefore(context.DeadlineExceeded, what)
		}
		ms := int64((left + time.Millisecond - 1) / time.Millisecond)
		return ms, now.Add(time.Duration(ms) * time.Millisecond), nil
	}
	ms := c.defaultMS
	return ms, now.Add(time.Duration(ms) * time.Millisecond), nil
}

// endedBefore is the error of a call whose context ended before anything
// was started: the library's own classification for the same case.
func endedBefore(cause error, what string) error {
	var e *Error
	if cause == context.DeadlineExceeded {
		e = newError(CodeTimedOut, "the context's deadline passed before the "+what+" was started")
		e.Retryable = true
	} else {
		e = newError(CodeCanceled, "the context ended before the "+what+" was started")
	}
	e.cause = cause
	e.classified, e.retryableIdem = true, e.Retryable
	return e
}

// await waits for the completion of k. If ctx is cancelled first it
// cancels the operation (sluice_op_cancel) and still waits for its one
// completion; if ctx's deadline passes it lets the library's own deadline
// end the call, so the outcome keeps the library's meaning (ErrTimedOut
// before the statement was sent, ErrAmbiguous after). It reports whether
// it cancelled, and frees op.
func (c *poolCore) await(ctx context.Context, k *pgCall, op *C.sluice_op, libDeadline time.Time) bool {
	if op == nil { // ctx cannot end
		<-k.done
		return false
	}
	defer C.sluice_op_free(op)
	select {
	case <-k.done:
		return false
	case <-ctx.Done():
	}
	if ctx.Err() == context.DeadlineExceeded {
		t := time.NewTimer(time.Until(libDeadline) + deadlineGrace)
		select {
		case <-k.done:
			t.Stop()
			return false
		case <-t.C:
		}
	}
	// A live pool keeps the runtime from being freed under the cancel; a
	// freed one has completed every operation.
	_ = c.use(func(*C.sluice_pg_pool) error {
		var r C.sg_result
		C.sg_op_cancel(&r, op)
		return resultErr(&r)
	})
	<-k.done // cancelled, or its real outcome if that came first
	return true
}

// resultError turns a failed result into an *Error and frees the result.
func resultError(status int, res *C.sluice_pg_result) *Error {
	e := newError(Code(status), "")
	e.classified = true
	if res == nil {
		return e
	}
	var f C.sg_pg_error
	C.sg_pg_error_of(res, &f)
	e.Message = C.GoString(f.message)
	e.SQLState = C.GoString(f.sqlstate)
	e.Detail = C.GoString(f.detail)
	e.Hint = C.GoString(f.hint)
	e.Sent = f.sent != 0
	e.Retryable = f.retryable != 0
	e.retryableIdem = f.retryable_idempotent != 0
	freeResult(res)
	return e
}

// ---- statements --------------------------------------------------------

// run runs one statement on the pool (cn nil) or on a lease and returns its
// result, which the caller frees.
func (c *poolCore) run(ctx context.Context, cn *Conn, flags QueryFlag, sql string, args []any) (*C.sluice_pg_result, error) {
	blk, err := encodeStatement(sql, args)
	if err != nil {
		return nil, err
	}
	defer C.free(blk.mem) // the library copied everything before returning
	ms, libDeadline, err := c.timeout(ctx, "statement")
	if err != nil {
		return nil, err
	}
	k := &pgCall{done: make(chan struct{})}
	var op *C.sluice_op
	opOut := (**C.sluice_op)(nil)
	if ctx.Done() != nil {
		opOut = &op
	}
	err = c.use(func(pp *C.sluice_pg_pool) error {
		if c.onLoop() {
			return errLoopBlock("a query")
		}
		var conn *C.sluice_pg_conn
		if cn != nil {
			cn.mu.Lock()
			defer cn.mu.Unlock()
			if conn = cn.ptr; conn == nil {
				return newError(CodeState, "the connection was released")
			}
		}
		h := newHandle(k)
		var r C.sg_result
		C.sg_pg_query(&r, pp, conn, blk.sql, blk.n, blk.values, blk.lengths, blk.formats,
			C.int64_t(ms), C.uint32_t(flags), h, opOut)
		if err := resultErr(&r); err != nil {
			dropHandle(h) // nothing was taken
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	canceled := c.await(ctx, k, op, libDeadline)
	res := (*C.sluice_pg_result)(k.ptr)
	if k.status == 0 {
		if !canceled {
			return res, nil
		}
		// It completed before the cancel took: nobody wants the result.
		atomic.AddInt64(&lateSuccesses, 1)
		freeResult(res)
		e := newError(CodeCanceled, "the context ended; the statement had completed and its result was dropped")
		e.Sent = true
		e.cause = ctx.Err()
		e.classified = true
		return nil, e
	}
	e := resultError(k.status, res)
	e.idempotent = flags&Idempotent != 0
	if ctx.Err() != nil {
		e.cause = ctx.Err()
	}
	return nil, e
}

func (c *poolCore) query(ctx context.Context, cn *Conn, flags QueryFlag, sql string, args []any) (*Rows, error) {
	res, err := c.run(ctx, cn, flags, sql, args)
	if err != nil {
		return nil, err
	}
	return newRows(res), nil
}

func (c *poolCore) exec(ctx context.Context, cn *Conn, flags QueryFlag, sql string, args []any) (int64, error) {
	res, err := c.run(ctx, cn, flags, sql, args)
	if err != nil {
		return 0, err
	}
	n := int64(C.sluice_pg_result_affected(res))
	freeResult(res)
	return n, nil
}

// Query runs one statement on any free connection (acquire, run, release)
// and returns its rows; close them when done. ctx's deadline is the whole
// call's, waiting for a connection included.
func (p *Pool) Query(ctx context.Context, sql string, args ...any) (*Rows, error) {
	return p.c.query(ctx, nil, 0, sql, args)
}

// QueryFlags is Query with flags (Idempotent, NoPrepare).
func (p *Pool) QueryFlags(ctx context.Context, flags QueryFlag, sql string, args ...any) (*Rows, error) {
	return p.c.query(ctx, nil, flags, sql, args)
}

// QueryRow runs a statement expected to return at most one row; the error,
// if any, comes from Row.Scan.
func (p *Pool) QueryRow(ctx context.Context, sql string, args ...any) *Row {
	rows, err := p.c.query(ctx, nil, 0, sql, args)
	return &Row{rows: rows, err: err}
}

// Exec runs one statement and returns the number of rows it affected (-1
// if the statement reports none).
func (p *Pool) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	return p.c.exec(ctx, nil, 0, sql, args)
}

// ExecFlags is Exec with flags (Idempotent, NoPrepare).
func (p *Pool) ExecFlags(ctx context.Context, flags QueryFlag, sql string, args ...any) (int64, error) {
	return p.c.exec(ctx, nil, flags, sql, args)
}

// ---- borrowed connections ------------------------------------------------

// Conn is a connection borrowed from the pool (Acquire): its statements run
// one at a time, in order, on the same server session. Release it when
// done; a connection given back inside a transaction is rolled back before
// anyone else gets it.
type Conn struct {
	c   *poolCore
	mu  sync.Mutex // guards ptr; taken after c.mu
	ptr *C.sluice_pg_conn
}

// Acquire borrows a connection, FIFO among waiters, within ctx's deadline
// (ErrTimedOut if none became free in time; ErrExhausted at once if the
// pool foresees it cannot serve the caller in time; ErrUnreachable while
// the server is down). If ctx is cancelled the wait is cancelled, and a
// connection granted meanwhile is given back.
func (p *Pool) Acquire(ctx context.Context) (*Conn, error) {
	c := p.c
	ms, libDeadline, err := c.timeout(ctx, "acquire")
	if err != nil {
		return nil, err
	}
	k := &pgCall{done: make(chan struct{}), lease: true}
	var op *C.sluice_op
	opOut := (**C.sluice_op)(nil)
	if ctx.Done() != nil {
		opOut = &op
	}
	err = c.use(func(pp *C.sluice_pg_pool) error {
		if c.onLoop() {
			return errLoopBlock("Pool.Acquire")
		}
		h := newHandle(k)
		var r C.sg_result
		C.sg_pg_acquire(&r, pp, C.int64_t(ms), h, opOut)
		if err := resultErr(&r); err != nil {
			dropHandle(h)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	canceled := c.await(ctx, k, op, libDeadline)
	if k.status != 0 {
		e := newError(Code(k.status), k.msg)
		switch e.Code { // nothing was sent; as sluice_pg_result_retryable classifies it
		case CodeTimedOut, CodeExhausted, CodeUnreachable, CodeFull:
			e.Retryable = true
		}
		e.classified, e.retryableIdem = true, e.Retryable
		if ctx.Err() != nil {
			e.cause = ctx.Err()
		}
		return nil, e
	}
	cn := &Conn{c: c, ptr: (*C.sluice_pg_conn)(k.ptr)}
	err = c.use(func(*C.sluice_pg_pool) error {
		if canceled { // granted before the cancel took: give it back
			atomic.AddInt64(&lateSuccesses, 1)
			cn.releaseLocked()
			return canceledBy(ctx.Err())
		}
		c.leaseMu.Lock()
		if c.leases == nil {
			c.leases = map[*Conn]struct{}{}
		}
		c.leases[cn] = struct{}{}
		c.leaseMu.Unlock()
		return nil
	})
	if err != nil {
		if isClosed(err) { // freed meanwhile: the lease went with it
			atomic.AddInt64(&liveLeases, -1)
		}
		return nil, err
	}
	return cn, nil
}

// releaseLocked gives the lease back; the caller holds c.mu for reading
// with the pool live.
func (cn *Conn) releaseLocked() error {
	cn.mu.Lock()
	h := cn.ptr
	cn.ptr = nil
	cn.mu.Unlock()
	if h == nil {
		return nil
	}
	cn.c.leaseMu.Lock()
	delete(cn.c.leases, cn)
	cn.c.leaseMu.Unlock()
	atomic.AddInt64(&liveLeases, -1)
	var r C.sg_result
	C.sg_pg_release(&r, h)
	return resultErr(&r)
}

// Release gives the connection back to the pool (rolled back first if it
// was left inside a transaction; a statement still running is cancelled on
// the server). Calling it again, or after the pool closed, does nothing.
func (cn *Conn) Release() error {
	err := cn.c.use(func(*C.sluice_pg_pool) error { return cn.releaseLocked() })
	if isClosed(err) {
		return nil // the pool's Close released it
	}
	return err
}

// Query runs one statement on the connection.
func (cn *Conn) Query(ctx context.Context, sql string, args ...any) (*Rows, error) {
	return cn.c.query(ctx, cn, 0, sql, args)
}

// QueryFlags is Query with flags (NoPrepare).
func (cn *Conn) QueryFlags(ctx context.Context, flags QueryFlag, sql string, args ...any) (*Rows, error) {
	return cn.c.query(ctx, cn, flags, sql, args)
}

// QueryRow runs a statement expected to return at most one row.
func (cn *Conn) QueryRow(ctx context.Context, sql string, args ...any) *Row {
	rows, err := cn.c.query(ctx, cn, 0, sql, args)
	return &Row{rows: rows, err: err}
}

// Exec runs one statement and returns the rows it affected (-1 if none are
// reported).
func (cn *Conn) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	return cn.c.exec(ctx, cn, 0, sql, args)
}

// ExecFlags is Exec with flags (NoPrepare).
func (cn *Conn) ExecFlags(ctx context.Context, flags QueryFlag, sql string, args ...any) (int64, error) {
	return cn.c.exec(ctx, cn, flags, sql, args)
}

// ---- transactions ----------------------------------------------------------

// Tx is a transaction on a borrowed connection. Commit or Rollback ends it
// and gives the connection back; Rollback after Commit does nothing, so
//
//	tx, err := pool.Begin(ctx)
//	if err != nil { return err }
//	defer tx.Rollback(ctx)
//	... tx.Exec(ctx, ...) ...
//	return tx.Commit(ctx)
//
// is the whole pattern. A Tx is for one goroutine at a time.
type Tx struct {
	conn   *Conn
	done   bool
	failed bool // a statement failed: the server may have aborted the transaction
}

// Begin borrows a connection (as Acquire) and starts a transaction on it.
func (p *Pool) Begin(ctx context.Context) (*Tx, error) {
	cn, err := p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := cn.Exec(ctx, "BEGIN"); err != nil {
		_ = cn.Release()
		return nil, err
	}
	return &Tx{conn: cn}, nil
}

func (tx *Tx) note(err error) error {
	if err != nil {
		tx.failed = true
	}
	return err
}

// Query runs one statement in the transaction.
func (tx *Tx) Query(ctx context.Context, sql string, args ...any) (*Rows, error) {
	rows, err := tx.conn.Query(ctx, sql, args...)
	return rows, tx.note(err)
}

// QueryRow runs a statement expected to return at most one row.
func (tx *Tx) QueryRow(ctx context.Context, sql string, args ...any) *Row {
	rows, err := tx.conn.Query(ctx, sql, args...)
	return &Row{rows: rows, err: tx.note(err)}
}

// Exec runs one statement in the transaction and returns the rows it
// affected.
func (tx *Tx) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	n, err := tx.conn.Exec(ctx, sql, args...)
	return n, tx.note(err)
}

// Commit commits and gives the connection back. PostgreSQL answers COMMIT
// of an aborted transaction with a silent ROLLBACK, so after a failed
// statement Commit first checks that the transaction still stands and
// returns the server's error (SQLSTATE 25P02) if it does not.
func (tx *Tx) Commit(ctx context.Context) error {
	if tx.done {
		return newError(CodeState, "the transaction has already ended")
	}
	tx.done = true
	defer tx.conn.Release()
	if tx.failed {
		if _, err := tx.conn.Exec(ctx, "SELECT 1"); err != nil {
			return err
		}
	}
	_, err := tx.conn.Exec(ctx, "COMMIT")
	return err
}

// Rollback rolls back and gives the connection back. After Commit, or a
// second time, it does nothing and returns nil. If ctx has ended it only
// gives the connection back, which the pool rolls back.
func (tx *Tx) Rollback(ctx context.Context) error {
	if tx.done {
		return nil
	}
	tx.done = true
	defer tx.conn.Release()
	if ctx.Err() != nil {
		return nil
	}
	_, err := tx.conn.Exec(ctx, "ROLLBACK")
	return err
}

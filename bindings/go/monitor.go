package sluice

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Monitor keeps, per operation name, counts, errors by code and latency
// histograms (whole run, last minute, last five minutes), and exports them
// as JSON or Prometheus text (docs/monitor.md). Recording is lock-free in
// the library; every method is safe from any goroutine.
//
// Give it to PoolOptions.Monitor and the pool records "pg.acquire",
// "pg.query" and "pg.connect" into it.
type Monitor struct {
	c *monitorCore
}

// monitorCore is the part a Runtime's dependents set holds (see depSet).
type monitorCore struct {
	// mu is held for reading around every C call on ptr and for writing
	// only to free it.
	mu   sync.RWMutex
	ptr  *C.sluice_monitor
	rtp  *C.sluice_runtime // the runtime it reads, or nil; only compared
	deps *depSet           // that runtime's dependents, or nil

	// The library requires a pool's monitor to outlive the pool, so pools
	// hold a use and the free waits for the last one.
	refMu    sync.Mutex
	users    int
	closeReq bool
	closed   int32 // atomic mirror of closeReq for the recording path

	series sync.Map // name -> C.uint32_t series id
}

// outcomeOther is the outcome recorded for an error that is neither a
// sluice error nor a context error; the exports show it as
// SLUICE_EUNKNOWN.
const outcomeOther = -1000

// NewMonitor creates a monitor. rt may be nil; with a runtime the process
// figures include its loop lag, and closing the runtime frees the monitor.
// maxSeries bounds the operation names kept (0: the library's 256; names
// beyond it are counted together as "_overflow").
func NewMonitor(rt *Runtime, maxSeries int) (*Monitor, error) {
	if maxSeries < 0 || maxSeries > math.MaxUint32 {
		return nil, newError(CodeInvalid, "NewMonitor: maxSeries is out of range")
	}
	if maxSeries == 0 {
		maxSeries = 256
	}
	if err := CheckVersion(); err != nil {
		return nil, err
	}
	c := &monitorCore{}
	create := func(p *C.sluice_runtime) error {
		var r C.sg_result
		C.sg_monitor_new(&r, &c.ptr, p, C.uint32_t(maxSeries))
		if err := resultErr(&r); err != nil {
			return err
		}
		c.rtp = p
		return nil
	}
	var err error
	if rt == nil {
		err = create(nil)
	} else {
		err = rt.use(func(p *C.sluice_runtime) error {
			if err := create(p); err != nil {
				return err
			}
			c.deps = rt.deps
			rt.deps.add(c) // under the runtime's read lock: Close frees it
			return nil
		})
	}
	if err != nil {
		return nil, err
	}
	m := &Monitor{c: c}
	runtime.SetFinalizer(m, func(m *Monitor) { _ = m.Close() }) // a safety net only
	return m, nil
}

func errMonitorClosed() error { return newError(CodeClosed, "the monitor is closed") }

// Close frees the monitor. Pools made with it keep it until they are
// closed; its methods return ErrClosed from now on either way. Calling it
// again returns nil.
func (m *Monitor) Close() error {
	runtime.SetFinalizer(m, nil)
	c := m.c
	c.refMu.Lock()
	c.closeReq = true
	atomic.StoreInt32(&c.closed, 1)
	last := c.users == 0
	c.refMu.Unlock()
	if last {
		c.free()
	}
	return nil
}

func (c *monitorCore) freeRank() int { return 2 } // after the pools and breakers that record into it

func (c *monitorCore) free() {
	c.mu.Lock()
	if c.ptr == nil {
		c.mu.Unlock()
		return
	}
	C.sluice_monitor_free(c.ptr)
	c.ptr = nil
	c.mu.Unlock()
	if c.deps != nil {
		c.deps.remove(c)
	}
}

// acquireUse gives a pool the monitor's pointer and holds it alive until
// releaseUse. The pool must be on the monitor's runtime (or the monitor on
// none), since the runtime frees its pools before its monitors.
func (c *monitorCore) acquireUse(rtp *C.sluice_runtime) (*C.sluice_monitor, error) {
	return c.acquireUseFor(rtp, "PoolOptions.Monitor")
}

// acquireUseFor is acquireUse for any object made on runtime rtp; field
// names the option in the error.
func (c *monitorCore) acquireUseFor(rtp *C.sluice_runtime, field string) (*C.sluice_monitor, error) {
	c.refMu.Lock()
	defer c.refMu.Unlock()
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closeReq || c.ptr == nil {
		return nil, errMonitorClosed()
	}
	if c.rtp != nil && c.rtp != rtp {
		return nil, newError(CodeInvalid, field+" was made on another runtime")
	}
	c.users++
	return c.ptr, nil
}

// attachAny lets an object that lives on no runtime (a limiter without
// one, a retry policy) use the monitor. create runs while the monitor
// cannot be freed, with its pointer and its runtime's set (nil if it has
// no runtime); create makes the C object and, with a set, must join it
// (depSet.add), freeing what it made if that fails, so that closing the
// runtime frees the object before the monitor. On success the monitor is
// held until releaseUse.
func (c *monitorCore) attachAny(create func(mp *C.sluice_monitor, deps *depSet) error) error {
	c.refMu.Lock()
	defer c.refMu.Unlock()
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closeReq || c.ptr == nil {
		return errMonitorClosed()
	}
	if err := create(c.ptr, c.deps); err != nil {
		return err
	}
	c.users++
	return nil
}

func (c *monitorCore) releaseUse() {
	c.refMu.Lock()
	c.users--
	last := c.users == 0 && c.closeReq
	c.refMu.Unlock()
	if last {
		c.free()
	}
}

// use runs f with the live monitor, or fails with ErrClosed.
func (c *monitorCore) use(f func(p *C.sluice_monitor) error) error {
	if atomic.LoadInt32(&c.closed) != 0 {
		return errMonitorClosed()
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return errMonitorClosed()
	}
	return f(c.ptr)
}

// seriesID resolves a name once; later records go by id.
func (c *monitorCore) seriesID(p *C.sluice_monitor, name string) (C.uint32_t, error) {
	if v, ok := c.series.Load(name); ok {
		return v.(C.uint32_t), nil
	}
	if name == "" {
		return 0, newError(CodeInvalid, "monitor: the operation name is empty")
	}
	cname := C.CString(name) // any bytes: the length is passed too
	defer C.free(unsafe.Pointer(cname))
	var id C.uint32_t
	var r C.sg_result
	C.sg_monitor_series(&r, p, cname, C.size_t(len(name)), &id)
	if err := resultErr(&r); err != nil {
		return 0, err
	}
	c.series.Store(name, id)
	return id, nil
}

// outcomeOf is the code a monitor records for err: 0 for nil, the Code of
// a sluice error, ECANCELED / ETIMEDOUT for context errors, else
// outcomeOther.
func outcomeOf(err error) int {
	if err == nil {
		return 0
	}
	var se *Error
	switch {
	case errors.As(err, &se):
		return int(se.Code)
	case errors.Is(err, context.Canceled):
		return int(CodeCanceled)
	case errors.Is(err, context.DeadlineExceeded):
		return int(CodeTimedOut)
	}
	return outcomeOther
}

// Record records one finished operation: its name (1 to 128 bytes), how
// long it took and its outcome (err nil for success; a *sluice.Error counts
// under its code, context errors as ECANCELED / ETIMEDOUT, other errors as
// SLUICE_EUNKNOWN).
func (m *Monitor) Record(name string, d time.Duration, err error) error {
	if d < 0 {
		d = 0
	}
	outcome := outcomeOf(err)
	return m.c.use(func(p *C.sluice_monitor) error {
		id, err := m.c.seriesID(p, name)
		if err != nil {
			return err
		}
		var r C.sg_result
		C.sg_monitor_record_id(&r, p, id, C.uint64_t(d), C.int(outcome))
		return resultErr(&r)
	})
}

// Span starts timing an operation and returns the function that ends it
// with the operation's error (nil for success):
//
//	done := mon.Span("db.update_points")
//	err := update()
//	done(err)
//
// A span ended after Close records nothing.
func (m *Monitor) Span(name string) func(err error) {
	start := time.Now()
	return func(err error) { _ = m.Record(name, time.Since(start), err) }
}

// Window selects the time span of Stats.
type Window int

const (
	WindowAll Window = C.SLUICE_WINDOW_ALL // since the monitor was created
	Window1m  Window = C.SLUICE_WINDOW_1M  // the current and the previous minute
	Window5m  Window = C.SLUICE_WINDOW_5M  // the current and the previous four minutes
)

// OpStats are one operation's figures over a window. Percentiles are
// within 0.8% of the true sample; count, errors, min, max, mean and sum are
// exact.
type OpStats struct {
	Name                string
	Count, Errors       uint64
	SuccessRate         float64 // 1.0 with no samples
	Min, Max, Mean      time.Duration
	P50, P90, P99, P999 time.Duration
	Sum                 time.Duration
}

// Stats returns the figures of every operation recorded so far, in order
// of first use ("_overflow" included once names overflowed).
func (m *Monitor) Stats(w Window) ([]OpStats, error) {
	var out []OpStats
	err := m.c.use(func(p *C.sluice_monitor) error {
		n := uint32(C.sluice_monitor_series_count(p))
		out = make([]OpStats, 0, n)
		for i := uint32(0); i < n; i++ {
			var s C.sluice_monitor_op_stats
			var r C.sg_result
			C.sg_monitor_op_stats(&r, p, C.uint32_t(i), C.int(w), &s)
			if err := resultErr(&r); err != nil {
				return err
			}
			out = append(out, OpStats{
				Name:        C.GoString(&s.name[0]),
				Count:       uint64(s.count),
				Errors:      uint64(s.errors),
				SuccessRate: float64(s.success_rate),
				Min:         time.Duration(s.min_ns),
				Max:         time.Duration(s.max_ns),
				Mean:        time.Duration(s.mean_ns),
				P50:         time.Duration(s.p50_ns),
				P90:         time.Duration(s.p90_ns),
				P99:         time.Duration(s.p99_ns),
				P999:        time.Duration(s.p999_ns),
				Sum:         time.Duration(s.sum_ns),
			})
		}
		return nil
	})
	return out, err
}

// ProcessStats are the process's figures as the monitor reads them.
type ProcessStats struct {
	RSS                         uint64 // bytes
	CPUUser, CPUSystem          time.Duration
	CPUPercent                  float64 // of one core, since the previous call
	MemFree, MemTotal           uint64  // bytes
	DiskFree, DiskTotal         uint64  // bytes, of the file system of "/"
	OpenFDs                     uint64
	LoopLagLast, LoopLagMax     time.Duration // 0 without a runtime
	LoopLagMean                 time.Duration
	Jemalloc                    bool // the allocator figures are sluice's jemalloc arena
	Allocated, Active, Resident uint64
}

// Process reads the process's figures.
func (m *Monitor) Process() (ProcessStats, error) {
	var s C.sluice_process_stats
	err := m.c.use(func(p *C.sluice_monitor) error {
		var r C.sg_result
		C.sg_monitor_process(&r, p, &s)
		return resultErr(&r)
	})
	if err != nil {
		return ProcessStats{}, err
	}
	return ProcessStats{
		RSS:         uint64(s.rss_bytes),
		CPUUser:     time.Duration(s.cpu_user_ns),
		CPUSystem:   time.Duration(s.cpu_system_ns),
		CPUPercent:  float64(s.cpu_percent),
		MemFree:     uint64(s.mem_free_bytes),
		MemTotal:    uint64(s.mem_total_bytes),
		DiskFree:    uint64(s.disk_free_bytes),
		DiskTotal:   uint64(s.disk_total_bytes),
		OpenFDs:     uint64(s.open_fds),
		LoopLagLast: time.Duration(s.loop_lag_last_ns),
		LoopLagMax:  time.Duration(s.loop_lag_max_ns),
		LoopLagMean: time.Duration(s.loop_lag_mean_ns),
		Jemalloc:    s.jemalloc != 0,
		Allocated:   uint64(s.alloc_allocated),
		Active:      uint64(s.alloc_active),
		Resident:    uint64(s.alloc_resident),
	}, nil
}

func (m *Monitor) export(which C.int) (string, error) {
	var text string
	err := m.c.use(func(p *C.sluice_monitor) error {
		var r C.sg_result
		var buf C.sluice_buf
		C.sg_monitor_export(&r, p, which, &buf)
		if err := resultErr(&r); err != nil {
			return err
		}
		text = C.GoStringN(buf.ptr, C.int(buf.size))
		C.sluice_buf_free(&buf)
		return nil
	})
	return text, err
}

// JSON is the whole snapshot (every series, all three windows, errors by
// code, process figures) as one JSON object.
func (m *Monitor) JSON() (string, error) { return m.export(0) }

// Prometheus is the snapshot in the Prometheus text format 0.0.4
// (sluice_op_duration_seconds histograms, sluice_op_errors_total, process
// gauges), ready to serve on /metrics.
func (m *Monitor) Prometheus() (string, error) { return m.export(1) }

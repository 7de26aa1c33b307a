//! The monitor (`sluice/monitor.h`): latency and outcomes per operation,
//! exported as JSON or Prometheus text.
use std::ffi::CStr;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use sluice_sys as sys;

use crate::error::{check, Error, Result};
use crate::runtime::{RawRuntime, Runtime};

/// Latency histograms and outcomes per operation name. Recording is
/// lock-free from any thread, so it is `Send + Sync`; share it with an
/// `Arc` (which is also how a `Pool` keeps it alive). With a runtime it
/// holds the runtime until it is freed (the monitor goes first).
pub struct Monitor {
    pub(crate) raw: *mut sys::sluice_monitor,
    _rt: Option<Arc<RawRuntime>>,
}

unsafe impl Send for Monitor {}
unsafe impl Sync for Monitor {}

/// Which stretch of time the figures cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Since the monitor was created.
    All,
    /// The current and the previous minute.
    OneMinute,
    /// The current and the previous four minutes.
    FiveMinutes,
}

/// Figures of one operation name.
#[derive(Debug, Clone, PartialEq)]
pub struct OpStats {
    pub name: String,
    pub count: u64,
    pub errors: u64,
    pub success_rate: f64,
    pub min: Duration,
    pub max: Duration,
    pub mean: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub sum: Duration,
}

fn take_buf(b: &mut sys::sluice_buf) -> String {
    let s = if b.ptr.is_null() { String::new() } else {
        let bytes = unsafe { std::slice::from_raw_parts(b.ptr as *const u8, b.size) };
        String::from_utf8_lossy(bytes).into_owned()
    };
    unsafe { sys::sluice_buf_free(b) };
    s
}

impl Monitor {
    /// A monitor with default options; with a runtime, the process figures
    /// include its loop lag.
    pub fn new(rt: Option<&Runtime>) -> Result<Monitor> {
        crate::version()?;
        let mut raw = ptr::null_mut();
        let rt_raw = rt.map_or(ptr::null_mut(), |r| r.inner.0);
        check(unsafe { sys::sluice_monitor_new(&mut raw, rt_raw, ptr::null()) })?;
        Ok(Monitor { raw, _rt: rt.map(|r| r.inner.clone()) })
    }

    /// Records one completed operation with its outcome.
    pub fn record(&self, name: &str, took: Duration, outcome: std::result::Result<(), &Error>) -> Result<()> {
        self.record_code(name, took, match outcome { Ok(()) => 0, Err(e) => e.code() })
    }

    /// Records with a raw outcome: 0 for success, else any negative code.
    pub fn record_code(&self, name: &str, took: Duration, code: i32) -> Result<()> {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        check(unsafe { sys::sluice_monitor_record(self.raw, name.as_ptr() as *const _, name.len(), ns, code) })
    }

    /// Figures of every series over the whole run, in order of first use.
    pub fn stats(&self) -> Result<Vec<OpStats>> { self.stats_window(Window::All) }

    pub fn stats_window(&self, window: Window) -> Result<Vec<OpStats>> {
        let w = match window {
            Window::All => sys::SLUICE_WINDOW_ALL,
            Window::OneMinute => sys::SLUICE_WINDOW_1M,
            Window::FiveMinutes => sys::SLUICE_WINDOW_5M,
        };
        let n = unsafe { sys::sluice_monitor_series_count(self.raw) };
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let mut s: sys::sluice_monitor_op_stats = unsafe { std::mem::zeroed() };
            s.size = std::mem::size_of::<sys::sluice_monitor_op_stats>();
            check(unsafe { sys::sluice_monitor_op_stats_get(self.raw, i, w, &mut s) })?;
            let d = Duration::from_nanos;
            out.push(OpStats {
                name: unsafe { CStr::from_ptr(s.name.as_ptr()) }.to_string_lossy().into_owned(),
                count: s.count, errors: s.errors, success_rate: s.success_rate,
                min: d(s.min_ns), max: d(s.max_ns), mean: d(s.mean_ns), p50: d(s.p50_ns), p90: d(s.p90_ns),
                p99: d(s.p99_ns), p999: d(s.p999_ns), sum: d(s.sum_ns),
            });
        }
        Ok(out)
    }

    /// The figures of one name over the whole run, if it was recorded.
    pub fn op(&self, name: &str) -> Result<Option<OpStats>> {
        Ok(self.stats()?.into_iter().find(|s| s.name == name))
    }

    /// The whole snapshot as a JSON object.
    pub fn json(&self) -> Result<String> {
        let mut b = sys::sluice_buf { ptr: ptr::null_mut(), size: 0 };
        check(unsafe { sys::sluice_monitor_json(self.raw, &mut b) })?;
        Ok(take_buf(&mut b))
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn prometheus(&self) -> Result<String> {
        let mut b = sys::sluice_buf { ptr: ptr::null_mut(), size: 0 };
        check(unsafe { sys::sluice_monitor_prometheus(self.raw, &mut b) })?;
        Ok(take_buf(&mut b))
    }

    /// The raw handle, for other crates built on sluice-sys.
    pub fn as_raw(&self) -> *mut sys::sluice_monitor { self.raw }
}

impl Drop for Monitor {
    /// `&mut self`: no other thread can be recording. Runs before the
    /// runtime reference is released.
    fn drop(&mut self) {
        unsafe { sys::sluice_monitor_free(self.raw) };
    }
}

// ---- spans ------------------------------------------------------------------

/// Times one operation: `let span = mon.span("handle")?; ...; span.ok()?`.
/// Ended by `ok`, `fail` or `end`; a span dropped without an end (an early
/// return, a panic, a cancelled future) is recorded as `Canceled`.
#[must_use = "a span records when it is ended or dropped"]
pub struct Span<'a> {
    raw: sys::sluice_span,
    ended: bool,
    _monitor: std::marker::PhantomData<&'a Monitor>,
}

// The monitor records from any thread; the span is plain data.
unsafe impl Send for Span<'_> {}

impl Monitor {
    /// Starts timing `name` now. Errors: `Invalid` (empty or too long
    /// name), `Limit` (the monitor's series cap is reached).
    pub fn span(&self, name: &str) -> Result<Span<'_>> {
        let mut raw = sys::sluice_span { monitor: ptr::null_mut(), id: 0, start_ns: 0 };
        check(unsafe { sys::sluice_monitor_span_begin(self.raw, name.as_ptr() as *const _, name.len(), &mut raw) })?;
        Ok(Span { raw, ended: false, _monitor: std::marker::PhantomData })
    }
}

impl Span<'_> {
    /// Records the time since the start with `code` (0: success).
    pub fn end(mut self, code: i32) -> Result<()> {
        self.ended = true;
        check(unsafe { sys::sluice_monitor_span_end(&mut self.raw, code) })
    }
    pub fn ok(self) -> Result<()> { self.end(0) }
    pub fn fail(self, e: &Error) -> Result<()> { self.end(e.code()) }
}

impl Drop for Span<'_> {
    fn drop(&mut self) {
        if !self.ended {
            unsafe { sys::sluice_monitor_span_end(&mut self.raw, sys::SLUICE_ECANCELED) };
        }
    }
}

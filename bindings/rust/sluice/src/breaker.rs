//! The circuit breaker (`sluice/breaker.h`): stop calling a dependency that
//! is failing or slow, try it again after a while. Usable alone (a
//! `Permit` per call) or inside a `RetryPolicy`.
use std::ffi::CString;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use sluice_sys as sys;

use crate::clock::{raw_clock, Clock, ClockBox};
use crate::error::{check, Error, Result};
use crate::monitor::Monitor;
use crate::util::ns;

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls pass; results fill the window.
    Closed,
    /// Calls are refused (`ErrorKind::Open`) until `open` has passed.
    Open,
    /// `half_open_trials` calls pass to test the dependency.
    HalfOpen,
}

impl BreakerState {
    fn from_raw(s: c_int) -> BreakerState {
        match s {
            sys::SLUICE_BREAKER_OPEN => BreakerState::Open,
            sys::SLUICE_BREAKER_HALF_OPEN => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
    fn raw(self) -> c_int {
        match self {
            BreakerState::Closed => sys::SLUICE_BREAKER_CLOSED,
            BreakerState::Open => sys::SLUICE_BREAKER_OPEN,
            BreakerState::HalfOpen => sys::SLUICE_BREAKER_HALF_OPEN,
        }
    }
}

/// Which calls the failure rate is judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerWindow {
    /// The last N calls (1..1e6).
    Count(u32),
    /// The calls of the last `length`, moving in `length / buckets` steps.
    Time { length: Duration, buckets: u32 },
}

/// Told of every state change (from, to, generation), in the thread whose
/// call caused it. Must not block; a panic in it is caught.
pub type StateListener = dyn Fn(BreakerState, BreakerState, u64) + Send + Sync;

/// Options of a breaker; `Default` gives the library's defaults (last 100
/// calls, at least 10, trip at 50% failures, 30 s open, 3 trials).
#[derive(Clone)]
pub struct BreakerOptions {
    pub window: BreakerWindow,
    pub minimum_calls: u32,
    /// Trip at this failure rate, in (0, 100]; 0 turns it off.
    pub failure_rate_percent: f64,
    /// A call lasting at least this is slow; None: not tracked.
    pub slow_call: Option<Duration>,
    pub slow_rate_percent: f64,
    /// How long calls are refused before trials.
    pub open: Duration,
    pub half_open_trials: u32,
    /// Time source; None: the coarse monotonic clock.
    pub clock: Option<Clock>,
    pub on_state_change: Option<Arc<StateListener>>,
    /// Records `<name>.rejected` for every call refused while open and
    /// `<name>.opened` each time the breaker trips (both with duration 0
    /// and outcome `Open`); kept alive by the breaker.
    pub monitor: Option<Arc<Monitor>>,
    /// Series prefix (default "breaker"; 1..64 bytes).
    pub name: Option<String>,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        BreakerOptions {
            window: BreakerWindow::Count(100), minimum_calls: 10, failure_rate_percent: 50.0, slow_call: None,
            slow_rate_percent: 100.0, open: Duration::from_secs(30), half_open_trials: 3, clock: None,
            on_state_change: None, monitor: None, name: None,
        }
    }
}

/// The breaker's figures (`sluice_breaker_stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerStats {
    pub state: BreakerState,
    pub generation: u64,
    pub successes: u64,
    pub failures: u64,
    pub slow: u64,
    pub refused: u64,
    pub ignored: u64,
    pub released: u64,
    pub opened: u64,
    pub half_opened: u64,
    pub closed: u64,
    pub window_calls: u64,
    pub window_failures: u64,
    pub window_slow: u64,
    pub trials_taken: u32,
    pub trials_reported: u32,
}

/// Frees the C breaker, then what it uses (clock, listener, monitor).
pub(crate) struct BreakerInner {
    pub(crate) raw: *mut sys::sluice_breaker,
    clock: Option<ClockBox>,
    _listener: Option<Box<Arc<StateListener>>>,
    _monitor: Option<Arc<Monitor>>,
}

unsafe impl Send for BreakerInner {}
unsafe impl Sync for BreakerInner {}

impl Drop for BreakerInner {
    /// Every policy using the breaker holds a clone, so it goes first.
    fn drop(&mut self) {
        unsafe { sys::sluice_breaker_free(self.raw) };
    }
}

impl BreakerInner {
    fn now_ns(&self) -> u64 {
        match &self.clock {
            Some(c) => c.now_ns(),
            None => unsafe { sys::sluice_now_ns() },
        }
    }
}

/// A circuit breaker. Cheap to clone (shared), `Send + Sync`; needs no
/// runtime. Give a clone to `RetryOptions::breaker` to use it in a policy.
#[derive(Clone)]
pub struct Breaker {
    pub(crate) inner: Arc<BreakerInner>,
}

unsafe extern "C" fn on_state(ud: *mut c_void, from: c_int, to: c_int, generation: u64) {
    let f = &*(ud as *const Arc<StateListener>);
    let _ = catch_unwind(AssertUnwindSafe(|| f(BreakerState::from_raw(from), BreakerState::from_raw(to), generation)));
}

impl Breaker {
    /// Creates a breaker, CLOSED with an empty window.
    /// Errors: `Invalid` (an option out of range, named in the message; a
    /// name empty, longer than 64 bytes or with a NUL byte), `NoMemory`.
    pub fn new(options: BreakerOptions) -> Result<Breaker> {
        crate::version()?;
        // The library copies the name; it only has to live through new.
        let name = options.name.as_deref().map(CString::new).transpose()
            .map_err(|_| Error::new(sys::SLUICE_EINVAL, "breaker name has a NUL byte"))?;
        let mut o: sys::sluice_breaker_options = unsafe { std::mem::zeroed() };
        check(unsafe { sys::sluice_breaker_options_init(&mut o, sys::SLUICE_BREAKER_OPTIONS_VERSION) })?;
        match options.window {
            BreakerWindow::Count(n) => {
                o.window = sys::SLUICE_BREAKER_WINDOW_COUNT;
                o.window_calls = n;
            }
            BreakerWindow::Time { length, buckets } => {
                o.window = sys::SLUICE_BREAKER_WINDOW_TIME;
                o.window_ms = i64::try_from(length.as_millis()).unwrap_or(i64::MAX);
                o.window_buckets = buckets;
            }
        }
        o.minimum_calls = options.minimum_calls;
        o.failure_rate_percent = options.failure_rate_percent;
        o.slow_call_ms = options.slow_call.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        o.slow_rate_percent = options.slow_rate_percent;
        o.open_ms = i64::try_from(options.open.as_millis()).unwrap_or(i64::MAX);
        o.half_open_trials = options.half_open_trials;
        let (clock, clock_ud, clock_box) = raw_clock(&options.clock);
        o.clock = clock;
        o.clock_user_data = clock_ud;
        let listener = options.on_state_change.map(Box::new);
        if let Some(l) = &listener {
            o.on_state_change = Some(on_state);
            o.state_user_data = &**l as *const Arc<StateListener> as *mut c_void;
        }
        o.monitor = options.monitor.as_ref().map_or(ptr::null_mut(), |m| m.raw);
        o.name = name.as_ref().map_or(ptr::null(), |n| n.as_ptr());
        let mut raw = ptr::null_mut();
        check(unsafe { sys::sluice_breaker_new(&mut raw, ptr::null_mut(), &o) })?;
        Ok(Breaker { inner: Arc::new(BreakerInner { raw, clock: clock_box, _listener: listener,
                                                    _monitor: options.monitor }) })
    }

    /// "May I call?" A permit, or `ErrorKind::Open` (open and its wait not
    /// over, or half-open with every trial taken). Report the call's
    /// result through the permit; a permit dropped without a result gives
    /// its trial back (the call did not happen).
    pub fn allow(&self) -> Result<Permit> {
        let mut ticket = 0;
        let rc = unsafe { sys::sluice_breaker_allow(self.inner.raw, &mut ticket) };
        if rc != 0 {
            return Err(if rc == sys::SLUICE_EOPEN { Error::new(rc, "circuit breaker open") } else { Error::last(rc) });
        }
        Ok(Permit { breaker: self.inner.clone(), ticket, start_ns: self.inner.now_ns(), done: false })
    }

    /// Records a call not admitted through a permit, in the current state.
    pub fn record(&self, success: bool, duration: Duration) -> Result<()> {
        record(&self.inner, 0, success, duration)
    }

    /// The current state (an OPEN breaker whose wait is over reads OPEN
    /// until the next `allow`).
    pub fn state(&self) -> BreakerState {
        BreakerState::from_raw(unsafe { sys::sluice_breaker_state_get(self.inner.raw) })
    }

    /// Forces a state (an operator's switch); permits given out before
    /// belong to an earlier state and their results are ignored.
    pub fn set_state(&self, state: BreakerState) -> Result<()> {
        check(unsafe { sys::sluice_breaker_set_state(self.inner.raw, state.raw()) })
    }

    pub fn stats(&self) -> Result<BreakerStats> {
        let mut s = sys::sluice_breaker_stats { size: std::mem::size_of::<sys::sluice_breaker_stats>(), ..Default::default() };
        check(unsafe { sys::sluice_breaker_stats_get(self.inner.raw, &mut s) })?;
        Ok(BreakerStats {
            state: BreakerState::from_raw(s.state), generation: s.generation, successes: s.successes,
            failures: s.failures, slow: s.slow, refused: s.refused, ignored: s.ignored, released: s.released,
            opened: s.opened, half_opened: s.half_opened, closed: s.closed, window_calls: s.window_calls,
            window_failures: s.window_failures, window_slow: s.window_slow, trials_taken: s.trials_taken,
            trials_reported: s.trials_reported,
        })
    }

    /// The raw handle, for other crates built on sluice-sys.
    pub fn as_raw(&self) -> *mut sys::sluice_breaker { self.inner.raw }
}

fn record(b: &BreakerInner, ticket: u64, success: bool, duration: Duration) -> Result<()> {
    let result = if success { sys::SLUICE_BREAKER_SUCCESS } else { sys::SLUICE_BREAKER_FAILURE };
    check(unsafe { sys::sluice_breaker_record(b.raw, ticket, result, ns(duration)) })
}

/// One call let through by [`Breaker::allow`]. Report exactly one result
/// (`success`, `failure` or `record`); dropping it unreported releases the
/// call (a half-open trial goes to another caller). The call's duration is
/// measured from `allow` on the breaker's clock, for slow-call detection.
#[must_use = "report the call's result, or it counts as not made"]
pub struct Permit {
    breaker: Arc<BreakerInner>,
    ticket: u64,
    start_ns: u64,
    done: bool,
}

impl Permit {
    fn elapsed(&self) -> Duration { Duration::from_nanos(self.breaker.now_ns().saturating_sub(self.start_ns)) }

    /// The dependency answered (a request error it rejected counts as a
    /// success too: the dependency is healthy).
    pub fn success(self) -> Result<()> { let d = self.elapsed(); self.record(true, d) }

    /// The dependency failed (error, timeout, unreachable).
    pub fn failure(self) -> Result<()> { let d = self.elapsed(); self.record(false, d) }

    /// Records the result with a duration of the caller's.
    pub fn record(mut self, success: bool, duration: Duration) -> Result<()> {
        self.done = true;
        record(&self.breaker, self.ticket, success, duration)
    }

    /// The ticket tying the result to the state that admitted the call.
    pub fn ticket(&self) -> u64 { self.ticket }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").field("ticket", &self.ticket).finish()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            unsafe { sys::sluice_breaker_release(self.breaker.raw, self.ticket) };
        }
    }
}

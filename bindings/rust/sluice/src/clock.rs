//! Injectable clocks for the limiter, the breaker and the retry policy, so
//! tests and simulations drive time exactly instead of sleeping.
use std::os::raw::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::util::ns;

/// A monotonic clock in nanoseconds, called by the library from any
/// thread (sometimes under a short internal lock): it must be cheap and
/// must not block. A panic inside it is caught and reads as 0, which the
/// objects take as "no time has passed".
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    pub fn new(f: impl Fn() -> u64 + Send + Sync + 'static) -> Clock { Clock(Arc::new(f)) }
    pub fn now_ns(&self) -> u64 { (self.0)() }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("Clock") }
}

/// A clock that moves only when told to: share it with an object (its
/// `clock()`), then `advance` it. Clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicU64>);

impl Default for ManualClock {
    /// Starts at 1 s, so that "time 0" never has to mean anything.
    fn default() -> Self { ManualClock::new(1_000_000_000) }
}

impl ManualClock {
    pub fn new(start_ns: u64) -> ManualClock { ManualClock(Arc::new(AtomicU64::new(start_ns))) }
    pub fn now_ns(&self) -> u64 { self.0.load(Ordering::SeqCst) }
    pub fn advance(&self, d: Duration) { self.0.fetch_add(ns(d), Ordering::SeqCst); }
    pub fn set(&self, now_ns: u64) { self.0.store(now_ns, Ordering::SeqCst); }
    /// The clock to put in an object's options.
    pub fn clock(&self) -> Clock {
        let t = self.0.clone();
        Clock::new(move || t.load(Ordering::SeqCst))
    }
}

impl From<ManualClock> for Clock {
    fn from(m: ManualClock) -> Clock { m.clock() }
}

/// What the C side gets as clock_user_data: a boxed `Clock` with a stable
/// address, kept by the object until after the C object is freed.
pub(crate) type ClockBox = Box<Clock>;

pub(crate) unsafe extern "C" fn clock_trampoline(ud: *mut c_void) -> u64 {
    let clock = &*(ud as *const Clock);
    catch_unwind(AssertUnwindSafe(|| clock.now_ns())).unwrap_or(0)
}

/// The C clock fields for an optional clock: (cb, user_data, owner).
pub(crate) fn raw_clock(c: &Option<Clock>)
    -> (sluice_sys::sluice_clock_cb, *mut c_void, Option<ClockBox>) {
    match c {
        None => (None, std::ptr::null_mut(), None),
        Some(c) => {
            let b: ClockBox = Box::new(c.clone());
            let p = &*b as *const Clock as *mut c_void;
            (Some(clock_trampoline), p, Some(b))
        }
    }
}

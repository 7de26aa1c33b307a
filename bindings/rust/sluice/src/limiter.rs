//! Per-key rate limits (`sluice/limiter.h`): check and peek with the full
//! answer, all-or-nothing checks across limiters, an async acquire that
//! waits until the cost may pass, control (limit, block, sweep), figures,
//! and an injectable clock.
use std::ffi::CString;
use std::future::Future;
use std::os::raw::c_int;
use std::pin::Pin;
use std::ptr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use sluice_sys as sys;

use crate::clock::{raw_clock, Clock, ClockBox};
use crate::error::{check, Error, Result};
use crate::monitor::Monitor;
use crate::runtime::{on_status, release_shared, status_result, RawRuntime, Runtime, Shared};
use crate::util::{key_parts, ns, start_op, timeout_ms, OpHandle};

/// The limiting algorithm (docs/limiter.md explains how to pick one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Exact: at most `limit` in every sliding window (limit <= 65535).
    SlidingLog,
    /// Sliding-window counter: O(1) state, approximate.
    SlidingWindow,
    /// Token bucket (generic cell rate algorithm) with a `burst`.
    Gcra,
}

/// What a request for a new key does when `max_keys` keys are tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimiterFull {
    /// Refused with `ErrorKind::Limit`.
    Reject,
    /// Passes untracked ("fail open").
    Allow,
}

/// Options of a limiter; `Default` gives the library's defaults (sliding
/// log, 20 per 60 s, 100000 keys, reject when full).
#[derive(Clone)]
pub struct LimiterOptions {
    pub algorithm: Algorithm,
    /// Cost allowed per window.
    pub limit: u64,
    /// The window (1 us .. about 52 days), in nanoseconds precision.
    pub window: Duration,
    /// GCRA's bucket; 0 means `limit`.
    pub burst: u64,
    pub max_keys: u64,
    pub on_full: LimiterFull,
    /// Time source; None: the library's monotonic clock. Waits still end
    /// on the runtime's real-time timers: after moving an injected clock,
    /// call [`Limiter::wake`].
    pub clock: Option<Clock>,
    /// Records `<name>.rejected` and `<name>.wait`; kept alive.
    pub monitor: Option<Arc<Monitor>>,
    /// Series prefix (default "limiter").
    pub name: Option<String>,
}

impl Default for LimiterOptions {
    fn default() -> Self {
        LimiterOptions {
            algorithm: Algorithm::SlidingLog, limit: 20, window: Duration::from_secs(60), burst: 0,
            max_keys: 100000, on_full: LimiterFull::Reject, clock: None, monitor: None, name: None,
        }
    }
}

/// Why a request got its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Passed (for peek: would pass).
    Ok,
    /// Refused by the key's limit.
    Limited,
    /// Refused: the key is blocked.
    Blocked,
    /// Refused: requests are waiting on the key and go first.
    Queued,
    /// A new key while max_keys are tracked, passed untracked.
    Full,
}

/// A limiter's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: Reason,
    /// The largest cost that can ever pass at once (GCRA: the burst).
    pub limit: u64,
    /// Cost that could still pass now, after this request.
    pub remaining: u64,
    /// Refused: retrying the same request this much later passes (rounded
    /// up), if nothing else consumes the key. Zero when allowed.
    pub retry_after: Duration,
    /// Until the key is back to a fresh key's state.
    pub reset_after: Duration,
    /// check_many: the item that decided.
    pub index: usize,
}

impl Decision {
    fn from_raw(r: &sys::sluice_limiter_result) -> Decision {
        let reason = match r.reason {
            sys::SLUICE_LIMITER_LIMITED => Reason::Limited,
            sys::SLUICE_LIMITER_BLOCKED => Reason::Blocked,
            sys::SLUICE_LIMITER_QUEUED => Reason::Queued,
            sys::SLUICE_LIMITER_FULL => Reason::Full,
            _ => Reason::Ok,
        };
        Decision {
            allowed: r.allowed != 0, reason, limit: r.limit, remaining: r.remaining,
            retry_after: Duration::from_nanos(r.retry_after_ns), reset_after: Duration::from_nanos(r.reset_after_ns),
            index: r.index,
        }
    }
}

/// The limiter's figures (`sluice_limiter_stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterStats {
    pub algorithm: Algorithm,
    pub limit: u64,
    pub window: Duration,
    pub burst: u64,
    pub keys: u64,
    pub peak_keys: u64,
    pub allowed: u64,
    pub rejected: u64,
    pub full_refused: u64,
    pub full_allowed: u64,
    pub waits: u64,
    pub waiting: u64,
    pub wait_timeouts: u64,
    pub wait_cancels: u64,
    pub reclaimed: u64,
    pub blocks: u64,
    pub bytes: u64,
}

/// Frees the C limiter, then its clock, monitor and runtime.
struct LimiterInner {
    raw: *mut sys::sluice_limiter,
    _clock: Option<ClockBox>,
    _monitor: Option<Arc<Monitor>>,
    _rt: Option<Arc<RawRuntime>>,
}

unsafe impl Send for LimiterInner {}
unsafe impl Sync for LimiterInner {}

impl Drop for LimiterInner {
    /// Runs once no clone and no acquire future is left. With a runtime it
    /// blocks until the loop ran the teardown (not on the loop thread).
    fn drop(&mut self) {
        unsafe { sys::sluice_limiter_free(self.raw) };
    }
}

/// A per-key rate limiter. Cheap to clone (shared), `Send + Sync`: checks
/// run in the calling thread on sharded state.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<LimiterInner>,
}

fn result_out() -> sys::sluice_limiter_result {
    sys::sluice_limiter_result { size: std::mem::size_of::<sys::sluice_limiter_result>(), ..Default::default() }
}

/// A refusal is an answer (Ok with `allowed == false`); other codes are errors.
fn decided(rc: c_int, r: &sys::sluice_limiter_result) -> Result<Decision> {
    match rc {
        0 | sys::SLUICE_EREJECTED => Ok(Decision::from_raw(r)),
        _ => Err(Error::last(rc)),
    }
}

impl Limiter {
    /// Creates a limiter. `rt` runs the waits of `acquire` and `wait`; a
    /// limiter without one can only be checked.
    /// Errors: `Invalid` (an option out of range, named in the message; a
    /// name with a NUL byte), `Closed`, `NoMemory`.
    pub fn new(rt: Option<&Runtime>, options: LimiterOptions) -> Result<Limiter> {
        crate::version()?;
        let name = options.name.as_deref().map(CString::new).transpose()
            .map_err(|_| Error::new(sys::SLUICE_EINVAL, "limiter name has a NUL byte"))?;
        let mut o: sys::sluice_limiter_options = unsafe { std::mem::zeroed() };
        check(unsafe { sys::sluice_limiter_options_init(&mut o, sys::SLUICE_LIMITER_OPTIONS_VERSION) })?;
        o.algorithm = match options.algorithm {
            Algorithm::SlidingLog => sys::SLUICE_LIMITER_SLIDING_LOG,
            Algorithm::SlidingWindow => sys::SLUICE_LIMITER_SLIDING_WINDOW,
            Algorithm::Gcra => sys::SLUICE_LIMITER_GCRA,
        };
        o.limit = options.limit;
        o.window_ns = ns(options.window);
        o.burst = options.burst;
        o.max_keys = options.max_keys;
        o.on_full = match options.on_full { LimiterFull::Reject => sys::SLUICE_LIMITER_FULL_REJECT,
                                            LimiterFull::Allow => sys::SLUICE_LIMITER_FULL_ALLOW };
        let (clock, clock_ud, clock_box) = raw_clock(&options.clock);
        o.clock = clock;
        o.clock_user_data = clock_ud;
        o.monitor = options.monitor.as_ref().map_or(ptr::null_mut(), |m| m.raw);
        o.name = name.as_ref().map_or(ptr::null(), |n| n.as_ptr()); // copied by the library
        let mut raw = ptr::null_mut();
        check(unsafe { sys::sluice_limiter_new(&mut raw, rt.map_or(ptr::null_mut(), |r| r.inner.0), &o) })?;
        Ok(Limiter { inner: Arc::new(LimiterInner {
            raw, _clock: clock_box, _monitor: options.monitor, _rt: rt.map(|r| r.inner.clone()),
        }) })
    }

    /// Takes one unit of `key` if it is there: `limiter.check(key)?.allowed`.
    pub fn check(&self, key: impl AsRef<[u8]>) -> Result<Decision> { self.check_cost(key, 1) }

    /// Takes `cost` units of `key` if they are all there (else nothing).
    /// Ok(decision) either way; `allowed` says which.
    /// Errors: `Invalid` (empty or too long key; cost 0 or above the
    /// limit, which could never pass), `Limit` (new key at max_keys),
    /// `NoMemory`.
    pub fn check_cost(&self, key: impl AsRef<[u8]>, cost: u64) -> Result<Decision> {
        let (k, len) = key_parts(key.as_ref());
        let mut r = result_out();
        let rc = unsafe { sys::sluice_limiter_check(self.inner.raw, k, len, cost, &mut r) };
        decided(rc, &r)
    }

    /// What `check` would answer, without taking anything.
    pub fn peek(&self, key: impl AsRef<[u8]>) -> Result<Decision> { self.peek_cost(key, 1) }

    /// What `check_cost` would answer, without taking anything or
    /// creating the key. Errors: as `check_cost`, except `Limit`.
    pub fn peek_cost(&self, key: impl AsRef<[u8]>, cost: u64) -> Result<Decision> {
        let (k, len) = key_parts(key.as_ref());
        let mut r = result_out();
        let rc = unsafe { sys::sluice_limiter_peek(self.inner.raw, k, len, cost, &mut r) };
        decided(rc, &r)
    }

    /// All or nothing across limiters (the user's, the group's, a global
    /// one): every item's cost is taken, or none. The decision's
    /// `retry_after` is the longest of the refusing items', `index` the
    /// deciding item. Errors: as `check_cost` (the message names a bad
    /// item's index), `Invalid` for no items or more than 32.
    pub fn check_many<K: AsRef<[u8]>>(items: &[(&Limiter, K, u64)]) -> Result<Decision> {
        let raw: Vec<sys::sluice_limiter_item> = items.iter().map(|(l, k, cost)| {
            let (key, len) = key_parts(k.as_ref());
            sys::sluice_limiter_item { limiter: l.inner.raw, key, len, cost: *cost }
        }).collect();
        let mut r = result_out();
        let rc = unsafe { sys::sluice_limiter_check_many(raw.as_ptr(), raw.len(), &mut r) };
        decided(rc, &r)
    }

    /// Waits until one unit of `key` can be taken, then takes it:
    /// `limiter.acquire(key).await?`. No deadline.
    pub fn acquire(&self, key: impl AsRef<[u8]>) -> LimitAcquire { self.acquire_with(key, 1, None) }

    /// Waits (first come first served per key) until `cost` units of `key`
    /// can be taken, for at most `timeout` (None: no deadline, measured on
    /// the runtime's real clock). Resolves to Ok, or `TimedOut`, `Closed`,
    /// `Invalid` (the limit was lowered below `cost`). Bad input, no
    /// runtime, or a new key at max_keys: the error at the first poll.
    /// Dropping the future cancels the wait; if the grant won that race
    /// the units were taken (there is nothing to give back).
    pub fn acquire_with(&self, key: impl AsRef<[u8]>, cost: u64, timeout: Option<Duration>) -> LimitAcquire {
        let shared = Arc::new(Shared::default());
        let (k, len) = key_parts(key.as_ref());
        let started = start_op(&shared, |ud, op| unsafe {
            sys::sluice_limiter_acquire(self.inner.raw, k, len, cost, timeout_ms(timeout), Some(on_status), ud,
                                        Some(release_shared), op)
        });
        let (op, error) = match started { Ok(op) => (op, None), Err(e) => (OpHandle::none(), Some(e)) };
        LimitAcquire { shared, _op: op, _limiter: self.inner.clone(), error }
    }

    /// The blocking form of `acquire_with`. Errors: as its outcome, and
    /// `Deadlock` on the loop thread.
    pub fn wait(&self, key: impl AsRef<[u8]>, cost: u64, timeout: Option<Duration>) -> Result<()> {
        let (k, len) = key_parts(key.as_ref());
        check(unsafe { sys::sluice_limiter_wait(self.inner.raw, k, len, cost, timeout_ms(timeout)) })
    }

    /// Makes waiting requests re-examine their keys now (after moving an
    /// injected clock). Without a runtime it does nothing.
    pub fn wake(&self) -> Result<()> { check(unsafe { sys::sluice_limiter_wake(self.inner.raw) }) }

    /// Changes limit, window and burst (0: = limit); keys keep their state.
    /// Waiters whose cost is now above the limit end with `Invalid`.
    pub fn set_limit(&self, limit: u64, window: Duration, burst: u64) -> Result<()> {
        check(unsafe { sys::sluice_limiter_set_limit(self.inner.raw, limit, ns(window), burst) })
    }

    /// Refuses every request for `key` for `duration` (reason Blocked).
    /// Errors: `Invalid` (bad key, zero or absurd duration), `Limit`.
    pub fn block(&self, key: impl AsRef<[u8]>, duration: Duration) -> Result<()> {
        let (k, len) = key_parts(key.as_ref());
        check(unsafe { sys::sluice_limiter_block(self.inner.raw, k, len, ns(duration)) })
    }

    /// Lifts a block; true if the key was blocked.
    pub fn unblock(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let (k, len) = key_parts(key.as_ref());
        let rc = unsafe { sys::sluice_limiter_unblock(self.inner.raw, k, len) };
        if rc < 0 { Err(Error::last(rc)) } else { Ok(rc == 1) }
    }

    /// Reclaims every key whose state is a fresh key's; returns how many.
    pub fn sweep(&self) -> Result<u64> {
        let n = unsafe { sys::sluice_limiter_sweep(self.inner.raw) };
        if n < 0 { Err(Error::last(n as c_int)) } else { Ok(n as u64) }
    }

    pub fn stats(&self) -> Result<LimiterStats> {
        let mut s = sys::sluice_limiter_stats { size: std::mem::size_of::<sys::sluice_limiter_stats>(), ..Default::default() };
        check(unsafe { sys::sluice_limiter_stats_get(self.inner.raw, &mut s) })?;
        Ok(LimiterStats {
            algorithm: match s.algorithm {
                sys::SLUICE_LIMITER_SLIDING_WINDOW => Algorithm::SlidingWindow,
                sys::SLUICE_LIMITER_GCRA => Algorithm::Gcra,
                _ => Algorithm::SlidingLog,
            },
            limit: s.limit, window: Duration::from_nanos(s.window_ns), burst: s.burst, keys: s.keys,
            peak_keys: s.peak_keys, allowed: s.allowed, rejected: s.rejected, full_refused: s.full_refused,
            full_allowed: s.full_allowed, waits: s.waits, waiting: s.waiting, wait_timeouts: s.wait_timeouts,
            wait_cancels: s.wait_cancels, reclaimed: s.reclaimed, blocks: s.blocks, bytes: s.bytes,
        })
    }

    /// The raw handle, for other crates built on sluice-sys.
    pub fn as_raw(&self) -> *mut sys::sluice_limiter { self.inner.raw }
}

/// The future of [`Limiter::acquire`]. Works on any executor; dropping it
/// cancels the wait.
#[must_use = "futures do nothing unless awaited; dropping this one cancels the wait"]
pub struct LimitAcquire {
    shared: Arc<Shared>,
    _op: OpHandle,
    _limiter: Arc<LimiterInner>,
    error: Option<Error>,
}

impl Future for LimitAcquire {
    type Output = Result<()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if let Some(e) = self.error.take() {
            return Poll::Ready(Err(e));
        }
        self.shared.poll(cx).map(status_result)
    }
}

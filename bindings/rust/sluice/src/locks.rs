//! Keyed locks (`sluice/locks.h`): an async lock whose guard releases on
//! drop, plus try and blocking forms, several keys at once (all or
//! nothing), fencing tokens and figures.
use std::future::Future;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use sluice_sys as sys;

use crate::error::{check, Result};
use crate::grant::GrantWait;
use crate::monitor::Monitor;
use crate::runtime::{RawRuntime, Runtime};
use crate::util::{key_parts, timeout_ms};

/// How a key is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// One holder.
    Exclusive,
    /// Any number of shared holders, no exclusive one.
    Shared,
}

impl LockMode {
    fn raw(self) -> c_int {
        match self { LockMode::Exclusive => sys::SLUICE_LOCK_EXCLUSIVE, LockMode::Shared => sys::SLUICE_LOCK_SHARED }
    }
}

/// What a request that needs a new live key does when `max_keys` are live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocksFull {
    /// Fail with `ErrorKind::Limit`.
    Reject,
    /// Wait for room (first come, first served) within the deadline.
    Wait,
}

/// Told of a grant held longer than `hold_limit`: its key, its fencing
/// token and how long it had been held. Runs on the loop thread; keep it
/// short. A panic in it is caught.
pub type HeldTooLong = dyn Fn(&[u8], u64, Duration) + Send + Sync;

/// Options of a lock manager; `Default` gives the library's defaults
/// (`SLUICE_LOCKS_OPTIONS_INIT`).
#[derive(Clone)]
pub struct LocksOptions {
    /// Idle entries cached for reuse (0..2^24).
    pub max_locks: u32,
    /// Live (held or waited on) keys at most (1..2^30).
    pub max_keys: u32,
    pub on_full: LocksFull,
    /// Cached entries idle this long are freed; `Duration::ZERO`: never.
    pub cleanup_interval: Duration,
    /// Report grants held longer than this; `Duration::ZERO`: off.
    pub hold_limit: Duration,
    pub on_held_too_long: Option<Arc<HeldTooLong>>,
    /// Records "locks.wait"; the manager keeps the monitor alive.
    pub monitor: Option<Arc<Monitor>>,
}

impl Default for LocksOptions {
    fn default() -> Self {
        LocksOptions {
            max_locks: 2000, max_keys: 100000, on_full: LocksFull::Reject,
            cleanup_interval: Duration::from_millis(300000), hold_limit: Duration::ZERO,
            on_held_too_long: None, monitor: None,
        }
    }
}

/// The manager's figures (`sluice_locks_stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocksStats {
    pub live_keys: u64,
    pub peak_live_keys: u64,
    pub cached_entries: u64,
    /// Grants held now (per key; shared holders each count).
    pub held: u64,
    pub waiters: u64,
    pub room_waiters: u64,
    pub acquisitions: u64,
    pub contended: u64,
    pub timeouts: u64,
    pub cancellations: u64,
    pub wait: Duration,
    pub busy: u64,
    pub limit_refusals: u64,
    pub held_too_long: u64,
    pub bad_releases: u64,
    pub trimmed: u64,
}

/// Frees the C manager, then what it needs (listener, monitor, runtime).
struct LocksInner {
    raw: *mut sys::sluice_locks,
    _held: Option<Box<Arc<HeldTooLong>>>,
    _monitor: Option<Arc<Monitor>>,
    _rt: Arc<RawRuntime>,
}

// Every locks function is thread-safe in C.
unsafe impl Send for LocksInner {}
unsafe impl Sync for LocksInner {}

impl Drop for LocksInner {
    /// Runs once no `Locks` clone, guard or lock future is left, so no
    /// guard can outlive the manager. Blocks until the loop ran the
    /// teardown (do not drop the last reference on the loop thread).
    fn drop(&mut self) {
        unsafe { sys::sluice_locks_free(self.raw) };
    }
}

/// A keyed lock manager on a runtime. Cheap to clone (shared) and
/// `Send + Sync`. The C manager is freed when the last clone, guard and
/// pending lock future are gone.
#[derive(Clone)]
pub struct Locks {
    inner: Arc<LocksInner>,
}

unsafe extern "C" fn on_held(ud: *mut c_void, key: *const c_void, len: usize, token: u64, held_ns: u64) {
    let f = &*(ud as *const Arc<HeldTooLong>);
    let key = if key.is_null() { &[][..] } else { std::slice::from_raw_parts(key as *const u8, len) };
    let _ = catch_unwind(AssertUnwindSafe(|| f(key, token, Duration::from_nanos(held_ns))));
}

/// Keys of a `_many` call as C takes them; borrows the caller's bytes.
fn raw_keys<K: AsRef<[u8]>>(keys: &[(K, LockMode)]) -> Vec<sys::sluice_lock_key> {
    keys.iter().map(|(k, m)| {
        let (key, len) = key_parts(k.as_ref());
        sys::sluice_lock_key { key, len, mode: m.raw() }
    }).collect()
}

impl Locks {
    /// Creates a manager on `rt`.
    /// Errors: `Invalid` (an option out of range, named in the message),
    /// `Closed` (the runtime is shutting down), `NoMemory`.
    pub fn new(rt: &Runtime, options: LocksOptions) -> Result<Locks> {
        crate::version()?;
        let mut o: sys::sluice_locks_options = unsafe { std::mem::zeroed() };
        check(unsafe { sys::sluice_locks_options_init(&mut o, sys::SLUICE_LOCKS_OPTIONS_VERSION) })?;
        o.max_locks = options.max_locks;
        o.max_keys = options.max_keys;
        o.on_full = match options.on_full { LocksFull::Reject => sys::SLUICE_LOCKS_FULL_REJECT,
                                            LocksFull::Wait => sys::SLUICE_LOCKS_FULL_WAIT };
        o.cleanup_interval_ms = u32::try_from(options.cleanup_interval.as_millis()).unwrap_or(u32::MAX);
        o.hold_limit_ms = u32::try_from(options.hold_limit.as_millis()).unwrap_or(u32::MAX);
        let held = options.on_held_too_long.map(Box::new);
        if let Some(h) = &held {
            o.on_held_too_long = Some(on_held);
            o.held_user_data = &**h as *const Arc<HeldTooLong> as *mut c_void;
        }
        o.monitor = options.monitor.as_ref().map_or(ptr::null_mut(), |m| m.raw);
        let mut raw = ptr::null_mut();
        check(unsafe { sys::sluice_locks_new(&mut raw, rt.inner.0, &o) })?;
        Ok(Locks { inner: Arc::new(LocksInner { raw, _held: held, _monitor: options.monitor, _rt: rt.inner.clone() }) })
    }

    fn guard(&self, raw: *mut sys::sluice_lock_guard) -> LockGuard {
        LockGuard { raw: raw as usize, locks: self.inner.clone(), released: false }
    }

    /// Takes `key` now or never, in the calling thread.
    /// Errors: `Again` (held, or queued on, in a way that excludes this
    /// request), `Limit` (max_keys live), `Invalid` (empty or too long
    /// key), `NoMemory`.
    pub fn try_lock(&self, key: impl AsRef<[u8]>, mode: LockMode) -> Result<LockGuard> {
        let (k, len) = key_parts(key.as_ref());
        let mut g = ptr::null_mut();
        check(unsafe { sys::sluice_locks_try(self.inner.raw, k, len, mode.raw(), &mut g) })?;
        Ok(self.guard(g))
    }

    /// All of `keys` now, or none. Errors: as `try_lock`, and `Invalid`
    /// for no keys or more than 256 (the message names a bad key's index).
    pub fn try_lock_many<K: AsRef<[u8]>>(&self, keys: &[(K, LockMode)]) -> Result<LockGuard> {
        let raw = raw_keys(keys);
        let mut g = ptr::null_mut();
        check(unsafe { sys::sluice_locks_try_many(self.inner.raw, raw.as_ptr(), raw.len(), &mut g) })?;
        Ok(self.guard(g))
    }

    /// Waits for `key`, exclusive, without a deadline: `locks.lock(key).await?`.
    pub fn lock(&self, key: impl AsRef<[u8]>) -> LockFuture { self.acquire(key, LockMode::Exclusive, None) }

    /// Waits for `key`, shared, without a deadline.
    pub fn lock_shared(&self, key: impl AsRef<[u8]>) -> LockFuture { self.acquire(key, LockMode::Shared, None) }

    /// Waits for `key` in `mode`, first come first served, for at most
    /// `timeout` (None: no deadline; zero: only if free when the request
    /// reaches the loop). Dropping the future cancels the wait; a grant
    /// that won the race is released. The future resolves to the guard or
    /// to `TimedOut`, `Closed`, `Limit`, `NoMemory`; bad input
    /// (`Invalid`) is reported at the first poll.
    pub fn acquire(&self, key: impl AsRef<[u8]>, mode: LockMode, timeout: Option<Duration>) -> LockFuture {
        let (k, len) = key_parts(key.as_ref());
        let raw = self.inner.raw;
        self.start(|cb, ud, free, op| unsafe {
            sys::sluice_locks_acquire(raw, k, len, mode.raw(), timeout_ms(timeout), cb, ud, free, op)
        })
    }

    /// Waits for all of `keys` (taken in one fixed order, so callers
    /// listing them in any order never deadlock); one guard for all. On a
    /// deadline, cancel or error, nothing stays held.
    pub fn acquire_many<K: AsRef<[u8]>>(&self, keys: &[(K, LockMode)], timeout: Option<Duration>) -> LockFuture {
        let keys = raw_keys(keys);
        let raw = self.inner.raw;
        self.start(|cb, ud, free, op| unsafe {
            sys::sluice_locks_acquire_many(raw, keys.as_ptr(), keys.len(), timeout_ms(timeout), cb, ud, free, op)
        })
    }

    fn start(&self, call: impl FnOnce(sys::sluice_lock_cb, *mut c_void, sys::sluice_free_cb,
                                      *mut *mut sys::sluice_op) -> c_int) -> LockFuture {
        LockFuture { wait: GrantWait::start(self.inner.raw, call), locks: self.inner.clone() }
    }

    /// Blocks the calling thread for `key` (None: no deadline). Errors: as
    /// `acquire`, and `Deadlock` on the loop thread (always).
    pub fn lock_blocking(&self, key: impl AsRef<[u8]>, mode: LockMode, timeout: Option<Duration>) -> Result<LockGuard> {
        let (k, len) = key_parts(key.as_ref());
        let mut g = ptr::null_mut();
        check(unsafe { sys::sluice_locks_lock(self.inner.raw, k, len, mode.raw(), timeout_ms(timeout), &mut g) })?;
        Ok(self.guard(g))
    }

    /// The blocking form of `acquire_many`.
    pub fn lock_many_blocking<K: AsRef<[u8]>>(&self, keys: &[(K, LockMode)], timeout: Option<Duration>)
        -> Result<LockGuard> {
        let raw = raw_keys(keys);
        let mut g = ptr::null_mut();
        check(unsafe {
            sys::sluice_locks_lock_many(self.inner.raw, raw.as_ptr(), raw.len(), timeout_ms(timeout), &mut g)
        })?;
        Ok(self.guard(g))
    }

    /// Frees every cached idle entry now (live keys are untouched).
    pub fn trim(&self) -> Result<()> { check(unsafe { sys::sluice_locks_trim(self.inner.raw) }) }

    pub fn stats(&self) -> Result<LocksStats> {
        let mut s = sys::sluice_locks_stats { size: std::mem::size_of::<sys::sluice_locks_stats>(), ..Default::default() };
        check(unsafe { sys::sluice_locks_stats_get(self.inner.raw, &mut s) })?;
        Ok(LocksStats {
            live_keys: s.live_keys, peak_live_keys: s.peak_live_keys, cached_entries: s.cached_entries,
            held: s.held, waiters: s.waiters, room_waiters: s.room_waiters, acquisitions: s.acquisitions,
            contended: s.contended, timeouts: s.timeouts, cancellations: s.cancellations,
            wait: Duration::from_nanos(s.wait_ns), busy: s.busy, limit_refusals: s.limit_refusals,
            held_too_long: s.held_too_long, bad_releases: s.bad_releases, trimmed: s.trimmed,
        })
    }

    /// The raw handle, for other crates built on sluice-sys.
    pub fn as_raw(&self) -> *mut sys::sluice_locks { self.inner.raw }
}

// ---- guards -----------------------------------------------------------------

/// A grant of one key or of several. Released when dropped (or by
/// `unlock`, which reports an error). Not tied to a thread.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    raw: usize, // a handle value, never dereferenced
    locks: Arc<LocksInner>,
    released: bool,
}

impl LockGuard {
    /// The grant's fencing token: larger than that of every earlier grant
    /// of the same key released before this one was granted.
    pub fn token(&self) -> Result<u64> {
        let mut t = 0;
        check(unsafe { sys::sluice_locks_token(self.locks.raw, self.raw as *const _, &mut t) })?;
        Ok(t)
    }

    /// Releases the grant now. Errors: `State` if the library does not
    /// know the guard (it cannot happen through this type).
    pub fn unlock(mut self) -> Result<()> {
        self.released = true;
        check(unsafe { sys::sluice_locks_release(self.locks.raw, self.raw as *mut _) })
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.released {
            unsafe { sys::sluice_locks_release(self.locks.raw, self.raw as *mut _) };
        }
    }
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard").field("token", &self.token().ok()).finish()
    }
}

// ---- waiting ----------------------------------------------------------------

/// The future of [`Locks::lock`], [`Locks::acquire`] and
/// [`Locks::acquire_many`]. Works on any executor. Dropping it before it
/// resolves cancels the wait; if the grant won that race, it is released.
#[must_use = "futures do nothing unless awaited; dropping this one cancels the wait"]
pub struct LockFuture {
    wait: GrantWait<sys::sluice_locks>, // dropped first: it may release through `locks`
    locks: Arc<LocksInner>,
}

impl Future for LockFuture {
    type Output = Result<LockGuard>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<LockGuard>> {
        let this = &mut *self;
        this.wait.poll_grant(cx)
            .map_ok(|g| LockGuard { raw: g as usize, locks: this.locks.clone(), released: false })
    }
}

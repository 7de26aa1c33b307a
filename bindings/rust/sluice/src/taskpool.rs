//! The task pool (`sluice/taskpool.h`): one limit shared by closures run
//! on the pool's worker threads (`spawn_blocking`) and by permits held
//! while async work runs elsewhere (`acquire`), with a bounded priority
//! queue, deadlines, an optional adaptive limit and figures.
use std::ffi::CString;
use std::future::Future;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use sluice_sys as sys;

use crate::clock::{raw_clock, Clock, ClockBox};
use crate::error::{check, Error, Result};
use crate::grant::GrantWait;
use crate::monitor::Monitor;
use crate::runtime::{RawRuntime, Runtime};
use crate::util::{lock, ns, release_arc, start_op, timeout_ms, OpHandle};

/// A wait's C timeout; one beyond the library's bound (2^40 ms, about 35
/// years) means no deadline rather than bad input.
fn wait_ms(t: Option<Duration>) -> i64 {
    match timeout_ms(t) {
        ms if ms > 1 << 40 => -1,
        ms => ms,
    }
}

/// Which queued requests are served first: high, then normal, then low,
/// first come first served within one, except that a lower priority
/// waiting for `max_bypass` grants in a row gets the next slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    fn raw(self) -> c_int {
        match self {
            Priority::High => sys::SLUICE_PRIORITY_HIGH,
            Priority::Normal => sys::SLUICE_PRIORITY_NORMAL,
            Priority::Low => sys::SLUICE_PRIORITY_LOW,
        }
    }
}

/// What a request that finds the queue full does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskPoolFull {
    /// Fail at once with `ErrorKind::Full`.
    Reject,
    /// Wait in arrival order for room in the queue, within its deadline.
    Wait,
}

/// The adaptive limit: it moves between `min` and `ceiling` with the
/// load (down by a quarter when more than 10% of a window's work failed
/// or took longer than `target_latency`, up by one when none did and the
/// limit was reached). See docs/taskpool.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adaptive {
    pub min: u32,
    /// None: twice `max_concurrent` (at most 65536).
    pub ceiling: Option<u32>,
    pub target_latency: Duration,
}

/// Options of a task pool; `Default` gives the library's defaults
/// (`SLUICE_TASKPOOL_OPTIONS_INIT`).
#[derive(Clone)]
pub struct TaskPoolOptions {
    /// Slots: closures running plus permits held (1..65536); with
    /// `adaptive`, the starting limit.
    pub max_concurrent: u32,
    /// Worker threads at most; 0: as many as tasks run at once, up to 256.
    pub workers: u32,
    /// Requests waiting for a slot at most (0..2^30; 0: no queue).
    pub max_queued: u32,
    pub on_full: TaskPoolFull,
    pub adaptive: Option<Adaptive>,
    /// Records `<name>.wait`, `<name>.run` and `<name>.rejected`; kept
    /// alive by the pool.
    pub monitor: Option<Arc<Monitor>>,
    /// Monitor prefix and worker thread names (default "taskpool").
    pub name: Option<String>,
    /// Measures waits, run and hold times (figures, adaptive limit);
    /// deadlines always use the runtime's monotonic clock.
    pub clock: Option<Clock>,
    /// Grants that may pass over a waiting lower priority in a row.
    pub max_bypass: u32,
}

impl Default for TaskPoolOptions {
    fn default() -> Self {
        TaskPoolOptions {
            max_concurrent: 20, workers: 0, max_queued: 1000, on_full: TaskPoolFull::Reject, adaptive: None,
            monitor: None, name: None, clock: None, max_bypass: 4,
        }
    }
}

/// The pool's figures (`sluice_taskpool_stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskPoolStats {
    pub limit: u64,
    pub submitted: u64,
    pub queued: u64,
    pub running: u64,
    pub completed: u64,
    pub failed: u64,
    pub rejected: u64,
    pub expired: u64,
    pub cancelled: u64,
    pub closed: u64,
    pub peak_running: u64,
    pub peak_queued: u64,
    pub queue_wait: Duration,
    pub run: Duration,
    pub room_waiting: u64,
    pub busy: u64,
    pub bad_releases: u64,
    pub threads: u64,
    pub limit_raised: u64,
    pub limit_lowered: u64,
}

/// Frees the C pool, then what it uses (clock, monitor, runtime).
struct TaskPoolInner {
    raw: *mut sys::sluice_taskpool,
    _clock: Option<ClockBox>,
    _monitor: Option<Arc<Monitor>>,
    _rt: Arc<RawRuntime>,
}

// Every task pool function is thread-safe in C.
unsafe impl Send for TaskPoolInner {}
unsafe impl Sync for TaskPoolInner {}

impl Drop for TaskPoolInner {
    /// Runs once no `TaskPool` clone, permit or pending future is left.
    /// Waits for closures still running (do not drop the last reference
    /// on the loop thread, nor inside a closure of the pool).
    fn drop(&mut self) {
        unsafe { sys::sluice_taskpool_free(self.raw) };
    }
}

/// A task pool on a runtime. Cheap to clone (shared), `Send + Sync`. The
/// C pool is freed when the last clone, permit and pending future are
/// gone.
#[derive(Clone)]
pub struct TaskPool {
    inner: Arc<TaskPoolInner>,
}

impl TaskPool {
    /// Creates a pool on `rt` (its loop thread completes the waits) and
    /// starts its first worker thread.
    /// Errors: `Invalid` (an option out of range, named in the message; a
    /// name with a NUL byte), `Closed` (the runtime is shutting down),
    /// `NoMemory`, `Internal` (no worker thread could be started).
    pub fn new(rt: &Runtime, options: TaskPoolOptions) -> Result<TaskPool> {
        crate::version()?;
        // The library copies the name; it only has to live through new.
        let name = options.name.as_deref().map(CString::new).transpose()
            .map_err(|_| Error::new(sys::SLUICE_EINVAL, "task pool name has a NUL byte"))?;
        let mut o: sys::sluice_taskpool_options = unsafe { std::mem::zeroed() };
        check(unsafe { sys::sluice_taskpool_options_init(&mut o, sys::SLUICE_TASKPOOL_OPTIONS_VERSION) })?;
        o.max_concurrent = options.max_concurrent;
        o.workers = options.workers;
        o.max_queued = options.max_queued;
        o.on_full = match options.on_full {
            TaskPoolFull::Reject => sys::SLUICE_TASKPOOL_FULL_REJECT,
            TaskPoolFull::Wait => sys::SLUICE_TASKPOOL_FULL_WAIT,
        };
        if let Some(a) = options.adaptive {
            o.adaptive = 1;
            o.min_concurrent = a.min;
            o.max_concurrent_ceiling = a.ceiling.unwrap_or(0);
            o.target_latency_ns = ns(a.target_latency);
        }
        o.monitor = options.monitor.as_ref().map_or(ptr::null_mut(), |m| m.raw);
        o.name = name.as_ref().map_or(ptr::null(), |n| n.as_ptr());
        let (clock, clock_ud, clock_box) = raw_clock(&options.clock);
        o.clock = clock;
        o.clock_user_data = clock_ud;
        o.max_bypass = options.max_bypass;
        let mut raw = ptr::null_mut();
        check(unsafe { sys::sluice_taskpool_new(&mut raw, rt.inner.0, &o) })?;
        Ok(TaskPool { inner: Arc::new(TaskPoolInner { raw, _clock: clock_box, _monitor: options.monitor,
                                                      _rt: rt.inner.clone() }) })
    }

    fn permit(&self, raw: *mut sys::sluice_permit) -> Permit {
        Permit { raw: raw as usize, pool: self.inner.clone(), released: false }
    }

    /// A free slot now, in the calling thread (no loop hop), or
    /// `ErrorKind::Again` (every slot taken, or requests are waiting: they
    /// go first). Errors also: `Closed` (shut down), `NoMemory`.
    pub fn try_acquire(&self) -> Result<Permit> {
        let mut p = ptr::null_mut();
        check(unsafe { sys::sluice_taskpool_try_acquire(self.inner.raw, &mut p) })?;
        Ok(self.permit(p))
    }

    /// Waits for a slot in priority order, without a deadline:
    /// `let permit = pool.acquire(Priority::Normal).await?;`.
    pub fn acquire(&self, priority: Priority) -> PermitFuture { self.acquire_with(priority, None) }

    /// Waits for a slot for at most `timeout` (None: no deadline; zero:
    /// only a slot free when the request is placed). The future resolves
    /// to the permit or to `TimedOut`, `Closed`, `NoMemory`; `Full` (queue
    /// full, `Reject`) and bad input (`Invalid`) at the first poll.
    /// Dropping the future cancels the wait; a grant that won the race is
    /// released (as completed work), never leaked.
    pub fn acquire_with(&self, priority: Priority, timeout: Option<Duration>) -> PermitFuture {
        let wait = GrantWait::start(self.inner.raw, |cb, ud, free, op| unsafe {
            sys::sluice_taskpool_acquire(self.inner.raw, priority.raw(), wait_ms(timeout), cb, ud, free, op)
        });
        PermitFuture { wait, pool: self.inner.clone() }
    }

    /// Blocks the calling thread for a slot (None: no deadline); a free
    /// slot with nobody waiting is taken without the loop. Errors: as
    /// `acquire_with`, and `Deadlock` on the loop thread (always).
    pub fn acquire_blocking(&self, priority: Priority, timeout: Option<Duration>) -> Result<Permit> {
        let mut p = ptr::null_mut();
        check(unsafe { sys::sluice_taskpool_acquire_wait(self.inner.raw, priority.raw(), wait_ms(timeout), &mut p) })?;
        Ok(self.permit(p))
    }

    /// Runs `f` on one of the pool's worker threads once a slot is free
    /// (never on libuv's shared thread pool), and resolves to its value.
    /// `pool.spawn_blocking(Priority::Low, move || render(img)).await?`.
    pub fn spawn_blocking<T, F>(&self, priority: Priority, f: F) -> SpawnBlocking<T>
    where F: FnOnce() -> T + Send + 'static, T: Send + 'static {
        self.spawn_blocking_with(priority, None, f)
    }

    /// As `spawn_blocking`, waiting at most `timeout` for a slot and a
    /// worker (None: no deadline). The future's errors: `TimedOut`,
    /// `Canceled`, `Closed` (`f` never ran); `Internal` (`f` panicked: the
    /// panic is caught on the worker thread and counted as a failure);
    /// `Full` and `Invalid` at the first poll. Dropping the future before
    /// `f` starts cancels it; once it runs, it runs to its end and its
    /// value is dropped.
    pub fn spawn_blocking_with<T, F>(&self, priority: Priority, timeout: Option<Duration>, f: F) -> SpawnBlocking<T>
    where F: FnOnce() -> T + Send + 'static, T: Send + 'static {
        let shared: Arc<TaskShared<T>> = Arc::new(TaskShared {
            state: Mutex::new(TaskState { job: Some(Box::new(f)), value: None, status: None, waker: None }),
        });
        let started = start_op(&shared, |ud, op| unsafe {
            sys::sluice_taskpool_submit(self.inner.raw, Some(run_task::<T>), priority.raw(), wait_ms(timeout),
                                        Some(task_done::<T>), ud, Some(release_arc::<TaskShared<T>>), op)
        });
        let (op, error) = match started { Ok(op) => (op, None), Err(e) => (OpHandle::none(), Some(e)) };
        SpawnBlocking { shared, _op: op, _pool: self.inner.clone(), error }
    }

    /// Sets the number of slots. Raising it grants waiting requests at
    /// once; lowering it takes nothing from work already granted.
    /// Errors: `Invalid` (0 or above 65536), `Range` (adaptive, outside its
    /// floor and ceiling).
    pub fn resize(&self, max_concurrent: u32) -> Result<()> {
        check(unsafe { sys::sluice_taskpool_resize(self.inner.raw, max_concurrent) })
    }

    /// Stops taking work (new requests fail with `Closed`), completes the
    /// waiting ones with `Closed`, then blocks the calling thread up to
    /// `timeout` (None: no limit) for the closures running and the
    /// permits held to finish. Errors: `TimedOut` (work still running; the
    /// shutdown itself has happened), `Deadlock` (on the loop thread, or
    /// inside one of this pool's closures, with a timeout other than zero:
    /// nothing done). Permits may still be released afterwards.
    pub fn shutdown(&self, timeout: Option<Duration>) -> Result<()> {
        check(unsafe { sys::sluice_taskpool_shutdown(self.inner.raw, wait_ms(timeout)) })
    }

    pub fn stats(&self) -> Result<TaskPoolStats> {
        let mut s = sys::sluice_taskpool_stats { size: std::mem::size_of::<sys::sluice_taskpool_stats>(), ..Default::default() };
        check(unsafe { sys::sluice_taskpool_stats_get(self.inner.raw, &mut s) })?;
        Ok(TaskPoolStats {
            limit: s.limit, submitted: s.submitted, queued: s.queued, running: s.running, completed: s.completed,
            failed: s.failed, rejected: s.rejected, expired: s.expired, cancelled: s.cancelled, closed: s.closed,
            peak_running: s.peak_running, peak_queued: s.peak_queued,
            queue_wait: Duration::from_nanos(s.queue_wait_ns_total), run: Duration::from_nanos(s.run_ns_total),
            room_waiting: s.room_waiting, busy: s.busy, bad_releases: s.bad_releases, threads: s.threads,
            limit_raised: s.limit_raised, limit_lowered: s.limit_lowered,
        })
    }

    /// The raw handle, for other crates built on sluice-sys.
    pub fn as_raw(&self) -> *mut sys::sluice_taskpool { self.inner.raw }
}

// ---- permits ------------------------------------------------------------------

/// A slot of the pool, held until it is released: by `success`, `failure`
/// or `release` (which tell the figures, the monitor and the adaptive
/// limit how the work went), or by drop, which counts as completed work
/// (as a failure, `Canceled`, if the thread is panicking). Not tied to a
/// thread.
#[must_use = "the slot is given back as soon as the permit is dropped"]
pub struct Permit {
    raw: usize, // a handle value, never dereferenced
    pool: Arc<TaskPoolInner>,
    released: bool,
}

impl Permit {
    /// The work succeeded.
    pub fn success(self) -> Result<()> { self.release(0) }

    /// The work failed with `e` (its code; one that is not negative counts
    /// as `crate::ATTEMPT_ERROR_CODE`).
    pub fn failure(self, e: &Error) -> Result<()> {
        let code = if e.code() < 0 { e.code() } else { crate::ATTEMPT_ERROR_CODE };
        self.release(code)
    }

    /// Gives the slot back with `outcome`: 0 for success, any negative
    /// code for a failure. A positive outcome is refused with `Invalid`,
    /// and the slot is still given back (as failed with `Invalid`), so it
    /// is never lost. Errors: `State` if the library does not know the
    /// permit (it cannot happen through this type).
    pub fn release(mut self, outcome: i32) -> Result<()> {
        self.released = true;
        if outcome > 0 {
            self.give_back(sys::SLUICE_EINVAL);
            return Err(Error::new(sys::SLUICE_EINVAL, format!("outcome {outcome} is positive (0 or a negative code)")));
        }
        check(self.give_back(outcome))
    }

    fn give_back(&self, outcome: c_int) -> c_int {
        unsafe { sys::sluice_taskpool_release(self.pool.raw, self.raw as *mut _, outcome) }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.released {
            self.give_back(if std::thread::panicking() { sys::SLUICE_ECANCELED } else { 0 });
        }
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").field("handle", &self.raw).finish()
    }
}

/// The future of [`TaskPool::acquire`]. Works on any executor. Dropping
/// it before it resolves cancels the wait; a grant that won the race is
/// released.
#[must_use = "futures do nothing unless awaited; dropping this one cancels the wait"]
pub struct PermitFuture {
    wait: GrantWait<sys::sluice_taskpool>, // dropped first: it may release through `pool`
    pool: Arc<TaskPoolInner>,
}

impl Future for PermitFuture {
    type Output = Result<Permit>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Permit>> {
        let this = &mut *self;
        this.wait.poll_grant(cx).map_ok(|p| Permit { raw: p as usize, pool: this.pool.clone(), released: false })
    }
}

// ---- closures on the worker threads --------------------------------------------

type Job<T> = Box<dyn FnOnce() -> T + Send>;

struct TaskState<T> {
    /// Taken by the worker thread that runs it.
    job: Option<Job<T>>,
    /// The closure's value, or its panic's text.
    value: Option<std::result::Result<T, String>>,
    /// `done`'s status, from the loop thread.
    status: Option<c_int>,
    waker: Option<Waker>,
}

struct TaskShared<T> {
    state: Mutex<TaskState<T>>,
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// Runs on a worker thread: the closure, outside the lock; a panic is
/// caught (it must not unwind into C) and reported as a failure.
unsafe extern "C" fn run_task<T>(ud: *mut c_void) -> c_int {
    let shared = &*(ud as *const TaskShared<T>);
    let job = lock(&shared.state).job.take();
    let Some(job) = job else { return sys::SLUICE_EINTERNAL };
    let (value, code) = match catch_unwind(AssertUnwindSafe(job)) {
        Ok(v) => (Ok(v), 0),
        Err(p) => (Err(panic_text(&*p)), sys::SLUICE_EINTERNAL),
    };
    lock(&shared.state).value = Some(value);
    code
}

unsafe extern "C" fn task_done<T>(ud: *mut c_void, status: c_int) {
    let shared = &*(ud as *const TaskShared<T>);
    let waker = {
        let mut s = lock(&shared.state);
        s.status = Some(status);
        s.waker.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
}

/// The future of [`TaskPool::spawn_blocking`]: the closure's value.
#[must_use = "futures do nothing unless awaited; dropping this one cancels a task not started yet"]
pub struct SpawnBlocking<T> {
    shared: Arc<TaskShared<T>>,
    _op: OpHandle,
    _pool: Arc<TaskPoolInner>,
    error: Option<Error>,
}

impl<T> Future for SpawnBlocking<T> {
    type Output = Result<T>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        if let Some(e) = self.error.take() {
            return Poll::Ready(Err(e));
        }
        let mut s = lock(&self.shared.state);
        let Some(status) = s.status else {
            s.waker = Some(cx.waker().clone());
            return Poll::Pending;
        };
        Poll::Ready(match (status, s.value.take()) {
            (0, Some(Ok(v))) => Ok(v),
            (_, Some(Err(text))) => Err(Error::new(sys::SLUICE_EINTERNAL, format!("the task panicked: {text}"))),
            // The closure never ran (deadline, cancel, shutdown), or the
            // runtime shut down while it ran.
            (status, _) => Err(Error::new(if status == 0 { sys::SLUICE_EINTERNAL } else { status }, "")),
        })
    }
}

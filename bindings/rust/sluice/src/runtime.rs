//! The runtime and the futures of its waiting operations.
use std::ffi::{CStr, CString};
use std::future::Future;
use std::os::raw::{c_int, c_void};
use std::pin::Pin;
use std::ptr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use sluice_sys as sys;

use crate::error::{check, Error, Result};

/// sluice's event loop on its own thread. Every method may be called from
/// any thread (the C runtime is thread-safe), so it is `Send + Sync`.
///
/// Objects built on it (a `Pool`, a `Monitor` given a runtime) hold a
/// reference to the C runtime, so it is shut down when the `Runtime` and
/// the last of them are gone, never under them.
pub struct Runtime {
    pub(crate) inner: Arc<RawRuntime>,
}

/// The C runtime, freed when the last holder drops it.
pub(crate) struct RawRuntime(pub(crate) *mut sys::sluice_runtime);

unsafe impl Send for RawRuntime {}
unsafe impl Sync for RawRuntime {}

/// Options of a runtime.
pub struct RuntimeBuilder {
    lag_interval: Duration,
    thread_name: String,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        RuntimeBuilder { lag_interval: Duration::from_millis(100), thread_name: "sluice-loop".into() }
    }
}

impl RuntimeBuilder {
    pub fn lag_interval(mut self, d: Duration) -> Self { self.lag_interval = d; self }
    pub fn thread_name(mut self, name: &str) -> Self { self.thread_name = name.into(); self }

    pub fn build(self) -> Result<Runtime> {
        crate::version()?;
        let name = CString::new(self.thread_name).map_err(|_| Error::new(sys::SLUICE_EINVAL, "thread name has a NUL"))?;
        let mut opts = sys::sluice_runtime_options { version: 0, thread_name: ptr::null(), lag_interval_ms: 0 };
        check(unsafe { sys::sluice_runtime_options_init(&mut opts, sys::SLUICE_RUNTIME_OPTIONS_VERSION) })?;
        opts.thread_name = name.as_ptr();
        opts.lag_interval_ms = u32::try_from(self.lag_interval.as_millis()).unwrap_or(u32::MAX);
        let mut raw = ptr::null_mut();
        check(unsafe { sys::sluice_runtime_new(&mut raw, &opts) })?;
        Ok(Runtime { inner: Arc::new(RawRuntime(raw)) })
    }
}

/// The runtime's figures.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub posted: u64,
    pub ops_started: u64,
    pub ops_completed: u64,
    pub ops_pending: u64,
    pub lag_samples: u64,
    pub lag_max: Duration,
    pub lag_mean: Duration,
}

/// The library allocator's figures.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub jemalloc: bool,
    pub allocated: u64,
    pub resident: u64,
}

impl Runtime {
    /// A runtime with default options.
    pub fn new() -> Result<Runtime> { RuntimeBuilder::default().build() }
    pub fn builder() -> RuntimeBuilder { RuntimeBuilder::default() }

    /// A future that completes after `d`, on a sluice timer.
    pub fn sleep(&self, d: Duration) -> Sleep {
        let shared = Arc::new(Shared::default());
        let ud = Arc::into_raw(shared.clone()) as *mut c_void;
        let mut op = ptr::null_mut();
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let rc = unsafe { sys::sluice_runtime_timer(self.inner.0, ms, Some(on_status), ud, Some(release_shared), &mut op) };
        if rc != 0 {
            // Nothing was taken: the library will not release the handle.
            unsafe { drop(Arc::from_raw(ud as *const Shared)) };
            return Sleep { shared, op: ptr::null_mut(), error: Some(Error::last(rc)) };
        }
        Sleep { shared, op, error: None }
    }

    /// Runs `f` on the loop thread; the future resolves once it has run.
    pub fn post<F: FnOnce() + Send + 'static>(&self, f: F) -> Post {
        let shared = Arc::new(Shared::default());
        let job = Box::new(Job { f: Some(Box::new(f)), shared: shared.clone() });
        let ud = Box::into_raw(job) as *mut c_void;
        let rc = unsafe { sys::sluice_runtime_post(self.inner.0, Some(on_job), ud, Some(release_job)) };
        if rc != 0 {
            unsafe { drop(Box::from_raw(ud as *mut Job)) };
            return Post { shared, error: Some(Error::last(rc)) };
        }
        Post { shared, error: None }
    }

    pub fn stats(&self) -> Result<Stats> {
        let mut s = sys::sluice_runtime_stats { size: std::mem::size_of::<sys::sluice_runtime_stats>(), ..Default::default() };
        check(unsafe { sys::sluice_runtime_stats_get(self.inner.0, &mut s) })?;
        Ok(Stats { posted: s.posted, ops_started: s.ops_started, ops_completed: s.ops_completed,
                   ops_pending: s.ops_pending, lag_samples: s.lag_samples,
                   lag_max: Duration::from_nanos(s.lag_max_ns), lag_mean: Duration::from_nanos(s.lag_mean_ns) })
    }

    pub fn memory(&self) -> Result<Memory> {
        let mut m = sys::sluice_memory_stats { size: std::mem::size_of::<sys::sluice_memory_stats>(), ..Default::default() };
        check(unsafe { sys::sluice_runtime_memory(self.inner.0, &mut m) })?;
        Ok(Memory { jemalloc: m.jemalloc != 0, allocated: m.allocated, resident: m.resident })
    }

    pub fn describe(&self) -> String {
        let mut b = sys::sluice_buf { ptr: ptr::null_mut(), size: 0 };
        if unsafe { sys::sluice_runtime_describe(self.inner.0, &mut b) } != 0 {
            return String::new();
        }
        let s = unsafe { CStr::from_ptr(b.ptr) }.to_string_lossy().into_owned();
        unsafe { sys::sluice_buf_free(&mut b) };
        s
    }

    /// The raw handle, for other crates built on sluice-sys.
    pub fn as_raw(&self) -> *mut sys::sluice_runtime { self.inner.0 }
}

impl Drop for RawRuntime {
    /// Orderly shutdown: pending operations complete with `Closed`. Must
    /// not run on the loop thread (inside a callback), where the library
    /// frees the runtime once its loop ends instead.
    fn drop(&mut self) {
        unsafe { sys::sluice_runtime_free(self.0) };
    }
}

// ---- completions ----------------------------------------------------------

/// What the loop thread hands to the waiting future.
#[derive(Default)]
pub(crate) struct Shared {
    state: Mutex<(Option<c_int>, Option<Waker>)>,
}

impl Shared {
    pub(crate) fn complete(&self, status: c_int) {
        let waker = {
            let mut s = self.state.lock().unwrap();
            s.0 = Some(status);
            s.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<c_int> {
        let mut s = self.state.lock().unwrap();
        match s.0 {
            Some(status) => Poll::Ready(status),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

pub(crate) unsafe extern "C" fn on_status(ud: *mut c_void, status: c_int) {
    (*(ud as *const Shared)).complete(status);
}

pub(crate) unsafe extern "C" fn release_shared(ud: *mut c_void) {
    drop(Arc::from_raw(ud as *const Shared));
}

struct Job {
    f: Option<Box<dyn FnOnce() + Send>>,
    shared: Arc<Shared>,
}

unsafe extern "C" fn on_job(ud: *mut c_void, status: c_int) {
    let job = &mut *(ud as *mut Job);
    if status == 0 {
        if let Some(f) = job.f.take() {
            // A panic must not unwind into C.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
                job.shared.complete(sys::SLUICE_EINTERNAL);
                return;
            }
        }
    }
    job.shared.complete(status);
}

unsafe extern "C" fn release_job(ud: *mut c_void) {
    drop(Box::from_raw(ud as *mut Job));
}

pub(crate) fn status_result(status: c_int) -> Result<()> {
    if status == 0 { Ok(()) } else { Err(Error::new(status, "")) }
}

/// The future of [`Runtime::sleep`]. Dropping it early cancels the timer.
pub struct Sleep {
    shared: Arc<Shared>,
    op: *mut sys::sluice_op,
    error: Option<Error>,
}

// The op handle may be used from any thread; the shared state is locked.
unsafe impl Send for Sleep {}

impl Future for Sleep {
    type Output = Result<()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if let Some(e) = self.error.take() {
            return Poll::Ready(Err(e));
        }
        self.shared.poll(cx).map(status_result)
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if self.op.is_null() {
            return;
        }
        unsafe {
            if sys::sluice_op_done(self.op, ptr::null_mut()) == 0 {
                sys::sluice_op_cancel(self.op);
            }
            sys::sluice_op_free(self.op);
        }
    }
}

/// The future of [`Runtime::post`]: resolves once the closure has run.
pub struct Post {
    shared: Arc<Shared>,
    error: Option<Error>,
}

impl Future for Post {
    type Output = Result<()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if let Some(e) = self.error.take() {
            return Poll::Ready(Err(e));
        }
        self.shared.poll(cx).map(status_result)
    }
}

//! Small conversions and the pending-operation plumbing shared by the
//! objects' futures.
use std::os::raw::{c_int, c_void};
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sluice_sys as sys;

use crate::error::{Error, Result};

/// A duration in nanoseconds, saturating at u64::MAX.
pub(crate) fn ns(d: Duration) -> u64 { u64::try_from(d.as_nanos()).unwrap_or(u64::MAX) }

/// A wait's C timeout: None is "no deadline" (-1); a duration is rounded
/// up to whole milliseconds so a wait never ends before it was asked to.
pub(crate) fn timeout_ms(t: Option<Duration>) -> i64 {
    match t {
        None => -1,
        Some(d) => i64::try_from(ceil_ms(d)).unwrap_or(i64::MAX),
    }
}

/// Whole milliseconds, rounded up (loop timers have 1 ms resolution; a
/// retry-after hint cut down would be refused again).
pub(crate) fn ceil_ms(d: Duration) -> u64 {
    let n = d.as_nanos();
    u64::try_from(n.div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// A key's bytes as C takes them.
pub(crate) fn key_parts(key: &[u8]) -> (*const c_void, usize) { (key.as_ptr() as *const c_void, key.len()) }

/// The caller's reference to a pending C operation. Dropping it cancels
/// the operation if it has not completed yet, then gives the reference
/// back; the C side still completes exactly once.
pub(crate) struct OpHandle(pub(crate) *mut sys::sluice_op);

// sluice_op_* may be called from any thread.
unsafe impl Send for OpHandle {}
unsafe impl Sync for OpHandle {}

impl OpHandle {
    pub(crate) fn none() -> OpHandle { OpHandle(ptr::null_mut()) }
}

impl Drop for OpHandle {
    fn drop(&mut self) {
        if self.0.is_null() {
            return;
        }
        unsafe {
            if sys::sluice_op_done(self.0, ptr::null_mut()) == 0 {
                sys::sluice_op_cancel(self.0);
            }
            sys::sluice_op_free(self.0);
        }
    }
}

/// Locks state shared with the loop thread. A panic elsewhere must not
/// stop a C callback from completing its wait, so poisoning is ignored.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> { m.lock().unwrap_or_else(|e| e.into_inner()) }

/// The free callback of user data that is one `Arc<S>` reference.
pub(crate) unsafe extern "C" fn release_arc<S>(ud: *mut c_void) {
    drop(Arc::from_raw(ud as *const S));
}

/// Starts a C operation whose user data is a reference to `shared` (given
/// back through `release_arc::<S>`): `call` gets that user data and the op
/// out-parameter. On failure the library took nothing, so the reference is
/// dropped here; the error carries the library's message.
pub(crate) fn start_op<S>(shared: &Arc<S>, call: impl FnOnce(*mut c_void, *mut *mut sys::sluice_op) -> c_int)
                          -> Result<OpHandle> {
    let ud = Arc::into_raw(shared.clone()) as *mut c_void;
    let mut op = ptr::null_mut();
    let rc = call(ud, &mut op);
    if rc != 0 {
        let e = Error::last(rc); // before the drop, which could call into the library
        unsafe { drop(Arc::from_raw(ud as *const S)) };
        return Err(e);
    }
    Ok(OpHandle(op))
}

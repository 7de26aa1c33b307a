//! The async wait for a grant that the library hands over from its loop
//! thread: a lock guard (`sluice_locks_acquire*`) or a task-pool permit
//! (`sluice_taskpool_acquire`). Written once because the race is subtle:
//! the waiter may give up (drop its future) after the grant was stored but
//! before it was taken, or while the grant is still on its way; either way
//! the grant must be given back exactly once, never leaked.
use std::os::raw::{c_int, c_void};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use sluice_sys as sys;

use crate::error::{Error, Result};
use crate::util::{lock, release_arc, start_op, OpHandle};

/// A C object that grants handles and takes back one nobody will use.
pub(crate) trait Grantor {
    /// What a grant is in C.
    type Handle;
    /// Gives back a grant that was never handed out.
    /// Safety: `owner` is alive and `handle` one of its grants, unreleased.
    unsafe fn give_back(owner: *mut Self, handle: *mut Self::Handle);
}

impl Grantor for sys::sluice_locks {
    type Handle = sys::sluice_lock_guard;
    unsafe fn give_back(owner: *mut Self, guard: *mut sys::sluice_lock_guard) {
        sys::sluice_locks_release(owner, guard);
    }
}

impl Grantor for sys::sluice_taskpool {
    type Handle = sys::sluice_permit;
    /// The slot goes back unused, as work that did not fail.
    unsafe fn give_back(owner: *mut Self, permit: *mut sys::sluice_permit) {
        sys::sluice_taskpool_release(owner, permit, 0);
    }
}

/// The C callback's type for grants of `O`.
pub(crate) type GrantCb<O> = Option<unsafe extern "C" fn(*mut c_void, c_int, *mut <O as Grantor>::Handle)>;

struct GrantState<H> {
    outcome: Option<(c_int, *mut H)>,
    waker: Option<Waker>,
    /// The future is gone: a grant that arrives now is given back at once.
    abandoned: bool,
}

/// What the loop thread and the future share. The owner pointer is only
/// used while the owner is alive: the future's holder keeps it, and
/// freeing it completes every pending wait before it returns.
struct GrantShared<O: Grantor> {
    owner: *mut O,
    state: Mutex<GrantState<O::Handle>>,
}

// The handles are plain values to us; the C calls on them are thread-safe.
unsafe impl<O: Grantor> Send for GrantShared<O> {}
unsafe impl<O: Grantor> Sync for GrantShared<O> {}

unsafe extern "C" fn on_grant<O: Grantor>(ud: *mut c_void, status: c_int, handle: *mut O::Handle) {
    let shared = &*(ud as *const GrantShared<O>);
    let (waker, orphan) = {
        let mut s = lock(&shared.state);
        if s.abandoned {
            (None, status == 0 && !handle.is_null())
        } else {
            s.outcome = Some((status, handle));
            (s.waker.take(), false)
        }
    };
    if orphan {
        // Granted after the waiter gave up (a cancel lost the race).
        O::give_back(shared.owner, handle);
    }
    if let Some(w) = waker {
        w.wake();
    }
}

/// One pending wait. Dropping it before the grant was taken cancels the
/// wait; a grant that won that race is given back.
pub(crate) struct GrantWait<O: Grantor> {
    shared: Arc<GrantShared<O>>,
    _op: OpHandle, // dropped after `drop` below ran: cancels a wait still pending
    /// The start's error, reported at the first poll.
    error: Option<Error>,
}

impl<O: Grantor> GrantWait<O> {
    /// Starts a wait on `owner` (which the caller keeps alive for as long
    /// as the `GrantWait`): `call` is the C acquire, given the callback,
    /// its user data, the release callback and the op out-parameter.
    pub(crate) fn start(owner: *mut O,
                        call: impl FnOnce(GrantCb<O>, *mut c_void, sys::sluice_free_cb, *mut *mut sys::sluice_op) -> c_int)
                        -> GrantWait<O> {
        let shared = Arc::new(GrantShared { owner, state: Mutex::new(GrantState { outcome: None, waker: None,
                                                                                 abandoned: false }) });
        match start_op(&shared, |ud, op| call(Some(on_grant::<O>), ud, Some(release_arc::<GrantShared<O>>), op)) {
            Ok(op) => GrantWait { shared, _op: op, error: None },
            Err(e) => GrantWait { shared, _op: OpHandle::none(), error: Some(e) },
        }
    }

    /// The grant once it came (the caller now owns it), or the error.
    pub(crate) fn poll_grant(&mut self, cx: &mut Context<'_>) -> Poll<Result<*mut O::Handle>> {
        if let Some(e) = self.error.take() {
            return Poll::Ready(Err(e));
        }
        let mut s = lock(&self.shared.state);
        match s.outcome.take() {
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            Some((0, h)) => Poll::Ready(Ok(h)),
            Some((status, _)) => Poll::Ready(Err(Error::new(status, ""))),
        }
    }
}

impl<O: Grantor> Drop for GrantWait<O> {
    fn drop(&mut self) {
        let granted = {
            let mut s = lock(&self.shared.state);
            s.abandoned = true;
            s.outcome.take()
        };
        if let Some((0, h)) = granted {
            // Granted but never handed out; the owner is alive (see start).
            unsafe { O::give_back(self.shared.owner, h) };
        }
    }
}

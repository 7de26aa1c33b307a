//! LISTEN/NOTIFY (`sluice_pg_listen`): notifications of a channel as an
//! async stream, from the pool's dedicated listening connection.
use std::collections::VecDeque;
use std::ffi::CStr;
use std::future::Future;
use std::os::raw::{c_char, c_int, c_void};
use std::pin::Pin;
use std::ptr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use sluice_sys as sys;

use crate::error::{Error, Result};
use crate::pg::{cstring, Pool, PoolInner};

/// One NOTIFY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub channel: String,
    /// The payload ("" if none); invalid UTF-8 is replaced.
    pub payload: String,
    /// The process id of the server backend that sent it.
    pub pid: i32,
}

/// Notifications kept for a listener that does not read them, by default;
/// beyond it the oldest are dropped (and counted in `missed`).
pub const DEFAULT_LISTEN_CAPACITY: usize = 10_000;

struct ListenState {
    queue: VecDeque<Notification>,
    capacity: usize,
    missed: u64,
    waker: Option<Waker>,
    /// The library released the listener (the pool was torn down).
    ended: bool,
}

struct ListenShared {
    state: Mutex<ListenState>,
}

fn text(p: *const c_char) -> String {
    if p.is_null() { String::new() } else { unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned() }
}

unsafe extern "C" fn on_notify(ud: *mut c_void, channel: *const c_char, payload: *const c_char, pid: c_int) {
    let shared = &*(ud as *const ListenShared);
    // Copied before taking the lock: the strings live only during the call.
    let n = Notification { channel: text(channel), payload: text(payload), pid };
    let waker = {
        let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.queue.len() >= s.capacity {
            s.queue.pop_front();
            s.missed += 1;
        }
        s.queue.push_back(n);
        s.waker.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
}

unsafe extern "C" fn release_listen_shared(ud: *mut c_void) {
    let shared = Arc::from_raw(ud as *const ListenShared);
    let waker = {
        let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        s.ended = true;
        s.waker.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
}

/// A subscription to one channel. Notifications are queued as they arrive
/// (on the loop thread) and read with `recv().await`, `try_recv` or
/// `poll_recv` (to adapt it to a `Stream`). The connection is reopened and
/// the channel subscribed again after any loss; notifications sent while
/// it was down are lost (PostgreSQL does not keep them). Dropping the
/// listener unsubscribes (UNLISTEN once no other listener of the pool
/// wants the channel). It keeps its pool alive; like a pool, do not drop
/// it on the loop thread.
pub struct Listener {
    raw: *mut sys::sluice_pg_listener,
    shared: Arc<ListenShared>,
    channel: String,
    _pool: Arc<PoolInner>,
}

// sluice_pg_listener_ready and _free may be called from any thread; the
// queue is locked.
unsafe impl Send for Listener {}
unsafe impl Sync for Listener {}

impl Pool {
    /// Subscribes to `channel` (case-sensitive, as given: it is quoted, so
    /// `NOTIFY "Chat"` and `pg_notify('Chat', ..)` reach it, unquoted
    /// `NOTIFY Chat` does not), keeping up to [`DEFAULT_LISTEN_CAPACITY`]
    /// unread notifications. Returns at once; `is_ready` tells when LISTEN
    /// is active (a NOTIFY sent before that is not seen).
    /// Errors: `Invalid` (empty channel, longer than 63 bytes, or with a
    /// NUL byte), `Closed`, `NoMemory`.
    pub fn listen(&self, channel: &str) -> Result<Listener> { self.listen_with(channel, DEFAULT_LISTEN_CAPACITY) }

    /// As `listen`, keeping at most `capacity` (>= 1) unread notifications:
    /// when a new one arrives with the queue full, the oldest is dropped.
    pub fn listen_with(&self, channel: &str, capacity: usize) -> Result<Listener> {
        if capacity == 0 {
            return Err(Error::new(sys::SLUICE_EINVAL, "listener capacity must be at least 1"));
        }
        let c = cstring("channel", channel)?;
        let shared = Arc::new(ListenShared {
            state: Mutex::new(ListenState { queue: VecDeque::new(), capacity, missed: 0, waker: None, ended: false }),
        });
        let ud = Arc::into_raw(shared.clone()) as *mut c_void;
        let mut raw = ptr::null_mut();
        let rc = unsafe {
            sys::sluice_pg_listen(self.inner.raw, c.as_ptr(), Some(on_notify), ud, Some(release_listen_shared), &mut raw)
        };
        if rc != 0 {
            let e = Error::last(rc);
            // Nothing was taken: the library will not release the handle.
            unsafe { drop(Arc::from_raw(ud as *const ListenShared)) };
            return Err(e);
        }
        Ok(Listener { raw, shared, channel: channel.to_owned(), _pool: self.inner.clone() })
    }
}

impl Listener {
    pub fn channel(&self) -> &str { &self.channel }

    /// True once LISTEN is active on a live connection; false again while
    /// the connection is being replaced.
    pub fn is_ready(&self) -> bool { (unsafe { sys::sluice_pg_listener_ready(self.raw) }) != 0 }

    /// Notifications dropped so far because `capacity` were unread.
    pub fn missed(&self) -> u64 { self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).missed }

    /// Notifications waiting to be read.
    pub fn pending(&self) -> usize { self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).queue.len() }

    /// The next notification if one is waiting.
    pub fn try_recv(&mut self) -> Option<Notification> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).queue.pop_front()
    }

    /// The next notification, in arrival order; `None` once the library
    /// has ended the subscription (the pool was torn down) and nothing is
    /// left to read. The shape of `Stream::poll_next`.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Notification>> {
        let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = s.queue.pop_front() {
            return Poll::Ready(Some(n));
        }
        if s.ended {
            return Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Waits for the next notification: `while let Some(n) = l.recv().await`.
    /// Cancel-safe: dropping the future loses nothing.
    pub fn recv(&mut self) -> Recv<'_> { Recv(self) }

    /// The raw handle, for other crates built on sluice-sys.
    pub fn as_raw(&self) -> *mut sys::sluice_pg_listener { self.raw }
}

impl Drop for Listener {
    /// Unsubscribes (the library finishes on its loop thread and then
    /// releases the shared queue). The pool reference goes after it, and
    /// the loop runs the two in that order.
    fn drop(&mut self) {
        unsafe { sys::sluice_pg_listener_free(self.raw) };
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").field("channel", &self.channel).field("ready", &self.is_ready()).finish()
    }
}

/// The future of [`Listener::recv`].
#[must_use = "futures do nothing unless awaited"]
pub struct Recv<'a>(&'a mut Listener);

impl Future for Recv<'_> {
    type Output = Option<Notification>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Notification>> {
        self.0.poll_recv(cx)
    }
}


//! A std-only `block_on` for the examples (setup, checks, measurements):
//! the bindings' futures need no particular runtime, and the examples
//! bring in no crate for one.
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

struct Unpark(std::thread::Thread);
impl Wake for Unpark {
    fn wake(self: Arc<Self>) { self.0.unpark(); }
}

/// Drives one future to its end on the calling thread.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        // The wake unparks us; the timeout only bounds a missed one.
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

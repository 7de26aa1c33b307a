//! The safe wrapper against the real library, with a tiny executor of our
//! own (thread park) to show the futures need no particular runtime.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{block_on, poll_once, wait_until};
use sluice::{ErrorKind, Runtime};

#[test]
fn version_is_checked() {
    let (major, _, _) = sluice::version().unwrap();
    assert_eq!(major, sluice::ABI_MAJOR);
}

#[test]
fn bad_options_carry_the_library_message() {
    let err = Runtime::builder().lag_interval(Duration::from_secs(70)).build().err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert_eq!(err.name(), "SLUICE_EINVAL");
    assert!(err.message().contains("lag_interval_ms"), "{err}");
}

#[test]
fn sleep_completes_and_dropping_cancels() {
    let rt = Runtime::new().unwrap();
    block_on(rt.sleep(Duration::from_millis(5))).unwrap();
    {
        let mut long = Box::pin(rt.sleep(Duration::from_secs(3600)));
        assert!(poll_once(&mut long).is_pending());
    } // dropped: cancelled
    wait_until(|| rt.stats().unwrap().ops_pending == 0);
    let st = rt.stats().unwrap();
    assert_eq!(st.ops_started, st.ops_completed);
}

#[test]
fn futures_from_many_threads_and_cancel_races() {
    let rt = Arc::new(Runtime::new().unwrap());
    let handles: Vec<_> = (0..4).map(|t| {
        let rt = rt.clone();
        thread::spawn(move || {
            for i in 0..100u64 {
                let s = rt.sleep(Duration::from_millis(i % 3));
                if (i + t) % 2 == 0 {
                    drop(s); // races the timer firing: exactly one outcome either way
                } else {
                    block_on(s).unwrap();
                }
            }
        })
    }).collect();
    for h in handles {
        h.join().unwrap();
    }
    wait_until(|| rt.stats().unwrap().ops_pending == 0);
    let st = rt.stats().unwrap();
    assert_eq!(st.ops_started, st.ops_completed);
}

#[test]
fn post_runs_on_the_loop_thread() {
    let rt = Runtime::new().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let me = thread::current().id();
    let futures: Vec<_> = (0..500).map(|_| {
        let count = count.clone();
        rt.post(move || {
            assert_ne!(thread::current().id(), me);
            count.fetch_add(1, Ordering::SeqCst);
        })
    }).collect();
    for f in futures {
        block_on(f).unwrap();
    }
    assert_eq!(count.load(Ordering::SeqCst), 500);
    // A panic in the closure is caught at the C boundary.
    let err = block_on(rt.post(|| panic!("boom"))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
}

#[test]
fn drop_closes_pending_work() {
    let rt = Runtime::new().unwrap();
    let s = rt.sleep(Duration::from_secs(3600));
    let t = thread::spawn(move || block_on(s));
    thread::sleep(Duration::from_millis(20)); // let it start waiting; both outcomes are checked
    drop(rt);
    let out = t.join().unwrap();
    assert!(matches!(out, Err(ref e) if e.kind() == ErrorKind::Closed), "{out:?}");
}

#[test]
fn figures() {
    let rt = Runtime::builder().lag_interval(Duration::from_millis(10)).thread_name("rs-loop").build().unwrap();
    block_on(rt.sleep(Duration::from_millis(30))).unwrap();
    assert!(rt.stats().unwrap().lag_samples >= 1);
    assert!(rt.memory().unwrap().allocated > 0);
    assert!(rt.describe().contains("own thread"));
}

#[test]
fn runtime_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Runtime>();
}

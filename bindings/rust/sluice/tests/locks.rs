//! Keyed locks against the real library: exclusion under threads and
//! tasks, FIFO, deadlines, cancellation racing a grant, several keys,
//! tokens, the held-too-long report and bad input.
mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::Poll;
use std::thread;
use std::time::Duration;

use common::{block_on, poll_once, run_tasks, wait_until};
use sluice::{ErrorKind, LockMode, Locks, LocksFull, LocksOptions, Monitor, Runtime};

fn setup() -> (Runtime, Locks) {
    let rt = Runtime::new().unwrap();
    let locks = Locks::new(&rt, LocksOptions::default()).unwrap();
    (rt, locks)
}

/// Counts holders; a lost update on `total` shows two writers overlapped.
#[derive(Default)]
struct Exclusion {
    writers: AtomicUsize,
    readers: AtomicUsize,
    total: AtomicU64,
}

impl Exclusion {
    fn write(&self) {
        assert_eq!(self.writers.fetch_add(1, Ordering::SeqCst), 0, "two exclusive holders");
        assert_eq!(self.readers.load(Ordering::SeqCst), 0, "exclusive holder with readers");
        let v = self.total.load(Ordering::SeqCst);
        thread::yield_now();
        self.total.store(v + 1, Ordering::SeqCst);
        self.writers.fetch_sub(1, Ordering::SeqCst);
    }
    fn read(&self) {
        self.readers.fetch_add(1, Ordering::SeqCst);
        assert_eq!(self.writers.load(Ordering::SeqCst), 0, "reader with an exclusive holder");
        thread::yield_now();
        self.readers.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn mutual_exclusion_across_threads_tasks_and_modes() {
    let (_rt, locks) = setup();
    let ex = Arc::new(Exclusion::default());
    // Threads: async, blocking and try forms, exclusive and shared.
    let threads: Vec<_> = (0..3).map(|t| {
        let (locks, ex) = (locks.clone(), ex.clone());
        thread::spawn(move || {
            let mut writes = 0u64;
            for i in 0..150 {
                match (t + i) % 4 {
                    0 => { let _g = block_on(locks.lock("user:1")).unwrap(); ex.write(); writes += 1; }
                    1 => { let _g = locks.lock_blocking("user:1", LockMode::Exclusive, None).unwrap(); ex.write(); writes += 1; }
                    2 => { let _g = block_on(locks.lock_shared("user:1")).unwrap(); ex.read(); }
                    _ => if let Ok(g) = locks.try_lock("user:1", LockMode::Exclusive) {
                        ex.write();
                        writes += 1;
                        g.unlock().unwrap();
                    },
                }
            }
            writes
        })
    }).collect();
    // Tasks on two executor threads at the same time.
    let task_writes = Arc::new(AtomicU64::new(0));
    let tasks = (0..40).map(|i| {
        let (locks, ex, n) = (locks.clone(), ex.clone(), task_writes.clone());
        Box::pin(async move {
            for _ in 0..5 {
                if i % 3 == 0 {
                    let _g = locks.lock_shared("user:1").await.unwrap();
                    ex.read();
                } else {
                    let _g = locks.lock("user:1").await.unwrap();
                    ex.write();
                    n.fetch_add(1, Ordering::SeqCst);
                }
            }
        }) as _
    }).collect();
    run_tasks(2, tasks);
    let writes: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum::<u64>() + task_writes.load(Ordering::SeqCst);
    assert_eq!(ex.total.load(Ordering::SeqCst), writes, "every exclusive section counted once");
    let st = locks.stats().unwrap();
    assert_eq!((st.held, st.waiters, st.live_keys), (0, 0, 0));
}

#[test]
fn waiters_are_served_first_come_first_served() {
    let (_rt, locks) = setup();
    let holder = locks.try_lock("k", LockMode::Exclusive).unwrap();
    // Requests from one thread reach the loop in call order.
    let futures: Vec<_> = (0..8).map(|_| locks.lock("k")).collect();
    wait_until(|| locks.stats().unwrap().waiters == 8);
    let order = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = futures.into_iter().enumerate().rev().map(|(i, f)| {
        let order = order.clone();
        thread::spawn(move || {
            let g = block_on(f).unwrap();
            order.lock().unwrap().push(i); // before the next one can be granted
            drop(g);
        })
    }).collect();
    drop(holder);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());

    // A queued exclusive request blocks later shared ones (no writer starvation).
    let reader = locks.try_lock("k", LockMode::Shared).unwrap();
    let writer = locks.lock("k");
    wait_until(|| locks.stats().unwrap().waiters == 1);
    assert_eq!(locks.try_lock("k", LockMode::Shared).unwrap_err().kind(), ErrorKind::Again);
    drop(reader);
    let w = block_on(writer).unwrap();
    assert_eq!(locks.try_lock("k", LockMode::Shared).unwrap_err().kind(), ErrorKind::Again);
    drop(w);
    // Shared holders coexist.
    let a = locks.try_lock("k", LockMode::Shared).unwrap();
    let b = block_on(locks.lock_shared("k")).unwrap();
    assert_eq!(locks.stats().unwrap().held, 2);
    drop((a, b));
}

#[test]
fn deadline_and_cancellation() {
    let (_rt, locks) = setup();
    let holder = locks.try_lock("k", LockMode::Exclusive).unwrap();
    let err = block_on(locks.acquire("k", LockMode::Exclusive, Some(Duration::from_millis(20)))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    let err = locks.lock_blocking("k", LockMode::Shared, Some(Duration::from_millis(5))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    // Zero timeout: only what is free when the request reaches the loop.
    let err = block_on(locks.acquire("k", LockMode::Exclusive, Some(Duration::ZERO))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert_eq!(locks.stats().unwrap().timeouts, 3);

    let mut f = locks.lock("k");
    assert!(poll_once(&mut f).is_pending());
    wait_until(|| locks.stats().unwrap().waiters == 1);
    drop(f); // cancels
    wait_until(|| { let s = locks.stats().unwrap(); s.cancellations == 1 && s.waiters == 0 });
    assert_eq!(locks.stats().unwrap().held, 1);
    drop(holder);
    locks.try_lock("k", LockMode::Exclusive).unwrap().unlock().unwrap();
    assert_eq!(locks.stats().unwrap().held, 0);
}

#[test]
fn cancel_racing_a_grant_never_leaks_the_lock() {
    let (_rt, locks) = setup();
    // The release of the holder races the drop of the one waiter.
    let dropper = common::RacingDropper::new();
    for _ in 0..300 {
        let holder = locks.try_lock("race", LockMode::Exclusive).unwrap();
        let f = locks.lock("race");
        wait_until(|| locks.stats().unwrap().waiters == 1);
        dropper.drop_racing(holder); // grants the queued request...
        drop(f); // ...while the waiter gives up
        // Whichever won, nobody holds the key afterwards.
        wait_until(|| { let s = locks.stats().unwrap(); s.held == 0 && s.waiters == 0 });
    }
    dropper.join();
    // Every round ends in exactly one of: the cancel won, or the grant won
    // (and was released). The last round's count may land just after its
    // waiter left the queue.
    wait_until(|| { let s = locks.stats().unwrap(); s.cancellations + s.acquisitions >= 600 });
    let st = locks.stats().unwrap();
    assert_eq!(st.cancellations + (st.acquisitions - 300), 300, "{st:?}");
    eprintln!("cancel race: {} cancels won, {} grants won", st.cancellations, st.acquisitions - 300);
    drop(locks.try_lock("race", LockMode::Exclusive).unwrap());
}

#[test]
fn several_keys_all_or_nothing_in_any_order() {
    let (_rt, locks) = setup();
    let b = locks.try_lock("b", LockMode::Exclusive).unwrap();
    let err = locks.try_lock_many(&[("a", LockMode::Exclusive), ("b", LockMode::Shared)]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Again);
    drop(locks.try_lock("a", LockMode::Exclusive).expect("a was given back"));
    let both = locks.acquire_many(&[("b", LockMode::Exclusive), ("a", LockMode::Exclusive)], None);
    drop(b);
    let g = block_on(both).unwrap();
    assert_eq!(locks.try_lock("a", LockMode::Shared).unwrap_err().kind(), ErrorKind::Again);
    assert_eq!(locks.try_lock("b", LockMode::Shared).unwrap_err().kind(), ErrorKind::Again);
    assert_eq!(locks.stats().unwrap().held, 2);
    drop(g);
    assert_eq!(locks.stats().unwrap().held, 0);
    // Two threads asking for the same pair in opposite orders never deadlock.
    let t: Vec<_> = [["x", "y"], ["y", "x"]].into_iter().map(|keys| {
        let locks = locks.clone();
        thread::spawn(move || for _ in 0..300 {
            let keys = [(keys[0], LockMode::Exclusive), (keys[1], LockMode::Exclusive)];
            let g = locks.lock_many_blocking(&keys, Some(Duration::from_secs(20))).expect("no deadlock");
            drop(g);
        })
    }).collect();
    for h in t {
        h.join().unwrap();
    }
    // Deadline on a many-key wait: nothing stays held.
    let y = locks.try_lock("y", LockMode::Exclusive).unwrap();
    let err = block_on(locks.acquire_many(&[("x", LockMode::Exclusive), ("y", LockMode::Exclusive)],
                                          Some(Duration::from_millis(10)))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    drop(locks.try_lock("x", LockMode::Exclusive).expect("x was given back"));
    drop(y);
}

#[test]
fn fencing_tokens_grow_per_key() {
    let (_rt, locks) = setup();
    let t1 = { let g = locks.try_lock("k", LockMode::Exclusive).unwrap(); g.token().unwrap() };
    let t2 = { let g = block_on(locks.lock("k")).unwrap(); g.token().unwrap() };
    let t3 = { let g = locks.lock_blocking("k", LockMode::Shared, None).unwrap(); g.token().unwrap() };
    assert!(t1 < t2 && t2 < t3, "{t1} {t2} {t3}");
    let g = locks.try_lock_many(&[("k", LockMode::Exclusive), ("other", LockMode::Exclusive)]).unwrap();
    assert!(g.token().unwrap() > t3);
}

#[test]
fn held_too_long_is_reported_and_waits_are_monitored() {
    let rt = Runtime::new().unwrap();
    let mon = Arc::new(Monitor::new(Some(&rt)).unwrap());
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let locks = Locks::new(&rt, LocksOptions {
        hold_limit: Duration::from_millis(10),
        on_held_too_long: Some(Arc::new(move |key: &[u8], token, held| {
            tx.lock().unwrap().send((key.to_vec(), token, held)).unwrap();
        })),
        monitor: Some(mon.clone()),
        ..Default::default()
    }).unwrap();
    let g = locks.try_lock("slow", LockMode::Exclusive).unwrap();
    let (key, token, held) = rx.recv_timeout(common::HANG_GUARD).unwrap();
    assert_eq!((key.as_slice(), token), (&b"slow"[..], g.token().unwrap()));
    assert!(held >= Duration::from_millis(10));
    assert_eq!(locks.stats().unwrap().held_too_long, 1);
    let waiter = locks.lock("slow");
    wait_until(|| locks.stats().unwrap().waiters == 1);
    drop(g);
    drop(block_on(waiter).unwrap());
    assert_eq!(mon.op("locks.wait").unwrap().expect("locks.wait recorded").count, 1);
}

#[test]
fn bad_input_is_an_error_with_a_message() {
    let (rt, locks) = setup();
    let e = locks.try_lock("", LockMode::Exclusive).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(!e.message().is_empty());
    let long = vec![b'x'; 65537];
    assert_eq!(locks.try_lock(&long, LockMode::Exclusive).unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(block_on(locks.lock(&long)).unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(block_on(locks.lock("")).unwrap_err().kind(), ErrorKind::Invalid);
    let none: [(&str, LockMode); 0] = [];
    assert_eq!(locks.try_lock_many(&none).unwrap_err().kind(), ErrorKind::Invalid);
    let many: Vec<(String, LockMode)> = (0..257).map(|i| (format!("k{i}"), LockMode::Exclusive)).collect();
    assert_eq!(locks.try_lock_many(&many).unwrap_err().kind(), ErrorKind::Invalid);
    let e = locks.try_lock_many(&[("a", LockMode::Exclusive), ("", LockMode::Exclusive)]).unwrap_err();
    assert!(e.message().contains('1'), "names the bad key's index: {e}");
    // Keys are bytes: any bytes work, including NUL and invalid UTF-8.
    drop(locks.try_lock([0u8, 0xff, 0], LockMode::Exclusive).unwrap());
    let e = Locks::new(&rt, LocksOptions { max_keys: 0, ..Default::default() }).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message().contains("max_keys"), "{e}");
    // The live-key cap: rejected, or waited for.
    let small = Locks::new(&rt, LocksOptions { max_keys: 1, ..Default::default() }).unwrap();
    let a = small.try_lock("a", LockMode::Exclusive).unwrap();
    assert_eq!(small.try_lock("b", LockMode::Exclusive).unwrap_err().kind(), ErrorKind::Limit);
    assert_eq!(block_on(small.lock("b")).unwrap_err().kind(), ErrorKind::Limit);
    drop(a);
    let waiting = Locks::new(&rt, LocksOptions { max_keys: 1, on_full: LocksFull::Wait, ..Default::default() }).unwrap();
    let a = waiting.try_lock("a", LockMode::Exclusive).unwrap();
    let b = waiting.lock("b");
    wait_until(|| waiting.stats().unwrap().room_waiters == 1);
    drop(a);
    drop(block_on(b).unwrap());
    // The blocking form on the loop thread is refused, not a hang.
    let (tx, rx) = mpsc::channel();
    let l = locks.clone();
    block_on(rt.post(move || {
        tx.send(l.lock_blocking("k", LockMode::Exclusive, None).map(drop).unwrap_err().kind()).unwrap();
    })).unwrap();
    assert_eq!(rx.recv().unwrap(), ErrorKind::Deadlock);
}

#[test]
fn a_grant_delivered_to_a_dropped_future_is_released() {
    let (_rt, locks) = setup();
    let holder = locks.try_lock("k", LockMode::Exclusive).unwrap();
    let mut f = locks.lock("k");
    assert!(matches!(poll_once(&mut f), Poll::Pending));
    drop(holder); // the grant goes to f's callback, which stores it
    wait_until(|| locks.stats().unwrap().acquisitions == 2);
    drop(f); // never polled again: the stored guard must be released
    assert_eq!(locks.stats().unwrap().held, 0);
    drop(locks.try_lock("k", LockMode::Exclusive).unwrap());
}

#[test]
fn types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    fn send<T: Send>() {}
    check::<Locks>();
    check::<sluice::LockGuard>();
    send::<sluice::LockFuture>();
}

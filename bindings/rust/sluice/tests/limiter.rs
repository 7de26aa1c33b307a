//! The rate limiter against the real library, on an injected clock so every
//! figure is exact: the three algorithms, retry_after to the nanosecond,
//! peek, check_many, block, set_limit, sweep, waits (FIFO, deadline,
//! cancel), concurrency and bad input.
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{block_on, poll_once, run_tasks, wait_until};
use sluice::{Algorithm, ErrorKind, LimiterFull, Limiter, LimiterOptions, ManualClock, Monitor, Reason, Runtime};

const SEC: Duration = Duration::from_secs(1);

fn limiter(rt: Option<&Runtime>, clock: &ManualClock, algorithm: Algorithm, limit: u64, window: Duration) -> Limiter {
    Limiter::new(rt, LimiterOptions { algorithm, limit, window, clock: Some(clock.clock()), ..Default::default() })
        .unwrap()
}

#[test]
fn sliding_log_is_exact_to_the_nanosecond() {
    let clock = ManualClock::default();
    let l = limiter(None, &clock, Algorithm::SlidingLog, 3, 10 * SEC);
    for remaining in [2, 1, 0] {
        let d = l.check("u").unwrap();
        assert!(d.allowed);
        assert_eq!((d.reason, d.remaining, d.limit), (Reason::Ok, remaining, 3));
        clock.advance(SEC);
    }
    // Now t0 + 3 s: the first unit ages out at t0 + 10 s.
    let d = l.check("u").unwrap();
    assert!(!d.allowed);
    assert_eq!((d.reason, d.remaining, d.retry_after), (Reason::Limited, 0, 7 * SEC));
    clock.advance(7 * SEC - Duration::from_nanos(1));
    let d = l.check("u").unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, Duration::from_nanos(1));
    clock.advance(Duration::from_nanos(1));
    assert!(l.check("u").unwrap().allowed);
    // Other keys are untouched; cost counts in units.
    let d = l.check_cost("v", 3).unwrap();
    assert!(d.allowed && d.remaining == 0);
    let st = l.stats().unwrap();
    assert_eq!((st.allowed, st.rejected, st.keys, st.algorithm), (5, 2, 2, Algorithm::SlidingLog));
}

#[test]
fn gcra_and_sliding_window() {
    let clock = ManualClock::default();
    // 10 per second: one unit every 100 ms, a burst of 10.
    let g = limiter(None, &clock, Algorithm::Gcra, 10, SEC);
    for _ in 0..10 {
        assert!(g.check("k").unwrap().allowed);
    }
    let d = g.check("k").unwrap();
    assert_eq!((d.allowed, d.reason, d.retry_after), (false, Reason::Limited, Duration::from_millis(100)));
    clock.advance(Duration::from_millis(100));
    assert!(g.check("k").unwrap().allowed);
    assert!(!g.check("k").unwrap().allowed);
    let burst = Limiter::new(None, LimiterOptions { algorithm: Algorithm::Gcra, limit: 10, window: SEC, burst: 2,
                                                     clock: Some(clock.clock()), ..Default::default() }).unwrap();
    assert_eq!(burst.check_cost("k", 2).unwrap().limit, 2);
    assert_eq!(burst.check_cost("k", 3).unwrap_err().kind(), ErrorKind::Invalid, "above the burst can never pass");

    let w = limiter(None, &clock, Algorithm::SlidingWindow, 10, 10 * SEC);
    for _ in 0..10 {
        assert!(w.check("k").unwrap().allowed);
    }
    let d = w.check("k").unwrap();
    assert!(!d.allowed && d.retry_after > Duration::ZERO);
    clock.advance(d.retry_after);
    assert!(w.check("k").unwrap().allowed, "passes at exactly now + retry_after");
}

#[test]
fn peek_consumes_nothing_and_check_many_is_all_or_nothing() {
    let clock = ManualClock::default();
    let user = limiter(None, &clock, Algorithm::SlidingLog, 2, 60 * SEC);
    let global = limiter(None, &clock, Algorithm::SlidingLog, 5, 60 * SEC);
    for _ in 0..5 {
        let d = user.peek("u").unwrap();
        assert!(d.allowed && d.remaining == 1);
    }
    assert_eq!(user.stats().unwrap().keys, 0, "peek does not create the key");
    for _ in 0..2 {
        assert!(Limiter::check_many(&[(&user, "u", 1), (&global, "all", 1)]).unwrap().allowed);
    }
    let d = Limiter::check_many(&[(&global, "all", 1), (&user, "u", 1)]).unwrap();
    assert!(!d.allowed);
    assert_eq!((d.index, d.reason, d.retry_after), (1, Reason::Limited, 60 * SEC));
    assert_eq!(global.peek("all").unwrap().remaining, 2, "the refused call took nothing from global");
    // One item given twice counts with the sum of its costs.
    assert!(!Limiter::check_many(&[(&global, "all", 2), (&global, "all", 2)]).unwrap().allowed);
    assert!(Limiter::check_many(&[(&global, "all", 2), (&global, "all", 1)]).unwrap().allowed);
    let none: [(&Limiter, &str, u64); 0] = [];
    assert_eq!(Limiter::check_many(&none).unwrap_err().kind(), ErrorKind::Invalid);
}

#[test]
fn block_set_limit_and_sweep() {
    let clock = ManualClock::default();
    let l = limiter(None, &clock, Algorithm::SlidingLog, 1, 10 * SEC);
    l.block("spam", 5 * SEC).unwrap();
    let d = l.check("spam").unwrap();
    assert_eq!((d.allowed, d.reason, d.retry_after), (false, Reason::Blocked, 5 * SEC));
    assert!(l.unblock("spam").unwrap());
    assert!(!l.unblock("spam").unwrap());
    assert!(l.check("spam").unwrap().allowed);
    assert!(!l.check("spam").unwrap().allowed);
    l.set_limit(3, 10 * SEC, 0).unwrap();
    let d = l.check("spam").unwrap();
    assert!(d.allowed && d.remaining == 1, "{d:?}");
    assert_eq!(l.stats().unwrap().limit, 3);
    // Keys whose units all aged out are reclaimed.
    for i in 0..50 {
        l.check(format!("user:{i}")).unwrap();
    }
    clock.advance(10 * SEC);
    let before = l.stats().unwrap().keys;
    assert_eq!(l.sweep().unwrap(), before);
    assert_eq!(l.stats().unwrap().keys, 0);
}

#[test]
fn acquire_waits_in_order_and_wakes_on_the_injected_clock() {
    let rt = Runtime::new().unwrap();
    let clock = ManualClock::default();
    let l = limiter(Some(&rt), &clock, Algorithm::SlidingLog, 2, 10 * SEC);
    block_on(l.acquire_with("k", 2, None)).unwrap(); // passes at once
    let mut big = l.acquire_with("k", 2, None);
    let mut small = l.acquire("k");
    assert!(poll_once(&mut big).is_pending() && poll_once(&mut small).is_pending());
    wait_until(|| l.stats().unwrap().waiting == 2);
    let d = l.check("k").unwrap();
    assert_eq!((d.allowed, d.reason), (false, Reason::Queued), "waiters go first");
    clock.advance(10 * SEC);
    l.wake().unwrap();
    block_on(&mut big).unwrap();
    // The later, smaller request did not pass the earlier one, and cannot
    // pass before the window moves again.
    assert_eq!(l.stats().unwrap().waiting, 1);
    assert!(poll_once(&mut small).is_pending());
    clock.advance(10 * SEC);
    l.wake().unwrap();
    block_on(small).unwrap();
    assert_eq!(l.stats().unwrap().allowed, 3);
    // The blocking form passes once the key has room.
    clock.advance(10 * SEC);
    l.wait("k", 1, Some(SEC)).unwrap();
}

#[test]
fn acquire_deadline_and_cancel() {
    let rt = Runtime::new().unwrap();
    let clock = ManualClock::default();
    let l = limiter(Some(&rt), &clock, Algorithm::SlidingLog, 1, 60 * SEC);
    assert!(l.check("k").unwrap().allowed);
    // The limiter's clock never moves: only the deadline can end these.
    let e = block_on(l.acquire_with("k", 1, Some(Duration::from_millis(20)))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert_eq!(l.wait("k", 1, Some(Duration::from_millis(5))).unwrap_err().kind(), ErrorKind::TimedOut);
    let mut f = l.acquire("k");
    assert!(poll_once(&mut f).is_pending());
    wait_until(|| l.stats().unwrap().waiting == 1);
    drop(f);
    wait_until(|| { let s = l.stats().unwrap(); s.wait_cancels == 1 && s.waiting == 0 });
    assert_eq!(l.stats().unwrap().wait_timeouts, 2);
    // Lowering the limit below a waiter's cost ends it with Invalid.
    let l2 = limiter(Some(&rt), &clock, Algorithm::SlidingLog, 3, 60 * SEC);
    l2.check_cost("k", 3).unwrap();
    let f = l2.acquire_with("k", 3, None);
    wait_until(|| l2.stats().unwrap().waiting == 1);
    l2.set_limit(2, 60 * SEC, 0).unwrap();
    assert_eq!(block_on(f).unwrap_err().kind(), ErrorKind::Invalid);
}

#[test]
fn cancel_racing_a_grant_counts_exactly_once() {
    let rt = Runtime::new().unwrap();
    let clock = ManualClock::default();
    let l = limiter(Some(&rt), &clock, Algorithm::SlidingLog, 1, 10 * SEC);
    let barrier = Arc::new(Barrier::new(2));
    let (tx, rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let waker = {
        let (l, clock, barrier) = (l.clone(), clock.clone(), barrier.clone());
        thread::spawn(move || for (i, ()) in rx.into_iter().enumerate() {
            barrier.wait();
            let spin = Instant::now() + Duration::from_micros((i as u64 * 37) % 1500);
            while Instant::now() < spin {
                std::hint::spin_loop();
            }
            clock.advance(10 * SEC); // the unit frees up...
            l.wake().unwrap();
            done_tx.send(()).unwrap();
        })
    };
    for _ in 0..200 {
        clock.advance(10 * SEC);
        assert!(l.check("k").unwrap().allowed);
        let f = l.acquire("k");
        wait_until(|| l.stats().unwrap().waiting == 1);
        tx.send(()).unwrap();
        barrier.wait();
        drop(f); // ...while the waiter gives up
        done_rx.recv().unwrap(); // the round's clock move is over before the next round
        wait_until(|| l.stats().unwrap().waiting == 0);
    }
    drop(tx);
    waker.join().unwrap();
    let st = l.stats().unwrap();
    // Each round: the cancel won, or the grant won and took the unit.
    assert_eq!(st.wait_cancels + (st.allowed - 200), 200, "{st:?}");
    eprintln!("limiter cancel race: {} cancels won, {} grants won", st.wait_cancels, st.allowed - 200);
}

#[test]
fn concurrent_checks_pass_exactly_the_limit() {
    let clock = ManualClock::default();
    let l = limiter(None, &clock, Algorithm::SlidingLog, 1000, 60 * SEC);
    let passed = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4).map(|_| {
        let (l, passed) = (l.clone(), passed.clone());
        thread::spawn(move || for _ in 0..600 {
            if l.check("hot").unwrap().allowed {
                passed.fetch_add(1, Ordering::SeqCst);
            }
        })
    }).collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(passed.load(Ordering::SeqCst), 1000);
    let st = l.stats().unwrap();
    assert_eq!((st.allowed, st.rejected), (1000, 1400));
}

#[test]
fn many_tasks_acquire_on_the_real_clock() {
    let rt = Runtime::new().unwrap();
    let mon = Arc::new(Monitor::new(Some(&rt)).unwrap());
    // 2000 per second, one at a time: 60 acquires need about 30 ms.
    let l = Limiter::new(Some(&rt), LimiterOptions {
        algorithm: Algorithm::Gcra, limit: 2000, window: SEC, burst: 1, monitor: Some(mon.clone()),
        name: Some("api".into()), ..Default::default()
    }).unwrap();
    let tasks = (0..60).map(|i| {
        let l = l.clone();
        Box::pin(async move { l.acquire(format!("key{}", i % 3)).await.unwrap() }) as _
    }).collect();
    run_tasks(2, tasks);
    let st = l.stats().unwrap();
    assert_eq!((st.allowed, st.waiting), (60, 0));
    assert_eq!(mon.op("api.wait").unwrap().expect("api.wait recorded").count, st.waits);
}

#[test]
fn bad_input_and_the_key_cap() {
    let rt = Runtime::new().unwrap();
    let clock = ManualClock::default();
    let l = limiter(None, &clock, Algorithm::SlidingLog, 5, SEC);
    assert_eq!(l.check_cost("k", 0).unwrap_err().kind(), ErrorKind::Invalid);
    let e = l.check_cost("k", 6).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(!e.message().is_empty());
    assert_eq!(l.check("").unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(l.peek(vec![0u8; 65537]).unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(l.block("k", Duration::ZERO).unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(l.set_limit(0, SEC, 0).unwrap_err().kind(), ErrorKind::Invalid);
    // No runtime: nothing can wait.
    assert_eq!(block_on(l.acquire("k")).unwrap_err().kind(), ErrorKind::Invalid);
    for (opts, field) in [
        (LimiterOptions { limit: 0, ..Default::default() }, "limit"),
        (LimiterOptions { limit: 70000, ..Default::default() }, "limit"),
        (LimiterOptions { window: Duration::from_nanos(10), ..Default::default() }, "window"),
        (LimiterOptions { max_keys: 0, ..Default::default() }, "max_keys"),
    ] {
        let e = Limiter::new(None, opts).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(e.message().contains(field), "{e}");
    }
    assert_eq!(Limiter::new(None, LimiterOptions { name: Some("a\0b".into()), ..Default::default() })
                   .err().unwrap().kind(), ErrorKind::Invalid);
    // The key cap: refused, or passed untracked.
    let capped = Limiter::new(None, LimiterOptions { max_keys: 1, clock: Some(clock.clock()), ..Default::default() }).unwrap();
    capped.check("a").unwrap();
    assert_eq!(capped.check("b").unwrap_err().kind(), ErrorKind::Limit);
    let open = Limiter::new(None, LimiterOptions { max_keys: 1, on_full: LimiterFull::Allow,
                                                    clock: Some(clock.clock()), ..Default::default() }).unwrap();
    open.check("a").unwrap();
    let d = open.check("b").unwrap();
    assert_eq!((d.allowed, d.reason), (true, Reason::Full));
    // The blocking wait on the loop thread is refused, not a hang.
    let lr = limiter(Some(&rt), &clock, Algorithm::SlidingLog, 5, SEC);
    let (tx, rx) = mpsc::channel();
    let l2 = lr.clone();
    block_on(rt.post(move || tx.send(l2.wait("k", 1, None).unwrap_err().kind()).unwrap())).unwrap();
    assert_eq!(rx.recv().unwrap(), ErrorKind::Deadlock);
}

#[test]
fn types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    fn send<T: Send>() {}
    check::<Limiter>();
    send::<sluice::LimitAcquire>();
}

//! The circuit breaker on an injected clock: tripping on failures and on
//! slow calls, the open wait to the nanosecond, half-open trials, permits
//! given back, stale results, the state listener, the monitor's series and
//! bad options.
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use sluice::{Breaker, BreakerOptions, BreakerState, BreakerWindow, ErrorKind, ManualClock, Monitor};

const SEC: Duration = Duration::from_secs(1);

fn breaker(clock: &ManualClock, calls: u32, trials: u32) -> Breaker {
    Breaker::new(BreakerOptions {
        window: BreakerWindow::Count(calls), minimum_calls: calls, open: 10 * SEC, half_open_trials: trials,
        clock: Some(clock.clock()), ..Default::default()
    }).unwrap()
}

#[test]
fn opens_at_the_failure_rate_and_fails_fast() {
    let clock = ManualClock::default();
    let b = breaker(&clock, 4, 1);
    b.allow().unwrap().success().unwrap();
    b.allow().unwrap().failure().unwrap();
    b.allow().unwrap().success().unwrap();
    assert_eq!(b.state(), BreakerState::Closed, "3 calls are below minimum_calls");
    b.allow().unwrap().failure().unwrap(); // 2 of 4 = 50%
    assert_eq!(b.state(), BreakerState::Open);
    let e = b.allow().err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Open);
    let st = b.stats().unwrap();
    assert_eq!((st.opened, st.refused, st.successes, st.failures), (1, 1, 2, 2));
    // The open wait, to the nanosecond.
    clock.advance(10 * SEC - Duration::from_nanos(1));
    assert_eq!(b.allow().err().unwrap().kind(), ErrorKind::Open);
    clock.advance(Duration::from_nanos(1));
    let trial = b.allow().unwrap();
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert_eq!(b.allow().err().unwrap().kind(), ErrorKind::Open, "one trial at a time");
    trial.success().unwrap();
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn half_open_trials_reopen_release_and_ignore_stale_results() {
    let clock = ManualClock::default();
    let b = breaker(&clock, 2, 2);
    let stale = b.allow().unwrap(); // admitted while CLOSED
    b.set_state(BreakerState::HalfOpen).unwrap();
    let t1 = b.allow().unwrap();
    let t2 = b.allow().unwrap();
    assert!(b.allow().is_err());
    drop(t2); // not made: its trial goes to another caller
    let t3 = b.allow().unwrap();
    stale.failure().unwrap(); // from an earlier state: ignored
    assert_eq!(b.state(), BreakerState::HalfOpen);
    t1.success().unwrap();
    t3.failure().unwrap(); // 1 of 2 trials failed: 50%, back to OPEN
    assert_eq!(b.state(), BreakerState::Open);
    let st = b.stats().unwrap();
    assert_eq!((st.ignored, st.released, st.half_opened, st.opened), (1, 1, 1, 1));
}

#[test]
fn slow_calls_trip_it_too() {
    let clock = ManualClock::default();
    let b = Breaker::new(BreakerOptions {
        window: BreakerWindow::Count(4), minimum_calls: 4, failure_rate_percent: 0.0,
        slow_call: Some(Duration::from_millis(100)), slow_rate_percent: 75.0, clock: Some(clock.clock()),
        ..Default::default()
    }).unwrap();
    b.allow().unwrap().record(true, Duration::from_millis(99)).unwrap();
    for _ in 0..2 {
        b.allow().unwrap().record(true, Duration::from_millis(100)).unwrap();
    }
    // A permit measures its own duration on the breaker's clock.
    let p = b.allow().unwrap();
    clock.advance(SEC);
    p.success().unwrap();
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.stats().unwrap().slow, 3);
}

#[test]
fn the_listener_sees_every_change_and_threads_share_it() {
    let clock = ManualClock::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let b = Breaker::new(BreakerOptions {
        window: BreakerWindow::Time { length: 60 * SEC, buckets: 10 }, minimum_calls: 100, open: SEC,
        half_open_trials: 1, clock: Some(clock.clock()),
        on_state_change: Some(Arc::new(move |from, to, generation| s.lock().unwrap().push((from, to, generation)))),
        ..Default::default()
    }).unwrap();
    let threads: Vec<_> = (0..2).map(|_| {
        let b = b.clone();
        thread::spawn(move || for _ in 0..50 { b.allow().unwrap().failure().unwrap(); })
    }).collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(b.state(), BreakerState::Open, "100 failures of 100");
    clock.advance(SEC);
    b.allow().unwrap().success().unwrap();
    use BreakerState::*;
    assert_eq!(*seen.lock().unwrap(), [(Closed, Open, 2), (Open, HalfOpen, 3), (HalfOpen, Closed, 4)]);
}

#[test]
fn bad_options_are_named() {
    for (opts, field) in [
        (BreakerOptions { window: BreakerWindow::Count(5), minimum_calls: 6, ..Default::default() }, "minimum_calls"),
        (BreakerOptions { open: Duration::ZERO, ..Default::default() }, "open_ms"),
        (BreakerOptions { failure_rate_percent: 150.0, ..Default::default() }, "failure_rate"),
        (BreakerOptions { half_open_trials: 0, ..Default::default() }, "half_open_trials"),
    ] {
        let e = Breaker::new(opts).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(e.message().contains(field), "{e}");
    }
}

#[test]
fn the_monitor_sees_trips_and_refusals_under_the_name() {
    let clock = ManualClock::default();
    let mon = Arc::new(Monitor::new(None).unwrap());
    let b = Breaker::new(BreakerOptions {
        window: BreakerWindow::Count(2), minimum_calls: 2, open: SEC, half_open_trials: 1,
        clock: Some(clock.clock()), monitor: Some(mon.clone()), name: Some("ai".into()), ..Default::default()
    }).unwrap();
    assert_eq!(Arc::strong_count(&mon), 2, "the breaker keeps the monitor");
    let count = |name: &str| mon.op(name).unwrap().map(|s| (s.count, s.errors));
    b.allow().unwrap().success().unwrap();
    // The series may exist before anything is recorded: compare counts.
    assert_eq!(count("ai.opened").map_or(0, |c| c.0), 0);
    b.allow().unwrap().failure().unwrap(); // 1 of 2: the 50% default
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(count("ai.opened"), Some((1, 1)));
    for _ in 0..3 {
        assert_eq!(b.allow().unwrap_err().kind(), ErrorKind::Open);
    }
    assert_eq!(count("ai.rejected"), Some((3, 3)));
    assert_eq!(b.stats().unwrap().refused, 3);
    // The trial fails: the breaker opens again, a second trip.
    clock.advance(SEC);
    b.allow().unwrap().failure().unwrap();
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(count("ai.opened"), Some((2, 2)));
    assert_eq!(count("ai.rejected"), Some((3, 3)));
    assert_eq!(count("breaker.opened").map_or(0, |c| c.0), 0);
    drop(b);
    assert_eq!(Arc::strong_count(&mon), 1);

    // Without a name the series are "breaker.*".
    let b = Breaker::new(BreakerOptions {
        window: BreakerWindow::Count(1), minimum_calls: 1, monitor: Some(mon.clone()), ..Default::default()
    }).unwrap();
    b.allow().unwrap().failure().unwrap();
    assert_eq!(b.allow().unwrap_err().kind(), ErrorKind::Open);
    assert_eq!(count("breaker.opened"), Some((1, 1)));
    assert_eq!(count("breaker.rejected"), Some((1, 1)));
}

#[test]
fn bad_names_are_refused() {
    let mon = Arc::new(Monitor::new(None).unwrap());
    for name in ["".to_string(), "x".repeat(65), "a\0b".to_string()] {
        let e = Breaker::new(BreakerOptions { monitor: Some(mon.clone()), name: Some(name.clone()), ..Default::default() })
            .err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Invalid, "{name:?}");
        assert!(e.message().contains("name"), "{e}");
    }
    assert_eq!(Arc::strong_count(&mon), 1, "a refused breaker keeps nothing");
    Breaker::new(BreakerOptions { name: Some("x".repeat(64)), ..Default::default() }).unwrap();
}

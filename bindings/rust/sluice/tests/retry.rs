//! Retry policies: counts and classification, the backoff against the pure
//! function, retry-after hints, the budget, the deadline on an injected
//! clock, attempt timeouts, the breaker inside a policy, cancellation,
//! concurrency and bad options.
mod common;

use std::future::pending;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{block_on, poll_once, run_tasks};
use sluice::{next_delay, retry_seed, Breaker, BreakerOptions, BreakerState, BreakerWindow, Classify, Error, ErrorKind,
             Jitter, ManualClock, Monitor, Outcome, RetryError, RetryOptions, RetryPolicy, Runtime, Verdict};

const MS: Duration = Duration::from_millis(1);

/// A policy that retries fast: 1 ms doubling, exact delays, no budget.
fn quick(max_attempts: u32) -> RetryOptions {
    RetryOptions { max_attempts, base_delay: MS, max_delay: 8 * MS, jitter: Jitter::None, budget_ratio: 0.0,
                   ..Default::default() }
}

#[derive(Debug, PartialEq)]
enum AppError { Busy, BadRequest }

impl Classify for AppError {
    fn classify(&self) -> Verdict {
        match self { AppError::Busy => Verdict::retryable(), AppError::BadRequest => Verdict::permanent().code(-400) }
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") }
}

#[test]
fn retries_retryable_failures_until_success() {
    let rt = Runtime::new().unwrap();
    let policy = RetryPolicy::new(&rt, quick(5)).unwrap();
    let calls = AtomicU32::new(0);
    let out = block_on(policy.run(|| async {
        if calls.fetch_add(1, Ordering::SeqCst) < 2 { Err(AppError::Busy) } else { Ok("done") }
    }));
    assert_eq!(out.unwrap(), "done");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let st = policy.stats().unwrap();
    assert_eq!((st.runs, st.attempts, st.successes_after_retry, st.in_flight), (1, 3, 1, 0));
}

#[test]
fn permanent_failures_are_not_retried_and_attempts_run_out() {
    let rt = Runtime::new().unwrap();
    let policy = RetryPolicy::new(&rt, quick(4)).unwrap();
    let calls = AtomicU32::new(0);
    let out: Result<(), _> = block_on(policy.run(|| async { calls.fetch_add(1, Ordering::SeqCst); Err(AppError::BadRequest) }));
    assert!(matches!(out, Err(RetryError::Attempt { error: AppError::BadRequest, attempts: 1 })), "{out:?}");
    assert_eq!(calls.swap(0, Ordering::SeqCst), 1);
    let out: Result<(), _> = block_on(policy.run(|| async { calls.fetch_add(1, Ordering::SeqCst); Err(AppError::Busy) }));
    let e = out.unwrap_err();
    assert!(matches!(e, RetryError::Attempt { error: AppError::Busy, attempts: 4 }), "{e:?}");
    assert_eq!(e.to_string(), "failed after 4 attempt(s): Busy");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    // A caller's own classifier, for any error type.
    let out: Result<(), &str> = block_on(policy.run_classified(
        |e: &&str| if *e == "flaky" { Verdict::retryable() } else { Verdict::permanent() },
        || async { Err("broken") })).map_err(|e| e.into_last_error().unwrap());
    assert_eq!(out, Err("broken"));
    let st = policy.stats().unwrap();
    assert_eq!((st.failures_first, st.failures_after_retry), (2, 1));
}

#[test]
fn sluice_errors_have_a_default_classification() {
    for (code, outcome) in [(sluice_sys::SLUICE_ETIMEDOUT, Outcome::Retryable), (sluice_sys::SLUICE_EUNREACHABLE, Outcome::Retryable),
                            (sluice_sys::SLUICE_EEXHAUSTED, Outcome::Retryable), (sluice_sys::SLUICE_EINVAL, Outcome::Permanent),
                            (sluice_sys::SLUICE_ECANCELED, Outcome::Permanent), (sluice_sys::SLUICE_ECLOSED, Outcome::Permanent)] {
        let v = Error::new(code, "").classify();
        assert_eq!((v.outcome, v.code), (outcome, code), "{code}");
    }
}

#[test]
fn delays_are_the_policy_s_backoff_and_hints_win() {
    let rt = Runtime::new().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let opts = RetryOptions { max_attempts: 5, base_delay: MS, max_delay: 6 * MS, jitter: Jitter::Full, seed: 42,
                              budget_ratio: 0.0,
                              on_retry: Some(Arc::new(move |attempt, code, delay| s.lock().unwrap().push((attempt, code, delay)))),
                              ..Default::default() };
    let policy = RetryPolicy::new(&rt, opts.clone()).unwrap();
    let _ = block_on(policy.run(|| async { Err::<(), _>(AppError::Busy) }));
    // The first run to need a retry draws from retry_seed(42, 0), as the pure function does.
    let mut rng = retry_seed(42, 0);
    let mut prev = Duration::ZERO;
    let expected: Vec<_> = (1..5).map(|n| {
        prev = next_delay(&opts, n, prev, &mut rng).unwrap();
        (n, sluice::ATTEMPT_ERROR_CODE, prev)
    }).collect();
    assert_eq!(*seen.lock().unwrap(), expected);
    assert!(expected.iter().all(|(_, _, d)| *d <= 6 * MS));
    // Exact delays without jitter: 1, 2, 4, then the cap.
    let none = RetryOptions { jitter: Jitter::None, max_delay: 5 * MS, ..opts.clone() };
    let d: Vec<_> = (1..5).scan(Duration::ZERO, |p, n| { *p = next_delay(&none, n, *p, &mut 0).unwrap(); Some(*p) }).collect();
    assert_eq!(d, [MS, 2 * MS, 4 * MS, 5 * MS]);
    // A retry-after hint longer than the backoff (and the cap) is honoured.
    seen.lock().unwrap().clear();
    let calls = AtomicU32::new(0);
    block_on(policy.run_classified(|_: &AppError| Verdict::retryable().after(20 * MS).code(-429), || async {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 { Err(AppError::Busy) } else { Ok(()) }
    })).unwrap();
    assert_eq!(*seen.lock().unwrap(), [(1, -429, 20 * MS)]);
}

#[test]
fn the_budget_refuses_retries_beyond_it() {
    let rt = Runtime::new().unwrap();
    let policy = RetryPolicy::new(&rt, RetryOptions { budget_ratio: 0.001, budget_tokens: 2, ..quick(10) }).unwrap();
    let calls = AtomicU32::new(0);
    let e = block_on(policy.run(|| async { calls.fetch_add(1, Ordering::SeqCst); Err::<(), _>(AppError::Busy) })).unwrap_err();
    assert_eq!(e.stop_kind(), Some(ErrorKind::Budget), "{e}");
    assert_eq!((e.attempts(), calls.load(Ordering::SeqCst)), (3, 3), "2 tokens: 2 retries");
    assert_eq!(e.last_error(), Some(&AppError::Busy));
    // First attempts are never refused; retries are, until tokens come back.
    let e = block_on(policy.run(|| async { Err::<(), _>(AppError::Busy) })).unwrap_err();
    assert_eq!((e.stop_kind(), e.attempts()), (Some(ErrorKind::Budget), 1));
    let st = policy.stats().unwrap();
    assert_eq!(st.budget_refusals, 2);
    assert!(st.budget_balance < 1.0);
}

#[test]
fn the_deadline_is_kept_on_the_injected_clock() {
    let rt = Runtime::new().unwrap();
    let clock = ManualClock::default();
    let policy = RetryPolicy::new(&rt, RetryOptions { total_timeout: Some(Duration::from_secs(1)),
                                                      clock: Some(clock.clock()), ..quick(100) }).unwrap();
    // Each attempt costs 300 ms of policy time.
    let attempt = || async { clock.advance(300 * MS); Err::<(), _>(AppError::Busy) };
    let e = block_on(policy.run(attempt)).unwrap_err();
    assert_eq!((e.stop_kind(), e.attempts()), (Some(ErrorKind::TimedOut), 4), "{e}");
    // A run's own deadline, earlier than total_timeout.
    let deadline = policy.now_ns() + 500_000_000;
    let e = block_on(policy.run_by(deadline, AppError::classify, attempt)).unwrap_err();
    assert_eq!((e.stop_kind(), e.attempts()), (Some(ErrorKind::TimedOut), 2));
    // A deadline already past: no attempt at all.
    let e = block_on(policy.run_by(policy.now_ns(), AppError::classify, attempt)).unwrap_err();
    assert_eq!((e.stop_kind(), e.attempts()), (Some(ErrorKind::TimedOut), 0));
    assert_eq!(policy.stats().unwrap().deadline_stops, 3);
}

#[test]
fn a_hung_attempt_is_dropped_at_its_timeout() {
    let rt = Runtime::new().unwrap();
    let policy = RetryPolicy::new(&rt, RetryOptions { attempt_timeout: Some(10 * MS), ..quick(3) }).unwrap();
    struct Flag(Arc<AtomicU32>);
    impl Drop for Flag {
        fn drop(&mut self) { self.0.fetch_add(1, Ordering::SeqCst); }
    }
    let dropped = Arc::new(AtomicU32::new(0));
    let calls = AtomicU32::new(0);
    let out = block_on(policy.run(|| {
        let flag = Flag(dropped.clone());
        let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            let _flag = flag;
            if first {
                pending::<()>().await;
            }
            Ok::<_, AppError>(7)
        }
    }));
    assert_eq!(out.unwrap(), 7);
    assert_eq!((calls.load(Ordering::SeqCst), dropped.load(Ordering::SeqCst)), (2, 2));
    // Every attempt hangs: the run ends with the last attempt's timeout.
    let e = block_on(policy.run(|| async { pending::<Result<(), AppError>>().await })).unwrap_err();
    assert_eq!((e.stop_kind(), e.attempts()), (Some(ErrorKind::TimedOut), 3), "{e}");
}

#[test]
fn an_open_breaker_stops_the_run_at_once() {
    let rt = Runtime::new().unwrap();
    let clock = ManualClock::default();
    let breaker = Breaker::new(BreakerOptions { window: BreakerWindow::Count(2), minimum_calls: 2, half_open_trials: 1,
                                                open: Duration::from_secs(30), clock: Some(clock.clock()),
                                                ..Default::default() }).unwrap();
    let policy = RetryPolicy::new(&rt, RetryOptions { breaker: Some(breaker.clone()), ..quick(5) }).unwrap();
    let calls = AtomicU32::new(0);
    let failing = || async { calls.fetch_add(1, Ordering::SeqCst); Err::<(), _>(AppError::Busy) };
    let e = block_on(policy.run(failing)).unwrap_err();
    assert_eq!((e.stop_kind(), e.attempts()), (Some(ErrorKind::Open), 2), "tripped by the 2nd failure: no 3rd");
    assert_eq!(breaker.state(), BreakerState::Open);
    let e = block_on(policy.run(failing)).unwrap_err();
    assert_eq!((e.stop_kind(), e.attempts(), e.last_error()), (Some(ErrorKind::Open), 0, None));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "no attempt against an open breaker");
    // Permanent failures count as successes for the breaker: the dependency answered.
    clock.advance(Duration::from_secs(30));
    let e = block_on(policy.run(|| async { Err::<(), _>(AppError::BadRequest) })).unwrap_err();
    assert!(matches!(e, RetryError::Attempt { .. }));
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(policy.stats().unwrap().breaker_refusals, 2, "both runs ended by the breaker");
}

#[test]
fn dropping_a_run_cancels_it() {
    let rt = Runtime::new().unwrap();
    let policy = RetryPolicy::new(&rt, quick(3)).unwrap();
    let mut run = Box::pin(policy.run(|| async { pending::<Result<(), AppError>>().await }));
    assert!(poll_once(&mut run).is_pending());
    assert_eq!(policy.stats().unwrap().in_flight, 1);
    drop(run);
    let st = policy.stats().unwrap();
    assert_eq!((st.cancelled, st.in_flight), (1, 0));
    // Sleeping between attempts: dropped too.
    let mut run = Box::pin(policy.run_classified(|_: &AppError| Verdict::retryable().after(Duration::from_secs(3600)),
                                                 || async { Err::<(), _>(AppError::Busy) }));
    assert!(poll_once(&mut run).is_pending());
    drop(run);
    assert_eq!(policy.stats().unwrap().cancelled, 2);
    common::wait_until(|| rt.stats().unwrap().ops_pending == 0);
}

#[test]
fn many_runs_share_one_policy_across_threads() {
    let rt = Runtime::new().unwrap();
    let mon = Arc::new(Monitor::new(Some(&rt)).unwrap());
    let policy = RetryPolicy::new(&rt, RetryOptions { monitor: Some(mon.clone()), name: Some("ai".into()),
                                                      ..quick(3) }).unwrap();
    let tasks = (0..40).map(|_| {
        let p = policy.clone();
        Box::pin(async move {
            let first = AtomicU32::new(0);
            let out = p.run(|| async { if first.fetch_add(1, Ordering::SeqCst) == 0 { Err(AppError::Busy) } else { Ok(()) } }).await;
            out.unwrap();
        }) as _
    }).collect();
    run_tasks(2, tasks);
    let st = policy.stats().unwrap();
    assert_eq!((st.runs, st.attempts, st.successes_after_retry, st.in_flight), (40, 80, 40, 0));
    assert_eq!(mon.op("ai.attempt").unwrap().unwrap().count, 80);
    assert_eq!(mon.op("ai.run").unwrap().unwrap().errors, 0);
}

#[test]
fn bad_options_are_named() {
    let rt = Runtime::new().unwrap();
    for (opts, field) in [
        (RetryOptions { max_attempts: 0, ..Default::default() }, "max_attempts"),
        (RetryOptions { base_delay: Duration::ZERO, ..Default::default() }, "base_delay"),
        (RetryOptions { max_delay: Duration::from_millis(50), ..Default::default() }, "max_delay"),
        (RetryOptions { multiplier: 0.5, ..Default::default() }, "multiplier"),
        (RetryOptions { budget_ratio: 1000.0, ..Default::default() }, "budget"),
    ] {
        let e = RetryPolicy::new(&rt, opts).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(e.message().contains(field), "{e}");
    }
    assert_eq!(next_delay(&RetryOptions::default(), 0, Duration::ZERO, &mut 1).unwrap_err().kind(), ErrorKind::Invalid);
}

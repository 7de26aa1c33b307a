//! The retry policy's default classification of the pool's errors, against
//! a real server (SLUICE_PG_CONNINFO, started by test.sh): what
//! `sluice_pg_result_retryable` calls safe is retried, nothing else.
mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::block_on;
use sluice::{ErrorKind, Jitter, Pool, PoolOptions, QueryOptions, RetryError, RetryOptions, RetryPolicy, Runtime};

fn conninfo() -> String {
    std::env::var("SLUICE_PG_CONNINFO").expect("SLUICE_PG_CONNINFO (run bindings/rust/test.sh)")
}

fn policy(rt: &Runtime) -> RetryPolicy {
    RetryPolicy::new(rt, RetryOptions { max_attempts: 3, base_delay: Duration::from_millis(1), jitter: Jitter::None,
                                        budget_ratio: 0.0, ..Default::default() }).unwrap()
}

#[test]
fn server_errors_are_permanent() {
    let rt = Runtime::new().unwrap();
    let pool = Pool::new(&rt, &conninfo(), PoolOptions { max_size: 2, ..Default::default() }).unwrap();
    let p = policy(&rt);
    let calls = AtomicU32::new(0);
    let e = block_on(p.run(|| { calls.fetch_add(1, Ordering::SeqCst); pool.query("select 1/0", &[]) })).unwrap_err();
    match &e {
        RetryError::Attempt { error, attempts: 1 } => assert_eq!(error.sqlstate(), Some("22012")),
        other => panic!("{other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let rows = block_on(p.run(|| pool.query("select 41 + 1", &[]))).unwrap();
    assert_eq!(rows.get::<i64, _>(0, 0).unwrap(), 42);
}

#[test]
fn a_lost_connection_is_retried_only_for_idempotent_statements() {
    let rt = Runtime::new().unwrap();
    let pool = Pool::new(&rt, &conninfo(), PoolOptions { max_size: 2, ..Default::default() }).unwrap();
    let p = policy(&rt);
    // The first attempt's backend is terminated under it (57P01 after the
    // statement was sent: outcome unknown); the second runs normally.
    let attempt = |idempotent: bool, calls: &AtomicU32| {
        let sql = if calls.fetch_add(1, Ordering::SeqCst) == 0 { "select pg_terminate_backend(pg_backend_pid())::int" }
                  else { "select 1" };
        pool.query_with(sql, &[], &QueryOptions { idempotent, ..Default::default() })
    };
    let calls = AtomicU32::new(0);
    block_on(p.run(|| attempt(true, &calls))).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let calls = AtomicU32::new(0);
    let e = block_on(p.run(|| attempt(false, &calls))).unwrap_err();
    match &e {
        RetryError::Attempt { error, attempts: 1 } => {
            assert_eq!((error.kind(), error.sent(), error.retryable()), (ErrorKind::Ambiguous, true, false));
        }
        other => panic!("an ambiguous write must not be retried: {other:?}"),
    }
}

#[test]
fn an_unreachable_server_is_retried_until_attempts_run_out() {
    let rt = Runtime::new().unwrap();
    // Nothing listens on port 1: nothing is ever sent, so retrying is safe.
    let pool = Pool::new(&rt, "host=127.0.0.1 port=1 dbname=none connect_timeout=2",
                         PoolOptions { min_size: 0, max_size: 1, ..Default::default() }).unwrap();
    let p = policy(&rt);
    let calls = AtomicU32::new(0);
    let e = block_on(p.run(|| {
        calls.fetch_add(1, Ordering::SeqCst);
        pool.query_with("select 1", &[], &QueryOptions::timeout(Duration::from_secs(5)))
    })).unwrap_err();
    let last = e.last_error().expect("an attempt error");
    assert!(!last.sent() && last.retryable(), "{last:?}");
    assert_eq!((e.attempts(), calls.load(Ordering::SeqCst)), (3, 3), "{e}");
}

//! The pool and the monitor against the real library and a real server
//! (SLUICE_PG_CONNINFO, started by test.sh), with the same std-only
//! executor as tests/runtime.rs.
mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{block_on, poll_once, wait_until};
use sluice::{ErrorKind, Monitor, Pool, PoolOptions, QueryOptions, Runtime};

fn conninfo() -> String {
    std::env::var("SLUICE_PG_CONNINFO").expect("SLUICE_PG_CONNINFO (run bindings/rust/test.sh)")
}

fn pool(rt: &Runtime, max_size: u32) -> Pool {
    Pool::new(rt, &conninfo(), PoolOptions { min_size: 1, max_size, ..Default::default() }).unwrap()
}

#[test]
fn types_nulls_and_unicode() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, 2);
    let rows = block_on(p.query(
        "select $1::bigint + 1 as n, $2::float8 * 2 as x, $3::bool as b, $4::text as s, $5::text as nul, \
         null::int as ni, 'žluťoučký 🐎' as u",
        &[&41i64, &1.25f64, &true, &"héllo ✓", &None::<&str>])).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows.columns(), ["n", "x", "b", "s", "nul", "ni", "u"]);
    assert_eq!(rows.get::<i64, _>(0, 0).unwrap(), 42);
    assert_eq!(rows.get::<i64, _>(0, "n").unwrap(), 42);
    assert_eq!(rows.get::<f64, _>(0, "x").unwrap(), 2.5);
    assert!(rows.get::<bool, _>(0, "b").unwrap());
    assert_eq!(rows.get::<String, _>(0, "s").unwrap(), "héllo ✓");
    assert_eq!(rows.get::<Option<String>, _>(0, "nul").unwrap(), None);
    assert_eq!(rows.get::<Option<i64>, _>(0, "ni").unwrap(), None);
    assert_eq!(rows.get::<Option<i64>, _>(0, "n").unwrap(), Some(42));
    assert_eq!(rows.text(0, "u").unwrap(), Some("žluťoučký 🐎"));
    assert_eq!(rows.text(0, 4).unwrap(), None);
    // Reading a NULL as a plain type, a bad conversion, a bad column.
    assert_eq!(rows.get::<i64, _>(0, "ni").unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(rows.get::<i64, _>(0, "s").unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(rows.get::<i64, _>(0, "missing").unwrap_err().kind(), ErrorKind::Range);
    assert_eq!(rows.text(1, 0).unwrap_err().kind(), ErrorKind::Range);
    // Several rows, and execute's affected count.
    let rows = block_on(p.query("select g from generate_series(1, 5) g", &[])).unwrap();
    let v: Vec<i64> = (0..rows.len()).map(|i| rows.get(i, 0).unwrap()).collect();
    assert_eq!(v, [1, 2, 3, 4, 5]);
    block_on(p.execute("create temp table if not exists t(x int)", &[])).unwrap();
    let n = block_on(p.execute("select * from generate_series(1, 3)", &[])).unwrap();
    assert_eq!(n, 3);
}

#[test]
fn syntax_error_keeps_sqlstate_and_sent() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, 2);
    let err = block_on(p.query("selec 1", &[])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Pg);
    assert_eq!(err.sqlstate(), Some("42601"));
    assert!(err.sent());
    assert!(!err.retryable());
    assert!(err.message().contains("syntax error"), "{err}");
    // Detail and hint from the server.
    let err = block_on(p.query(
        "do $$ begin raise exception 'boom' using detail = 'the detail', hint = 'the hint', errcode = '22023'; end $$",
        &[])).unwrap_err();
    assert_eq!(err.sqlstate(), Some("22023"));
    assert_eq!(err.message(), "boom");
    assert_eq!(err.detail(), "the detail");
    assert_eq!(err.hint(), "the hint");
    // A NUL in the SQL fails before anything is sent.
    let err = block_on(p.query("select '\0'", &[])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(!err.sent());
    assert_eq!(block_on(p.query("select 1", &[])).unwrap().get::<i64, _>(0, 0).unwrap(), 1);
}

#[test]
fn query_timeout_is_ambiguous_and_the_pool_recovers() {
    let rt = Runtime::new().unwrap();
    let p = Pool::new(&rt, &conninfo(), PoolOptions { min_size: 1, max_size: 1, admission_check: false,
                                                      ..Default::default() }).unwrap();
    // An hour-long statement: only the timeout can end it (else block_on's
    // hang guard fails the test).
    let err = block_on(p.query_with("select pg_sleep(3600)", &[], &QueryOptions::timeout(Duration::from_millis(200))))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Ambiguous, "{err}");
    assert!(err.sent());
    assert!(!err.retryable());
    // Idempotent: the failure is classified retryable (the pool may have
    // retried it within the deadline, which then passed before sending).
    wait_until(|| p.stats().unwrap().idle == 1);
    let err = block_on(p.query_with("select pg_sleep(10)", &[],
                                    &QueryOptions { timeout: Duration::from_millis(200), idempotent: true, no_prepare: false }))
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Ambiguous | ErrorKind::TimedOut), "{err}");
    assert!(err.retryable());
    assert_eq!(block_on(p.query("select 7", &[])).unwrap().get::<i64, _>(0, 0).unwrap(), 7);
    assert!(p.stats().unwrap().ambiguous >= 2);
}

#[test]
fn hundred_in_flight_on_two_connections() {
    let rt = Runtime::new().unwrap();
    let p = Pool::new(&rt, &conninfo(), PoolOptions { min_size: 1, max_size: 2, admission_check: false,
                                                      ..Default::default() }).unwrap();
    let futures: Vec<_> = (0..100i64).map(|i| p.query("select $1::int * 2", &[&i])).collect();
    for (i, f) in futures.into_iter().enumerate() {
        assert_eq!(block_on(f).unwrap().get::<i64, _>(0, 0).unwrap(), 2 * i as i64);
    }
    let st = p.stats().unwrap();
    assert!(st.peak_total <= 2, "{st:?}");
    assert!(st.queries >= 100);
    // From several threads at once, the pool shared.
    let handles: Vec<_> = (0..4).map(|t| {
        let p = p.clone();
        thread::spawn(move || for i in 0..25i64 {
            let n = block_on(p.query("select $1::bigint", &[&(t * 100 + i)])).unwrap();
            assert_eq!(n.get::<i64, _>(0, 0).unwrap(), t * 100 + i);
        })
    }).collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn dropping_a_pending_query_cancels_it() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, 1);
    // A second pool watches the server's own view of the statement.
    let watch = pool(&rt, 1);
    let sleeping = || -> i64 {
        block_on(watch.query("select count(*) from pg_stat_activity \
                              where state = 'active' and query = 'select pg_sleep(3600)'", &[]))
            .unwrap().get(0, 0).unwrap()
    };
    {
        let mut q = Box::pin(p.query("select pg_sleep(3600)", &[]));
        assert!(poll_once(&mut q).is_pending());
        wait_until(|| sleeping() == 1); // it reached the server
    } // dropped: cancelled on the server
    // The single connection comes back: an hour-long statement was cancelled.
    assert_eq!(block_on(p.query("select 1", &[])).unwrap().get::<i64, _>(0, 0).unwrap(), 1);
    assert_eq!(sleeping(), 0);
    // Drop races with completion: either way exactly one outcome, no leak.
    for i in 0..200i64 {
        let q = p.query("select $1::int", &[&i]);
        if i % 3 == 0 {
            thread::sleep(Duration::from_micros(200));
        }
        drop(q);
    }
    wait_until(|| rt.stats().unwrap().ops_pending == 0);
    assert_eq!(block_on(p.query("select 2", &[])).unwrap().get::<i64, _>(0, 0).unwrap(), 2);
}

#[test]
fn lease_carries_a_transaction() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, 2);
    block_on(p.execute("create table if not exists rs_lease(x int)", &[])).unwrap();
    block_on(p.execute("truncate rs_lease", &[])).unwrap();
    {
        let mut c = block_on(p.acquire(Duration::from_secs(5))).unwrap();
        block_on(c.execute("begin", &[])).unwrap();
        assert_eq!(block_on(c.execute("insert into rs_lease values (1), (2)", &[])).unwrap(), 2);
        block_on(c.execute("commit", &[])).unwrap();
        block_on(c.execute("begin", &[])).unwrap();
        block_on(c.execute("insert into rs_lease values (3)", &[])).unwrap();
        let err = block_on(c.query("selec", &[])).unwrap_err();
        assert_eq!(err.sqlstate(), Some("42601"));
    } // released inside an aborted transaction: rolled back by the pool
    let rows = block_on(p.query("select count(*) from rs_lease", &[])).unwrap();
    assert_eq!(rows.get::<i64, _>(0, 0).unwrap(), 2);
    // A dropped acquire gives back whatever it was granted.
    for _ in 0..50 {
        drop(p.acquire(Duration::from_secs(5)));
    }
    wait_until(|| p.stats().unwrap().in_use == 0);
    block_on(p.execute("drop table rs_lease", &[])).unwrap();
}

#[test]
fn close_then_queries_fail_closed() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, 2);
    block_on(p.query("select 1", &[])).unwrap();
    block_on(p.close(Duration::from_secs(1))).unwrap();
    let err = block_on(p.query("select 1", &[])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert!(!err.sent());
    // A pool outliving its Runtime value keeps the runtime alive.
    let p2 = pool(&rt, 1);
    drop(rt);
    assert_eq!(block_on(p2.query("select 3", &[])).unwrap().get::<i64, _>(0, 0).unwrap(), 3);
}

#[test]
fn bad_conninfo_and_options() {
    let rt = Runtime::new().unwrap();
    let err = Pool::new(&rt, "host=", PoolOptions { min_size: 3, max_size: 2, ..Default::default() }).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(!err.message().is_empty());
    // Nothing listening: fails fast as Unreachable, before sending.
    let p = Pool::new(&rt, "host=127.0.0.1 port=1 user=x dbname=x connect_timeout=1",
                      PoolOptions { min_size: 0, max_size: 1, ..Default::default() }).unwrap();
    let err = block_on(p.query_with("select 1", &[], &QueryOptions::timeout(Duration::from_secs(3)))).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Unreachable | ErrorKind::TimedOut | ErrorKind::Exhausted), "{err}");
    assert!(!err.sent());
    assert!(err.retryable());
}

#[test]
fn monitor_sees_the_pool() {
    let rt = Runtime::new().unwrap();
    let m = Arc::new(Monitor::new(Some(&rt)).unwrap());
    let p = Pool::new(&rt, &conninfo(), PoolOptions { max_size: 2, monitor: Some(m.clone()), ..Default::default() })
        .unwrap();
    for i in 0..10i64 {
        block_on(p.query("select $1::int", &[&i])).unwrap();
    }
    block_on(p.query("selec", &[])).unwrap_err();
    let q = m.op("pg.query").unwrap().expect("pg.query recorded");
    assert_eq!(q.count, 11);
    assert_eq!(q.errors, 1);
    assert!(q.max >= q.p50 && q.p50 > Duration::ZERO);
    assert!(m.op("pg.connect").unwrap().is_some());
    // Own records, with outcomes.
    m.record("rs.op", Duration::from_millis(3), Ok(())).unwrap();
    let e = sluice::Error::new(-1000, "mine");
    m.record("rs.op", Duration::from_millis(5), Err(&e)).unwrap();
    let op = m.op("rs.op").unwrap().unwrap();
    assert_eq!((op.count, op.errors), (2, 1));
    assert!(op.max >= Duration::from_millis(4));
    assert_eq!(m.record_code("", Duration::ZERO, 0).unwrap_err().kind(), ErrorKind::Invalid);
    let json = m.json().unwrap();
    assert!(json.starts_with('{') && json.contains("\"pg.query\""), "{json}");
    let prom = m.prometheus().unwrap();
    assert!(prom.contains("sluice_op_duration_seconds_count{op=\"pg.query\"} 11"), "{prom}");
    drop(p); // the pool goes first, then the monitor (held by it), then the runtime
    drop(rt);
    assert!(m.op("pg.query").unwrap().is_some());
    // Without a runtime.
    let m2 = Monitor::new(None).unwrap();
    m2.record_code("x", Duration::from_micros(10), 0).unwrap();
    assert_eq!(m2.stats().unwrap().len(), 1);
}

#[test]
fn pool_and_monitor_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    fn send<T: Send>() {}
    check::<Pool>();
    check::<Monitor>();
    check::<sluice::Rows>();
    send::<sluice::Query>();
    send::<sluice::Conn>();
    send::<sluice::Acquire>();
}

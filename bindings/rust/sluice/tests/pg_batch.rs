//! Pipelined batches against the real server (SLUICE_PG_CONNINFO, started
//! by test.sh). Each test uses its own table and application_name, since
//! the tests of this file run at once.
mod common;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use common::{block_on, poll_once, wait_until};
use sluice::{Batch, BatchError, ErrorKind, Pool, PoolOptions, QueryOptions, Runtime};

fn conninfo() -> String {
    std::env::var("SLUICE_PG_CONNINFO").expect("SLUICE_PG_CONNINFO (run bindings/rust/test.sh)")
}

/// A name of this test process's own: tables and application names do
/// not meet those of another run against the same server.
fn own(name: &str) -> String { format!("{name}_{}", std::process::id()) }

fn pool(rt: &Runtime, app: &str, max_size: u32) -> Pool {
    Pool::new(rt, &format!("{} application_name={}", conninfo(), own(app)),
              PoolOptions { min_size: 1, max_size, admission_check: false, ..Default::default() }).unwrap()
}

fn count(p: &Pool, sql: &str) -> i64 { block_on(p.query(sql, &[])).unwrap().get(0, 0).unwrap() }

fn table(p: &Pool, name: &str) {
    block_on(p.execute(&format!("create table if not exists {name}(id int primary key, v text)"), &[])).unwrap();
    block_on(p.execute(&format!("truncate {name}"), &[])).unwrap();
}

#[test]
fn every_statement_has_its_result() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, "rs_batch_ok", 2);
    let t = own("rs_batch_ok");
    table(&p, &t);
    let mut b = Batch::new();
    assert!(b.is_empty());
    b.add(&format!("insert into {t} values ($1, $2)"), &[&1i32, &"one"]).unwrap()
     .add(&format!("insert into {t} values ($1, $2)"), &[&2i32, &None::<&str>]).unwrap()
     .add(&format!("select id, v from {t} order by id"), &[]).unwrap()
     .add(&format!("update {t} set v = 'x' where id > $1"), &[&0i64]).unwrap();
    assert_eq!(b.len(), 4);
    let r = block_on(p.batch(&b)).unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!(r[0].affected(), 1);
    assert_eq!(r[1].affected(), 1);
    // The select sees the inserts before it (one transaction, in order).
    let rows = &r[2];
    assert_eq!(rows.len(), 2);
    assert_eq!(rows.get::<i32, _>(1, "id").unwrap(), 2);
    assert_eq!(rows.get::<Option<String>, _>(0, "v").unwrap().as_deref(), Some("one"));
    assert_eq!(rows.get::<Option<String>, _>(1, "v").unwrap(), None);
    assert_eq!(r.get(3).unwrap().affected(), 2);
    assert!(r.get(4).is_none());
    assert_eq!(r.iter().map(|rows| rows.affected()).collect::<Vec<_>>(), [1, 1, 2, 2]);
    assert_eq!(count(&p, &format!("select count(*) from {t} where v = 'x'")), 2);
    // The same batch runs again, while the first results are still read:
    // now a duplicate.
    let err = block_on(p.batch(&b)).unwrap_err();
    assert_eq!(r[2].len(), 2);
    assert_eq!(err.failed_at(), Some(0));
    assert_eq!(err.error().sqlstate(), Some("23505"));
    block_on(p.execute(&format!("drop table {t}"), &[])).unwrap();
}

#[test]
fn a_failure_commits_nothing_and_says_where() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, "rs_batch_fail", 2);
    let t = own("rs_batch_fail");
    table(&p, &t);
    block_on(p.execute(&format!("insert into {t} values (1, 'old')"), &[])).unwrap();
    let mut b = Batch::new();
    b.add(&format!("insert into {t} values (2, 'new')"), &[]).unwrap();
    b.add(&format!("insert into {t} values ($1, 'dup')"), &[&1i32]).unwrap();
    b.add("select 1", &[]).unwrap();
    let err: BatchError = block_on(p.batch(&b)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Pg);
    assert_eq!(err.failed_at(), Some(1));
    assert_eq!(err.error().sqlstate(), Some("23505"));
    assert!(err.error().sent());
    assert!(!err.error().retryable());
    assert!(err.to_string().starts_with("batch statement 1: SLUICE_EPG"), "{err}");
    assert_eq!(err.statement(0).unwrap().unwrap().affected(), 1);
    assert_eq!(err.statement(1).unwrap().unwrap_err().sqlstate(), Some("23505"));
    assert_eq!(err.statement(2).unwrap().unwrap_err().kind(), ErrorKind::Canceled);
    assert!(err.statement(3).is_none());
    // One implicit transaction: the first insert did not commit.
    assert_eq!(count(&p, &format!("select count(*) from {t}")), 1);
    // Fixed, the same batch succeeds; `?` makes a plain Error of the error.
    block_on(p.execute(&format!("delete from {t}"), &[])).unwrap();
    let run = |b: &Batch| -> sluice::Result<i64> { Ok(block_on(p.batch(b))?[1].affected()) };
    assert_eq!(run(&b).unwrap(), 1);
    assert_eq!(run(&b).unwrap_err().sqlstate(), Some("23505"));
    assert_eq!(count(&p, &format!("select count(*) from {t}")), 2);
    block_on(p.execute(&format!("drop table {t}"), &[])).unwrap();
}

#[test]
fn on_a_lease_inside_a_transaction() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, "rs_batch_lease", 2);
    let t = own("rs_batch_lease");
    table(&p, &t);
    {
        let mut c = block_on(p.acquire(Duration::from_secs(5))).unwrap();
        block_on(c.execute("begin", &[])).unwrap();
        let mut b = Batch::new();
        b.add(&format!("insert into {t} values (1, 'a'), (2, 'b')"), &[]).unwrap();
        b.add(&format!("select count(*) from {t}"), &[]).unwrap();
        let r = block_on(c.batch(&b)).unwrap();
        assert_eq!(r[1].get::<i64, _>(0, 0).unwrap(), 2);
        // The lease's transaction is still open: roll it back.
        block_on(c.execute("rollback", &[])).unwrap();
        b.add(&format!("select count(*) from {t}"), &[]).unwrap();
        let r = block_on(c.batch_with(&b, &QueryOptions::timeout(Duration::from_secs(10)))).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[2].get::<i64, _>(0, 0).unwrap(), 2);
    }
    assert_eq!(count(&p, &format!("select count(*) from {t}")), 2);
    block_on(p.execute(&format!("drop table {t}"), &[])).unwrap();
}

#[test]
fn bad_input_gives_the_batch_back() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, "rs_batch_bad", 1);
    let mut b = Batch::new();
    // Nothing to run.
    let err = block_on(p.batch(&b)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert_eq!(err.failed_at(), None);
    assert!(err.statement(0).is_none());
    assert!(err.error().message().contains("empty"), "{err}");
    // NUL bytes never reach the batch.
    assert_eq!(b.add("select '\0'", &[]).unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(b.add("select $1", &[&"a\0b"]).unwrap_err().kind(), ErrorKind::Invalid);
    let too_many: Vec<&dyn sluice::ToParam> = vec![&1i32; 65536];
    assert_eq!(b.add("select 1", &too_many).unwrap_err().kind(), ErrorKind::Invalid);
    assert!(b.is_empty());
    // A server error in the SQL is the statement's.
    b.add("selec 1", &[]).unwrap();
    let err = block_on(p.batch(&b)).unwrap_err();
    assert_eq!((err.failed_at(), err.error().sqlstate()), (Some(0), Some("42601")));
    // A closed pool refuses before anything is sent.
    block_on(p.close(Duration::from_secs(1))).unwrap();
    let err = block_on(p.batch(&b)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert!(!err.error().sent());
}

#[test]
fn no_connection_in_time_means_nothing_sent() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, "rs_batch_wait", 1);
    let lease = block_on(p.acquire(Duration::from_secs(5))).unwrap();
    let mut b = Batch::new();
    for i in 0..3i32 {
        b.add("select $1::int", &[&i]).unwrap();
    }
    let err = block_on(p.batch_with(&b, &QueryOptions::timeout(Duration::from_millis(50)))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert_eq!(err.failed_at(), Some(0));
    assert!(!err.error().sent());
    assert!(err.error().retryable());
    // Every statement reports the batch's failure, none a result.
    for i in 0..3 {
        assert_eq!(err.statement(i).unwrap().unwrap_err().kind(), ErrorKind::TimedOut);
    }
    drop(lease);
    let r = block_on(p.batch(&b)).unwrap();
    assert_eq!(r[2].get::<i32, _>(0, 0).unwrap(), 2);
}

#[test]
fn timeout_after_sending_is_ambiguous() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, "rs_batch_timeout", 1);
    let mut b = Batch::new();
    b.add("select 1", &[]).unwrap();
    b.add("select pg_sleep(30)", &[]).unwrap();
    b.add("select 2", &[]).unwrap();
    let err = block_on(p.batch_with(&b, &QueryOptions::timeout(Duration::from_secs(1)))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Ambiguous, "{err}");
    assert!(err.error().sent());
    // The batch is one transaction whose fate is unknown: every statement,
    // even the first one whose rows had arrived, reports it.
    assert_eq!(err.failed_at(), Some(0));
    for i in 0..3 {
        let e = err.statement(i).unwrap().unwrap_err();
        assert_eq!((e.kind(), e.sent()), (ErrorKind::Ambiguous, true));
    }
    // The server cancelled it: the single connection serves again.
    assert_eq!(count(&p, "select 5"), 5);
}

/// Backends of `app` running `like` now, seen from another pool.
fn running(observer: &Pool, app: &str, like: &str) -> i64 {
    block_on(observer.query(
        "select count(*) from pg_stat_activity where application_name = $1 and state = 'active' and query like $2",
        &[&own(app), &like])).unwrap().get(0, 0).unwrap()
}

#[test]
fn dropping_a_running_batch_cancels_it_on_the_server() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, "rs_batch_drop", 1);
    let observer = pool(&rt, "rs_batch_observer", 1);
    let mut b = Batch::new();
    b.add("select 1", &[]).unwrap();
    b.add("select pg_sleep(30) /* rs_batch_drop */", &[]).unwrap();
    let mut run = Box::pin(p.batch(&b));
    assert!(poll_once(&mut run).is_pending());
    wait_until(|| running(&observer, "rs_batch_drop", "%pg_sleep(30) /* rs_batch_drop */%") == 1);
    drop(run);
    wait_until(|| running(&observer, "rs_batch_drop", "%rs_batch_drop */%") == 0);
    assert_eq!(count(&p, "select 6"), 6);
    // Drops racing completion, at every stage: each batch is freed once,
    // after the library is done with it, and nothing stays in flight.
    for i in 0..150i32 {
        let mut b = Batch::new();
        b.add("select $1::int", &[&i]).unwrap();
        b.add("select 2", &[]).unwrap();
        let mut run = Box::pin(p.batch(&b));
        match i % 3 {
            0 => {}
            1 => { let _ = poll_once(&mut run); }
            _ => for _ in 0..(i % 50) { std::thread::yield_now(); },
        }
        drop(run);
    }
    wait_until(|| rt.stats().unwrap().ops_pending == 0);
    assert_eq!(count(&p, "select 7"), 7);
}

#[test]
fn futures_are_send() {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>() {}
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, "rs_batch_send", 1);
    let mut b = Batch::new();
    b.add("select 1", &[]).unwrap();
    let run = p.batch(&b);
    send(&run);
    send_sync::<Batch>();
    send_sync::<sluice::BatchResults>();
    send_sync::<BatchError>();
    let r: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(run);
    assert_eq!(block_on(r).unwrap()[0].get::<i32, _>(0, 0).unwrap(), 1);
}

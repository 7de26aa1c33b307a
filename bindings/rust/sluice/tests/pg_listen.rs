//! LISTEN/NOTIFY against the real server (SLUICE_PG_CONNINFO, started by
//! test.sh). Every test has its own channels and application_name, since
//! the tests of this file run at once. Waits are for conditions the
//! library or the server makes true (with the hang guard of common).
mod common;

use std::time::Duration;

use common::{block_on, poll_once, wait_until};
use sluice::{ErrorKind, Listener, Notification, Pool, PoolOptions, Runtime};

fn conninfo() -> String {
    std::env::var("SLUICE_PG_CONNINFO").expect("SLUICE_PG_CONNINFO (run bindings/rust/test.sh)")
}

/// A name of this test process's own: channels and application names
/// do not meet those of another run against the same server.
fn own(name: &str) -> String { format!("{name}_{}", std::process::id()) }

fn pool(rt: &Runtime, app: &str) -> Pool {
    Pool::new(rt, &format!("{} application_name={}", conninfo(), own(app)),
              PoolOptions { min_size: 1, max_size: 2, ..Default::default() }).unwrap()
}

fn notify(p: &Pool, channel: &str, payload: &str) {
    block_on(p.query("select pg_notify($1, $2)", &[&own(channel), &payload])).unwrap();
}

fn ready(l: &Listener) { wait_until(|| l.is_ready()); }

#[test]
fn notifications_arrive_in_order_with_payload_and_sender() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, "rs_listen_order");
    let mut l = p.listen(&own("rs_listen_order")).unwrap();
    assert_eq!(l.channel(), own("rs_listen_order"));
    ready(&l);
    // The sender's backend pid comes with each notification.
    let mut c = block_on(p.acquire(Duration::from_secs(5))).unwrap();
    let pid: i32 = block_on(c.query("select pg_backend_pid()", &[])).unwrap().get(0, 0).unwrap();
    for payload in ["one", "", "žluť 🐎 \"quoted\""] {
        block_on(c.query("select pg_notify($1, $2)", &[&own("rs_listen_order"), &payload])).unwrap();
    }
    drop(c);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(block_on(l.recv()).unwrap());
    }
    assert_eq!(got.iter().map(|n| n.payload.as_str()).collect::<Vec<_>>(), ["one", "", "žluť 🐎 \"quoted\""]);
    assert!(got.iter().all(|n| n.channel == own("rs_listen_order") && n.pid == pid), "{got:?}");
    assert_eq!(l.try_recv(), None);
    // Notifications of a transaction arrive at its commit, in order.
    let mut c = block_on(p.acquire(Duration::from_secs(5))).unwrap();
    block_on(c.execute("begin", &[])).unwrap();
    for payload in ["a", "b"] {
        block_on(c.query("select pg_notify($1, $2)", &[&own("rs_listen_order"), &payload])).unwrap();
    }
    let mut pending = Box::pin(l.recv());
    assert!(poll_once(&mut pending).is_pending(), "nothing before the commit");
    drop(pending); // cancel-safe: nothing is lost
    block_on(c.execute("commit", &[])).unwrap();
    assert_eq!(block_on(l.recv()).unwrap().payload, "a");
    assert_eq!(block_on(l.recv()).unwrap().payload, "b");
}

#[test]
fn only_the_channel_listened_to() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, "rs_listen_only");
    // Channel names are taken as given (quoted): case and spaces count.
    let mut upper = p.listen(&own("rs Listen Only")).unwrap();
    let mut other = p.listen(&own("rs_listen_other")).unwrap();
    ready(&upper);
    ready(&other);
    notify(&p, "rs listen only", "lower case: another channel");
    notify(&p, "rs_listen_other", "for other");
    notify(&p, "rs Listen Only", "exact");
    assert_eq!(block_on(upper.recv()).unwrap().payload, "exact");
    // Sent before "exact" on the same connection: had it been delivered to
    // `upper`, it would have come first.
    assert_eq!(upper.try_recv(), None);
    let n: Notification = block_on(other.recv()).unwrap();
    assert_eq!((n.channel, n.payload.as_str()), (own("rs_listen_other"), "for other"));
    assert_eq!(other.pending(), 0);
}

#[test]
fn two_listeners_of_one_channel_and_unsubscribing() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, "rs_listen_two");
    let observer = pool(&rt, "rs_listen_two_observer");
    let mut a = p.listen(&own("rs_listen_two")).unwrap();
    let mut b = p.listen(&own("rs_listen_two")).unwrap();
    ready(&a);
    ready(&b);
    notify(&p, "rs_listen_two", "both");
    assert_eq!(block_on(a.recv()).unwrap().payload, "both");
    assert_eq!(block_on(b.recv()).unwrap().payload, "both");
    // Dropping one keeps the channel for the other.
    drop(a);
    notify(&p, "rs_listen_two", "b only");
    assert_eq!(block_on(b.recv()).unwrap().payload, "b only");
    // Dropping the last one unsubscribes, and the pool closes its
    // listening connection (the one whose last statement was a LISTEN).
    let listening = || -> i64 {
        block_on(observer.query(
            "select count(*) from pg_stat_activity where application_name = $1 \
             and (query ilike 'LISTEN%' or query ilike 'UNLISTEN%')", &[&own("rs_listen_two")])).unwrap().get(0, 0).unwrap()
    };
    assert_eq!(listening(), 1);
    drop(b);
    wait_until(|| listening() == 0);
}

#[test]
fn a_full_queue_drops_the_oldest_and_counts_them() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, "rs_listen_full");
    let mut l = p.listen_with(&own("rs_listen_full"), 2).unwrap();
    ready(&l);
    let mut c = block_on(p.acquire(Duration::from_secs(5))).unwrap();
    block_on(c.execute("begin", &[])).unwrap();
    for i in 1..=5 {
        block_on(c.query("select pg_notify($1, $2)", &[&own("rs_listen_full"), &i.to_string()])).unwrap();
    }
    block_on(c.execute("commit", &[])).unwrap();
    wait_until(|| l.missed() == 3);
    assert_eq!(l.pending(), 2);
    assert_eq!(block_on(l.recv()).unwrap().payload, "4");
    assert_eq!(block_on(l.recv()).unwrap().payload, "5");
    assert_eq!(l.try_recv(), None);
}

#[test]
fn resubscribed_after_the_connection_is_lost() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, "rs_listen_lost");
    let observer = pool(&rt, "rs_listen_lost_observer");
    let mut l = p.listen(&own("rs_listen_lost")).unwrap();
    ready(&l);
    let backend = || -> Option<i32> {
        block_on(observer.query(
            "select pid from pg_stat_activity where application_name = $1 and query ilike 'LISTEN%'",
            &[&own("rs_listen_lost")])).unwrap().get(0, 0).ok()
    };
    wait_until(|| backend().is_some());
    let first = backend().unwrap();
    block_on(observer.query("select pg_terminate_backend($1)", &[&first])).unwrap();
    // A new backend runs LISTEN again, and the listener says it is ready.
    wait_until(|| backend().is_some_and(|pid| pid != first) && l.is_ready());
    notify(&p, "rs_listen_lost", "after");
    assert_eq!(block_on(l.recv()).unwrap().payload, "after");
}

#[test]
fn bad_channels_are_refused() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, "rs_listen_bad");
    for (channel, what) in [("", "1..63"), (&"x".repeat(64)[..], "1..63"), ("a\0b", "NUL")] {
        let e = p.listen(channel).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(e.message().contains(what), "{e}");
    }
    assert_eq!(p.listen_with(&own("ok"), 0).unwrap_err().kind(), ErrorKind::Invalid);
    let l = p.listen(&format!("{:x<63}", own("rs_listen_bad"))).unwrap();
    ready(&l);
}

#[test]
fn listener_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Listener>();
    check::<Notification>();
}

//! Monitor spans: ended with success or an error, or dropped unended.
use std::time::Duration;

use sluice::{Error, Monitor};

#[test]
fn spans_record_duration_and_outcome() {
    let mon = Monitor::new(None).unwrap();
    mon.span("op").unwrap().ok().unwrap();
    let s = mon.span("op").unwrap();
    std::thread::sleep(Duration::from_millis(2)); // a duration to see, not a timing claim
    s.fail(&Error::new(sluice_sys::SLUICE_ETIMEDOUT, "")).unwrap();
    drop(mon.span("op").unwrap()); // an early return or a dropped future
    let op = mon.op("op").unwrap().unwrap();
    assert_eq!((op.count, op.errors), (3, 2));
    assert!(op.max >= Duration::from_millis(2));
    assert_eq!(mon.span("").err().unwrap().kind(), sluice::ErrorKind::Invalid);
}

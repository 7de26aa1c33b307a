//! What the Rust layer costs per call on the uncontended paths, next to
//! the same work with no sluice at all. A measurement, not a test:
//!   cargo run --release --offline --example overhead [-- N]
#[path = "common/block_on.rs"]
mod block_on;

use std::time::{Duration, Instant};

use block_on::block_on;
use sluice::{Breaker, BreakerOptions, LockMode, Limiter, LimiterOptions, Locks, LocksOptions, Priority, RetryOptions,
             RetryPolicy, Runtime, TaskPool, TaskPoolOptions, Verdict};

fn per_op(name: &str, n: u64, mut f: impl FnMut(u64)) {
    for i in 0..n / 10 {
        f(i); // warm up
    }
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    println!("{name:<44} {:>9.1} ns/op", t.elapsed().as_nanos() as f64 / n as f64);
}

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let rt = Runtime::new().unwrap();
    let locks = Locks::new(&rt, LocksOptions::default()).unwrap();
    let mutex = std::sync::Mutex::new(0u64);
    per_op("std Mutex lock+unlock (reference)", n, |_| { *mutex.lock().unwrap() += 1; });
    per_op("locks.try_lock + drop guard", n, |_| drop(locks.try_lock("user:42", LockMode::Exclusive).unwrap()));
    per_op("locks.lock(key).await uncontended + drop", n / 10, |_| drop(block_on(locks.lock("user:42")).unwrap()));
    let limiter = Limiter::new(None, LimiterOptions { limit: 1 << 30, window: Duration::from_secs(60),
                                                      algorithm: sluice::Algorithm::Gcra, ..Default::default() }).unwrap();
    per_op("limiter.check (GCRA, one key)", n, |_| assert!(limiter.check("user:42").unwrap().allowed));
    let breaker = Breaker::new(BreakerOptions::default()).unwrap();
    per_op("breaker.allow + permit.success", n, |_| breaker.allow().unwrap().success().unwrap());
    let policy = RetryPolicy::new(&rt, RetryOptions::default()).unwrap();
    per_op("policy.run, first attempt succeeds", n, |i| {
        block_on(policy.run_classified(|_: &()| Verdict::permanent(), || async move { Ok::<u64, ()>(i) })).unwrap();
    });
    let tasks = TaskPool::new(&rt, TaskPoolOptions { workers: 1, ..Default::default() }).unwrap();
    per_op("taskpool.try_acquire + drop permit", n, |_| drop(tasks.try_acquire().unwrap()));
    per_op("taskpool.acquire(prio).await, slot free + drop", n / 10,
           |_| drop(block_on(tasks.acquire(Priority::Normal)).unwrap()));
    per_op("taskpool.spawn_blocking(prio, || i).await", n / 10,
           |i| assert_eq!(block_on(tasks.spawn_blocking(Priority::Normal, move || i)).unwrap(), i));
}

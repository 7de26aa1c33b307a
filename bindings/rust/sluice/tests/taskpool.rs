//! The task pool: the limit under many tasks and permits, priority order
//! and the anti-starvation rule, a full queue (refused, or waiting for
//! room), deadlines, cancellation racing a grant, closures on the pool's
//! own threads, the adaptive limit on an injected clock, resize, shutdown,
//! the monitor and bad input. No timing assertion: the tests wait for
//! states the library reports (queued, running), with common's hang guard.
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use common::{block_on, poll_once, run_tasks, wait_until};
use sluice::taskpool::Permit;
use sluice::{Adaptive, ErrorKind, ManualClock, Monitor, Priority, Runtime, TaskPool, TaskPoolFull, TaskPoolOptions,
             TaskPoolStats};

fn pool(rt: &Runtime, limit: u32) -> TaskPool {
    TaskPool::new(rt, TaskPoolOptions { max_concurrent: limit, ..Default::default() }).unwrap()
}

/// Every request counted once: finished one way, or still in the pool.
fn balanced(s: &TaskPoolStats) -> bool {
    s.submitted == s.completed + s.failed + s.rejected + s.expired + s.cancelled + s.closed + s.queued
        + s.room_waiting + s.running
}

/// A gate closures wait at, so that they are all inside at once.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

#[test]
fn the_limit_holds_for_tasks_and_permits_together() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, 3);
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Gate::default());
    // One slot is a permit; 40 closures share the other two.
    let permit = p.try_acquire().unwrap();
    let tasks: Vec<_> = (0..40).map(|i| {
        let (inside, most, gate) = (inside.clone(), most.clone(), gate.clone());
        p.spawn_blocking(Priority::Normal, move || {
            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            gate.wait();
            inside.fetch_sub(1, Ordering::SeqCst);
            i * 2
        })
    }).collect();
    wait_until(|| { let s = p.stats().unwrap(); s.running == 3 && s.queued == 38 });
    wait_until(|| inside.load(Ordering::SeqCst) == 2);
    assert_eq!(p.try_acquire().unwrap_err().kind(), ErrorKind::Again);
    gate.open();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(block_on(t).unwrap(), i * 2);
    }
    assert_eq!(most.load(Ordering::SeqCst), 2, "the permit's slot is never lent to a closure");
    permit.success().unwrap();
    let s = p.stats().unwrap();
    assert_eq!((s.peak_running, s.running, s.completed), (3, 0, 41), "{s:?}");
    assert!(balanced(&s), "{s:?}");

    // Many async tasks on two executor threads, each holding a permit
    // across an await: never more than the limit at once.
    let rt = Arc::new(rt);
    let p = pool(&rt, 4);
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let tasks = (0..200).map(|i| {
        let (p, rt, inside, most) = (p.clone(), rt.clone(), inside.clone(), most.clone());
        Box::pin(async move {
            let prio = [Priority::High, Priority::Normal, Priority::Low][i % 3];
            let permit = p.acquire(prio).await.unwrap();
            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            rt.sleep(Duration::ZERO).await.unwrap();
            inside.fetch_sub(1, Ordering::SeqCst);
            if i % 5 == 0 { permit.release(-7).unwrap() } else { drop(permit) }
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
    }).collect();
    run_tasks(2, tasks);
    let s = p.stats().unwrap();
    assert!(most.load(Ordering::SeqCst) <= 4 && s.peak_running <= 4, "{s:?}");
    assert_eq!((s.completed, s.failed, s.running), (160, 40, 0), "{s:?}");
}

#[test]
fn priorities_then_arrival_order() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, 1);
    let holder = p.try_acquire().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let plan = [("low 1", Priority::Low), ("normal 1", Priority::Normal), ("high 1", Priority::High),
                ("normal 2", Priority::Normal), ("high 2", Priority::High)];
    let tasks: Vec<_> = plan.iter().map(|&(name, prio)| {
        let order = order.clone();
        p.spawn_blocking(prio, move || order.lock().unwrap().push(name))
    }).collect();
    wait_until(|| p.stats().unwrap().queued == 5);
    drop(holder);
    for t in tasks {
        block_on(t).unwrap();
    }
    assert_eq!(*order.lock().unwrap(), ["high 1", "high 2", "normal 1", "normal 2", "low 1"]);
}

/// Resolves whichever of `futs` is granted next (one slot: one at a time).
fn next_granted(futs: &mut Vec<(&'static str, sluice::PermitFuture)>) -> (&'static str, Permit) {
    let mut found = None;
    wait_until(|| {
        for i in 0..futs.len() {
            if let std::task::Poll::Ready(r) = poll_once(&mut futs[i].1) {
                found = Some((futs.remove(i).0, r.unwrap()));
                return true;
            }
        }
        false
    });
    found.unwrap()
}

#[test]
fn a_waiting_low_priority_is_passed_over_at_most_max_bypass_times() {
    let rt = Runtime::new().unwrap();
    let p = TaskPool::new(&rt, TaskPoolOptions { max_concurrent: 1, max_bypass: 2, ..Default::default() }).unwrap();
    let holder = p.try_acquire().unwrap();
    let mut futs = Vec::new();
    for (name, prio) in [("low", Priority::Low), ("high 1", Priority::High), ("high 2", Priority::High),
                         ("high 3", Priority::High), ("high 4", Priority::High)] {
        let mut f = p.acquire(prio);
        assert!(poll_once(&mut f).is_pending());
        futs.push((name, f));
    }
    wait_until(|| p.stats().unwrap().queued == 5);
    drop(holder);
    let mut order = Vec::new();
    while !futs.is_empty() {
        let (name, permit) = next_granted(&mut futs);
        order.push(name);
        permit.success().unwrap();
    }
    assert_eq!(order, ["high 1", "high 2", "low", "high 3", "high 4"]);
}

#[test]
fn a_full_queue_refuses_or_waits_for_room() {
    let rt = Runtime::new().unwrap();
    let p = TaskPool::new(&rt, TaskPoolOptions { max_concurrent: 1, max_queued: 2, ..Default::default() }).unwrap();
    let holder = p.try_acquire().unwrap();
    let mut queued: Vec<_> = (0..2).map(|_| p.acquire(Priority::Normal)).collect();
    for f in &mut queued {
        assert!(poll_once(f).is_pending());
    }
    wait_until(|| p.stats().unwrap().queued == 2);
    assert_eq!(block_on(p.acquire(Priority::High)).unwrap_err().kind(), ErrorKind::Full);
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let e = block_on(p.spawn_blocking(Priority::High, move || r.store(true, Ordering::SeqCst))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Full);
    assert_eq!(p.stats().unwrap().rejected, 2);
    drop(queued); // cancelled
    drop(holder);
    assert!(!ran.load(Ordering::SeqCst));

    // Waiting for room: in arrival order, behind the queue.
    let p = TaskPool::new(&rt, TaskPoolOptions { max_concurrent: 1, max_queued: 1, on_full: TaskPoolFull::Wait,
                                                 ..Default::default() }).unwrap();
    let holder = p.try_acquire().unwrap();
    let mut futs = Vec::new();
    for name in ["queued", "room 1", "room 2"] {
        let mut f = p.acquire(Priority::Normal);
        assert!(poll_once(&mut f).is_pending());
        futs.push((name, f));
    }
    wait_until(|| { let s = p.stats().unwrap(); s.queued == 1 && s.room_waiting == 2 });
    drop(holder);
    let mut order = Vec::new();
    while !futs.is_empty() {
        let (name, permit) = next_granted(&mut futs);
        order.push(name);
        drop(permit);
    }
    assert_eq!(order, ["queued", "room 1", "room 2"]);
    assert_eq!(p.stats().unwrap().rejected, 0);
}

#[test]
fn deadlines_end_waits_and_tasks_that_never_ran() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, 1);
    let holder = p.try_acquire().unwrap();
    let e = block_on(p.acquire_with(Priority::High, Some(Duration::from_millis(30)))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    // Zero: only a slot free at once.
    let e = block_on(p.acquire_with(Priority::High, Some(Duration::ZERO))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let e = block_on(p.spawn_blocking_with(Priority::High, Some(Duration::from_millis(30)),
                                           move || r.store(true, Ordering::SeqCst))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    let e = p.acquire_blocking(Priority::Normal, Some(Duration::from_millis(30))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert!(!ran.load(Ordering::SeqCst), "a task whose deadline passed never runs");
    drop(holder);
    let s = p.stats().unwrap();
    assert_eq!((s.expired, s.running), (4, 0), "{s:?}");
    assert!(balanced(&s), "{s:?}");
    // A free slot is taken at once, even with a zero deadline.
    drop(block_on(p.acquire_with(Priority::Low, Some(Duration::ZERO))).unwrap());
    drop(p.acquire_blocking(Priority::Low, Some(Duration::ZERO)).unwrap());
    // A deadline too far for the library is no deadline.
    drop(block_on(p.acquire_with(Priority::Low, Some(Duration::MAX))).unwrap());
    assert_eq!(block_on(p.spawn_blocking_with(Priority::Low, Some(Duration::MAX), || 3)).unwrap(), 3);
}

#[test]
fn dropping_a_wait_cancels_it_and_a_grant_that_wins_is_released() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, 1);
    // Dropped while queued: cancelled; a task dropped before it ran never runs.
    let holder = p.try_acquire().unwrap();
    let mut f = p.acquire(Priority::Normal);
    assert!(poll_once(&mut f).is_pending());
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let mut t = Box::pin(p.spawn_blocking(Priority::Normal, move || r.store(true, Ordering::SeqCst)));
    assert!(poll_once(&mut t).is_pending());
    wait_until(|| p.stats().unwrap().queued == 2);
    drop(f);
    drop(t);
    wait_until(|| p.stats().unwrap().cancelled == 2);
    drop(holder);
    assert!(!ran.load(Ordering::SeqCst));

    // The release of the only slot races the drop of the one waiter.
    let dropper = common::RacingDropper::new();
    let before = p.stats().unwrap();
    for _ in 0..300 {
        let holder = p.try_acquire().unwrap();
        let mut f = p.acquire(Priority::Normal);
        assert!(poll_once(&mut f).is_pending());
        wait_until(|| p.stats().unwrap().queued == 1);
        dropper.drop_racing(holder); // grants the queued request...
        drop(f); // ...while the waiter gives up
        // Whichever won, the slot is free again afterwards.
        wait_until(|| { let s = p.stats().unwrap(); s.running == 0 && s.queued == 0 });
    }
    dropper.join();
    let s = p.stats().unwrap();
    let cancels = s.cancelled - before.cancelled;
    let grants = s.completed - before.completed - 300; // the holders' releases
    assert_eq!(cancels + grants, 300, "{s:?}");
    assert!(balanced(&s), "{s:?}");
    eprintln!("cancel race: {cancels} cancels won, {grants} grants won");
    drop(p.try_acquire().unwrap());
}

#[test]
fn closures_run_on_the_pools_own_threads() {
    let rt = Runtime::builder().thread_name("rs-loop").build().unwrap();
    let p = TaskPool::new(&rt, TaskPoolOptions { max_concurrent: 2, workers: 2, name: Some("rs-pool".into()),
                                                 ..Default::default() }).unwrap();
    let comm = || std::fs::read_to_string("/proc/thread-self/comm").unwrap().trim().to_string();
    let names: Vec<String> = (0..6).map(|_| block_on(p.spawn_blocking(Priority::Normal, comm)).unwrap()).collect();
    assert!(names.iter().all(|n| n.starts_with("rs-pool-")), "{names:?}");
    assert_ne!(names[0], comm());
    // Values of any Send type; a panic is caught on the worker and counted.
    let v = block_on(p.spawn_blocking(Priority::High, || vec![String::from("a"); 3])).unwrap();
    assert_eq!(v.len(), 3);
    let e = block_on(p.spawn_blocking(Priority::High, || -> u8 { panic!("boom in a task") })).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal);
    assert!(e.message().contains("boom in a task"), "{e}");
    let s = p.stats().unwrap();
    assert_eq!((s.completed, s.failed), (7, 1), "{s:?}");
    assert!(s.threads >= 1 && s.threads <= 2, "{s:?}");
    // The pool still works after the panic.
    assert_eq!(block_on(p.spawn_blocking(Priority::Low, || 5)).unwrap(), 5);
}

#[test]
fn outcomes_reach_the_figures_and_the_monitor() {
    let rt = Runtime::new().unwrap();
    let mon = Arc::new(Monitor::new(None).unwrap());
    let p = TaskPool::new(&rt, TaskPoolOptions { max_concurrent: 1, max_queued: 0, monitor: Some(mon.clone()),
                                                 name: Some("jobs".into()), ..Default::default() }).unwrap();
    p.try_acquire().unwrap().success().unwrap();
    p.try_acquire().unwrap().failure(&sluice::Error::new(-42, "mine")).unwrap();
    p.try_acquire().unwrap().release(-3).unwrap();
    // A positive outcome is refused, and the slot still comes back.
    assert_eq!(p.try_acquire().unwrap().release(5).unwrap_err().kind(), ErrorKind::Invalid);
    let held = p.try_acquire().unwrap();
    // No queue: a request that finds no slot is refused.
    assert_eq!(block_on(p.acquire(Priority::Normal)).unwrap_err().kind(), ErrorKind::Full);
    drop(held);
    block_on(p.spawn_blocking(Priority::Normal, || ())).unwrap();
    let s = p.stats().unwrap();
    assert_eq!((s.completed, s.failed, s.rejected, s.running), (3, 3, 1, 0), "{s:?}");
    assert!(balanced(&s), "{s:?}");
    let run = mon.op("jobs.run").unwrap().expect("jobs.run");
    assert_eq!((run.count, run.errors), (6, 3));
    assert_eq!(mon.op("jobs.rejected").unwrap().map(|o| o.count), Some(1));
    drop(p);
    assert_eq!(Arc::strong_count(&mon), 1, "the pool released its monitor");
}

#[test]
fn the_adaptive_limit_follows_failures_and_slow_work() {
    let rt = Runtime::new().unwrap();
    let clock = ManualClock::default();
    let p = TaskPool::new(&rt, TaskPoolOptions {
        max_concurrent: 4,
        adaptive: Some(Adaptive { min: 2, ceiling: Some(8), target_latency: Duration::from_secs(1) }),
        clock: Some(clock.clock()), ..Default::default()
    }).unwrap();
    // A window of 4 finished pieces, all failed: down by a quarter.
    for _ in 0..4 {
        p.try_acquire().unwrap().release(-1).unwrap();
    }
    let s = p.stats().unwrap();
    assert_eq!((s.limit, s.limit_lowered), (3, 1), "{s:?}");
    // A window of 3 held past the target latency (on the injected clock).
    let permits: Vec<_> = (0..3).map(|_| p.try_acquire().unwrap()).collect();
    clock.advance(Duration::from_secs(2));
    for permit in permits {
        permit.success().unwrap();
    }
    assert_eq!(p.stats().unwrap().limit, 2, "a step of at least 1: down to the floor");
    // Fast successes with the limit reached: up by one per window.
    let permits: Vec<_> = (0..2).map(|_| p.try_acquire().unwrap()).collect();
    for permit in permits {
        permit.success().unwrap();
    }
    let s = p.stats().unwrap();
    assert_eq!((s.limit, s.limit_raised), (3, 1), "{s:?}");
    // resize moves the current limit within the floor and the ceiling.
    p.resize(8).unwrap();
    assert_eq!(p.stats().unwrap().limit, 8);
    assert_eq!(p.resize(9).unwrap_err().kind(), ErrorKind::Range);
    assert_eq!(p.resize(1).unwrap_err().kind(), ErrorKind::Range);
}

#[test]
fn resize_grants_waiters_and_takes_nothing_back() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, 1);
    let first = p.try_acquire().unwrap();
    let mut futs: Vec<_> = (0..3).map(|_| p.acquire(Priority::Normal)).collect();
    for f in &mut futs {
        assert!(poll_once(f).is_pending());
    }
    wait_until(|| p.stats().unwrap().queued == 3);
    p.resize(3).unwrap();
    wait_until(|| { let s = p.stats().unwrap(); s.running == 3 && s.queued == 1 });
    let granted: Vec<Permit> = futs.drain(..2).map(|f| block_on(f).unwrap()).collect();
    // Lowered below what is held: nothing is taken away, and no new grant
    // until fewer than the new limit run.
    p.resize(1).unwrap();
    drop(first);
    let mut last = futs.pop().unwrap();
    assert!(poll_once(&mut last).is_pending());
    let s = p.stats().unwrap();
    assert_eq!((s.limit, s.running, s.queued), (1, 2, 1), "{s:?}");
    drop(granted);
    drop(block_on(last).unwrap());
    assert_eq!(p.resize(0).unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(p.resize(65537).unwrap_err().kind(), ErrorKind::Invalid);
}

#[test]
fn shutdown_closes_the_queue_and_waits_for_the_work() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, 1);
    let held = p.try_acquire().unwrap();
    let mut waiting = p.acquire(Priority::Normal);
    assert!(poll_once(&mut waiting).is_pending());
    wait_until(|| p.stats().unwrap().queued == 1);
    // Zero: closes and returns at once; a permit is still held.
    assert_eq!(p.shutdown(Some(Duration::ZERO)).unwrap_err().kind(), ErrorKind::TimedOut);
    assert_eq!(block_on(waiting).unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(p.try_acquire().unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(block_on(p.acquire(Priority::High)).unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(block_on(p.spawn_blocking(Priority::High, || 1)).unwrap_err().kind(), ErrorKind::Closed);
    // Another thread waits without a limit until the permit comes back.
    let waiter = { let p = p.clone(); thread::spawn(move || p.shutdown(None)) };
    held.success().unwrap();
    waiter.join().unwrap().unwrap();
    let s = p.stats().unwrap();
    assert_eq!((s.closed, s.running, s.completed), (1, 0, 1), "{s:?}");
    assert!(balanced(&s), "{s:?}");
}

#[test]
fn the_loop_thread_and_the_pools_closures_may_not_block() {
    let rt = Runtime::new().unwrap();
    let p = pool(&rt, 1);
    let got = Arc::new(Mutex::new(None));
    let (p2, g) = (p.clone(), got.clone());
    block_on(rt.post(move || {
        let blocking = p2.acquire_blocking(Priority::Normal, Some(Duration::from_secs(1))).map(drop);
        let shutdown = p2.shutdown(Some(Duration::from_secs(1)));
        *g.lock().unwrap() = Some((blocking.map_err(|e| e.kind()), shutdown.map_err(|e| e.kind())));
    })).unwrap();
    assert_eq!(got.lock().unwrap().take(), Some((Err(ErrorKind::Deadlock), Err(ErrorKind::Deadlock))));
    // Nor one of the pool's own closures: it would wait for itself.
    let p2 = p.clone();
    let r = block_on(p.spawn_blocking(Priority::Normal, move || p2.shutdown(Some(Duration::from_secs(1))))).unwrap();
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Deadlock);
    // Nothing was done: the pool still takes work.
    drop(p.try_acquire().unwrap());
}

#[test]
fn bad_options_are_named() {
    let rt = Runtime::new().unwrap();
    let adaptive = |min, ceiling, ms| Some(Adaptive { min, ceiling, target_latency: Duration::from_millis(ms) });
    for (opts, field) in [
        (TaskPoolOptions { max_concurrent: 0, ..Default::default() }, "max_concurrent"),
        (TaskPoolOptions { max_concurrent: 65537, ..Default::default() }, "max_concurrent"),
        (TaskPoolOptions { workers: 1025, ..Default::default() }, "workers"),
        (TaskPoolOptions { max_queued: (1 << 30) + 1, ..Default::default() }, "max_queued"),
        (TaskPoolOptions { adaptive: adaptive(1, None, 0), ..Default::default() }, "target_latency"),
        (TaskPoolOptions { adaptive: adaptive(0, None, 10), ..Default::default() }, "min_concurrent"),
        (TaskPoolOptions { adaptive: adaptive(30, None, 10), ..Default::default() }, "min_concurrent"),
        (TaskPoolOptions { adaptive: adaptive(1, Some(10), 10), ..Default::default() }, "ceiling"),
        (TaskPoolOptions { name: Some(String::new()), ..Default::default() }, "name"),
        (TaskPoolOptions { name: Some("x".repeat(65)), ..Default::default() }, "name"),
        (TaskPoolOptions { name: Some("a\0b".into()), ..Default::default() }, "name"),
        (TaskPoolOptions { max_bypass: 0, ..Default::default() }, "max_bypass"),
    ] {
        let e = TaskPool::new(&rt, opts).err().expect(field);
        assert_eq!(e.kind(), ErrorKind::Invalid, "{field}");
        assert!(e.message().contains(field), "{field}: {e}");
    }
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<TaskPool>();
    send_sync::<Permit>();
    send::<sluice::PermitFuture>();
    send::<sluice::SpawnBlocking<Vec<u8>>>();
}

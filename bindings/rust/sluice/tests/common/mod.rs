//! Test helpers shared by the object tests: a std-only `block_on`, a
//! condition wait with a hang guard, and a tiny multi-threaded executor
//! for many tasks at once (the futures need no particular runtime).
#![allow(dead_code)]
use std::collections::VecDeque;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// Only against hangs: a test that reaches it has failed.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

struct Unpark(Thread);
impl Wake for Unpark {
    fn wake(self: Arc<Self>) { self.0.unpark(); }
}

pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let guard = Instant::now() + HANG_GUARD;
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        assert!(Instant::now() < guard, "hang guard");
        thread::park_timeout(Duration::from_millis(100));
    }
}

/// Polls a future once (registering a waker that does nothing).
pub fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    Pin::new(f).poll(&mut Context::from_waker(&waker))
}

/// Waits for a condition the library makes true on its own thread.
pub fn wait_until(mut cond: impl FnMut() -> bool) {
    let guard = Instant::now() + HANG_GUARD;
    let mut spins = 0u32;
    while !cond() {
        assert!(Instant::now() < guard, "hang guard");
        spins += 1;
        if spins < 100 { thread::yield_now() } else { thread::sleep(Duration::from_millis(1)) }
    }
}

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Queue {
    ready: Mutex<VecDeque<Arc<Job>>>,
    cv: Condvar,
    left: AtomicUsize,
}

struct Job {
    fut: Mutex<Option<Task>>,
    queued: AtomicBool,
    queue: Arc<Queue>,
}

impl Wake for Job {
    fn wake(self: Arc<Self>) {
        if !self.queued.swap(true, Ordering::SeqCst) {
            self.queue.ready.lock().unwrap().push_back(self.clone());
            self.queue.cv.notify_one();
        }
    }
}

/// Runs every task to completion on `threads` worker threads.
pub fn run_tasks(threads: usize, tasks: Vec<Task>) {
    let queue = Arc::new(Queue { ready: Mutex::new(VecDeque::new()), cv: Condvar::new(), left: AtomicUsize::new(tasks.len()) });
    for t in tasks {
        let job = Arc::new(Job { fut: Mutex::new(Some(t)), queued: AtomicBool::new(true), queue: queue.clone() });
        queue.ready.lock().unwrap().push_back(job);
    }
    let workers: Vec<_> = (0..threads).map(|_| {
        let queue = queue.clone();
        thread::spawn(move || {
            let guard = Instant::now() + HANG_GUARD;
            loop {
                let job = {
                    let mut ready = queue.ready.lock().unwrap();
                    loop {
                        if queue.left.load(Ordering::SeqCst) == 0 {
                            return;
                        }
                        if let Some(j) = ready.pop_front() {
                            break j;
                        }
                        assert!(Instant::now() < guard, "hang guard");
                        ready = queue.cv.wait_timeout(ready, Duration::from_millis(100)).unwrap().0;
                    }
                };
                job.queued.store(false, Ordering::SeqCst);
                let mut slot = job.fut.lock().unwrap();
                if let Some(f) = slot.as_mut() {
                    let waker = Waker::from(job.clone());
                    if f.as_mut().poll(&mut Context::from_waker(&waker)).is_ready() {
                        *slot = None;
                        if queue.left.fetch_sub(1, Ordering::SeqCst) == 1 {
                            queue.cv.notify_all();
                        }
                    }
                }
            }
        })
    }).collect();
    for w in workers {
        w.join().unwrap();
    }
}

/// The other side of a cancel race: a thread that drops each item handed
/// to it (a guard or permit whose release grants a queued request) right
/// after a varying head start (0 to 1.5 ms of spinning, changing every
/// round), so that the caller's drop of the waiting future wins some
/// rounds and loses others.
pub struct RacingDropper<T> {
    tx: Option<std::sync::mpsc::Sender<T>>,
    barrier: Arc<std::sync::Barrier>,
    thread: Option<thread::JoinHandle<()>>,
}

impl<T: Send + 'static> RacingDropper<T> {
    pub fn new() -> RacingDropper<T> {
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let (tx, rx) = std::sync::mpsc::channel::<T>();
        let b = barrier.clone();
        let thread = thread::spawn(move || {
            for (i, item) in rx.into_iter().enumerate() {
                b.wait();
                let spin = Instant::now() + Duration::from_micros((i as u64 * 37) % 1500);
                while Instant::now() < spin {
                    std::hint::spin_loop();
                }
                drop(item);
            }
        });
        RacingDropper { tx: Some(tx), barrier, thread: Some(thread) }
    }

    /// Hands `item` over; returns when the thread is about to drop it, so
    /// what the caller does next races that drop.
    pub fn drop_racing(&self, item: T) {
        self.tx.as_ref().unwrap().send(item).unwrap();
        self.barrier.wait();
    }

    /// Ends the thread (a panic in it fails the test).
    pub fn join(mut self) {
        drop(self.tx.take());
        self.thread.take().unwrap().join().unwrap();
    }
}

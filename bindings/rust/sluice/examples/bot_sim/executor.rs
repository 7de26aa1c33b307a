//! A small std-only executor: a few threads poll a fixed set of tasks
//! until every one has finished. The futures are sluice's, woken from its
//! loop thread, so any executor would do; this one keeps the example free
//! of crates from outside the workspace.
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Wake, Waker};
use std::thread;

pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Queue {
    ready: Mutex<VecDeque<Arc<Job>>>,
    cv: Condvar,
    /// Tasks not finished yet; the threads leave when it reaches 0.
    left: AtomicUsize,
    /// A task panicked (it counts as finished, so the others go on).
    panicked: AtomicBool,
}

struct Job {
    fut: Mutex<Option<Task>>,
    /// In the ready queue already: a second wake adds nothing.
    queued: AtomicBool,
    queue: Arc<Queue>,
}

impl Wake for Job {
    fn wake(self: Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.queue.ready.lock().unwrap().push_back(self.clone());
            self.queue.cv.notify_one();
        }
    }
}

/// The executor's threads while they run.
pub struct Running {
    queue: Arc<Queue>,
    handles: Vec<thread::JoinHandle<()>>,
}

impl Running {
    /// True once every task has finished.
    pub fn finished(&self) -> bool { self.queue.left.load(Ordering::Acquire) == 0 }

    /// Waits for the threads; false if a task panicked.
    pub fn join(self) -> bool {
        let mut ok = true;
        for h in self.handles {
            ok &= h.join().is_ok();
        }
        ok && !self.queue.panicked.load(Ordering::Acquire)
    }
}

/// Runs `tasks` to completion on `threads` threads named "bot-exec".
pub fn spawn_all(threads: usize, tasks: Vec<Task>) -> Running {
    let queue = Arc::new(Queue { ready: Mutex::new(VecDeque::new()), cv: Condvar::new(),
                                 left: AtomicUsize::new(tasks.len()), panicked: AtomicBool::new(false) });
    for t in tasks {
        let job = Arc::new(Job { fut: Mutex::new(Some(t)), queued: AtomicBool::new(true), queue: queue.clone() });
        queue.ready.lock().unwrap().push_back(job);
    }
    let handles = (0..threads.max(1)).map(|_| {
        let queue = queue.clone();
        thread::Builder::new().name("bot-exec".into()).spawn(move || run(&queue)).expect("executor thread")
    }).collect();
    Running { queue, handles }
}

fn run(queue: &Arc<Queue>) {
    loop {
        let job = {
            let mut ready = queue.ready.lock().unwrap();
            loop {
                if queue.left.load(Ordering::Acquire) == 0 {
                    return;
                }
                if let Some(j) = ready.pop_front() {
                    break j;
                }
                ready = queue.cv.wait(ready).unwrap();
            }
        };
        // Cleared before polling, so a wake during the poll queues it again.
        job.queued.store(false, Ordering::Release);
        let mut slot = job.fut.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = slot.as_mut() {
            let waker = Waker::from(job.clone());
            // A panicking task (the hook has printed it) ends; the others
            // go on, and join() reports it.
            let done = catch_unwind(AssertUnwindSafe(|| f.as_mut().poll(&mut Context::from_waker(&waker)).is_ready()))
                .unwrap_or_else(|_| {
                    queue.panicked.store(true, Ordering::Release);
                    true
                });
            if done {
                *slot = None;
                if queue.left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    // The last one: wake the threads waiting for work to leave.
                    drop(queue.ready.lock().unwrap());
                    queue.cv.notify_all();
                }
            }
        }
    }
}

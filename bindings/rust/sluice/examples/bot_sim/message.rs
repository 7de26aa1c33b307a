//! One message's path, as an async function (examples/bot_sim/message.c
//! is the C program's, as loop callbacks):
//!   limits (user AND group, all or nothing)
//!   -> the user's lock (FIFO, 5 s deadline)
//!   -> sometimes the AI service (a call holding a task pool slot, retried
//!      behind a circuit breaker; a failure gets the fallback reply)
//!   -> one point for the user in PostgreSQL (retried; idempotent by the
//!      message id, so a retry after an ambiguous failure never counts twice)
//!   -> release the lock.
//! `--inflight` slot tasks each take the next message id and run its path.
//! The random choices of a message come from a generator seeded by the
//! run's seed and the message id, so the same seed makes the same choices
//! for every message whatever order the executor runs them in.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::{Breaker, Error, ErrorKind, Limiter, LockMode, Locks, Monitor, Pool, Priority, QueryOptions, RetryError,
             RetryPolicy, Runtime, TaskPool, Verdict};

use crate::options::Options;

/// The counters the progress line and the report read.
#[derive(Default)]
pub struct Counters {
    pub finished: AtomicU64,
    pub accepted: AtomicU64,
    pub rate_limited: AtomicU64,
    pub lock_failed: AtomicU64,
    pub db_failed: AtomicU64,
    pub ai_calls: AtomicU64,
    pub ai_failed: AtomicU64,
}

impl Counters {
    pub fn get(c: &AtomicU64) -> u64 { c.load(Ordering::Relaxed) }
    fn add(c: &AtomicU64) { c.fetch_add(1, Ordering::Relaxed); }
}

/// Everything the messages share. The objects are the C program's, with
/// the same options (bot_sim.rs builds them).
pub struct Sim {
    pub opt: Options,
    pub rt: Runtime,
    pub mon: Arc<Monitor>,
    pub user_limit: Limiter,
    pub group_limit: Limiter,
    pub locks: Locks,
    pub tasks: TaskPool,
    pub ai_breaker: Breaker,
    pub ai_retry: RetryPolicy,
    pub db_retry: RetryPolicy,
    pub pool: Pool,
    /// The next message id to start.
    pub next: AtomicU64,
    pub start: Instant,
    pub n: Counters,
}

/// xorshift64* seeded by splitmix64: plenty for picking users and failures.
struct Rng(u64);

impl Rng {
    fn for_message(seed: u64, id: u64) -> Rng {
        let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(id).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1) // xorshift never leaves 0
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn chance(&mut self, percent: f64) -> bool {
        (self.next() >> 11) as f64 * (100.0 / 9_007_199_254_740_992.0) < percent
    }
}

const ADD_POINT: &str = "SELECT bot_add_point($1::bigint, $2::int, $3::boolean)";

/// One in-flight slot: takes message ids until none are left.
pub async fn slot(sim: Arc<Sim>) {
    loop {
        let id = sim.next.fetch_add(1, Ordering::Relaxed);
        if id >= sim.opt.messages {
            return;
        }
        if sim.opt.rate > 0.0 {
            // Message k is offered at start + k / rate.
            let due = sim.start + Duration::from_secs_f64(id as f64 / sim.opt.rate);
            let now = Instant::now();
            if due > now {
                // Err only when the runtime closes, which is after the run.
                let _ = sim.rt.sleep(due - now).await;
            }
        }
        handle(&sim, id).await;
        Counters::add(&sim.n.finished);
    }
}

async fn handle(sim: &Sim, id: u64) {
    let mut rng = Rng::for_message(sim.opt.seed, id);
    let user = rng.next() % sim.opt.users;
    let ukey = format!("u{user}");
    let gkey = format!("g{}", user % sim.opt.groups);
    let want_ai = rng.chance(sim.opt.ai_percent);
    let t0 = Instant::now();

    // Err is Limit (more users active than the limiter tracks): either
    // way the bot answers "slow down". Not a handled message: not timed.
    let items = [(&sim.user_limit, ukey.as_str(), 1), (&sim.group_limit, gkey.as_str(), 1)];
    if !Limiter::check_many(&items).is_ok_and(|d| d.allowed) {
        Counters::add(&sim.n.rate_limited);
        return;
    }
    let code = locked_path(sim, id, user, &ukey, want_ai, &mut rng).await;
    let _ = sim.mon.record_code("message", t0.elapsed(), code);
}

/// From the lock on; the message's outcome code (0: a point stored).
async fn locked_path(sim: &Sim, id: u64, user: u64, ukey: &str, want_ai: bool, rng: &mut Rng) -> i32 {
    let guard = match sim.locks.acquire(ukey, LockMode::Exclusive, Some(Duration::from_secs(5))).await {
        Ok(g) => g,
        Err(e) => {
            Counters::add(&sim.n.lock_failed);
            return e.code();
        }
    };
    if want_ai {
        Counters::add(&sim.n.ai_calls);
        // The bot answers with its fallback reply; the message still counts.
        if ai(sim, rng).await.is_err() {
            Counters::add(&sim.n.ai_failed);
        }
    }
    let opts = QueryOptions { timeout: Duration::from_secs(5), idempotent: true, no_prepare: false };
    let (id, user) = (id as i64, user as i32);
    let fail_percent = sim.opt.db_fail_percent;
    // sluice::Error's own classification: a serialization failure, or an
    // ambiguous failure of this idempotent statement, is retryable.
    let stored = sim.db_retry.run(|| {
        let fail = rng.chance(fail_percent);
        sim.pool.query_with(ADD_POINT, &[&id, &user, &fail], &opts)
    }).await;
    drop(guard);
    match stored {
        Ok(_) => {
            Counters::add(&sim.n.accepted);
            0
        }
        Err(e) => {
            Counters::add(&sim.n.db_failed);
            code_of(&e)
        }
    }
}

fn code_of(e: &RetryError<Error>) -> i32 {
    match e {
        RetryError::Attempt { error, .. } => error.code(),
        RetryError::Stopped { reason, .. } => reason.code(),
    }
}

/// The C program's classification of an AI attempt: the service did not
/// answer, or no slot in time, or the queue was full: try again.
fn classify_ai(e: &Error) -> Verdict {
    let v = match e.kind() {
        ErrorKind::Unreachable | ErrorKind::TimedOut | ErrorKind::Full => Verdict::retryable(),
        _ => Verdict::permanent(),
    };
    v.code(e.code())
}

fn unreachable() -> Error { Error::new(sluice_sys::SLUICE_EUNREACHABLE, "the AI service did not answer") }

/// The AI step: up to 3 attempts behind the breaker.
async fn ai(sim: &Sim, rng: &mut Rng) -> Result<(), RetryError<Error>> {
    let fail_percent = sim.opt.ai_fail_percent;
    let ms = Duration::from_millis(sim.opt.ai_ms);
    let blocking = sim.opt.ai_blocking;
    sim.ai_retry.run_classified(classify_ai, || {
        let fail = rng.chance(fail_percent);
        async move {
            if blocking { ai_blocking(sim, ms, fail).await } else { ai_timer(sim, ms, fail).await }
        }
    }).await
}

/// One AI attempt as async work: a task pool slot held across a sluice
/// timer, released with the call's outcome (the pool's figures and its
/// monitor series see the failures).
async fn ai_timer(sim: &Sim, ms: Duration, fail: bool) -> Result<(), Error> {
    let permit = sim.tasks.acquire_with(Priority::Normal, Some(Duration::from_secs(10))).await?;
    if let Err(e) = sim.rt.sleep(ms).await {
        permit.failure(&e)?;
        return Err(e);
    }
    if fail {
        let e = unreachable();
        permit.failure(&e)?;
        return Err(e);
    }
    permit.success()
}

/// One AI attempt as the C program makes it: a blocking call on one of
/// the pool's worker threads. The closure's failure is a value, so the
/// pool counts every call that ran as completed.
async fn ai_blocking(sim: &Sim, ms: Duration, fail: bool) -> Result<(), Error> {
    let failed = sim.tasks.spawn_blocking_with(Priority::Normal, Some(Duration::from_secs(10)), move || {
        std::thread::sleep(ms);
        fail
    }).await?;
    if failed { Err(unreachable()) } else { Ok(()) }
}

//! Safe Rust bindings of libsluice (see bindings/rust/README.md): runtime,
//! PostgreSQL pool (with pipelined batches and LISTEN/NOTIFY), monitor,
//! keyed locks, rate limiter, retry policy, circuit breaker and task pool.
//!
//! Waiting operations are futures that work on any executor: the library's
//! callback runs once on its loop thread, stores the outcome and wakes the
//! stored `Waker`. Dropping a future before it completes cancels the
//! operation.
mod breaker;
mod clock;
mod error;
mod grant;
mod limiter;
mod locks;
mod monitor;
mod pg;
mod pg_batch;
mod pg_listen;
mod retry;
mod runtime;
pub mod taskpool;
mod util;

pub use breaker::{Breaker, BreakerOptions, BreakerState, BreakerStats, BreakerWindow, Permit, StateListener};
pub use clock::{Clock, ManualClock};
pub use error::{Error, ErrorKind, Result};
pub use limiter::{Algorithm, Decision, LimitAcquire, Limiter, LimiterFull, LimiterOptions, LimiterStats, Reason};
pub use locks::{HeldTooLong, LockFuture, LockGuard, LockMode, Locks, LocksFull, LocksOptions, LocksStats};
pub use monitor::{Monitor, OpStats, Span, Window};
pub use retry::{next_delay, retry_seed, Classify, Jitter, Outcome, RetryError, RetryListener, RetryOptions, RetryPolicy,
                RetryStats, Verdict, ATTEMPT_ERROR_CODE};
pub use pg::{Acquire, Close, ColumnIndex, Conn, ConnQuery, Execute, FromSql, Pool, PoolOptions, PoolStats, Query,
             QueryOptions, Rows, ToParam};
pub use pg_batch::{Batch, BatchError, BatchResults, BatchRun, ConnBatch};
pub use pg_listen::{Listener, Notification, Recv, DEFAULT_LISTEN_CAPACITY};
pub use taskpool::{Adaptive, Permit as TaskPermit, PermitFuture, Priority, SpawnBlocking, TaskPool, TaskPoolFull,
                   TaskPoolOptions, TaskPoolStats};
pub use runtime::{Memory, Post, Runtime, RuntimeBuilder, Sleep, Stats};

/// The library major these bindings were written for.
pub const ABI_MAJOR: u32 = 0;

/// The loaded library's version; fails if its major is not ABI_MAJOR.
pub fn version() -> Result<(u32, u32, u32)> {
    let v = unsafe { sluice_sys::sluice_version() };
    let (major, minor, patch) = (v >> 16, (v >> 8) & 0xff, v & 0xff);
    if major != ABI_MAJOR {
        return Err(Error::new(sluice_sys::SLUICE_EVERSION,
                              format!("libsluice {major}.{minor}.{patch} is loaded; these bindings need major {ABI_MAJOR}")));
    }
    Ok((major, minor, patch))
}

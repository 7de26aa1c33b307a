//! Retry policies (`sluice/retry.h`): `policy.run(|| async { ... }).await`.
//!
//! A run is driven here, on the caller's executor, through a C session:
//! the library decides (attempts left, breaker, deadline, shared budget,
//! backoff with jitter, retry-after hints) and keeps the figures; this
//! module makes the attempts and sleeps the delays on sluice timers.
use std::ffi::CString;
use std::fmt;
use std::future::{poll_fn, Future};
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::ptr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use sluice_sys as sys;

use crate::breaker::Breaker;
use crate::clock::{raw_clock, Clock, ClockBox};
use crate::error::{check, Error, ErrorKind, Result};
use crate::monitor::Monitor;
use crate::runtime::{Runtime, Sleep};
use crate::util::{ceil_ms, ns};

/// How the backoff delay is randomised (docs/retry.md, "Picking a jitter
/// mode").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exact delays: base, base * multiplier, ... (tests, single clients).
    None,
    /// Uniform in [0, delay] (the default).
    Full,
    /// Uniform in [delay / 2, delay].
    Equal,
    /// AWS "decorrelated": grows from the previous delay; clumps at the cap.
    Decorrelated,
    /// Decorrelated growth without the clump at the cap.
    Spread,
}

/// Whether a failed attempt may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Retryable,
    /// Retrying cannot help (a bad request, a constraint violation).
    Permanent,
}

/// The code an attempt's error is reported with when it has no sluice code
/// of its own (the monitor's `<name>.attempt` series and `on_retry` see it).
pub const ATTEMPT_ERROR_CODE: i32 = -1000;

/// How an attempt's error is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    /// A non-zero code for figures and listeners (0 is taken as
    /// [`ATTEMPT_ERROR_CODE`]).
    pub code: i32,
    /// The server's "come back in": the next attempt is no earlier than
    /// this, even beyond `max_delay`; a hint past the deadline ends the run.
    pub retry_after: Option<Duration>,
}

impl Verdict {
    pub fn retryable() -> Verdict { Verdict { outcome: Outcome::Retryable, code: ATTEMPT_ERROR_CODE, retry_after: None } }
    pub fn permanent() -> Verdict { Verdict { outcome: Outcome::Permanent, code: ATTEMPT_ERROR_CODE, retry_after: None } }
    pub fn after(mut self, d: Duration) -> Verdict { self.retry_after = Some(d); self }
    pub fn code(mut self, code: i32) -> Verdict { self.code = code; self }
}

/// The default classification of an error type, used by [`RetryPolicy::run`].
pub trait Classify {
    fn classify(&self) -> Verdict;
}

impl Classify for Error {
    /// A failed query is retryable when `sluice_pg_result_retryable` said
    /// so (nothing sent, serialization failure or deadlock, a connection
    /// error before the statement ran, or an ambiguous failure of an
    /// idempotent query). Other sluice errors are retryable when nothing
    /// happened and waiting may help: `TimedOut`, `Again`, `Exhausted`,
    /// `Unreachable`, `Full`, `Rejected`. Everything else is permanent.
    fn classify(&self) -> Verdict {
        let retry = if self.is_query_error() {
            self.retryable()
        } else {
            matches!(self.kind(), ErrorKind::TimedOut | ErrorKind::Again | ErrorKind::Exhausted
                                  | ErrorKind::Unreachable | ErrorKind::Full | ErrorKind::Rejected)
        };
        let v = if retry { Verdict::retryable() } else { Verdict::permanent() };
        v.code(self.code())
    }
}

/// Told of every retry decided: the attempt that failed (1 = the first),
/// its code and the delay before the next one. Runs in the thread that
/// polls the run; a panic in it is caught.
pub type RetryListener = dyn Fn(u32, i32, Duration) + Send + Sync;

/// Options of a policy; `Default` gives the library's defaults (3
/// attempts, 100 ms doubling to at most 10 s, full jitter, budget 10% + 10
/// tokens). Durations are whole milliseconds.
#[derive(Clone)]
pub struct RetryOptions {
    /// Attempts including the first (1..1e6).
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub multiplier: f64,
    pub max_delay: Duration,
    pub jitter: Jitter,
    /// Deadline from the run's start; None: no limit.
    pub total_timeout: Option<Duration>,
    /// An attempt not done within this is dropped (cancelled) and counts
    /// as a retryable `TimedOut`; None: no limit.
    pub attempt_timeout: Option<Duration>,
    /// Retry tokens earned per run, [0.001, 100]; 0 turns the budget off.
    pub budget_ratio: f64,
    /// The budget's starting and largest balance.
    pub budget_tokens: u32,
    /// Makes the jitter reproducible; 0 seeds from the time.
    pub seed: u64,
    /// Consulted before every attempt; kept alive by the policy.
    pub breaker: Option<Breaker>,
    /// Records `<name>.attempt` and `<name>.run`; kept alive.
    pub monitor: Option<Arc<Monitor>>,
    /// Series prefix (default "retry").
    pub name: Option<String>,
    pub on_retry: Option<Arc<RetryListener>>,
    /// The policy's clock (deadlines, attempt deadlines); None: the
    /// library's monotonic clock. The delays are still slept in real time.
    pub clock: Option<Clock>,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            max_attempts: 3, base_delay: Duration::from_millis(100), multiplier: 2.0,
            max_delay: Duration::from_millis(10000), jitter: Jitter::Full, total_timeout: None, attempt_timeout: None,
            budget_ratio: 0.1, budget_tokens: 10, seed: 0, breaker: None, monitor: None, name: None, on_retry: None,
            clock: None,
        }
    }
}

fn ms64(d: Duration) -> i64 { i64::try_from(d.as_millis()).unwrap_or(i64::MAX) }

impl RetryOptions {
    /// The C options without callbacks, breaker or monitor.
    fn raw(&self) -> Result<sys::sluice_retry_options> {
        let mut o: sys::sluice_retry_options = unsafe { std::mem::zeroed() };
        check(unsafe { sys::sluice_retry_options_init(&mut o, sys::SLUICE_RETRY_OPTIONS_VERSION) })?;
        o.max_attempts = self.max_attempts;
        o.base_delay_ms = ms64(self.base_delay);
        o.multiplier = self.multiplier;
        o.max_delay_ms = ms64(self.max_delay);
        o.jitter = match self.jitter {
            Jitter::None => sys::SLUICE_RETRY_JITTER_NONE,
            Jitter::Full => sys::SLUICE_RETRY_JITTER_FULL,
            Jitter::Equal => sys::SLUICE_RETRY_JITTER_EQUAL,
            Jitter::Decorrelated => sys::SLUICE_RETRY_JITTER_DECORRELATED,
            Jitter::Spread => sys::SLUICE_RETRY_JITTER_SPREAD,
        };
        o.total_timeout_ms = self.total_timeout.map_or(0, ms64);
        o.attempt_timeout_ms = self.attempt_timeout.map_or(0, ms64);
        o.budget_ratio = self.budget_ratio;
        o.budget_tokens = self.budget_tokens;
        o.seed = self.seed;
        Ok(o)
    }
}

/// The backoff arithmetic alone (`sluice_retry_next_delay`): the delay
/// before retry `retry` (1 = before the second attempt), given the previous
/// delay (zero for the first retry) and a splitmix64 state it advances.
/// Errors: `Invalid` (retry 0, an invalid option).
pub fn next_delay(options: &RetryOptions, retry: u32, prev: Duration, rng_state: &mut u64) -> Result<Duration> {
    let o = options.raw()?;
    let mut d = 0;
    check(unsafe { sys::sluice_retry_next_delay(&o, retry, ns(prev), rng_state, &mut d) })?;
    Ok(Duration::from_nanos(d))
}

/// The splitmix64 state the `run`-th run (0, 1, ...) of a policy seeded
/// with `seed` to need a retry draws its delays from.
pub fn retry_seed(seed: u64, run: u64) -> u64 { unsafe { sys::sluice_retry_seed(seed, run) } }

/// The policy's figures (`sluice_retry_stats`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryStats {
    pub runs: u64,
    pub in_flight: u64,
    pub attempts: u64,
    pub successes_first: u64,
    pub successes_after_retry: u64,
    pub failures_first: u64,
    pub failures_after_retry: u64,
    pub budget_refusals: u64,
    pub breaker_refusals: u64,
    pub deadline_stops: u64,
    pub attempt_timeouts: u64,
    pub cancelled: u64,
    pub late_reports: u64,
    pub budget_balance: f64,
}

/// How a run failed.
#[derive(Debug)]
pub enum RetryError<E> {
    /// The run ended on this attempt's error: it was permanent, or no
    /// attempts were left.
    Attempt { error: E, attempts: u32 },
    /// The policy stopped the run: `Budget` (retry budget exhausted),
    /// `TimedOut` (deadline, or the last attempt's own timeout), `Open`
    /// (breaker), `Closed` (runtime shut down). `last` is the latest
    /// attempt error, if any attempt failed with one.
    Stopped { reason: Error, last: Option<E>, attempts: u32 },
}

impl<E> RetryError<E> {
    /// Attempts made (the refused one not counted).
    pub fn attempts(&self) -> u32 {
        match self { RetryError::Attempt { attempts, .. } | RetryError::Stopped { attempts, .. } => *attempts }
    }
    /// The policy's reason, if it stopped the run.
    pub fn stop_kind(&self) -> Option<ErrorKind> {
        match self { RetryError::Stopped { reason, .. } => Some(reason.kind()), _ => None }
    }
    /// The latest attempt's error, if there was one.
    pub fn last_error(&self) -> Option<&E> {
        match self { RetryError::Attempt { error, .. } => Some(error), RetryError::Stopped { last, .. } => last.as_ref() }
    }
    pub fn into_last_error(self) -> Option<E> {
        match self { RetryError::Attempt { error, .. } => Some(error), RetryError::Stopped { last, .. } => last }
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryError::Attempt { error, attempts } => write!(f, "failed after {attempts} attempt(s): {error}"),
            RetryError::Stopped { reason, last: Some(e), attempts } =>
                write!(f, "{reason} after {attempts} attempt(s); last error: {e}"),
            RetryError::Stopped { reason, last: None, attempts } => write!(f, "{reason} after {attempts} attempt(s)"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for RetryError<E> {}

// ---- the policy ---------------------------------------------------------------

/// Frees the C policy, then what it uses (breaker, monitor, callbacks).
struct RetryInner {
    raw: *mut sys::sluice_retry,
    rt: Runtime,
    clock: Option<ClockBox>,
    _listener: Option<Box<Arc<RetryListener>>>,
    _name: Option<CString>,
    _breaker: Option<Breaker>,
    _monitor: Option<Arc<Monitor>>,
}

unsafe impl Send for RetryInner {}
unsafe impl Sync for RetryInner {}

impl RetryInner {
    fn now_ns(&self) -> u64 {
        match &self.clock {
            Some(c) => c.now_ns(),
            None => unsafe { sys::sluice_now_ns() },
        }
    }
}

impl Drop for RetryInner {
    /// Runs once no clone and no run is left.
    fn drop(&mut self) {
        unsafe { sys::sluice_retry_free(self.raw) };
    }
}

unsafe extern "C" fn on_retry(ud: *mut c_void, attempt: u32, code: c_int, delay_ns: u64) {
    let f = &*(ud as *const Arc<RetryListener>);
    let _ = catch_unwind(AssertUnwindSafe(|| f(attempt, code, Duration::from_nanos(delay_ns))));
}

/// A retry policy, shared by every run (budget, breaker, figures). Cheap
/// to clone, `Send + Sync`. Its runs sleep on the runtime's timers.
#[derive(Clone)]
pub struct RetryPolicy {
    inner: Arc<RetryInner>,
}

/// A C session; freeing it ends a run not over yet as cancelled (and gives
/// back the breaker ticket of an attempt in flight).
struct Session {
    raw: *mut sys::sluice_retry_session,
}

// Used by one thread at a time (the one polling the run).
unsafe impl Send for Session {}

impl Drop for Session {
    fn drop(&mut self) { unsafe { sys::sluice_retry_session_free(self.raw) } }
}

impl Session {
    fn new(policy: &RetryInner, deadline_ns: u64) -> Result<Session> {
        let mut raw = ptr::null_mut();
        check(unsafe { sys::sluice_retry_session_new(policy.raw, deadline_ns, &mut raw) })?;
        Ok(Session { raw })
    }
    fn attempts(&self) -> u32 { unsafe { sys::sluice_retry_session_attempts(self.raw) } }
}

fn stop_error(status: c_int) -> Error {
    let msg = match status {
        sys::SLUICE_EBUDGET => "retry budget exhausted",
        sys::SLUICE_ETIMEDOUT => "the run's deadline leaves no time for another attempt",
        sys::SLUICE_EOPEN => "circuit breaker open",
        sys::SLUICE_ECLOSED => "retry policy or runtime closed",
        _ => "",
    };
    Error::new(status, msg)
}

/// Runs `fut` for at most as long as `limit`; None if the limit came
/// first (the attempt is then dropped, which cancels sluice futures).
async fn within<F: Future>(fut: F, limit: Sleep) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut limit = pin!(limit);
    let mut limit_live = true;
    poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if limit_live {
            match limit.as_mut().poll(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(None),
                Poll::Ready(Err(_)) => limit_live = false, // runtime closing: wait for the attempt alone
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }).await
}

impl RetryPolicy {
    /// Creates a policy whose runs sleep on `rt`.
    /// Errors: `Invalid` (an option out of range, named in the message),
    /// `NoMemory`.
    pub fn new(rt: &Runtime, options: RetryOptions) -> Result<RetryPolicy> {
        crate::version()?;
        let name = options.name.as_deref().map(CString::new).transpose()
            .map_err(|_| Error::new(sys::SLUICE_EINVAL, "retry policy name has a NUL byte"))?;
        let mut o = options.raw()?;
        o.name = name.as_ref().map_or(ptr::null(), |n| n.as_ptr());
        o.breaker = options.breaker.as_ref().map_or(ptr::null_mut(), |b| b.inner.raw);
        o.monitor = options.monitor.as_ref().map_or(ptr::null_mut(), |m| m.raw);
        let listener = options.on_retry.map(Box::new);
        if let Some(l) = &listener {
            o.on_retry = Some(on_retry);
            o.event_user_data = &**l as *const Arc<RetryListener> as *mut c_void;
        }
        let (clock, clock_ud, clock_box) = raw_clock(&options.clock);
        o.clock = clock;
        o.clock_user_data = clock_ud;
        let mut raw = ptr::null_mut();
        // No runtime for C: runs are sessions, and their waits are our sleeps.
        check(unsafe { sys::sluice_retry_new(&mut raw, ptr::null_mut(), &o) })?;
        Ok(RetryPolicy { inner: Arc::new(RetryInner {
            raw, rt: Runtime { inner: rt.inner.clone() }, clock: clock_box, _listener: listener, _name: name,
            _breaker: options.breaker, _monitor: options.monitor,
        }) })
    }

    /// Now on the policy's clock, for a deadline given to `run_by`.
    pub fn now_ns(&self) -> u64 { self.inner.now_ns() }

    /// Runs `f` until an attempt succeeds or the policy stops, classifying
    /// errors with their [`Classify`] impl:
    /// `policy.run(|| async { pool.query("...", &[]).await }).await`.
    /// Dropping the future cancels the run (and the attempt in flight).
    pub fn run<F, Fut, T, E>(&self, f: F) -> impl Future<Output = std::result::Result<T, RetryError<E>>>
    where F: FnMut() -> Fut, Fut: Future<Output = std::result::Result<T, E>>, E: Classify {
        self.run_by(0, E::classify, f)
    }

    /// `run` with the caller's classifier (retryable or permanent, code,
    /// retry-after hint) for any error type.
    pub fn run_classified<F, Fut, T, E, C>(&self, classify: C, f: F)
        -> impl Future<Output = std::result::Result<T, RetryError<E>>>
    where F: FnMut() -> Fut, Fut: Future<Output = std::result::Result<T, E>>, C: Fn(&E) -> Verdict {
        self.run_by(0, classify, f)
    }

    /// `run_classified` with an absolute deadline on the policy's clock
    /// (`policy.now_ns() + ...`; 0: none beyond `total_timeout`).
    pub fn run_by<F, Fut, T, E, C>(&self, deadline_ns: u64, classify: C, mut f: F)
        -> impl Future<Output = std::result::Result<T, RetryError<E>>>
    where F: FnMut() -> Fut, Fut: Future<Output = std::result::Result<T, E>>, C: Fn(&E) -> Verdict {
        let inner = self.inner.clone();
        async move {
            let stopped = |reason, last, attempts| Err(RetryError::Stopped { reason, last, attempts });
            let session = match Session::new(&inner, deadline_ns) {
                Ok(s) => s,
                Err(e) => return stopped(e, None, 0),
            };
            let mut last: Option<E> = None;
            loop {
                let (mut attempt_deadline, mut status) = (0u64, 0);
                let rc = unsafe { sys::sluice_retry_session_begin(session.raw, &mut attempt_deadline, &mut status) };
                if rc < 0 {
                    return stopped(Error::last(rc), last, session.attempts());
                }
                if rc == 0 {
                    return stopped(stop_error(status), last, session.attempts());
                }
                let attempt = f();
                let out = if attempt_deadline != 0 {
                    let left = attempt_deadline.saturating_sub(inner.now_ns());
                    within(attempt, inner.rt.sleep(Duration::from_millis(ceil_ms(Duration::from_nanos(left))))).await
                } else {
                    Some(attempt.await)
                };
                let (outcome, code, hint, error) = match out {
                    Some(Ok(v)) => {
                        let (mut delay, mut st) = (0, 0);
                        unsafe {
                            sys::sluice_retry_session_end(session.raw, sys::SLUICE_RETRY_SUCCESS, 0, 0, &mut delay, &mut st)
                        };
                        return Ok(v);
                    }
                    Some(Err(e)) => {
                        let v = classify(&e);
                        let outcome = match v.outcome {
                            Outcome::Retryable => sys::SLUICE_RETRY_RETRYABLE,
                            Outcome::Permanent => sys::SLUICE_RETRY_PERMANENT,
                        };
                        let code = if v.code == 0 { ATTEMPT_ERROR_CODE } else { v.code };
                        (outcome, code, v.retry_after.map_or(0, ns), Some(e))
                    }
                    None => (sys::SLUICE_RETRY_RETRYABLE, sys::SLUICE_ETIMEDOUT, 0, None),
                };
                let (mut delay, mut st) = (0u64, 0);
                let rc = unsafe { sys::sluice_retry_session_end(session.raw, outcome, code, hint, &mut delay, &mut st) };
                let attempts = session.attempts();
                if rc < 0 {
                    return stopped(Error::last(rc), error.or(last), attempts);
                }
                if rc == 0 {
                    return match error {
                        Some(e) if st == code => Err(RetryError::Attempt { error: e, attempts }),
                        Some(e) => stopped(stop_error(st), Some(e), attempts),
                        None if st == sys::SLUICE_ETIMEDOUT =>
                            stopped(Error::new(st, format!("attempt {attempts} timed out")), last, attempts),
                        None => stopped(stop_error(st), last, attempts),
                    };
                }
                if error.is_some() {
                    last = error;
                }
                if delay > 0 {
                    // Rounded up to the timer's millisecond: never earlier than asked.
                    let wait = Duration::from_millis(ceil_ms(Duration::from_nanos(delay)));
                    if let Err(e) = inner.rt.sleep(wait).await {
                        return stopped(e, last, attempts);
                    }
                }
            }
        }
    }

    pub fn stats(&self) -> Result<RetryStats> {
        let mut s = sys::sluice_retry_stats { size: std::mem::size_of::<sys::sluice_retry_stats>(), ..Default::default() };
        check(unsafe { sys::sluice_retry_stats_get(self.inner.raw, &mut s) })?;
        Ok(RetryStats {
            runs: s.runs, in_flight: s.in_flight, attempts: s.attempts, successes_first: s.successes_first,
            successes_after_retry: s.successes_after_retry, failures_first: s.failures_first,
            failures_after_retry: s.failures_after_retry, budget_refusals: s.budget_refusals,
            breaker_refusals: s.breaker_refusals, deadline_stops: s.deadline_stops,
            attempt_timeouts: s.attempt_timeouts, cancelled: s.cancelled, late_reports: s.late_reports,
            budget_balance: s.budget_balance,
        })
    }

    /// The raw handle, for other crates built on sluice-sys.
    pub fn as_raw(&self) -> *mut sys::sluice_retry { self.inner.raw }
}

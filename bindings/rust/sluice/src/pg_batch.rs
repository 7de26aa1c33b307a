//! Pipelined batches (`sluice_pg_batch_*`): statements sent at once with
//! one Sync, so they cost one round trip and form one implicit transaction
//! (all commit or none), with a result per statement.
use std::ffi::CString;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::os::raw::{c_char, c_int, c_void};
use std::pin::Pin;
use std::ptr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use sluice_sys as sys;

use crate::error::{check, Error, ErrorKind, Result};
use crate::pg::{cstring, Conn, Pool, PoolInner, QueryOptions, Rows, ToParam};
use crate::util::{lock, release_arc, start_op, OpHandle};

/// Statements to run together, with their parameters. Build it with
/// `add`, then run it with [`Pool::batch`] or [`Conn::batch`] as often as
/// needed: each run copies it into a fresh C batch (whose results the
/// run's outcome owns).
#[derive(Clone, Default)]
pub struct Batch {
    statements: Vec<Statement>,
}

#[derive(Clone)]
struct Statement {
    sql: CString,
    params: Vec<Option<CString>>,
}

impl Batch {
    pub fn new() -> Batch { Batch::default() }

    /// Appends a statement with text parameters ($1..$n; `None` is NULL).
    /// Errors: `Invalid` (a NUL byte in the SQL or a parameter, more than
    /// 65535 parameters); the batch is unchanged then.
    pub fn add(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<&mut Batch> {
        if params.len() > 65535 {
            return Err(Error::new(sys::SLUICE_EINVAL, format!("{} parameters (at most 65535)", params.len())));
        }
        let sql = cstring("sql", sql)?;
        let params = params.iter().map(|p| p.to_param().map(|s| cstring("a parameter", &s)).transpose())
            .collect::<Result<Vec<_>>>()?;
        self.statements.push(Statement { sql, params });
        Ok(self)
    }

    /// Statements added.
    pub fn len(&self) -> usize { self.statements.len() }
    pub fn is_empty(&self) -> bool { self.statements.is_empty() }
    pub fn clear(&mut self) { self.statements.clear() }
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.statements.iter().map(|s| s.sql.to_string_lossy())).finish()
    }
}

/// One run's C batch: its statements, then its results. Freed on drop.
struct RawBatch(*mut sys::sluice_pg_batch);

// The library touches it only while it runs, and then only the shared
// state of the run holds it.
unsafe impl Send for RawBatch {}
unsafe impl Sync for RawBatch {}

impl RawBatch {
    fn build(batch: &Batch) -> Result<RawBatch> {
        let mut raw = ptr::null_mut();
        check(unsafe { sys::sluice_pg_batch_new(&mut raw) })?;
        let b = RawBatch(raw);
        for s in &batch.statements {
            let ptrs: Vec<*const c_char> = s.params.iter().map(|p| p.as_ref().map_or(ptr::null(), |c| c.as_ptr())).collect();
            let values = if ptrs.is_empty() { ptr::null() } else { ptrs.as_ptr() };
            check(unsafe {
                sys::sluice_pg_batch_add(b.0, s.sql.as_ptr(), ptrs.len() as c_int, values, ptr::null(), ptr::null())
            })?;
        }
        Ok(b)
    }
}

impl Drop for RawBatch {
    fn drop(&mut self) { unsafe { sys::sluice_pg_batch_free(self.0) } }
}

// ---- outcomes ----------------------------------------------------------------

/// Every statement of a batch succeeded: their rows, in order.
pub struct BatchResults {
    rows: Vec<Rows>, // views into `_raw`: dropped first (field order)
    _raw: RawBatch,
}

impl BatchResults {
    pub fn len(&self) -> usize { self.rows.len() }
    pub fn is_empty(&self) -> bool { self.rows.is_empty() }
    /// The rows of statement `i`.
    pub fn get(&self, i: usize) -> Option<&Rows> { self.rows.get(i) }
    pub fn iter(&self) -> std::slice::Iter<'_, Rows> { self.rows.iter() }
}

impl std::ops::Index<usize> for BatchResults {
    type Output = Rows;
    fn index(&self, i: usize) -> &Rows { &self.rows[i] }
}

impl<'a> IntoIterator for &'a BatchResults {
    type Item = &'a Rows;
    type IntoIter = std::slice::Iter<'a, Rows>;
    fn into_iter(self) -> Self::IntoIter { self.rows.iter() }
}

impl fmt::Debug for BatchResults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.debug_list().entries(self.rows.iter()).finish() }
}

/// A batch that failed. `error()` is the first failing statement's error
/// (with its SQLSTATE, `sent`, `retryable`), or why the batch did not
/// start; `failed_at()` says which statement; `statement(i)` gives each
/// statement's own outcome (those after a failure did not run:
/// `Canceled`, or the batch's error if the batch never reached the
/// server). Nothing committed unless the statements managed transactions
/// themselves. `?` turns it into its `Error`.
pub struct BatchError {
    error: Error,
    failed_at: Option<usize>,
    statements: Vec<Result<Rows>>, // views into `_raw`: dropped first
    _raw: Option<RawBatch>,
}

impl BatchError {
    fn not_started(error: Error) -> BatchError {
        BatchError { error, failed_at: None, statements: Vec::new(), _raw: None }
    }

    pub fn error(&self) -> &Error { &self.error }
    pub fn kind(&self) -> ErrorKind { self.error.kind() }
    /// The index of the first statement that failed; None if the batch
    /// was refused before it started (bad input, `Full`, `Closed`, ...).
    pub fn failed_at(&self) -> Option<usize> { self.failed_at }
    /// Statement `i`'s outcome; None if the batch did not start or `i` is
    /// out of range.
    pub fn statement(&self, i: usize) -> Option<std::result::Result<&Rows, &Error>> {
        self.statements.get(i).map(|r| r.as_ref())
    }
    pub fn into_error(self) -> Error { self.error }
}

impl From<BatchError> for Error {
    fn from(e: BatchError) -> Error { e.error }
}

impl fmt::Debug for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchError").field("error", &self.error).field("failed_at", &self.failed_at).finish()
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.failed_at {
            Some(i) => write!(f, "batch statement {i}: {}", self.error),
            None => write!(f, "batch: {}", self.error),
        }
    }
}

impl std::error::Error for BatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> { Some(&self.error) }
}

/// Reads the per-statement results of a run whose callback got `status`.
/// A batch refused before anything was sent may hold a single result; the
/// statements without one get the batch's error.
fn outcome(raw: RawBatch, n: usize, status: c_int, idempotent: bool) -> std::result::Result<BatchResults, BatchError> {
    let mut statements = Vec::with_capacity(n);
    let mut failed_at = None;
    for i in 0..n {
        let r = unsafe { sys::sluice_pg_batch_result(raw.0, i) };
        let one = if r.is_null() {
            let code = if status == 0 { sys::SLUICE_EINTERNAL } else { status };
            Err(Error::new(code, "no result for this statement: the batch stopped before it"))
        } else {
            match unsafe { sys::sluice_pg_result_status(r) } {
                0 => Ok(Rows::borrowed(r)),
                st => Err(Error::from_result(st, r, idempotent)),
            }
        };
        if one.is_err() && failed_at.is_none() {
            failed_at = Some(i);
        }
        statements.push(one);
    }
    match failed_at {
        None if status == 0 => {
            let rows = statements.into_iter().map(|r| r.ok().expect("every statement succeeded")).collect();
            Ok(BatchResults { rows, _raw: raw })
        }
        None => Err(BatchError { error: Error::new(status, ""), failed_at: None, statements, _raw: Some(raw) }),
        Some(i) => {
            let error = statements[i].as_ref().err().cloned().expect("the failed statement's error");
            Err(BatchError { error, failed_at: Some(i), statements, _raw: Some(raw) })
        }
    }
}

// ---- running -------------------------------------------------------------------

/// The loop thread's status and the run's C batch, shared by the future
/// and the library. The C batch must outlive the run: whichever reference
/// goes last (the library's is released after its callback) frees a batch
/// nobody took.
#[derive(Default)]
struct BatchShared {
    state: Mutex<BatchState>,
}

#[derive(Default)]
struct BatchState {
    raw: Option<RawBatch>,
    status: Option<c_int>,
    waker: Option<Waker>,
}

unsafe extern "C" fn on_batch(ud: *mut c_void, status: c_int) {
    let shared = &*(ud as *const BatchShared);
    let waker = {
        let mut s = lock(&shared.state);
        s.status = Some(status);
        s.waker.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
}

type Start<'a> = dyn FnOnce(*mut sys::sluice_pg_batch, *const sys::sluice_pg_query_options, *mut c_void,
                            *mut *mut sys::sluice_op) -> c_int + 'a;

/// The future of [`Pool::batch`]: the rows of every statement, or a
/// [`BatchError`]. Dropping it before it completes cancels the batch (on
/// the server if it is running); the run's copy of the batch is freed once
/// the library is done with it.
#[must_use = "futures do nothing unless awaited; dropping this one cancels the batch"]
pub struct BatchRun {
    shared: Arc<BatchShared>,
    _op: OpHandle,
    len: usize,
    idempotent: bool,
    early: Option<BatchError>,
    _pool: Arc<PoolInner>,
}

impl BatchRun {
    fn start(pool: Arc<PoolInner>, batch: &Batch, options: &QueryOptions, call: Box<Start<'_>>) -> BatchRun {
        let shared = Arc::new(BatchShared::default());
        let (len, idempotent) = (batch.len(), options.idempotent);
        let failed = |shared, e| BatchRun { shared, _op: OpHandle::none(), len, idempotent,
                                            early: Some(BatchError::not_started(e)), _pool: pool.clone() };
        let raw = match RawBatch::build(batch) { Ok(r) => r, Err(e) => return failed(shared, e) };
        let raw_ptr = raw.0;
        lock(&shared.state).raw = Some(raw);
        let opts = options.raw();
        match start_op(&shared, |ud, op| call(raw_ptr, &opts, ud, op)) {
            Ok(op) => BatchRun { shared, _op: op, len, idempotent, early: None, _pool: pool },
            Err(e) => failed(shared, e),
        }
    }
}

impl Future for BatchRun {
    type Output = std::result::Result<BatchResults, BatchError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(e) = self.early.take() {
            return Poll::Ready(Err(e));
        }
        let (status, raw) = {
            let mut s = lock(&self.shared.state);
            match s.status {
                None => {
                    s.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Some(st) => (st, s.raw.take()),
            }
        };
        // The callback ran: the library is done with the C batch.
        match raw {
            Some(raw) => Poll::Ready(outcome(raw, self.len, status, self.idempotent)),
            None => panic!("BatchRun polled after it completed"),
        }
    }
}

/// The future of [`Conn::batch`]; borrows the connection until it is done.
#[must_use = "futures do nothing unless awaited; dropping this one cancels the batch"]
pub struct ConnBatch<'a>(BatchRun, PhantomData<&'a mut Conn>);

impl Future for ConnBatch<'_> {
    type Output = std::result::Result<BatchResults, BatchError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl Pool {
    /// Runs `batch` on a connection of the pool (acquire, run, release),
    /// with default options.
    pub fn batch(&self, batch: &Batch) -> BatchRun { self.batch_with(batch, &QueryOptions::default()) }

    /// Runs `batch` with `options`: the timeout covers the whole call,
    /// waiting for a connection included; `idempotent` lets the pool run
    /// it again on another connection after an ambiguous failure. The
    /// future's errors: the first failing statement's (`Pg`, `Ambiguous`,
    /// ...), or before it starts `Invalid` (empty batch), `Full`,
    /// `Closed`, `TimedOut`, `Exhausted`, `Unreachable`, `NoMemory`.
    pub fn batch_with(&self, batch: &Batch, options: &QueryOptions) -> BatchRun {
        let pool = self.inner.raw;
        BatchRun::start(self.inner.clone(), batch, options, Box::new(move |b, opts, ud, op| unsafe {
            sys::sluice_pg_pool_batch(pool, b, opts, Some(on_batch), ud, Some(release_arc::<BatchShared>), op)
        }))
    }
}

impl Conn {
    /// Runs `batch` on this connection (inside a transaction the lease
    /// opened, if any), with default options.
    pub fn batch(&mut self, batch: &Batch) -> ConnBatch<'_> { self.batch_with(batch, &QueryOptions::default()) }

    /// Runs `batch` on this connection with `options`. Errors as
    /// [`Pool::batch_with`], plus `State` (a statement still in flight).
    pub fn batch_with(&mut self, batch: &Batch, options: &QueryOptions) -> ConnBatch<'_> {
        let conn = self.raw;
        let run = BatchRun::start(self.pool.clone(), batch, options, Box::new(move |b, opts, ud, op| unsafe {
            sys::sluice_pg_conn_batch(conn, b, opts, Some(on_batch), ud, Some(release_arc::<BatchShared>), op)
        }));
        ConnBatch(run, PhantomData)
    }
}

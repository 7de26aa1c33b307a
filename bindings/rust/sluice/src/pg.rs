//! The PostgreSQL pool (`sluice/pg.h`): queries and leases as futures.
use std::ffi::{CStr, CString};
use std::future::Future;
use std::marker::PhantomData;
use std::os::raw::{c_char, c_int, c_void};
use std::pin::Pin;
use std::ptr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use sluice_sys as sys;

use crate::error::{check, Error, Result};
use crate::monitor::Monitor;
use crate::runtime::{on_status, release_shared, status_result, RawRuntime, Runtime, Shared};

fn ms32(d: Duration) -> u32 { u32::try_from(d.as_millis()).unwrap_or(u32::MAX) }

pub(crate) fn cstring(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::new(sys::SLUICE_EINVAL, format!("{what} has a NUL byte")))
}

// ---- options ----------------------------------------------------------------

/// Options of a pool; `Default` gives the library's defaults
/// (`SLUICE_PG_POOL_OPTIONS_INIT`). Durations are whole milliseconds;
/// `Duration::ZERO` means "off" where the C option says 0 does.
#[derive(Clone)]
pub struct PoolOptions {
    pub min_size: u32,
    pub max_size: u32,
    pub max_connecting: u32,
    /// Acquire queue bound; beyond it a query fails with `ErrorKind::Full`.
    pub max_waiters: u32,
    pub connect_timeout: Duration,
    pub health_interval: Duration,
    pub health_timeout: Duration,
    pub check_idle_after: Duration,
    pub max_lifetime: Duration,
    pub idle_timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// While the server is known to be down, fail at once with `Unreachable`.
    pub fail_fast: bool,
    /// Refuse at once with `Exhausted` a caller whose deadline is shorter
    /// than the foreseeable wait.
    pub admission_check: bool,
    /// Prepared statements cached per connection; 0 turns preparing off.
    pub statement_cache: u32,
    /// Records "pg.acquire", "pg.query" and "pg.connect"; the pool keeps
    /// the monitor alive until it is freed.
    pub monitor: Option<Arc<Monitor>>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            min_size: 1, max_size: 10, max_connecting: 2, max_waiters: 10000,
            connect_timeout: Duration::from_millis(5000), health_interval: Duration::from_millis(60000),
            health_timeout: Duration::from_millis(5000), check_idle_after: Duration::from_millis(1000),
            max_lifetime: Duration::from_millis(1800000), idle_timeout: Duration::from_millis(600000),
            backoff_base: Duration::from_millis(100), backoff_max: Duration::from_millis(5000),
            fail_fast: true, admission_check: true, statement_cache: 256, monitor: None,
        }
    }
}

/// Options of one statement.
#[derive(Debug, Clone, Copy)]
pub struct QueryOptions {
    /// The whole call, waiting for a connection included (default 30 s).
    /// At the deadline a running query is cancelled on the server and the
    /// caller gets `Ambiguous` (sent) or `TimedOut` (not sent).
    pub timeout: Duration,
    /// Safe to run twice: the pool may retry it after an ambiguous failure.
    pub idempotent: bool,
    /// Run unnamed even with a statement cache.
    pub no_prepare: bool,
}

impl Default for QueryOptions {
    fn default() -> Self { QueryOptions { timeout: Duration::from_millis(30000), idempotent: false, no_prepare: false } }
}

impl QueryOptions {
    pub fn timeout(d: Duration) -> QueryOptions { QueryOptions { timeout: d, ..Default::default() } }

    pub(crate) fn raw(&self) -> sys::sluice_pg_query_options {
        let mut flags = 0;
        if self.idempotent { flags |= sys::SLUICE_PG_IDEMPOTENT; }
        if self.no_prepare { flags |= sys::SLUICE_PG_NO_PREPARE; }
        sys::sluice_pg_query_options {
            version: sys::SLUICE_PG_QUERY_OPTIONS_VERSION,
            timeout_ms: i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX).max(1),
            flags,
        }
    }
}

// ---- parameters -------------------------------------------------------------

/// A value sent as a text parameter ($1..$n); `None` is SQL NULL.
pub trait ToParam {
    fn to_param(&self) -> Option<String>;
}

macro_rules! display_param {
    ($($t:ty),*) => { $(impl ToParam for $t {
        fn to_param(&self) -> Option<String> { Some(self.to_string()) }
    })* };
}
display_param!(i16, i32, i64, u32, f32, f64, str, String);

impl ToParam for bool {
    fn to_param(&self) -> Option<String> { Some(if *self { "t" } else { "f" }.into()) }
}
impl<T: ToParam + ?Sized> ToParam for &T {
    fn to_param(&self) -> Option<String> { (**self).to_param() }
}
impl<T: ToParam> ToParam for Option<T> {
    fn to_param(&self) -> Option<String> { self.as_ref().and_then(|v| v.to_param()) }
}

/// Parameters as the C call wants them; must live until the call returns
/// (the library copies them).
struct Params {
    _owned: Vec<Option<CString>>,
    ptrs: Vec<*const c_char>,
}

impl Params {
    fn new(params: &[&dyn ToParam]) -> Result<Params> {
        let owned = params.iter().map(|p| p.to_param().map(|s| cstring("a parameter", &s)).transpose())
            .collect::<Result<Vec<_>>>()?;
        let ptrs = owned.iter().map(|o| o.as_ref().map_or(ptr::null(), |c| c.as_ptr())).collect();
        Ok(Params { _owned: owned, ptrs })
    }
    fn values(&self) -> *const *const c_char { if self.ptrs.is_empty() { ptr::null() } else { self.ptrs.as_ptr() } }
}

// ---- values -----------------------------------------------------------------

/// A Rust value read from a text-format column.
pub trait FromSql: Sized {
    /// `None` is SQL NULL.
    fn from_sql(text: Option<&str>) -> Result<Self>;
}

fn conversion(what: &str, text: Option<&str>) -> Error {
    match text {
        None => Error::new(sys::SLUICE_EINVAL, format!("NULL read as {what} (use Option)")),
        Some(t) => Error::new(sys::SLUICE_EINVAL, format!("{t:?} is not a {what}")),
    }
}

macro_rules! parse_sql {
    ($($t:ty),*) => { $(impl FromSql for $t {
        fn from_sql(text: Option<&str>) -> Result<Self> {
            text.and_then(|t| t.parse().ok()).ok_or_else(|| conversion(stringify!($t), text))
        }
    })* };
}
parse_sql!(i16, i32, i64, u32, f32, f64);

impl FromSql for bool {
    fn from_sql(text: Option<&str>) -> Result<Self> {
        match text {
            Some("t") | Some("true") => Ok(true),
            Some("f") | Some("false") => Ok(false),
            _ => Err(conversion("bool", text)),
        }
    }
}
impl FromSql for String {
    fn from_sql(text: Option<&str>) -> Result<Self> { text.map(str::to_owned).ok_or_else(|| conversion("String", text)) }
}
impl<T: FromSql> FromSql for Option<T> {
    fn from_sql(text: Option<&str>) -> Result<Self> { text.map(|t| T::from_sql(Some(t))).transpose() }
}

/// A column by position or by name.
pub trait ColumnIndex {
    fn index(&self, rows: &Rows) -> Result<usize>;
}
impl ColumnIndex for usize {
    fn index(&self, rows: &Rows) -> Result<usize> {
        if *self < rows.column_count() { Ok(*self) } else {
            Err(Error::new(sys::SLUICE_ERANGE, format!("column {self} of {}", rows.column_count())))
        }
    }
}
impl ColumnIndex for &str {
    fn index(&self, rows: &Rows) -> Result<usize> {
        (0..rows.column_count()).find(|&i| rows.column_name(i) == Some(*self))
            .ok_or_else(|| Error::new(sys::SLUICE_ERANGE, format!("no column {self:?}")))
    }
}

/// The rows of a successful statement (text format). Immutable; may be
/// read from any thread. Freed on drop (a statement's rows in a batch
/// belong to the batch's results instead, and only borrow them).
pub struct Rows {
    raw: *mut sys::sluice_pg_result,
    owned: bool,
}

unsafe impl Send for Rows {}
unsafe impl Sync for Rows {}

impl Rows {
    pub fn len(&self) -> usize { unsafe { sys::sluice_pg_result_rows(self.raw) }.max(0) as usize }
    pub fn is_empty(&self) -> bool { self.len() == 0 }
    pub fn column_count(&self) -> usize { unsafe { sys::sluice_pg_result_columns(self.raw) }.max(0) as usize }
    pub fn column_name(&self, col: usize) -> Option<&str> {
        let p = unsafe { sys::sluice_pg_result_column_name(self.raw, col as c_int) };
        if p.is_null() { None } else { unsafe { CStr::from_ptr(p) }.to_str().ok() }
    }
    pub fn columns(&self) -> Vec<&str> { (0..self.column_count()).filter_map(|i| self.column_name(i)).collect() }
    /// The column's type OID (0 if out of range).
    pub fn column_type(&self, col: usize) -> u32 { unsafe { sys::sluice_pg_result_column_type(self.raw, col as c_int) } }
    /// Rows affected by INSERT/UPDATE/DELETE/..., or -1 if not reported.
    pub fn affected(&self) -> i64 { unsafe { sys::sluice_pg_result_affected(self.raw) } }

    /// The value's text, `None` for SQL NULL.
    pub fn text<C: ColumnIndex>(&self, row: usize, col: C) -> Result<Option<&str>> {
        let col = col.index(self)?;
        let mut v: *const c_char = ptr::null();
        let mut len = 0usize;
        let rc = unsafe { sys::sluice_pg_result_value(self.raw, row as c_int, col as c_int, &mut v, &mut len) };
        if rc < 0 {
            return Err(Error::last(rc));
        }
        if v.is_null() {
            return Ok(None);
        }
        let bytes = unsafe { std::slice::from_raw_parts(v as *const u8, len) };
        std::str::from_utf8(bytes).map(Some).map_err(|_| Error::new(sys::SLUICE_EINVAL, "value is not UTF-8"))
    }

    /// The value converted: `i64`, `f64`, `bool`, `String`, `Option<…>`, ...
    pub fn get<T: FromSql, C: ColumnIndex>(&self, row: usize, col: C) -> Result<T> {
        T::from_sql(self.text(row, col)?)
    }
}

impl Rows {
    /// A view of a result the batch owns; never freed through it.
    pub(crate) fn borrowed(raw: *const sys::sluice_pg_result) -> Rows { Rows { raw: raw as *mut _, owned: false } }
}

impl Drop for Rows {
    fn drop(&mut self) {
        if self.owned {
            unsafe { sys::sluice_pg_result_free(self.raw) }
        }
    }
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows").field("columns", &self.columns()).field("len", &self.len()).finish()
    }
}

// ---- the pool ---------------------------------------------------------------

/// Frees the pool, then what it needs: the monitor, then the runtime.
pub(crate) struct PoolInner {
    pub(crate) raw: *mut sys::sluice_pg_pool,
    _monitor: Option<Arc<Monitor>>,
    _rt: Arc<RawRuntime>,
}

unsafe impl Send for PoolInner {}
unsafe impl Sync for PoolInner {}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // Blocks until the (no-drain) close completed. Fields drop after.
        unsafe { sys::sluice_pg_pool_free(self.raw) };
    }
}

/// A PostgreSQL connection pool on a runtime. `Send + Sync`: every pool
/// function is thread-safe in C. Cloning is cheap (shared). The C pool is
/// freed when the last clone and the last query or lease are gone; it
/// keeps its runtime (and monitor) alive until then.
#[derive(Clone)]
pub struct Pool {
    pub(crate) inner: Arc<PoolInner>,
}

/// The pool's figures (a subset of `sluice_pg_pool_stats`).
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub total: u32,
    pub idle: u32,
    pub in_use: u32,
    pub connecting: u32,
    pub waiting: u32,
    pub peak_total: u32,
    pub down: bool,
    pub acquires: u64,
    pub connects: u64,
    pub connect_failures: u64,
    pub queries: u64,
    pub query_errors: u64,
    pub query_timeouts: u64,
    pub ambiguous: u64,
}

impl Pool {
    /// Creates the pool; it starts filling `min_size` in the background
    /// and returns at once. A malformed conninfo fails here.
    pub fn new(rt: &Runtime, conninfo: &str, options: PoolOptions) -> Result<Pool> {
        crate::version()?;
        let conninfo = cstring("conninfo", conninfo)?;
        let mut o: sys::sluice_pg_pool_options = unsafe { std::mem::zeroed() };
        check(unsafe { sys::sluice_pg_pool_options_init(&mut o, sys::SLUICE_PG_POOL_OPTIONS_VERSION) })?;
        o.conninfo = conninfo.as_ptr();
        o.min_size = options.min_size;
        o.max_size = options.max_size;
        o.max_connecting = options.max_connecting;
        o.max_waiters = options.max_waiters;
        o.connect_timeout_ms = ms32(options.connect_timeout);
        o.health_interval_ms = ms32(options.health_interval);
        o.health_timeout_ms = ms32(options.health_timeout);
        o.check_idle_after_ms = ms32(options.check_idle_after);
        o.max_lifetime_ms = ms32(options.max_lifetime);
        o.idle_timeout_ms = ms32(options.idle_timeout);
        o.backoff_base_ms = ms32(options.backoff_base);
        o.backoff_max_ms = ms32(options.backoff_max);
        o.fail_fast = options.fail_fast as c_int;
        o.admission_check = options.admission_check as c_int;
        o.statement_cache = options.statement_cache;
        o.monitor = options.monitor.as_ref().map_or(ptr::null_mut(), |m| m.raw);
        let mut raw = ptr::null_mut();
        check(unsafe { sys::sluice_pg_pool_new(&mut raw, rt.inner.0, &o) })?;
        Ok(Pool { inner: Arc::new(PoolInner { raw, _monitor: options.monitor, _rt: rt.inner.clone() }) })
    }

    /// Runs one statement on a connection of the pool (default options).
    pub fn query(&self, sql: &str, params: &[&dyn ToParam]) -> Query {
        self.query_with(sql, params, &QueryOptions::default())
    }

    /// Runs one statement with `options` (timeout, idempotent, no_prepare).
    pub fn query_with(&self, sql: &str, params: &[&dyn ToParam], options: &QueryOptions) -> Query {
        let inner = self.inner.clone();
        Query::start(Some(inner), options.idempotent, sql, params, options, |sql, n, values, opts, ud, op| unsafe {
            sys::sluice_pg_pool_query(self.inner.raw, sql, n, values, ptr::null(), ptr::null(), opts,
                                      Some(on_result), ud, Some(release_result_shared), op)
        })
    }

    /// Runs one statement and resolves to the number of rows affected
    /// (-1 if the statement reports none).
    pub fn execute(&self, sql: &str, params: &[&dyn ToParam]) -> Execute {
        Execute(self.query(sql, params))
    }

    pub fn execute_with(&self, sql: &str, params: &[&dyn ToParam], options: &QueryOptions) -> Execute {
        Execute(self.query_with(sql, params, options))
    }

    /// Borrows a connection within `timeout` (a lease for transactions).
    pub fn acquire(&self, timeout: Duration) -> Acquire {
        let shared = Arc::new(AcquireShared::default());
        let ud = Arc::into_raw(shared.clone()) as *mut c_void;
        let mut op = ptr::null_mut();
        let ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX).max(1);
        let rc = unsafe {
            sys::sluice_pg_pool_acquire(self.inner.raw, ms, Some(on_acquire), ud, Some(release_acquire_shared), &mut op)
        };
        if rc != 0 {
            unsafe { drop(Arc::from_raw(ud as *const AcquireShared)) };
            return Acquire { shared, op: ptr::null_mut(), pool: self.inner.clone(), error: Some(Error::last(rc)) };
        }
        Acquire { shared, op, pool: self.inner.clone(), error: None }
    }

    /// Graceful close: new work fails with `Closed`; work in flight may
    /// finish within `drain`, then is cancelled. Resolves when done. The
    /// memory is freed when the last `Pool` clone is dropped.
    pub fn close(&self, drain: Duration) -> Close {
        let shared = Arc::new(Shared::default());
        let ud = Arc::into_raw(shared.clone()) as *mut c_void;
        let rc = unsafe {
            sys::sluice_pg_pool_close(self.inner.raw, ms32(drain), Some(on_status), ud, Some(release_shared), ptr::null_mut())
        };
        if rc != 0 {
            unsafe { drop(Arc::from_raw(ud as *const Shared)) };
            return Close { shared, _pool: self.inner.clone(), error: Some(Error::last(rc)) };
        }
        Close { shared, _pool: self.inner.clone(), error: None }
    }

    pub fn stats(&self) -> Result<PoolStats> {
        let mut s = sys::sluice_pg_pool_stats { size: std::mem::size_of::<sys::sluice_pg_pool_stats>(), ..Default::default() };
        check(unsafe { sys::sluice_pg_pool_stats_get(self.inner.raw, &mut s) })?;
        Ok(PoolStats {
            total: s.total, idle: s.idle, in_use: s.in_use, connecting: s.connecting, waiting: s.waiting,
            peak_total: s.peak_total, down: s.down != 0, acquires: s.acquires, connects: s.connects,
            connect_failures: s.connect_failures, queries: s.queries, query_errors: s.query_errors,
            query_timeouts: s.query_timeouts, ambiguous: s.ambiguous,
        })
    }

    /// The raw handle, for other crates built on sluice-sys.
    pub fn as_raw(&self) -> *mut sys::sluice_pg_pool { self.inner.raw }
}

// ---- query completions ------------------------------------------------------

/// A result pointer handed from the loop thread to the waiting future.
struct ResultPtr(*mut sys::sluice_pg_result);
unsafe impl Send for ResultPtr {}

#[derive(Default)]
struct ResultShared {
    state: Mutex<(Option<(c_int, ResultPtr)>, Option<Waker>)>,
}

impl Drop for ResultShared {
    /// The last holder (the future or the library's reference) frees a
    /// result nobody took: a late result after the future was dropped.
    fn drop(&mut self) {
        if let Some((_, r)) = self.state.get_mut().unwrap_or_else(|e| e.into_inner()).0.take() {
            unsafe { sys::sluice_pg_result_free(r.0) };
        }
    }
}

unsafe extern "C" fn on_result(ud: *mut c_void, status: c_int, r: *mut sys::sluice_pg_result) {
    let shared = &*(ud as *const ResultShared);
    let waker = {
        let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = Some((status, ResultPtr(r)));
        s.1.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
}

unsafe extern "C" fn release_result_shared(ud: *mut c_void) {
    drop(Arc::from_raw(ud as *const ResultShared));
}

/// The future of a statement; resolves to its rows or its error.
/// Dropping it before it completes cancels the statement (on the server
/// if it is running); a result that arrives anyway is freed.
pub struct Query {
    shared: Arc<ResultShared>,
    op: *mut sys::sluice_op,
    idempotent: bool,
    error: Option<Error>,
    _pool: Option<Arc<PoolInner>>,
}

// The op handle may be used from any thread; the shared state is locked.
unsafe impl Send for Query {}

impl Query {
    fn start<'a>(pool: Option<Arc<PoolInner>>, idempotent: bool, sql: &str, params: &[&dyn ToParam],
                 options: &QueryOptions,
                 call: impl FnOnce(*const c_char, c_int, *const *const c_char, *const sys::sluice_pg_query_options,
                                   *mut c_void, *mut *mut sys::sluice_op) -> c_int + 'a) -> Query {
        let shared = Arc::new(ResultShared::default());
        let failed = |shared, e| Query { shared, op: ptr::null_mut(), idempotent, error: Some(e), _pool: pool.clone() };
        let sql = match cstring("sql", sql) { Ok(s) => s, Err(e) => return failed(shared, e) };
        let params = match Params::new(params) { Ok(p) => p, Err(e) => return failed(shared, e) };
        let n = match c_int::try_from(params.ptrs.len()) {
            Ok(n) => n,
            Err(_) => return failed(shared, Error::new(sys::SLUICE_EINVAL, "too many parameters")),
        };
        let opts = options.raw();
        let ud = Arc::into_raw(shared.clone()) as *mut c_void;
        let mut op = ptr::null_mut();
        let rc = call(sql.as_ptr(), n, params.values(), &opts, ud, &mut op);
        if rc != 0 {
            // Nothing was taken: the library will not release the handle.
            unsafe { drop(Arc::from_raw(ud as *const ResultShared)) };
            return failed(shared, Error::last(rc));
        }
        Query { shared, op, idempotent, error: None, _pool: pool }
    }
}

impl Future for Query {
    type Output = Result<Rows>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Rows>> {
        if let Some(e) = self.error.take() {
            return Poll::Ready(Err(e));
        }
        let taken = {
            let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            match s.0.take() {
                Some(v) => v,
                None => {
                    s.1 = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        };
        let (status, r) = taken;
        if r.0.is_null() {
            return Poll::Ready(Err(Error::new(if status == 0 { sys::SLUICE_ENOMEM } else { status }, "")));
        }
        let rows = Rows { raw: r.0, owned: true }; // frees the result on every path
        if status == 0 {
            Poll::Ready(Ok(rows))
        } else {
            Poll::Ready(Err(Error::from_result(status, rows.raw, self.idempotent)))
        }
    }
}

impl Drop for Query {
    fn drop(&mut self) {
        if self.op.is_null() {
            return;
        }
        unsafe {
            if sys::sluice_op_done(self.op, ptr::null_mut()) == 0 {
                sys::sluice_op_cancel(self.op);
            }
            sys::sluice_op_free(self.op);
        }
    }
}

/// The future of [`Pool::execute`]: the number of rows affected.
pub struct Execute(Query);

impl Future for Execute {
    type Output = Result<i64>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<i64>> {
        Pin::new(&mut self.0).poll(cx).map(|r| r.map(|rows| rows.affected()))
    }
}

/// The future of [`Pool::close`].
pub struct Close {
    shared: Arc<Shared>,
    _pool: Arc<PoolInner>,
    error: Option<Error>,
}

impl Future for Close {
    type Output = Result<()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if let Some(e) = self.error.take() {
            return Poll::Ready(Err(e));
        }
        self.shared.poll(cx).map(status_result)
    }
}

// ---- leases ------------------------------------------------------------------

struct ConnPtr(*mut sys::sluice_pg_conn);
unsafe impl Send for ConnPtr {}

#[derive(Default)]
struct AcquireShared {
    state: Mutex<(Option<(c_int, ConnPtr)>, Option<Waker>)>,
}

impl Drop for AcquireShared {
    /// A connection granted after its future was dropped goes back.
    fn drop(&mut self) {
        if let Some((0, c)) = self.state.get_mut().unwrap_or_else(|e| e.into_inner()).0.take() {
            if !c.0.is_null() {
                unsafe { sys::sluice_pg_conn_release(c.0) };
            }
        }
    }
}

unsafe extern "C" fn on_acquire(ud: *mut c_void, status: c_int, conn: *mut sys::sluice_pg_conn) {
    let shared = &*(ud as *const AcquireShared);
    let waker = {
        let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = Some((status, ConnPtr(conn)));
        s.1.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
}

unsafe extern "C" fn release_acquire_shared(ud: *mut c_void) {
    drop(Arc::from_raw(ud as *const AcquireShared));
}

/// The future of [`Pool::acquire`]. Dropping it cancels the wait; a
/// connection granted anyway is released.
pub struct Acquire {
    shared: Arc<AcquireShared>,
    op: *mut sys::sluice_op,
    pool: Arc<PoolInner>,
    error: Option<Error>,
}

unsafe impl Send for Acquire {}

impl Future for Acquire {
    type Output = Result<Conn>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Conn>> {
        if let Some(e) = self.error.take() {
            return Poll::Ready(Err(e));
        }
        let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.0.take() {
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
            Some((0, c)) => Poll::Ready(Ok(Conn { raw: c.0, pool: self.pool.clone() })),
            Some((status, _)) => Poll::Ready(Err(Error::new(status, ""))),
        }
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        if self.op.is_null() {
            return;
        }
        unsafe {
            if sys::sluice_op_done(self.op, ptr::null_mut()) == 0 {
                sys::sluice_op_cancel(self.op);
            }
            sys::sluice_op_free(self.op);
        }
    }
}

/// A borrowed connection: statements run on it in order (one at a time,
/// enforced by `&mut self`), so it carries transactions. Released on drop;
/// a connection left inside a transaction is rolled back by the pool.
pub struct Conn {
    pub(crate) raw: *mut sys::sluice_pg_conn,
    pub(crate) pool: Arc<PoolInner>,
}

unsafe impl Send for Conn {}

impl Conn {
    pub fn query(&mut self, sql: &str, params: &[&dyn ToParam]) -> ConnQuery<'_> {
        self.query_with(sql, params, &QueryOptions::default())
    }

    pub fn query_with(&mut self, sql: &str, params: &[&dyn ToParam], options: &QueryOptions) -> ConnQuery<'_> {
        let raw = self.raw;
        let q = Query::start(Some(self.pool.clone()), options.idempotent, sql, params, options,
                             |sql, n, values, opts, ud, op| unsafe {
            sys::sluice_pg_conn_query(raw, sql, n, values, ptr::null(), ptr::null(), opts,
                                      Some(on_result), ud, Some(release_result_shared), op)
        });
        ConnQuery(q, PhantomData)
    }

    /// Runs one statement; resolves to the rows affected.
    pub async fn execute(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<i64> {
        Ok(self.query(sql, params).await?.affected())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        unsafe { sys::sluice_pg_conn_release(self.raw) };
    }
}

/// The future of [`Conn::query`]; borrows the connection until it is done.
pub struct ConnQuery<'a>(Query, PhantomData<&'a mut Conn>);

impl Future for ConnQuery<'_> {
    type Output = Result<Rows>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Rows>> {
        Pin::new(&mut self.0).poll(cx)
    }
}

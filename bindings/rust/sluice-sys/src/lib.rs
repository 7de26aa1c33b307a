//! Raw declarations of libsluice's C API: `sluice/common.h`, `sluice/op.h`,
//! `sluice/runtime.h`, `sluice/monitor.h`, `sluice/pg.h` and, in their own
//! modules, `sluice/locks.h`, `sluice/limiter.h`, `sluice/retry.h`,
//! `sluice/breaker.h` and `sluice/taskpool.h`. Written by hand; `tests/header.rs` checks them
//! against the installed headers (codes, versions, function names, struct
//! sizes and field offsets from the C compiler).
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_int, c_uint, c_void};

mod limiter;
mod locks;
mod retry;
mod taskpool;

pub use limiter::*;
pub use locks::*;
pub use retry::*;
pub use taskpool::*;

/// `sluice_monitor_window` (a C enum).
pub type sluice_monitor_window = c_int;

// ---- common.h ----------------------------------------------------------

pub const SLUICE_OK: c_int = 0;
pub const SLUICE_EINVAL: c_int = -1;
pub const SLUICE_ENOMEM: c_int = -2;
pub const SLUICE_EVERSION: c_int = -3;
pub const SLUICE_ECLOSED: c_int = -4;
pub const SLUICE_ECANCELED: c_int = -5;
pub const SLUICE_ETIMEDOUT: c_int = -6;
pub const SLUICE_EDEADLK: c_int = -7;
pub const SLUICE_EAGAIN: c_int = -8;
pub const SLUICE_ELIMIT: c_int = -9;
pub const SLUICE_ESTATE: c_int = -10;
pub const SLUICE_ERANGE: c_int = -11;
pub const SLUICE_ENOTSUP: c_int = -12;
pub const SLUICE_EINTERNAL: c_int = -13;
pub const SLUICE_EUV: c_int = -14;
pub const SLUICE_EREJECTED: c_int = -15;
pub const SLUICE_EFULL: c_int = -16;
pub const SLUICE_EOPEN: c_int = -17;
pub const SLUICE_EBUDGET: c_int = -18;
pub const SLUICE_EEXHAUSTED: c_int = -19;
pub const SLUICE_EUNREACHABLE: c_int = -20;
pub const SLUICE_EAMBIGUOUS: c_int = -21;
pub const SLUICE_EPG: c_int = -22;

/// Every code with its name, in SLUICE_ERRNO_MAP order.
pub const SLUICE_ERRNO_MAP: &[(c_int, &str)] = &[
    (SLUICE_EINVAL, "EINVAL"), (SLUICE_ENOMEM, "ENOMEM"), (SLUICE_EVERSION, "EVERSION"),
    (SLUICE_ECLOSED, "ECLOSED"), (SLUICE_ECANCELED, "ECANCELED"), (SLUICE_ETIMEDOUT, "ETIMEDOUT"),
    (SLUICE_EDEADLK, "EDEADLK"), (SLUICE_EAGAIN, "EAGAIN"), (SLUICE_ELIMIT, "ELIMIT"),
    (SLUICE_ESTATE, "ESTATE"), (SLUICE_ERANGE, "ERANGE"), (SLUICE_ENOTSUP, "ENOTSUP"),
    (SLUICE_EINTERNAL, "EINTERNAL"), (SLUICE_EUV, "EUV"), (SLUICE_EREJECTED, "EREJECTED"),
    (SLUICE_EFULL, "EFULL"), (SLUICE_EOPEN, "EOPEN"), (SLUICE_EBUDGET, "EBUDGET"),
    (SLUICE_EEXHAUSTED, "EEXHAUSTED"), (SLUICE_EUNREACHABLE, "EUNREACHABLE"),
    (SLUICE_EAMBIGUOUS, "EAMBIGUOUS"), (SLUICE_EPG, "EPG"),
];

#[repr(C)]
#[derive(Debug)]
pub struct sluice_buf {
    pub ptr: *mut c_char,
    pub size: usize,
}

pub type sluice_free_cb = Option<unsafe extern "C" fn(user_data: *mut c_void)>;
pub type sluice_status_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, status: c_int)>;

// ---- op.h / runtime.h --------------------------------------------------

#[repr(C)]
pub struct sluice_op {
    _private: [u8; 0],
}

#[repr(C)]
pub struct sluice_runtime {
    _private: [u8; 0],
}

pub const SLUICE_RUNTIME_OPTIONS_VERSION: c_uint = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_runtime_options {
    pub version: c_uint,
    pub thread_name: *const c_char,
    pub lag_interval_ms: u32,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sluice_runtime_stats {
    pub size: usize,
    pub posted: u64,
    pub ops_started: u64,
    pub ops_completed: u64,
    pub ops_pending: u64,
    pub lag_samples: u64,
    pub lag_last_ns: u64,
    pub lag_max_ns: u64,
    pub lag_mean_ns: u64,
    pub is_own_thread: c_int,
    pub is_closed: c_int,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sluice_memory_stats {
    pub size: usize,
    pub jemalloc: c_int,
    pub allocated: u64,
    pub active: u64,
    pub resident: u64,
    pub arena: u64,
}

extern "C" {
    pub fn sluice_version() -> c_uint;
    pub fn sluice_version_string() -> *const c_char;
    pub fn sluice_strerror(code: c_int) -> *const c_char;
    pub fn sluice_err_name(code: c_int) -> *const c_char;
    pub fn sluice_error_message() -> *const c_char;
    pub fn sluice_buf_free(buf: *mut sluice_buf);
    pub fn sluice_error_message_copy(out: *mut sluice_buf) -> c_int;
    pub fn sluice_now_ns() -> u64;

    pub fn sluice_op_cancel(op: *mut sluice_op) -> c_int;
    pub fn sluice_op_wait(op: *mut sluice_op, timeout_ms: i64, status: *mut c_int) -> c_int;
    pub fn sluice_op_done(op: *const sluice_op, status: *mut c_int) -> c_int;
    pub fn sluice_op_free(op: *mut sluice_op);

    pub fn sluice_runtime_options_init(opts: *mut sluice_runtime_options, version: c_uint) -> c_int;
    pub fn sluice_runtime_new(out: *mut *mut sluice_runtime, opts: *const sluice_runtime_options) -> c_int;
    pub fn sluice_runtime_close(rt: *mut sluice_runtime) -> c_int;
    pub fn sluice_runtime_free(rt: *mut sluice_runtime);
    pub fn sluice_runtime_is_loop_thread(rt: *const sluice_runtime) -> c_int;
    pub fn sluice_runtime_post(rt: *mut sluice_runtime, cb: sluice_status_cb, user_data: *mut c_void,
                               free_user_data: sluice_free_cb) -> c_int;
    pub fn sluice_runtime_timer(rt: *mut sluice_runtime, delay_ms: u64, cb: sluice_status_cb,
                                user_data: *mut c_void, free_user_data: sluice_free_cb,
                                op_out: *mut *mut sluice_op) -> c_int;
    pub fn sluice_runtime_stats_get(rt: *const sluice_runtime, out: *mut sluice_runtime_stats) -> c_int;
    pub fn sluice_runtime_memory(rt: *const sluice_runtime, out: *mut sluice_memory_stats) -> c_int;
    pub fn sluice_runtime_describe(rt: *const sluice_runtime, out: *mut sluice_buf) -> c_int;
}


// ---- monitor.h -----------------------------------------------------------

#[repr(C)]
pub struct sluice_monitor {
    _private: [u8; 0],
}

pub type sluice_clock_cb = Option<unsafe extern "C" fn(user_data: *mut c_void) -> u64>;
pub type sluice_monitor_report_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, monitor: *mut sluice_monitor)>;

pub const SLUICE_MONITOR_OPTIONS_VERSION: c_uint = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_monitor_options {
    pub version: c_uint,
    pub max_series: u32,
    pub disk_path: *const c_char,
    pub report_interval_ms: u32,
    pub report_cb: sluice_monitor_report_cb,
    pub report_user_data: *mut c_void,
    pub clock: sluice_clock_cb,
    pub clock_user_data: *mut c_void,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_span {
    pub monitor: *mut sluice_monitor,
    pub id: u32,
    pub start_ns: u64,
}

pub const SLUICE_WINDOW_ALL: sluice_monitor_window = 0;
pub const SLUICE_WINDOW_1M: sluice_monitor_window = 1;
pub const SLUICE_WINDOW_5M: sluice_monitor_window = 2;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_monitor_op_stats {
    pub size: usize,
    pub name: [c_char; 132],
    pub count: u64,
    pub errors: u64,
    pub success_rate: f64,
    pub min_ns: u64,
    pub max_ns: u64,
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub sum_ns: u64,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sluice_process_stats {
    pub size: usize,
    pub rss_bytes: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub cpu_percent: f64,
    pub mem_free_bytes: u64,
    pub mem_total_bytes: u64,
    pub disk_free_bytes: u64,
    pub disk_total_bytes: u64,
    pub open_fds: u64,
    pub loop_lag_last_ns: u64,
    pub loop_lag_max_ns: u64,
    pub loop_lag_mean_ns: u64,
    pub jemalloc: c_int,
    pub alloc_allocated: u64,
    pub alloc_active: u64,
    pub alloc_resident: u64,
}

extern "C" {
    pub fn sluice_monitor_options_init(opts: *mut sluice_monitor_options, version: c_uint) -> c_int;
    pub fn sluice_monitor_new(out: *mut *mut sluice_monitor, rt: *mut sluice_runtime,
                              opts: *const sluice_monitor_options) -> c_int;
    pub fn sluice_monitor_free(m: *mut sluice_monitor);
    pub fn sluice_monitor_record(m: *mut sluice_monitor, name: *const c_char, name_len: usize,
                                 duration_ns: u64, outcome: c_int) -> c_int;
    pub fn sluice_monitor_series(m: *mut sluice_monitor, name: *const c_char, name_len: usize,
                                 id: *mut u32) -> c_int;
    pub fn sluice_monitor_record_id(m: *mut sluice_monitor, id: u32, duration_ns: u64, outcome: c_int) -> c_int;
    pub fn sluice_monitor_span_begin(m: *mut sluice_monitor, name: *const c_char, name_len: usize,
                                     span: *mut sluice_span) -> c_int;
    pub fn sluice_monitor_span_end(span: *mut sluice_span, outcome: c_int) -> c_int;
    pub fn sluice_monitor_series_count(m: *const sluice_monitor) -> u32;
    pub fn sluice_monitor_op_stats_get(m: *const sluice_monitor, index: u32, window: sluice_monitor_window,
                                       out: *mut sluice_monitor_op_stats) -> c_int;
    pub fn sluice_monitor_op_errors(m: *const sluice_monitor, index: u32, codes: *mut c_int,
                                    counts: *mut u64, n: usize) -> c_int;
    pub fn sluice_monitor_process(m: *mut sluice_monitor, out: *mut sluice_process_stats) -> c_int;
    pub fn sluice_monitor_json(m: *mut sluice_monitor, out: *mut sluice_buf) -> c_int;
    pub fn sluice_monitor_prometheus(m: *mut sluice_monitor, out: *mut sluice_buf) -> c_int;
}

// ---- pg.h ------------------------------------------------------------------

#[repr(C)]
pub struct sluice_pg_pool {
    _private: [u8; 0],
}
#[repr(C)]
pub struct sluice_pg_conn {
    _private: [u8; 0],
}
#[repr(C)]
pub struct sluice_pg_result {
    _private: [u8; 0],
}
#[repr(C)]
pub struct sluice_pg_batch {
    _private: [u8; 0],
}
#[repr(C)]
pub struct sluice_pg_listener {
    _private: [u8; 0],
}

/// `sluice_pg_event_kind` and `sluice_pg_evict_reason` (C enums).
pub type sluice_pg_event_kind = c_int;
pub type sluice_pg_evict_reason = c_int;
pub const SLUICE_PG_EVENT_CONNECTED: sluice_pg_event_kind = 1;
pub const SLUICE_PG_EVENT_CONNECT_FAILED: sluice_pg_event_kind = 2;
pub const SLUICE_PG_EVENT_EVICTED: sluice_pg_event_kind = 3;
pub const SLUICE_PG_EVENT_DOWN: sluice_pg_event_kind = 4;
pub const SLUICE_PG_EVENT_UP: sluice_pg_event_kind = 5;
pub const SLUICE_PG_EVICT_REASONS_: usize = 9;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_pg_event {
    pub kind: sluice_pg_event_kind,
    pub reason: sluice_pg_evict_reason,
    pub message: *const c_char,
}

pub type sluice_pg_event_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const sluice_pg_event)>;

pub const SLUICE_PG_POOL_OPTIONS_VERSION: c_uint = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_pg_pool_options {
    pub version: c_uint,
    pub conninfo: *const c_char,
    pub min_size: u32,
    pub max_size: u32,
    pub max_connecting: u32,
    pub max_waiters: u32,
    pub connect_timeout_ms: u32,
    pub health_interval_ms: u32,
    pub health_timeout_ms: u32,
    pub check_idle_after_ms: u32,
    pub max_lifetime_ms: u32,
    pub idle_timeout_ms: u32,
    pub backoff_base_ms: u32,
    pub backoff_max_ms: u32,
    pub fail_fast: c_int,
    pub admission_check: c_int,
    pub statement_cache: u32,
    pub on_event: sluice_pg_event_cb,
    pub event_user_data: *mut c_void,
    pub monitor: *mut sluice_monitor,
}

pub const SLUICE_PG_NO_PREPARE: u32 = 1;
pub const SLUICE_PG_BINARY_RESULT: u32 = 2;
pub const SLUICE_PG_IDEMPOTENT: u32 = 4;

pub const SLUICE_PG_QUERY_OPTIONS_VERSION: c_uint = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_pg_query_options {
    pub version: c_uint,
    pub timeout_ms: i64,
    pub flags: u32,
}

pub type sluice_pg_acquire_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, status: c_int, conn: *mut sluice_pg_conn)>;
pub type sluice_pg_result_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, status: c_int, result: *mut sluice_pg_result)>;
pub type sluice_pg_notify_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, channel: *const c_char,
                                                          payload: *const c_char, backend_pid: c_int)>;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sluice_pg_pool_stats {
    pub size: usize,
    pub total: u32,
    pub idle: u32,
    pub in_use: u32,
    pub connecting: u32,
    pub waiting: u32,
    pub peak_total: u32,
    pub peak_waiting: u32,
    pub down: c_int,
    pub acquires: u64,
    pub acquire_timeouts: u64,
    pub acquire_exhausted: u64,
    pub acquire_unreachable: u64,
    pub connect_attempts: u64,
    pub connects: u64,
    pub connect_failures: u64,
    pub evictions: [u64; SLUICE_PG_EVICT_REASONS_],
    pub queries: u64,
    pub query_errors: u64,
    pub query_timeouts: u64,
    pub ambiguous: u64,
    pub errors_08: u64,
    pub errors_22: u64,
    pub errors_23: u64,
    pub errors_25: u64,
    pub errors_40: u64,
    pub errors_42: u64,
    pub errors_53: u64,
    pub errors_57: u64,
    pub errors_other: u64,
    pub wait_ns_total: u64,
    pub query_ns_total: u64,
    pub hold_ns_recent: u64,
}

extern "C" {
    pub fn sluice_pg_pool_options_init(opts: *mut sluice_pg_pool_options, version: c_uint) -> c_int;
    pub fn sluice_pg_pool_new(out: *mut *mut sluice_pg_pool, rt: *mut sluice_runtime,
                              opts: *const sluice_pg_pool_options) -> c_int;
    pub fn sluice_pg_pool_close(pool: *mut sluice_pg_pool, drain_timeout_ms: u32, cb: sluice_status_cb,
                                user_data: *mut c_void, free_user_data: sluice_free_cb,
                                op_out: *mut *mut sluice_op) -> c_int;
    pub fn sluice_pg_pool_free(pool: *mut sluice_pg_pool);
    pub fn sluice_pg_pool_acquire(pool: *mut sluice_pg_pool, timeout_ms: i64, cb: sluice_pg_acquire_cb,
                                  user_data: *mut c_void, free_user_data: sluice_free_cb,
                                  op_out: *mut *mut sluice_op) -> c_int;
    pub fn sluice_pg_conn_release(conn: *mut sluice_pg_conn) -> c_int;
    pub fn sluice_pg_query_options_init(opts: *mut sluice_pg_query_options, version: c_uint) -> c_int;
    pub fn sluice_pg_conn_query(conn: *mut sluice_pg_conn, sql: *const c_char, nparams: c_int,
                                values: *const *const c_char, lengths: *const c_int, formats: *const c_int,
                                opts: *const sluice_pg_query_options, cb: sluice_pg_result_cb,
                                user_data: *mut c_void, free_user_data: sluice_free_cb,
                                op_out: *mut *mut sluice_op) -> c_int;
    pub fn sluice_pg_pool_query(pool: *mut sluice_pg_pool, sql: *const c_char, nparams: c_int,
                                values: *const *const c_char, lengths: *const c_int, formats: *const c_int,
                                opts: *const sluice_pg_query_options, cb: sluice_pg_result_cb,
                                user_data: *mut c_void, free_user_data: sluice_free_cb,
                                op_out: *mut *mut sluice_op) -> c_int;
    pub fn sluice_pg_batch_new(out: *mut *mut sluice_pg_batch) -> c_int;
    pub fn sluice_pg_batch_add(batch: *mut sluice_pg_batch, sql: *const c_char, nparams: c_int,
                               values: *const *const c_char, lengths: *const c_int, formats: *const c_int) -> c_int;
    pub fn sluice_pg_batch_size(batch: *const sluice_pg_batch) -> usize;
    pub fn sluice_pg_batch_result(batch: *const sluice_pg_batch, i: usize) -> *const sluice_pg_result;
    pub fn sluice_pg_batch_free(batch: *mut sluice_pg_batch);
    pub fn sluice_pg_conn_batch(conn: *mut sluice_pg_conn, batch: *mut sluice_pg_batch,
                                opts: *const sluice_pg_query_options, cb: sluice_status_cb,
                                user_data: *mut c_void, free_user_data: sluice_free_cb,
                                op_out: *mut *mut sluice_op) -> c_int;
    pub fn sluice_pg_pool_batch(pool: *mut sluice_pg_pool, batch: *mut sluice_pg_batch,
                                opts: *const sluice_pg_query_options, cb: sluice_status_cb,
                                user_data: *mut c_void, free_user_data: sluice_free_cb,
                                op_out: *mut *mut sluice_op) -> c_int;
    pub fn sluice_pg_result_status(r: *const sluice_pg_result) -> c_int;
    pub fn sluice_pg_result_sent(r: *const sluice_pg_result) -> c_int;
    pub fn sluice_pg_result_sqlstate(r: *const sluice_pg_result) -> *const c_char;
    pub fn sluice_pg_result_message(r: *const sluice_pg_result) -> *const c_char;
    pub fn sluice_pg_result_detail(r: *const sluice_pg_result) -> *const c_char;
    pub fn sluice_pg_result_hint(r: *const sluice_pg_result) -> *const c_char;
    pub fn sluice_pg_result_rows(r: *const sluice_pg_result) -> c_int;
    pub fn sluice_pg_result_columns(r: *const sluice_pg_result) -> c_int;
    pub fn sluice_pg_result_affected(r: *const sluice_pg_result) -> i64;
    pub fn sluice_pg_result_column_name(r: *const sluice_pg_result, col: c_int) -> *const c_char;
    pub fn sluice_pg_result_column_type(r: *const sluice_pg_result, col: c_int) -> u32;
    pub fn sluice_pg_result_value(r: *const sluice_pg_result, row: c_int, col: c_int,
                                  value: *mut *const c_char, len: *mut usize) -> c_int;
    pub fn sluice_pg_result_free(r: *mut sluice_pg_result);
    pub fn sluice_pg_result_retryable(r: *const sluice_pg_result, idempotent: c_int) -> c_int;
    pub fn sluice_pg_retry_outcome(r: *const sluice_pg_result, idempotent: c_int) -> c_int;
    pub fn sluice_pg_listen(pool: *mut sluice_pg_pool, channel: *const c_char, cb: sluice_pg_notify_cb,
                            user_data: *mut c_void, free_user_data: sluice_free_cb,
                            out: *mut *mut sluice_pg_listener) -> c_int;
    pub fn sluice_pg_listener_ready(l: *const sluice_pg_listener) -> c_int;
    pub fn sluice_pg_listener_free(l: *mut sluice_pg_listener);
    pub fn sluice_pg_pool_stats_get(pool: *const sluice_pg_pool, out: *mut sluice_pg_pool_stats) -> c_int;
}

/// Names of the functions declared above, for the header check.
pub const DECLARED: &[&str] = &[
    "sluice_version", "sluice_version_string", "sluice_strerror", "sluice_err_name",
    "sluice_error_message", "sluice_buf_free", "sluice_error_message_copy", "sluice_now_ns",
    "sluice_op_cancel", "sluice_op_wait", "sluice_op_done", "sluice_op_free",
    "sluice_runtime_options_init", "sluice_runtime_new", "sluice_runtime_close",
    "sluice_runtime_free", "sluice_runtime_is_loop_thread", "sluice_runtime_post",
    "sluice_runtime_timer", "sluice_runtime_stats_get", "sluice_runtime_memory",
    "sluice_runtime_describe",
    "sluice_monitor_options_init", "sluice_monitor_new", "sluice_monitor_free", "sluice_monitor_record",
    "sluice_monitor_series", "sluice_monitor_record_id", "sluice_monitor_span_begin",
    "sluice_monitor_span_end", "sluice_monitor_series_count", "sluice_monitor_op_stats_get",
    "sluice_monitor_op_errors", "sluice_monitor_process", "sluice_monitor_json",
    "sluice_monitor_prometheus",
    "sluice_pg_pool_options_init", "sluice_pg_pool_new", "sluice_pg_pool_close", "sluice_pg_pool_free",
    "sluice_pg_pool_acquire", "sluice_pg_conn_release", "sluice_pg_query_options_init",
    "sluice_pg_conn_query", "sluice_pg_pool_query", "sluice_pg_batch_new", "sluice_pg_batch_add",
    "sluice_pg_batch_size", "sluice_pg_batch_result", "sluice_pg_batch_free", "sluice_pg_conn_batch",
    "sluice_pg_pool_batch", "sluice_pg_result_status", "sluice_pg_result_sent",
    "sluice_pg_result_sqlstate", "sluice_pg_result_message", "sluice_pg_result_detail",
    "sluice_pg_result_hint", "sluice_pg_result_rows", "sluice_pg_result_columns",
    "sluice_pg_result_affected", "sluice_pg_result_column_name", "sluice_pg_result_column_type",
    "sluice_pg_result_value", "sluice_pg_result_free", "sluice_pg_result_retryable",
    "sluice_pg_retry_outcome", "sluice_pg_listen", "sluice_pg_listener_ready",
    "sluice_pg_listener_free", "sluice_pg_pool_stats_get",
];

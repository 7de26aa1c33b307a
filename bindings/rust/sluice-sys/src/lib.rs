//! Raw declarations of libsluice's C API: `sluice/common.h`, `sluice/op.h`
//! and `sluice/runtime.h`. Written by hand; `tests/header.rs` checks them
//! against the installed headers (codes, versions, function names, struct
//! sizes and field offsets from the C compiler).
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_int, c_uint, c_void};

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

/// Names of the functions declared above, for the header check.
pub const DECLARED: &[&str] = &[
    "sluice_version", "sluice_version_string", "sluice_strerror", "sluice_err_name",
    "sluice_error_message", "sluice_buf_free", "sluice_error_message_copy", "sluice_now_ns",
    "sluice_op_cancel", "sluice_op_wait", "sluice_op_done", "sluice_op_free",
    "sluice_runtime_options_init", "sluice_runtime_new", "sluice_runtime_close",
    "sluice_runtime_free", "sluice_runtime_is_loop_thread", "sluice_runtime_post",
    "sluice_runtime_timer", "sluice_runtime_stats_get", "sluice_runtime_memory",
    "sluice_runtime_describe",
];

//! `sluice/limiter.h`: per-key rate limits.
use std::os::raw::{c_char, c_int, c_uint, c_void};

use crate::{sluice_clock_cb, sluice_free_cb, sluice_monitor, sluice_op, sluice_runtime, sluice_status_cb};

#[repr(C)]
pub struct sluice_limiter {
    _private: [u8; 0],
}

pub const SLUICE_LIMITER_MAX_KEY: usize = 65536;
pub const SLUICE_LIMITER_MAX_LOG: u64 = 65535;
pub const SLUICE_LIMITER_MAX_MANY: usize = 32;

/// `sluice_limiter_algorithm`, `sluice_limiter_full` and
/// `sluice_limiter_reason` (C enums).
pub const SLUICE_LIMITER_SLIDING_LOG: c_int = 0;
pub const SLUICE_LIMITER_SLIDING_WINDOW: c_int = 1;
pub const SLUICE_LIMITER_GCRA: c_int = 2;
pub const SLUICE_LIMITER_FULL_REJECT: c_int = 0;
pub const SLUICE_LIMITER_FULL_ALLOW: c_int = 1;
pub const SLUICE_LIMITER_OK: c_int = 0;
pub const SLUICE_LIMITER_LIMITED: c_int = 1;
pub const SLUICE_LIMITER_BLOCKED: c_int = 2;
pub const SLUICE_LIMITER_QUEUED: c_int = 3;
pub const SLUICE_LIMITER_FULL: c_int = 4;

pub const SLUICE_LIMITER_OPTIONS_VERSION: c_uint = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_limiter_options {
    pub version: c_uint,
    pub algorithm: c_int,
    pub limit: u64,
    pub window_ns: u64,
    pub burst: u64,
    pub max_keys: u64,
    pub on_full: c_int,
    pub clock: sluice_clock_cb,
    pub clock_user_data: *mut c_void,
    pub monitor: *mut sluice_monitor,
    pub name: *const c_char,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sluice_limiter_result {
    pub size: usize,
    pub allowed: c_int,
    pub reason: c_int,
    pub limit: u64,
    pub remaining: u64,
    pub retry_after_ns: u64,
    pub reset_after_ns: u64,
    pub index: usize,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_limiter_item {
    pub limiter: *mut sluice_limiter,
    pub key: *const c_void,
    pub len: usize,
    pub cost: u64,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sluice_limiter_stats {
    pub size: usize,
    pub algorithm: c_int,
    pub limit: u64,
    pub window_ns: u64,
    pub burst: u64,
    pub keys: u64,
    pub peak_keys: u64,
    pub allowed: u64,
    pub rejected: u64,
    pub full_refused: u64,
    pub full_allowed: u64,
    pub waits: u64,
    pub waiting: u64,
    pub wait_timeouts: u64,
    pub wait_cancels: u64,
    pub reclaimed: u64,
    pub blocks: u64,
    pub bytes: u64,
}

extern "C" {
    pub fn sluice_limiter_options_init(opts: *mut sluice_limiter_options, version: c_uint) -> c_int;
    pub fn sluice_limiter_new(out: *mut *mut sluice_limiter, rt: *mut sluice_runtime,
                              opts: *const sluice_limiter_options) -> c_int;
    pub fn sluice_limiter_free(l: *mut sluice_limiter);
    pub fn sluice_limiter_check(l: *mut sluice_limiter, key: *const c_void, len: usize, cost: u64,
                                result: *mut sluice_limiter_result) -> c_int;
    pub fn sluice_limiter_peek(l: *mut sluice_limiter, key: *const c_void, len: usize, cost: u64,
                               result: *mut sluice_limiter_result) -> c_int;
    pub fn sluice_limiter_check_many(items: *const sluice_limiter_item, n: usize,
                                     result: *mut sluice_limiter_result) -> c_int;
    pub fn sluice_limiter_acquire(l: *mut sluice_limiter, key: *const c_void, len: usize, cost: u64,
                                  timeout_ms: i64, cb: sluice_status_cb, user_data: *mut c_void,
                                  free_user_data: sluice_free_cb, op_out: *mut *mut sluice_op) -> c_int;
    pub fn sluice_limiter_wait(l: *mut sluice_limiter, key: *const c_void, len: usize, cost: u64,
                               timeout_ms: i64) -> c_int;
    pub fn sluice_limiter_wake(l: *mut sluice_limiter) -> c_int;
    pub fn sluice_limiter_set_limit(l: *mut sluice_limiter, limit: u64, window_ns: u64, burst: u64) -> c_int;
    pub fn sluice_limiter_block(l: *mut sluice_limiter, key: *const c_void, len: usize, duration_ns: u64) -> c_int;
    pub fn sluice_limiter_unblock(l: *mut sluice_limiter, key: *const c_void, len: usize) -> c_int;
    pub fn sluice_limiter_sweep(l: *mut sluice_limiter) -> i64;
    pub fn sluice_limiter_stats_get(l: *mut sluice_limiter, out: *mut sluice_limiter_stats) -> c_int;
}

/// Names of the functions declared above, for the header check.
pub const DECLARED_LIMITER: &[&str] = &[
    "sluice_limiter_options_init", "sluice_limiter_new", "sluice_limiter_free", "sluice_limiter_check",
    "sluice_limiter_peek", "sluice_limiter_check_many", "sluice_limiter_acquire", "sluice_limiter_wait",
    "sluice_limiter_wake", "sluice_limiter_set_limit", "sluice_limiter_block", "sluice_limiter_unblock",
    "sluice_limiter_sweep", "sluice_limiter_stats_get",
];

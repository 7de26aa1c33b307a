//! `sluice/retry.h` and `sluice/breaker.h`: retry policies and the circuit
//! breaker.
use std::os::raw::{c_char, c_int, c_uint, c_void};

use crate::{sluice_clock_cb, sluice_free_cb, sluice_monitor, sluice_op, sluice_runtime};

// ---- breaker.h -------------------------------------------------------------

#[repr(C)]
pub struct sluice_breaker {
    _private: [u8; 0],
}

/// `sluice_breaker_state`, `sluice_breaker_window` and
/// `sluice_breaker_result` (C enums).
pub const SLUICE_BREAKER_CLOSED: c_int = 0;
pub const SLUICE_BREAKER_OPEN: c_int = 1;
pub const SLUICE_BREAKER_HALF_OPEN: c_int = 2;
pub const SLUICE_BREAKER_WINDOW_COUNT: c_int = 0;
pub const SLUICE_BREAKER_WINDOW_TIME: c_int = 1;
pub const SLUICE_BREAKER_SUCCESS: c_int = 0;
pub const SLUICE_BREAKER_FAILURE: c_int = 1;

pub type sluice_breaker_state_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, from: c_int, to: c_int,
                                                               generation: u64)>;

pub const SLUICE_BREAKER_OPTIONS_VERSION: c_uint = 2;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_breaker_options {
    pub version: c_uint,
    pub window: c_int,
    pub window_calls: u32,
    pub window_ms: i64,
    pub window_buckets: u32,
    pub minimum_calls: u32,
    pub failure_rate_percent: f64,
    pub slow_call_ms: i64,
    pub slow_rate_percent: f64,
    pub open_ms: i64,
    pub half_open_trials: u32,
    pub clock: sluice_clock_cb,
    pub clock_user_data: *mut c_void,
    pub on_state_change: sluice_breaker_state_cb,
    pub state_user_data: *mut c_void,
    /// Version 2.
    pub monitor: *mut sluice_monitor,
    pub name: *const c_char,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sluice_breaker_stats {
    pub size: usize,
    pub state: c_int,
    pub generation: u64,
    pub successes: u64,
    pub failures: u64,
    pub slow: u64,
    pub refused: u64,
    pub ignored: u64,
    pub released: u64,
    pub opened: u64,
    pub half_opened: u64,
    pub closed: u64,
    pub window_calls: u64,
    pub window_failures: u64,
    pub window_slow: u64,
    pub trials_taken: u32,
    pub trials_reported: u32,
}

extern "C" {
    pub fn sluice_breaker_options_init(opts: *mut sluice_breaker_options, version: c_uint) -> c_int;
    pub fn sluice_breaker_new(out: *mut *mut sluice_breaker, rt: *mut sluice_runtime,
                              opts: *const sluice_breaker_options) -> c_int;
    pub fn sluice_breaker_free(b: *mut sluice_breaker);
    pub fn sluice_breaker_allow(b: *mut sluice_breaker, ticket: *mut u64) -> c_int;
    pub fn sluice_breaker_record(b: *mut sluice_breaker, ticket: u64, result: c_int, duration_ns: u64) -> c_int;
    pub fn sluice_breaker_release(b: *mut sluice_breaker, ticket: u64) -> c_int;
    pub fn sluice_breaker_state_get(b: *const sluice_breaker) -> c_int;
    pub fn sluice_breaker_set_state(b: *mut sluice_breaker, state: c_int) -> c_int;
    pub fn sluice_breaker_stats_get(b: *const sluice_breaker, out: *mut sluice_breaker_stats) -> c_int;
}

// ---- retry.h ---------------------------------------------------------------

#[repr(C)]
pub struct sluice_retry {
    _private: [u8; 0],
}
#[repr(C)]
pub struct sluice_retry_attempt {
    _private: [u8; 0],
}
#[repr(C)]
pub struct sluice_retry_session {
    _private: [u8; 0],
}

/// `sluice_retry_jitter` and `sluice_retry_outcome` (C enums).
pub const SLUICE_RETRY_JITTER_NONE: c_int = 0;
pub const SLUICE_RETRY_JITTER_FULL: c_int = 1;
pub const SLUICE_RETRY_JITTER_EQUAL: c_int = 2;
pub const SLUICE_RETRY_JITTER_DECORRELATED: c_int = 3;
pub const SLUICE_RETRY_JITTER_SPREAD: c_int = 4;
pub const SLUICE_RETRY_SUCCESS: c_int = 0;
pub const SLUICE_RETRY_RETRYABLE: c_int = 1;
pub const SLUICE_RETRY_PERMANENT: c_int = 2;

pub type sluice_retry_event_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, attempt: u32, code: c_int,
                                                             delay_ns: u64)>;
pub type sluice_retry_attempt_fn = Option<unsafe extern "C" fn(user_data: *mut c_void,
                                                               attempt: *mut sluice_retry_attempt)>;
pub type sluice_retry_done_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, status: c_int, last_code: c_int,
                                                            attempts: u32)>;

pub const SLUICE_RETRY_OPTIONS_VERSION: c_uint = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_retry_options {
    pub version: c_uint,
    pub max_attempts: u32,
    pub base_delay_ms: i64,
    pub multiplier: f64,
    pub max_delay_ms: i64,
    pub jitter: c_int,
    pub total_timeout_ms: i64,
    pub attempt_timeout_ms: i64,
    pub budget_ratio: f64,
    pub budget_tokens: u32,
    pub seed: u64,
    pub breaker: *mut sluice_breaker,
    pub monitor: *mut sluice_monitor,
    pub name: *const c_char,
    pub on_retry: sluice_retry_event_cb,
    pub event_user_data: *mut c_void,
    pub clock: sluice_clock_cb,
    pub clock_user_data: *mut c_void,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sluice_retry_stats {
    pub size: usize,
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

extern "C" {
    pub fn sluice_retry_options_init(opts: *mut sluice_retry_options, version: c_uint) -> c_int;
    pub fn sluice_retry_new(out: *mut *mut sluice_retry, rt: *mut sluice_runtime,
                            opts: *const sluice_retry_options) -> c_int;
    pub fn sluice_retry_free(p: *mut sluice_retry);
    pub fn sluice_retry_run(p: *mut sluice_retry, deadline_ns: u64, attempt_fn: sluice_retry_attempt_fn,
                            done_cb: sluice_retry_done_cb, user_data: *mut c_void,
                            free_user_data: sluice_free_cb, op_out: *mut *mut sluice_op) -> c_int;
    pub fn sluice_retry_attempt_done(attempt: *mut sluice_retry_attempt, outcome: c_int, code: c_int,
                                     retry_after_ns: u64) -> c_int;
    pub fn sluice_retry_attempt_number(attempt: *const sluice_retry_attempt) -> u32;
    pub fn sluice_retry_attempt_deadline(attempt: *const sluice_retry_attempt) -> u64;
    pub fn sluice_retry_attempt_active(attempt: *const sluice_retry_attempt) -> c_int;
    pub fn sluice_retry_session_new(p: *mut sluice_retry, deadline_ns: u64,
                                    out: *mut *mut sluice_retry_session) -> c_int;
    pub fn sluice_retry_session_begin(s: *mut sluice_retry_session, attempt_deadline_ns: *mut u64,
                                      status: *mut c_int) -> c_int;
    pub fn sluice_retry_session_end(s: *mut sluice_retry_session, outcome: c_int, code: c_int,
                                    retry_after_ns: u64, delay_ns: *mut u64, status: *mut c_int) -> c_int;
    pub fn sluice_retry_session_attempts(s: *const sluice_retry_session) -> u32;
    pub fn sluice_retry_session_free(s: *mut sluice_retry_session);
    pub fn sluice_retry_next_delay(opts: *const sluice_retry_options, retry: u32, prev_delay_ns: u64,
                                   rng_state: *mut u64, delay_ns: *mut u64) -> c_int;
    pub fn sluice_retry_seed(seed: u64, run: u64) -> u64;
    pub fn sluice_retry_stats_get(p: *const sluice_retry, out: *mut sluice_retry_stats) -> c_int;
}

/// Names of the functions declared above, for the header check.
pub const DECLARED_RETRY: &[&str] = &[
    "sluice_breaker_options_init", "sluice_breaker_new", "sluice_breaker_free", "sluice_breaker_allow",
    "sluice_breaker_record", "sluice_breaker_release", "sluice_breaker_state_get", "sluice_breaker_set_state",
    "sluice_breaker_stats_get",
    "sluice_retry_options_init", "sluice_retry_new", "sluice_retry_free", "sluice_retry_run",
    "sluice_retry_attempt_done", "sluice_retry_attempt_number", "sluice_retry_attempt_deadline",
    "sluice_retry_attempt_active", "sluice_retry_session_new", "sluice_retry_session_begin",
    "sluice_retry_session_end", "sluice_retry_session_attempts", "sluice_retry_session_free",
    "sluice_retry_next_delay", "sluice_retry_seed", "sluice_retry_stats_get",
];

//! `sluice/locks.h`: keyed locks.
use std::os::raw::{c_int, c_uint, c_void};

use crate::{sluice_free_cb, sluice_monitor, sluice_op, sluice_runtime};

#[repr(C)]
pub struct sluice_locks {
    _private: [u8; 0],
}

/// A grant: an opaque handle value, never dereferenced.
#[repr(C)]
pub struct sluice_lock_guard {
    _private: [u8; 0],
}

pub const SLUICE_LOCKS_MAX_KEY: usize = 65536;
pub const SLUICE_LOCKS_MAX_MANY: usize = 256;

/// `sluice_lock_mode` and `sluice_locks_full` (C enums).
pub const SLUICE_LOCK_EXCLUSIVE: c_int = 0;
pub const SLUICE_LOCK_SHARED: c_int = 1;
pub const SLUICE_LOCKS_FULL_REJECT: c_int = 0;
pub const SLUICE_LOCKS_FULL_WAIT: c_int = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_lock_key {
    pub key: *const c_void,
    pub len: usize,
    pub mode: c_int,
}

pub type sluice_lock_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, status: c_int,
                                                      guard: *mut sluice_lock_guard)>;
pub type sluice_locks_held_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, key: *const c_void, len: usize,
                                                            token: u64, held_ns: u64)>;

pub const SLUICE_LOCKS_OPTIONS_VERSION: c_uint = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_locks_options {
    pub version: c_uint,
    pub max_locks: u32,
    pub max_keys: u32,
    pub on_full: c_int,
    pub cleanup_interval_ms: u32,
    pub hold_limit_ms: u32,
    pub on_held_too_long: sluice_locks_held_cb,
    pub held_user_data: *mut c_void,
    pub monitor: *mut sluice_monitor,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sluice_locks_stats {
    pub size: usize,
    pub live_keys: u64,
    pub peak_live_keys: u64,
    pub cached_entries: u64,
    pub held: u64,
    pub waiters: u64,
    pub room_waiters: u64,
    pub acquisitions: u64,
    pub contended: u64,
    pub timeouts: u64,
    pub cancellations: u64,
    pub wait_ns: u64,
    pub busy: u64,
    pub limit_refusals: u64,
    pub held_too_long: u64,
    pub bad_releases: u64,
    pub trimmed: u64,
}

extern "C" {
    pub fn sluice_locks_options_init(opts: *mut sluice_locks_options, version: c_uint) -> c_int;
    pub fn sluice_locks_new(out: *mut *mut sluice_locks, rt: *mut sluice_runtime,
                            opts: *const sluice_locks_options) -> c_int;
    pub fn sluice_locks_free(locks: *mut sluice_locks);
    pub fn sluice_locks_try(locks: *mut sluice_locks, key: *const c_void, len: usize, mode: c_int,
                            guard: *mut *mut sluice_lock_guard) -> c_int;
    pub fn sluice_locks_try_many(locks: *mut sluice_locks, keys: *const sluice_lock_key, n: usize,
                                 guard: *mut *mut sluice_lock_guard) -> c_int;
    pub fn sluice_locks_acquire(locks: *mut sluice_locks, key: *const c_void, len: usize, mode: c_int,
                                timeout_ms: i64, cb: sluice_lock_cb, user_data: *mut c_void,
                                free_user_data: sluice_free_cb, op_out: *mut *mut sluice_op) -> c_int;
    pub fn sluice_locks_acquire_many(locks: *mut sluice_locks, keys: *const sluice_lock_key, n: usize,
                                     timeout_ms: i64, cb: sluice_lock_cb, user_data: *mut c_void,
                                     free_user_data: sluice_free_cb, op_out: *mut *mut sluice_op) -> c_int;
    pub fn sluice_locks_lock(locks: *mut sluice_locks, key: *const c_void, len: usize, mode: c_int,
                             timeout_ms: i64, guard: *mut *mut sluice_lock_guard) -> c_int;
    pub fn sluice_locks_lock_many(locks: *mut sluice_locks, keys: *const sluice_lock_key, n: usize,
                                  timeout_ms: i64, guard: *mut *mut sluice_lock_guard) -> c_int;
    pub fn sluice_locks_release(locks: *mut sluice_locks, guard: *mut sluice_lock_guard) -> c_int;
    pub fn sluice_locks_token(locks: *mut sluice_locks, guard: *const sluice_lock_guard, token: *mut u64) -> c_int;
    pub fn sluice_locks_trim(locks: *mut sluice_locks) -> c_int;
    pub fn sluice_locks_stats_get(locks: *mut sluice_locks, out: *mut sluice_locks_stats) -> c_int;
}

/// Names of the functions declared above, for the header check.
pub const DECLARED_LOCKS: &[&str] = &[
    "sluice_locks_options_init", "sluice_locks_new", "sluice_locks_free", "sluice_locks_try",
    "sluice_locks_try_many", "sluice_locks_acquire", "sluice_locks_acquire_many", "sluice_locks_lock",
    "sluice_locks_lock_many", "sluice_locks_release", "sluice_locks_token", "sluice_locks_trim",
    "sluice_locks_stats_get",
];

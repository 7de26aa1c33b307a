//! `sluice/taskpool.h`: bounded concurrency, worker-thread tasks and
//! async permits under one limit, with a bounded priority queue.
use std::os::raw::{c_char, c_int, c_uint, c_void};

use crate::{sluice_clock_cb, sluice_free_cb, sluice_monitor, sluice_op, sluice_runtime, sluice_status_cb};

#[repr(C)]
pub struct sluice_taskpool {
    _private: [u8; 0],
}

/// A slot held through the permit calls: an opaque handle value, never
/// dereferenced.
#[repr(C)]
pub struct sluice_permit {
    _private: [u8; 0],
}

/// `sluice_priority` and `sluice_taskpool_full` (C enums).
pub const SLUICE_PRIORITY_HIGH: c_int = 0;
pub const SLUICE_PRIORITY_NORMAL: c_int = 1;
pub const SLUICE_PRIORITY_LOW: c_int = 2;
pub const SLUICE_TASKPOOL_FULL_REJECT: c_int = 0;
pub const SLUICE_TASKPOOL_FULL_WAIT: c_int = 1;

pub const SLUICE_TASKPOOL_MAX_CONCURRENT: u32 = 65536;
pub const SLUICE_TASKPOOL_MAX_WORKERS: u32 = 1024;

pub const SLUICE_TASKPOOL_OPTIONS_VERSION: c_uint = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_taskpool_options {
    pub version: c_uint,
    pub max_concurrent: u32,
    pub workers: u32,
    pub max_queued: u32,
    pub on_full: c_int,
    pub adaptive: c_int,
    pub min_concurrent: u32,
    pub max_concurrent_ceiling: u32,
    pub target_latency_ns: u64,
    pub monitor: *mut sluice_monitor,
    pub name: *const c_char,
    pub clock: sluice_clock_cb,
    pub clock_user_data: *mut c_void,
    pub max_bypass: u32,
}

pub type sluice_task_fn = Option<unsafe extern "C" fn(user_data: *mut c_void) -> c_int>;
pub type sluice_permit_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, status: c_int,
                                                        permit: *mut sluice_permit)>;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sluice_taskpool_stats {
    pub size: usize,
    pub limit: u64,
    pub submitted: u64,
    pub queued: u64,
    pub running: u64,
    pub completed: u64,
    pub failed: u64,
    pub rejected: u64,
    pub expired: u64,
    pub cancelled: u64,
    pub closed: u64,
    pub peak_running: u64,
    pub peak_queued: u64,
    pub queue_wait_ns_total: u64,
    pub run_ns_total: u64,
    pub room_waiting: u64,
    pub busy: u64,
    pub bad_releases: u64,
    pub threads: u64,
    pub limit_raised: u64,
    pub limit_lowered: u64,
}

extern "C" {
    pub fn sluice_taskpool_options_init(opts: *mut sluice_taskpool_options, version: c_uint) -> c_int;
    pub fn sluice_taskpool_new(out: *mut *mut sluice_taskpool, rt: *mut sluice_runtime,
                               opts: *const sluice_taskpool_options) -> c_int;
    pub fn sluice_taskpool_free(pool: *mut sluice_taskpool);
    pub fn sluice_taskpool_submit(pool: *mut sluice_taskpool, f: sluice_task_fn, priority: c_int, timeout_ms: i64,
                                  done: sluice_status_cb, user_data: *mut c_void, free_user_data: sluice_free_cb,
                                  op_out: *mut *mut sluice_op) -> c_int;
    pub fn sluice_taskpool_try_acquire(pool: *mut sluice_taskpool, out: *mut *mut sluice_permit) -> c_int;
    pub fn sluice_taskpool_acquire(pool: *mut sluice_taskpool, priority: c_int, timeout_ms: i64,
                                   cb: sluice_permit_cb, user_data: *mut c_void, free_user_data: sluice_free_cb,
                                   op_out: *mut *mut sluice_op) -> c_int;
    pub fn sluice_taskpool_acquire_wait(pool: *mut sluice_taskpool, priority: c_int, timeout_ms: i64,
                                        out: *mut *mut sluice_permit) -> c_int;
    pub fn sluice_taskpool_release(pool: *mut sluice_taskpool, permit: *mut sluice_permit, outcome: c_int) -> c_int;
    pub fn sluice_taskpool_resize(pool: *mut sluice_taskpool, max_concurrent: u32) -> c_int;
    pub fn sluice_taskpool_shutdown(pool: *mut sluice_taskpool, timeout_ms: i64) -> c_int;
    pub fn sluice_taskpool_stats_get(pool: *mut sluice_taskpool, out: *mut sluice_taskpool_stats) -> c_int;
}

/// Names of the functions declared above, for the header check.
pub const DECLARED_TASKPOOL: &[&str] = &[
    "sluice_taskpool_options_init", "sluice_taskpool_new", "sluice_taskpool_free", "sluice_taskpool_submit",
    "sluice_taskpool_try_acquire", "sluice_taskpool_acquire", "sluice_taskpool_acquire_wait",
    "sluice_taskpool_release", "sluice_taskpool_resize", "sluice_taskpool_shutdown", "sluice_taskpool_stats_get",
];

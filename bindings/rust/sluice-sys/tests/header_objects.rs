//! The declarations of locks.h, limiter.h, retry.h, breaker.h and taskpool.h
//! against the installed headers: option versions, limits and enum values,
//! and every field offset of every struct, as the C compiler lays them out.
use std::collections::HashMap;
use std::mem::{offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

use sluice_sys::*;

fn include_dir() -> PathBuf {
    match std::env::var("SLUICE_PREFIX") {
        Ok(p) => PathBuf::from(p).join("include"),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../include"),
    }
}

/// Builds the C side (printf of sizeof/offsetof) and the Rust side of
/// every listed struct and field, so neither list can miss one.
macro_rules! layouts {
    ($($t:ident { $($f:ident),* })*) => {{
        let mut c = String::new();
        let mut rust: Vec<(String, usize)> = Vec::new();
        $(
            c += &format!("  S({})\n", stringify!($t));
            rust.push((stringify!($t).to_string(), size_of::<$t>()));
            $(
                c += &format!("  O({}, {})\n", stringify!($t), stringify!($f));
                rust.push((format!("{}.{}", stringify!($t), stringify!($f)), offset_of!($t, $f)));
            )*
        )*
        (c, rust)
    }};
}

macro_rules! values {
    ($($name:ident),*) => {{
        let mut c = String::new();
        let mut rust: Vec<(String, usize)> = Vec::new();
        $(
            c += &format!("  V({})\n", stringify!($name));
            rust.push((stringify!($name).to_string(), $name as usize));
        )*
        (c, rust)
    }};
}

fn run_c(body: &str) -> HashMap<String, usize> {
    let dir = std::env::temp_dir().join(format!("sluice-sys-objects-{}-{}", std::process::id(), body.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("layout.c");
    std::fs::write(&src, format!(r#"
#include <stdio.h>
#include <stddef.h>
#include <sluice.h>
#define S(t) printf(#t " %zu\n", sizeof(t));
#define O(t, f) printf(#t "." #f " %zu\n", offsetof(t, f));
#define V(v) printf(#v " %zu\n", (size_t)(v));
int main(void) {{
{body}  return 0;
}}
"#)).unwrap();
    let exe = dir.join("layout");
    let status = Command::new("cc").arg("-I").arg(include_dir()).arg(&src).arg("-o").arg(&exe)
        .status().expect("cc");
    assert!(status.success());
    let out = String::from_utf8(Command::new(&exe).output().unwrap().stdout).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    out.lines().map(|l| {
        let mut p = l.split(' ');
        (p.next().unwrap().to_string(), p.next().unwrap().parse().unwrap())
    }).collect()
}

fn compare(c_body: String, rust: Vec<(String, usize)>) {
    let c = run_c(&c_body);
    for (name, value) in &rust {
        assert_eq!(c[name], *value, "{name}");
    }
    assert_eq!(c.len(), rust.len(), "every C figure is compared");
}

#[test]
fn struct_layouts_match_the_c_compiler() {
    let (c, rust) = layouts! {
        sluice_lock_key { key, len, mode }
        sluice_locks_options { version, max_locks, max_keys, on_full, cleanup_interval_ms, hold_limit_ms,
                               on_held_too_long, held_user_data, monitor }
        sluice_locks_stats { size, live_keys, peak_live_keys, cached_entries, held, waiters, room_waiters,
                             acquisitions, contended, timeouts, cancellations, wait_ns, busy, limit_refusals,
                             held_too_long, bad_releases, trimmed }
        sluice_limiter_options { version, algorithm, limit, window_ns, burst, max_keys, on_full, clock,
                                 clock_user_data, monitor, name }
        sluice_limiter_result { size, allowed, reason, limit, remaining, retry_after_ns, reset_after_ns, index }
        sluice_limiter_item { limiter, key, len, cost }
        sluice_limiter_stats { size, algorithm, limit, window_ns, burst, keys, peak_keys, allowed, rejected,
                               full_refused, full_allowed, waits, waiting, wait_timeouts, wait_cancels,
                               reclaimed, blocks, bytes }
        sluice_breaker_options { version, window, window_calls, window_ms, window_buckets, minimum_calls,
                                 failure_rate_percent, slow_call_ms, slow_rate_percent, open_ms,
                                 half_open_trials, clock, clock_user_data, on_state_change, state_user_data,
                                 monitor, name }
        sluice_breaker_stats { size, state, generation, successes, failures, slow, refused, ignored, released,
                               opened, half_opened, closed, window_calls, window_failures, window_slow,
                               trials_taken, trials_reported }
        sluice_retry_options { version, max_attempts, base_delay_ms, multiplier, max_delay_ms, jitter,
                               total_timeout_ms, attempt_timeout_ms, budget_ratio, budget_tokens, seed,
                               breaker, monitor, name, on_retry, event_user_data, clock, clock_user_data }
        sluice_retry_stats { size, runs, in_flight, attempts, successes_first, successes_after_retry,
                             failures_first, failures_after_retry, budget_refusals, breaker_refusals,
                             deadline_stops, attempt_timeouts, cancelled, late_reports, budget_balance }
        sluice_taskpool_options { version, max_concurrent, workers, max_queued, on_full, adaptive, min_concurrent,
                                  max_concurrent_ceiling, target_latency_ns, monitor, name, clock, clock_user_data,
                                  max_bypass }
        sluice_taskpool_stats { size, limit, submitted, queued, running, completed, failed, rejected, expired,
                                cancelled, closed, peak_running, peak_queued, queue_wait_ns_total, run_ns_total,
                                room_waiting, busy, bad_releases, threads, limit_raised, limit_lowered }
    };
    compare(c, rust);
}

#[test]
fn versions_limits_and_enum_values_match() {
    let (c, rust) = values!(
        SLUICE_LOCKS_OPTIONS_VERSION, SLUICE_LOCKS_MAX_KEY, SLUICE_LOCKS_MAX_MANY,
        SLUICE_LOCK_EXCLUSIVE, SLUICE_LOCK_SHARED, SLUICE_LOCKS_FULL_REJECT, SLUICE_LOCKS_FULL_WAIT,
        SLUICE_LIMITER_OPTIONS_VERSION, SLUICE_LIMITER_MAX_KEY, SLUICE_LIMITER_MAX_LOG, SLUICE_LIMITER_MAX_MANY,
        SLUICE_LIMITER_SLIDING_LOG, SLUICE_LIMITER_SLIDING_WINDOW, SLUICE_LIMITER_GCRA,
        SLUICE_LIMITER_FULL_REJECT, SLUICE_LIMITER_FULL_ALLOW, SLUICE_LIMITER_OK, SLUICE_LIMITER_LIMITED,
        SLUICE_LIMITER_BLOCKED, SLUICE_LIMITER_QUEUED, SLUICE_LIMITER_FULL,
        SLUICE_BREAKER_OPTIONS_VERSION, SLUICE_BREAKER_CLOSED, SLUICE_BREAKER_OPEN, SLUICE_BREAKER_HALF_OPEN,
        SLUICE_BREAKER_WINDOW_COUNT, SLUICE_BREAKER_WINDOW_TIME, SLUICE_BREAKER_SUCCESS, SLUICE_BREAKER_FAILURE,
        SLUICE_RETRY_OPTIONS_VERSION, SLUICE_RETRY_JITTER_NONE, SLUICE_RETRY_JITTER_FULL,
        SLUICE_RETRY_JITTER_EQUAL, SLUICE_RETRY_JITTER_DECORRELATED, SLUICE_RETRY_JITTER_SPREAD,
        SLUICE_RETRY_SUCCESS, SLUICE_RETRY_RETRYABLE, SLUICE_RETRY_PERMANENT,
        SLUICE_TASKPOOL_OPTIONS_VERSION, SLUICE_TASKPOOL_MAX_CONCURRENT, SLUICE_TASKPOOL_MAX_WORKERS,
        SLUICE_PRIORITY_HIGH, SLUICE_PRIORITY_NORMAL, SLUICE_PRIORITY_LOW, SLUICE_TASKPOOL_FULL_REJECT,
        SLUICE_TASKPOOL_FULL_WAIT
    );
    compare(c, rust);
}

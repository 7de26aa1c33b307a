//! Checks the hand-written declarations against the installed C headers:
//! error codes, option versions, the set of functions, and every struct's
//! size and field offsets as the C compiler lays them out.
use std::collections::BTreeSet;
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

fn header(name: &str) -> String {
    std::fs::read_to_string(include_dir().join("sluice").join(name)).expect("header")
}

#[test]
fn error_codes_match_the_errno_map() {
    let text = header("common.h");
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("XX(") {
            let mut parts = rest.split(',');
            let name = parts.next().unwrap().trim().to_string();
            let value: i32 = parts.next().unwrap().trim().parse().unwrap();
            found.push((value, name));
        }
    }
    let ours: Vec<(i32, String)> = SLUICE_ERRNO_MAP.iter().map(|(c, n)| (*c, n.to_string())).collect();
    assert_eq!(found, ours);
}

#[test]
fn every_function_of_the_headers_is_declared() {
    let mut in_headers = BTreeSet::new();
    for h in ["common.h", "op.h", "runtime.h", "monitor.h", "pg.h", "locks.h", "limiter.h", "retry.h", "breaker.h",
              "taskpool.h"] {
        let text = header(h);
        for chunk in text.split("SLUICE_EXTERN").skip(1) {
            let before_paren = chunk.split('(').next().unwrap();
            let name = before_paren.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .filter(|s| !s.is_empty()).next_back().unwrap();
            // Declarations only: the macro's own definition is not one.
            if name.starts_with("sluice_") {
                in_headers.insert(name.to_string());
            }
        }
    }
    let declared: BTreeSet<String> = [DECLARED, DECLARED_LOCKS, DECLARED_LIMITER, DECLARED_RETRY, DECLARED_TASKPOOL]
        .concat()
        .iter().map(|s| s.to_string()).collect();
    assert_eq!(in_headers, declared);
    assert!(header("runtime.h").contains(&format!(
        "#define SLUICE_RUNTIME_OPTIONS_VERSION {}", SLUICE_RUNTIME_OPTIONS_VERSION)));
    assert!(header("monitor.h").contains(&format!(
        "#define SLUICE_MONITOR_OPTIONS_VERSION {}", SLUICE_MONITOR_OPTIONS_VERSION)));
    let pg = header("pg.h");
    assert!(pg.contains(&format!("#define SLUICE_PG_POOL_OPTIONS_VERSION {}", SLUICE_PG_POOL_OPTIONS_VERSION)));
    assert!(pg.contains(&format!("#define SLUICE_PG_QUERY_OPTIONS_VERSION {}", SLUICE_PG_QUERY_OPTIONS_VERSION)));
    assert!(pg.contains(&format!("#define SLUICE_PG_NO_PREPARE {}u", SLUICE_PG_NO_PREPARE)));
    assert!(pg.contains(&format!("#define SLUICE_PG_BINARY_RESULT {}u", SLUICE_PG_BINARY_RESULT)));
    assert!(pg.contains(&format!("#define SLUICE_PG_IDEMPOTENT {}u", SLUICE_PG_IDEMPOTENT)));
    assert!(pg.contains(&format!("SLUICE_PG_EVICT_REASONS_ = {}", SLUICE_PG_EVICT_REASONS_)));
}

#[test]
fn struct_layouts_match_the_c_compiler() {
    let dir = std::env::temp_dir().join(format!("sluice-sys-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("layout.c");
    std::fs::write(&src, r#"
#include <stdio.h>
#include <stddef.h>
#include <sluice.h>
#define S(t) printf(#t " %zu\n", sizeof(t));
#define O(t, f) printf(#t "." #f " %zu\n", offsetof(t, f));
int main(void) {
  S(sluice_buf) O(sluice_buf, size)
  S(sluice_runtime_options) O(sluice_runtime_options, thread_name) O(sluice_runtime_options, lag_interval_ms)
  S(sluice_runtime_stats) O(sluice_runtime_stats, posted) O(sluice_runtime_stats, lag_mean_ns)
  O(sluice_runtime_stats, is_own_thread) O(sluice_runtime_stats, is_closed)
  S(sluice_memory_stats) O(sluice_memory_stats, jemalloc) O(sluice_memory_stats, allocated) O(sluice_memory_stats, arena)
  S(sluice_monitor_options) O(sluice_monitor_options, max_series) O(sluice_monitor_options, disk_path) O(sluice_monitor_options, report_interval_ms) O(sluice_monitor_options, report_cb) O(sluice_monitor_options, report_user_data) O(sluice_monitor_options, clock) O(sluice_monitor_options, clock_user_data)
  S(sluice_span) O(sluice_span, id) O(sluice_span, start_ns)
  S(sluice_monitor_op_stats) O(sluice_monitor_op_stats, name) O(sluice_monitor_op_stats, count) O(sluice_monitor_op_stats, errors) O(sluice_monitor_op_stats, success_rate) O(sluice_monitor_op_stats, min_ns) O(sluice_monitor_op_stats, max_ns) O(sluice_monitor_op_stats, mean_ns) O(sluice_monitor_op_stats, p50_ns) O(sluice_monitor_op_stats, p90_ns) O(sluice_monitor_op_stats, p99_ns) O(sluice_monitor_op_stats, p999_ns) O(sluice_monitor_op_stats, sum_ns)
  S(sluice_process_stats) O(sluice_process_stats, rss_bytes) O(sluice_process_stats, cpu_percent) O(sluice_process_stats, open_fds) O(sluice_process_stats, loop_lag_mean_ns) O(sluice_process_stats, jemalloc) O(sluice_process_stats, alloc_allocated) O(sluice_process_stats, alloc_resident)
  S(sluice_pg_event) O(sluice_pg_event, reason) O(sluice_pg_event, message)
  S(sluice_pg_pool_options) O(sluice_pg_pool_options, conninfo) O(sluice_pg_pool_options, min_size) O(sluice_pg_pool_options, max_size) O(sluice_pg_pool_options, max_connecting) O(sluice_pg_pool_options, max_waiters) O(sluice_pg_pool_options, connect_timeout_ms) O(sluice_pg_pool_options, health_interval_ms) O(sluice_pg_pool_options, health_timeout_ms) O(sluice_pg_pool_options, check_idle_after_ms) O(sluice_pg_pool_options, max_lifetime_ms) O(sluice_pg_pool_options, idle_timeout_ms) O(sluice_pg_pool_options, backoff_base_ms) O(sluice_pg_pool_options, backoff_max_ms) O(sluice_pg_pool_options, fail_fast) O(sluice_pg_pool_options, admission_check) O(sluice_pg_pool_options, statement_cache) O(sluice_pg_pool_options, on_event) O(sluice_pg_pool_options, event_user_data) O(sluice_pg_pool_options, monitor)
  S(sluice_pg_query_options) O(sluice_pg_query_options, timeout_ms) O(sluice_pg_query_options, flags)
  S(sluice_pg_pool_stats) O(sluice_pg_pool_stats, total) O(sluice_pg_pool_stats, waiting) O(sluice_pg_pool_stats, peak_waiting) O(sluice_pg_pool_stats, down) O(sluice_pg_pool_stats, acquires) O(sluice_pg_pool_stats, connect_failures) O(sluice_pg_pool_stats, evictions) O(sluice_pg_pool_stats, queries) O(sluice_pg_pool_stats, ambiguous) O(sluice_pg_pool_stats, errors_08) O(sluice_pg_pool_stats, errors_other) O(sluice_pg_pool_stats, wait_ns_total) O(sluice_pg_pool_stats, hold_ns_recent)
  return 0;
}
"#).unwrap();
    let exe = dir.join("layout");
    let status = Command::new("cc").arg("-I").arg(include_dir()).arg(&src).arg("-o").arg(&exe)
        .status().expect("cc");
    assert!(status.success());
    let out = String::from_utf8(Command::new(&exe).output().unwrap().stdout).unwrap();
    let c: std::collections::HashMap<&str, usize> = out.lines()
        .map(|l| { let mut p = l.split(' '); (p.next().unwrap(), p.next().unwrap().parse().unwrap()) })
        .collect();
    let rust = [
        ("sluice_buf", size_of::<sluice_buf>()), ("sluice_buf.size", offset_of!(sluice_buf, size)),
        ("sluice_runtime_options", size_of::<sluice_runtime_options>()),
        ("sluice_runtime_options.thread_name", offset_of!(sluice_runtime_options, thread_name)),
        ("sluice_runtime_options.lag_interval_ms", offset_of!(sluice_runtime_options, lag_interval_ms)),
        ("sluice_runtime_stats", size_of::<sluice_runtime_stats>()),
        ("sluice_runtime_stats.posted", offset_of!(sluice_runtime_stats, posted)),
        ("sluice_runtime_stats.lag_mean_ns", offset_of!(sluice_runtime_stats, lag_mean_ns)),
        ("sluice_runtime_stats.is_own_thread", offset_of!(sluice_runtime_stats, is_own_thread)),
        ("sluice_runtime_stats.is_closed", offset_of!(sluice_runtime_stats, is_closed)),
        ("sluice_memory_stats", size_of::<sluice_memory_stats>()),
        ("sluice_memory_stats.jemalloc", offset_of!(sluice_memory_stats, jemalloc)),
        ("sluice_memory_stats.allocated", offset_of!(sluice_memory_stats, allocated)),
        ("sluice_memory_stats.arena", offset_of!(sluice_memory_stats, arena)),
        ("sluice_monitor_options", size_of::<sluice_monitor_options>()),
        ("sluice_monitor_options.max_series", offset_of!(sluice_monitor_options, max_series)),
        ("sluice_monitor_options.disk_path", offset_of!(sluice_monitor_options, disk_path)),
        ("sluice_monitor_options.report_interval_ms", offset_of!(sluice_monitor_options, report_interval_ms)),
        ("sluice_monitor_options.report_cb", offset_of!(sluice_monitor_options, report_cb)),
        ("sluice_monitor_options.report_user_data", offset_of!(sluice_monitor_options, report_user_data)),
        ("sluice_monitor_options.clock", offset_of!(sluice_monitor_options, clock)),
        ("sluice_monitor_options.clock_user_data", offset_of!(sluice_monitor_options, clock_user_data)),
        ("sluice_span", size_of::<sluice_span>()),
        ("sluice_span.id", offset_of!(sluice_span, id)),
        ("sluice_span.start_ns", offset_of!(sluice_span, start_ns)),
        ("sluice_monitor_op_stats", size_of::<sluice_monitor_op_stats>()),
        ("sluice_monitor_op_stats.name", offset_of!(sluice_monitor_op_stats, name)),
        ("sluice_monitor_op_stats.count", offset_of!(sluice_monitor_op_stats, count)),
        ("sluice_monitor_op_stats.errors", offset_of!(sluice_monitor_op_stats, errors)),
        ("sluice_monitor_op_stats.success_rate", offset_of!(sluice_monitor_op_stats, success_rate)),
        ("sluice_monitor_op_stats.min_ns", offset_of!(sluice_monitor_op_stats, min_ns)),
        ("sluice_monitor_op_stats.max_ns", offset_of!(sluice_monitor_op_stats, max_ns)),
        ("sluice_monitor_op_stats.mean_ns", offset_of!(sluice_monitor_op_stats, mean_ns)),
        ("sluice_monitor_op_stats.p50_ns", offset_of!(sluice_monitor_op_stats, p50_ns)),
        ("sluice_monitor_op_stats.p90_ns", offset_of!(sluice_monitor_op_stats, p90_ns)),
        ("sluice_monitor_op_stats.p99_ns", offset_of!(sluice_monitor_op_stats, p99_ns)),
        ("sluice_monitor_op_stats.p999_ns", offset_of!(sluice_monitor_op_stats, p999_ns)),
        ("sluice_monitor_op_stats.sum_ns", offset_of!(sluice_monitor_op_stats, sum_ns)),
        ("sluice_process_stats", size_of::<sluice_process_stats>()),
        ("sluice_process_stats.rss_bytes", offset_of!(sluice_process_stats, rss_bytes)),
        ("sluice_process_stats.cpu_percent", offset_of!(sluice_process_stats, cpu_percent)),
        ("sluice_process_stats.open_fds", offset_of!(sluice_process_stats, open_fds)),
        ("sluice_process_stats.loop_lag_mean_ns", offset_of!(sluice_process_stats, loop_lag_mean_ns)),
        ("sluice_process_stats.jemalloc", offset_of!(sluice_process_stats, jemalloc)),
        ("sluice_process_stats.alloc_allocated", offset_of!(sluice_process_stats, alloc_allocated)),
        ("sluice_process_stats.alloc_resident", offset_of!(sluice_process_stats, alloc_resident)),
        ("sluice_pg_event", size_of::<sluice_pg_event>()),
        ("sluice_pg_event.reason", offset_of!(sluice_pg_event, reason)),
        ("sluice_pg_event.message", offset_of!(sluice_pg_event, message)),
        ("sluice_pg_pool_options", size_of::<sluice_pg_pool_options>()),
        ("sluice_pg_pool_options.conninfo", offset_of!(sluice_pg_pool_options, conninfo)),
        ("sluice_pg_pool_options.min_size", offset_of!(sluice_pg_pool_options, min_size)),
        ("sluice_pg_pool_options.max_size", offset_of!(sluice_pg_pool_options, max_size)),
        ("sluice_pg_pool_options.max_connecting", offset_of!(sluice_pg_pool_options, max_connecting)),
        ("sluice_pg_pool_options.max_waiters", offset_of!(sluice_pg_pool_options, max_waiters)),
        ("sluice_pg_pool_options.connect_timeout_ms", offset_of!(sluice_pg_pool_options, connect_timeout_ms)),
        ("sluice_pg_pool_options.health_interval_ms", offset_of!(sluice_pg_pool_options, health_interval_ms)),
        ("sluice_pg_pool_options.health_timeout_ms", offset_of!(sluice_pg_pool_options, health_timeout_ms)),
        ("sluice_pg_pool_options.check_idle_after_ms", offset_of!(sluice_pg_pool_options, check_idle_after_ms)),
        ("sluice_pg_pool_options.max_lifetime_ms", offset_of!(sluice_pg_pool_options, max_lifetime_ms)),
        ("sluice_pg_pool_options.idle_timeout_ms", offset_of!(sluice_pg_pool_options, idle_timeout_ms)),
        ("sluice_pg_pool_options.backoff_base_ms", offset_of!(sluice_pg_pool_options, backoff_base_ms)),
        ("sluice_pg_pool_options.backoff_max_ms", offset_of!(sluice_pg_pool_options, backoff_max_ms)),
        ("sluice_pg_pool_options.fail_fast", offset_of!(sluice_pg_pool_options, fail_fast)),
        ("sluice_pg_pool_options.admission_check", offset_of!(sluice_pg_pool_options, admission_check)),
        ("sluice_pg_pool_options.statement_cache", offset_of!(sluice_pg_pool_options, statement_cache)),
        ("sluice_pg_pool_options.on_event", offset_of!(sluice_pg_pool_options, on_event)),
        ("sluice_pg_pool_options.event_user_data", offset_of!(sluice_pg_pool_options, event_user_data)),
        ("sluice_pg_pool_options.monitor", offset_of!(sluice_pg_pool_options, monitor)),
        ("sluice_pg_query_options", size_of::<sluice_pg_query_options>()),
        ("sluice_pg_query_options.timeout_ms", offset_of!(sluice_pg_query_options, timeout_ms)),
        ("sluice_pg_query_options.flags", offset_of!(sluice_pg_query_options, flags)),
        ("sluice_pg_pool_stats", size_of::<sluice_pg_pool_stats>()),
        ("sluice_pg_pool_stats.total", offset_of!(sluice_pg_pool_stats, total)),
        ("sluice_pg_pool_stats.waiting", offset_of!(sluice_pg_pool_stats, waiting)),
        ("sluice_pg_pool_stats.peak_waiting", offset_of!(sluice_pg_pool_stats, peak_waiting)),
        ("sluice_pg_pool_stats.down", offset_of!(sluice_pg_pool_stats, down)),
        ("sluice_pg_pool_stats.acquires", offset_of!(sluice_pg_pool_stats, acquires)),
        ("sluice_pg_pool_stats.connect_failures", offset_of!(sluice_pg_pool_stats, connect_failures)),
        ("sluice_pg_pool_stats.evictions", offset_of!(sluice_pg_pool_stats, evictions)),
        ("sluice_pg_pool_stats.queries", offset_of!(sluice_pg_pool_stats, queries)),
        ("sluice_pg_pool_stats.ambiguous", offset_of!(sluice_pg_pool_stats, ambiguous)),
        ("sluice_pg_pool_stats.errors_08", offset_of!(sluice_pg_pool_stats, errors_08)),
        ("sluice_pg_pool_stats.errors_other", offset_of!(sluice_pg_pool_stats, errors_other)),
        ("sluice_pg_pool_stats.wait_ns_total", offset_of!(sluice_pg_pool_stats, wait_ns_total)),
        ("sluice_pg_pool_stats.hold_ns_recent", offset_of!(sluice_pg_pool_stats, hold_ns_recent)),
    ];
    for (name, value) in rust {
        assert_eq!(c[name], value, "{name}");
    }
    assert_eq!(c.len(), rust.len(), "every C figure is compared");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_loaded_library_names_the_same_codes() {
    for (code, name) in SLUICE_ERRNO_MAP {
        let got = unsafe { std::ffi::CStr::from_ptr(sluice_err_name(*code)) }.to_str().unwrap();
        assert_eq!(got, format!("SLUICE_{name}"));
    }
}

"""Loads libsluice and declares the C functions the package uses.

Lookup order: $SLUICE_LIB, ctypes.util.find_library("sluice"), then the
SONAME "libsluice.so.0".
"""
import ctypes
import ctypes.util
import os

ABI_MAJOR = 0  # the library major these bindings were written for


def _load():
    names = [os.environ.get("SLUICE_LIB"), ctypes.util.find_library("sluice"), "libsluice.so.0"]
    errors = []
    for name in names:
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            errors.append(f"{name}: {e}")
    raise ImportError("cannot load libsluice (set SLUICE_LIB): " + "; ".join(errors))


lib = _load()

# Checked before any other symbol is looked up, so a library of another
# major fails here with a clear message rather than a missing-symbol error.
lib.sluice_version.restype = ctypes.c_uint
lib.sluice_version.argtypes = []
lib.sluice_version_string.restype = ctypes.c_char_p
lib.sluice_version_string.argtypes = []
if lib.sluice_version() >> 16 != ABI_MAJOR:
    raise ImportError(f"libsluice {lib.sluice_version_string().decode()} is loaded "
                      f"({lib._name}); these bindings need major {ABI_MAJOR}")

c_int, c_uint, c_size, c_u32, c_u64, c_i64 = (
    ctypes.c_int, ctypes.c_uint, ctypes.c_size_t, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int64)
c_void_p, c_char_p = ctypes.c_void_p, ctypes.c_char_p

# Callbacks: user_data is an integer id into the bridge's registry.
STATUS_CB = ctypes.CFUNCTYPE(None, c_void_p, c_int)
FREE_CB = ctypes.CFUNCTYPE(None, c_void_p)
RESULT_CB = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_void_p)
ACQUIRE_CB = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_void_p)
NOTIFY_CB = ctypes.CFUNCTYPE(None, c_void_p, c_char_p, c_char_p, c_int)
# sluice_clock_cb, sluice_locks_held_cb, sluice_breaker_state_cb: called
# from whichever thread reads the clock or changes the state.
CLOCK_CB = ctypes.CFUNCTYPE(c_u64, c_void_p)
HELD_CB = ctypes.CFUNCTYPE(None, c_void_p, c_void_p, c_size, c_u64, c_u64)
STATE_CB = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_int, c_u64)
# sluice_task_fn: runs on a task pool worker thread; returns the task's status.
TASK_FN = ctypes.CFUNCTYPE(c_int, c_void_p)


class Buf(ctypes.Structure):
    _fields_ = [("ptr", c_void_p), ("size", c_size)]


class RuntimeOptions(ctypes.Structure):
    _fields_ = [("version", c_uint), ("thread_name", c_char_p), ("lag_interval_ms", c_u32)]


class RuntimeStats(ctypes.Structure):
    _fields_ = [("size", c_size), ("posted", c_u64), ("ops_started", c_u64),
                ("ops_completed", c_u64), ("ops_pending", c_u64), ("lag_samples", c_u64),
                ("lag_last_ns", c_u64), ("lag_max_ns", c_u64), ("lag_mean_ns", c_u64),
                ("is_own_thread", c_int), ("is_closed", c_int)]


class MemoryStats(ctypes.Structure):
    _fields_ = [("size", c_size), ("jemalloc", c_int), ("allocated", c_u64), ("active", c_u64),
                ("resident", c_u64), ("arena", c_u64)]


PG_EVICT_REASONS = 9


class PgPoolOptions(ctypes.Structure):
    _fields_ = [("version", c_uint), ("conninfo", c_char_p), ("min_size", c_u32),
                ("max_size", c_u32), ("max_connecting", c_u32), ("max_waiters", c_u32),
                ("connect_timeout_ms", c_u32), ("health_interval_ms", c_u32),
                ("health_timeout_ms", c_u32), ("check_idle_after_ms", c_u32),
                ("max_lifetime_ms", c_u32), ("idle_timeout_ms", c_u32),
                ("backoff_base_ms", c_u32), ("backoff_max_ms", c_u32), ("fail_fast", c_int),
                ("admission_check", c_int), ("statement_cache", c_u32), ("on_event", c_void_p),
                ("event_user_data", c_void_p), ("monitor", c_void_p)]


class PgQueryOptions(ctypes.Structure):
    _fields_ = [("version", c_uint), ("timeout_ms", c_i64), ("flags", c_u32)]


class PgPoolStats(ctypes.Structure):
    _fields_ = ([("size", c_size)] +
                [(n, c_u32) for n in ("total", "idle", "in_use", "connecting", "waiting",
                                      "peak_total", "peak_waiting")] +
                [("down", c_int)] +
                [(n, c_u64) for n in ("acquires", "acquire_timeouts", "acquire_exhausted",
                                      "acquire_unreachable", "connect_attempts", "connects",
                                      "connect_failures")] +
                [("evictions", c_u64 * PG_EVICT_REASONS)] +
                [(n, c_u64) for n in ("queries", "query_errors", "query_timeouts", "ambiguous",
                                      "errors_08", "errors_22", "errors_23", "errors_25",
                                      "errors_40", "errors_42", "errors_53", "errors_57",
                                      "errors_other", "wait_ns_total", "query_ns_total",
                                      "hold_ns_recent")])


class MonitorOptions(ctypes.Structure):
    _fields_ = [("version", c_uint), ("max_series", c_u32), ("disk_path", c_char_p),
                ("report_interval_ms", c_u32), ("report_cb", c_void_p),
                ("report_user_data", c_void_p), ("clock", c_void_p), ("clock_user_data", c_void_p)]


class OpStats(ctypes.Structure):
    _fields_ = ([("size", c_size), ("name", ctypes.c_char * 132)] +
                [(n, c_u64) for n in ("count", "errors")] + [("success_rate", ctypes.c_double)] +
                [(n, c_u64) for n in ("min_ns", "max_ns", "mean_ns", "p50_ns", "p90_ns", "p99_ns",
                                      "p999_ns", "sum_ns")])


class ProcessStats(ctypes.Structure):
    _fields_ = ([("size", c_size)] +
                [(n, c_u64) for n in ("rss_bytes", "cpu_user_ns", "cpu_system_ns")] +
                [("cpu_percent", ctypes.c_double)] +
                [(n, c_u64) for n in ("mem_free_bytes", "mem_total_bytes", "disk_free_bytes",
                                      "disk_total_bytes", "open_fds", "loop_lag_last_ns",
                                      "loop_lag_max_ns", "loop_lag_mean_ns")] +
                [("jemalloc", c_int)] +
                [(n, c_u64) for n in ("alloc_allocated", "alloc_active", "alloc_resident")])


class Span(ctypes.Structure):
    _fields_ = [("monitor", c_void_p), ("id", c_u32), ("start_ns", c_u64)]


class LocksOptions(ctypes.Structure):
    _fields_ = [("version", c_uint), ("max_locks", c_u32), ("max_keys", c_u32), ("on_full", c_int),
                ("cleanup_interval_ms", c_u32), ("hold_limit_ms", c_u32),
                ("on_held_too_long", HELD_CB), ("held_user_data", c_void_p), ("monitor", c_void_p)]


class LockKey(ctypes.Structure):
    _fields_ = [("key", c_char_p), ("len", c_size), ("mode", c_int)]


class LocksStats(ctypes.Structure):
    _fields_ = [("size", c_size)] + [(n, c_u64) for n in (
        "live_keys", "peak_live_keys", "cached_entries", "held", "waiters", "room_waiters",
        "acquisitions", "contended", "timeouts", "cancellations", "wait_ns", "busy",
        "limit_refusals", "held_too_long", "bad_releases", "trimmed")]


class LimiterOptions(ctypes.Structure):
    _fields_ = [("version", c_uint), ("algorithm", c_int), ("limit", c_u64), ("window_ns", c_u64),
                ("burst", c_u64), ("max_keys", c_u64), ("on_full", c_int), ("clock", CLOCK_CB),
                ("clock_user_data", c_void_p), ("monitor", c_void_p), ("name", c_char_p)]


class LimiterResult(ctypes.Structure):
    _fields_ = [("size", c_size), ("allowed", c_int), ("reason", c_int), ("limit", c_u64),
                ("remaining", c_u64), ("retry_after_ns", c_u64), ("reset_after_ns", c_u64),
                ("index", c_size)]


class LimiterItem(ctypes.Structure):
    _fields_ = [("limiter", c_void_p), ("key", c_char_p), ("len", c_size), ("cost", c_u64)]


class LimiterStats(ctypes.Structure):
    _fields_ = [("size", c_size), ("algorithm", c_int)] + [(n, c_u64) for n in (
        "limit", "window_ns", "burst", "keys", "peak_keys", "allowed", "rejected", "full_refused",
        "full_allowed", "waits", "waiting", "wait_timeouts", "wait_cancels", "reclaimed", "blocks",
        "bytes")]


class BreakerOptions(ctypes.Structure):
    _fields_ = [("version", c_uint), ("window", c_int), ("window_calls", c_u32),
                ("window_ms", c_i64), ("window_buckets", c_u32), ("minimum_calls", c_u32),
                ("failure_rate_percent", ctypes.c_double), ("slow_call_ms", c_i64),
                ("slow_rate_percent", ctypes.c_double), ("open_ms", c_i64),
                ("half_open_trials", c_u32), ("clock", CLOCK_CB), ("clock_user_data", c_void_p),
                ("on_state_change", STATE_CB), ("state_user_data", c_void_p),
                # version 2
                ("monitor", c_void_p), ("name", c_char_p)]


class BreakerStats(ctypes.Structure):
    _fields_ = ([("size", c_size), ("state", c_int)] +
                [(n, c_u64) for n in ("generation", "successes", "failures", "slow", "refused",
                                      "ignored", "released", "opened", "half_opened", "closed",
                                      "window_calls", "window_failures", "window_slow")] +
                [("trials_taken", c_u32), ("trials_reported", c_u32)])


class RetryOptions(ctypes.Structure):
    _fields_ = [("version", c_uint), ("max_attempts", c_u32), ("base_delay_ms", c_i64),
                ("multiplier", ctypes.c_double), ("max_delay_ms", c_i64), ("jitter", c_int),
                ("total_timeout_ms", c_i64), ("attempt_timeout_ms", c_i64),
                ("budget_ratio", ctypes.c_double), ("budget_tokens", c_u32), ("seed", c_u64),
                ("breaker", c_void_p), ("monitor", c_void_p), ("name", c_char_p),
                ("on_retry", c_void_p), ("event_user_data", c_void_p), ("clock", CLOCK_CB),
                ("clock_user_data", c_void_p)]


class RetryStats(ctypes.Structure):
    _fields_ = [("size", c_size)] + [(n, c_u64) for n in (
        "runs", "in_flight", "attempts", "successes_first", "successes_after_retry",
        "failures_first", "failures_after_retry", "budget_refusals", "breaker_refusals",
        "deadline_stops", "attempt_timeouts", "cancelled", "late_reports")] + [
        ("budget_balance", ctypes.c_double)]


class TaskPoolOptions(ctypes.Structure):
    _fields_ = [("version", c_uint), ("max_concurrent", c_u32), ("workers", c_u32),
                ("max_queued", c_u32), ("on_full", c_int), ("adaptive", c_int),
                ("min_concurrent", c_u32), ("max_concurrent_ceiling", c_u32),
                ("target_latency_ns", c_u64), ("monitor", c_void_p), ("name", c_char_p),
                ("clock", CLOCK_CB), ("clock_user_data", c_void_p), ("max_bypass", c_u32)]


class TaskPoolStats(ctypes.Structure):
    _fields_ = [("size", c_size)] + [(n, c_u64) for n in (
        "limit", "submitted", "queued", "running", "completed", "failed", "rejected", "expired",
        "cancelled", "closed", "peak_running", "peak_queued", "queue_wait_ns_total",
        "run_ns_total", "room_waiting", "busy", "bad_releases", "threads", "limit_raised",
        "limit_lowered")]


_P = ctypes.POINTER
_PROTOTYPES = {
    # common.h
    "sluice_version": (c_uint, []),
    "sluice_version_string": (c_char_p, []),
    "sluice_strerror": (c_char_p, [c_int]),
    "sluice_err_name": (c_char_p, [c_int]),
    "sluice_error_message": (c_char_p, []),
    "sluice_buf_free": (None, [_P(Buf)]),
    "sluice_now_ns": (c_u64, []),
    # op.h
    "sluice_op_cancel": (c_int, [c_void_p]),
    "sluice_op_wait": (c_int, [c_void_p, c_i64, _P(c_int)]),
    "sluice_op_done": (c_int, [c_void_p, _P(c_int)]),
    "sluice_op_free": (None, [c_void_p]),
    # runtime.h
    "sluice_runtime_options_init": (c_int, [_P(RuntimeOptions), c_uint]),
    "sluice_runtime_new": (c_int, [_P(c_void_p), _P(RuntimeOptions)]),
    "sluice_runtime_close": (c_int, [c_void_p]),
    "sluice_runtime_free": (None, [c_void_p]),
    "sluice_runtime_is_loop_thread": (c_int, [c_void_p]),
    "sluice_runtime_post": (c_int, [c_void_p, STATUS_CB, c_void_p, FREE_CB]),
    "sluice_runtime_timer": (c_int, [c_void_p, c_u64, STATUS_CB, c_void_p, FREE_CB, _P(c_void_p)]),
    "sluice_runtime_stats_get": (c_int, [c_void_p, _P(RuntimeStats)]),
    "sluice_runtime_memory": (c_int, [c_void_p, _P(MemoryStats)]),
    "sluice_runtime_describe": (c_int, [c_void_p, _P(Buf)]),
    # pg.h
    "sluice_pg_pool_options_init": (c_int, [_P(PgPoolOptions), c_uint]),
    "sluice_pg_pool_new": (c_int, [_P(c_void_p), c_void_p, _P(PgPoolOptions)]),
    "sluice_pg_pool_close": (c_int, [c_void_p, c_u32, STATUS_CB, c_void_p, FREE_CB, _P(c_void_p)]),
    "sluice_pg_pool_free": (None, [c_void_p]),
    "sluice_pg_pool_acquire": (c_int, [c_void_p, c_i64, ACQUIRE_CB, c_void_p, FREE_CB, _P(c_void_p)]),
    "sluice_pg_conn_release": (c_int, [c_void_p]),
    "sluice_pg_query_options_init": (c_int, [_P(PgQueryOptions), c_uint]),
    "sluice_pg_conn_query": (c_int, [c_void_p, c_char_p, c_int, _P(c_char_p), _P(c_int), _P(c_int),
                                     _P(PgQueryOptions), RESULT_CB, c_void_p, FREE_CB, _P(c_void_p)]),
    "sluice_pg_pool_query": (c_int, [c_void_p, c_char_p, c_int, _P(c_char_p), _P(c_int), _P(c_int),
                                     _P(PgQueryOptions), RESULT_CB, c_void_p, FREE_CB, _P(c_void_p)]),
    "sluice_pg_result_status": (c_int, [c_void_p]),
    "sluice_pg_result_sent": (c_int, [c_void_p]),
    "sluice_pg_result_sqlstate": (c_char_p, [c_void_p]),
    "sluice_pg_result_message": (c_char_p, [c_void_p]),
    "sluice_pg_result_detail": (c_char_p, [c_void_p]),
    "sluice_pg_result_hint": (c_char_p, [c_void_p]),
    "sluice_pg_result_rows": (c_int, [c_void_p]),
    "sluice_pg_result_columns": (c_int, [c_void_p]),
    "sluice_pg_result_affected": (c_i64, [c_void_p]),
    "sluice_pg_result_column_name": (c_char_p, [c_void_p, c_int]),
    "sluice_pg_result_column_type": (c_u32, [c_void_p, c_int]),
    "sluice_pg_result_value": (c_int, [c_void_p, c_int, c_int, _P(c_void_p), _P(c_size)]),
    "sluice_pg_result_retryable": (c_int, [c_void_p, c_int]),
    "sluice_pg_retry_outcome": (c_int, [c_void_p, c_int]),
    "sluice_pg_result_free": (None, [c_void_p]),
    "sluice_pg_pool_stats_get": (c_int, [c_void_p, _P(PgPoolStats)]),
    "sluice_pg_listen": (c_int, [c_void_p, c_char_p, NOTIFY_CB, c_void_p, FREE_CB, _P(c_void_p)]),
    "sluice_pg_listener_ready": (c_int, [c_void_p]),
    "sluice_pg_listener_free": (None, [c_void_p]),
    # monitor.h
    "sluice_monitor_options_init": (c_int, [_P(MonitorOptions), c_uint]),
    "sluice_monitor_new": (c_int, [_P(c_void_p), c_void_p, _P(MonitorOptions)]),
    "sluice_monitor_free": (None, [c_void_p]),
    "sluice_monitor_record": (c_int, [c_void_p, c_char_p, c_size, c_u64, c_int]),
    "sluice_monitor_span_begin": (c_int, [c_void_p, c_char_p, c_size, _P(Span)]),
    "sluice_monitor_span_end": (c_int, [_P(Span), c_int]),
    "sluice_monitor_series_count": (c_u32, [c_void_p]),
    "sluice_monitor_op_stats_get": (c_int, [c_void_p, c_u32, c_int, _P(OpStats)]),
    "sluice_monitor_process": (c_int, [c_void_p, _P(ProcessStats)]),
    "sluice_monitor_json": (c_int, [c_void_p, _P(Buf)]),
    "sluice_monitor_prometheus": (c_int, [c_void_p, _P(Buf)]),
    # locks.h (a guard is an opaque handle value, kept as an integer)
    "sluice_locks_options_init": (c_int, [_P(LocksOptions), c_uint]),
    "sluice_locks_new": (c_int, [_P(c_void_p), c_void_p, _P(LocksOptions)]),
    "sluice_locks_free": (None, [c_void_p]),
    "sluice_locks_try": (c_int, [c_void_p, c_char_p, c_size, c_int, _P(c_void_p)]),
    "sluice_locks_try_many": (c_int, [c_void_p, _P(LockKey), c_size, _P(c_void_p)]),
    "sluice_locks_acquire": (c_int, [c_void_p, c_char_p, c_size, c_int, c_i64, ACQUIRE_CB, c_void_p,
                                     FREE_CB, _P(c_void_p)]),
    "sluice_locks_acquire_many": (c_int, [c_void_p, _P(LockKey), c_size, c_i64, ACQUIRE_CB, c_void_p,
                                          FREE_CB, _P(c_void_p)]),
    "sluice_locks_lock": (c_int, [c_void_p, c_char_p, c_size, c_int, c_i64, _P(c_void_p)]),
    "sluice_locks_lock_many": (c_int, [c_void_p, _P(LockKey), c_size, c_i64, _P(c_void_p)]),
    "sluice_locks_release": (c_int, [c_void_p, c_void_p]),
    "sluice_locks_token": (c_int, [c_void_p, c_void_p, _P(c_u64)]),
    "sluice_locks_trim": (c_int, [c_void_p]),
    "sluice_locks_stats_get": (c_int, [c_void_p, _P(LocksStats)]),
    # limiter.h
    "sluice_limiter_options_init": (c_int, [_P(LimiterOptions), c_uint]),
    "sluice_limiter_new": (c_int, [_P(c_void_p), c_void_p, _P(LimiterOptions)]),
    "sluice_limiter_free": (None, [c_void_p]),
    "sluice_limiter_check": (c_int, [c_void_p, c_char_p, c_size, c_u64, _P(LimiterResult)]),
    "sluice_limiter_peek": (c_int, [c_void_p, c_char_p, c_size, c_u64, _P(LimiterResult)]),
    "sluice_limiter_check_many": (c_int, [_P(LimiterItem), c_size, _P(LimiterResult)]),
    "sluice_limiter_acquire": (c_int, [c_void_p, c_char_p, c_size, c_u64, c_i64, STATUS_CB,
                                       c_void_p, FREE_CB, _P(c_void_p)]),
    "sluice_limiter_wait": (c_int, [c_void_p, c_char_p, c_size, c_u64, c_i64]),
    "sluice_limiter_wake": (c_int, [c_void_p]),
    "sluice_limiter_set_limit": (c_int, [c_void_p, c_u64, c_u64, c_u64]),
    "sluice_limiter_block": (c_int, [c_void_p, c_char_p, c_size, c_u64]),
    "sluice_limiter_unblock": (c_int, [c_void_p, c_char_p, c_size]),
    "sluice_limiter_sweep": (c_i64, [c_void_p]),
    "sluice_limiter_stats_get": (c_int, [c_void_p, _P(LimiterStats)]),
    # breaker.h
    "sluice_breaker_options_init": (c_int, [_P(BreakerOptions), c_uint]),
    "sluice_breaker_new": (c_int, [_P(c_void_p), c_void_p, _P(BreakerOptions)]),
    "sluice_breaker_free": (None, [c_void_p]),
    "sluice_breaker_allow": (c_int, [c_void_p, _P(c_u64)]),
    "sluice_breaker_record": (c_int, [c_void_p, c_u64, c_int, c_u64]),
    "sluice_breaker_release": (c_int, [c_void_p, c_u64]),
    "sluice_breaker_state_get": (c_int, [c_void_p]),
    "sluice_breaker_set_state": (c_int, [c_void_p, c_int]),
    "sluice_breaker_stats_get": (c_int, [c_void_p, _P(BreakerStats)]),
    # retry.h (sessions and the arithmetic; asyncio sleeps between attempts)
    "sluice_retry_options_init": (c_int, [_P(RetryOptions), c_uint]),
    "sluice_retry_new": (c_int, [_P(c_void_p), c_void_p, _P(RetryOptions)]),
    "sluice_retry_free": (None, [c_void_p]),
    "sluice_retry_session_new": (c_int, [c_void_p, c_u64, _P(c_void_p)]),
    "sluice_retry_session_begin": (c_int, [c_void_p, _P(c_u64), _P(c_int)]),
    "sluice_retry_session_end": (c_int, [c_void_p, c_int, c_int, c_u64, _P(c_u64), _P(c_int)]),
    "sluice_retry_session_attempts": (c_u32, [c_void_p]),
    "sluice_retry_session_free": (None, [c_void_p]),
    "sluice_retry_next_delay": (c_int, [_P(RetryOptions), c_u32, c_u64, _P(c_u64), _P(c_u64)]),
    "sluice_retry_seed": (c_u64, [c_u64, c_u64]),
    "sluice_retry_stats_get": (c_int, [c_void_p, _P(RetryStats)]),
    # taskpool.h
    "sluice_taskpool_options_init": (c_int, [_P(TaskPoolOptions), c_uint]),
    "sluice_taskpool_new": (c_int, [_P(c_void_p), c_void_p, _P(TaskPoolOptions)]),
    "sluice_taskpool_free": (None, [c_void_p]),
    "sluice_taskpool_submit": (c_int, [c_void_p, TASK_FN, c_int, c_i64, STATUS_CB, c_void_p,
                                       FREE_CB, _P(c_void_p)]),
    "sluice_taskpool_try_acquire": (c_int, [c_void_p, _P(c_void_p)]),
    "sluice_taskpool_acquire": (c_int, [c_void_p, c_int, c_i64, ACQUIRE_CB, c_void_p, FREE_CB,
                                        _P(c_void_p)]),
    "sluice_taskpool_acquire_wait": (c_int, [c_void_p, c_int, c_i64, _P(c_void_p)]),
    "sluice_taskpool_release": (c_int, [c_void_p, c_void_p, c_int]),
    "sluice_taskpool_resize": (c_int, [c_void_p, c_u32]),
    "sluice_taskpool_shutdown": (c_int, [c_void_p, c_i64]),
    "sluice_taskpool_stats_get": (c_int, [c_void_p, _P(TaskPoolStats)]),
}

for _name, (_res, _args) in _PROTOTYPES.items():
    _fn = getattr(lib, _name)
    _fn.restype = _res
    _fn.argtypes = _args

RUNTIME_OPTIONS_VERSION = 1
PG_POOL_OPTIONS_VERSION = 1
PG_QUERY_OPTIONS_VERSION = 1
MONITOR_OPTIONS_VERSION = 1
LOCKS_OPTIONS_VERSION = 1
LIMITER_OPTIONS_VERSION = 1
BREAKER_OPTIONS_VERSION = 2
RETRY_OPTIONS_VERSION = 1
TASKPOOL_OPTIONS_VERSION = 1


def take_buf(buf):
    """The text of a sluice_buf, which is then freed."""
    try:
        return ctypes.string_at(buf.ptr, buf.size).decode("utf-8", "replace") if buf.ptr else ""
    finally:
        lib.sluice_buf_free(ctypes.byref(buf))

"""The ctypes structs against the C headers: a small C program built
against the installed headers prints every struct's size and each field's
offset, which must equal what ctypes computes. A field removed, retyped or
reordered on either side fails here instead of corrupting memory at run
time."""
import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sluice import _lib

# ctypes class -> C type name; every struct the binding hands to the library.
STRUCTS = {
    _lib.RuntimeOptions: "sluice_runtime_options",
    _lib.RuntimeStats: "sluice_runtime_stats",
    _lib.MemoryStats: "sluice_memory_stats",
    _lib.Buf: "sluice_buf",
    _lib.PgPoolOptions: "sluice_pg_pool_options",
    _lib.PgQueryOptions: "sluice_pg_query_options",
    _lib.PgPoolStats: "sluice_pg_pool_stats",
    _lib.MonitorOptions: "sluice_monitor_options",
    _lib.OpStats: "sluice_monitor_op_stats",
    _lib.ProcessStats: "sluice_process_stats",
    _lib.Span: "sluice_span",
    _lib.LocksOptions: "sluice_locks_options",
    _lib.LockKey: "sluice_lock_key",
    _lib.LocksStats: "sluice_locks_stats",
    _lib.LimiterOptions: "sluice_limiter_options",
    _lib.LimiterResult: "sluice_limiter_result",
    _lib.LimiterItem: "sluice_limiter_item",
    _lib.LimiterStats: "sluice_limiter_stats",
    _lib.BreakerOptions: "sluice_breaker_options",
    _lib.BreakerStats: "sluice_breaker_stats",
    _lib.RetryOptions: "sluice_retry_options",
    _lib.RetryStats: "sluice_retry_stats",
    _lib.TaskPoolOptions: "sluice_taskpool_options",
    _lib.TaskPoolStats: "sluice_taskpool_stats",
}


def _layouts_from_c(tmp_path):
    prefix = os.environ.get("SLUICE_PREFIX")
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not prefix or not cc:
        pytest.skip("needs SLUICE_PREFIX (installed headers) and a C compiler")
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <sluice.h>", "int main(void) {"]
    for cls, cname in STRUCTS.items():
        lines.append(f'printf("{cname} <sizeof> %zu\\n", sizeof({cname}));')
        for field, _ in cls._fields_:
            lines.append(f'printf("{cname} {field} %zu\\n", offsetof({cname}, {field}));')
    lines += ["return 0;", "}"]
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    subprocess.run([cc, "-std=c11", "-I", str(Path(prefix) / "include"), str(src), "-o", str(exe)],
                   check=True, capture_output=True, timeout=120)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True, timeout=60).stdout
    return {(t, f): int(n) for t, f, n in (line.split() for line in out.splitlines())}


def test_every_struct_matches_its_header(tmp_path):
    c = _layouts_from_c(tmp_path)
    mismatches = []
    for cls, cname in STRUCTS.items():
        size_c, size_py = c[(cname, "<sizeof>")], ctypes.sizeof(cls)
        # Options (first field `version`) and stats (`size`) only ever grow
        # at the end, and the binding says which it filled: a newer header may
        # be larger. Every other struct must match exactly.
        grows = cls._fields_[0][0] in ("version", "size")
        if size_c != size_py and not (grows and size_c > size_py):
            mismatches.append(f"{cname}: size C {size_c} ctypes {size_py}")
        for field, _ in cls._fields_:
            if c[(cname, field)] != getattr(cls, field).offset:
                mismatches.append(f"{cname}.{field}: offset C {c[(cname, field)]} "
                                  f"ctypes {getattr(cls, field).offset}")
    assert not mismatches, "\n".join(mismatches)

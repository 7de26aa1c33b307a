"""Version check and error mapping against the real library."""
import ctypes
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import sluice
from sluice import _lib
from sluice.errors import check, error_class


def test_version_matches_the_loaded_library():
    major, minor, patch = sluice.version()
    assert major == sluice.ABI_MAJOR == 0
    assert sluice.version_string() == f"{major}.{minor}.{patch}"


def test_an_unloadable_library_fails_the_import_clearly(tmp_path):
    env = dict(os.environ, SLUICE_LIB=str(tmp_path / "libnothing.so"), LD_LIBRARY_PATH="")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    # find_library or the SONAME may still find an installed copy; only
    # when none is found must the message name the remedy.
    run = subprocess.run([sys.executable, "-c", "import sluice"], env=env, capture_output=True,
                         text=True, timeout=60)
    if run.returncode:
        assert "cannot load libsluice (set SLUICE_LIB)" in run.stderr
        assert "libnothing.so" in run.stderr


def _header():
    prefix = os.environ.get("SLUICE_PREFIX")
    header = Path(prefix or "/nonexistent") / "include/sluice/common.h"
    if not header.exists():
        header = Path(__file__).resolve().parents[3] / "include/sluice/common.h"
    return header.read_text()


def test_error_table_matches_the_header_and_the_library():
    listed = {int(v): n for n, v in re.findall(r"XX\((E[A-Z]+),\s*(-\d+),", _header())}
    assert listed, "SLUICE_ERRNO_MAP not found in common.h"
    assert {code: name for code, name, _, _ in sluice.CODES} == listed
    last = int(re.search(r"SLUICE_ERRNO_LAST_\s*=\s*(-\d+)", _header()).group(1))
    assert min(listed) == last
    classes = set()
    for code, name, cls_name, _ in sluice.CODES:
        cls = getattr(sluice, cls_name)
        assert sluice.lib.sluice_err_name(code).decode() == "SLUICE_" + name
        assert cls.code == code and error_class(code) is cls
        assert issubclass(cls, sluice.SluiceError)
        classes.add(cls)
        err = cls(code, "detail")
        assert (err.code, err.name, err.message) == (code, "SLUICE_" + name, "detail")
    assert len(classes) == len(sluice.CODES)
    # One past the end is unknown to this library and to the binding.
    assert sluice.lib.sluice_err_name(last - 1).decode() == "SLUICE_EUNKNOWN"
    assert error_class(last - 1) is sluice.SluiceError


def test_canceled_error_is_a_sluice_error_not_asyncio_cancellation():
    import asyncio
    assert not issubclass(sluice.CanceledError, asyncio.CancelledError)
    assert issubclass(sluice.TimedOutError, TimeoutError)


def test_option_out_of_range_raises_with_the_library_message():
    with pytest.raises(sluice.InvalidArgumentError) as e:
        sluice.Runtime(lag_interval_ms=70000)
    assert e.value.code == -1 and e.value.name == "SLUICE_EINVAL"
    assert "lag_interval_ms" in e.value.message and isinstance(e.value, ValueError)


def test_unknown_options_version_raises_version_error():
    opts = _lib.RuntimeOptions(version=99)
    out = ctypes.c_void_p()
    with pytest.raises(sluice.VersionError) as e:
        check(sluice.lib.sluice_runtime_new(ctypes.byref(out), ctypes.byref(opts)))
    assert e.value.name == "SLUICE_EVERSION" and "99" in e.value.message
    assert not out.value


def test_the_message_is_the_failing_threads_own():
    seen = {}

    def other():
        try:
            sluice.Runtime(lag_interval_ms=70000)
        except sluice.SluiceError as e:
            seen["other"] = e

    # This thread fails with a different message before and after.
    with pytest.raises(sluice.VersionError):
        check(sluice.lib.sluice_runtime_new(ctypes.byref(ctypes.c_void_p()),
                                            ctypes.byref(_lib.RuntimeOptions(version=99))))
    t = threading.Thread(target=other)
    t.start()
    t.join(60)
    assert "lag_interval_ms" in seen["other"].message
    assert "99" in sluice.lib.sluice_error_message().decode()

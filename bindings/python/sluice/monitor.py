"""The monitor: latency histograms per operation, process figures, export."""
import contextlib
import ctypes

from . import _args, _lib
from ._lib import lib
from .errors import SluiceError, check, make_error

WINDOWS = {"all": 0, "1m": 1, "5m": 2}


class Monitor:
    """Records operations (by span or by value) and reports their figures.
    Recording is lock-free in the library and safe from any thread."""

    def __init__(self, runtime=None, *, max_series=256, disk_path="/"):
        self._h = None
        opts = _lib.MonitorOptions()
        check(lib.sluice_monitor_options_init(ctypes.byref(opts), _lib.MONITOR_OPTIONS_VERSION))
        opts.max_series = max_series
        self._disk = disk_path.encode()
        opts.disk_path = self._disk
        handle = ctypes.c_void_p()
        check(lib.sluice_monitor_new(ctypes.byref(handle), runtime.handle if runtime else None,
                                     ctypes.byref(opts)))
        self._h, self._runtime = handle, runtime

    @property
    def handle(self):
        if not self._h:
            raise make_error(-4, "the monitor is closed")
        return self._h

    def close(self):
        h, self._h = self._h, None
        if h:
            lib.sluice_monitor_free(h)

    def __del__(self):
        self.close()

    def record(self, name, seconds, error=0):
        """One finished operation: its duration and outcome (0 = success, else
        an error code; an exception records as the error's code or -13)."""
        raw = name.encode()
        check(lib.sluice_monitor_record(self.handle, raw, len(raw), int(seconds * 1e9), _code_of(error)))

    @contextlib.contextmanager
    def _span(self, name):
        raw = name.encode()
        span = _lib.Span()
        check(lib.sluice_monitor_span_begin(self.handle, raw, len(raw), ctypes.byref(span)))
        outcome = 0
        try:
            yield
        except BaseException as e:
            outcome = _code_of(e)
            raise
        finally:
            lib.sluice_monitor_span_end(ctypes.byref(span), outcome)

    def span(self, name):
        """`async with monitor.span("op"):` (or plain `with`), as the origin's
        monitor_performance: the block's time and outcome are recorded."""
        return _Span(self, name)

    def stats(self, window="all"):
        out = []
        w = WINDOWS[window]
        for i in range(lib.sluice_monitor_series_count(self.handle)):
            d = _args.read_stats(_lib.OpStats,
                                 lambda h, st: lib.sluice_monitor_op_stats_get(h, i, w, st),
                                 self.handle)
            d["name"] = d["name"].decode("utf-8", "replace")
            out.append(d)
        return out

    def process(self):
        return _args.read_stats(_lib.ProcessStats, lib.sluice_monitor_process, self.handle)

    def json(self):
        buf = _lib.Buf()
        check(lib.sluice_monitor_json(self.handle, ctypes.byref(buf)))
        return _lib.take_buf(buf)

    def prometheus(self):
        buf = _lib.Buf()
        check(lib.sluice_monitor_prometheus(self.handle, ctypes.byref(buf)))
        return _lib.take_buf(buf)


class _Span:
    def __init__(self, monitor, name):
        self._cm = monitor._span(name)

    def __enter__(self):
        return self._cm.__enter__()

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)

    async def __aenter__(self):
        return self._cm.__enter__()

    async def __aexit__(self, *exc):
        return self._cm.__exit__(*exc)


def _code_of(error):
    if isinstance(error, int):
        return error
    if isinstance(error, SluiceError):
        return error.code
    return -13 if error else 0

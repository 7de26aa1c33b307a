"""The runtime: sluice's event loop on its own thread."""
import ctypes

from . import _bridge, _lib
from ._lib import lib
from .errors import check, make_error


class Runtime:
    """Starts sluice's loop thread. Use as a context manager or close() it;
    objects made on it (pools, monitors) must be closed first."""

    def __init__(self, *, lag_interval_ms=100, thread_name="sluice-loop"):
        self._h = None
        opts = _lib.RuntimeOptions()
        check(lib.sluice_runtime_options_init(ctypes.byref(opts), _lib.RUNTIME_OPTIONS_VERSION))
        opts.lag_interval_ms = lag_interval_ms
        self._name = thread_name.encode()
        opts.thread_name = self._name
        handle = ctypes.c_void_p()
        check(lib.sluice_runtime_new(ctypes.byref(handle), ctypes.byref(opts)))
        self._h = handle

    @property
    def handle(self):
        if not self._h:
            raise make_error(-4, "the runtime is closed")
        return self._h

    def close(self):
        """Orderly shutdown: pending operations complete with ClosedError.
        Idempotent."""
        h, self._h = self._h, None
        if h:
            lib.sluice_runtime_free(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    async def sleep(self, seconds):
        """Waits on a sluice timer (on the loop thread); cancellable."""
        uid, fut = _bridge.register()
        op = ctypes.c_void_p()
        rc = lib.sluice_runtime_timer(self.handle, max(0, int(seconds * 1000)), _bridge._status_cb,
                                      uid, _bridge._free_cb, ctypes.byref(op))
        if rc < 0:
            _bridge.unregister(uid)
            raise make_error(rc)
        status, _ = await _bridge.wait(uid, fut, op)
        if status:
            raise make_error(status, "")

    async def run_on_loop(self, fn):
        """Runs fn() on sluice's loop thread and returns its result."""
        result = {}

        def call(_ud, status):
            if status == 0:
                try:
                    result["value"] = fn()
                except BaseException as e:  # handed back to the awaiting task
                    result["error"] = e
            _bridge._status_cb(_ud, status)

        cb = _lib.STATUS_CB(call)
        uid, fut = _bridge.register()
        _keep[uid] = cb
        rc = lib.sluice_runtime_post(self.handle, cb, uid, _bridge._free_cb)
        if rc < 0:
            _bridge.unregister(uid)
            _keep.pop(uid, None)
            raise make_error(rc)
        try:
            status, _ = await _bridge.wait(uid, fut, None)
        finally:
            _keep.pop(uid, None)
        if status:
            raise make_error(status, "")
        if "error" in result:
            raise result["error"]
        return result.get("value")

    def stats(self):
        st = _lib.RuntimeStats(size=ctypes.sizeof(_lib.RuntimeStats))
        check(lib.sluice_runtime_stats_get(self.handle, ctypes.byref(st)))
        return {name: getattr(st, name) for name, _ in st._fields_ if name != "size"}

    def memory(self):
        st = _lib.MemoryStats(size=ctypes.sizeof(_lib.MemoryStats))
        check(lib.sluice_runtime_memory(self.handle, ctypes.byref(st)))
        return {name: getattr(st, name) for name, _ in st._fields_ if name != "size"}

    def describe(self):
        buf = _lib.Buf()
        check(lib.sluice_runtime_describe(self.handle, ctypes.byref(buf)))
        return _lib.take_buf(buf)

    def __repr__(self):
        return f"<sluice.Runtime {self.describe() if self._h else 'closed'}>"


# ctypes callback objects for run_on_loop, alive until the call completes.
_keep = {}

"""The runtime: sluice's event loop on its own thread."""
import atexit
import ctypes
import math
import weakref

from . import _args, _bridge, _lib
from ._lib import lib
from .errors import check, make_error
from .op import Op

_U32_MAX = 2**32 - 1


class Runtime:
    """Starts sluice's loop thread. Use as a context manager or close() it;
    objects made on it (pools, monitors) must be closed first.

    close() shuts the loop down (pending operations complete with
    ClosedError) but keeps the C handle, so stats() and describe() still
    work and later calls fail with the library's own ClosedError; the
    handle is freed when the object is collected, when no call can be
    using it any more."""

    def __init__(self, *, lag_interval_ms=100, thread_name="sluice-loop"):
        self._h = None
        self._closing = False  # read by waits that can be served without the loop
        opts = _lib.RuntimeOptions()
        check(lib.sluice_runtime_options_init(ctypes.byref(opts), _lib.RUNTIME_OPTIONS_VERSION))
        # ctypes would silently wrap an out-of-range value into uint32.
        if not isinstance(lag_interval_ms, int) or not 0 <= lag_interval_ms <= _U32_MAX:
            raise make_error(-1, f"lag_interval_ms {lag_interval_ms!r} is not a uint32")
        opts.lag_interval_ms = lag_interval_ms
        self._name = thread_name.encode() if thread_name is not None else None
        opts.thread_name = self._name
        handle = ctypes.c_void_p()
        check(lib.sluice_runtime_new(ctypes.byref(handle), ctypes.byref(opts)))
        self._h = handle
        _live.add(self)

    @property
    def handle(self):
        return self._h

    def close(self):
        """Orderly shutdown: posted work runs, pending operations complete
        with ClosedError, the loop thread ends; returns when that is done.
        Idempotent. On sluice's loop thread it raises DeadlockError."""
        if self._h:
            if not self.is_loop_thread():
                self._closing = True
            check(lib.sluice_runtime_close(self._h))

    @property
    def closed(self):
        return bool(self.stats()["is_closed"])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        h, self._h = getattr(self, "_h", None), None
        if h and lib is not None:
            lib.sluice_runtime_free(h)  # shuts down first if close() was not called

    def is_loop_thread(self):
        """True on sluice's loop thread (inside post/run_on_loop work)."""
        return lib.sluice_runtime_is_loop_thread(self._h) == 1

    # ---- asynchronous operations ------------------------------------

    def timer(self, seconds):
        """Starts a sluice timer and returns its Op (await it; cancel() it).
        Call from a running asyncio loop."""
        delay_ms = math.ceil(max(0.0, seconds) * 1000)  # never earlier than asked
        uid, fut, op = _bridge.start(
            lambda cb, uid, free_cb, op: lib.sluice_runtime_timer(self._h, delay_ms, cb, uid,
                                                                  free_cb, op),
            _bridge._status_cb)
        return Op(uid, fut, op)

    async def sleep(self, seconds):
        """Waits on a sluice timer. Cancelling the task cancels the timer."""
        await self.timer(seconds)

    def post(self, fn):
        """Queues fn() to run on sluice's loop thread (fire and forget; an
        exception it raises is logged to the "sluice" logger). Any thread;
        no asyncio loop needed. Raises ClosedError once shutdown began."""
        self._post(fn, awaited=False)

    async def run_on_loop(self, fn):
        """Runs fn() on sluice's loop thread and returns its result (or
        raises its exception). Cancelling the awaiting task does not stop
        the work: it runs anyway, its result is dropped."""
        uid, fut = self._post(fn, awaited=True)
        status, outcome = await _bridge.wait(uid, fut, None)
        if status:
            raise make_error(status, "")
        ok, value = outcome
        if not ok:
            raise value
        return value

    def _post(self, fn, awaited):
        if not callable(fn):
            raise make_error(-1, "post: fn is not callable")
        uid, fut = _bridge.register(fn=fn, awaited=awaited)
        rc = lib.sluice_runtime_post(self._h, _bridge._status_cb, uid, _bridge._free_cb)
        if rc < 0:
            err = make_error(rc)
            _bridge.unregister(uid)
            raise err
        return uid, fut

    # ---- figures ----------------------------------------------------

    def stats(self):
        """Loop figures as a dict (posted, ops_started/completed/pending,
        lag_*_ns, is_own_thread, is_closed)."""
        return _args.read_stats(_lib.RuntimeStats, lib.sluice_runtime_stats_get, self._h)

    def memory(self):
        """The library's allocator figures as a dict (jemalloc, allocated,
        active, resident, arena)."""
        return _args.read_stats(_lib.MemoryStats, lib.sluice_runtime_memory, self._h)

    def describe(self):
        """The library's one-line summary of this runtime."""
        buf = _lib.Buf()
        check(lib.sluice_runtime_describe(self._h, ctypes.byref(buf)))
        return _lib.take_buf(buf)

    def __repr__(self):
        return f"<sluice.Runtime {self.describe() if self._h else 'freed'}>"


# Runtimes still open at exit are closed before the interpreter finalizes:
# after that their loop threads could no longer take the GIL to complete
# pending operations, and shutdown would hang.
_live = weakref.WeakSet()


@atexit.register
def _close_all():
    for rt in list(_live):
        try:
            rt.close()
        except Exception:
            pass

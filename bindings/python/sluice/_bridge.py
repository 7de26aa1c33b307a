"""How completions from the library's loop thread reach asyncio.

Each waiting call registers an entry under an integer id and passes the id
as user_data. One module-level trampoline per C callback type (alive for
the whole process, so C can never call a collected function) looks the
entry up on sluice's loop thread and hands the outcome to the entry's
asyncio loop with call_soon_threadsafe. The C free_user_data callback then
removes the entry. If the starting call fails, nothing was taken: the
caller removes the entry with unregister() instead.
"""
import asyncio
import ctypes
import itertools
import logging
import threading

from . import _lib
from ._lib import lib
from .errors import make_error

_log = logging.getLogger("sluice")
_entries = {}
_lock = threading.Lock()
_ids = itertools.count(1)
# Evidence for the exactly-once contract, read by the tests.
_counts = {"callbacks": 0, "frees": 0, "duplicate_callbacks": 0, "unknown_frees": 0}


class _Future(asyncio.Future):
    """A future that knows its entry, which the registry may already have
    dropped (free_user_data runs right after the callback) by the time the
    awaiting task needs its on_late."""

    entry = None


class _Entry:
    __slots__ = ("loop", "future", "on_late", "fn", "fired")

    def __init__(self, loop, future, on_late, fn):
        self.loop, self.future, self.on_late, self.fn = loop, future, on_late, fn
        self.fired = False


def _late(entry, value):
    """Nobody will read `value`: release what it carries."""
    if entry.on_late:
        try:
            entry.on_late(value)
        except Exception:
            _log.exception("sluice: releasing a late outcome failed")


def _deliver(entry, value):
    # On the asyncio loop. The future is only ever shielded, but guard anyway.
    if entry.future.done():
        _late(entry, value)
    else:
        entry.future.set_result(value)


def _fire(uid, status, value):
    """The body of every trampoline, on sluice's loop thread."""
    with _lock:
        entry = _entries.get(uid)
        _counts["callbacks"] += 1
        if entry is None or entry.fired:
            _counts["duplicate_callbacks"] += 1
            return
        entry.fired = True
    if entry.fn is not None:
        value = None
        if status == 0:  # a non-zero status means the work did not run
            try:
                value = (True, entry.fn())
            except BaseException as e:  # handed to the awaiting task, or logged
                value = (False, e)
    if entry.future is None:  # post(): nobody awaits
        if value is not None and not value[0]:
            _log.error("sluice: posted work raised", exc_info=value[1])
        return
    try:
        entry.loop.call_soon_threadsafe(_deliver, entry, (status, value))
    except RuntimeError:  # the asyncio loop is closed
        _late(entry, (status, value))


# Exceptions must not escape into C: ctypes would only print them, but the
# library's loop thread must never see a half-run callback.
@_lib.STATUS_CB
def _status_cb(ud, status):
    try:
        _fire(ud, status, None)
    except BaseException:
        _log.exception("sluice: completion callback failed")


@_lib.RESULT_CB
def _result_cb(ud, status, ptr):
    try:
        _fire(ud, status, ptr)
    except BaseException:
        _log.exception("sluice: completion callback failed")


@_lib.ACQUIRE_CB
def _acquire_cb(ud, status, ptr):
    try:
        _fire(ud, status, ptr)
    except BaseException:
        _log.exception("sluice: completion callback failed")


@_lib.FREE_CB
def _free_cb(ud):
    with _lock:
        if _entries.pop(ud, None) is None:
            _counts["unknown_frees"] += 1
        else:
            _counts["frees"] += 1


def register(on_late=None, fn=None, awaited=True):
    """A fresh (id, future). The future belongs to the running asyncio loop
    (None if not awaited). on_late(value) releases an outcome that arrives
    when nobody waits for it; fn, if given, runs on sluice's loop thread."""
    loop = fut = None
    if awaited:
        loop = asyncio.get_running_loop()
        fut = _Future(loop=loop)
    uid = next(_ids)
    entry = _Entry(loop, fut, on_late, fn)
    if fut is not None:
        fut.entry = entry
    with _lock:
        _entries[uid] = entry
    return uid, fut


def unregister(uid):
    """For a start call that failed: C took nothing, so nothing will free it."""
    with _lock:
        _entries.pop(uid, None)


def pending():
    with _lock:
        return len(_entries)


def counts():
    with _lock:
        return dict(_counts)


async def _settle(fut):
    """The outcome of `fut`, however often the awaiting task is cancelled
    meanwhile: the C side completes it promptly once cancelled."""
    while True:
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            if fut.done():
                return fut.result()


async def wait(uid, fut, op, free_op=True):
    """Awaits a completion. Cancelling the awaiting task cancels the op and
    waits for the C outcome (ECANCELED, or the real outcome if it won the
    race) before CancelledError propagates; an outcome nobody will read goes
    to the entry's on_late. Without an op (posted work) there is nothing to
    cancel: CancelledError propagates at once and the late outcome is
    released when it arrives."""
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        entry = fut.entry
        if op:
            lib.sluice_op_cancel(op)
            _late(entry, await _settle(fut))
        else:
            fut.add_done_callback(lambda f: _late(entry, f.result()))
        raise
    finally:
        if op and free_op:
            lib.sluice_op_free(op)


# ---- starting and awaiting one operation ----------------------------------
# Every waiting call follows the same steps; they live here once so that the
# failure paths (a refused start, a cancelled task, a late grant) cannot drift
# apart between the objects.


def start(begin, callback, on_late=None):
    """Registers an entry and starts the C operation with
    begin(callback, uid, free_cb, op_out) -> rc. Returns (uid, future, op).
    A refused start raises its error with nothing left registered."""
    uid, fut = register(on_late=on_late)
    op = ctypes.c_void_p()
    rc = begin(callback, uid, _free_cb, ctypes.byref(op))
    if rc < 0:
        err = make_error(rc)
        unregister(uid)
        raise err
    return uid, fut, op


async def call(begin, callback=None, on_late=None):
    """start() then wait(): the (status, value) of an operation whose
    callback is `callback` (default: the status-only one)."""
    uid, fut, op = start(begin, callback or _status_cb, on_late)
    return await wait(uid, fut, op)


def status_error(status, what):
    """The error for a failed completion, prefixed with what was waited for."""
    return make_error(status, f"{what}: {lib.sluice_strerror(status).decode()}")


async def grant(begin, give_back, what=None):
    """Awaits an acquire-style operation (a lock grant, a task pool permit, a
    pooled connection) and returns its handle, or raises its status as an
    error (prefixed with `what`; None keeps the library's own message). A
    grant that arrives after the awaiting task gave up is handed to
    give_back(handle), so it is never leaked."""
    def late(outcome):
        status, handle = outcome
        if status == 0 and handle:
            give_back(handle)
    status, handle = await call(begin, _acquire_cb, late)
    if status:
        raise make_error(status, "") if what is None else status_error(status, what)
    return handle

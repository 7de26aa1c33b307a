"""How completions from the library's loop thread reach asyncio.

Each waiting call registers an entry under an integer id and passes the id
as user_data. The C callback (on sluice's loop thread, exactly once) hands
its outcome to the entry's asyncio loop with call_soon_threadsafe; the C
free_user_data callback then removes the entry, so nothing leaks and
nothing is released twice. If the starting call fails, nothing was taken:
the entry is removed here instead.
"""
import asyncio
import itertools
import threading

from . import _lib
from ._lib import lib

_entries = {}
_lock = threading.Lock()
_ids = itertools.count(1)


class _Entry:
    __slots__ = ("loop", "future", "on_late")

    def __init__(self, loop, future, on_late):
        self.loop, self.future, self.on_late = loop, future, on_late


def _deliver(entry, value):
    fut = entry.future
    if fut.done():
        # The awaiting task was cancelled: release what arrived anyway.
        if entry.on_late:
            entry.on_late(value)
        return
    fut.set_result(value)


def _complete(uid, value):
    with _lock:
        entry = _entries.get(uid)
    if entry is None:
        return
    try:
        entry.loop.call_soon_threadsafe(_deliver, entry, value)
    except RuntimeError:  # the asyncio loop is closed: nobody waits any more
        if entry.on_late:
            entry.on_late(value)


@_lib.STATUS_CB
def _status_cb(ud, status):
    _complete(ud, (status, None))


@_lib.RESULT_CB
def _result_cb(ud, status, ptr):
    _complete(ud, (status, ptr))


@_lib.ACQUIRE_CB
def _acquire_cb(ud, status, ptr):
    _complete(ud, (status, ptr))


@_lib.FREE_CB
def _free_cb(ud):
    with _lock:
        _entries.pop(ud, None)


def register(on_late=None):
    """A fresh (id, future) on the running loop. on_late(value) releases a
    value that arrives after the awaiting task gave up."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    uid = next(_ids)
    with _lock:
        _entries[uid] = _Entry(loop, fut, on_late)
    return uid, fut


def unregister(uid):
    with _lock:
        _entries.pop(uid, None)


def pending():
    with _lock:
        return len(_entries)


async def wait(uid, fut, op):
    """Awaits a completion; cancelling the awaiting task cancels the op. The
    C side still completes exactly once (ECANCELED or the real outcome); an
    outcome that arrives after the task gave up goes to the entry's on_late,
    which releases whatever it carries."""
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        if not fut.cancel() and not fut.cancelled():
            with _lock:
                entry = _entries.get(uid)
            if entry and entry.on_late:
                entry.on_late(fut.result())
        if op:
            lib.sluice_op_cancel(op)
        raise
    finally:
        if op:
            lib.sluice_op_free(op)

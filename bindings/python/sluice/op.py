"""Op: a pending sluice operation that can be awaited and cancelled."""
import ctypes

from . import _bridge
from ._lib import lib
from .errors import check, make_error


class Op:
    """A started waiting operation (a timer today). `await op` gives its
    outcome; op.cancel() asks the library to cancel it, and the await then
    resolves per the C outcome: CanceledError, or success if the operation
    completed first. Use it from the asyncio loop that started it."""

    def __init__(self, uid, fut, handle):
        self._uid, self._fut, self._h = uid, fut, handle
        self._outcome = None  # (status, value) once awaited

    def cancel(self):
        """Returns at once; a no-op on a completed operation."""
        if self._h:
            check(lib.sluice_op_cancel(self._h))

    def done(self):
        """True once the C callback has run."""
        if self._h is None:
            return True
        status = ctypes.c_int()
        return check(lib.sluice_op_done(self._h, ctypes.byref(status))) == 1

    def __await__(self):
        return self._result().__await__()

    async def _result(self):
        if self._outcome is None:
            h = self._h
            try:
                self._outcome = await _bridge.wait(self._uid, self._fut, h, free_op=False)
            finally:
                # Awaited to the end or cancelled (then settled): either way
                # the C side is done with it.
                self._h = None
                lib.sluice_op_free(h)
        status, value = self._outcome
        if status:
            raise make_error(status, "")
        return value

    def __del__(self):
        # Never awaited: give our reference back (this does not cancel it).
        h, self._h = getattr(self, "_h", None), None
        if h and lib is not None:
            lib.sluice_op_free(h)

    def __repr__(self):
        state = "done" if self._outcome or self._h is None else "pending"
        return f"<sluice.Op {state}>"

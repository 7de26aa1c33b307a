"""The life cycles that several objects share, written once.

Owned: an object that owns one C handle in `self._h` (a lock manager, a
limiter, a task pool). Grant: something held from one of them (a lock
guard, a task pool permit) that a block or the collector gives back."""
import warnings

from ._lib import lib
from .errors import make_error


class Owned:
    """`handle` (ClosedError once closed), an idempotent close() that frees
    the handle exactly once, `with` support, and a close when collected.
    A subclass sets `_what` (named in the ClosedError) and `_free(h)`."""

    _what = "object"

    def _free(self, h):
        raise NotImplementedError

    @property
    def handle(self):
        if self._h is None:
            raise make_error(-4, f"the {self._what} is closed")
        return self._h

    def close(self):
        h, self._h = self._h, None
        if h is not None:
            self._free(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # lib is None at interpreter exit, when the library may be gone.
        if getattr(self, "_h", None) is not None and lib is not None:
            self.close()


class Grant:
    """A context manager, sync or async, whose block gives the grant back
    through `_release_if_held(exc)`; one collected while still `held` is
    released then, with a ResourceWarning naming `_leaked` (a leak is a bug
    in the caller, but must not keep a key or slot taken forever)."""

    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, _type, exc, _tb):
        self._release_if_held(exc)

    async def __aenter__(self):
        return self

    async def __aexit__(self, _type, exc, _tb):
        self._release_if_held(exc)

    def __del__(self):
        try:
            leaked = lib is not None and self.held
        except AttributeError:  # __init__ did not get as far as the grant
            return
        if leaked:
            warnings.warn(f"sluice: {self._leaked} was never released", ResourceWarning,
                          source=self)
            try:
                self.release()
            except Exception:
                pass

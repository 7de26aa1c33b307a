"""Keyed locks: `async with locks.lock("user:42"):`, shared or exclusive,
one key or several (all or nothing), with deadlines, cancellation, fencing
tokens and a blocking form for plain threads."""
import ctypes
import logging

from . import _args, _bridge, _inflight, _lib, _owned
from ._lib import lib
from .errors import check, make_error

_log = logging.getLogger("sluice")

EXCLUSIVE, SHARED = 0, 1
_MODES = {"exclusive": EXCLUSIVE, "shared": SHARED}
_FULL = {"reject": 0, "wait": 1}
_EAGAIN = -8


class Guard(_owned.Grant):
    """A grant of one key or several. `token` is its fencing token (larger
    than that of every earlier grant of the same key released before it).
    release() gives it back; as a context manager (sync or async) it is
    released when the block ends. Any thread may release it.

    A guard dropped while still held is released when collected, with a
    ResourceWarning: release it explicitly (or use `async with`)."""

    __slots__ = ("_locks", "_g", "keys", "shared", "token", "__weakref__")

    def __init__(self, locks, g, keys, shared):
        self._locks, self._g, self.keys, self.shared = locks, g, keys, shared
        if locks._h is None:  # closed while the grant was on its way: it went with the manager
            self._g = None
            raise make_error(-4, "the lock manager was closed")
        token = ctypes.c_uint64()
        rc = lib.sluice_locks_token(locks._h, g, ctypes.byref(token))
        if rc < 0:  # cannot happen for a grant just made; never leak it
            err = make_error(rc)
            lib.sluice_locks_release(locks._h, g)
            self._g = None
            raise err
        self.token = token.value

    @property
    def held(self):
        """False once released (or once its manager was closed)."""
        return self._g is not None and self._locks._h is not None

    def release(self):
        """Releases the grant; the key passes to the next waiter in line.
        Raises StateError if this guard was already released. After the
        manager was closed it does nothing (the grant went with it)."""
        g, self._g = self._g, None
        if g is None:
            raise make_error(-10, "the guard was already released")
        h = self._locks._h
        if h is not None:
            check(lib.sluice_locks_release(h, g))

    def _release_if_held(self, _exc=None):  # a lock has no outcome to report
        if self._g is not None:
            self.release()

    @property
    def _leaked(self):
        return f"a lock guard of {self.keys!r}"

    def __repr__(self):
        state = "held" if self.held else "released"
        mode = "shared" if self.shared else "exclusive"
        return f"<sluice.Guard {self.keys!r} {mode} token={self.token} {state}>"


class _Request:
    """What a key argument asks for: one key (key bytes, mode) or several
    (a sluice_lock_key array, which keeps its key bytes alive)."""

    __slots__ = ("keys", "key", "mode", "array", "n", "raw")

    def __init__(self, keys, shared):
        self.keys = keys
        default = SHARED if shared else EXCLUSIVE
        if not isinstance(keys, (list, tuple)):
            self.key, self.mode, self.array, self.n = _args.key_bytes(keys), default, None, 1
            self.raw = (self.key,)
            return
        items = []
        for i, item in enumerate(keys):
            if isinstance(item, tuple):
                if len(item) != 2:
                    raise TypeError(f"keys[{i}]: a (key, 'shared'|'exclusive') pair, not {item!r}")
                raw, mode = _args.key_bytes(item[0]), _args.choice(item[1], f"keys[{i}] mode", _MODES)
            else:
                raw, mode = _args.key_bytes(item), default
            items.append((raw, mode))
        self.key, self.mode, self.n = None, default, len(items)
        self.raw = tuple({raw for raw, _ in items})
        self.array = (_lib.LockKey * max(1, len(items)))()
        for slot, (raw, mode) in zip(self.array, items):
            slot.key, slot.len, slot.mode = raw, len(raw), mode


class LockRequest:
    """What Locks.lock() returns: `async with` it (waits), `await` it (a
    Guard), or `with` it in a plain thread (blocks the thread)."""

    def __init__(self, locks, keys, shared, timeout):
        self._locks, self._keys, self._shared, self._timeout = locks, keys, shared, timeout
        self._held = []  # guards of the enclosing with-blocks, innermost last

    def __await__(self):
        return self._locks.acquire(self._keys, shared=self._shared,
                                   timeout=self._timeout).__await__()

    async def __aenter__(self):
        self._held.append(await self)
        return self._held[-1]

    async def __aexit__(self, *exc):
        self._held.pop()._release_if_held()

    def __enter__(self):
        self._held.append(self._locks.acquire_blocking(self._keys, shared=self._shared,
                                                       timeout=self._timeout))
        return self._held[-1]

    def __exit__(self, *exc):
        self._held.pop()._release_if_held()


class Locks(_owned.Owned):
    """Keyed mutual exclusion on a Runtime (sluice_locks). Keys are str
    (UTF-8) or bytes, 1 to 65536 bytes. Waiters on a key are served first
    come, first served; several keys are taken in one fixed order, so two
    callers naming the same keys in any order never deadlock.

    Options (None keeps the library's default): max_locks (idle entries
    cached, 2000), max_keys (keys held or waited on at once, 100000),
    on_full ("reject": LimitError, or "wait" for room), cleanup_interval
    (seconds, 300), hold_limit (seconds, off) with on_held_too_long(key
    bytes, token, held seconds) called on sluice's loop thread, monitor
    (records "locks.wait").

    Close it (or leave its `with` block) before the runtime, and not while
    another thread still uses it: pending waits end with ClosedError and
    guards still held become no-ops."""

    _what = "lock manager"

    def __init__(self, runtime, *, max_locks=None, max_keys=None, on_full=None,
                 cleanup_interval=None, hold_limit=None, on_held_too_long=None, monitor=None):
        self._h = None
        opts = _lib.LocksOptions()
        check(lib.sluice_locks_options_init(ctypes.byref(opts), _lib.LOCKS_OPTIONS_VERSION))
        if max_locks is not None:
            opts.max_locks = _args.uint(max_locks, "max_locks")
        if max_keys is not None:
            opts.max_keys = _args.uint(max_keys, "max_keys")
        if on_full is not None:
            opts.on_full = _args.choice(on_full, "on_full", _FULL)
        if cleanup_interval is not None:
            opts.cleanup_interval_ms = _args.uint(
                _args.seconds_to_ms(cleanup_interval, "cleanup_interval"), "cleanup_interval ms")
        if hold_limit is not None:
            opts.hold_limit_ms = _args.uint(_args.seconds_to_ms(hold_limit, "hold_limit"),
                                            "hold_limit ms")
        self._held_cb = None
        if on_held_too_long is not None:
            if not callable(on_held_too_long):
                raise make_error(-1, "on_held_too_long is not callable")
            self._held_cb = _lib.HELD_CB(_held_trampoline(on_held_too_long))
            opts.on_held_too_long = self._held_cb
        if monitor is not None:
            opts.monitor = monitor.handle
        self._runtime, self._monitor = runtime, monitor  # both must outlive the manager
        # With on_full="wait" a try at the cap is refused (and counted as a
        # limit refusal) where the wait would wait for room: no fast path.
        self._fast, self._inflight = opts.on_full == _FULL["reject"], _inflight.InFlight()
        handle = ctypes.c_void_p()
        check(lib.sluice_locks_new(ctypes.byref(handle), runtime.handle, ctypes.byref(opts)))
        self._h = handle.value

    # ---- acquiring ----------------------------------------------------

    def lock(self, keys, *, shared=False, timeout=None):
        """`async with locks.lock("user:42") as guard:` takes the key for the
        block. `keys` is one key, or a list of keys taken all or none, each
        a key or a (key, "shared"|"exclusive") pair; `shared` is the mode of
        plain keys. `timeout` in seconds (None: no deadline) ends the wait
        with TimedOutError. `await locks.lock(...)` gives the Guard itself;
        plain `with` blocks the calling thread (see acquire_blocking)."""
        return LockRequest(self, keys, shared, timeout)

    async def acquire(self, keys, *, shared=False, timeout=None):
        """Waits for the key(s) and returns the Guard. Raises TimedOutError
        (deadline), LimitError (max_keys live, on_full="reject"),
        ClosedError (manager or runtime closed), InvalidArgumentError (bad
        key: empty, too long, too many). Cancelling the awaiting task
        cancels the wait; a grant that won the race is released.

        A key that is free is taken at once in this thread (a try that
        cannot jump the queue), without the two thread hops of a wait on
        sluice's loop; stats()["busy"] also counts the tries of acquires
        that then had to wait."""
        req = _Request(keys, shared)
        ms = _args.timeout_ms(timeout)
        h = self.handle
        if self._fast and not self._runtime._closing:
            g = self._inflight.attempt(req.raw, lambda: self._try(h, req))
            if g is not None:
                return Guard(self, g, keys, shared)
        if req.array is None:
            def begin(cb, uid, free_cb, op):
                return lib.sluice_locks_acquire(h, req.key, len(req.key), req.mode, ms, cb, uid,
                                                free_cb, op)
        else:
            def begin(cb, uid, free_cb, op):
                return lib.sluice_locks_acquire_many(h, req.array, req.n, ms, cb, uid, free_cb, op)
        self._inflight.add(req.raw)
        try:
            g = await _bridge.grant(begin, self._give_back, f"lock {keys!r}")
        finally:
            self._inflight.remove(req.raw)
        return Guard(self, g, keys, shared)

    def _give_back(self, g):
        # A grant nobody will receive (its task was cancelled).
        h = self._h
        if h is not None:
            lib.sluice_locks_release(h, g)

    def try_acquire(self, keys, *, shared=False):
        """The Guard if the key(s) can be had now without waiting (or
        jumping the queue), else None. Never waits. Raises LimitError,
        InvalidArgumentError as acquire does."""
        req = _Request(keys, shared)
        g = self._try(self.handle, req)
        return None if g is None else Guard(self, g, keys, shared)

    def _try(self, h, req):
        """The grant if the key(s) can be had now, None if busy. Its errors
        (a bad key, the live-key cap under on_full="reject") are those the
        wait would report too, so a wait's fast path raises them as well."""
        g = ctypes.c_void_p()
        if req.array is None:
            rc = lib.sluice_locks_try(h, req.key, len(req.key), req.mode, ctypes.byref(g))
        else:
            rc = lib.sluice_locks_try_many(h, req.array, req.n, ctypes.byref(g))
        if rc == _EAGAIN:
            return None
        check(rc)
        return g.value

    def acquire_blocking(self, keys, *, shared=False, timeout=None):
        """The blocking form of acquire, for plain threads: returns the Guard
        or raises TimedOutError, LimitError, ClosedError. Refused with
        DeadlockError on a thread running an asyncio loop (it would stall
        every task there) and on sluice's loop thread."""
        _args.no_running_loop("Locks.acquire_blocking")
        req = _Request(keys, shared)
        ms = _args.timeout_ms(timeout)
        g = ctypes.c_void_p()
        self._inflight.add(req.raw)  # an asyncio fast path must not jump this wait
        try:
            if req.array is None:
                rc = lib.sluice_locks_lock(self.handle, req.key, len(req.key), req.mode, ms,
                                           ctypes.byref(g))
            else:
                rc = lib.sluice_locks_lock_many(self.handle, req.array, req.n, ms, ctypes.byref(g))
            check(rc)
        finally:
            self._inflight.remove(req.raw)
        return Guard(self, g.value, keys, shared)

    # ---- memory and figures -------------------------------------------

    def trim(self):
        """Frees every cached idle entry now (live keys are untouched)."""
        check(lib.sluice_locks_trim(self.handle))

    def stats(self):
        """Figures as a dict: live_keys, held, waiters, acquisitions,
        contended, timeouts, cancellations, wait_ns, busy, ..."""
        return _args.read_stats(_lib.LocksStats, lib.sluice_locks_stats_get, self.handle)

    # ---- life cycle ---------------------------------------------------

    def close(self):
        """Frees the manager: pending waits end with ClosedError (on sluice's
        loop, before this returns); guards still held become no-ops.
        Idempotent."""
        super().close()

    def _free(self, h):
        lib.sluice_locks_free(h)

    def __repr__(self):
        if self._h is None:
            return "<sluice.Locks closed>"
        st = self.stats()
        return f"<sluice.Locks live_keys={st['live_keys']} held={st['held']} waiters={st['waiters']}>"


def _held_trampoline(fn):
    def held(_ud, key, length, token, held_ns):
        try:
            fn(ctypes.string_at(key, length), token, held_ns / 1e9)
        except BaseException:
            _log.exception("sluice: on_held_too_long raised")
    return held

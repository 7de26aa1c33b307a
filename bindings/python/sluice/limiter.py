"""Per-key rate limits: `limiter.check(key)` answers now, `await
limiter.acquire(key)` waits until the request may pass."""
import ctypes

from . import _args, _bridge, _lib, _owned
from ._lib import lib
from .errors import check, make_error

ALGORITHMS = {"sliding_log": 0, "sliding_window": 1, "gcra": 2}
_ALGORITHM_NAMES = {v: k for k, v in ALGORITHMS.items()}
_FULL = {"reject": 0, "allow": 1}
REASONS = ("ok", "limited", "blocked", "queued", "full")
_EREJECTED, _ELIMIT, _ETIMEDOUT = -15, -9, -6


class LimitResult:
    """The answer to a check or peek. True if the request passed (peek:
    would pass). `reason` is "ok", "limited", "blocked", "queued" (others
    wait on the key and go first) or "full" (a new key beyond max_keys).
    Times are exact integers in ns; `retry_after` and `reset_after` are the
    same in seconds, rounded up so that sleeping them is never too short.
    `index` is the deciding item of check_many."""

    __slots__ = ("allowed", "reason", "limit", "remaining", "retry_after_ns", "reset_after_ns",
                 "index")

    def __init__(self, r):
        self.allowed = bool(r.allowed)
        self.reason = REASONS[r.reason] if 0 <= r.reason < len(REASONS) else str(r.reason)
        self.limit, self.remaining = r.limit, r.remaining
        self.retry_after_ns, self.reset_after_ns, self.index = r.retry_after_ns, r.reset_after_ns, r.index

    @property
    def retry_after(self):
        """Seconds until the same request passes (if nothing else uses the
        key meanwhile); 0.0 when allowed."""
        return _args.ns_to_seconds_up(self.retry_after_ns)

    @property
    def reset_after(self):
        """Seconds until the key is back to a fresh key's state."""
        return _args.ns_to_seconds_up(self.reset_after_ns)

    def __bool__(self):
        return self.allowed

    def __eq__(self, other):
        return isinstance(other, LimitResult) and all(
            getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self):
        return (f"<LimitResult allowed={self.allowed} reason={self.reason} remaining={self.remaining} "
                f"retry_after_ns={self.retry_after_ns} reset_after_ns={self.reset_after_ns}>")


def _result():
    return _lib.LimiterResult(size=ctypes.sizeof(_lib.LimiterResult))


def _answer(rc, r):
    """rc of check/peek/check_many: a refusal is an answer, not an error;
    ELIMIT is an error that carries its answer."""
    if rc == 0 or rc == _EREJECTED:
        return LimitResult(r)
    err = make_error(rc)
    if rc == _ELIMIT:
        err.result = LimitResult(r)
    raise err


class Limiter(_owned.Owned):
    """Per-key rate limits (sluice_limiter): at most `limit` cost units per
    `window` seconds per key, by one of three algorithms:
    "sliding_log" (exact; limit <= 65535), "sliding_window" (approximate,
    O(1) per key) or "gcra" (a token bucket of `burst` units, default
    `limit`). The origin's RateLimiter(max_calls=20, time_window=60.0) is
    Limiter(limit=20, window=60.0).

    `runtime` runs the waits of acquire()/wait(); without it the limiter
    only checks. Options (None keeps the library's default): max_keys
    (100000), on_full ("reject": LimitError for a new key beyond it, or
    "allow": pass untracked), clock (a callable returning monotonic ns,
    e.g. ManualClock, for tests), monitor and name (records
    "<name>.rejected" and "<name>.wait").

    Every method may be called from any thread. Close it (or leave its
    `with` block) before the runtime, and not while another thread uses it."""

    _what = "limiter"

    def __init__(self, runtime=None, *, limit=None, window=None, algorithm=None, burst=None,
                 max_keys=None, on_full=None, clock=None, monitor=None, name=None):
        self._h = None
        opts = _lib.LimiterOptions()
        check(lib.sluice_limiter_options_init(ctypes.byref(opts), _lib.LIMITER_OPTIONS_VERSION))
        if algorithm is not None:
            opts.algorithm = _args.choice(algorithm, "algorithm", ALGORITHMS)
        if limit is not None:
            opts.limit = _args.uint(limit, "limit", _args.U64_MAX)
        if window is not None:
            opts.window_ns = _args.seconds_to_ns(window, "window")
        if burst is not None:
            opts.burst = _args.uint(burst, "burst", _args.U64_MAX)
        if max_keys is not None:
            opts.max_keys = _args.uint(max_keys, "max_keys", _args.U64_MAX)
        if on_full is not None:
            opts.on_full = _args.choice(on_full, "on_full", _FULL)
        self._clock = clock
        self._clock_cb = _args.clock_callback(clock)  # called by the library until freed
        if self._clock_cb is not None:
            opts.clock = self._clock_cb
        self._name = name.encode() if name is not None else None
        if self._name is not None:
            opts.name = self._name
        if monitor is not None:
            opts.monitor = monitor.handle
        self._runtime, self._monitor = runtime, monitor  # both must outlive the limiter
        handle = ctypes.c_void_p()
        check(lib.sluice_limiter_new(ctypes.byref(handle), runtime.handle if runtime else None,
                                     ctypes.byref(opts)))
        self._h = handle.value

    # ---- answering now --------------------------------------------------

    def check(self, key, cost=1):
        """Takes `cost` units of `key` if they are there now. Returns a
        LimitResult, true if it passed. Raises InvalidArgumentError (bad key,
        cost 0 or above the limit: it could never pass) and LimitError (a
        new key while max_keys are tracked, on_full="reject"; its .result
        holds the answer)."""
        raw = _args.key_bytes(key)
        r = _result()
        rc = lib.sluice_limiter_check(self.handle, raw, len(raw),
                                      _args.uint(cost, "cost", _args.U64_MAX), ctypes.byref(r))
        return _answer(rc, r)

    def peek(self, key, cost=1):
        """What check would answer now, consuming nothing (a key not
        tracked is answered as a fresh one, so never LimitError). Raises
        InvalidArgumentError as check does."""
        raw = _args.key_bytes(key)
        r = _result()
        rc = lib.sluice_limiter_peek(self.handle, raw, len(raw),
                                     _args.uint(cost, "cost", _args.U64_MAX), ctypes.byref(r))
        return _answer(rc, r)

    # ---- waiting ------------------------------------------------------

    async def acquire(self, key, cost=1, *, timeout=None):
        """Waits until `cost` units of `key` can be taken, takes them and
        returns True; returns False if `timeout` seconds pass first (None:
        no deadline; 0: only what passes at once). Waiters on a key are
        served first come, first served. Cancelling the awaiting task
        cancels the wait (if the grant won the race the units were taken).
        Raises InvalidArgumentError (bad key or cost, no runtime, or the
        limit was lowered below cost meanwhile), LimitError, ClosedError.

        A cost that can pass now is taken in this thread (a check, which
        never passes requests already waiting on the key: the library queues
        a wait on its key when it starts), without the two thread hops of a
        wait on sluice's loop; stats()["waits"] and the
        monitor's "<name>.wait" count only the requests that waited."""
        raw = _args.key_bytes(key)
        cost = _args.uint(cost, "cost", _args.U64_MAX)
        ms = _args.timeout_ms(timeout)
        h = self.handle
        if self._runtime is None:
            raise make_error(-1, "Limiter.acquire waits on a runtime: Limiter(runtime, ...)")
        # No wait of this key can be on its way unseen: the library queues a
        # wait on its key in the calling thread, and a check then refuses.
        if not self._runtime._closing and self._take_now(h, raw, cost):
            return True
        status, _ = await _bridge.call(
            lambda cb, uid, free_cb, op: lib.sluice_limiter_acquire(h, raw, len(raw), cost, ms, cb,
                                                                    uid, free_cb, op))
        if status == _ETIMEDOUT:
            return False
        if status:
            raise _bridge.status_error(status, f"limiter wait for {key!r}")
        return True

    @staticmethod
    def _take_now(h, raw, cost):
        """The fast path of acquire: True if the cost was taken now. A peek
        first, so that a request that will wait is not also counted (and
        recorded) as a rejected check. Errors are the wait's to report,
        except the key cap, which a wait reports the same way."""
        r = _result()
        if lib.sluice_limiter_peek(h, raw, len(raw), cost, ctypes.byref(r)) != 0:
            return False
        rc = lib.sluice_limiter_check(h, raw, len(raw), cost, ctypes.byref(r))
        if rc == _ELIMIT:
            raise make_error(rc)
        return rc == 0

    def wait(self, key, cost=1, *, timeout=None):
        """The blocking form of acquire, for plain threads: True once the
        units are taken, False at the deadline. Refused with DeadlockError
        on a thread running an asyncio loop and on sluice's loop thread."""
        _args.no_running_loop("Limiter.wait")
        raw = _args.key_bytes(key)
        rc = lib.sluice_limiter_wait(self.handle, raw, len(raw), _args.uint(cost, "cost", _args.U64_MAX),
                                     _args.timeout_ms(timeout))
        if rc == _ETIMEDOUT:
            return False
        check(rc)
        return True

    def wake(self):
        """Makes waiting requests look at their keys again now; call it after
        moving an injected clock (real time wakes them by itself)."""
        check(lib.sluice_limiter_wake(self.handle))

    # ---- control --------------------------------------------------------

    def set_limit(self, limit, window=None, burst=None):
        """Changes the limit (and the window in seconds, None: unchanged; and
        GCRA's burst, None: equal to the new limit). Each key's state
        carries over; waiters whose cost no longer fits fail with
        InvalidArgumentError."""
        window_ns = (self.stats()["window_ns"] if window is None
                     else _args.seconds_to_ns(window, "window"))
        check(lib.sluice_limiter_set_limit(self.handle, _args.uint(limit, "limit", _args.U64_MAX),
                                           window_ns,
                                           0 if burst is None else _args.uint(burst, "burst",
                                                                              _args.U64_MAX)))

    def block(self, key, seconds):
        """Refuses every request for `key` for `seconds` from now (reason
        "blocked"); replaces an earlier block of the key."""
        raw = _args.key_bytes(key)
        check(lib.sluice_limiter_block(self.handle, raw, len(raw),
                                       _args.seconds_to_ns(seconds, "seconds")))

    def unblock(self, key):
        """Lifts a block; True if the key was blocked."""
        raw = _args.key_bytes(key)
        return check(lib.sluice_limiter_unblock(self.handle, raw, len(raw))) == 1

    def sweep(self):
        """Reclaims every key that is back to a fresh key's state now;
        returns how many."""
        return check(lib.sluice_limiter_sweep(self.handle))

    def stats(self):
        """Figures as a dict: algorithm, limit, window_ns, burst, keys,
        allowed, rejected, waits, waiting, wait_timeouts, reclaimed, bytes, ..."""
        out = _args.read_stats(_lib.LimiterStats, lib.sluice_limiter_stats_get, self.handle)
        out["algorithm"] = _ALGORITHM_NAMES.get(out["algorithm"], out["algorithm"])
        return out

    # ---- life cycle -----------------------------------------------------

    def close(self):
        """Frees the limiter; pending waits end with ClosedError. Idempotent."""
        super().close()

    def _free(self, h):
        lib.sluice_limiter_free(h)


def check_many(items):
    """All or nothing across limiters (the user's, the group's, a global
    one): `items` are (limiter, key) or (limiter, key, cost). Every cost is
    taken, or none. Returns the combined LimitResult: allowed if all
    passed, retry_after the longest, remaining the smallest, index the
    deciding item. Errors as Limiter.check, with the item's index."""
    items = list(items)
    arr = (_lib.LimiterItem * max(1, len(items)))()
    for i, (slot, item) in enumerate(zip(arr, items)):
        if not isinstance(item, tuple) or len(item) not in (2, 3):
            raise TypeError(f"items[{i}]: a (limiter, key[, cost]) tuple, not {item!r}")
        limiter, key = item[0], item[1]
        if not isinstance(limiter, Limiter):
            raise TypeError(f"items[{i}]: {limiter!r} is not a Limiter")
        raw = _args.key_bytes(key)
        slot.limiter, slot.key, slot.len = limiter.handle, raw, len(raw)
        slot.cost = _args.uint(item[2] if len(item) == 3 else 1, f"items[{i}] cost", _args.U64_MAX)
    r = _result()
    return _answer(lib.sluice_limiter_check_many(arr, len(items), ctypes.byref(r)), r)

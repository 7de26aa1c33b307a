"""The circuit breaker: stop calling a dependency that fails or is slow,
try it again after a while. Alone (`async with breaker.call():`) or inside
a RetryPolicy."""
import asyncio
import ctypes
import logging
import weakref

from . import _args, _lib
from ._lib import lib
from .errors import check, make_error
from .retry import _classifier

_log = logging.getLogger("sluice")

STATES = ("closed", "open", "half_open")
_STATE_CODES = {name: i for i, name in enumerate(STATES)}
_WINDOWS = {"count": 0, "time": 1}
SUCCESS, FAILURE = 0, 1


class Breaker:
    """A circuit breaker (sluice_breaker). CLOSED: calls pass, and the last
    `window_calls` calls (window="count") or those of the last
    `window_duration` seconds (window="time", moving in `window_buckets`
    steps) are judged once there are `minimum_calls` of them: at
    `failure_rate_percent` failures, or `slow_rate_percent` calls lasting
    `slow_call` seconds or more, it trips OPEN. OPEN: calls fail fast with
    CircuitOpenError for `open_duration` seconds, then `half_open_trials`
    calls are let through (HALF_OPEN) to decide between closing and
    reopening. None keeps the library's default (count window of 100, 10
    calls, 50 %, slow calls off, 30 s open, 3 trials).

    clock: a callable returning monotonic ns (ManualClock for tests).
    on_state_change(old, new, generation), with state names, runs in the
    thread whose call changed the state; keep it short. Any thread may use
    the breaker; it needs no runtime.

    monitor and name: records "<name>.rejected" (each refused call) and
    "<name>.opened" (each trip); the monitor must outlive the breaker."""

    def __init__(self, *, window=None, window_calls=None, window_duration=None, window_buckets=None,
                 minimum_calls=None, failure_rate_percent=None, slow_call=None,
                 slow_rate_percent=None, open_duration=None, half_open_trials=None, clock=None,
                 on_state_change=None, monitor=None, name=None):
        self._h = None
        opts = _lib.BreakerOptions()
        check(lib.sluice_breaker_options_init(ctypes.byref(opts), _lib.BREAKER_OPTIONS_VERSION))
        if window is not None:
            opts.window = _args.choice(window, "window", _WINDOWS)
        _args.set_options(opts, _args.uint, (
            ("window_calls", "window_calls", window_calls),
            ("window_buckets", "window_buckets", window_buckets),
            ("minimum_calls", "minimum_calls", minimum_calls),
            ("half_open_trials", "half_open_trials", half_open_trials)))
        _args.set_options(opts, _args.seconds_to_ms, (
            ("window_ms", "window_duration", window_duration),
            ("slow_call_ms", "slow_call", slow_call),
            ("open_ms", "open_duration", open_duration)))
        if failure_rate_percent is not None:
            opts.failure_rate_percent = _args.number(failure_rate_percent, "failure_rate_percent")
        if slow_rate_percent is not None:
            opts.slow_rate_percent = _args.number(slow_rate_percent, "slow_rate_percent")
        self._clock = clock
        self._clock_cb = _args.clock_callback(clock)  # called by the library until freed
        if self._clock_cb is not None:
            opts.clock = self._clock_cb
        self._state_cb = None
        if on_state_change is not None:
            if not callable(on_state_change):
                raise make_error(-1, "on_state_change is not callable")
            self._state_cb = _lib.STATE_CB(_state_trampoline(on_state_change))
            opts.on_state_change = self._state_cb
        if monitor is not None:
            opts.monitor = monitor.handle
        self._monitor = monitor  # must outlive the breaker
        self._name = name.encode() if name is not None else None
        if self._name is not None:
            opts.name = self._name
        self._users = weakref.WeakSet()  # retry policies built on this breaker
        handle = ctypes.c_void_p()
        check(lib.sluice_breaker_new(ctypes.byref(handle), None, ctypes.byref(opts)))
        self._h = handle.value

    @property
    def handle(self):
        if self._h is None:
            raise make_error(-4, "the breaker is closed")
        return self._h

    def allow(self):
        """Asks "may I call?": returns a ticket for record() or release(), or
        raises CircuitOpenError. Every ticket must be followed by exactly
        one record() or release(), or a half-open breaker waits for ever
        for the missing trial (call() does this for you)."""
        ticket = ctypes.c_uint64()
        rc = lib.sluice_breaker_allow(self.handle, ctypes.byref(ticket))
        if rc < 0:
            raise make_error(rc, "the circuit breaker is open" if rc == -17 else None)
        return ticket.value

    def record(self, ticket, success, duration=0.0):
        """The call of `ticket` finished: `success` (bool) and how long it
        took in seconds. A ticket from an earlier state is ignored; ticket 0
        counts in the current state. Raises InvalidArgumentError (a ticket or
        duration out of range) and ClosedError."""
        self._record(ticket, success, _args.seconds_to_ns(duration, "duration"))

    def _record(self, ticket, success, duration_ns):
        check(lib.sluice_breaker_record(self.handle, _args.uint(ticket, "ticket", _args.U64_MAX),
                                        SUCCESS if success else FAILURE, duration_ns))

    def release(self, ticket):
        """The call of `ticket` did not happen (cancelled): frees its trial."""
        check(lib.sluice_breaker_release(self.handle, _args.uint(ticket, "ticket", _args.U64_MAX)))

    def call(self, classify=None):
        """`async with breaker.call():` (or plain `with`) around one call:
        allow() on entry (CircuitOpenError if refused), then the block's
        duration and outcome are recorded. An exception counts as a failure
        if it is retryable by `classify` (see sluice.retry: the default
        classification, or a callable or a tuple of exception types), and as
        a success if it is permanent (the dependency answered; the request
        was at fault). A cancelled block gives its ticket back."""
        return _Call(self, _classifier(classify))

    @property
    def state(self):
        """The state: "closed", "open" or "half_open" (an open breaker whose
        wait is over reads "open" until the next allow())."""
        return STATES[check(lib.sluice_breaker_state_get(self.handle))]

    def set_state(self, state):
        """Forces a state ("closed", "open", "half_open"): an operator's switch."""
        check(lib.sluice_breaker_set_state(self.handle, _args.choice(state, "state", _STATE_CODES)))

    def stats(self):
        """Figures as a dict: state, generation, successes, failures, slow,
        refused, ignored, released, opened, half_opened, closed, window_*,
        trials_*."""
        out = _args.read_stats(_lib.BreakerStats, lib.sluice_breaker_stats_get, self.handle)
        out["state"] = STATES[out["state"]]
        return out

    def close(self):
        """Frees the breaker. Refused with StateError while a RetryPolicy
        built on it is still open. Idempotent."""
        if self._h is None:
            return
        if any(p._h is not None or p._sessions for p in self._users):
            raise make_error(-10, "the breaker is still used by a RetryPolicy: close that first")
        h, self._h = self._h, None
        lib.sluice_breaker_free(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # Policies hold a reference to their breaker, so none is left here.
        h, self._h = getattr(self, "_h", None), None
        if h is not None and lib is not None:
            lib.sluice_breaker_free(h)

    def __repr__(self):
        return f"<sluice.Breaker {self.state if self._h is not None else 'freed'}>"


class _Call:
    """One call through a breaker, as a context manager."""

    def __init__(self, breaker, classify):
        self._breaker, self._classify = breaker, classify
        self._ticket = self._t0 = None

    def __enter__(self):
        self._ticket = self._breaker.allow()
        self._t0 = _args.now_ns(self._breaker._clock)  # the breaker's clock, injected or not
        return self

    def __exit__(self, exc_type, exc, tb):
        ticket, self._ticket = self._ticket, None
        duration = max(0, _args.now_ns(self._breaker._clock) - self._t0)
        if exc is None:
            self._breaker._record(ticket, True, duration)
        elif isinstance(exc, (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt, SystemExit)):
            self._breaker.release(ticket)  # it did not finish: no verdict
        else:
            retryable, _hint = self._classify(exc)
            self._breaker._record(ticket, not retryable, duration)
        return False

    async def __aenter__(self):
        return self.__enter__()

    async def __aexit__(self, *exc):
        return self.__exit__(*exc)


def _state_trampoline(fn):
    def changed(_ud, old, new, generation):
        try:
            fn(STATES[old], STATES[new], generation)
        except BaseException:
            _log.exception("sluice: on_state_change raised")
    return changed

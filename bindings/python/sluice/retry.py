"""Retry policies: `@sluice.retry(...)` on an async function, or an explicit
RetryPolicy shared by many calls. Each call is a session of the C policy
(sluice_retry_session_*): the library decides whether and how long to wait
(backoff, jitter, deadline, retry budget, breaker, figures), and asyncio
does the waiting, so no thread ever sleeps."""
import asyncio
import ctypes
import functools
import inspect
import logging
import math
import numbers
import threading

from . import _args, _lib
from ._lib import lib
from .errors import SluiceError, check, make_error

_log = logging.getLogger("sluice")

JITTERS = {"none": 0, "full": 1, "equal": 2, "decorrelated": 3, "spread": 4}
SUCCESS, RETRYABLE, PERMANENT = 0, 1, 2
# Codes that mean "not now" rather than "never": timed out before running,
# busy, rate-limited, queue or pool full, database unreachable.
_RETRYABLE_CODES = frozenset({-6, -8, -15, -16, -19, -20})
_EINTERNAL = -13  # the code reported for a failure that is not a SluiceError
_STOPS = {-18: "retry budget exhausted", -6: "retry deadline reached",
          -17: "circuit breaker open", -4: "retry policy closed"}


def default_classify(exc):
    """The default classification: True if trying again may help.

    - An error that carries its own `.retryable` (the pool's query errors:
      the library's sluice_pg_retry_outcome, so serialization failures,
      deadlocks and statements that never reached the server are retried,
      an ambiguous write is not unless the query was idempotent) uses it.
    - Other SluiceErrors: retryable for TimedOutError, WouldBlockError,
      RejectedError, QueueFullError, PoolExhaustedError, UnreachableError;
      permanent for the rest (bad arguments, closed, cancelled, an open
      breaker, an exhausted budget...).
    - ConnectionError and TimeoutError (builtins) are retryable; every
      other exception is permanent: a bug does not heal by retrying."""
    retryable = getattr(exc, "retryable", None)
    if isinstance(retryable, bool):
        return retryable
    if isinstance(exc, SluiceError):
        return exc.code in _RETRYABLE_CODES
    return isinstance(exc, (ConnectionError, TimeoutError, asyncio.TimeoutError))


def _default_retry_after(exc):
    return getattr(exc, "retry_after", None)


def _classifier(classify, retry_after=None):
    """exc -> (retryable, retry-after seconds or None) from the user's
    `classify` (None: default_classify; an exception class or tuple of
    them: exactly those are retryable; a callable returning True, False,
    or None for the default) and `retry_after` (a callable giving the
    server's hint in seconds, default the exception's .retry_after)."""
    if classify is None:
        decide = default_classify
    elif isinstance(classify, tuple) or (isinstance(classify, type) and issubclass(classify, BaseException)):
        types = classify
        decide = lambda exc: isinstance(exc, types)  # noqa: E731
    elif callable(classify):
        def decide(exc):
            verdict = classify(exc)
            return default_classify(exc) if verdict is None else bool(verdict)
    else:
        raise make_error(-1, "classify is a callable, an exception class or a tuple of them")
    hint_of = _default_retry_after if retry_after is None else retry_after
    if not callable(hint_of):
        raise make_error(-1, "retry_after is not callable")

    def classified(exc):
        hint = hint_of(exc)
        if not isinstance(hint, numbers.Real) or isinstance(hint, bool) or \
                not math.isfinite(hint) or hint < 0:
            hint = None  # not a usable hint: ignored, never an error of its own
        return decide(exc), hint

    return classified


class RetryPolicy:
    """A retry policy (sluice_retry), created once and shared by many calls.

    Options (None keeps the library's default; durations in seconds):
    max_attempts (3, the first included), base_delay (0.1), multiplier
    (2.0), max_delay (10), jitter ("full"; "none", "equal",
    "decorrelated", "spread"), total_timeout (none; a deadline over the
    whole run), attempt_timeout (none; an attempt running longer is
    cancelled and counts as a retryable TimedOutError), budget_ratio (0.1;
    retries earned per call, 0 turns the budget off) and budget_tokens
    (10), seed (0: from the time), breaker (a Breaker consulted before
    every attempt), monitor and name (records "<name>.attempt" and
    "<name>.run").

    Python-side options: classify and retry_after (see _classifier and
    default_classify), on_retry(attempt, exc, delay) told of each retry
    before the wait, clock (a callable returning monotonic ns, e.g.
    ManualClock) and sleep (an async callable taking seconds, default
    asyncio.sleep; tests pass one that moves the ManualClock).

    Any thread and any asyncio loop may run it. Close it (or let it be
    collected) before its breaker and monitor."""

    def __init__(self, *, max_attempts=None, base_delay=None, multiplier=None, max_delay=None,
                 jitter=None, total_timeout=None, attempt_timeout=None, budget_ratio=None,
                 budget_tokens=None, seed=None, breaker=None, monitor=None, name=None,
                 classify=None, retry_after=None, on_retry=None, clock=None, sleep=None):
        self._h = None
        opts = _lib.RetryOptions()
        check(lib.sluice_retry_options_init(ctypes.byref(opts), _lib.RETRY_OPTIONS_VERSION))
        if max_attempts is not None:
            opts.max_attempts = _args.uint(max_attempts, "max_attempts")
        _args.set_options(opts, _args.seconds_to_ms, (
            ("base_delay_ms", "base_delay", base_delay), ("max_delay_ms", "max_delay", max_delay),
            ("total_timeout_ms", "total_timeout", total_timeout),
            ("attempt_timeout_ms", "attempt_timeout", attempt_timeout)))
        if multiplier is not None:
            opts.multiplier = _args.number(multiplier, "multiplier")
        if jitter is not None:
            opts.jitter = _args.choice(jitter, "jitter", JITTERS)
        if budget_ratio is not None:
            opts.budget_ratio = _args.number(budget_ratio, "budget_ratio")
        if budget_tokens is not None:
            opts.budget_tokens = _args.uint(budget_tokens, "budget_tokens")
        if seed is not None:
            opts.seed = _args.uint(seed, "seed", _args.U64_MAX)
        if breaker is not None:
            opts.breaker = breaker.handle
        if monitor is not None:
            opts.monitor = monitor.handle
        self._name = name.encode() if name is not None else None
        if self._name is not None:
            opts.name = self._name
        self._clock = clock
        self._clock_cb = _args.clock_callback(clock)  # called by the library until freed
        if self._clock_cb is not None:
            opts.clock = self._clock_cb
        if on_retry is not None and not callable(on_retry):
            raise make_error(-1, "on_retry is not callable")
        if sleep is not None and not callable(sleep):
            raise make_error(-1, "sleep is not callable")
        self._classify = _classifier(classify, retry_after)
        self._on_retry, self._sleep = on_retry, sleep or asyncio.sleep
        self._breaker, self._monitor = breaker, monitor  # both must outlive the policy
        self._sessions = 0  # open sessions, which also need the breaker
        self._sessions_lock = threading.Lock()  # runs may come from several threads
        handle = ctypes.c_void_p()
        check(lib.sluice_retry_new(ctypes.byref(handle), None, ctypes.byref(opts)))
        self._h, self._opts = handle.value, opts
        if breaker is not None:
            breaker._users.add(self)

    @property
    def handle(self):
        if self._h is None:
            raise make_error(-4, "the retry policy is closed")
        return self._h

    @property
    def max_attempts(self):
        return self._opts.max_attempts

    # ---- running ------------------------------------------------------

    async def run(self, fn, *, timeout=None):
        """Calls `fn()` (a callable returning an awaitable) until it succeeds
        and returns its result. Between attempts it sleeps what the policy
        says. The run ends with:
        - the attempt's own exception, if it was permanent or the last
          attempt allowed;
        - RetryBudgetError, TimedOutError (the run's deadline: `timeout`
          seconds from now, or total_timeout) or CircuitOpenError, raised
          from the last attempt's exception (their .attempts and
          .last_error say how far it got).
        Cancelling the awaiting task cancels the run (the attempt in flight
        is cancelled with it, an open breaker trial is given back)."""
        if not callable(fn):
            raise TypeError("fn must be a callable returning an awaitable "
                            "(a coroutine object can only be awaited once)")
        deadline = 0
        if timeout is not None:
            deadline = max(1, _args.now_ns(self._clock) + _args.seconds_to_ns(timeout, "timeout"))
        session = ctypes.c_void_p()
        check(lib.sluice_retry_session_new(self.handle, deadline, ctypes.byref(session)))
        with self._sessions_lock:
            self._sessions += 1
        try:
            return await self._drive(session.value, fn)
        finally:
            # A run not over (cancelled, or a BaseException) counts as cancelled.
            lib.sluice_retry_session_free(session.value)
            with self._sessions_lock:
                self._sessions -= 1

    async def _drive(self, s, fn):
        attempt_deadline, status, delay = ctypes.c_uint64(), ctypes.c_int(), ctypes.c_uint64()
        last = None
        while True:
            if check(lib.sluice_retry_session_begin(s, ctypes.byref(attempt_deadline),
                                                    ctypes.byref(status))) == 0:
                raise self._stopped(status.value, last, lib.sluice_retry_session_attempts(s)) from last
            try:
                value = await self._attempt(fn, attempt_deadline.value,
                                            lib.sluice_retry_session_attempts(s))
            except Exception as exc:
                retryable, hint = self._classify(exc)
                code = exc.code if isinstance(exc, SluiceError) and exc.code else _EINTERNAL
                hint_ns = 0 if hint is None else min(math.ceil(hint * 1e9), _args.U64_MAX)
                again = check(lib.sluice_retry_session_end(
                    s, RETRYABLE if retryable else PERMANENT, code, hint_ns, ctypes.byref(delay),
                    ctypes.byref(status)))
                last = exc
                if not again:
                    attempts = lib.sluice_retry_session_attempts(s)
                    if not retryable or attempts >= self._opts.max_attempts:
                        raise  # the run ended on this attempt: its own exception
                    raise self._stopped(status.value, exc, attempts) from exc
            else:
                check(lib.sluice_retry_session_end(s, SUCCESS, 0, 0, ctypes.byref(delay),
                                                   ctypes.byref(status)))
                return value
            seconds = _args.ns_to_seconds_up(delay.value)
            if self._on_retry is not None:
                try:
                    self._on_retry(lib.sluice_retry_session_attempts(s), last, seconds)
                except Exception:
                    _log.exception("sluice: on_retry raised")
            await self._sleep(seconds)

    async def _attempt(self, fn, deadline_ns, number):
        """One attempt; with an attempt deadline, cancelled at it and turned
        into a (retryable) TimedOutError."""
        if not deadline_ns:
            return await fn()
        remaining = max(0, deadline_ns - _args.now_ns(self._clock)) / 1e9
        task = asyncio.ensure_future(fn())
        try:
            done, _ = await asyncio.wait({task}, timeout=remaining)
        except asyncio.CancelledError:
            await _cancel(task)
            raise
        if done:
            return task.result()
        await _cancel(task)
        raise make_error(-6, f"attempt {number} did not finish by its deadline "
                             "(attempt_timeout, or the run's own deadline)")

    def _stopped(self, status, last, attempts):
        what = _STOPS.get(status, lib.sluice_strerror(status).decode())
        err = make_error(status, f"{what} after {attempts} attempt(s)" +
                         (f"; last error: {last!r}" if last is not None else ""))
        err.attempts, err.last_error = attempts, last
        return err

    def __call__(self, fn):
        """Decorates an async function: each call of it is a run."""
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@retry wraps async functions; {fn!r} is not one")

        @functools.wraps(fn)
        async def retried(*args, **kwargs):
            return await self.run(lambda: fn(*args, **kwargs))

        retried.policy = self
        return retried

    # ---- the arithmetic and the figures ---------------------------------

    def delays(self, count, run=0):
        """The backoff delays in ns (no hints, no deadline) that the run-th
        run of this policy to need a retry draws for retries 1..count
        (sluice_retry_next_delay from sluice_retry_seed(seed, run)). Needs a
        seed unless jitter is "none"."""
        if self._opts.seed == 0 and self._opts.jitter != JITTERS["none"]:
            raise make_error(-10, "delays() reproduces a seeded policy: give seed=")
        rng = ctypes.c_uint64(lib.sluice_retry_seed(self._opts.seed, _args.uint(run, "run",
                                                                                  _args.U64_MAX)))
        delay, prev, out = ctypes.c_uint64(), 0, []
        for n in range(1, _args.uint(count, "count") + 1):
            check(lib.sluice_retry_next_delay(ctypes.byref(self._opts), n, prev, ctypes.byref(rng),
                                              ctypes.byref(delay)))
            prev = delay.value
            out.append(prev)
        return out

    def stats(self):
        """Figures as a dict: runs, in_flight, attempts, successes_first,
        successes_after_retry, failures_*, budget_refusals,
        breaker_refusals, deadline_stops, cancelled, budget_balance, ..."""
        return _args.read_stats(_lib.RetryStats, lib.sluice_retry_stats_get, self.handle)

    def close(self):
        """Frees the policy; runs still going end with ClosedError at their
        next attempt. Idempotent."""
        h, self._h = self._h, None
        if h is not None:
            lib.sluice_retry_free(h)

    def __del__(self):
        if getattr(self, "_h", None) is not None and lib is not None:
            self.close()


async def _cancel(task):
    """Cancels an attempt's task and waits until it has stopped."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: its outcome is moot now


def retry(policy=None, **options):
    """`@sluice.retry(max_attempts=3, base_delay=0.1)` on an async function
    (options as RetryPolicy), `@sluice.retry(policy)` to share a policy, or
    bare `@sluice.retry` for the defaults."""
    if isinstance(policy, RetryPolicy):
        if options:
            raise TypeError("retry(policy) takes no other options")
        return policy
    if policy is None:
        return RetryPolicy(**options)
    if callable(policy) and not options:  # bare @retry
        return RetryPolicy()(policy)
    raise TypeError("retry() takes a RetryPolicy or keyword options")


def retry_with_backoff(max_retries=3, base_delay=0.1, exceptions=None, **options):
    """The origin's decorator: `@retry_with_backoff(max_retries=3,
    base_delay=0.1)`, `max_retries` attempts in all (the origin's loop made
    that many tries), retrying the exception types in `exceptions` (default:
    the default classification), with sluice's jitter, budget and figures."""
    return RetryPolicy(max_attempts=max_retries, base_delay=base_delay, classify=exceptions,
                       **options)

"""Argument conversions shared by the objects: keys, durations, integer
ranges, options and figures structs, injected clocks, and the guard against
blocking an asyncio loop.

ctypes silently wraps an out-of-range int into the C type, so every number
that goes into an options struct or a call is range-checked here first;
the library then checks what the value means (and names the option)."""
import asyncio
import ctypes
import logging
import math
from fractions import Fraction

from . import _lib
from .errors import check, make_error

_log = logging.getLogger("sluice")

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
# Larger than any duration the library accepts (2^40 ms, 2^62 ns), small
# enough that ms * 10^6 still fits an int64.
_MS_MAX = 2**62 // 10**6
WAIT_MS_MAX = 2**40  # the longest timeout_ms of a waiting call


def key_bytes(key):
    """A key as the bytes the library sees: str is UTF-8, bytes-like as is.
    Emptiness and length are the library's to refuse (SLUICE_EINVAL)."""
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"a key is str or bytes, not {type(key).__name__}")


def uint(value, name, top=U32_MAX):
    """An integer option that must fit its C field (uint32 by default)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise make_error(-1, f"{name} {value!r} is not an integer in 0..{top}")
    return value


def number(value, name):
    """A finite float option (a rate, a multiplier)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise make_error(-1, f"{name} {value!r} is not a finite number")
    return float(value)


def seconds_to_ms(value, name):
    """A configured duration in seconds as whole milliseconds (nearest: 0.3 s
    is 300 ms, not 301). 0 stays 0; the library says which values it takes."""
    value = number(value, name)
    if value < 0 or value * 1000 > _MS_MAX:
        raise make_error(-1, f"{name} {value!r} s is out of range")
    return round(value * 1000)


def seconds_to_ns(value, name):
    value = number(value, name)
    if value < 0 or value > _MS_MAX / 1000:
        raise make_error(-1, f"{name} {value!r} s is out of range")
    return round(value * 1e9)


def set_options(opts, convert, fields):
    """Sets each (C field, argument name, value) of an options struct to
    convert(value, name); a value of None keeps the library's default."""
    for field, name, value in fields:
        if value is not None:
            setattr(opts, field, convert(value, name))


def read_stats(struct, getter, handle, skip=()):
    """A figures struct filled by getter(handle, &st) (size set first, as
    the C ABI asks) as a dict of its fields, less `size` and `skip`."""
    st = struct(size=ctypes.sizeof(struct))
    check(getter(handle, ctypes.byref(st)))
    return {name: getattr(st, name) for name, _ in st._fields_
            if name != "size" and name not in skip}


def timeout_ms(timeout):
    """A wait's timeout: None (or inf) is no deadline (-1 for the library),
    else seconds >= 0 rounded up to whole ms, so a wait never ends early."""
    if timeout is None or (isinstance(timeout, float) and timeout == math.inf):
        return -1
    value = number(timeout, "timeout")
    if value < 0:
        raise make_error(-1, f"timeout {timeout!r} is negative (None waits without a deadline)")
    ms = math.ceil(round(value * 1000, 6))  # 0.3 s is 300 ms, not 301 (float noise)
    if ms > WAIT_MS_MAX:  # checked here too: a wait served at once never reaches the library
        raise make_error(-1, f"timeout {timeout!r} s is above 2^40 ms (None waits without a deadline)")
    return ms


def ns_to_seconds_up(ns):
    """ns as float seconds, never below the exact value: sleeping the
    returned time never wakes before `ns` has passed (retry_after)."""
    s = ns / 1e9  # ns is rounded to a float first: may be off by more than one step
    while Fraction(s) * 10**9 < ns:
        s = math.nextafter(s, math.inf)
    return s


def choice(value, name, table):
    """A named option value ("gcra", "wait", ...) as its C enum."""
    try:
        return table[value]
    except (KeyError, TypeError):
        raise make_error(-1, f"{name} {value!r} is not one of {', '.join(map(repr, table))}") \
            from None


def no_running_loop(what):
    """Blocking calls refuse to run on a thread that runs an asyncio loop:
    they would stop every task on it, including the one that would release
    what they wait for."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise make_error(-7, f"{what} blocks the thread and would stall this thread's asyncio "
                         "loop; await the asynchronous form instead")


class ManualClock:
    """A clock for tests and simulations: monotonic nanoseconds that only
    move when told. Give it as `clock=` to a Limiter, Breaker or
    RetryPolicy; any callable returning int nanoseconds works the same way."""

    def __init__(self, start_ns=10**12):
        self.now_ns = uint(start_ns, "start_ns", U64_MAX)

    def __call__(self):
        return self.now_ns

    def advance(self, seconds=0.0, *, ns=0):
        """Moves the clock forward by `seconds` plus `ns` and returns the new time."""
        step = round(number(seconds, "seconds") * 1e9) + uint(ns, "ns", U64_MAX)
        if step < 0:
            raise make_error(-1, "a monotonic clock does not go back")
        self.now_ns += step
        return self.now_ns


def clock_callback(clock):
    """The C clock for a Python callable (None: the library's own). Keep the
    returned object alive as long as the C object that calls it. An
    exception in `clock` is logged and the last good reading is returned
    (a library thread must never see a Python error)."""
    if clock is None:
        return None
    if not callable(clock):
        raise make_error(-1, "clock is not callable")
    last = [0]

    def read(_ud):
        try:
            last[0] = int(clock()) & U64_MAX
        except BaseException:
            _log.exception("sluice: the injected clock raised")
        return last[0]

    return _lib.CLOCK_CB(read)


def now_ns(clock):
    """The time on `clock` (None: the library's monotonic clock)."""
    return _lib.lib.sluice_now_ns() if clock is None else int(clock())

"""The task pool: bounded concurrency under one limit. `async with
pool.slot():` around asynchronous work, `await pool.run(fn, *args)` for a
blocking callable on the pool's own worker threads, both in priority order
with a bounded queue, deadlines and cancellation (sluice_taskpool)."""
import asyncio
import ctypes
import logging
import threading

from . import _args, _bridge, _lib, _owned
from ._lib import lib
from .errors import SluiceError, check, make_error

_log = logging.getLogger("sluice")

PRIORITIES = {"high": 0, "normal": 1, "low": 2}
_FULL = {"reject": 0, "wait": 1}
_EAGAIN, _ECANCELED, _ETIMEDOUT, _EINTERNAL = -8, -5, -6, -13


def _outcome_of(exc):
    """The outcome a slot is given back with: 0 for success, the error's
    own code for a SluiceError, ECANCELED for a cancelled block, else
    EINTERNAL (the library counts every negative outcome as a failure)."""
    if exc is None:
        return 0
    if isinstance(exc, SluiceError) and exc.code < 0:
        return exc.code
    if isinstance(exc, asyncio.CancelledError):
        return _ECANCELED
    return _EINTERNAL


def _finished(rc):
    """A shutdown's return: True if all work had finished, False at the
    deadline with work still running; other errors raise."""
    if rc == _ETIMEDOUT:
        return False
    check(rc)
    return True


class Permit(_owned.Grant):
    """A slot of a TaskPool, held until release(). As a context manager
    (sync or async) it is released when the block ends, as a failure if the
    block raised. Any thread may release it.

    A permit dropped while still held is released when collected, with a
    ResourceWarning: release it explicitly (or use `async with`)."""

    __slots__ = ("_pool", "_p", "__weakref__")

    def __init__(self, pool, handle):
        self._pool, self._p = pool, handle

    @property
    def held(self):
        """False once released (or once its pool was closed)."""
        return self._p is not None and self._pool._h is not None

    def release(self, outcome=0):
        """Gives the slot back (to the next waiting request, if any).
        `outcome` is how the work went: 0 (completed), a negative code, or
        an exception (counted as failed). Raises StateError if this permit
        was already released. After the pool was closed it does nothing."""
        p, self._p = self._p, None
        if p is None:
            raise make_error(-10, "the permit was already released")
        code = outcome if isinstance(outcome, int) and not isinstance(outcome, bool) \
            else _outcome_of(outcome)
        h = self._pool._h
        if h is not None:
            if code > 0:  # the library refuses a positive outcome; never keep the slot for it
                code = _EINTERNAL
            check(lib.sluice_taskpool_release(h, p, code))

    _leaked = "a task pool permit"

    def _release_if_held(self, exc=None):
        if self._p is not None:
            self.release(_outcome_of(exc))

    def __repr__(self):
        return f"<sluice.Permit {'held' if self.held else 'released'}>"


class SlotRequest:
    """What TaskPool.slot() returns: `async with` it (waits for a slot),
    `await` it (the Permit), or `with` it in a plain thread (blocks the
    thread)."""

    def __init__(self, pool, priority, timeout):
        self._pool, self._priority, self._timeout = pool, priority, timeout
        self._held = []  # permits of the enclosing with-blocks, innermost last

    def __await__(self):
        return self._pool.acquire(priority=self._priority, timeout=self._timeout).__await__()

    async def __aenter__(self):
        self._held.append(await self)
        return self._held[-1]

    async def __aexit__(self, _type, exc, _tb):
        self._held.pop()._release_if_held(exc)

    def __enter__(self):
        self._held.append(self._pool.acquire_blocking(priority=self._priority,
                                                      timeout=self._timeout))
        return self._held[-1]

    def __exit__(self, _type, exc, _tb):
        self._held.pop()._release_if_held(exc)


# ---- blocking work: the worker-thread trampoline --------------------------

# uid -> [fn, args, outcome]: what a submitted task runs and what it gave.
# The done callback (on sluice's loop) only carries a status, so the value
# or exception waits here for the awaiting task, which removes the entry.
_tasks = {}
_tasks_lock = threading.Lock()


@_lib.TASK_FN
def _task_trampoline(ud):
    # On a pool worker thread, which takes the GIL for this call. Nothing
    # may escape into C.
    try:
        with _tasks_lock:
            record = _tasks.get(ud)
        if record is None:  # its caller is gone (the runtime shut down): nothing to run
            return _ECANCELED
        fn, args = record[0], record[1]
        try:
            record[2] = (True, fn(*args))
            return 0
        except BaseException as e:  # handed to the awaiting task
            record[2] = (False, e)
            return e.code if isinstance(e, SluiceError) and e.code < 0 else _EINTERNAL
    except BaseException:
        _log.exception("sluice: a task pool trampoline failed")
        return _EINTERNAL


class TaskPool(_owned.Owned):
    """Bounded concurrency on a Runtime (sluice_taskpool): `max_concurrent`
    slots shared by permits (`async with pool.slot():`, try_slot) and by
    blocking calls run on the pool's own worker threads (`await
    pool.run(fn, *args)`). Requests that find every slot taken wait in a
    queue of at most `max_queued`, high before normal before low priority
    (first come first served within one; a lower priority is passed over at
    most `max_bypass` times in a row).

    Options (None keeps the library's default): max_concurrent (20),
    workers (threads for run(); 0: as many as run at once, up to 256),
    max_queued (1000), on_full ("reject": QueueFullError at once, or
    "wait" for room within the request's deadline), adaptive (False) with
    min_concurrent, max_concurrent_ceiling and target_latency (seconds,
    required when adaptive), monitor and name (records "<name>.wait",
    "<name>.run", "<name>.rejected"; default name "taskpool"), clock (a
    callable returning monotonic ns: measures waits and run times, never
    deadlines), max_bypass (4).

    Close it (or leave its `with` block) before the runtime, and not from
    one of its own tasks."""

    _what = "task pool"

    def __init__(self, runtime, *, max_concurrent=None, workers=None, max_queued=None,
                 on_full=None, adaptive=False, min_concurrent=None, max_concurrent_ceiling=None,
                 target_latency=None, monitor=None, name=None, clock=None, max_bypass=None):
        self._h = None
        opts = _lib.TaskPoolOptions()
        check(lib.sluice_taskpool_options_init(ctypes.byref(opts), _lib.TASKPOOL_OPTIONS_VERSION))
        _args.set_options(opts, _args.uint, (
            ("max_concurrent", "max_concurrent", max_concurrent), ("workers", "workers", workers),
            ("max_queued", "max_queued", max_queued),
            ("min_concurrent", "min_concurrent", min_concurrent),
            ("max_concurrent_ceiling", "max_concurrent_ceiling", max_concurrent_ceiling),
            ("max_bypass", "max_bypass", max_bypass)))
        if on_full is not None:
            opts.on_full = _args.choice(on_full, "on_full", _FULL)
        if not isinstance(adaptive, bool):
            raise make_error(-1, f"adaptive {adaptive!r} is not True or False")
        opts.adaptive = int(adaptive)
        if target_latency is not None:
            opts.target_latency_ns = _args.seconds_to_ns(target_latency, "target_latency")
        if monitor is not None:
            opts.monitor = monitor.handle
        self._name = name.encode() if name is not None else None
        if self._name is not None:
            opts.name = self._name
        self._clock_cb = _args.clock_callback(clock)  # called by the library until freed
        if self._clock_cb is not None:
            opts.clock = self._clock_cb
        self._runtime, self._monitor = runtime, monitor  # both must outlive the pool
        # Async waits started through this object and not yet placed or
        # answered: while there are any, the fast path (a try in this
        # thread) is skipped so it cannot jump one of them.
        self._waits, self._waits_lock = 0, threading.Lock()
        handle = ctypes.c_void_p()
        check(lib.sluice_taskpool_new(ctypes.byref(handle), runtime.handle, ctypes.byref(opts)))
        self._h = handle.value

    # ---- permits ------------------------------------------------------

    def slot(self, *, priority="normal", timeout=None):
        """`async with pool.slot(priority="high", timeout=2) as permit:`
        holds a slot for the block; it is released when the block ends (as
        a failure if the block raised). `priority` is "high", "normal" or
        "low"; `timeout` in seconds (None: no deadline; 0: only a slot free
        now) ends the wait with TimedOutError. `await pool.slot()` gives the
        Permit itself; plain `with` blocks the calling thread."""
        return SlotRequest(self, priority, timeout)

    def try_slot(self):
        """A Permit if a slot is free now and nobody is waiting, else None.
        Never waits. Raises ClosedError after shutdown."""
        p = self._try(self.handle)
        return None if p is None else Permit(self, p)

    def _try(self, h):
        p = ctypes.c_void_p()
        rc = lib.sluice_taskpool_try_acquire(h, ctypes.byref(p))
        if rc == _EAGAIN:
            return None
        check(rc)
        return p.value

    async def acquire(self, *, priority="normal", timeout=None):
        """Waits for a slot and returns the Permit. Raises TimedOutError
        (deadline), QueueFullError (queue full, on_full="reject"),
        ClosedError (shut down), InvalidArgumentError (bad priority or
        timeout). Cancelling the awaiting task cancels the wait; a grant
        that won the race is released by the binding (counted as
        completed: the slot went back unused).

        A slot that is free with nobody waiting is taken at once in this
        thread, without the two thread hops of a wait on sluice's loop."""
        prio = _args.choice(priority, "priority", PRIORITIES)
        ms = _args.timeout_ms(timeout)
        h = self.handle
        with self._waits_lock:
            fast = self._waits == 0 and not self._runtime._closing
            p = self._try(h) if fast else None
            if p is None:
                self._waits += 1
        if p is not None:
            return Permit(self, p)
        def begin(cb, uid, free_cb, op):
            return lib.sluice_taskpool_acquire(h, prio, ms, cb, uid, free_cb, op)
        try:
            p = await _bridge.grant(begin, self._give_back, "task pool slot")
        finally:
            with self._waits_lock:
                self._waits -= 1
        return Permit(self, p)

    def _give_back(self, p):
        # A grant nobody will receive (its task was cancelled): the slot went
        # back unused, so it counts as completed.
        h = self._h
        if h is not None:
            lib.sluice_taskpool_release(h, p, 0)

    def acquire_blocking(self, *, priority="normal", timeout=None):
        """The blocking form of acquire, for plain threads: returns the
        Permit or raises as acquire does. Refused with DeadlockError on a
        thread running an asyncio loop and on sluice's loop thread."""
        _args.no_running_loop("TaskPool.acquire_blocking")
        prio = _args.choice(priority, "priority", PRIORITIES)
        ms = _args.timeout_ms(timeout)
        p = ctypes.c_void_p()
        check(lib.sluice_taskpool_acquire_wait(self.handle, prio, ms, ctypes.byref(p)))
        return Permit(self, p.value)

    # ---- blocking work ------------------------------------------------

    async def run(self, fn, *args, priority="normal", timeout=None):
        """Runs fn(*args) on one of the pool's worker threads once a slot is
        free, and returns its result (or raises its exception). `timeout`
        bounds the wait for a slot (TimedOutError; fn never ran), not the
        call itself. Raises QueueFullError, ClosedError as acquire does.

        Cancelling the awaiting task while the call is queued cancels it
        (fn never runs). A call already running cannot be interrupted: the
        cancelled task waits for it to end, so no work outlives its caller
        unseen, then raises CancelledError (the result is dropped).

        fn is a plain callable: it blocks a worker thread (time.sleep, a
        blocking client, CPU work that releases the GIL), not the asyncio
        loop. It must not wait for sluice's loop thread, and an async
        function is refused (await it instead)."""
        if not callable(fn):
            raise TypeError(f"run: {fn!r} is not callable")
        if asyncio.iscoroutinefunction(fn):
            raise TypeError("run: fn is an async function; await it directly, inside "
                            "`async with pool.slot():`")
        prio = _args.choice(priority, "priority", PRIORITIES)
        ms = _args.timeout_ms(timeout)
        h = self.handle
        record, uids = [fn, args, None], []

        def begin(cb, uid, free_cb, op):
            # The task and its done callback share the id as user_data, and
            # a worker may run the task at once: file the record first.
            uids.append(uid)
            with _tasks_lock:
                _tasks[uid] = record
            return lib.sluice_taskpool_submit(h, _task_trampoline, prio, ms, cb, uid, free_cb, op)
        try:
            status, _ = await _bridge.call(begin)
        finally:
            with _tasks_lock:
                for uid in uids:
                    _tasks.pop(uid, None)
        if record[2] is not None:  # fn ran: its own outcome, whatever the status says
            ok, value = record[2]
            if ok:
                return value
            raise value
        if status:
            raise _bridge.status_error(status, "task pool call")
        raise make_error(_EINTERNAL, "task pool call completed without running")

    # ---- control and figures ------------------------------------------

    def resize(self, max_concurrent):
        """Sets the number of slots. Raising it grants waiting requests at
        once; lowering it takes nothing away from work already granted.
        Raises InvalidArgumentError (0 or above 65536), RangeError
        (adaptive, outside its floor and ceiling)."""
        check(lib.sluice_taskpool_resize(self.handle, _args.uint(max_concurrent, "max_concurrent")))

    def shutdown(self, timeout=None):
        """Stops accepting work (later requests raise ClosedError), ends
        every waiting request with ClosedError, and waits up to `timeout`
        seconds (None: no limit) for calls running and permits held to
        finish. Returns True if everything had finished, False if some
        work still ran at the deadline (the shutdown itself has happened;
        nothing is interrupted). Permits may still be released and stats()
        read afterwards.

        On a thread running an asyncio loop only timeout=0 is allowed
        (waiting there would stop the tasks that release their permits):
        it closes the queue and returns; use `await pool.drain(timeout)` to
        wait as well."""
        ms = _args.timeout_ms(timeout)
        if ms != 0:
            _args.no_running_loop("TaskPool.shutdown with a timeout other than 0")
        return _finished(lib.sluice_taskpool_shutdown(self.handle, ms))

    async def drain(self, timeout=None):
        """shutdown(timeout) from asyncio: the wait happens on a helper
        thread (the call releases the GIL), so this loop's tasks can still
        release their permits meanwhile. True if everything had finished."""
        ms = _args.timeout_ms(timeout)
        h = self.handle
        if _finished(lib.sluice_taskpool_shutdown(h, 0)):  # closes the queue now, in this thread
            return True
        return _finished(await asyncio.get_running_loop().run_in_executor(
            None, lib.sluice_taskpool_shutdown, h, ms))

    def stats(self):
        """Figures as a dict: limit, submitted, queued, running, completed,
        failed, rejected, expired, cancelled, closed, peak_running,
        peak_queued, queue_wait_ns_total, run_ns_total, room_waiting, busy,
        bad_releases, threads, limit_raised, limit_lowered."""
        return _args.read_stats(_lib.TaskPoolStats, lib.sluice_taskpool_stats_get, self.handle)

    # ---- life cycle ---------------------------------------------------

    def close(self):
        """Frees the pool: waiting requests end with ClosedError, calls
        already running are waited for, permits still held become no-ops.
        Idempotent. Not from one of the pool's own tasks."""
        super().close()

    def _free(self, h):
        lib.sluice_taskpool_free(h)

    def __repr__(self):
        if self._h is None:
            return "<sluice.TaskPool closed>"
        st = self.stats()
        return (f"<sluice.TaskPool limit={st['limit']} running={st['running']} "
                f"queued={st['queued']}>")

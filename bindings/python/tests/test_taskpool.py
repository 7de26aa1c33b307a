"""The task pool against the real library: the limit under many users,
priority order, a full queue, deadlines, cancellation racing grants (no
slot ever leaks), blocking calls on worker threads, shutdown, bad input.

Waits are on the library's figures, events and its own deadlines;
timeouts are hang guards only."""
import asyncio
import threading
import time

import pytest

import sluice

from _support import GUARD, probe, run, until

pytestmark = pytest.mark.usefixtures("exactly_once")


def settled(pool, **expect):
    """Asserts the figures add up (no call in progress) and any expected ones."""
    st = pool.stats()
    assert st["submitted"] == sum(st[k] for k in ("completed", "failed", "rejected", "expired",
                                                  "cancelled", "closed", "queued",
                                                  "room_waiting", "running"))
    for k, v in expect.items():
        assert st[k] == v, (k, st)
    return st


@pytest.fixture
def pool(rt):
    p = sluice.TaskPool(rt, max_concurrent=3, name="test.pool")
    yield p
    p.close()


# ---- permits -----------------------------------------------------------


def test_try_slot_takes_free_slots_only(pool):
    held = [pool.try_slot() for _ in range(3)]
    assert all(p is not None and p.held for p in held)
    assert pool.try_slot() is None
    assert pool.stats()["busy"] == 1
    held[0].release()
    again = pool.try_slot()
    assert again is not None
    with pytest.raises(sluice.StateError):
        held[0].release()
    for p in held[1:] + [again]:
        p.release()
    settled(pool, running=0, completed=4, failed=0)


def test_limit_is_never_exceeded_under_many_users(pool):
    active, peak = [0], [0]

    async def user(i):
        for _ in range(5):
            async with pool.slot(priority=("high", "normal", "low")[i % 3]):
                active[0] += 1
                peak[0] = max(peak[0], active[0])
                assert active[0] <= 3
                for _ in range(3):
                    await asyncio.sleep(0)  # let the others in, if they could get in
                active[0] -= 1

    async def main():
        await asyncio.gather(*(user(i) for i in range(60)))

    run(main())
    st = settled(pool, running=0, queued=0, completed=300)
    assert peak[0] <= 3 and st["peak_running"] <= 3


def test_limit_holds_for_blocking_calls_and_mixed_users(rt):
    pool = sluice.TaskPool(rt, max_concurrent=4, workers=8)
    lock, active, peak = threading.Lock(), [0], [0]
    gate = threading.Event()

    def work(i):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        gate.wait(GUARD)  # hold the slot until every caller has queued
        with lock:
            active[0] -= 1
        return i * 2

    async def main():
        calls = [asyncio.ensure_future(pool.run(work, i)) for i in range(40)]
        await until(lambda: pool.stats()["running"] == 4 and pool.stats()["queued"] == 36)
        assert pool.try_slot() is None  # full: a permit user gets nothing either
        gate.set()
        return await asyncio.gather(*calls)

    assert run(main()) == [i * 2 for i in range(40)]
    assert peak[0] <= 4 and pool.stats()["peak_running"] == 4
    settled(pool, running=0, completed=40)
    pool.close()


def test_priority_order(rt):
    pool = sluice.TaskPool(rt, max_concurrent=1)
    order = []

    async def waiter(prio):
        async with pool.slot(priority=prio):
            order.append(prio)

    async def main():
        holder = pool.try_slot()
        tasks = []
        for n, prio in enumerate(["low", "normal", "low", "high", "normal", "high"], 1):
            tasks.append(asyncio.ensure_future(waiter(prio)))
            await until(lambda: pool.stats()["queued"] == n)  # arrival order is known
        holder.release()
        await asyncio.gather(*tasks)

    run(main())
    assert order == ["high", "high", "normal", "normal", "low", "low"]
    settled(pool, running=0)
    pool.close()


def test_queue_full_is_refused_at_once(rt):
    pool = sluice.TaskPool(rt, max_concurrent=1, max_queued=1)

    async def main():
        holder = pool.try_slot()
        queued = asyncio.ensure_future(pool.acquire())
        await until(lambda: pool.stats()["queued"] == 1)
        with pytest.raises(sluice.QueueFullError):
            await pool.acquire()
        with pytest.raises(sluice.QueueFullError):
            await pool.run(lambda: None)
        holder.release()
        (await queued).release()

    run(main())
    settled(pool, rejected=2, running=0, completed=2)
    pool.close()


def test_deadline_ends_the_wait(pool):
    async def main():
        held = [pool.try_slot() for _ in range(3)]
        with pytest.raises(sluice.TimedOutError):
            async with pool.slot(timeout=0.02):
                pytest.fail("got a slot that was never free")
        ran = []
        with pytest.raises(sluice.TimedOutError):
            await pool.run(ran.append, 1, timeout=0)
        assert ran == []  # its deadline passed before a slot: never ran
        for p in held:
            p.release()

    run(main())
    settled(pool, expired=2, running=0)


def test_failed_block_counts_as_failed(pool):
    async def main():
        with pytest.raises(KeyError):
            async with pool.slot():
                raise KeyError("x")
        with pytest.raises(sluice.UnreachableError):
            async with pool.slot():
                raise sluice.UnreachableError(-20, "down")
        p = await pool.slot()
        p.release(-5)

    run(main())
    settled(pool, failed=3, completed=0, running=0)


# ---- cancellation ------------------------------------------------------


def test_cancel_while_queued(pool):
    async def main():
        held = [pool.try_slot() for _ in range(3)]
        waiter = asyncio.ensure_future(pool.acquire())
        call = asyncio.ensure_future(pool.run(pytest.fail, "must not run"))
        await until(lambda: pool.stats()["queued"] == 2)
        waiter.cancel()
        call.cancel()
        for t in (waiter, call):
            with pytest.raises(asyncio.CancelledError):
                await t
        for p in held:
            p.release()

    run(main())
    settled(pool, cancelled=2, running=0, queued=0)


def test_cancel_racing_a_grant_never_leaks_a_slot(rt):
    pool = sluice.TaskPool(rt, max_concurrent=1)
    outcomes = {"granted": 0, "cancelled": 0}

    async def main():
        for i in range(200):
            holder = pool.try_slot()
            waiter = asyncio.ensure_future(pool.acquire())
            await until(lambda: pool.stats()["queued"] == 1)
            # The release hands the slot to the waiter on sluice's loop
            # while the cancel races it from here, in both orders.
            if i % 2:
                holder.release()
                waiter.cancel()
            else:
                waiter.cancel()
                holder.release()
            try:
                (await waiter).release()
                outcomes["granted"] += 1
            except asyncio.CancelledError:
                outcomes["cancelled"] += 1
            # Whatever won, the slot is free again once the outcome is in.
            assert pool.stats()["running"] == 0

    run(main())
    assert outcomes["granted"] + outcomes["cancelled"] == 200
    st = settled(pool, running=0, queued=0)
    assert st["cancelled"] + st["completed"] == 400  # holders + waiters
    assert probe(rt) == (0, 0)  # no registry entry and no C op left behind
    p = pool.try_slot()
    assert p is not None
    p.release()
    pool.close()


def test_cancel_while_running_waits_for_the_call(pool):
    started, gate, finished = threading.Event(), threading.Event(), []

    def work():
        started.set()
        gate.wait(GUARD)
        finished.append(True)
        return "dropped"

    async def main():
        call = asyncio.ensure_future(pool.run(work))
        await until(started.is_set)
        call.cancel()
        await asyncio.sleep(0)
        assert not call.done()  # the call cannot be interrupted: still waiting for it
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert finished == [True]

    run(main())
    settled(pool, completed=1, running=0)


# ---- blocking work -----------------------------------------------------


def test_run_on_a_worker_thread_returns_and_raises(rt):
    pool = sluice.TaskPool(rt, name="ai.task")
    here = threading.get_ident()

    async def main():
        ident = await pool.run(threading.get_ident)
        assert ident != here
        assert await pool.run(lambda a, b=0: a + b, 2, priority="high") == 2
        err = ValueError("bad")

        def boom():
            raise err
        with pytest.raises(ValueError) as info:
            await pool.run(boom)
        assert info.value is err
        with pytest.raises(sluice.UnreachableError):
            await pool.run(lambda: (_ for _ in ()).throw(sluice.UnreachableError(-20, "down")))

    run(main())
    settled(pool, completed=2, failed=2, running=0)
    pool.close()


# ---- shutdown, resize, blocking form -----------------------------------


def test_resize_grants_waiters(pool):
    async def main():
        held = [pool.try_slot() for _ in range(3)]
        waiters = [asyncio.ensure_future(pool.acquire()) for _ in range(2)]
        await until(lambda: pool.stats()["queued"] == 2)
        pool.resize(5)
        for p in await asyncio.gather(*waiters):
            p.release()
        pool.resize(1)
        assert pool.stats()["limit"] == 1
        for p in held:
            p.release()
        last = pool.try_slot()
        assert last is not None and pool.try_slot() is None  # the new limit of 1
        last.release()

    run(main())
    settled(pool, running=0, completed=6)


def test_shutdown_closes_waiters_and_refuses_work(pool):
    async def main():
        held = [pool.try_slot() for _ in range(3)]
        waiter = asyncio.ensure_future(pool.acquire())
        await until(lambda: pool.stats()["queued"] == 1)
        with pytest.raises(sluice.DeadlockError):
            pool.shutdown(timeout=1)  # would stop the tasks that hold the slots
        assert pool.shutdown(timeout=0) is False  # closed; three permits still held
        with pytest.raises(sluice.ClosedError):
            await waiter
        with pytest.raises(sluice.ClosedError):
            await pool.run(lambda: None)
        with pytest.raises(sluice.ClosedError):
            pool.try_slot()
        drained = asyncio.ensure_future(pool.drain(timeout=GUARD))
        await asyncio.sleep(0)
        for p in held:
            p.release()  # allowed after shutdown
        assert await drained is True

    run(main())
    settled(pool, closed=1, running=0)


def test_blocking_slot_from_a_thread(pool):
    with pool.slot() as p:
        assert p.held and pool.stats()["running"] == 1
    assert not p.held

    async def on_loop():
        with pytest.raises(sluice.DeadlockError):
            pool.acquire_blocking()

    run(on_loop())
    settled(pool, running=0, completed=1)


# ---- bad input ---------------------------------------------------------


def test_bad_input(rt, pool):
    with pytest.raises(sluice.InvalidArgumentError):
        sluice.TaskPool(rt, max_concurrent=0)
    with pytest.raises(sluice.InvalidArgumentError):
        sluice.TaskPool(rt, max_concurrent=2**32)  # would wrap in the C field
    with pytest.raises(sluice.InvalidArgumentError):
        sluice.TaskPool(rt, on_full="drop")
    with pytest.raises(sluice.InvalidArgumentError):
        sluice.TaskPool(rt, adaptive=True)  # target_latency is required
    with pytest.raises(sluice.InvalidArgumentError):
        sluice.TaskPool(rt, name="")
    with pytest.raises(sluice.InvalidArgumentError):
        pool.resize(0)

    async def main():
        with pytest.raises(sluice.InvalidArgumentError):
            await pool.acquire(priority="urgent")
        with pytest.raises(sluice.InvalidArgumentError):
            await pool.acquire(timeout=-1)
        with pytest.raises(TypeError):
            await pool.run(42)

        async def coro():
            return 1
        with pytest.raises(TypeError):
            await pool.run(coro)

    run(main())
    other = sluice.TaskPool(rt)
    p = other.try_slot()
    with pytest.raises(sluice.StateError):  # a permit of another pool
        lib_release = sluice.lib.sluice_taskpool_release
        sluice.errors.check(lib_release(pool.handle, p._p, 0))
    p.release()
    other.close()
    pool.close()
    with pytest.raises(sluice.ClosedError):
        pool.try_slot()
    pool.close()  # idempotent

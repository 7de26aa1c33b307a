"""The runtime and its asynchronous completions, against the real library.

Waits are on futures and events; their timeouts are hang guards only."""
import asyncio
import ctypes
import logging
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import sluice
from sluice import _bridge

from _support import GUARD, probe, run

# conftest's exactly_once check around every test here.
pytestmark = pytest.mark.usefixtures("exactly_once")


# ---- life cycle ----------------------------------------------------------


def test_create_close_and_close_again():
    rt = sluice.Runtime(lag_interval_ms=10, thread_name="py-test")
    assert not rt.closed and rt.stats()["is_own_thread"] == 1
    rt.close()
    rt.close()
    assert rt.closed
    with sluice.Runtime() as r2:
        pass
    assert r2.closed
    r2.close()


def test_thread_name_names_the_loop_thread():
    r = sluice.Runtime(thread_name="py-named-loop")
    try:
        tid = run(r.run_on_loop(threading.get_native_id))
        with open(f"/proc/self/task/{tid}/comm") as f:
            assert f.read().strip() == "py-named-loop"
        assert tid != threading.get_native_id()
    finally:
        r.close()


def test_lag_sampling_off():
    r = sluice.Runtime(lag_interval_ms=0)
    run(r.sleep(0.02))
    assert r.stats()["lag_samples"] == 0
    r.close()


def test_figures_are_readable(rt):
    run(rt.sleep(0.03))  # three lag intervals of the fixture's 10 ms
    st = rt.stats()
    assert st["lag_samples"] >= 1 and st["ops_started"] >= 1 and st["is_closed"] == 0
    mem = rt.memory()
    assert set(mem) == {"jemalloc", "allocated", "active", "resident", "arena"}
    assert mem["allocated"] > 0
    assert "own thread" in rt.describe() and repr(rt).startswith("<sluice.Runtime sluice runtime")
    rt.close()
    assert "closed" in rt.describe() and rt.stats()["is_closed"] == 1


# ---- timers ----------------------------------------------------------------


def test_timer_fires(rt):
    async def main():
        op = rt.timer(0.005)
        assert await op is None
        assert op.done()
        await rt.sleep(0)

    run(main())
    assert probe(rt) == (0, 0)


def test_cancelled_timer_raises_canceled_error(rt):
    async def main():
        op = rt.timer(3600)
        assert not op.done()
        op.cancel()
        op.cancel()  # twice: no effect
        with pytest.raises(sluice.CanceledError) as e:
            await op
        assert e.value.name == "SLUICE_ECANCELED"
        op.cancel()  # after completion: no effect

    run(main())
    assert probe(rt) == (0, 0)


def test_cancel_racing_completion_completes_each_op_once(rt):
    n = 1000
    rng = random.Random(7)

    async def main():
        outcomes = {"ok": 0, "canceled": 0}
        for i in range(n):
            op = rt.timer(0.001)
            # Cancel around the due time, so either side may win (both do,
            # in practice, a few hundred times each; not asserted).
            end = time.perf_counter() + rng.uniform(0.0, 0.0025)
            while time.perf_counter() < end:
                pass
            op.cancel()
            try:
                await op
                outcomes["ok"] += 1
            except sluice.CanceledError:
                outcomes["canceled"] += 1
        return outcomes

    before = _bridge.counts()
    outcomes = run(main())
    assert outcomes["ok"] + outcomes["canceled"] == n
    assert probe(rt) == (0, 0)
    after = _bridge.counts()
    # + 1: the probe's own post
    assert after["callbacks"] - before["callbacks"] == n + 1
    st = rt.stats()
    assert st["ops_started"] == st["ops_completed"]


def test_cancelling_the_task_cancels_the_timer(rt):
    async def main():
        task = asyncio.ensure_future(rt.sleep(3600))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Task cancellation racing completion, many times.
        for i in range(500):
            t = asyncio.ensure_future(rt.sleep(0))
            if i % 2:
                await asyncio.sleep(0)
            t.cancel()
            try:
                await t
            except asyncio.CancelledError:
                pass

    run(main())
    assert probe(rt) == (0, 0)


def test_asyncio_timeout_cancels_the_sluice_timer(rt):
    async def main():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await rt.sleep(3600)

    run(main())
    assert probe(rt) == (0, 0)


def test_many_concurrent_timers(rt):
    async def main():
        ops = [rt.timer(0.001 * (i % 20)) for i in range(3000)]
        return await asyncio.gather(*ops)

    assert run(main()) == [None] * 3000
    assert probe(rt) == (0, 0)


def test_completion_after_the_asyncio_loop_closed(rt):
    keep = []

    async def main():
        keep.append(rt.timer(0.05))  # never awaited; the loop ends first

    asyncio.run(main())
    # Block (off asyncio) until the callback has run: it found the loop
    # closed and dropped the outcome; the probe then sees the entry freed.
    status = ctypes.c_int(1)
    assert sluice.lib.sluice_op_wait(keep[0]._h, int(GUARD * 1000), ctypes.byref(status)) == 0
    assert status.value == 0
    assert probe(rt) == (0, 0)


# ---- posted work -----------------------------------------------------------


def test_posted_work_runs_on_the_loop_thread_in_order(rt):
    ran, where = [], set()

    def item(i):
        def fn():
            where.add(rt.is_loop_thread())
            ran.append(i)
        return fn

    for i in range(1000):
        rt.post(item(i))
    probe(rt)
    assert ran == list(range(1000)) and where == {True}
    assert not rt.is_loop_thread()


def test_posts_from_many_threads_each_run_once(rt):
    counts = [0] * 8

    def feed(k):
        for _ in range(500):
            rt.post(lambda: counts.__setitem__(k, counts[k] + 1))

    threads = [threading.Thread(target=feed, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(GUARD)
    assert probe(rt) == (0, 0)
    assert counts == [500] * 8


def test_run_on_loop_returns_values_and_exceptions(rt):
    async def main():
        assert await rt.run_on_loop(rt.is_loop_thread) is True
        assert await rt.run_on_loop(lambda: 41 + 1) == 42
        with pytest.raises(ZeroDivisionError):
            await rt.run_on_loop(lambda: 1 / 0)

    run(main())
    assert probe(rt) == (0, 0)


def test_cancelled_run_on_loop_still_runs_the_work(rt):
    ran = threading.Event()

    async def main():
        task = asyncio.ensure_future(rt.run_on_loop(ran.set))
        await asyncio.sleep(0)  # the task has posted the work and awaits it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert ran.wait(GUARD)
    assert probe(rt) == (0, 0)


def test_an_exception_in_posted_work_is_logged(rt, caplog):
    with caplog.at_level(logging.ERROR, logger="sluice"):
        rt.post(lambda: 1 / 0)
        probe(rt)
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


def test_post_rejects_non_callables(rt):
    with pytest.raises(sluice.InvalidArgumentError):
        rt.post(42)


# ---- shutdown --------------------------------------------------------------


def test_operations_after_close_fail_with_closed_error():
    rt = sluice.Runtime()
    rt.close()
    entries = _bridge.pending()
    with pytest.raises(sluice.ClosedError) as e:
        rt.post(lambda: None)
    assert e.value.code == -4 and e.value.message  # the library's detail
    with pytest.raises(sluice.ClosedError):
        run(rt.sleep(0))
    with pytest.raises(sluice.ClosedError):
        run(rt.run_on_loop(lambda: None))
    assert _bridge.pending() == entries  # refused starts left nothing behind


def test_close_completes_pending_with_closed_and_runs_accepted_work():
    rt = sluice.Runtime()
    ran = []

    async def main():
        ops = [rt.timer(3600) for _ in range(100)]
        for i in range(100):
            rt.post(lambda i=i: ran.append(i))
        await asyncio.get_running_loop().run_in_executor(None, rt.close)
        for op in ops:
            with pytest.raises(sluice.ClosedError):
                await op

    run(main())
    assert ran == list(range(100))
    st = rt.stats()
    assert st["ops_pending"] == 0 and st["ops_started"] == st["ops_completed"] == 100


def test_close_on_the_loop_thread_is_refused(rt):
    with pytest.raises(sluice.DeadlockError):
        run(rt.run_on_loop(rt.close))
    assert not rt.closed


def test_exit_with_a_runtime_left_open_does_not_hang(tmp_path):
    script = tmp_path / "left_open.py"
    script.write_text(
        "import asyncio, sluice\n"
        "rt = sluice.Runtime()\n"
        "keep = []\n"
        "async def main():\n"
        "    keep.append(rt.timer(3600))\n"
        "    rt.post(lambda: None)\n"
        "asyncio.run(main())\n"
        "print('bye')\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         timeout=GUARD)
    assert out.returncode == 0 and out.stdout == "bye\n", out.stderr

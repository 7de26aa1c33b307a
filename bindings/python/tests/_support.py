"""Helpers shared by the tests."""
import asyncio
import threading
import time

from sluice import _bridge

GUARD = 60.0  # seconds; a hang guard, never a timing claim


def probe(rt):
    """Runs on sluice's loop after everything queued before it and returns
    (registry entries other than the probe's own, rt's ops_pending). Every
    callback already delivered has had its free_user_data by then, since the
    library calls it right after the callback on the same thread."""
    seen, done = [], threading.Event()

    def look():
        seen.append((_bridge.pending() - 1, rt.stats()["ops_pending"]))
        done.set()

    rt.post(look)
    assert done.wait(GUARD), "hang guard"
    return seen[0]


def run(coro):
    """asyncio.run with a hang guard (never a timing claim)."""
    async def guarded():
        return await asyncio.wait_for(coro, GUARD)
    return asyncio.run(guarded())


async def until(cond):
    """Polls a condition on the library's figures (a request reaching the
    queue happens on sluice's loop thread); GUARD is a hang guard only."""
    end = time.monotonic() + GUARD
    while not cond():
        assert time.monotonic() < end, "hang guard"
        await asyncio.sleep(0.001)

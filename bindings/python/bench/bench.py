"""What the Python layer costs per call (not part of the test run).

    python3 bindings/python/bench/bench.py [--n 200000] [--rounds 3]

Each figure is the median of `rounds` runs of `n` calls (fewer for the
calls that go through the loop thread), in ns per call, against the
library in $SLUICE_LIB. The first line is a bare ctypes call into the
library (sluice_now_ns), the floor under every figure."""
import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sluice  # noqa: E402


def per_call(fn, n, rounds):
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        fn(n)
        out.append((time.perf_counter_ns() - t0) / n)
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    n, rounds = args.n, args.rounds
    rt = sluice.Runtime()
    locks = sluice.Locks(rt)
    lim = sluice.Limiter(rt, limit=60000, window=60.0)
    clock = sluice.ManualClock()
    lim_clock = sluice.Limiter(limit=60000, window=60.0, clock=clock)
    breaker = sluice.Breaker()
    policy = sluice.RetryPolicy(budget_ratio=0)
    now = sluice.lib.sluice_now_ns

    def bare(k):
        for _ in range(k):
            now()

    keys = [f"user:{i}" for i in range(1000)]  # 60000 per key and minute: never refused

    def check(k):
        for i in range(k):
            lim.check(keys[i % 1000])

    def check_clock(k):
        for _ in range(k):
            lim_clock.check("user:42")
            clock.advance(ns=1_000_000)

    def try_release(k):
        for _ in range(k):
            locks.try_acquire("user:42").release()

    def allow_record(k):
        for _ in range(k):
            breaker.record(breaker.allow(), True)

    def breaker_call(k):
        for _ in range(k):
            with breaker.call():
                pass

    def loop_bound(coro_fn):
        def body(k):
            async def many():
                for _ in range(k):
                    await coro_fn()
            asyncio.run(many())
        return body

    async def lock_acquire():
        (await locks.acquire("user:42")).release()

    def handoff(k):
        async def side():
            for _ in range(k // 2):
                async with locks.lock("hot"):
                    await asyncio.sleep(0)  # the other side queues meanwhile

        async def both():
            await asyncio.gather(side(), side())
        asyncio.run(both())

    turn = iter(range(10**12))

    async def limiter_acquire():
        await lim.acquire(keys[next(turn) % 1000])

    async def ok():
        return 1

    async def retry_run():
        await policy.run(ok)

    rows = [
        ("bare ctypes call (sluice_now_ns)", per_call(bare, n, rounds)),
        ("Limiter.check, sliding log", per_call(check, n // 4, rounds)),
        ("Limiter.check, ManualClock (Python clock callback)", per_call(check_clock, n // 4, rounds)),
        ("Locks.try_acquire + Guard.release", per_call(try_release, n // 4, rounds)),
        ("Breaker.allow + record", per_call(allow_record, n // 4, rounds)),
        ("with Breaker.call()", per_call(breaker_call, n // 4, rounds)),
        ("await Locks.acquire + release, free key (taken in this thread)",
         per_call(loop_bound(lock_acquire), n // 4, rounds)),
        ("async with Locks.lock, one key handed between two tasks (via sluice's loop)",
         per_call(handoff, n // 40, rounds)),
        ("await Limiter.acquire, passes at once (taken in this thread)",
         per_call(loop_bound(limiter_acquire), n // 4, rounds)),
        ("await RetryPolicy.run, first attempt succeeds", per_call(loop_bound(retry_run), n // 4, rounds)),
    ]
    for name, ns in rows:
        print(f"{ns:10.0f} ns  {name}")
    for obj in (locks, lim, lim_clock, policy, breaker):
        obj.close()
    rt.close()


if __name__ == "__main__":
    main()

"""The rate limiter against the real library. Time is a ManualClock: every
answer is exact and no test depends on how fast the machine is (the few
real-time waits use a 60 s window, so their answers cannot change)."""
import asyncio
import logging
import random
import threading
import time
from fractions import Fraction

import pytest

import sluice
from sluice import _args

from _support import GUARD, probe, run, until

pytestmark = pytest.mark.usefixtures("exactly_once")

S = 10**9  # one second in ns


@pytest.fixture
def clock():
    return sluice.ManualClock()


def test_sliding_log_answers_exactly(clock):
    lim = sluice.Limiter(limit=3, window=1.0, clock=clock)
    answers = [lim.check("u") for _ in range(3)]
    assert [a.remaining for a in answers] == [2, 1, 0] and all(answers)
    no = lim.check("u")
    assert not no and no.reason == "limited" and no.remaining == 0
    assert no.retry_after_ns == S and no.reset_after_ns == S and no.limit == 3
    clock.advance(ns=S - 1)
    assert lim.check("u").retry_after_ns == 1  # one ns early: still refused
    clock.advance(ns=1)
    assert lim.check("u")  # at exactly retry_after: passes
    st = lim.stats()
    assert (st["allowed"], st["rejected"], st["algorithm"]) == (4, 2, "sliding_log")
    lim.close()


def test_gcra_burst_then_one_every_interval(clock):
    lim = sluice.Limiter(algorithm="gcra", limit=10, window=1.0, burst=5, clock=clock)
    assert all(lim.check("k") for _ in range(5))
    no = lim.check("k")
    assert not no and no.limit == 5 and no.retry_after_ns == S // 10
    clock.advance(0.1)
    assert lim.check("k") and not lim.check("k")
    lim.close()


def test_peek_consumes_nothing_and_creates_no_key(clock):
    lim = sluice.Limiter(limit=2, window=60.0, clock=clock)
    assert lim.peek("new").remaining == 1 and lim.stats()["keys"] == 0
    lim.check("k", 2)
    before = lim.stats()
    p = lim.peek("k")
    assert not p and p.reason == "limited" and lim.stats() == before
    lim.close()


# ---- exactness against the definitions ------------------------------------


class LogModel:
    """The sliding log by its definition: costs passed in (t - W, t]."""

    def __init__(self, n, w):
        self.n, self.w, self.events = n, w, {}

    def check(self, key, t, cost):
        ev = [(at, c) for at, c in self.events.get(key, []) if at + self.w > t]
        self.events[key] = ev
        used = sum(c for _, c in ev)
        if used + cost <= self.n:
            ev.append((t, cost))
            return True, self.n - used - cost, 0, self.w
        need, freed, retry = used + cost - self.n, 0, None
        for at, c in ev:
            freed += c
            if freed >= need:
                retry = at + self.w - t
                break
        return False, max(self.n - used, 0), retry, ev[-1][0] + self.w - t


class GcraModel:
    """GCRA as a bucket of credit in ns: it fills 1 per ns up to tau =
    burst * T, and a cost c needs c * T, T = ceil(W / N)."""

    def __init__(self, n, w, burst):
        self.t_ = -(-w // n)
        self.tau = burst * self.t_
        self.state = {}

    def check(self, key, t, cost):
        credit, last = self.state.get(key, (self.tau, t))
        credit = min(credit + (t - last), self.tau)
        need, ok = cost * self.t_, False
        if credit >= need:
            credit, ok = credit - need, True
        retry = 0 if ok else need - credit
        self.state[key] = (credit, t)
        return ok, credit // self.t_, retry, self.tau - credit


class WindowModel:
    """The sliding-window counter: fixed windows [kW, (k+1)W); a cost c at e
    into window k passes iff prev * (W - e) + (cur + c) * W <= N * W."""

    def __init__(self, n, w):
        self.n, self.w, self.events = n, w, {}

    def _counts(self, ev, t):
        k = t // self.w
        cur = sum(c for at, c in ev if k * self.w <= at <= t)
        prev = sum(c for at, c in ev if (k - 1) * self.w <= at < k * self.w) if k else 0
        return k, t - k * self.w, prev, cur

    def _passes(self, ev, t, cost):
        _, e, prev, cur = self._counts(ev, t)
        return prev * (self.w - e) + (cur + cost) * self.w <= self.n * self.w

    def check(self, key, t, cost):
        ev = self.events.setdefault(key, [])
        k, e, prev, cur = self._counts(ev, t)
        used = -(-prev * (self.w - e) // self.w) + cur
        ok = self._passes(ev, t, cost)
        retry = 0
        if ok:
            remaining = self.n - used - cost
            ev.append((t, cost))
            cur += cost
        else:
            remaining = max(self.n - used, 0)
            lo, hi = 0, 2 * self.w  # the smallest wait that passes
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if self._passes(ev, t + mid, cost) else (mid, hi)
            retry = hi
        reset = (k + 2) * self.w - t if cur else (k + 1) * self.w - t if prev else 0
        return ok, remaining, retry, reset


@pytest.mark.parametrize("algorithm", ["sliding_log", "gcra", "sliding_window"])
def test_random_trace_matches_the_definition(algorithm, clock):
    n, w = 7, S
    lim = sluice.Limiter(algorithm=algorithm, limit=n, window=1.0, clock=clock)
    model = {"sliding_log": LogModel(n, w), "gcra": GcraModel(n, w, n),
             "sliding_window": WindowModel(n, w)}[algorithm]
    rng = random.Random(5)
    t0, passed = clock.now_ns, 0
    for step in range(600):
        clock.advance(ns=rng.choice([0, 0, 1, rng.randrange(w // 3), rng.randrange(2 * w)]))
        key, cost = f"user:{rng.randrange(3)}", rng.randint(1, 3)
        got = lim.check(key, cost)
        want = model.check(key, clock.now_ns - t0, cost)
        assert (got.allowed, got.remaining, got.retry_after_ns, got.reset_after_ns) == want, \
            f"step {step} key {key} cost {cost}"
        passed += got.allowed
    assert 50 < passed < 580  # both answers were exercised
    lim.close()


def test_retry_after_in_seconds_is_never_short():
    """The float seconds are at least the exact ns (sleeping them is never
    too short), and above it by no more than float rounding."""
    rng = random.Random(3)
    for ns in [0, 1, 999, 10**9 - 1, 10**9, 2**52 + 1] + [rng.randrange(2**60) for _ in range(3000)]:
        exact = Fraction(_args.ns_to_seconds_up(ns)) * 10**9
        assert ns <= exact <= ns + Fraction(ns, 2**50) + 1, ns


# ---- across limiters ---------------------------------------------------------


def test_check_many_is_all_or_nothing(clock):
    user = sluice.Limiter(limit=2, window=1.0, clock=clock)
    group = sluice.Limiter(limit=3, window=2.0, clock=clock)
    assert sluice.check_many([(user, "u1"), (group, "g1")])
    assert sluice.check_many([(user, "u2"), (group, "g1", 2)])
    no = sluice.check_many([(user, "u1", 1), (group, "g1")])  # the group is full
    assert not no and no.index == 1 and no.retry_after_ns == 2 * S
    assert user.peek("u1").remaining == 0  # u1 had 1 left; nothing was taken
    assert user.check("u1")
    both = sluice.check_many([(user, "u1"), (group, "g2")])
    assert not both and both.index == 0 and both.retry_after_ns == S
    with pytest.raises(sluice.InvalidArgumentError):
        sluice.check_many([])
    with pytest.raises(sluice.InvalidArgumentError):
        sluice.check_many([(user, "u3", 2), (user, "u3", 1)])  # 3 of one key, limit 2
    with pytest.raises(TypeError):
        sluice.check_many([(object(), "k")])
    user.close()
    group.close()


# ---- waiting ---------------------------------------------------------------


def test_acquire_waits_for_the_clock(rt, clock):
    lim = sluice.Limiter(rt, limit=1, window=1.0, clock=clock)

    async def main():
        assert lim.check("k")
        task = asyncio.ensure_future(lim.acquire("k"))
        await until(lambda: lim.stats()["waiting"] >= 1)
        queued = lim.check("other")  # another key is unaffected
        assert queued
        no = lim.check("k")
        assert not no and no.reason == "queued"  # waiters go first
        clock.advance(1.0)
        lim.wake()
        assert await task is True

    run(main())
    assert lim.stats()["waits"] == 1 and lim.stats()["waiting"] == 0
    lim.close()
    assert probe(rt) == (0, 0)


def test_a_cost_that_passes_now_is_taken_without_the_loop(rt, clock):
    lim = sluice.Limiter(rt, limit=100, window=1.0, clock=clock)

    async def main():
        before = rt.stats()["ops_started"]
        for _ in range(100):
            assert await lim.acquire("k")
        assert rt.stats()["ops_started"] == before
        assert lim.stats()["waits"] == 0 and lim.stats()["rejected"] == 0

    run(main())
    assert not lim.peek("k")
    lim.close()


def test_a_wait_on_its_way_to_the_loop_is_not_jumped(rt, clock):
    """A must wait (its request is posted), the clock moves before the
    request reaches the loop, then B asks: B must not take the unit in its
    own thread ahead of A (acquire's fast path is a check, and the library
    queues A on its key when A starts). Back to back in one asyncio
    iteration, 100 times."""
    lim = sluice.Limiter(rt, limit=1, window=1.0, clock=clock)

    async def main():
        for i in range(100):
            order = []
            key = f"k{i}"
            assert lim.check(key)

            async def waiter(name):
                assert await lim.acquire(key)
                order.append(name)

            a = asyncio.ensure_future(waiter("A"))  # each step runs in this order,
            asyncio.get_running_loop().call_soon(clock.advance, 1.0)  # after A has posted
            b = asyncio.ensure_future(waiter("B"))
            await until(lambda: lim.stats()["waiting"] >= 1 and order)  # A passed, B waits
            clock.advance(1.0)
            lim.wake()
            await asyncio.gather(a, b)
            assert order == ["A", "B"], f"round {i}"

    run(main())
    lim.close()


def test_waiters_are_served_in_order_whatever_their_cost(rt, clock):
    lim = sluice.Limiter(rt, limit=3, window=1.0, clock=clock)
    order = []

    async def waiter(i, cost):
        assert await lim.acquire("k", cost)
        order.append(i)

    async def main():
        assert lim.check("k", 3)
        tasks = [asyncio.ensure_future(waiter(i, c)) for i, c in enumerate([3, 1, 2, 1])]
        await until(lambda: lim.stats()["waiting"] >= 4)
        for _ in range(3):  # one window at a time: 3, then 1 + 2, then 1
            clock.advance(1.0)
            lim.wake()
            await until(lambda: len(order) >= {0: 1, 1: 3, 2: 4}[_])
        await asyncio.gather(*tasks)

    run(main())
    assert order == [0, 1, 2, 3]
    lim.close()


def test_acquire_deadline_returns_false(rt):
    lim = sluice.Limiter(rt, limit=1, window=60.0)  # nothing frees up during the test

    async def main():
        assert await lim.acquire("k")
        assert await lim.acquire("k", timeout=0.02) is False
        assert await lim.acquire("k", timeout=0) is False

    run(main())
    assert lim.stats()["wait_timeouts"] == 2
    lim.close()


def test_cancel_racing_a_grant_keeps_the_count_exact(rt, clock):
    """A grant becomes possible (the clock moves, the limiter is woken) and
    the task is cancelled: cancel first, wake first, or both at once from
    two threads. Whichever wins, the key's remaining units must agree with
    it (taken if and only if the wait was not counted as cancelled)."""
    lim = sluice.Limiter(rt, limit=1, window=1.0, clock=clock)
    rng = random.Random(2)
    won = {"grant": 0, "cancel": 0}

    async def main():
        for i in range(240):
            key = f"k{i}"
            assert lim.check(key)
            task = asyncio.ensure_future(lim.acquire(key))
            await until(lambda: lim.stats()["waiting"] >= 1)
            cancels = lim.stats()["wait_cancels"]
            waker = None
            if i % 3 == 0:  # the cancel reaches the loop first
                task.cancel()
                await asyncio.sleep(0)
                clock.advance(1.0)
                lim.wake()
            elif i % 3 == 1:  # the wake reaches the loop first
                clock.advance(1.0)
                lim.wake()
                task.cancel()
            else:  # a race between two threads
                clock.advance(1.0)
                waker = threading.Thread(target=lim.wake)
                waker.start()
                end = time.perf_counter() + rng.uniform(0, 200e-6)
                while time.perf_counter() < end:
                    pass
                task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            if waker:
                waker.join(GUARD)
            granted = lim.stats()["wait_cancels"] == cancels
            won["grant" if granted else "cancel"] += 1
            assert lim.peek(key).allowed is not granted, f"round {i}"

    run(main())
    assert won["grant"] >= 80 and won["cancel"] >= 80  # the two ordered thirds, at least
    assert lim.stats()["waiting"] == 0
    lim.close()
    assert probe(rt) == (0, 0)


def test_blocking_wait_in_a_thread(rt, clock):
    lim = sluice.Limiter(rt, limit=1, window=1.0, clock=clock)
    assert lim.check("k")
    result = []
    t = threading.Thread(target=lambda: result.append(lim.wait("k", timeout=GUARD)))
    t.start()
    while lim.stats()["waiting"] < 1:
        threading.Event().wait(0.001)  # polling a condition, not a timing claim
    clock.advance(1.0)
    lim.wake()
    t.join(GUARD)
    assert result == [True]

    async def in_loop():
        with pytest.raises(sluice.DeadlockError):
            lim.wait("k")

    run(in_loop())
    lim.close()


# ---- control -----------------------------------------------------------------


def test_block_and_unblock(clock):
    lim = sluice.Limiter(limit=5, window=1.0, clock=clock)
    lim.block("spammer", 10.0)
    no = lim.check("spammer")
    assert not no and no.reason == "blocked" and no.retry_after_ns == 10 * S
    assert lim.unblock("spammer") is True and lim.unblock("spammer") is False
    assert lim.check("spammer").remaining == 4
    assert lim.stats()["blocks"] == 1
    lim.close()


def test_set_limit_keeps_state_and_fails_waiters_that_cannot_fit(rt, clock):
    lim = sluice.Limiter(rt, limit=4, window=1.0, clock=clock)

    async def main():
        assert lim.check("k", 4)
        task = asyncio.ensure_future(lim.acquire("k", 3))
        await until(lambda: lim.stats()["waiting"] >= 1)
        lim.set_limit(2)
        with pytest.raises(sluice.InvalidArgumentError):
            await task

    run(main())
    st = lim.stats()
    assert (st["limit"], st["window_ns"]) == (2, S)  # the window was kept
    assert not lim.check("k")  # the 4 units taken still count
    lim.set_limit(10, window=2.0)
    assert lim.check("k", 5).remaining == 1
    lim.close()


def test_idle_keys_are_swept(clock):
    lim = sluice.Limiter(limit=5, window=1.0, clock=clock)
    for i in range(100):
        lim.check(f"user:{i}")
    assert lim.stats()["keys"] == 100 and lim.sweep() == 0
    clock.advance(1.0)
    assert lim.sweep() == 100 and lim.stats()["keys"] == 0
    lim.close()


def test_max_keys_reject_or_allow(clock):
    lim = sluice.Limiter(limit=5, window=1.0, max_keys=2, clock=clock)
    lim.check("a")
    lim.check("b")
    with pytest.raises(sluice.LimitError) as e:
        lim.check("c")
    assert e.value.result.reason == "full"
    lim.close()
    lim = sluice.Limiter(limit=5, window=1.0, max_keys=1, on_full="allow", clock=clock)
    lim.check("a")
    passed = lim.check("b")
    assert passed and passed.reason == "full" and lim.stats()["full_allowed"] == 1
    lim.close()


def test_monitor_records_rejections(clock):
    mon = sluice.Monitor()
    lim = sluice.Limiter(limit=1, window=1.0, clock=clock, monitor=mon, name="ai")
    lim.check("u")
    lim.check("u")
    lim.check("u")
    series = {s["name"]: s for s in mon.stats()}
    assert series["ai.rejected"]["count"] == 2
    lim.close()
    mon.close()


def test_bad_input_is_refused_with_clear_errors(clock):
    lim = sluice.Limiter(limit=3, window=1.0, clock=clock)
    for bad in (lambda: lim.check(""), lambda: lim.check("k", 0), lambda: lim.check("k", 4),
                lambda: lim.check("k", -1), lambda: lim.block("k", -1.0),
                lambda: lim.set_limit(0), lambda: run(lim.acquire("k"))):  # no runtime
        with pytest.raises(sluice.InvalidArgumentError):
            bad()
    with pytest.raises(TypeError):
        lim.check(None)
    assert lim.stats()["allowed"] == 0
    with pytest.raises(sluice.InvalidArgumentError, match="limit"):
        sluice.Limiter(limit=0)
    with pytest.raises(sluice.InvalidArgumentError, match="limit"):
        sluice.Limiter(limit=70000)  # a sliding log keeps at most 65535 per key
    with pytest.raises(sluice.InvalidArgumentError, match="algorithm"):
        sluice.Limiter(algorithm="fast")
    with pytest.raises(sluice.InvalidArgumentError, match="window"):
        sluice.Limiter(window=float("nan"))
    with pytest.raises(sluice.InvalidArgumentError, match="clock"):
        sluice.Limiter(clock=5)
    lim.close()
    with pytest.raises(sluice.ClosedError):
        lim.check("k")


def test_a_failing_clock_is_logged_not_fatal(caplog):
    times = iter([5 * S])

    def clock():
        return next(times)  # raises StopIteration from the second reading on

    lim = sluice.Limiter(limit=1, window=1.0, clock=clock)
    with caplog.at_level(logging.ERROR, logger="sluice"):
        assert lim.check("k")
        assert not lim.check("k")  # the last good reading stands in
    assert any("clock" in r.getMessage() for r in caplog.records)
    lim.close()

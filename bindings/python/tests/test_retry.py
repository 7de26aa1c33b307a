"""Retry policies against the real library. Time is a ManualClock and the
policy's sleep is a fake that moves it and records what was asked, so
delays, deadlines and budgets are checked exactly and instantly."""
import asyncio
import threading

import pytest

import sluice

from _support import GUARD, run

S = 10**9


class Flaky:
    """An async operation failing with the given exceptions, then returning
    `value`; counts its calls."""

    def __init__(self, *failures, value=42):
        self.failures, self.value, self.calls = list(failures), value, 0

    async def __call__(self):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.value


@pytest.fixture
def clock():
    return sluice.ManualClock()


class _Record(list):
    """Waits asked for, in seconds; .sleep is the fake sleep recording them."""


@pytest.fixture
def slept(clock):
    """The fake sleep's record of waits in seconds (it moves the clock)."""
    record = _Record()

    async def sleep(seconds):
        record.append(seconds)
        clock.advance(seconds)

    record.sleep = sleep
    return record


@pytest.fixture
def policy(clock, slept):
    made = []

    def make(**kw):
        opts = dict(clock=clock, sleep=slept.sleep, seed=7)
        opts.update(kw)
        made.append(sluice.RetryPolicy(**opts))
        return made[-1]

    yield make
    for p in made:
        p.close()


# ---- the happy path and the delays -----------------------------------------


def test_retries_until_success_with_the_librarys_delays(policy, slept):
    p = policy(max_attempts=4)
    op = Flaky(ConnectionError("reset"), TimeoutError("slow"))
    assert run(p.run(op)) == 42 and op.calls == 3
    # The waits are exactly the policy's own arithmetic for its first run.
    assert [round(s * 1e9) for s in slept] == p.delays(2)
    st = p.stats()
    assert (st["runs"], st["attempts"], st["successes_after_retry"], st["in_flight"]) == (1, 3, 1, 0)


def test_no_jitter_reproduces_the_origin(clock, slept):
    p = sluice.retry_with_backoff(max_retries=3, base_delay=0.1, jitter="none", clock=clock,
                                  sleep=slept.sleep)
    op = Flaky(ConnectionError(), ConnectionError(), ConnectionError())
    with pytest.raises(ConnectionError):
        run(p.run(op))
    assert op.calls == 3 and slept == [0.1, 0.2]
    p.close()


def test_on_retry_is_told_each_retry(policy, slept):
    seen = []
    p = policy(jitter="none", base_delay=0.05, on_retry=lambda *a: seen.append(a))
    err = ConnectionError("x")
    run(p.run(Flaky(err)))
    assert seen == [(1, err, 0.05)]


# ---- classification -----------------------------------------------------------


def test_a_permanent_failure_is_not_retried(policy):
    p = policy(max_attempts=5)
    err = ValueError("bad input")
    op = Flaky(err)
    with pytest.raises(ValueError) as e:
        run(p.run(op))
    assert e.value is err and op.calls == 1
    assert p.stats()["failures_first"] == 1


def test_attempts_running_out_raise_the_last_failure(policy):
    p = policy(max_attempts=3)
    errs = [ConnectionError(str(i)) for i in range(5)]
    op = Flaky(*errs)
    with pytest.raises(ConnectionError) as e:
        run(p.run(op))
    assert e.value is errs[2] and op.calls == 3


def test_default_classification_of_sluice_errors():
    retryable = [sluice.TimedOutError(-6), sluice.PoolExhaustedError(-19),
                 sluice.UnreachableError(-20), sluice.RejectedError(-15), ConnectionError(),
                 TimeoutError(), asyncio.TimeoutError()]
    permanent = [sluice.InvalidArgumentError(-1), sluice.ClosedError(-4),
                 sluice.CircuitOpenError(-17), sluice.RetryBudgetError(-18), KeyError(),
                 sluice.CanceledError(-5)]
    assert all(sluice.default_classify(e) for e in retryable)
    assert not any(sluice.default_classify(e) for e in permanent)
    ambiguous = sluice.AmbiguousError(-21)
    ambiguous.retryable = False  # as the pool sets it from sluice_pg_retry_outcome
    assert not sluice.default_classify(ambiguous)


def test_classify_and_retry_after_hints(policy, slept):
    p = policy(classify=(KeyError,), jitter="none", base_delay=0.1)
    op = Flaky(KeyError("cache miss"))
    assert run(p.run(op)) == 42 and op.calls == 2
    with pytest.raises(ConnectionError):
        run(p.run(Flaky(ConnectionError())))  # not in the tuple: permanent here

    calls = []

    def only_429(exc):
        calls.append(exc)
        return True if getattr(exc, "status", None) == 429 else None  # None: the default

    p = policy(classify=only_429, jitter="none", base_delay=0.1, max_attempts=5)
    limited = RuntimeError("429")
    limited.status, limited.retry_after = 429, 2.5
    slept.clear()
    assert run(p.run(Flaky(limited, ConnectionError()))) == 42
    assert slept == [2.5, 0.2]  # the hint beats the 0.1 s backoff; then backoff
    with pytest.raises(RuntimeError):
        run(p.run(Flaky(RuntimeError("500"))))  # default: permanent
    assert len(calls) == 3


# ---- deadline, budget, breaker ------------------------------------------------


def test_deadline_stops_before_a_useless_wait(policy, slept, clock):
    p = policy(total_timeout=1.0, jitter="none", base_delay=0.4, multiplier=1.0, max_attempts=10)
    errs = [ConnectionError(str(i)) for i in range(10)]
    t0 = clock.now_ns
    with pytest.raises(sluice.TimedOutError) as e:
        run(p.run(Flaky(*errs)))
    # Attempts at 0, 0.4 and 0.8 s; a wait to 1.2 s would pass the deadline.
    assert e.value.attempts == 3 and e.value.__cause__ is errs[2]
    assert slept == [0.4, 0.4] and clock.now_ns - t0 < S
    assert p.stats()["deadline_stops"] == 1
    # The run's own timeout, and a hint that reaches past it.
    hinted = ConnectionError()
    hinted.retry_after = 30.0
    slept.clear()
    with pytest.raises(sluice.TimedOutError):
        run(p.run(Flaky(hinted), timeout=5.0))
    assert slept == []


def test_budget_refuses_retries_under_total_failure(policy):
    p = policy(budget_tokens=1, budget_ratio=0.001, max_attempts=5)
    first = ConnectionError("a")
    with pytest.raises(sluice.RetryBudgetError) as e:
        run(p.run(Flaky(first, ConnectionError("b"), ConnectionError("c"))))
    assert e.value.attempts == 2 and e.value.last_error is not first
    assert isinstance(e.value.__cause__, ConnectionError)
    op = Flaky(ConnectionError())
    with pytest.raises(sluice.RetryBudgetError):
        run(p.run(op))
    assert op.calls == 1  # the first attempt is never refused, the retry was
    assert p.stats()["budget_refusals"] == 2


def test_budget_bounds_the_extra_load(policy):
    ratio, tokens, runs = 0.1, 5, 200
    p = policy(budget_tokens=tokens, budget_ratio=ratio, max_attempts=5)
    calls = 0

    async def always_down():
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    async def main():
        for _ in range(runs):
            with pytest.raises((ConnectionError, sluice.RetryBudgetError)):
                await p.run(always_down)

    run(main())
    assert runs < calls <= (1 + ratio) * runs + tokens


def test_breaker_inside_the_policy_fails_fast(policy, clock):
    b = sluice.Breaker(window_calls=2, minimum_calls=2, failure_rate_percent=50,
                       open_duration=30.0, clock=clock)
    p = policy(breaker=b, max_attempts=5)
    op = Flaky(*[ConnectionError(str(i)) for i in range(10)])
    with pytest.raises(sluice.CircuitOpenError) as e:
        run(p.run(op))
    assert op.calls == 2 and e.value.attempts == 2  # tripped by the 2nd failure: no 3rd try
    with pytest.raises(sluice.CircuitOpenError) as e:
        run(p.run(op))
    assert op.calls == 2 and e.value.__cause__ is None  # refused before any attempt
    # Both runs count: the retry not made after the trip, and the refused attempt.
    assert p.stats()["breaker_refusals"] == 2 and b.state == "open"
    p.close()
    b.close()


def test_permanent_failures_do_not_trip_the_breaker(policy, clock):
    b = sluice.Breaker(window_calls=2, minimum_calls=2, failure_rate_percent=50, clock=clock)
    p = policy(breaker=b)
    for _ in range(5):
        with pytest.raises(ValueError):
            run(p.run(Flaky(ValueError())))
    assert b.state == "closed" and b.stats()["successes"] == 5
    p.close()
    b.close()


# ---- cancellation and attempt timeouts (real asyncio waits) ----------------------


def test_cancelling_the_run_during_an_attempt_and_during_a_wait(clock):
    never = asyncio.Event

    async def forever():
        await never().wait()

    async def sleep_forever(_seconds):
        await never().wait()

    p = sluice.RetryPolicy(clock=clock)
    q = sluice.RetryPolicy(clock=clock, sleep=sleep_forever)

    async def main():
        for policy, fn in ((p, forever), (q, Flaky(ConnectionError()))):
            task = asyncio.ensure_future(policy.run(fn))
            for _ in range(3):
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(main())
    for policy in (p, q):
        st = policy.stats()
        assert (st["cancelled"], st["in_flight"]) == (1, 0)
        policy.close()


def test_attempt_timeout_cancels_the_attempt_and_retries():
    cancelled = []

    async def first_hangs():
        if not cancelled:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(True)
                raise
        return "second try"

    p = sluice.RetryPolicy(attempt_timeout=0.02, base_delay=0.001, jitter="none")
    assert run(p.run(first_hangs)) == "second try"
    assert cancelled == [True] and p.stats()["attempts"] == 2
    p.close()


# ---- the decorator, threads, figures, bad input ------------------------------------


def test_decorator_forms(policy, slept):
    calls = []

    @sluice.retry(max_attempts=3, base_delay=0.001, jitter="none", sleep=slept.sleep)
    async def fetch(user, *, n):
        """Docstring kept."""
        calls.append((user, n))
        if len(calls) < 2:
            raise ConnectionError()
        return user * n

    assert run(fetch("ab", n=2)) == "abab" and calls == [("ab", 2)] * 2
    assert fetch.__name__ == "fetch" and fetch.__doc__ == "Docstring kept."
    shared = policy()

    @sluice.retry(shared)
    async def one():
        return 1

    @sluice.retry
    async def two():
        return 2

    assert run(one()) == 1 and one.policy is shared and run(two()) == 2
    with pytest.raises(TypeError):
        @sluice.retry(max_attempts=2)
        def not_async():
            pass
    fetch.policy.close()
    two.policy.close()


def test_one_policy_shared_by_threads_and_loops(policy):
    p = policy(max_attempts=3, budget_ratio=0)  # every run retries once: no budget here
    errors = []

    def worker():
        async def many():
            for _ in range(50):
                assert await p.run(Flaky(ConnectionError())) == 42

        try:
            asyncio.run(many())
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(GUARD)
    assert not errors
    st = p.stats()
    assert (st["runs"], st["attempts"], st["successes_after_retry"]) == (200, 400, 200)


def test_monitor_records_attempts_and_runs(policy):
    mon = sluice.Monitor()
    p = policy(monitor=mon, name="ai")
    run(p.run(Flaky(ConnectionError())))
    series = {s["name"]: s for s in mon.stats()}
    assert series["ai.attempt"]["count"] == 2 and series["ai.attempt"]["errors"] == 1
    assert series["ai.run"]["count"] == 1 and series["ai.run"]["errors"] == 0
    p.close()
    mon.close()


def test_bad_input_is_refused_with_clear_errors(policy):
    for kw, word in [({"max_attempts": 0}, "max_attempts"), ({"jitter": "wild"}, "jitter"),
                     ({"base_delay": -1}, "base_delay"), ({"base_delay": 1.0, "max_delay": 0.5},
                                                          "max_delay"),
                     ({"multiplier": 0.5}, "multiplier"), ({"budget_ratio": 1000}, "budget"),
                     ({"classify": 5}, "classify"), ({"on_retry": 5}, "on_retry")]:
        with pytest.raises(sluice.InvalidArgumentError, match=word):
            sluice.RetryPolicy(**kw)
    p = policy()

    async def op():
        return 1

    coro = op()
    with pytest.raises(TypeError):
        run(p.run(coro))  # a coroutine object, not a callable
    coro.close()
    with pytest.raises(sluice.StateError):
        sluice.RetryPolicy().delays(3)  # unseeded jitter cannot be reproduced
    p.close()
    with pytest.raises(sluice.ClosedError):
        run(p.run(op))


# ---- PostgreSQL errors keep the library's classification --------------------------


def test_pool_errors_are_classified_by_the_library(rt, dsn, policy):
    p = policy(max_attempts=3)
    serialization = "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$"

    async def main():
        async with sluice.Pool(rt, dsn, min_size=1, max_size=2) as pool:
            tries = []

            async def conflicted_once():
                tries.append(1)
                if len(tries) == 1:
                    return await pool.execute(serialization)
                return await pool.fetchval("select 7")

            assert await p.run(conflicted_once) == 7 and len(tries) == 2
            division = Flaky()

            async def divides_by_zero():
                await division()
                return await pool.fetchval("select 1/0")

            with pytest.raises(sluice.PgError) as e:
                await p.run(divides_by_zero)
            assert e.value.sqlstate == "22012" and not e.value.retryable and division.calls == 1

    run(main())

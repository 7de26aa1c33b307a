"""The circuit breaker against the real library, on a ManualClock."""
import asyncio
import threading

import pytest

import sluice

from _support import GUARD, run

S = 10**9


@pytest.fixture
def clock():
    return sluice.ManualClock()


def small(clock, **kw):
    opts = dict(window_calls=10, minimum_calls=4, failure_rate_percent=50, open_duration=5.0,
                half_open_trials=2, clock=clock)
    opts.update(kw)
    return sluice.Breaker(**opts)


def test_trips_at_the_failure_rate_and_fails_fast(clock):
    changes = []
    b = small(clock, on_state_change=lambda *c: changes.append(c))
    for ok in (True, True, False):
        b.record(b.allow(), ok)
    assert b.state == "closed"  # 1 failure in 3 calls: below minimum_calls anyway
    b.record(b.allow(), False)  # 2 of 4: 50 %
    assert b.state == "open"
    with pytest.raises(sluice.CircuitOpenError) as e:
        b.allow()
    assert e.value.code == -17 and "open" in e.value.message
    st = b.stats()
    assert (st["failures"], st["successes"], st["refused"], st["opened"]) == (2, 2, 1, 1)
    assert changes == [("closed", "open", 2)]
    b.close()


def test_open_wait_to_the_nanosecond_then_half_open_trials(clock):
    b = small(clock)
    b.set_state("open")
    clock.advance(ns=5 * S - 1)
    with pytest.raises(sluice.CircuitOpenError):
        b.allow()
    clock.advance(ns=1)
    t1 = b.allow()
    assert b.state == "half_open"
    t2 = b.allow()
    with pytest.raises(sluice.CircuitOpenError):
        b.allow()  # only two trials
    b.record(t1, True)
    b.record(t2, True)
    assert b.state == "closed"
    # A failing trial reopens it.
    b.set_state("half_open")
    b.record(b.allow(), False)
    assert b.state == "open"
    b.close()


def test_a_ticket_from_an_earlier_state_is_ignored(clock):
    b = small(clock)
    stale = b.allow()
    b.set_state("half_open")
    b.record(stale, False)
    assert b.state == "half_open" and b.stats()["ignored"] == 1
    b.close()


def test_call_times_and_classifies_the_block(clock):
    b = small(clock, slow_call=1.0, slow_rate_percent=50, failure_rate_percent=100)

    async def main():
        async with b.call():
            clock.advance(2.0)  # slow, but a success
        with pytest.raises(ValueError):
            with b.call():
                raise ValueError("bad request")  # permanent: the dependency answered
        st = b.stats()
        assert (st["successes"], st["failures"], st["slow"]) == (2, 0, 1)
        with pytest.raises(ConnectionError):
            async with b.call():
                raise ConnectionError("down")  # retryable: a failure
        async with b.call():
            clock.advance(1.0)  # 2 slow of 4: trips
        assert b.state == "open"
        with pytest.raises(sluice.CircuitOpenError):
            async with b.call():
                raise AssertionError("never entered")

    run(main())
    b.close()


def test_a_cancelled_call_gives_its_trial_back(clock):
    b = small(clock, half_open_trials=1)
    b.set_state("half_open")

    async def main():
        entered = asyncio.Event()

        async def call():
            async with b.call():
                entered.set()
                await asyncio.Event().wait()

        task = asyncio.ensure_future(call())
        await entered.wait()
        with pytest.raises(sluice.CircuitOpenError):
            b.allow()  # the one trial is taken
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        b.record(b.allow(), True)  # the trial is free again

    run(main())
    assert b.state == "closed" and b.stats()["released"] == 1
    b.close()


def test_call_with_a_custom_classification(clock):
    b = small(clock, minimum_calls=1, failure_rate_percent=100)
    with pytest.raises(KeyError):
        with b.call(classify=(KeyError,)):
            raise KeyError("x")
    assert b.state == "open"
    b.close()


def test_half_open_trials_race_between_threads(clock):
    """Two threads race for the trials of a half-open breaker, 60 times:
    exactly half_open_trials are admitted each time."""
    b = small(clock, half_open_trials=5)
    for _ in range(60):
        b.set_state("half_open")
        admitted, start = [], threading.Barrier(2)

        def grab():
            start.wait(GUARD)
            for _ in range(10):
                try:
                    admitted.append(b.allow())
                except sluice.CircuitOpenError:
                    pass

        threads = [threading.Thread(target=grab) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(GUARD)
        assert len(admitted) == 5
    b.close()


def test_bad_input_is_refused_with_clear_errors(clock):
    for kw, word in [({"window": "bucket"}, "window"), ({"minimum_calls": 20}, "minimum_calls"),
                     ({"failure_rate_percent": 150}, "failure_rate"), ({"open_duration": 0}, "open"),
                     ({"half_open_trials": -1}, "half_open_trials"),
                     ({"failure_rate_percent": 0}, "never trip"),
                     ({"on_state_change": 3}, "on_state_change")]:
        with pytest.raises(sluice.InvalidArgumentError, match=word):
            small(clock, **kw)
    b = small(clock)
    with pytest.raises(sluice.InvalidArgumentError):
        b.set_state("ajar")
    with pytest.raises(sluice.InvalidArgumentError):
        b.record(-1, True)
    with pytest.raises(sluice.InvalidArgumentError):
        b.record(0, True, duration=-1.0)
    policy = sluice.RetryPolicy(breaker=b)
    with pytest.raises(sluice.StateError):
        b.close()  # the policy still uses it
    policy.close()
    b.close()
    with pytest.raises(sluice.ClosedError):
        b.allow()


def test_a_monitor_sees_trips_and_refusals(clock):
    mon = sluice.Monitor()
    b = small(clock, monitor=mon, name="ai")
    for _ in range(4):
        b.record(b.allow(), False)
    for _ in range(3):
        with pytest.raises(sluice.CircuitOpenError):
            b.allow()
    counts = {s["name"]: s["count"] for s in mon.stats()}
    assert counts["ai.opened"] == 1 and counts["ai.rejected"] == 3
    b.close()
    mon.close()

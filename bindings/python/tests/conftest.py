import os

import pytest

import sluice


@pytest.fixture
def rt():
    r = sluice.Runtime(lag_interval_ms=10)
    yield r
    r.close()


@pytest.fixture
def dsn():
    value = os.environ.get("SLUICE_PG_CONNINFO")
    if not value:
        pytest.fail("SLUICE_PG_CONNINFO is not set: run bindings/python/test.sh")
    return value


@pytest.fixture
def exactly_once():
    """No callback runs twice and nothing is freed that was not registered."""
    from sluice import _bridge
    before = _bridge.counts()
    yield
    after = _bridge.counts()
    assert after["duplicate_callbacks"] == before["duplicate_callbacks"]
    assert after["unknown_frees"] == before["unknown_frees"]

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

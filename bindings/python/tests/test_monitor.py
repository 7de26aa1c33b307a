import asyncio
import json

import pytest

import sluice


def test_span_records_time_and_outcome():
    mon = sluice.Monitor()

    async def main():
        async with mon.span("ok"):
            await asyncio.sleep(0.01)
        with pytest.raises(sluice.TimedOutError):
            async with mon.span("fails"):
                raise sluice.TimedOutError(-6, "too slow")
        with mon.span("sync"):
            pass

    asyncio.run(main())
    s = {x["name"]: x for x in mon.stats()}
    assert s["ok"]["count"] == 1 and s["ok"]["min_ns"] >= 10_000_000
    assert s["fails"]["errors"] == 1 and s["fails"]["success_rate"] == 0.0
    assert s["sync"]["count"] == 1
    mon.close()


def test_record_exports_and_process():
    mon = sluice.Monitor(max_series=4)
    for i in range(1000):
        mon.record("db", (i + 1) / 1e6, 0 if i % 10 else -19)
    stats = mon.stats()[0]
    assert stats["count"] == 1000 and stats["errors"] == 100
    assert 495_000 <= stats["p50_ns"] <= 505_000
    doc = json.loads(mon.json())
    assert doc["series"][0]["name"] == "db"
    assert doc["series"][0]["errors"][0]["name"] == "SLUICE_EEXHAUSTED"
    prom = mon.prometheus()
    assert 'sluice_op_duration_seconds_count{op="db"} 1000' in prom
    assert mon.process()["rss_bytes"] > 0
    with pytest.raises(sluice.InvalidArgumentError):
        mon.record("", 1.0)
    mon.close()

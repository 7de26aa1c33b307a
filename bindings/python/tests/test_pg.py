import asyncio

import pytest

import sluice

from _support import probe


def run(coro):
    return asyncio.run(coro)


def test_fetch_types_and_records(rt, dsn):
    async def main():
        async with sluice.Pool(rt, dsn, min_size=1, max_size=4) as pool:
            rows = await pool.fetch("select $1::int as n, $2::text as s, $3::text as nothing, "
                                    "true as b, 1.5::float8 as f, '\\x0102'::bytea as raw", 7, "héllo ✓", None)
            r = rows[0]
            assert r["n"] == 7 and r[0] == 7
            assert r["s"] == "héllo ✓" and r["nothing"] is None
            assert r["b"] is True and r["f"] == 1.5 and r["raw"] == b"\x01\x02"
            assert await pool.fetchval("select $1::bytea", b"\x00\xff") == b"\x00\xff"
            assert await pool.fetchrow("select 1 where false") is None
            await pool.execute("drop table if exists py_t; create table py_t (id int primary key, v text)"
                               .split(";")[0])
            await pool.execute("create table py_t (id int primary key, v text)")
            assert await pool.execute("insert into py_t values ($1, $2), ($3, $4)", 1, "a", 2, "b") == 2
            assert [tuple(x) for x in await pool.fetch("select * from py_t order by id")] == [(1, "a"), (2, "b")]

    run(main())


def test_errors_carry_sqlstate_and_side_of_the_wire(rt, dsn):
    async def main():
        async with sluice.Pool(rt, dsn, min_size=1, max_size=2) as pool:
            with pytest.raises(sluice.PgError) as e:
                await pool.fetch("selec 1")
            assert e.value.sqlstate == "42601" and e.value.sent
            with pytest.raises(sluice.AmbiguousError) as e:
                await pool.fetch("select pg_sleep(10)", timeout=0.2)
            assert e.value.sent and not e.value.retryable
            assert isinstance(e.value, sluice.SluiceError)
            assert await pool.fetchval("select 5") == 5  # recovered

    run(main())


def test_transactions(rt, dsn):
    async def main():
        async with sluice.Pool(rt, dsn, min_size=1, max_size=1) as pool:
            await pool.execute("drop table if exists py_tx")
            await pool.execute("create table py_tx (id int)")
            async with pool.transaction() as conn:
                await conn.execute("insert into py_tx values (1)")
            with pytest.raises(RuntimeError):
                async with pool.transaction() as conn:
                    await conn.execute("insert into py_tx values (2)")
                    raise RuntimeError("boom")
            # Left mid-transaction: the pool rolls it back.
            async with pool.acquire() as conn:
                await conn.execute("begin")
                await conn.execute("insert into py_tx values (3)")
            assert await pool.fetchval("select array_agg(id)::text from py_tx") == "{1}"

    run(main())


def test_exhaustion_and_cancellation(rt, dsn):
    async def main():
        async with sluice.Pool(rt, dsn, min_size=1, max_size=1, admission_check=0) as pool:
            async with pool.acquire():
                with pytest.raises(sluice.TimedOutError):
                    await pool.fetchval("select 1", timeout=0.05)
                t = asyncio.ensure_future(pool.fetchval("select 1", timeout=30))
                await asyncio.sleep(0.05)
                t.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await t
            # Many callers far above max_size all get served.
            vals = await asyncio.gather(*(pool.fetchval("select $1::int", i) for i in range(200)))
            assert vals == list(range(200))
            assert pool.stats()["peak_total"] == 1

    run(main())
    # The cancelled query settled before its task ended; its entry is gone
    # once the loop has run past it.
    assert probe(rt)[0] == 0


def test_monitor_instruments_the_pool(rt, dsn):
    async def main():
        mon = sluice.Monitor(rt)
        async with sluice.Pool(rt, dsn, min_size=1, max_size=2, monitor=mon) as pool:
            for _ in range(10):
                async with mon.span("bot.message"):
                    await pool.execute("select 1")
        names = {s["name"]: s for s in mon.stats()}
        assert names["pg.query"]["count"] == 10
        assert names["bot.message"]["count"] == 10
        mon.close()

    run(main())

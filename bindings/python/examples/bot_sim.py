#!/usr/bin/env python3
"""bot_sim.py: the origin's chat bot under load, on sluice's Python binding.
The same program as examples/bot_sim (C; docs/bot_sim.md), in asyncio:

  one asyncio task per in-flight slot takes the next message and runs
    check_many(user limit, group limit)      all or nothing; refused: "slow down"
    -> async with locks.lock(user, 5 s)      one handler per user, FIFO
    -> sometimes the AI service: await tasks.run(blocking_call) through a
       retry policy behind a circuit breaker (a failure gets the fallback)
    -> SELECT bot_add_point($1,$2,$3) through the pool, retried (idempotent)
    -> release the lock, record the message in the monitor.

The AI call is a blocking function (time.sleep on a worker thread of the
task pool, through `await pool.run(...)`), as in the C program, so it
exercises the pool's worker threads and the GIL hand-off.

  python3 bindings/python/examples/bot_sim.py --users=1000 --messages=20000
"""
import argparse
import asyncio
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import sluice  # noqa: E402

# The same schema as examples/bot_sim/main.c: bot_add_point is idempotent by
# message id (a retry after an ambiguous failure adds nothing twice), and
# raises a real serialization failure when asked to, so the retry path runs
# against the server.
SETUP_SQL = [
    "DROP TABLE IF EXISTS bot_msgs, bot_users",
    "CREATE TABLE bot_users (id int PRIMARY KEY, points bigint NOT NULL DEFAULT 0)",
    "CREATE TABLE bot_msgs (id bigint PRIMARY KEY, user_id int NOT NULL)",
    "CREATE OR REPLACE FUNCTION bot_add_point(p_msg bigint, p_user int, p_fail boolean)\n"
    "RETURNS void LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "  IF p_fail THEN\n"
    "    RAISE EXCEPTION 'simulated conflict' USING ERRCODE = 'serialization_failure';\n"
    "  END IF;\n"
    "  INSERT INTO bot_msgs (id, user_id) VALUES (p_msg, p_user) ON CONFLICT (id) DO NOTHING;\n"
    "  IF FOUND THEN\n"
    "    UPDATE bot_users SET points = points + 1 WHERE id = p_user;\n"
    "  END IF;\n"
    "END $$",
]
ADD_POINT = "SELECT bot_add_point($1::bigint, $2::int, $3::boolean)"


def parse_options(argv):
    def ranged(kind, lo, hi):
        def conv(text):
            try:
                v = kind(text)
            except ValueError:
                v = None
            if v is None or not lo <= v <= hi:
                raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}"
                                                 f" in {lo}..{hi}")
            return v
        return conv

    p = argparse.ArgumentParser(prog="bot_sim.py", description="The bot simulation on sluice's "
                                "Python binding (the same options as the C examples/bot_sim).")
    a = p.add_argument
    a("--conninfo", default=os.environ.get("SLUICE_PG_CONNINFO"),
      help="PostgreSQL to use (default $SLUICE_PG_CONNINFO)")
    a("--users", type=ranged(int, 1, 100000000), default=1000, help="users (default 1000)")
    a("--groups", type=ranged(int, 1, 100000000), default=50,
      help="groups; user u is in group u %% groups (default 50)")
    a("--messages", type=ranged(int, 1, 1000000000), default=20000,
      help="messages to send in all (default 20000)")
    a("--inflight", type=ranged(int, 1, 100000), default=64,
      help="messages handled at once: one asyncio task each (default 64)")
    a("--rate", type=ranged(float, 0, 1e7), default=0.0,
      help="messages offered per second; 0: as fast as in-flight allows (default 0)")
    a("--user-limit", type=ranged(int, 1, 65535), default=20,
      help="per user, per --user-window-ms (default 20 per 60000: the origin's)")
    a("--user-window-ms", type=ranged(int, 1, 86400000), default=60000)
    a("--group-limit", type=ranged(int, 1, 1000000000), default=300,
      help="per group, per --group-window-ms (default 300 per 60000)")
    a("--group-window-ms", type=ranged(int, 1, 86400000), default=60000)
    a("--ai-percent", type=ranged(float, 0, 100), default=10.0,
      help="messages that call the AI service (default 10)")
    a("--ai-fail-percent", type=ranged(float, 0, 100), default=20.0,
      help="AI calls that fail transiently (default 20)")
    a("--ai-ms", type=ranged(int, 0, 60000), default=20, help="how long an AI call takes (default 20)")
    a("--db-fail-percent", type=ranged(float, 0, 100), default=5.0,
      help="updates the server rejects with a serialization failure first, retried (default 5)")
    a("--workers", type=ranged(int, 1, 65536), default=20,
      help="task pool limit for AI calls (default 20, the origin's)")
    a("--pool-size", type=ranged(int, 1, 1000), default=8, help="PostgreSQL connections (default 8)")
    a("--prom", default="bot_sim.prom", help="Prometheus text output (default bot_sim.prom)")
    a("--seed", type=ranged(int, 0, 0x7FFFFFFF), default=1, help="random source (default 1)")
    a("--quiet", action="store_true", help="no progress line")
    o = p.parse_args(argv)
    if not o.conninfo:
        p.error("no database: give --conninfo or set SLUICE_PG_CONNINFO")
    return o


class AIUnavailable(ConnectionError):
    """The simulated AI service failed transiently (retryable: a ConnectionError)."""


def ai_call(ms, fail):
    """The blocking call to the "AI service", on a task pool worker thread."""
    time.sleep(ms / 1000)
    if fail:
        raise AIUnavailable("the AI service answered 503")
    return "an answer"


class Sim:
    def __init__(self, o):
        self.o = o
        self.rng = random.Random(o.seed)  # read only on the asyncio thread: a run repeats
        self.next_id = 0
        self.finished = self.accepted = self.rate_limited = 0
        self.lock_failed = self.db_failed = self.ai_failed = self.ai_calls = 0
        self.start = 0.0

    def chance(self, percent):
        return self.rng.random() * 100 < percent

    def make_objects(self, rt):
        o = self.o
        self.mon = sluice.Monitor(rt)
        self.pool = sluice.Pool(rt, o.conninfo, min_size=1, max_size=o.pool_size, monitor=self.mon)
        self.user_limit = sluice.Limiter(rt, limit=o.user_limit, window=o.user_window_ms / 1000,
                                         algorithm="sliding_log", max_keys=o.users + 1000,
                                         monitor=self.mon, name="limit.user")
        self.group_limit = sluice.Limiter(rt, limit=o.group_limit, window=o.group_window_ms / 1000,
                                          algorithm="sliding_window", max_keys=o.groups + 1000,
                                          monitor=self.mon, name="limit.group")
        self.locks = sluice.Locks(rt, monitor=self.mon)
        self.tasks = sluice.TaskPool(rt, max_concurrent=o.workers, max_queued=o.inflight * 4 + 100,
                                     monitor=self.mon, name="ai.task")
        # Trips when the service is down, not when it is flaky.
        self.breaker = sluice.Breaker(window_calls=50, minimum_calls=20, failure_rate_percent=80,
                                      open_duration=2.0, monitor=self.mon, name="ai.breaker")
        self.ai_retry = sluice.RetryPolicy(max_attempts=3, base_delay=0.02, max_delay=0.5,
                                           total_timeout=10, budget_ratio=0.5, breaker=self.breaker,
                                           monitor=self.mon, name="ai", seed=o.seed)
        self.db_retry = sluice.RetryPolicy(max_attempts=5, base_delay=0.005, max_delay=0.2,
                                           total_timeout=10, budget_ratio=0.2, monitor=self.mon,
                                           name="db", seed=o.seed)

    async def close_objects(self):
        self.db_retry.close()
        self.ai_retry.close()
        await self.tasks.drain(10)
        self.tasks.close()
        self.breaker.close()
        self.locks.close()
        self.group_limit.close()
        self.user_limit.close()
        await self.pool.close()
        self.mon.close()

    # ---- one message ----------------------------------------------------

    async def ai_attempt(self):
        # The failure is drawn per attempt, as the C program does.
        return await self.tasks.run(ai_call, self.o.ai_ms, self.chance(self.o.ai_fail_percent),
                                    timeout=10)

    async def db_attempt(self, msg_id, user):
        return await self.pool.execute(ADD_POINT, msg_id, user,
                                       self.chance(self.o.db_fail_percent),
                                       timeout=5, idempotent=True)

    async def message(self, msg_id):
        o = self.o
        user = self.rng.randrange(o.users)
        ukey, gkey = f"u{user}", f"g{user % o.groups}"
        want_ai = self.chance(o.ai_percent)
        t0 = time.perf_counter()
        try:
            passed = bool(sluice.check_many([(self.user_limit, ukey), (self.group_limit, gkey)]))
        except sluice.LimitError:  # more users active than the limiter tracks: also "slow down"
            passed = False
        if not passed:
            self.rate_limited += 1
            return
        status = 0
        try:
            async with self.locks.lock(ukey, timeout=5):
                if want_ai:
                    self.ai_calls += 1
                    try:
                        await self.ai_retry.run(self.ai_attempt)
                    except Exception:
                        self.ai_failed += 1  # the bot answers with its fallback reply
                try:
                    await self.db_retry.run(lambda: self.db_attempt(msg_id, user))
                    self.accepted += 1
                except Exception as e:
                    self.db_failed += 1
                    status = getattr(e, "code", -13) or -13
        except (sluice.TimedOutError, sluice.LimitError, sluice.ClosedError) as e:
            self.lock_failed += 1
            status = e.code
        self.mon.record("message", time.perf_counter() - t0, status)

    async def handler(self):
        """One in-flight slot: takes the next message until none is left."""
        o = self.o
        while self.next_id < o.messages:
            msg_id = self.next_id
            self.next_id += 1
            if o.rate > 0:
                due = self.start + msg_id / o.rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            try:
                await self.message(msg_id)
            finally:
                self.finished += 1

    async def progress(self):
        """A line rewritten in place on a terminal; a line every 5 s in a log."""
        tty = sys.stderr.isatty()
        every = 0.25 if tty else 5.0
        while True:
            await asyncio.sleep(every)
            secs = time.perf_counter() - self.start
            sys.stderr.write(
                f"{chr(13) if tty else ''}{secs:6.1f} s  {self.finished}/{self.o.messages} messages  "
                f"{self.finished / secs:.0f}/s  accepted {self.accepted}  rate-limited "
                f"{self.rate_limited}  AI calls {self.ai_calls} (failed {self.ai_failed})  failed "
                f"{self.lock_failed + self.db_failed}{'   ' if tty else chr(10)}")
            sys.stderr.flush()

    # ---- the report -----------------------------------------------------

    def print_operations(self):
        print(f"\n{'operation':<22} {'count':>9} {'success':>9} {'p50 ms':>10} {'p99 ms':>10} "
              f"{'max ms':>10}")
        for st in self.mon.stats():
            if st["count"]:
                print(f"{st['name']:<22} {st['count']:>9} {st['success_rate'] * 100:>8.2f}% "
                      f"{st['p50_ns'] / 1e6:>10.3f} {st['p99_ns'] / 1e6:>10.3f} "
                      f"{st['max_ns'] / 1e6:>10.3f}")

    def print_objects(self):
        us, gs = self.user_limit.stats(), self.group_limit.stats()
        print(f"\nlimits   user: {us['allowed']} allowed, {us['rejected']} refused, {us['keys']} keys "
              f"now (peak {us['peak_keys']})\n"
              f"         group: {gs['allowed']} allowed, {gs['rejected']} refused, {gs['keys']} keys "
              f"now (peak {gs['peak_keys']})")
        ls = self.locks.stats()
        mean = ls["wait_ns"] / ls["contended"] / 1e6 if ls["contended"] else 0.0
        print(f"locks    {ls['acquisitions']} acquisitions, {ls['contended']} had to wait (mean wait "
              f"{mean:.3f} ms), {ls['timeouts']} timeouts, peak {ls['peak_live_keys']} users locked")
        ts = self.tasks.stats()
        ran = ts["completed"] + ts["failed"]
        print(f"tasks    {ran} AI calls run, {ts['failed']} failed, {ts['rejected']} rejected, "
              f"{ts['expired']} expired, peak {ts['peak_running']} running, mean queue wait "
              f"{ts['queue_wait_ns_total'] / ran / 1e6 if ran else 0.0:.3f} ms")
        ai, db, bs = self.ai_retry.stats(), self.db_retry.stats(), self.breaker.stats()
        state = str(bs["state"]).replace("_", "-")
        print(f"retries  AI: {ai['attempts']} attempts for {ai['runs']} runs ({ai['budget_refusals']} "
              f"refused by the budget, {ai['breaker_refusals']} by the breaker: {state}, tripped "
              f"{bs['opened']} times); database: {db['attempts']} attempts for {db['runs']} runs")
        ps = self.pool.stats()
        wait = ps["wait_ns_total"] / ps["acquires"] / 1e6 if ps["acquires"] else 0.0
        print(f"pool     {ps['total']} connections (peak {ps['peak_total']}), {ps['queries']} queries, "
              f"{ps['query_errors']} errors, {ps['query_timeouts']} timeouts, mean wait for a "
              f"connection {wait:.3f} ms")
        pr = self.mon.process()
        print(f"process  RSS {pr['rss_bytes'] / 1048576:.1f} MiB, CPU user {pr['cpu_user_ns'] / 1e9:.2f} s "
              f"system {pr['cpu_system_ns'] / 1e9:.2f} s, loop lag max {pr['loop_lag_max_ns'] / 1e6:.3f} "
              f"ms, {pr['open_fds']} open files")

    async def report(self, seconds):
        o = self.o
        print(f"\n{self.finished} messages from {o.users} users in {o.groups} groups in "
              f"{seconds:.2f} s: {self.finished / seconds:.0f} messages/s")
        print(f"accepted {self.accepted}, rate-limited {self.rate_limited}, lock timeouts "
              f"{self.lock_failed}, database failures {self.db_failed}; AI calls {self.ai_calls}, "
              f"{self.ai_failed} of them answered with the fallback")
        self.print_operations()
        self.print_objects()
        prom_ok = True
        try:
            with open(o.prom, "w") as f:
                f.write(self.mon.prometheus())
            print(f"\nPrometheus text written to {o.prom}")
        except OSError as e:
            print(f"bot_sim.py: {o.prom}: {e}", file=sys.stderr)
            prom_ok = False
        # The check: every accepted message is one point and one message row;
        # nothing refused or failed left a trace.
        points = int(await self.pool.fetchval("SELECT coalesce(sum(points), 0) FROM bot_users"))
        rows = int(await self.pool.fetchval("SELECT count(*) FROM bot_msgs"))
        acc = self.accepted
        books_ok = self.finished == acc + self.rate_limited + self.lock_failed + self.db_failed
        if points == acc and rows == acc and books_ok:
            print(f"check: {points} points stored = {acc} messages accepted: OK")
            return 0 if prom_ok else 1
        print(f"check FAILED: {points} points and {rows} message rows stored, {acc} messages "
              f"accepted ({self.finished} finished = {acc} accepted + {self.rate_limited} limited + "
              f"{self.lock_failed} lock + {self.db_failed} db: "
              f"{'adds up' if books_ok else 'does not add up'})")
        return 1

    async def main(self, rt):
        o = self.o
        self.make_objects(rt)
        try:
            for sql in SETUP_SQL:
                await self.pool.execute(sql)
            await self.pool.execute(f"INSERT INTO bot_users (id) SELECT generate_series(0, {o.users - 1})")
            print(f"bot_sim.py: {o.messages} messages from {o.users} users in {o.groups} groups, "
                  f"{o.inflight} in flight{', paced' if o.rate > 0 else ''}; limits {o.user_limit} per "
                  f"{o.user_window_ms} ms per user, {o.group_limit} per {o.group_window_ms} ms per "
                  f"group; AI on {o.ai_percent:.0f}% of messages ({o.ai_ms} ms, "
                  f"{o.ai_fail_percent:.0f}% failing), {o.workers} AI workers, {o.pool_size} "
                  f"connections", flush=True)
            self.start = time.perf_counter()
            progress = None if o.quiet else asyncio.ensure_future(self.progress())
            await asyncio.gather(*(self.handler() for _ in range(min(o.inflight, o.messages))))
            seconds = time.perf_counter() - self.start
            if progress is not None:
                progress.cancel()
                if sys.stderr.isatty():
                    sys.stderr.write("\n")
            return await self.report(seconds)
        finally:
            await self.close_objects()


def main(argv=None):
    o = parse_options(sys.argv[1:] if argv is None else argv)
    with sluice.Runtime() as rt:
        try:
            return asyncio.run(Sim(o).main(rt))
        except sluice.SluiceError as e:
            print(f"bot_sim.py: {e}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())

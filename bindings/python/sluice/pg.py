"""The PostgreSQL pool, asyncpg-style: fetch, fetchrow, fetchval, execute,
acquire() and transaction() as async context managers."""
import contextlib
import ctypes
import datetime
import decimal
import json

from . import _args, _bridge, _lib
from ._lib import lib
from .errors import AmbiguousError, PgError, check, error_class, make_error

# Flags of sluice_pg_query_options.
NO_PREPARE, BINARY_RESULT, IDEMPOTENT = 1, 2, 4

# Type OIDs decoded from text; anything else stays a str.
_INT = {20, 21, 23, 26}
_FLOAT = {700, 701}
_NUMERIC, _BOOL, _BYTEA, _JSON = 1700, 16, 17, 3802


def _decode(oid, raw):
    text = raw.decode("utf-8")
    if oid in _INT:
        return int(text)
    if oid in _FLOAT:
        return float(text)
    if oid == _NUMERIC:
        return decimal.Decimal(text)
    if oid == _BOOL:
        return text == "t"
    if oid == _BYTEA:
        return bytes.fromhex(text[2:]) if text.startswith("\\x") else raw
    if oid in (114, _JSON):
        return json.loads(text)
    return text


def _encode(value):
    """(bytes or None, format): text for everything but bytes."""
    if value is None:
        return None, 0
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), 1
    if isinstance(value, bool):
        return (b"t" if value else b"f"), 0
    if isinstance(value, (dict, list)):
        return json.dumps(value).encode(), 0
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat().encode(), 0
    return str(value).encode(), 0


class Record(tuple):
    """A row: a tuple that can also be read by column name."""

    __slots__ = ()
    _names = ()

    def __getitem__(self, key):
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._names.index(key))
            except ValueError:
                raise KeyError(key) from None
        return tuple.__getitem__(self, key)

    def keys(self):
        return self._names

    def items(self):
        return zip(self._names, self)

    def __repr__(self):
        return "<Record " + " ".join(f"{k}={v!r}" for k, v in self.items()) + ">"


def _raise_for(ptr, status, idempotent):
    msg = (lib.sluice_pg_result_message(ptr) or b"").decode("utf-8", "replace")
    sent = bool(lib.sluice_pg_result_sent(ptr))
    if status == -22:
        err = PgError(status, msg,
                      sqlstate=lib.sluice_pg_result_sqlstate(ptr).decode(),
                      detail=lib.sluice_pg_result_detail(ptr).decode("utf-8", "replace"),
                      hint=lib.sluice_pg_result_hint(ptr).decode("utf-8", "replace"), sent=sent)
    else:
        err = error_class(status)(status, msg)
        err.sent = sent
    # The library's classification, read while the result exists; retry
    # policies use it by default (sluice.retry.default_classify).
    err.retryable = lib.sluice_pg_retry_outcome(ptr, idempotent) == 1
    return err


def _rows(ptr):
    nrows, ncols = lib.sluice_pg_result_rows(ptr), lib.sluice_pg_result_columns(ptr)
    names = tuple(lib.sluice_pg_result_column_name(ptr, c).decode() for c in range(ncols))
    oids = [lib.sluice_pg_result_column_type(ptr, c) for c in range(ncols)]
    cls = type("Record", (Record,), {"_names": names, "__slots__": ()})
    value, length = ctypes.c_void_p(), ctypes.c_size_t()
    out = []
    for r in range(nrows):
        row = []
        for c in range(ncols):
            if lib.sluice_pg_result_value(ptr, r, c, ctypes.byref(value), ctypes.byref(length)) == 1:
                row.append(None)
            else:
                row.append(_decode(oids[c], ctypes.string_at(value, length.value)))
        out.append(cls(row))
    return out


async def _run(start, timeout, flags, sql, args):
    """Starts one statement through `start(...)` and returns its result ptr;
    raises the matching SluiceError otherwise."""
    n = len(args)
    encoded = [_encode(a) for a in args]
    values = (ctypes.c_char_p * max(n, 1))(*[v for v, _ in encoded])
    lengths = (ctypes.c_int * max(n, 1))(*[len(v) if v is not None else 0 for v, _ in encoded])
    formats = (ctypes.c_int * max(n, 1))(*[f for _, f in encoded])
    qo = _lib.PgQueryOptions()
    check(lib.sluice_pg_query_options_init(ctypes.byref(qo), _lib.PG_QUERY_OPTIONS_VERSION))
    qo.timeout_ms = max(1, int(timeout * 1000))
    qo.flags = flags
    status, ptr = await _bridge.call(
        lambda cb, uid, free_cb, op: start(sql.encode(), n, values, lengths, formats,
                                           ctypes.byref(qo), cb, uid, free_cb, op),
        _bridge._result_cb, on_late=lambda v: lib.sluice_pg_result_free(v[1]))
    if status:
        err = _raise_for(ptr, status, 1 if flags & IDEMPOTENT else 0)
        lib.sluice_pg_result_free(ptr)
        raise err
    return ptr


class _Queries:
    """fetch/fetchrow/fetchval/execute over a statement-starting function."""

    timeout = 30.0

    async def _result(self, sql, args, timeout, flags):
        raise NotImplementedError

    async def fetch(self, sql, *args, timeout=None, idempotent=False):
        ptr = await self._result(sql, args, timeout, IDEMPOTENT if idempotent else 0)
        try:
            return _rows(ptr)
        finally:
            lib.sluice_pg_result_free(ptr)

    async def fetchrow(self, sql, *args, timeout=None, idempotent=False):
        rows = await self.fetch(sql, *args, timeout=timeout, idempotent=idempotent)
        return rows[0] if rows else None

    async def fetchval(self, sql, *args, column=0, timeout=None, idempotent=False):
        row = await self.fetchrow(sql, *args, timeout=timeout, idempotent=idempotent)
        return None if row is None else row[column]

    async def execute(self, sql, *args, timeout=None, idempotent=False):
        """Runs a statement; returns the number of rows it affected (-1 if
        the statement reports none)."""
        ptr = await self._result(sql, args, timeout, IDEMPOTENT if idempotent else 0)
        try:
            return lib.sluice_pg_result_affected(ptr)
        finally:
            lib.sluice_pg_result_free(ptr)


class Connection(_Queries):
    """A borrowed connection (from Pool.acquire); statements run one at a time."""

    def __init__(self, pool, handle):
        self._pool, self._h = pool, handle

    async def _result(self, sql, args, timeout, flags):
        if not self._h:
            raise make_error(-10, "the connection was released")
        return await _run(lambda *a: lib.sluice_pg_conn_query(self._h, *a),
                          timeout or self._pool.timeout, flags, sql, args)

    def release(self):
        h, self._h = self._h, None
        if h:
            check(lib.sluice_pg_conn_release(h))

    @contextlib.asynccontextmanager
    async def transaction(self):
        """BEGIN ... COMMIT, or ROLLBACK if the block raises."""
        await self.execute("BEGIN")
        try:
            yield self
        except BaseException:
            await self.execute("ROLLBACK")
            raise
        await self.execute("COMMIT")


class Pool(_Queries):
    """sluice's PostgreSQL pool on a Runtime. Options are those of
    sluice_pg_pool_options (min_size, max_size, admission_check, ...)."""

    def __init__(self, runtime, dsn, *, timeout=30.0, monitor=None, **options):
        self.runtime, self.timeout = runtime, timeout
        opts = _lib.PgPoolOptions()
        check(lib.sluice_pg_pool_options_init(ctypes.byref(opts), _lib.PG_POOL_OPTIONS_VERSION))
        self._dsn = dsn.encode()
        opts.conninfo = self._dsn
        for key, value in options.items():
            if key not in dict(_lib.PgPoolOptions._fields_) or key in ("version", "conninfo"):
                raise TypeError(f"unknown pool option {key!r}")
            setattr(opts, key, int(value))
        if monitor is not None:
            opts.monitor = monitor.handle
        self._monitor = monitor
        handle = ctypes.c_void_p()
        check(lib.sluice_pg_pool_new(ctypes.byref(handle), runtime.handle, ctypes.byref(opts)))
        self._h = handle

    @property
    def handle(self):
        if not self._h:
            raise make_error(-4, "the pool is closed")
        return self._h

    async def _result(self, sql, args, timeout, flags):
        return await _run(lambda *a: lib.sluice_pg_pool_query(self.handle, *a),
                          timeout or self.timeout, flags, sql, args)

    @contextlib.asynccontextmanager
    async def acquire(self, *, timeout=None):
        """Borrows a connection for several statements; given back (and
        rolled back if left in a transaction) when the block ends."""
        conn = Connection(self, await self._acquire(timeout or self.timeout))
        try:
            yield conn
        finally:
            conn.release()

    async def _acquire(self, timeout):
        ms = max(1, int(timeout * 1000))
        conn = await _bridge.grant(
            lambda cb, uid, free_cb, op: lib.sluice_pg_pool_acquire(self.handle, ms, cb, uid,
                                                                    free_cb, op),
            lib.sluice_pg_conn_release)
        return conn

    @contextlib.asynccontextmanager
    async def transaction(self, *, timeout=None):
        """A transaction on a borrowed connection: async with pool.transaction() as conn."""
        async with self.acquire(timeout=timeout) as conn:
            async with conn.transaction():
                yield conn

    def stats(self):
        out = _args.read_stats(_lib.PgPoolStats, lib.sluice_pg_pool_stats_get, self.handle)
        out["evictions"] = list(out["evictions"])  # a ctypes array into the struct: copy it out
        return out

    async def close(self, drain_seconds=5.0):
        """Refuses new work, lets work in flight finish (up to drain_seconds),
        then closes every connection. Idempotent."""
        if not self._h:
            return
        uid, fut = _bridge.register()
        op = ctypes.c_void_p()
        rc = lib.sluice_pg_pool_close(self._h, int(drain_seconds * 1000), _bridge._status_cb, uid,
                                      _bridge._free_cb, ctypes.byref(op))
        if rc == 0:
            await _bridge.wait(uid, fut, op)
        else:
            _bridge.unregister(uid)
        h, self._h = self._h, None
        lib.sluice_pg_pool_free(h)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


async def create_pool(runtime, dsn, **options):
    """Like asyncpg.create_pool: the pool fills min_size in the background."""
    return Pool(runtime, dsn, **options)


__all__ = ["Pool", "Connection", "Record", "create_pool", "AmbiguousError", "PgError",
           "NO_PREPARE", "BINARY_RESULT", "IDEMPOTENT"]

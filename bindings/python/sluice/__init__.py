"""sluice for Python: the runtime, keyed locks, rate limits, the task pool,
retry policies, the circuit breaker, the PostgreSQL pool and the monitor
of libsluice, with asyncio awaitables (see README.md). Importing it loads the library and
checks its major version (see _lib)."""
from ._lib import ABI_MAJOR, lib
from .errors import *  # noqa: F401,F403  (every error class)
from .errors import SluiceError, PgError, AmbiguousError, CODES
from .op import Op
from .runtime import Runtime
from .pg import Pool, Connection, Record, create_pool
from .monitor import Monitor
from .locks import Locks, Guard, LockRequest
from .limiter import Limiter, LimitResult, check_many
from .breaker import Breaker
from .taskpool import TaskPool, Permit, SlotRequest
from .retry import RetryPolicy, retry, retry_with_backoff, default_classify
from ._args import ManualClock


def version():
    """The loaded library's version as (major, minor, patch)."""
    v = lib.sluice_version()
    return (v >> 16, (v >> 8) & 0xFF, v & 0xFF)


def version_string():
    """The loaded library's version as "MAJOR.MINOR.PATCH"."""
    return lib.sluice_version_string().decode()

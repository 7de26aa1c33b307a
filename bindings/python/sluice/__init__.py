"""sluice for Python: the runtime, the PostgreSQL pool and the monitor of
libsluice, with asyncio awaitables (see README.md)."""
from ._lib import ABI_MAJOR, lib
from .errors import *  # noqa: F401,F403  (every error class)
from .errors import SluiceError, PgError, AmbiguousError, CODES
from .runtime import Runtime
from .pg import Pool, Connection, Record, create_pool
from .monitor import Monitor


def version():
    """The loaded library's version as (major, minor, patch)."""
    v = lib.sluice_version()
    return (v >> 16, (v >> 8) & 0xFF, v & 0xFF)


def version_string():
    return lib.sluice_version_string().decode()


if version()[0] != ABI_MAJOR:
    raise ImportError(f"libsluice {version_string()} is loaded; these bindings need major {ABI_MAJOR}")

"""sluice's error codes as exceptions: one class per code, all SluiceError."""
from ._lib import lib

# (code, name, class name, extra bases): kept equal to SLUICE_ERRNO_MAP in
# sluice/common.h (tests/test_errors.py checks it against the header and the
# loaded library).
CODES = [
    (-1, "EINVAL", "InvalidArgumentError", (ValueError,)),
    (-2, "ENOMEM", "OutOfMemoryError", (MemoryError,)),
    (-3, "EVERSION", "VersionError", ()),
    (-4, "ECLOSED", "ClosedError", ()),
    (-5, "ECANCELED", "CanceledError", ()),
    (-6, "ETIMEDOUT", "TimedOutError", (TimeoutError,)),
    (-7, "EDEADLK", "DeadlockError", ()),
    (-8, "EAGAIN", "WouldBlockError", ()),
    (-9, "ELIMIT", "LimitError", ()),
    (-10, "ESTATE", "StateError", ()),
    (-11, "ERANGE", "RangeError", (IndexError,)),
    (-12, "ENOTSUP", "NotSupportedError", ()),
    (-13, "EINTERNAL", "InternalError", ()),
    (-14, "EUV", "EventLoopError", ()),
    (-15, "EREJECTED", "RejectedError", ()),
    (-16, "EFULL", "QueueFullError", ()),
    (-17, "EOPEN", "CircuitOpenError", ()),
    (-18, "EBUDGET", "RetryBudgetError", ()),
    (-19, "EEXHAUSTED", "PoolExhaustedError", ()),
    (-20, "EUNREACHABLE", "UnreachableError", (ConnectionError,)),
    (-21, "EAMBIGUOUS", "AmbiguousError", ()),
    (-22, "EPG", "PgError", ()),
]


class SluiceError(Exception):
    """A sluice failure: .code (negative int), .name ("SLUICE_E..."), .message."""

    code = 0

    def __init__(self, code, message=""):
        self.code = code
        self.name = lib.sluice_err_name(code).decode()
        self.message = message or lib.sluice_strerror(code).decode()
        super().__init__(f"{self.name}: {self.message}")


_BY_CODE = {}
for _code, _name, _cls, _bases in CODES:
    _BY_CODE[_code] = type(_cls, (SluiceError,) + _bases, {"code": _code, "__module__": __name__})
    globals()[_cls] = _BY_CODE[_code]


class PgError(_BY_CODE[-22]):
    """The server answered with an error: .sqlstate, .detail, .hint."""

    def __init__(self, code, message="", sqlstate="", detail="", hint="", sent=True):
        super().__init__(code, message)
        self.sqlstate, self.detail, self.hint, self.sent = sqlstate, detail, hint, sent


_BY_CODE[-22] = PgError


def error_class(code):
    return _BY_CODE.get(code, SluiceError)


def make_error(code, message=None):
    """The exception for `code`; without a message, the library's detail of
    the last failing call on this thread."""
    if message is None:
        message = (lib.sluice_error_message() or b"").decode("utf-8", "replace")
    return error_class(code)(code, message)


def check(rc):
    """Raises for a negative return code (reading the detail on this thread)."""
    if rc < 0:
        raise make_error(rc)
    return rc

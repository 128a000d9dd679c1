"""One exception class per GMS_E_* code of include/gms.h.

Every failing call of libgms returns a negative code; check() turns it into
the matching exception, with gms_error_last()'s message (which names the
function, handle or tenant involved). Where a built-in exception means the
same thing, the class derives from it too, so `except MemoryError` or
`except PermissionError` also works.
"""

from . import _lib


class GmsError(Exception):
    """Base class: `code` is the GMS_E_* value, str() the library's message."""

    code = None

    def __init__(self, message="", code=None):
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidArgument(GmsError, ValueError):
    code = -1


class InvalidHandle(GmsError):
    code = -2


class AccessDenied(GmsError, PermissionError):
    code = -3


class OutOfBounds(GmsError, IndexError):
    code = -4


class QuotaExceeded(GmsError, MemoryError):
    code = -5


class NoMemory(GmsError, MemoryError):
    code = -6


class ReadOnly(GmsError):
    code = -7


class Corruption(GmsError):
    code = -8


class BackendError(GmsError):
    code = -9


class Unsupported(GmsError):
    code = -10


class Busy(GmsError):
    code = -11


BY_CODE = {c.code: c for c in (InvalidArgument, InvalidHandle, AccessDenied, OutOfBounds,
                               QuotaExceeded, NoMemory, ReadOnly, Corruption, BackendError,
                               Unsupported, Busy)}


def error_for(code, message=None):
    """The exception for a GMS_E_* code (GmsError for a code gms does not
    define); message defaults to the thread's gms_error_last()."""
    if message is None:
        message = _lib.error_last() or _lib.strerror(code)
    cls = BY_CODE.get(code, GmsError)
    return cls(message, code=code)


def check(rc):
    """Raises the exception for rc when it is not GMS_OK (0)."""
    if rc != 0:
        raise error_for(rc)
    return rc

"""Tessera's errors as Python exceptions.

Every failed call raises a subclass of :class:`Error` chosen by the library's error code; its
message is the library's, the same text the ``tessera`` CLI prints (for example ``not found:
container 'x' of pool 'tank'``). Namespace calls (:mod:`tessera.fs`) raise :class:`OSError`
subclasses instead (``FileNotFoundError``, ``FileExistsError``, ...), as the ``os`` module does.
"""

from __future__ import annotations

import builtins


class Error(Exception):
    """A failed Tessera call: ``code`` is the C API's negative code (``-TESSERA_E*``) and
    ``name`` its name (``"ENOENT"``, ...); ``str(e)`` is the library's message."""

    name = "ERROR"

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code

    def __reduce__(self):  # picklable, so DataLoader workers can hand it to the parent
        return (from_code, (self.code, str(self)))


class InvalidArgumentError(Error, ValueError):
    name = "EINVAL"


class NotFoundError(Error, LookupError):
    name = "ENOENT"


class NoSpaceError(Error):
    name = "ENOSPC"


class StorageIOError(Error):
    name = "EIO"


class ChecksumError(Error):
    name = "ECSUM"


class TimedOutError(Error, builtins.TimeoutError):
    name = "ETIMEDOUT"


class UnreachableError(Error, ConnectionError):
    name = "EUNREACH"


class ProtocolError(Error):
    name = "EPROTO"


class ShutdownError(Error):
    name = "ESHUTDOWN"


class TooBigError(Error):
    name = "E2BIG"


class ExistsError(Error):
    name = "EEXIST"


class NotSupportedError(Error):
    name = "ENOTSUP"


class PermissionDeniedError(Error):
    name = "EPERM"


class UnavailableError(Error):
    name = "EUNAVAIL"


class BusyError(Error):
    name = "EBUSY"


class AbortedError(Error):
    name = "EABORTED"


class RestartError(Error):
    """The transaction conflicted with another: run it again (a new transaction)."""

    name = "ERESTART"


class UncertainError(Error):
    """The transaction's outcome is unknown: it may have committed."""

    name = "EUNCERTAIN"


class RedundancyLostError(Error):
    """The container lost more engines than its redundancy factor: no writes until they are
    back (reads go on)."""

    name = "ERF"


class BufferTooSmallError(Error):
    name = "ERANGE"


_BY_CODE = {
    1: InvalidArgumentError, 2: NotFoundError, 3: NoSpaceError, 4: StorageIOError,
    5: ChecksumError, 6: TimedOutError, 7: UnreachableError, 8: ProtocolError,
    9: ShutdownError, 10: TooBigError, 11: ExistsError, 12: NotSupportedError,
    13: PermissionDeniedError, 16: UnavailableError, 17: BusyError, 20: AbortedError,
    21: RestartError, 22: UncertainError, 24: RedundancyLostError, 100: BufferTooSmallError,
}


def from_code(code: int, message: str) -> Error:
    """The exception of a C API code (negative) with its message."""
    return _BY_CODE.get(-code, Error)(code, message)


__all__ = ["Error", "from_code"] + [c.__name__ for c in _BY_CODE.values()]

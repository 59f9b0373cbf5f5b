"""Library errors as Python exceptions carrying the code and the message."""
from __future__ import annotations

import enum

from ._lib import lib


class ErrorCode(enum.IntEnum):
    """The library's SANDBOX_E_* codes (negative, append-only)."""

    INVAL = -1
    NOMEM = -2
    FLAGS = -3
    VERSION = -4
    UNSUPPORTED = -5
    IMAGE = -6
    LIBVIRT = -7
    BOOT = -8
    PROTOCOL = -9
    DEAD = -10
    TIMEOUT = -11
    NOTFOUND = -12
    EXEC = -13
    IO = -14
    BUSY = -15
    ACCEL = -16
    PERM = -17
    ABORTED = -18
    ISDIR = -19
    NOTDIR = -20
    EXISTS = -21
    NOSPACE = -22
    NOTEMPTY = -23
    TOOBIG = -24


class SandboxError(Exception):
    """A libsandbox call failed.

    ``code`` is the library's negative error code (an :class:`ErrorCode` when
    this module knows it, else the plain int), ``name`` its SANDBOX_E_* name,
    ``message`` the library's detail (``sandbox_last_error()``), which is
    also ``str(err)``, and ``strerror`` the static text for the code.
    """

    def __init__(self, code: int, message: str) -> None:
        try:
            self.code: int = ErrorCode(code)
            self.name: str = "SANDBOX_E_" + ErrorCode(code).name
        except ValueError:
            self.code = code
            self.name = f"SANDBOX_E_{-code}"
        self.message = message
        self.strerror: str = lib.sandbox_strerror(code).decode()
        super().__init__(message or self.strerror)

    def __repr__(self) -> str:
        return f"SandboxError({self.name}, {self.message!r})"


def raise_for(code: int) -> None:
    """Raise the error for a negative return code, with this thread's detail."""
    if code < 0:
        detail = lib.sandbox_last_error()
        raise SandboxError(code, detail.decode(errors="replace") if detail else "")

"""The one place sqlite3 (and value-binding) errors become store errors.

A storage failure (disk full, I/O error, corruption, locked) fails its whole
batch with :class:`~sessions.StorageUnavailable`, which is retryable; what
belongs to the data of one statement (a constraint, too big, a value Python
cannot bind) becomes :class:`~sessions.Unstorable`, and only its append fails.
"""

from __future__ import annotations

import sqlite3

from ._errors import StorageUnavailable, StoreError, Unstorable

# Result codes (prefixes cover the extended codes, e.g. SQLITE_IOERR_WRITE) that
# mean the storage itself failed, whatever was being written: retry later.
_STORAGE_CODES: tuple[str, ...] = (
    "SQLITE_FULL",
    "SQLITE_IOERR",
    "SQLITE_CORRUPT",
    "SQLITE_NOTADB",
    "SQLITE_CANTOPEN",
    "SQLITE_READONLY",
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_NOMEM",
    "SQLITE_PROTOCOL",
    "SQLITE_PERM",
    "SQLITE_NOLFS",
)
# Python-side failures to bind one value (a lone surrogate cannot be UTF-8, an
# int beyond 64 bits, JSON nested past the recursion limit): that value's fault.
VALUE_FAULTS: tuple[type[Exception], ...] = (
    UnicodeError,
    OverflowError,
    RecursionError,
    ValueError,
    TypeError,
)


def translate(exc: BaseException) -> StoreError:
    """The one place sqlite3 (and value-binding) errors become store errors.

    Storage failures become :class:`StorageUnavailable`; what belongs to the data
    of one statement (constraints, too big, unbindable values) :class:`Unstorable`.
    """
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, VALUE_FAULTS):
        return Unstorable(f"a value cannot be stored: {type(exc).__name__}: {exc}")
    name = str(getattr(exc, "sqlite_errorname", "") or type(exc).__name__)
    if name.startswith(_STORAGE_CODES) or "locked" in str(exc):
        return StorageUnavailable(f"the database is unavailable ({name}): {exc}")
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError | sqlite3.InterfaceError):
        return Unstorable(f"the database refused a value ({name}): {exc}")
    return StoreError(f"SQLite error ({name}): {exc}")


def unstorable(exc: BaseException) -> Unstorable | None:
    """*exc* as the failure of one append, or ``None`` if it is not that."""
    if not isinstance(exc, sqlite3.Error) and not isinstance(exc, VALUE_FAULTS):
        return None
    error = translate(exc)
    return error if isinstance(error, Unstorable) else None

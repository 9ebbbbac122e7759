"""The root of agent-runtime's error tree and the store's branch of it.

The whole tree (documented in ``docs/errors.md``)::

    AgentRuntimeError
    ├── StoreError                      (sessions)
    │   ├── StoreClosed
    │   ├── DatabaseInUse
    │   ├── SessionNotFound
    │   ├── Conflict
    │   ├── SubscriberTooSlow
    │   ├── Unstorable              (a value cannot be stored; its append fails alone)
    │   ├── SessionLimitReached
    │   └── StorageUnavailable      (the storage failed; retry later)
    ├── AgentError                      (agents)
    │   └── ...
    └── ServerError                     (server)
        └── ...

Exceptions from third-party libraries (sqlite3, aiosqlite, trio-asyncio) are
translated into this tree once, at the package boundary, and never leak.
"""

from __future__ import annotations


class AgentRuntimeError(Exception):
    """Base of every error agent-runtime raises on purpose."""


class StoreError(AgentRuntimeError):
    """The session store could not do what was asked."""


class StoreClosed(StoreError):
    """The store is closing or closed; nothing more is accepted."""


class DatabaseInUse(StoreError):
    """Another process holds the database for writing."""


class LeaseHeld(StoreError):
    """Another replica holds the session's lease (it is the session's writer now).

    ``owner`` names that replica; ``expires_at`` (epoch seconds, the database's
    clock) is when its lease lapses unless renewed.
    """

    def __init__(self, session_id: str, owner: str, expires_at: float) -> None:
        super().__init__(f"session {session_id!r} is being written by replica {owner!r}")
        self.session_id = session_id
        self.owner = owner
        self.expires_at = expires_at


class LeaseLost(StoreError):
    """This replica's lease of the session was taken over: the write was refused.

    Nothing of the append was committed. The replica must stop writing the
    session and drop what it knows of it (the new holder writes it now).
    """

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"session {session_id!r}: this replica's lease was taken over; write refused"
        )
        self.session_id = session_id


class SessionNotFound(StoreError):
    """No session with that id (or it was deleted)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} not found")
        self.session_id = session_id


class Conflict(StoreError):
    """A write contradicts the stored state (e.g. resolving a resolved approval)."""


class SubscriberTooSlow(StoreError):
    """A subscriber's bounded buffer overflowed; resubscribe from ``last_seq``."""

    def __init__(self, session_id: str, last_seq: int) -> None:
        super().__init__(
            f"subscriber of session {session_id!r} fell behind after seq {last_seq}; "
            "resubscribe from that seq"
        )
        self.session_id = session_id
        self.last_seq = last_seq


class Unstorable(StoreError):
    """A value cannot be stored (or looked up) as given: text that is not valid
    Unicode, an integer out of range, data too big, a constraint. Only the append
    that carries it fails; the other appends of its batch commit normally."""


class SessionLimitReached(StoreError):
    """Creating the session would exceed its owner's limit of live sessions."""

    def __init__(self, owner: str, limit: int) -> None:
        super().__init__(f"{owner!r} already has {limit} live sessions (the limit)")
        self.owner = owner
        self.limit = limit


class StorageUnavailable(StoreError):
    """The storage itself failed (disk full, I/O error, corruption, locked):
    nothing of the batch was written. Retryable: the store keeps running and
    writes resume as soon as the storage accepts them again."""

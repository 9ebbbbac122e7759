"""The root of agent-runtime's error tree and the store's branch of it.

The whole tree (documented in ``docs/errors.md``)::

    AgentRuntimeError
    ├── StoreError                      (sessions)
    │   ├── StoreClosed
    │   ├── DatabaseInUse
    │   ├── SessionNotFound
    │   ├── Conflict
    │   └── SubscriberTooSlow
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

"""Durable sessions: models, the store protocol, and its SQLite and in-memory stores.

Open a store with :func:`open_sqlite_store` (production) or
:func:`open_memory_store` (tests); both yield a :class:`GroupCommitStore`, which
implements :class:`SessionStore`. Depend on the protocol.

The guarantees every store gives, and the in-process assumptions a second
(networked) implementation must replace, are listed in ``sessions/_store.py``
and explained in ``docs/store.md``; seq allocation and fan-out sit behind their
own seams (``_seqs.py``, ``_fanout.py``).
"""

from ._errors import (
    AgentRuntimeError,
    Conflict,
    DatabaseInUse,
    LeaseHeld,
    LeaseLost,
    SessionLimitReached,
    SessionNotFound,
    StorageUnavailable,
    StoreClosed,
    StoreError,
    SubscriberTooSlow,
    Unstorable,
)
from ._groups import single_error
from ._json import JSON, JSONObject, dumps, loads_object, valid_text
from ._memory import open_memory_store
from ._models import (
    Append,
    Approval,
    ApprovalStatus,
    CommandRecord,
    Committed,
    Event,
    NewEvent,
    Session,
    Turn,
    TurnStatus,
    new_id,
    now,
)
from ._postgres_entry import is_postgres_dsn, open_postgres_store
from ._protocol import SessionStore, Subscription
from ._quick import acquire_quickly, held_quickly, send_quickly
from ._sqlite import open_sqlite_store
from ._sqlite_sql import Durability
from ._store import GroupCommitStore
from ._writer import OnOutcome, StoreHealth, WriterStats

__all__ = [
    "JSON",
    "AgentRuntimeError",
    "Append",
    "Approval",
    "ApprovalStatus",
    "CommandRecord",
    "Committed",
    "Conflict",
    "DatabaseInUse",
    "Durability",
    "Event",
    "GroupCommitStore",
    "JSONObject",
    "LeaseHeld",
    "LeaseLost",
    "NewEvent",
    "OnOutcome",
    "Session",
    "SessionLimitReached",
    "SessionNotFound",
    "SessionStore",
    "StorageUnavailable",
    "StoreClosed",
    "StoreError",
    "StoreHealth",
    "SubscriberTooSlow",
    "Subscription",
    "Turn",
    "TurnStatus",
    "Unstorable",
    "WriterStats",
    "acquire_quickly",
    "dumps",
    "held_quickly",
    "is_postgres_dsn",
    "loads_object",
    "new_id",
    "now",
    "open_memory_store",
    "open_postgres_store",
    "open_sqlite_store",
    "send_quickly",
    "single_error",
    "valid_text",
]

"""Durable sessions: models, the store protocol, and its SQLite and in-memory stores."""

from ._errors import (
    AgentRuntimeError,
    Conflict,
    DatabaseInUse,
    SessionNotFound,
    StoreClosed,
    StoreError,
    SubscriberTooSlow,
)
from ._json import JSON, JSONObject, dumps, loads_object
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
from ._protocol import SessionStore, Subscription

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
    "Event",
    "JSONObject",
    "NewEvent",
    "Session",
    "SessionNotFound",
    "SessionStore",
    "StoreClosed",
    "StoreError",
    "SubscriberTooSlow",
    "Subscription",
    "Turn",
    "TurnStatus",
    "dumps",
    "loads_object",
    "new_id",
    "now",
]

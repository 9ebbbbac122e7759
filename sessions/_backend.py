"""What a :class:`~sessions._store.GroupCommitStore` needs of its storage: the backend seam.

:class:`Backend` is what every storage (the in-memory fake, SQLite, PostgreSQL)
implements under the store; :class:`Importer` and :class:`Leasing` are the
optional capabilities the store looks for at run time (rules 10 and 1 of
``_store.py``), and :func:`import_into` is the import transaction the backends
share. Separate from ``_store.py`` because this is the storage's side of the
seam: backends import it, and need none of the store itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

import trio

from ._batch import BatchResult, Known, Tx
from ._errors import Conflict, SessionLimitReached
from ._json import JSONObject
from ._models import Append, Approval, Committed, Event, Session, Turn


class Backend(Protocol):
    """Storage under a :class:`GroupCommitStore`.

    Reads return deleted sessions too (the store filters them); ``active_turns``
    and ``pending_approvals`` leave out those of deleted sessions.
    """

    async def commit(self, appends: Sequence[Append], known: Known, ts: float) -> BatchResult: ...

    async def get_session(self, session_id: str) -> Session | None: ...

    async def list_sessions(
        self, owner: str, *, limit: int, before: tuple[float, str] | None
    ) -> list[Session]: ...

    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Event]: ...

    async def get_turn(self, turn_id: str) -> Turn | None: ...

    async def active_turns(self, session_ids: Sequence[str] | None) -> list[Turn]: ...

    async def get_approval(self, session_id: str, call_id: str) -> Approval | None: ...

    async def pending_approvals(self, session_id: str | None) -> list[Approval]: ...

    async def get_command(self, session_id: str, command_id: str) -> Committed | None: ...


@runtime_checkable
class Importer(Protocol):
    """A :class:`Backend` that can create a session with a ready-made log (rule 10).

    Both stores' backends are; a wrapper that is not makes ``import_session``
    fail with :class:`~sessions.StoreError`.
    """

    async def import_session(
        self, session: Session, events: Sequence[Event], max_live_sessions: int | None
    ) -> None:
        """Write *session* and *events* (already checked) in one transaction of its own."""
        ...


@runtime_checkable
class Leasing(Protocol):
    """A :class:`Backend` whose sessions several replicas may write (PostgreSQL).

    A session is written by the replica holding its lease; every append is
    fenced by it (rule 1). Backends of one-writer stores are not ``Leasing``:
    they hold every session by construction.
    """

    owner: str

    async def acquire(self, session_id: str) -> None: ...

    async def release(self, session_id: str) -> None: ...

    def holds(self, session_id: str) -> bool: ...

    lost_sessions: trio.MemoryReceiveChannel[str]
    lease_ttl: float

    async def orphans(self, limit: int) -> list[str]: ...

    async def forward(self, session_id: str, command: JSONObject) -> JSONObject | None: ...

    async def serve_inbox(
        self, handler: Callable[[str, JSONObject], Awaitable[JSONObject | None]]
    ) -> None: ...


def import_into(
    tx: Tx, session: Session, events: Sequence[Event], max_live_sessions: int | None
) -> None:
    """Create *session* with its whole log inside the open transaction *tx*.

    The owner's live-session count moves as for a creation by ``append``.

    Raises:
        Conflict: a session with that id exists (even deleted).
        SessionLimitReached: the owner has *max_live_sessions* already.
        Unstorable: a value cannot be stored (the savepoint undid the writes).
    """
    with tx.savepoint(True):
        if tx.load_session(session.id) is not None:
            raise Conflict(f"session {session.id!r} already exists")
        if max_live_sessions is not None and tx.live_sessions(session.owner) >= max_live_sessions:
            raise SessionLimitReached(session.owner, max_live_sessions)
        tx.save_session(session)
        tx.add_live_sessions(session.owner, 1)
        if events:
            tx.save_events(events)


def check_import(session: Session, events: Sequence[Event]) -> None:
    """Refuse an import that would break the log's rules (a caller bug).

    Raises:
        ValueError: *session* is deleted, or *events* are of another session or
            not numbered 1..n.
    """
    if session.deleted:
        raise ValueError(f"cannot import session {session.id!r} as deleted")
    for expected, event in enumerate(events, start=1):
        if event.session_id != session.id:
            raise ValueError(f"event {event.seq} is of session {event.session_id!r}")
        if event.seq != expected:
            raise ValueError(f"imported seqs must be 1..n: got {event.seq} at {expected}")

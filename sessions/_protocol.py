"""The store seam: what agents and the server may ask of any session store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from ._json import JSONObject
from ._models import Append, Approval, Committed, Event, Session, Turn
from ._writer import OnOutcome, StoreHealth, WriterStats


class Subscription(Protocol):
    """Committed events of one session, replayed from a cursor, then live.

    Iterating yields events with strictly increasing, contiguous seqs. If the
    subscriber's bounded buffer overflows, iteration raises
    :class:`~sessions.SubscriberTooSlow` carrying the last seq delivered, so the
    caller can resubscribe from it without a gap.
    """

    @property
    def last_seq(self) -> int:
        """The seq of the last event delivered (the cursor to resume from)."""
        ...

    def __aiter__(self) -> AsyncIterator[Event]: ...

    async def receive_batch(self) -> Sequence[Event]:
        """Wait for at least one event, then return every event already buffered.

        Lets a transport coalesce queued events into one write.
        """
        ...


class SessionStore(Protocol):
    """Durable sessions and their event logs.

    All writes go through :meth:`append`, which returns only after the write is
    committed, or :meth:`submit`, which tells a callback; events become visible
    to readers and subscribers only after the commit.

    Cancellation: cancelling an ``append`` caller never leaves a partial write: the
    append is either committed whole (with its seqs) or absent.
    """

    async def append(self, append: Append) -> Committed:
        """Commit *append* atomically and return what it became.

        Raises:
            StoreClosed: the store is shutting down.
            SessionNotFound: events for a session that does not exist.
            Conflict: e.g. resolving an approval that is not pending.
            SessionLimitReached: a creation over ``append.max_live_sessions``.
            Unstorable: a value cannot be stored; this append alone fails.
            StorageUnavailable: the storage failed; nothing was written; retry.
        """
        ...

    async def submit(self, append: Append, on_outcome: OnOutcome) -> None:
        """Queue *append* to be committed as :meth:`append` would, without waiting.

        The store calls *on_outcome* exactly once, in the order the appends were
        queued, with the :class:`Committed` or the :class:`~sessions.StoreError`
        :meth:`append` would have returned or raised; it runs in the store's
        own task, before the events reach subscribers, and must neither raise
        nor block.

        Raises:
            StoreClosed: the store is shutting down (*on_outcome* is not called).

        Cancellation: cancelled while waiting for room, nothing is queued.
        """
        ...

    @property
    def health(self) -> StoreHealth:
        """Whether the storage accepts writes, as the last commit found."""
        ...

    @property
    def stats(self) -> WriterStats:
        """Counters of the store's writer (batches, failures)."""
        ...

    async def get_session(self, session_id: str) -> Session | None:
        """The session, or ``None`` if unknown or deleted."""
        ...

    async def list_sessions(
        self, owner: str, *, limit: int = 50, before: tuple[float, str] | None = None
    ) -> list[Session]:
        """*owner*'s live sessions, newest first.

        ``before`` is the ``(created_at, id)`` of the last session of the previous page.
        """
        ...

    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Event]:
        """Committed events with ``seq > after``, oldest first."""
        ...

    def subscribe(
        self, session_id: str, *, after: int = 0, buffer: int = 1024
    ) -> AbstractAsyncContextManager[Subscription]:
        """Replay events after *after*, then follow live ones, without gap or duplicate."""
        ...

    async def get_turn(self, turn_id: str) -> Turn | None: ...

    async def active_turns(self, session_ids: Sequence[str] | None = None) -> list[Turn]:
        """Turns whose status is queued, running or awaiting, oldest first.

        For restart recovery, and for what another replica is running; turns of
        deleted sessions are left out. *session_ids*: only those sessions' turns.
        """
        ...

    async def get_approval(self, session_id: str, call_id: str) -> Approval | None: ...

    async def pending_approvals(self, session_id: str | None = None) -> list[Approval]:
        """Pending approvals of one session, or of all sessions when ``None``."""
        ...

    async def get_command(self, session_id: str, command_id: str) -> Committed | None:
        """The committed result of a command id, if that id was already used."""
        ...

    @property
    def replica(self) -> str | None:
        """This replica's name when several replicas may write the database, else ``None``."""
        ...

    async def acquire(self, session_id: str) -> None:
        """Become the writer of *session_id* (a lease, with several replicas).

        Raises:
            LeaseHeld: another live replica writes it.
        """
        ...

    async def release(self, session_id: str) -> None:
        """Stop being *session_id*'s writer now, so another replica may take it."""
        ...

    def holds(self, session_id: str) -> bool:
        """Whether this store may write *session_id* now, as far as it knows."""
        ...

    @property
    def lease_ttl(self) -> float | None:
        """Seconds a session's lease lives unrenewed (several replicas), else ``None``."""
        ...

    async def orphaned_sessions(self, limit: int = 100) -> list[str]:
        """Sessions with open turns that no live replica holds."""
        ...

    def lost_leases(self) -> AsyncIterator[str]:
        """Sessions whose lease this replica finds taken over, as it finds them."""
        ...

    async def forward(self, session_id: str, command: JSONObject) -> JSONObject | None:
        """Have the replica running *session_id* apply *command*; its ack, or ``None``
        if that replica's lease lapsed first."""
        ...

    async def serve_inbox(
        self, handler: Callable[[str, JSONObject], Awaitable[JSONObject | None]]
    ) -> None:
        """Apply commands forwarded to this replica's sessions, until cancelled."""
        ...

    async def import_session(
        self, session: Session, events: Sequence[Event], *, max_live_sessions: int | None = None
    ) -> None:
        """Create *session* with *events* as its whole log, in one transaction.

        The only write besides :meth:`append`, for copying a log (forking a
        session): the events keep the seq, type, data, ``ts`` and ``turn_id``
        they are given, where ``append`` would stamp them with the commit's
        time. Their seqs must be 1, 2, 3, ... and name *session*. Nothing is
        published: nobody can follow a session before it exists. No turn,
        approval or command record comes with it.

        Raises:
            ValueError: *session* is deleted, or *events* are of another
                session or not numbered 1..n.
            Conflict: a session with that id exists (even deleted).
            SessionLimitReached: the owner has *max_live_sessions* already.
            Unstorable: a value cannot be stored; nothing was written.
            StorageUnavailable: the storage failed; nothing was written; retry.
            StoreClosed: the store is shutting down.
        """
        ...

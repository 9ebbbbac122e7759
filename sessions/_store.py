"""The store both backends share: reads from a backend, writes through the writer.

:class:`GroupCommitStore` implements :class:`~sessions.SessionStore` on top of a
:class:`Backend` (the in-memory fake or SQLite), so both stores behave the same
by construction. :func:`open_store` owns the writer task and the shutdown order.
The backend seam itself (``Backend``, ``Importer``, ``Leasing``) is in ``_backend.py``.

What any implementation of the store must honour (``docs/store.md`` explains
each for a networked, multi-replica store):

1. **One writer per session at a time.** SQLite: one writer task per database,
   made so by an exclusive ``flock`` on ``<db>.lock`` held while the store is
   open (:mod:`sessions._lock`; a second store, in any process, gets
   :class:`~sessions.DatabaseInUse`). Memory: the data belongs to one store.
   Every in-process shortcut leans on it: the writer's :class:`Known` caches
   (last seqs, session rows), :class:`~sessions._seqs_local.LocalSeqAllocator`,
   :class:`~sessions._fanout_local.LocalFanout`, and the agents' fold (9). With
   several replicas it takes a per-session lease and fenced writes.
2. **Seqs are contiguous per session and assigned at commit**, inside the
   batch transaction, by the batch's :class:`~sessions._seqs.SeqAllocator`. A
   failed append or batch uses no seq; one append's events are adjacent.
3. **An append is atomic and idempotent by command id.** All its parts commit
   in one transaction or none do, each append in its own savepoint so that it
   fails alone; ``append`` returns only after the commit (``submit``: its
   callback runs then, in queue order, in the writer's task). A command id already
   used (even earlier in the same batch) returns the first commit's events and
   ack with ``duplicate=True`` and writes and publishes nothing.
4. **Subscribers see committed events only, in seq order, with no gap or
   duplicate across the replay/live handover**: :mod:`sessions._subscription`
   on top of the guarantees of the :class:`~sessions._fanout.Fanout` seam.
5. **A subscriber that falls behind** more than its ``buffer`` gets
   :class:`~sessions.SubscriberTooSlow` with ``last_seq``, the last seq it was
   given; resubscribing from it continues without gap. Publishing never waits.
6. **Errors are classified once, at the backend.**
   :class:`~sessions.StorageUnavailable`: the storage failed (disk full, I/O,
   locked, connection lost); nothing of the batch was written, no seq used;
   retryable, and the store reports itself degraded until a batch commits.
   :class:`~sessions.Unstorable`: a value of one append cannot be stored; that
   append fails alone, like :class:`~sessions.Conflict`,
   :class:`~sessions.SessionNotFound` and :class:`~sessions.SessionLimitReached`.
   Anything else that fails a batch makes the writer retry its appends one by
   one, so only the culprit fails (a non-store exception as ``Unstorable``).
7. **Cancellation.** An ``append`` cancelled while the queue is full writes
   nothing; cancelled later, it still commits (or fails) whole and only its
   result is lost. A batch transaction is never abandoned half-way (shielded;
   SQLite runs it as one crossing). Reads are safe to cancel; a subscription
   is safe to cancel and resumes from ``last_seq``. Closing stops appends,
   drains the queue (shielded, bounded), then ends every subscription.
8. **Lazy loading.** Opening reads no history (SQLite: the schema version
   only); the writer's caches start empty, and a session's last seq and row
   are read in its first batch (``MAX(seq)``), its log on first access.
9. **The agents' fold trusts the store's order.** A session's actor folds only
   the events its own commits return (under its lock, or in a submitted
   append's callback, which the writer runs in queue order), after folding the whole
   log once when it loads; it drops seqs it already has but cannot notice a
   gap. So a session must be written through one supervisor at a time: a write
   made elsewhere would never reach its state. SQLite gets that from (1). A
   multi-replica store must bind the supervisor to the lease: only the holder
   runs a session's turns and commands, a write with a lost lease must fail
   without committing, and a replica that takes a lease over loads the session
   afresh.
10. **Imports bypass the writer, for new sessions only.**
   :meth:`GroupCommitStore.import_session` (forking) creates a session that
   does not exist yet together with its whole log, keeping each event's
   ``ts``, in one transaction of its own, next to the writer's: SQLite runs
   it on the connection's one thread, so it is serialised with the batches;
   memory runs it without a checkpoint. Sound because no one can write to (or
   follow) a session before it exists, and the writer caches nothing of a
   session it never wrote: its first append reads ``MAX(seq)`` and the row.
   It publishes nothing and does not move :attr:`~GroupCommitStore.health`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import trio

from ._backend import Backend as Backend  # re-exported: tests import it from here
from ._backend import Importer, Leasing, check_import
from ._backend import import_into as import_into  # re-exported: the backends import it here
from ._batch import check_append
from ._errors import SessionNotFound, StoreClosed, StoreError
from ._fanout import Fanout
from ._fanout_local import LocalFanout
from ._json import JSONObject
from ._models import Append, Approval, Committed, Event, Session, Turn
from ._protocol import Subscription
from ._subscription import ReplaySubscription
from ._writer import GroupCommitWriter, OnOutcome, StoreHealth, WriteProbe, WriterStats


class GroupCommitStore:
    """A :class:`~sessions.SessionStore` whose writes are group-committed.

    Obtain one from :func:`~sessions.open_memory_store` or
    :func:`~sessions.open_sqlite_store`. Every method may be called from any trio
    task of the run, not only from tasks inside the store's context.
    """

    def __init__(self, backend: Backend, writer: GroupCommitWriter, fanout: Fanout) -> None:
        self._backend = backend
        self._writer = writer
        self._fanout = fanout
        self._closed = False

    @property
    def stats(self) -> WriterStats:
        """Counters of the group-commit writer."""
        return self._writer.stats

    @property
    def health(self) -> StoreHealth:
        """Whether the storage accepts writes (as the last commit found)."""
        return self._writer.health

    async def append(self, append: Append) -> Committed:
        """Commit *append* atomically and return what it became.

        Raises:
            ValueError: a part of *append* names another session.
            StoreClosed: the store is shutting down.
            SessionNotFound: a write other than the session row itself, for a
                session that is unknown or deleted.
            Conflict: an approval transition other than new pending or
                pending → resolved.
            SessionLimitReached: a creation over ``max_live_sessions``.
            Unstorable: a value of *append* cannot be stored (it fails alone).
            StorageUnavailable: the storage failed (disk full, I/O); nothing
                was written; retry later.

        Cancellation: cancelled while the queue is full, nothing is written.
        Cancelled later, the append still commits whole (or fails whole); only
        the result is lost.
        """
        check_append(append)
        return await self._writer.append(append)

    async def submit(self, append: Append, on_outcome: OnOutcome) -> None:
        """Queue *append* without waiting for its commit; *on_outcome* gets the result.

        See :meth:`SessionStore.submit`. Raises ValueError (a part names
        another session) and StoreClosed at once; everything else goes to
        *on_outcome*.

        Cancellation: cancelled while the queue is full, nothing is queued.
        """
        check_append(append)
        await self._writer.submit(append, on_outcome)

    async def get_session(self, session_id: str) -> Session | None:
        """The session, or ``None`` if unknown or deleted.

        Cancellation: safe (reads only).
        """
        self._check_open()
        session = await self._backend.get_session(session_id)
        if session is None or session.deleted:
            return None
        return session

    async def list_sessions(
        self, owner: str, *, limit: int = 50, before: tuple[float, str] | None = None
    ) -> list[Session]:
        """*owner*'s live sessions, newest first (by ``created_at``, then ``id``).

        ``before`` is the ``(created_at, id)`` of the last session of the previous page.

        Cancellation: safe (reads only).
        """
        self._check_open()
        if limit < 1:
            raise ValueError("limit must be at least 1")
        return await self._backend.list_sessions(owner, limit=limit, before=before)

    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Event]:
        """Committed events with ``seq > after``, oldest first.

        Cancellation: safe (reads only).
        """
        self._check_open()
        return await self._backend.read_events(session_id, after=after, limit=limit)

    def subscribe(
        self, session_id: str, *, after: int = 0, buffer: int = 1024
    ) -> AbstractAsyncContextManager[Subscription]:
        """Replay events after *after*, then follow live ones, without gap or duplicate.

        Entering raises :class:`~sessions.SessionNotFound` for an unknown or
        deleted session. Iteration ends cleanly when the store closes, and raises
        :class:`~sessions.SubscriberTooSlow` if more than *buffer* live events
        pile up unread.

        Cancellation: entering and iterating are safe to cancel; resume from
        ``last_seq``.
        """
        return self._subscribe(session_id, after, buffer)

    @asynccontextmanager
    async def _subscribe(
        self, session_id: str, after: int, buffer: int
    ) -> AsyncIterator[Subscription]:
        if await self.get_session(session_id) is None:
            raise SessionNotFound(session_id)
        subscription = ReplaySubscription(session_id, after, buffer, self._backend, self._fanout)
        try:
            yield subscription
        finally:
            subscription.close()

    async def get_turn(self, turn_id: str) -> Turn | None:
        """The turn, or ``None``.

        Cancellation: safe (reads only).
        """
        self._check_open()
        return await self._backend.get_turn(turn_id)

    async def active_turns(self, session_ids: Sequence[str] | None = None) -> list[Turn]:
        """Turns still queued, running or awaiting, of live sessions, oldest first.

        For restart recovery (all of them) and for what another replica runs
        (*session_ids*: only those sessions' turns).

        Cancellation: safe (reads only).
        """
        self._check_open()
        if session_ids is not None and not session_ids:
            return []
        return await self._backend.active_turns(session_ids)

    async def get_approval(self, session_id: str, call_id: str) -> Approval | None:
        """The approval with its current status, or ``None``.

        Cancellation: safe (reads only).
        """
        self._check_open()
        return await self._backend.get_approval(session_id, call_id)

    async def pending_approvals(self, session_id: str | None = None) -> list[Approval]:
        """Pending approvals of one session, or of all live sessions when ``None``.

        Oldest request first.

        Cancellation: safe (reads only).
        """
        self._check_open()
        return await self._backend.pending_approvals(session_id)

    async def get_command(self, session_id: str, command_id: str) -> Committed | None:
        """What a command id committed (``duplicate=True``), if that id was used.

        Cancellation: safe (reads only).
        """
        self._check_open()
        return await self._backend.get_command(session_id, command_id)

    # -- leases (rule 1 for several replicas) ---------------------------------------------

    @property
    def replica(self) -> str | None:
        """The name of this replica when several may write the database, else ``None``."""
        return self._backend.owner if isinstance(self._backend, Leasing) else None

    async def acquire(self, session_id: str) -> None:
        """Make this store the writer of *session_id* before it reads the session to write it.

        One-writer stores (memory, SQLite) hold every session: nothing to do.
        A multi-replica store takes the session's lease (a lapsed one is taken
        over); from then on its appends to the session are fenced by it.

        Raises:
            LeaseHeld: another live replica writes the session.
            StorageUnavailable: the database cannot be reached.
        """
        self._check_open()
        if isinstance(self._backend, Leasing):
            await self._backend.acquire(session_id)

    async def release(self, session_id: str) -> None:
        """Stop being *session_id*'s writer now (it went idle here), so another replica
        may take it at once. No-op for one-writer stores and sessions not held."""
        if isinstance(self._backend, Leasing) and not self._closed:
            await self._backend.release(session_id)

    def holds(self, session_id: str) -> bool:
        """Whether this store may write *session_id* now (as far as it knows)."""
        return not isinstance(self._backend, Leasing) or self._backend.holds(session_id)

    @property
    def lease_ttl(self) -> float | None:
        """Seconds a session's lease lives unrenewed (several replicas), else ``None``."""
        return self._backend.lease_ttl if isinstance(self._backend, Leasing) else None

    async def orphaned_sessions(self, limit: int = 100) -> list[str]:
        """Sessions with open turns that no live replica holds (their replica died):
        for any replica to take over and recover. Always empty for one-writer stores
        (their start-up recovery covers them)."""
        self._check_open()
        if isinstance(self._backend, Leasing):
            return await self._backend.orphans(limit)
        return []

    async def lost_leases(self) -> AsyncIterator[str]:
        """The sessions whose lease this replica finds taken over (renewal or a refused
        write), as it finds them, until the store closes; nothing for one-writer stores.

        Lets the supervisor stop a session's turn at once rather than at its next
        write (which the fence would refuse anyway).
        """
        if isinstance(self._backend, Leasing):
            async for session_id in self._backend.lost_sessions:
                yield session_id

    async def forward(self, session_id: str, command: JSONObject) -> JSONObject | None:
        """Have the replica that runs *session_id* apply *command*; its ack as JSON.

        Returns ``None`` if that replica's lease lapsed before it answered: the
        caller may then take the session over (:meth:`acquire`) and apply the
        command itself (a duplicate id is harmless). Waits while the holder's
        lease is live: bound it with a cancel scope.

        Raises:
            StoreError: a one-writer store (nothing to forward to), or the
                database failed.

        Cancellation: safe; a command already forwarded is applied anyway.
        """
        self._check_open()
        if not isinstance(self._backend, Leasing):
            raise StoreError("this store has one writer: there is no other replica to forward to")
        return await self._backend.forward(session_id, command)

    async def serve_inbox(
        self, handler: Callable[[str, JSONObject], Awaitable[JSONObject | None]]
    ) -> None:
        """Apply, with *handler*, the commands other replicas forward to the sessions
        this replica runs; until cancelled. Returns at once for a one-writer store."""
        if isinstance(self._backend, Leasing):
            await self._backend.serve_inbox(handler)

    async def ping(self) -> None:
        """Check that the database answers a trivial read (for ``/health``).

        A no-op for stores with no server to lose (memory, SQLite: their
        trouble shows in :attr:`health` when a write fails); a backend with a
        ``ping()`` (PostgreSQL: ``SELECT 1`` on a reader connection) is asked.

        Raises:
            StorageUnavailable: the database cannot be reached.
            StoreClosed: the store is closed.

        Cancellation: safe (reads only); bound the wait with ``trio.move_on_after``.
        """
        self._check_open()
        ping = getattr(self._backend, "ping", None)
        if ping is not None:
            await ping()

    async def import_session(
        self, session: Session, events: Sequence[Event], *, max_live_sessions: int | None = None
    ) -> None:
        """Create *session* with *events* (seqs 1..n, kept with their ``ts``) as its log.

        One transaction of its own, beside the writer (rule 10); nothing is
        published. See :meth:`~sessions.SessionStore.import_session`.

        Raises:
            ValueError: *session* is deleted, or *events* are of another
                session or not numbered 1..n.
            Conflict: a session with that id exists.
            SessionLimitReached: the owner has *max_live_sessions* already.
            Unstorable: a value cannot be stored; nothing was written.
            StorageUnavailable: the storage failed; nothing was written.
            StoreClosed: the store is closed.
            StoreError: the backend cannot import.

        Cancellation: the transaction is shielded: if the caller is cancelled,
        the import either happened whole or not at all.
        """
        check_import(session, events)
        self._check_open()
        backend = self._backend
        if not isinstance(backend, Importer):
            raise StoreError(f"{type(backend).__name__} cannot import sessions")
        with trio.CancelScope(shield=True):
            await backend.import_session(session, events, max_live_sessions)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the session store is closed")

    def _mark_closed(self) -> None:
        self._closed = True


@asynccontextmanager
async def open_store(
    backend: Backend,
    *,
    queue_size: int,
    max_batch: int,
    drain_timeout: float,
    cache_size: int = 10_000,
    fanout: Fanout | None = None,
) -> AsyncIterator[GroupCommitStore]:
    """Run the writer for *backend* and yield the store.

    *cache_size* bounds the writer's per-session caches (last seq, session row).
    *fanout* carries committed events to subscribers; by default the in-process
    :class:`~sessions._fanout_local.LocalFanout`.

    On exit: stop accepting appends, let the writer commit what is queued
    (shielded, at most *drain_timeout* seconds), then end every subscription.
    Closing the backend is the caller's job, after this returns.
    """
    if fanout is None:
        fanout = LocalFanout()
    writer = GroupCommitWriter(
        backend,
        fanout,
        probe=backend if isinstance(backend, WriteProbe) else None,
        queue_size=queue_size,
        max_batch=max_batch,
        cache_size=cache_size,
    )
    store = GroupCommitStore(backend, writer, fanout)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        try:
            yield store
        finally:
            writer.stop_accepting()
            await writer.wait_drained(drain_timeout)
            fanout.close()
            store._mark_closed()

"""The in-memory store: the reference fake for tests, same writer and fan-out as SQLite.

Its transaction is an undo log: writes go straight into the dictionaries and
record how to take themselves back, so a failing append (or batch) is undone
exactly. A batch runs without a checkpoint, so readers never see half of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import TypeVar

import trio

from ._batch import BatchResult, Known, StoredCommand, apply_batch
from ._errors import StoreClosed
from ._groups import unwrap_single_error
from ._models import (
    Append,
    Approval,
    ApprovalStatus,
    CommandRecord,
    Committed,
    Event,
    Session,
    Turn,
)
from ._seqs_local import LocalSeqAllocator
from ._store import GroupCommitStore, import_into, open_store

K = TypeVar("K")
V = TypeVar("V")


class _Data:
    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.events: dict[str, list[Event]] = {}
        self.commands: dict[tuple[str, str], StoredCommand] = {}
        self.turns: dict[str, Turn] = {}
        self.approvals: dict[tuple[str, str], Approval] = {}
        self.live_sessions: dict[str, int] = {}


def _restore(table: dict[K, V], key: K, previous: V | None) -> Callable[[], None]:
    def undo() -> None:
        if previous is None:
            table.pop(key, None)
        else:
            table[key] = previous

    return undo


class _MemoryTx:
    def __init__(self, data: _Data) -> None:
        self._data = data
        self._undo: list[Callable[[], None]] = []

    def rollback(self, mark: int = 0) -> None:
        while len(self._undo) > mark:
            self._undo.pop()()

    @contextmanager
    def savepoint(self, needed: bool) -> Iterator[None]:
        del needed  # an undo mark is cheap enough to take every time
        mark = len(self._undo)
        try:
            yield
        except BaseException:
            self.rollback(mark)
            raise

    def _put(self, table: dict[K, V], key: K, value: V) -> None:
        self._undo.append(_restore(table, key, table.get(key)))
        table[key] = value

    def load_session(self, session_id: str) -> Session | None:
        return self._data.sessions.get(session_id)

    def max_seq(self, session_id: str) -> int:
        return len(self._data.events.get(session_id, ()))

    def load_command(self, session_id: str, command_id: str) -> StoredCommand | None:
        return self._data.commands.get((session_id, command_id))

    def load_events(self, session_id: str, first_seq: int, last_seq: int) -> list[Event]:
        return self._data.events.get(session_id, [])[first_seq - 1 : last_seq]

    def load_approval(self, session_id: str, call_id: str) -> Approval | None:
        return self._data.approvals.get((session_id, call_id))

    def save_session(self, session: Session) -> None:
        self._put(self._data.sessions, session.id, session)

    def live_sessions(self, owner: str) -> int:
        return self._data.live_sessions.get(owner, 0)

    def add_live_sessions(self, owner: str, delta: int) -> None:
        self._put(self._data.live_sessions, owner, self.live_sessions(owner) + delta)

    def save_events(self, events: Sequence[Event]) -> None:
        log = self._data.events.setdefault(events[0].session_id, [])
        start = len(log)
        if events[0].seq != start + 1:
            raise AssertionError("seqs must continue the log")
        log.extend(events)

        def undo() -> None:
            del log[start:]

        self._undo.append(undo)

    def save_command(
        self, record: CommandRecord, first_seq: int | None, last_seq: int | None
    ) -> None:
        stored = StoredCommand(ack=record.ack, first_seq=first_seq, last_seq=last_seq)
        self._put(self._data.commands, (record.session_id, record.command_id), stored)

    def save_turn(self, turn: Turn) -> None:
        self._put(self._data.turns, turn.id, turn)

    def save_approval(self, approval: Approval) -> None:
        self._put(self._data.approvals, (approval.session_id, approval.call_id), approval)


class MemoryBackend:
    """Dictionaries behind the :class:`~sessions._store.Backend` protocol."""

    def __init__(self) -> None:
        self._data = _Data()
        self.closed = False

    async def commit(self, appends: Sequence[Append], known: Known, ts: float) -> BatchResult:
        await self._checkpoint()
        tx = _MemoryTx(self._data)
        try:
            # The writer's memory is the truth: it is the only writer of _data.
            return apply_batch(tx, appends, known, ts, seqs=LocalSeqAllocator(known.seqs, tx))
        except BaseException:
            tx.rollback()
            raise

    async def import_session(
        self, session: Session, events: Sequence[Event], max_live_sessions: int | None
    ) -> None:
        """Create *session* with *events* as its log (no checkpoint once begun)."""
        await self._checkpoint()
        tx = _MemoryTx(self._data)
        try:
            import_into(tx, session, events, max_live_sessions)
        except BaseException:
            tx.rollback()
            raise

    async def get_session(self, session_id: str) -> Session | None:
        await self._checkpoint()
        return self._data.sessions.get(session_id)

    async def list_sessions(
        self, owner: str, *, limit: int, before: tuple[float, str] | None
    ) -> list[Session]:
        await self._checkpoint()
        found = [
            s
            for s in self._data.sessions.values()
            if s.owner == owner
            and not s.deleted
            and (before is None or (s.created_at, s.id) < before)
        ]
        found.sort(key=lambda s: (s.created_at, s.id), reverse=True)
        return found[:limit]

    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Event]:
        await self._checkpoint()
        log = self._data.events.get(session_id, [])
        start = max(after, 0)
        stop = len(log) if limit is None else min(len(log), start + max(limit, 0))
        return log[start:stop]

    async def get_turn(self, turn_id: str) -> Turn | None:
        await self._checkpoint()
        return self._data.turns.get(turn_id)

    async def active_turns(self, session_ids: Sequence[str] | None) -> list[Turn]:
        await self._checkpoint()
        wanted = None if session_ids is None else set(session_ids)
        turns = [
            t
            for t in self._data.turns.values()
            if t.status.active
            and self._live(t.session_id)
            and (wanted is None or t.session_id in wanted)
        ]
        turns.sort(key=lambda t: (t.started_at, t.id))
        return turns

    async def get_approval(self, session_id: str, call_id: str) -> Approval | None:
        await self._checkpoint()
        return self._data.approvals.get((session_id, call_id))

    async def pending_approvals(self, session_id: str | None) -> list[Approval]:
        await self._checkpoint()
        found = [
            a
            for a in self._data.approvals.values()
            if a.status is ApprovalStatus.PENDING
            and (a.session_id == session_id if session_id is not None else self._live(a.session_id))
        ]
        found.sort(key=lambda a: (a.requested_at, a.session_id, a.call_id))
        return found

    async def get_command(self, session_id: str, command_id: str) -> Committed | None:
        await self._checkpoint()
        stored = self._data.commands.get((session_id, command_id))
        if stored is None:
            return None
        events: tuple[Event, ...] = ()
        if stored.first_seq is not None and stored.last_seq is not None:
            log = self._data.events.get(session_id, [])
            events = tuple(log[stored.first_seq - 1 : stored.last_seq])
        return Committed(events=events, duplicate=True, ack=stored.ack)

    def _live(self, session_id: str) -> bool:
        session = self._data.sessions.get(session_id)
        return session is not None and not session.deleted

    async def _checkpoint(self) -> None:
        # Like the SQLite store, every call is a checkpoint, so code tested
        # against the fake yields where it would in production.
        await trio.lowlevel.checkpoint()
        if self.closed:
            raise StoreClosed("the session store is closed")


def open_memory_store(
    *,
    queue_size: int = 1024,
    max_batch: int = 1024,
    drain_timeout: float = 10.0,
) -> AbstractAsyncContextManager[GroupCommitStore]:
    """Open an empty in-memory store (the reference fake for tests).

    Behaves like :func:`~sessions.open_sqlite_store` (same writer, same rules,
    same fan-out) but forgets everything on exit.

    Args:
        queue_size: bound of the append queue (back-pressure beyond it).
        max_batch: most appends committed in one transaction.
        drain_timeout: seconds the writer may spend committing queued appends
            on exit.

    Cancellation: entering is a checkpoint. Exiting is shielded and waits at
    most *drain_timeout* for queued appends.
    """
    return _open_memory_store(MemoryBackend(), queue_size, max_batch, drain_timeout)


@asynccontextmanager
async def _open_memory_store(
    backend: MemoryBackend, queue_size: int, max_batch: int, drain_timeout: float
) -> AsyncIterator[GroupCommitStore]:
    try:
        with unwrap_single_error():
            async with open_store(
                backend, queue_size=queue_size, max_batch=max_batch, drain_timeout=drain_timeout
            ) as store:
                yield store
    finally:
        backend.closed = True

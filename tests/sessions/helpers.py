"""Builders and checks shared by the store tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import trio
import trio_asyncio

from sessions import (
    JSON,
    Append,
    Approval,
    ApprovalStatus,
    CommandRecord,
    Committed,
    Event,
    GroupCommitStore,
    NewEvent,
    Session,
    SessionStore,
    StoreError,
    Turn,
    TurnStatus,
    new_id,
)
from sessions._batch import BatchResult, Known
from sessions._fanout import Fanout
from sessions._memory import MemoryBackend
from sessions._schema import MIGRATIONS
from sessions._sqlite import SqliteBackend
from sessions._store import Backend, open_store

Opener = Callable[[], AbstractAsyncContextManager[GroupCommitStore]]


def make_session(
    owner: str = "alice",
    *,
    created_at: float = 1000.0,
    session_id: str | None = None,
    title: str = "hello",
    agent: str = "orchestrator",
    deleted: bool = False,
) -> Session:
    return Session(
        id=session_id or new_id("ses"),
        owner=owner,
        title=title,
        created_at=created_at,
        updated_at=created_at,
        current_agent=agent,
        deleted=deleted,
    )


async def create_session(
    store: SessionStore, owner: str = "alice", *, created_at: float = 1000.0
) -> Session:
    session = make_session(owner, created_at=created_at)
    await store.append(Append(session_id=session.id, session=session))
    return session


def ev(type_: str = "text.delta", **data: JSON) -> NewEvent:
    return NewEvent(type=type_, data=dict(data))


async def append_events(store: SessionStore, session_id: str, *events: NewEvent) -> Committed:
    return await store.append(Append(session_id=session_id, events=events))


def command(session_id: str, command_id: str, status: str = "accepted") -> CommandRecord:
    return CommandRecord(session_id, command_id, {"id": command_id, "status": status})


def make_turn(
    session_id: str, status: TurnStatus = TurnStatus.RUNNING, *, started_at: float = 1.0
) -> Turn:
    return Turn(
        id=new_id("turn"),
        session_id=session_id,
        agent="coder",
        status=status,
        started_at=started_at,
        updated_at=started_at,
        state={"waiting_for": ["call_1"]},
    )


def make_approval(
    session_id: str,
    call_id: str = "call_1",
    status: ApprovalStatus = ApprovalStatus.PENDING,
    *,
    requested_at: float = 1.0,
) -> Approval:
    return Approval(
        session_id=session_id,
        call_id=call_id,
        turn_id="turn_1",
        name="write_file",
        arguments={"path": "a.txt", "content": "x"},
        rule="write_file asks",
        requested_at=requested_at,
        expires_at=requested_at + 600,
        status=status,
    )


def resolved(approval: Approval, status: ApprovalStatus, by: str = "user") -> Approval:
    return Approval(
        session_id=approval.session_id,
        call_id=approval.call_id,
        turn_id=approval.turn_id,
        name=approval.name,
        arguments=approval.arguments,
        rule=approval.rule,
        requested_at=approval.requested_at,
        expires_at=approval.expires_at,
        status=status,
        resolution={"decision": status.value},
        resolved_by=by,
    )


def ints(events: Sequence[Event], key: str) -> list[int]:
    """The integer field *key* of each event's payload."""
    values: list[int] = []
    for event in events:
        value = event.data[key]
        assert isinstance(value, int)
        values.append(value)
    return values


def assert_contiguous(events: Sequence[Event], first: int = 1) -> None:
    seqs = [e.seq for e in events]
    assert seqs == list(range(first, first + len(events))), seqs


class GatedBackend(MemoryBackend):
    """The memory backend with a gate before each commit and injectable failures."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: trio.Event | None = None
        self.entered = trio.Event()
        self.fail_next = 0
        self.batches: list[int] = []

    async def commit(self, appends: Sequence[Append], known: Known, ts: float) -> BatchResult:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        self.batches.append(len(appends))
        if self.fail_next:
            self.fail_next -= 1
            raise StoreError("injected failure")
        return await super().commit(appends, known, ts)


@asynccontextmanager
async def open_gated(
    backend: GatedBackend,
    *,
    queue_size: int = 1024,
    max_batch: int = 1024,
    drain_timeout: float = 10.0,
) -> AsyncIterator[GroupCommitStore]:
    async with open_store(
        backend, queue_size=queue_size, max_batch=max_batch, drain_timeout=drain_timeout
    ) as store:
        yield store


@asynccontextmanager
async def open_backed(
    kind: str,
    db_path: Path,
    *,
    cache_size: int = 10_000,
    fanout: Fanout | None = None,
    wrap: Callable[[Backend], Backend] | None = None,
) -> AsyncIterator[tuple[GroupCommitStore, Backend]]:
    """A store over a real backend (*kind* ends in "memory" or "sqlite"), with the
    writer's cache size and the fan-out given, the backend passed through *wrap*
    (e.g. a fault injector) if given; yields the unwrapped backend too."""
    async with _real_backend(kind, db_path) as backend:
        async with open_store(
            wrap(backend) if wrap is not None else backend,
            queue_size=256,
            max_batch=64,
            drain_timeout=5,
            cache_size=cache_size,
            fanout=fanout,
        ) as store:
            yield store, backend


@asynccontextmanager
async def _real_backend(kind: str, db_path: Path) -> AsyncIterator[Backend]:
    if kind.endswith("memory"):
        yield MemoryBackend()
        return
    db_path.parent.mkdir(parents=True, exist_ok=True)
    async with trio_asyncio.open_loop() as loop:
        sqlite = await SqliteBackend.connect(loop, str(db_path), "normal", 5000, MIGRATIONS)
        try:
            yield sqlite
        finally:
            with trio.CancelScope(shield=True):
                await sqlite.aclose()

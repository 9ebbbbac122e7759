"""A store backend wrapper that injects faults into chosen commits.

Wraps any :class:`sessions._store.Backend` (the memory one, or a real SQLite
one) and, commit by commit, follows a plan: fail with a storage error (disk
full, I/O error), fail with a bug, or be slow. Independently, any batch that
contains a *poisoned* append (an event whose payload has ``"poison": true``)
fails whole with ``UnicodeEncodeError``, as a backend that cannot isolate a bad
value would; the writer must then find and fail that append alone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Literal

import trio

from sessions import Append, Approval, Committed, Event, Session, StorageUnavailable, Turn
from sessions._batch import BatchResult, Known
from sessions._store import Backend

Fault = Literal["disk_full", "io_error", "bug", "slow"]

POISON = "poison"


class FaultyBackend:
    """*inner* with injectable commit faults (reads pass straight through)."""

    def __init__(self, inner: Backend, *, slow_s: float = 5.0) -> None:
        self.inner = inner
        self.plan: deque[Fault] = deque()
        self.failing: Fault | None = None  # applies to every commit until cleared
        self.slow_s = slow_s
        self.batches: list[int] = []
        self.committed = 0
        self.gate: trio.Event | None = None  # when set, commits wait for it
        self.entered = trio.Event()  # a commit has started

    def fail_next(self, fault: Fault, times: int = 1) -> None:
        self.plan.extend([fault] * times)

    async def commit(self, appends: Sequence[Append], known: Known, ts: float) -> BatchResult:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        self.batches.append(len(appends))
        fault = self.plan.popleft() if self.plan else self.failing
        if fault == "disk_full":
            raise StorageUnavailable("the database is unavailable (SQLITE_FULL): disk is full")
        if fault == "io_error":
            raise StorageUnavailable("the database is unavailable (SQLITE_IOERR_WRITE): I/O")
        if fault == "bug":
            raise RuntimeError("injected bug")
        if fault == "slow":
            await trio.sleep(self.slow_s)
        if any(new.data.get(POISON) for append in appends for new in append.events):
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        result = await self.inner.commit(appends, known, ts)
        self.committed += 1
        return result

    async def get_session(self, session_id: str) -> Session | None:
        return await self.inner.get_session(session_id)

    async def list_sessions(
        self, owner: str, *, limit: int, before: tuple[float, str] | None
    ) -> list[Session]:
        return await self.inner.list_sessions(owner, limit=limit, before=before)

    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Event]:
        return await self.inner.read_events(session_id, after=after, limit=limit)

    async def get_turn(self, turn_id: str) -> Turn | None:
        return await self.inner.get_turn(turn_id)

    async def active_turns(self, session_ids: Sequence[str] | None) -> list[Turn]:
        return await self.inner.active_turns(session_ids)

    async def get_approval(self, session_id: str, call_id: str) -> Approval | None:
        return await self.inner.get_approval(session_id, call_id)

    async def pending_approvals(self, session_id: str | None) -> list[Approval]:
        return await self.inner.pending_approvals(session_id)

    async def get_command(self, session_id: str, command_id: str) -> Committed | None:
        return await self.inner.get_command(session_id, command_id)

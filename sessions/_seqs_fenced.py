"""The fenced seq allocator: seqs from the database, under the session's lease row lock.

For a store whose sessions several replicas may write (PostgreSQL). Each
session has a lease row ``(owner, generation, expires_at)``; a replica writes a
session only while it holds the lease, and every append is *fenced*: in the
batch transaction, before anything of a session is written, the lease row is
locked and extended by one ``UPDATE`` that matches only if the row still names
this replica with the generation it took. A replica whose lease was taken over (the generation
moved on) gets :class:`~sessions.LeaseLost` for that append, which then fails
alone and commits nothing. Then ``MAX(seq)`` is read under that lock: every
writer of the session holds the same row lock, so the seq is the database's,
gap-free, and never cached in memory.

A session this replica does not hold yet (its first write here, e.g. a
creation) is taken on demand in the same transaction: the lease row is
inserted, or taken over if it lapsed, and the acquisition commits or rolls back
with the batch. If a live replica holds it, the append fails alone with
:class:`~sessions.LeaseHeld`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ._errors import LeaseHeld, LeaseLost


class LeaseRows(Protocol):
    """What the allocator reads and writes in the batch transaction."""

    def lock_lease(self, session_id: str) -> tuple[str, int, float] | None:
        """The session's lease row ``(owner, generation, expires_at)``, locked; or ``None``."""
        ...

    def fence_lease(self, session_id: str, owner: str, generation: int, ttl: float) -> bool:
        """Lock and extend the lease if it is still (*owner*, *generation*)'s."""
        ...

    def take_lease(self, session_id: str, owner: str, ttl: float) -> tuple[int, float, bool] | None:
        """Insert the lease, or take it over if lapsed or already ours: its
        ``(generation, expires_at)``; ``None`` if a live lease of another owner holds it."""
        ...

    def max_seq(self, session_id: str) -> int: ...


class FencedSeqAllocator:
    """A :class:`~sessions._seqs.SeqAllocator` for stores with several writers."""

    __slots__ = ("_acquired", "_held", "_last", "_owner", "_rows", "_ttl")

    def __init__(self, rows: LeaseRows, owner: str, held: Mapping[str, int], ttl: float) -> None:
        self._rows = rows
        self._owner = owner
        self._held = held  # session -> generation this replica holds (as of the batch)
        self._ttl = ttl
        self._last: dict[str, int] = {}
        self._acquired: dict[str, int] = {}

    def fence(self, session_id: str) -> None:
        self.last_seq(session_id)

    def last_seq(self, session_id: str) -> int:
        last = self._last.get(session_id)
        if last is not None:
            return last
        generation = self._held.get(session_id)
        if generation is None:
            taken = self._rows.take_lease(session_id, self._owner, self._ttl)
            if taken is None:
                row = self._rows.lock_lease(session_id)
                owner, expires_at = (row[0], row[2]) if row is not None else ("?", 0.0)
                raise LeaseHeld(session_id, owner, expires_at)
            self._acquired[session_id] = taken[0]
        elif not self._rows.fence_lease(session_id, self._owner, generation, self._ttl):
            raise LeaseLost(session_id)
        last = self._rows.max_seq(session_id)
        self._last[session_id] = last
        return last

    def advance(self, session_id: str, last_seq: int) -> None:
        self._last[session_id] = last_seq

    def last_seqs(self) -> dict[str, int]:
        # Nothing for the writer to remember: the next batch reads the database again.
        return {}

    def acquired(self) -> dict[str, int]:
        """Leases this transaction took (valid once it commits): session -> generation."""
        return self._acquired

"""Contract tests of the seq-allocation seam (:class:`~sessions._seqs.SeqAllocator`).

Any implementation must pass them. The fixture is parametrised over the
implementations there are, on each storage they run over: today the in-process
:class:`~sessions._seqs_local.LocalSeqAllocator` over memory and SQLite
transactions. A networked store adds its allocator over its transactions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import pytest
import trio

from sessions import Append, Committed, Event, StoreError, Unstorable
from sessions._batch import BatchResult, Known, apply_batch
from sessions._memory import _Data, _MemoryTx
from sessions._seqs_local import LocalSeqAllocator
from sessions._sqlite_sql import SqliteTx, configure, rollback_quietly

from .helpers import append_events, assert_contiguous, create_session, ev, make_session, open_backed

POISON = "poison"  # an event the storage refuses (Unstorable): its append fails alone
BUG = "bug"  # an event that fails the whole transaction (not a StoreError)


def _good(events: Sequence[Event]) -> Sequence[Event]:
    """The events before the first bad one: written, as a multi-row insert that
    fails on a later row leaves the earlier ones (the savepoint must undo them)."""
    for index, event in enumerate(events):
        if event.type in (POISON, BUG):
            return events[:index]
    return events


def _refuse(events: Sequence[Event]) -> None:
    if any(e.type == BUG for e in events):
        raise RuntimeError("injected bug")
    if any(e.type == POISON for e in events):
        raise Unstorable("injected unstorable value")


class _PoisonMemoryTx(_MemoryTx):
    def save_events(self, events: Sequence[Event]) -> None:
        if good := _good(events):
            super().save_events(good)
        _refuse(events)


class _PoisonSqliteTx(SqliteTx):
    def save_events(self, events: Sequence[Event]) -> None:
        if good := _good(events):
            super().save_events(good)
        _refuse(events)


class Transactions(Protocol):
    """One storage and its allocator: runs a batch in one transaction."""

    def run(self, appends: Sequence[Append], known: Known) -> BatchResult: ...

    def log(self, session_id: str) -> list[int]:
        """The committed seqs of *session_id*."""
        ...


class _LocalOverMemory:
    def __init__(self) -> None:
        self._data = _Data()

    def run(self, appends: Sequence[Append], known: Known) -> BatchResult:
        tx = _PoisonMemoryTx(self._data)
        try:
            return apply_batch(tx, appends, known, 1.0, seqs=LocalSeqAllocator(known.seqs, tx))
        except BaseException:
            tx.rollback()
            raise

    def log(self, session_id: str) -> list[int]:
        return [e.seq for e in self._data.events.get(session_id, [])]


class _LocalOverSqlite:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def run(self, appends: Sequence[Append], known: Known) -> BatchResult:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            tx = _PoisonSqliteTx(self._conn)
            result = apply_batch(tx, appends, known, 1.0, seqs=LocalSeqAllocator(known.seqs, tx))
            self._conn.execute("COMMIT")
        except BaseException:
            rollback_quietly(self._conn)
            raise
        return result

    def log(self, session_id: str) -> list[int]:
        rows = self._conn.execute(
            "SELECT seq FROM events WHERE session_id = ? ORDER BY seq", (session_id,)
        )
        return [int(row[0]) for row in rows]


@pytest.fixture(params=["local-memory", "local-sqlite"])
def transactions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Transactions]:
    if request.param == "local-memory":
        yield _LocalOverMemory()
        return
    conn = sqlite3.connect(tmp_path / "seqs.db", isolation_level=None)
    try:
        configure(conn, "normal", 5000)
        yield _LocalOverSqlite(conn)
    finally:
        conn.close()


class Writer:
    """Commits batches and remembers what they return, as the group-commit writer does."""

    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions
        self.seqs: dict[str, int] = {}

    def commit(self, *appends: Append) -> list[Committed | StoreError]:
        known = Known(seqs=dict(self.seqs), sessions={})
        result = self._transactions.run(appends, known)
        self.seqs.update(result.last_seqs)
        return result.outcomes

    def forget(self, session_id: str | None = None) -> None:
        """A cache miss: the writer no longer remembers (evicted, or just opened)."""
        if session_id is None:
            self.seqs.clear()
        else:
            self.seqs.pop(session_id, None)


def _seqs(outcomes: Sequence[Committed | StoreError]) -> list[int]:
    seqs: list[int] = []
    for outcome in outcomes:
        assert isinstance(outcome, Committed), outcome
        seqs.extend(e.seq for e in outcome.events)
    return seqs


def _created(writer: Writer) -> str:
    session = make_session()
    _seqs(writer.commit(Append(session.id, session=session)))
    return session.id


def test_seqs_are_contiguous_across_batches(transactions: Transactions) -> None:
    writer = Writer(transactions)
    sid = _created(writer)
    got: list[int] = []
    for n in range(4):
        got += _seqs(writer.commit(Append(sid, (ev(n=n), ev(n=n))), Append(sid, (ev(n=n),))))
        assert writer.seqs[sid] == got[-1]
    assert got == list(range(1, 13))
    assert transactions.log(sid) == got


def test_seqs_continue_after_a_cache_miss(transactions: Transactions) -> None:
    writer = Writer(transactions)
    sid, other = _created(writer), _created(writer)
    got = _seqs(writer.commit(Append(sid, (ev(), ev(), ev())), Append(other, (ev(),))))
    writer.forget(sid)
    got += _seqs(writer.commit(Append(sid, (ev(),)), Append(other, (ev(),))))
    writer.forget()
    got += _seqs(writer.commit(Append(sid, (ev(),)), Append(sid, (ev(),))))
    assert transactions.log(sid) == [1, 2, 3, 4, 5, 6]
    assert transactions.log(other) == [1, 2]
    assert got == [1, 2, 3, 1, 4, 2, 5, 6]


def test_sessions_are_numbered_independently_in_one_batch(transactions: Transactions) -> None:
    writer = Writer(transactions)
    a, b = _created(writer), _created(writer)
    outcomes = writer.commit(
        Append(a, (ev(),)), Append(b, (ev(),)), Append(a, (ev(),)), Append(b, (ev(), ev()))
    )
    assert _seqs(outcomes) == [1, 1, 2, 2, 3]
    assert writer.seqs == {a: 2, b: 3}


def test_a_failed_append_uses_no_seq(transactions: Transactions) -> None:
    writer = Writer(transactions)
    sid = _created(writer)
    ok, failed, after = writer.commit(
        Append(sid, (ev(), ev())), Append(sid, (ev(), ev(POISON))), Append(sid, (ev(),))
    )
    assert isinstance(failed, Unstorable)
    assert _seqs([ok, after]) == [1, 2, 3]
    # The failing append is the first to need the session's seq (a cache miss).
    writer.forget()
    failed, after = writer.commit(Append(sid, (ev(POISON),)), Append(sid, (ev(),)))
    assert isinstance(failed, Unstorable)
    assert _seqs([after]) == [4]
    assert transactions.log(sid) == [1, 2, 3, 4]


def test_a_rolled_back_batch_uses_no_seq(transactions: Transactions) -> None:
    writer = Writer(transactions)
    sid = _created(writer)
    assert _seqs(writer.commit(Append(sid, (ev(), ev())))) == [1, 2]
    with pytest.raises(RuntimeError):
        writer.commit(Append(sid, (ev(),)), Append(sid, (ev(), ev(BUG))))
    assert _seqs(writer.commit(Append(sid, (ev(),)))) == [3]
    writer.forget()
    assert _seqs(writer.commit(Append(sid, (ev(),)))) == [4]
    assert transactions.log(sid) == [1, 2, 3, 4]


async def test_the_writer_keeps_logs_contiguous_through_cache_misses(
    kind: str, db_path: Path
) -> None:
    # A cache of one session and three sessions written at once: nearly every
    # batch misses, so seqs come from MAX(seq) inside the transaction.
    async with open_backed(kind, db_path, cache_size=1) as (store, _):
        sessions = [await create_session(store) for _ in range(3)]

        async def appender(session_id: str, worker: int) -> None:
            for n in range(5):
                await append_events(store, session_id, ev(w=worker, n=n), ev(w=worker, n=n))

        async with trio.open_nursery() as nursery:
            for session in sessions:
                for worker in range(4):
                    nursery.start_soon(appender, session.id, worker)
        for session in sessions:
            events = await store.read_events(session.id)
            assert len(events) == 4 * 5 * 2
            assert_contiguous(events)

"""Store fault injection: one bad append fails alone; a storage failure degrades and recovers.

Runs over the memory backend and a real SQLite backend, each wrapped in
:class:`~tests.fakes.faulty_backend.FaultyBackend`. The SQLite cases also use
real faults: lone surrogates that UTF-8 cannot encode, and a real ``SQLITE_FULL``
(the database's ``max_page_count`` reached).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from sessions import (
    Append,
    CommandRecord,
    Committed,
    GroupCommitStore,
    NewEvent,
    SessionLimitReached,
    StorageUnavailable,
    StoreError,
    Unstorable,
    open_sqlite_store,
)
from sessions._memory import MemoryBackend
from sessions._schema import MIGRATIONS, migrate
from sessions._sqlite import SqliteBackend
from sessions._sqlite_sql import PROBE_FREE_BYTES
from sessions._store import Backend, open_store
from sessions._writer import PROBE_INTERVAL
from tests.fakes.faulty_backend import POISON, FaultyBackend

from .helpers import (
    append_events,
    assert_contiguous,
    create_session,
    ev,
    ints,
    make_session,
    open_backed,
)


@asynccontextmanager
async def open_faulty(
    kind: str, db_path: Path
) -> AsyncIterator[tuple[GroupCommitStore, FaultyBackend, SqliteBackend | None]]:
    wrapped: list[FaultyBackend] = []

    def wrap(inner: Backend) -> Backend:
        wrapped.append(FaultyBackend(inner))
        return wrapped[0]

    async with open_backed(kind, db_path, wrap=wrap) as (store, inner):
        yield store, wrapped[0], inner if isinstance(inner, SqliteBackend) else None


async def _outcome(store: GroupCommitStore, append: Append) -> Committed | StoreError:
    try:
        return await store.append(append)
    except StoreError as exc:
        return exc


@asynccontextmanager
async def commits_held(
    store: GroupCommitStore, backend: FaultyBackend
) -> AsyncIterator[trio.Nursery]:
    """Inside, the writer is held in a commit (a holder session's); what is queued
    meanwhile forms the next batch, in queue order. Yields a nursery for appenders."""
    holder = make_session("holder")
    backend.gate = gate = trio.Event()
    backend.entered = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_outcome, store, Append(holder.id, session=holder))
        await backend.entered.wait()
        yield nursery
        backend.gate = None
        gate.set()


async def _one_batch(
    store: GroupCommitStore, backend: FaultyBackend, appends: list[Append]
) -> list[Committed | StoreError]:
    """Commit *appends* in ONE batch (queued behind a held commit), in order."""
    outcomes: list[Committed | StoreError | None] = [None] * len(appends)

    async def run(index: int, append: Append) -> None:
        outcomes[index] = await _outcome(store, append)

    with trio.fail_after(10):
        async with commits_held(store, backend) as nursery:
            for index, append in enumerate(appends):
                nursery.start_soon(run, index, append)
                await trio.testing.wait_all_tasks_blocked()  # queued in this order
    done = [o for o in outcomes if o is not None]
    assert len(done) == len(appends)
    return done


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_poisoned_batch_is_retried_so_only_the_bad_append_fails(
    kind: str, db_path: Path
) -> None:
    async with open_faulty(kind, db_path) as (store, backend, _):
        session = await create_session(store)
        appends = [
            Append(session.id, (NewEvent("text.delta", {"n": i, POISON: i == 7}),))
            for i in range(20)
        ]
        outcomes = await _one_batch(store, backend, appends)
        assert backend.batches[-21] == 20  # the batch of 20, then 20 retries of one
        assert [type(o) for o in outcomes] == [Committed] * 7 + [Unstorable] + [Committed] * 12
        events = await store.read_events(session.id)
        assert_contiguous(events)
        assert ints(events, "n") == [i for i in range(20) if i != 7]
        # The writer is alive and the store healthy.
        assert (await append_events(store, session.id, ev(n=99))).last_seq == 20
        assert store.health.ok


async def test_lone_surrogates_in_real_sqlite_fail_only_their_appends(db_path: Path) -> None:
    async with open_faulty("sqlite", db_path) as (store, backend, _):
        session = await create_session(store)
        bad_title = make_session(title="bad \ud800 title")
        appends = [
            Append(session.id, (ev(n=0),)),
            Append(session.id, (ev(n=1, text="lone \ud800 surrogate"),)),
            Append(session.id, (ev(n=2), ev(n=3))),
            Append(bad_title.id, session=bad_title),
            Append(
                session.id,
                (ev(n=4),),
                command=CommandRecord(session.id, "id-\udfff", {"id": "x", "status": "accepted"}),
            ),
            Append(session.id, (NewEvent("text.delta", {"n": 5, "key\ud800": 1}),)),
            Append(session.id, (ev(n=6),)),
        ]
        outcomes = await _one_batch(store, backend, appends)
        kinds = [type(o) for o in outcomes]
        assert kinds == [
            Committed,
            Unstorable,
            Committed,
            Unstorable,
            Unstorable,
            Unstorable,
            Committed,
        ]
        # One transaction: the bad appends were undone inside it, not retried.
        assert backend.batches[-1] == len(appends)
        events = await store.read_events(session.id)
        assert_contiguous(events)
        assert ints(events, "n") == [0, 2, 3, 6]
        assert await store.get_session(bad_title.id) is None
        assert store.health.ok


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@pytest.mark.parametrize("fault", ["disk_full", "io_error"])
async def test_a_storage_failure_degrades_the_store_until_writes_succeed(
    kind: str, fault: str, db_path: Path
) -> None:
    async with open_faulty(kind, db_path) as (store, backend, _):
        session = await create_session(store)
        await append_events(store, session.id, ev(n=1))
        backend.failing = "disk_full" if fault == "disk_full" else "io_error"
        for n in (2, 3):
            with pytest.raises(StorageUnavailable, match="nothing was written"):
                await append_events(store, session.id, ev(n=n))
        health = store.health
        assert not health.ok and health.error and health.degraded_since is not None
        assert store.stats.storage_failures == 2
        backend.failing = None
        # Writes resume without a restart; the failed appends used no seqs.
        assert (await append_events(store, session.id, ev(n=4))).last_seq == 2
        assert store.health.ok
        assert ints(await store.read_events(session.id), "n") == [1, 4]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_bug_in_a_batch_is_isolated_and_the_writer_survives(
    kind: str, db_path: Path
) -> None:
    async with open_faulty(kind, db_path) as (store, backend, _):
        session = await create_session(store)
        backend.fail_next("bug")  # the held "holder" commit is not affected: it comes first
        backend.plan.appendleft("slow")
        backend.slow_s = 0.0
        outcomes = await _one_batch(
            store, backend, [Append(session.id, (ev(n=i),)) for i in range(5)]
        )
        # The batch of five failed once, then each append committed alone.
        assert [type(o) for o in outcomes] == [Committed] * 5
        assert backend.batches[-6:] == [5, 1, 1, 1, 1, 1]
        assert ints(await store.read_events(session.id), "n") == [0, 1, 2, 3, 4]


async def test_real_sqlite_full_degrades_then_recovers_when_space_returns(db_path: Path) -> None:
    async with open_faulty("sqlite", db_path) as (store, _backend, inner):
        assert inner is not None
        raw = inner._raw
        session = await create_session(store)
        await append_events(store, session.id, ev(n=1))
        pages = await inner._on_thread(lambda: int(raw.execute("PRAGMA page_count").fetchone()[0]))
        await inner._on_thread(lambda: raw.execute(f"PRAGMA max_page_count = {pages}"))
        big = "x" * 200_000
        with pytest.raises(StorageUnavailable, match="SQLITE_FULL"):
            await append_events(store, session.id, ev(n=2, text=big), ev(n=3, text=big))
        assert not store.health.ok
        # Reads still work while writes cannot.
        assert ints(await store.read_events(session.id), "n") == [1]
        await inner._on_thread(lambda: raw.execute("PRAGMA max_page_count = 1073741823"))
        assert (await append_events(store, session.id, ev(n=4, text=big))).last_seq == 2
        assert store.health.ok


def test_sqlite_errors_are_classified() -> None:
    from sessions._sqlite_errors import translate

    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorname = "SQLITE_FULL"
    assert isinstance(translate(full), StorageUnavailable)
    io = sqlite3.OperationalError("disk I/O error")
    io.sqlite_errorname = "SQLITE_IOERR_WRITE"
    assert isinstance(translate(io), StorageUnavailable)
    assert isinstance(translate(sqlite3.IntegrityError("UNIQUE")), Unstorable)
    assert isinstance(translate(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "x")), Unstorable)
    assert isinstance(translate(OverflowError("int too big")), Unstorable)
    assert type(translate(sqlite3.OperationalError("no such table: x"))) is StoreError


# --- the per-principal session cap ------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_the_session_cap_holds_under_concurrent_creation(kind: str, db_path: Path) -> None:
    async with open_faulty(kind, db_path) as (store, _, _):
        outcomes: list[Committed | StoreError] = []

        async def create() -> None:
            session = make_session("alice")
            outcomes.append(
                await _outcome(store, Append(session.id, session=session, max_live_sessions=10))
            )

        async with trio.open_nursery() as nursery:
            for _ in range(60):
                nursery.start_soon(create)
        assert sum(isinstance(o, Committed) for o in outcomes) == 10
        assert sum(isinstance(o, SessionLimitReached) for o in outcomes) == 50
        live = await store.list_sessions("alice", limit=100)
        assert len(live) == 10
        # Another owner is not affected; deleting one frees one slot.
        other = make_session("bob")
        await store.append(Append(other.id, session=other, max_live_sessions=10))
        gone = live[0]
        await store.append(
            Append(gone.id, session=make_session("alice", session_id=gone.id, deleted=True))
        )
        again = [make_session("alice") for _ in range(2)]
        first = await _outcome(store, Append(again[0].id, session=again[0], max_live_sessions=10))
        second = await _outcome(store, Append(again[1].id, session=again[1], max_live_sessions=10))
        assert isinstance(first, Committed)
        assert isinstance(second, SessionLimitReached)


async def test_the_live_count_is_backfilled_when_an_old_database_is_upgraded(
    db_path: Path,
) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    migrate(conn, MIGRATIONS[:1])
    for i in range(3):
        conn.execute(
            "INSERT INTO sessions VALUES (?, 'alice', 't', 1, 1, 'coder', ?)", (f"s{i}", i == 2)
        )
    conn.close()
    async with open_sqlite_store(db_path) as store:
        created = [make_session("alice") for _ in range(2)]
        first = await _outcome(
            store, Append(created[0].id, session=created[0], max_live_sessions=3)
        )
        second = await _outcome(
            store, Append(created[1].id, session=created[1], max_live_sessions=3)
        )
    assert isinstance(first, Committed)
    assert isinstance(second, SessionLimitReached)


async def test_the_writer_caches_are_bounded_and_a_miss_reloads_exactly() -> None:
    backend = MemoryBackend()
    async with open_store(
        backend, queue_size=64, max_batch=64, drain_timeout=5, cache_size=2
    ) as store:
        sessions = [await create_session(store) for _ in range(5)]
        for round_ in range(3):
            for session in sessions:
                await append_events(store, session.id, ev(n=round_))
        writer = store._writer
        assert len(writer._last_seqs) <= 2 and len(writer._sessions) <= 2
        for session in sessions:
            events = await store.read_events(session.id)
            assert_contiguous(events)
            assert ints(events, "n") == [0, 1, 2]


class ProbedBackend(FaultyBackend):
    """A backend whose storage can be probed (as SQLite's): the probe fails while
    commits would (``failing``)."""

    probes = 0

    async def probe_write(self) -> None:
        self.probes += 1
        if self.failing in ("disk_full", "io_error"):
            raise StorageUnavailable("the database is unavailable (SQLITE_FULL): disk is full")


def healthy(store: GroupCommitStore) -> bool:
    return store.health.ok


async def test_a_degraded_store_probes_the_storage_and_recovers_without_a_write(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A client told to retry once ``/health`` is ok must not wait for its own write."""
    backend = ProbedBackend(MemoryBackend())
    backend.failing = "disk_full"
    async with open_store(backend, queue_size=8, max_batch=8, drain_timeout=1) as store:
        # At start: the storage as it is now, not as it was last time.
        assert (healthy(store), backend.probes) == (False, 1)
        await trio.sleep(PROBE_INTERVAL * 3.5)
        assert (healthy(store), backend.probes) == (False, 4)
        backend.failing = None
        await trio.sleep(PROBE_INTERVAL)
        assert (healthy(store), backend.probes) == (True, 5)
        await trio.sleep(PROBE_INTERVAL * 5)
        assert backend.probes == 5  # healthy: no more probing
        session = await create_session(store)  # appends commit as before
        assert await store.get_session(session.id) == session


async def test_the_sqlite_probe_is_a_real_write(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_backed("sqlite", db_path) as (store, inner):
        assert isinstance(inner, SqliteBackend)
        raw = inner._raw
        session = await create_session(store)
        await inner._on_thread(lambda: raw.execute("PRAGMA query_only = 1"))
        with pytest.raises(StorageUnavailable, match="SQLITE_READONLY"):
            await inner.probe_write()
        await inner._on_thread(lambda: raw.execute("PRAGMA query_only = 0"))
        await inner.probe_write()
        # A nearly full disk fails it before it writes (a small write fits in the
        # WAL's old frames there, so it would succeed and say nothing).
        disk = os.statvfs(db_path.parent)
        blocks = PROBE_FREE_BYTES // disk.f_frsize - 1
        nearly_full = os.statvfs_result((*disk[:4], blocks, *disk[5:]))
        monkeypatch.setattr(os, "statvfs", lambda path: nearly_full)
        with pytest.raises(StorageUnavailable, match="bytes free on its disk"):
            await inner.probe_write()
        monkeypatch.undo()
        await inner.probe_write()
        # It leaves nothing behind: the live count of every owner is as it was.
        owners = await inner._on_thread(lambda: raw.execute("SELECT * FROM owners").fetchall())
        assert [tuple(row) for row in owners] == [(session.owner, 1)]

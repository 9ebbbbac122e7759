"""B4 persistence: committed events/s, group commit vs one transaction per event.

Run: ``python -m bench.b4_persistence`` (about a minute). Every workload runs
3 times on a fresh database in a temporary directory; the medians are printed.

Workloads, each at 1, 100 and 1,000 concurrent appenders (one session each,
one event per append, every append awaited until committed):

- ``store``: the real SQLite store (aiosqlite inside trio-asyncio), group commit.
- ``store, max_batch=1``: the same store, one transaction per append.
- ``to_thread``: a minimal group-commit writer loop written below, running the
  store's very same batch function (``sessions._sqlite_sql.commit_batch``, same
  SQL, same savepoints) through ``trio.to_thread.run_sync`` + plain sqlite3. The
  only difference from ``store`` is the bridge, so ``store / to_thread`` is the
  cost of the aiosqlite/trio-asyncio bridge as a ratio.
- raw sqlite3 inserts in one transaction: the disk's ceiling.
- one bridge crossing (``SELECT 1``) vs one ``trio.to_thread`` hop, and one
  read through the store itself (``get_turn`` of an id that is not there: one
  crossing as the store makes it), in wall time and in this process's CPU.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from importlib.metadata import version
from pathlib import Path

import aiosqlite
import trio
import trio_asyncio

from sessions import Append, NewEvent, Session, now, open_sqlite_store
from sessions._batch import Known
from sessions._models import Committed
from sessions._sqlite_sql import commit_batch, configure

RUNS = 3
APPENDERS = (1, 100, 1000)
GROUP_EVENTS = 20_000  # per run, group commit
SINGLE_EVENTS = 3_000  # per run, one transaction per append
RAW_EVENTS = 100_000
CROSSINGS = 5_000
PAYLOAD = {"message_id": "msg_1", "text": "a token or two "}


def _session(i: int) -> Session:
    return Session(
        id=f"ses_{i}",
        owner="bench",
        title="bench",
        created_at=float(i),
        updated_at=float(i),
        current_agent="coder",
    )


def _event(n: int) -> NewEvent:
    return NewEvent("text.delta", {**PAYLOAD, "n": n}, "turn_1")


AppendFn = Callable[[Append], Awaitable[Committed]]


async def _drive(append: AppendFn, appenders: int, total: int) -> float:
    """Create one session per appender, then time *total* single-event appends."""
    for i in range(appenders):
        await append(Append(session_id=f"ses_{i}", session=_session(i)))
    each = max(1, total // appenders)

    async def appender(i: int) -> None:
        sid = f"ses_{i}"
        for n in range(each):
            await append(Append(session_id=sid, events=(_event(n),)))

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(appenders):
            nursery.start_soon(appender, i)
    return each * appenders / (time.perf_counter() - start)


async def run_store(db: Path, appenders: int, total: int, max_batch: int) -> float:
    async with open_sqlite_store(db, max_batch=max_batch) as store:
        return await _drive(store.append, appenders, total)


class ThreadWriter:
    """The baseline: group commit through ``trio.to_thread`` and plain sqlite3."""

    def __init__(self, conn: sqlite3.Connection, max_batch: int) -> None:
        self._conn = conn
        self._max_batch = max_batch
        self._send, self._receive = trio.open_memory_channel[
            tuple[Append, trio.Event, list[Committed]]
        ](1024)
        self._last_seqs: dict[str, int] = {}
        self._sessions: dict[str, Session] = {}

    async def append(self, append: Append) -> Committed:
        done = trio.Event()
        box: list[Committed] = []
        await self._send.send((append, done, box))
        await done.wait()
        return box[0]

    async def run(self) -> None:
        async for first in self._receive:
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            appends = [a for a, _, _ in batch]
            touched = {a.session_id for a in appends}
            known = Known(
                seqs={s: self._last_seqs[s] for s in touched if s in self._last_seqs},
                sessions={s: self._sessions[s] for s in touched if s in self._sessions},
            )
            with trio.CancelScope(shield=True):
                result = await trio.to_thread.run_sync(
                    commit_batch, self._conn, appends, known, now()
                )
            self._last_seqs.update(result.last_seqs)
            self._sessions.update(result.sessions)
            for (_, done, box), outcome in zip(batch, result.outcomes, strict=True):
                assert isinstance(outcome, Committed)
                box.append(outcome)
                done.set()

    def close(self) -> None:
        self._send.close()


def _connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    configure(conn, "normal", 5000)
    return conn


async def run_to_thread(db: Path, appenders: int, total: int, max_batch: int) -> float:
    conn = _connect(db)
    writer = ThreadWriter(conn, max_batch)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            rate = await _drive(writer.append, appenders, total)
            writer.close()
        return rate
    finally:
        conn.close()


def run_raw(db: Path, total: int) -> float:
    conn = _connect(db)
    try:
        conn.execute(
            "INSERT INTO sessions (id, owner, title, created_at, updated_at, current_agent,"
            " deleted) VALUES ('ses_0', 'bench', 't', 0, 0, 'coder', 0)"
        )
        rows = [
            ("ses_0", n, "text.delta", now(), "turn_1", f'{{"text":"a token or two ","n":{n}}}')
            for n in range(1, total + 1)
        ]
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
        return total / (time.perf_counter() - start)
    finally:
        conn.close()


async def store_read_costs(db: Path) -> tuple[float, float]:
    """Microseconds per read through the store: wall, and this process's CPU."""
    async with open_sqlite_store(db) as store:
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(CROSSINGS):
            await store.get_turn("tur_missing")
        wall_us = (time.perf_counter() - start) / CROSSINGS * 1e6
        cpu_us = (time.process_time() - cpu) / CROSSINGS * 1e6
    return wall_us, cpu_us


async def crossing_costs(db: Path) -> tuple[float, float]:
    """Microseconds per ``SELECT 1``: via the bridge, and via trio.to_thread."""
    conn = sqlite3.connect(db, check_same_thread=False)
    try:
        start = time.perf_counter()
        for _ in range(CROSSINGS):
            await trio.to_thread.run_sync(lambda: conn.execute("SELECT 1").fetchall())
        thread_us = (time.perf_counter() - start) / CROSSINGS * 1e6
    finally:
        conn.close()

    async with trio_asyncio.open_loop() as loop:

        async def connect() -> aiosqlite.Connection:
            return await aiosqlite.connect(db)

        aconn = await loop.run_aio_coroutine(connect())

        async def select() -> Iterable[sqlite3.Row]:
            return await aconn.execute_fetchall("SELECT 1")

        async def close() -> None:
            await aconn.close()

        try:
            start = time.perf_counter()
            for _ in range(CROSSINGS):
                await loop.run_aio_coroutine(select())
            bridge_us = (time.perf_counter() - start) / CROSSINGS * 1e6
        finally:
            await loop.run_aio_coroutine(close())
    return bridge_us, thread_us


def machine() -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    return [
        f"machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"trio {version('trio')}, trio-asyncio {version('trio-asyncio')}, "
        f"aiosqlite {version('aiosqlite')}",
        f"database dir: {tempfile.gettempdir()}, WAL, synchronous=NORMAL; medians of {RUNS} runs",
    ]


async def median_of(
    label: str, run: Callable[[Path], Awaitable[float]], results: dict[str, float]
) -> float:
    rates: list[float] = []
    for _ in range(RUNS):
        with tempfile.TemporaryDirectory() as tmp:
            rates.append(await run(Path(tmp) / "b4.db"))
    results[label] = statistics.median(rates)
    print(f"  {label:<36} {results[label]:>10,.0f} events/s", file=sys.stderr, flush=True)
    return results[label]


async def main() -> None:
    for line in machine():
        print(line)
    results: dict[str, float] = {}
    for n in APPENDERS:
        await median_of(f"store group N={n}", partial(_store, n, GROUP_EVENTS, 1024), results)
        await median_of(f"store per-event N={n}", partial(_store, n, SINGLE_EVENTS, 1), results)
        await median_of(f"to_thread group N={n}", partial(_thread, n, GROUP_EVENTS, 1024), results)
        await median_of(
            f"to_thread per-event N={n}", partial(_thread, n, SINGLE_EVENTS, 1), results
        )

    async def raw(db: Path) -> float:
        return run_raw(db, RAW_EVENTS)

    ceiling = await median_of("raw sqlite3, one transaction", raw, results)
    with tempfile.TemporaryDirectory() as tmp:
        bridge_us, thread_us = await crossing_costs(Path(tmp) / "x.db")
        read_wall_us, read_cpu_us = await store_read_costs(Path(tmp) / "read.db")

    print()
    print(
        "| appenders | group commit | one txn per event | group / per-event |"
        " to_thread group | to_thread per-event | bridge ratio group | bridge ratio per-event |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in APPENDERS:
        group = results[f"store group N={n}"]
        single = results[f"store per-event N={n}"]
        t_group = results[f"to_thread group N={n}"]
        t_single = results[f"to_thread per-event N={n}"]
        print(
            f"| {n:,} | {group:,.0f} | {single:,.0f} | {group / single:.1f}x | {t_group:,.0f} |"
            f" {t_single:,.0f} | {group / t_group:.2f} | {single / t_single:.2f} |"
        )
    print()
    print(f"raw sqlite3, {RAW_EVENTS:,} inserts in one transaction: {ceiling:,.0f} events/s")
    print(
        f"one round trip (SELECT 1): aiosqlite via trio-asyncio {bridge_us:.0f} us,"
        f" trio.to_thread + sqlite3 {thread_us:.0f} us ({bridge_us / thread_us:.2f}x)"
    )
    print(
        f"one read through the store (get_turn, a missing id): {read_wall_us:.0f} us,"
        f" {read_cpu_us:.0f} us of CPU"
    )


async def _store(n: int, total: int, max_batch: int, db: Path) -> float:
    return await run_store(db, n, total, max_batch)


async def _thread(n: int, total: int, max_batch: int, db: Path) -> float:
    return await run_to_thread(db, n, total, max_batch)


if __name__ == "__main__":
    trio.run(main)

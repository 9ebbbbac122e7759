"""B4 on PostgreSQL: committed events/s, group commit vs one transaction per event; drivers.

Run: ``python -m bench.b4_postgres [--dsn URL] [--runs 3]
[--part store,drivers,notify]`` (about 5 minutes). ``--dsn`` (else
``$AGENT_RUNTIME_BENCH_POSTGRES``, else the local development server) must name
a server on this machine: its CPU is read from ``/proc``. Every run uses a fresh
schema (dropped afterwards); the variants alternate run by run, so each
median's baseline comes from the same minutes.

``store``: B4's workload (``bench.b4_persistence._drive``): 1, 100 or 1,000
concurrent appenders, one session each, single-event ``text.delta`` appends,
each awaited until committed, through the real PostgreSQL store
(``open_postgres_store``: psycopg's sync API, the whole batch transaction as one
``trio.to_thread`` crossing, fenced by leases, one NOTIFY per session written)
with ``max_batch=1024`` (group commit, the default) and ``max_batch=1`` (one
transaction per event); and, in the same run, the SQLite store the same two ways
(a file under ``/tmp``, WAL, ``synchronous=NORMAL``) as the reference.

``drivers``: the raw driver cost, no store: one batch transaction of N
``INSERT``s and ``COMMIT`` per call, from 1 or 16 concurrent trio tasks, each with
its own connection, into a bare events table: N = 1 or 64 rows in one
``executemany``, and 64 rows as 64 single-row ``execute`` calls (a round trip
each: the shape of the store's batch, which makes ~6 statements per append):

- ``psycopg``: the whole transaction as one function in ``trio.to_thread.run_sync``
  (the store's design);
- ``asyncpg``: the same transaction as one coroutine per batch through
  ``trio_asyncio`` (``loop.run_aio_coroutine``), i.e. on the asyncio loop that
  runs inside trio's thread. Skipped, saying so, if asyncpg is not installed
  (``pip install asyncpg``: measurement only, not a dependency).

For each: rows/s, the bench process's CPU per batch (all threads, and trio's
thread alone: what a driver costs the event loop) and the server's CPU per batch.

``notify``: commits/s of one-row ``INSERT`` + ``COMMIT`` transactions from 1 or 16
connections, with and without a ``pg_notify`` in each (as every batch of the store
that writes events has): what bounds the commit rate of many writers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol

import trio
import trio_asyncio

from sessions import open_postgres_store

from . import b4_persistence as b4
from ._common import (
    cpu_seconds,
    machine_lines,
    note,
    own_cpu_seconds,
    pg_schema,
    postgres_cpu_probe,
    postgres_dsn,
)

APPENDERS = (1, 100, 1000)
GROUP_EVENTS = {1: 3_000, 100: 20_000, 1000: 20_000}  # per run, max_batch=1024
SINGLE_EVENTS = 3_000  # per run, max_batch=1
# (rows per batch, executemany?): 1 and 64 rows with executemany, and 64 rows as 64
# single-row execute() calls (a round trip each, as the store's batch does).
SHAPES = ((1, True), (64, True), (64, False))
CONCURRENCY = (1, 16)
ROWS = {(1, True): 3_000, (64, True): 128_000, (64, False): 16_000}  # rows per run

# The store's renewal (every lease_ttl / 3: one UPDATE of all held lease rows, on
# a reader connection) and a batch (SELECT ... FOR UPDATE of its sessions' lease
# rows, in append order) lock the same rows in different orders: with 100 or
# 1,000 sessions they deadlock (40P01), and PostgreSQL may abort the batch, whose
# appends then fail. Until the store orders its locks, the bench keeps renewals
# out of the measured runs (--lease-ttl 5, the default TTL, shows it).
LEASE_TTL = 3600.0

TABLE = """
CREATE TABLE raw_events (
    session_id TEXT NOT NULL, seq BIGINT NOT NULL, type TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL, turn_id TEXT, data TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
)"""
PSYCOPG_INSERT = "INSERT INTO raw_events VALUES (%s, %s, %s, %s, %s, %s)"
ASYNCPG_INSERT = "INSERT INTO raw_events VALUES ($1, $2, $3, $4, $5, $6)"
Row = tuple[str, int, str, float, str, str]


# -- the store ------------------------------------------------------------------------


async def pg_store(
    base: str, appenders: int, total: int, max_batch: int, lease_ttl: float
) -> tuple[float, float]:
    """(committed events/s, PostgreSQL server CPU µs per event) of one run."""
    with pg_schema(base) as (dsn, _):
        server_cpu = postgres_cpu_probe(dsn)
        async with open_postgres_store(dsn, max_batch=max_batch, lease_ttl=lease_ttl) as store:
            before = server_cpu()
            rate = await b4._drive(store.append, appenders, total)
            used = server_cpu() - before
    events = max(1, total // appenders) * appenders
    return rate, used / events * 1e6


async def sqlite_store(appenders: int, total: int, max_batch: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        return await b4.run_store(Path(tmp) / "b4.db", appenders, total, max_batch), 0.0


async def store_part(base: str, runs: int, ttl: float) -> None:
    rates: dict[tuple[str, int], list[float]] = {}
    server: dict[tuple[str, int], list[float]] = {}
    variants: list[tuple[str, Callable[[int], Awaitable[tuple[float, float]]]]] = [
        ("pg group", lambda n: pg_store(base, n, GROUP_EVENTS[n], 1024, ttl)),
        ("pg per-event", lambda n: pg_store(base, n, SINGLE_EVENTS, 1, ttl)),
        ("sqlite group", lambda n: sqlite_store(n, GROUP_EVENTS[n], 1024)),
        ("sqlite per-event", lambda n: sqlite_store(n, SINGLE_EVENTS, 1)),
    ]
    for number in range(runs):
        for n in APPENDERS:
            order = variants if number % 2 == 0 else variants[::-1]
            for label, run in order:
                rate, cpu_us = await run(n)
                rates.setdefault((label, n), []).append(rate)
                server.setdefault((label, n), []).append(cpu_us)
                note(f"run {number + 1} N={n} {label}: {rate:,.0f} events/s, pg {cpu_us:.0f} µs/ev")

    def cell(label: str, n: int) -> str:
        values = rates[(label, n)]
        return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"

    def med(label: str, n: int) -> float:
        return statistics.median(rates[(label, n)])

    print(f"Committed events/s, medians of {runs} runs (min-max):")
    print()
    print(
        "| appenders | PG group commit | PG one txn per event | PG group / per-event"
        " | SQLite group commit | SQLite one txn per event | PG / SQLite, group"
        " | PG / SQLite, per-event | PG server CPU µs/event, group | per-event |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in APPENDERS:
        pg_cpu = statistics.median(server[("pg group", n)])
        pg_cpu_single = statistics.median(server[("pg per-event", n)])
        print(
            f"| {n:,} | {cell('pg group', n)} | {cell('pg per-event', n)}"
            f" | {med('pg group', n) / med('pg per-event', n):.1f}x"
            f" | {cell('sqlite group', n)} | {cell('sqlite per-event', n)}"
            f" | {med('pg group', n) / med('sqlite group', n):.2f}"
            f" | {med('pg per-event', n) / med('sqlite per-event', n):.2f}"
            f" | {pg_cpu:.0f} | {pg_cpu_single:.0f} |"
        )
    print(flush=True)


# -- the drivers ----------------------------------------------------------------------


class AsyncpgConnection(Protocol):
    """The few asyncpg methods used here (asyncpg ships no type hints: this is the
    boundary; its module is imported dynamically, so its functions are ``Any``)."""

    def transaction(self) -> AbstractAsyncContextManager[object]: ...

    async def execute(self, query: str, *args: object) -> str: ...

    async def executemany(self, command: str, args: Iterable[Sequence[object]]) -> None: ...

    async def close(self) -> None: ...


def load_asyncpg() -> Any | None:
    """The asyncpg module (untyped: ``Any``), or ``None`` when it is not installed."""
    try:
        return importlib.import_module("asyncpg")
    except ImportError:
        return None


def _rows(worker: int, first: int, size: int) -> list[Row]:
    data = '{"message_id":"msg_1","text":"a token or two "}'
    return [
        (f"ses_{worker}", seq, "text.delta", time.time(), "turn_1", data)
        for seq in range(first, first + size)
    ]


class Measure:
    """Wall time and CPU (this process, trio's thread, the server) of one run."""

    def __init__(self, server_cpu: Callable[[], float]) -> None:
        self._server_cpu = server_cpu
        self._tid = threading.get_native_id()
        self._start = (time.perf_counter(), own_cpu_seconds(), self._trio(), server_cpu())

    def _trio(self) -> float:
        return cpu_seconds(os.getpid(), self._tid)

    def done(self) -> tuple[float, float, float, float]:
        """Seconds, and CPU seconds of the process, of trio's thread, of the server."""
        now = (time.perf_counter(), own_cpu_seconds(), self._trio(), self._server_cpu())
        wall, proc, trio_thread, server = (b - a for a, b in zip(self._start, now, strict=True))
        return wall, proc, trio_thread, server


Sample = tuple[float, float, float, float]  # rows/s, µs per batch: process, trio thread, server


def _sample(measured: tuple[float, float, float, float], batches: int, size: int) -> Sample:
    wall, proc, trio_thread, server = measured
    per = 1e6 / batches
    return batches * size / wall, proc * per, trio_thread * per, server * per


def _label(shape: tuple[int, bool]) -> str:
    return f"{shape[0]}" if shape[1] else f"{shape[0]} x execute"


async def psycopg_run(dsn: str, shape: tuple[int, bool], workers: int, batches: int) -> Sample:
    size, many = shape
    import psycopg

    conns = [psycopg.connect(dsn, autocommit=True) for _ in range(workers)]
    try:
        conns[0].execute(TABLE)

        def transaction(conn: psycopg.Connection[Any], rows: list[Row]) -> None:
            with conn.transaction(), conn.cursor() as cursor:
                if many:
                    cursor.executemany(PSYCOPG_INSERT, rows)
                else:
                    for row in rows:
                        cursor.execute(PSYCOPG_INSERT, row)

        async def worker(i: int) -> None:
            for b in range(batches // workers):
                rows = _rows(i, b * size + 1, size)
                await trio.to_thread.run_sync(transaction, conns[i], rows)

        measure = Measure(postgres_cpu_probe(dsn))
        async with trio.open_nursery() as nursery:
            for i in range(workers):
                nursery.start_soon(worker, i)
        return _sample(measure.done(), batches // workers * workers, size)
    finally:
        for conn in conns:
            conn.close()


async def asyncpg_run(
    asyncpg: Any, dsn: str, schema: str, shape: tuple[int, bool], workers: int, batches: int
) -> Sample:
    size, many = shape
    base = dsn.split("?", 1)[0]  # asyncpg takes the search_path as a server setting
    async with trio_asyncio.open_loop() as loop:

        async def connect() -> AsyncpgConnection:
            conn: AsyncpgConnection = await asyncpg.connect(
                base, server_settings={"search_path": schema}
            )
            return conn

        conns = [await loop.run_aio_coroutine(connect()) for _ in range(workers)]
        try:
            await loop.run_aio_coroutine(conns[0].execute(TABLE))

            async def transaction(conn: AsyncpgConnection, rows: list[Row]) -> None:
                async with conn.transaction():
                    if many:
                        await conn.executemany(ASYNCPG_INSERT, rows)
                    else:
                        for row in rows:
                            await conn.execute(ASYNCPG_INSERT, *row)

            async def worker(i: int) -> None:
                for b in range(batches // workers):
                    rows = _rows(i, b * size + 1, size)
                    await loop.run_aio_coroutine(transaction(conns[i], rows))

            measure = Measure(postgres_cpu_probe(dsn))
            async with trio.open_nursery() as nursery:
                for i in range(workers):
                    nursery.start_soon(worker, i)
            return _sample(measure.done(), batches // workers * workers, size)
        finally:
            for conn in conns:
                await loop.run_aio_coroutine(conn.close())


async def drivers_part(base: str, runs: int) -> None:
    asyncpg = load_asyncpg()
    if asyncpg is None:
        print("drivers: asyncpg is not installed, skipped (.venv/bin/pip install asyncpg)")
        print()
        return
    results: dict[tuple[str, tuple[int, bool], int], list[Sample]] = {}
    for number in range(runs):
        for shape in SHAPES:
            for workers in CONCURRENCY:
                batches = ROWS[shape] // shape[0]
                order = ("psycopg", "asyncpg") if number % 2 == 0 else ("asyncpg", "psycopg")
                for driver in order:
                    with pg_schema(base) as (dsn, schema):
                        if driver == "psycopg":
                            sample = await psycopg_run(dsn, shape, workers, batches)
                        else:
                            sample = await asyncpg_run(
                                asyncpg, dsn, schema, shape, workers, batches
                            )
                    results.setdefault((driver, shape, workers), []).append(sample)
                    note(
                        f"run {number + 1} {driver} batch={_label(shape)} concurrent={workers}: "
                        f"{sample[0]:,.0f} rows/s, µs/batch process {sample[1]:.0f} "
                        f"trio thread {sample[2]:.0f} server {sample[3]:.0f}"
                    )

    Shape = tuple[int, bool]

    def med(driver: str, shape: Shape, workers: int, field: int) -> float:
        return statistics.median(s[field] for s in results[(driver, shape, workers)])

    def spread(driver: str, shape: Shape, workers: int) -> str:
        rates = [s[0] for s in results[(driver, shape, workers)]]
        return f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"

    print(
        f"Drivers: one transaction of N INSERTs (executemany, or N x execute) + COMMIT;"
        f" medians of {runs}:"
    )
    print()
    print(
        "| N per batch | concurrent | psycopg in a thread rows/s | asyncpg via trio-asyncio"
        " rows/s | asyncpg / psycopg | process CPU µs/batch, psycopg | asyncpg"
        " | trio thread CPU µs/batch, psycopg | asyncpg | server CPU µs/batch, psycopg"
        " | asyncpg |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for shape in SHAPES:
        for workers in CONCURRENCY:
            ratio = med("asyncpg", shape, workers, 0) / med("psycopg", shape, workers, 0)
            cpu = " | ".join(
                f"{med('psycopg', shape, workers, f):.0f} | {med('asyncpg', shape, workers, f):.0f}"
                for f in (1, 2, 3)
            )
            print(
                f"| {_label(shape)} | {workers} | {spread('psycopg', shape, workers)}"
                f" | {spread('asyncpg', shape, workers)} | {ratio:.2f} | {cpu} |"
            )
    print(flush=True)


# -- commits with and without NOTIFY ----------------------------------------------------

NOTIFY_COMMITS = 6_000  # per run


async def commits_run(dsn: str, workers: int, notify: bool) -> float:
    """Transactions/s of one-row INSERT (+ pg_notify) + COMMIT from *workers* connections."""
    import psycopg

    conns = [psycopg.connect(dsn, autocommit=True) for _ in range(workers)]
    try:
        conns[0].execute(TABLE)

        def transactions(i: int) -> None:  # a worker thread's whole loop: no trio hop each
            for seq in range(1, NOTIFY_COMMITS // workers + 1):
                row = _rows(i, seq, 1)[0]
                with conns[i].transaction():
                    conns[i].execute(PSYCOPG_INSERT, row)
                    if notify:
                        conns[i].execute("SELECT pg_notify('bench_b4', %s)", (f"{i} {seq}",))

        async def worker(i: int) -> None:
            await trio.to_thread.run_sync(transactions, i)

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(workers):
                nursery.start_soon(worker, i)
        return NOTIFY_COMMITS // workers * workers / (time.perf_counter() - start)
    finally:
        for conn in conns:
            conn.close()


async def notify_part(base: str, runs: int) -> None:
    """PostgreSQL serialises the commits of notifying transactions (a database-wide
    lock held through the commit's WAL flush): their rate, against plain commits."""
    rates: dict[tuple[int, bool], list[float]] = {}
    for number in range(runs):
        for workers in CONCURRENCY:
            for notify in (False, True) if number % 2 == 0 else (True, False):
                with pg_schema(base) as (dsn, _):
                    rate = await commits_run(dsn, workers, notify)
                rates.setdefault((workers, notify), []).append(rate)
                note(f"run {number + 1} commits {workers=} {notify=}: {rate:,.0f}/s")
    print(f"Commits/s of INSERT + COMMIT, with and without pg_notify; medians of {runs}:")
    print()
    print("| concurrent | plain commits/s | with NOTIFY commits/s | NOTIFY / plain |")
    print("|---:|---:|---:|---:|")
    for workers in CONCURRENCY:
        plain, notified = rates[(workers, False)], rates[(workers, True)]
        ratio = statistics.median(notified) / statistics.median(plain)
        print(
            f"| {workers} | {statistics.median(plain):,.0f} ({min(plain):,.0f}-{max(plain):,.0f})"
            f" | {statistics.median(notified):,.0f} ({min(notified):,.0f}-{max(notified):,.0f})"
            f" | {ratio:.2f} |"
        )
    print(flush=True)


def server_line(base: str) -> str:
    import psycopg

    names = ("server_version", "fsync", "synchronous_commit", "wal_sync_method", "shared_buffers")
    with psycopg.connect(base) as conn:
        rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name = ANY(%s) ORDER BY name",
            (list(names),),
        ).fetchall()
    asyncpg = load_asyncpg()
    drivers = f"psycopg {psycopg.__version__}, asyncpg {getattr(asyncpg, '__version__', '-')}"
    return "postgresql: " + ", ".join(f"{k}={v}" for k, v in rows) + f"; {drivers}"


async def main(base: str, runs: int, parts: list[str], lease_ttl: float) -> None:
    print("B4 on PostgreSQL: group commit vs one transaction per event; drivers")
    for line in [*machine_lines(), server_line(base)]:
        print(line)
    print(f"command: python -m bench.b4_postgres {' '.join(sys.argv[1:])}; medians of {runs} runs")
    print(flush=True)
    if "store" in parts:
        await store_part(base, runs, lease_ttl)
    if "drivers" in parts:
        await drivers_part(base, runs)
    if "notify" in parts:
        await notify_part(base, runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dsn", help="PostgreSQL server (a local one: its CPU is read)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--part", default="store,drivers,notify", help="parts to run")
    parser.add_argument(
        "--lease-ttl", type=float, default=LEASE_TTL, help="the PG store's lease TTL (s)"
    )
    options = parser.parse_args()
    parts = options.part.split(",")
    trio.run(main, postgres_dsn(options.dsn), options.runs, parts, options.lease_ttl)

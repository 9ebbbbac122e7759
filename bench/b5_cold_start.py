"""B5 cold start with a large database: 10,000 sessions x 50 events.

Run: ``python -m bench.b5_cold_start [--sessions 10000] [--runs 3]``.

The database is written once through the real store (``build_database``: one
append per completed turn, 5 turns of 10 events per session: user.message,
turn.started, 5 text.delta, message, usage, turn.ended). A reference database
holds 1 session of 50 events. Each run starts ``python -m server serve --db FILE``
on each database and measures:

- spawn → the ``listening on`` line (interpreter start, imports, opening the
  store, recovery of active turns, binding);
- the first ``GET /v1/sessions/{id}`` (a fresh HTTP connection), then the first
  ``GET /v1/sessions/{id}/events`` of that session (all 50 events), then
  ``GET /v1/sessions/{id}/events`` of another session, then ``GET /v1/sessions``
  (first page, newest first);
- the server's RSS after those requests.

Plus, for scale, ``python -c pass`` (interpreter start and exit) and the time
``import server`` takes inside a fresh interpreter. The page cache is warm
(the file was just written; runs repeat), which is the usual restart case.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import attrs
import trio

from ._common import (
    REPO,
    build_database,
    http_client,
    median,
    note,
    open_child,
    print_header,
    server_args,
    server_env,
)

TURNS = 5
DELTAS = 5  # events per turn = DELTAS + 5
IMPORT_RUNS = 3


@attrs.frozen
class Result:
    listening: float
    first_session: float
    first_events: float
    other_events: float
    list_page: float
    rss_mib: float


async def run(db: Path, sessions: int) -> Result:
    async with open_child("server", server_args(str(db)), server_env()) as server:
        first_id, other_id = f"ses_{sessions // 2:07d}", f"ses_{sessions // 3:07d}"
        async with http_client(server.url, 1) as http:
            started = time.perf_counter()
            response = await http.get(f"/v1/sessions/{first_id}")
            first_session = time.perf_counter() - started
            assert response.status_code == 200, response.text
            started = time.perf_counter()
            response = await http.get(f"/v1/sessions/{first_id}/events")
            first_events = time.perf_counter() - started
            events = response.json()["events"]
            assert len(events) == TURNS * (DELTAS + 5), len(events)
            started = time.perf_counter()
            response = await http.get(f"/v1/sessions/{other_id}/events")
            other_events = time.perf_counter() - started
            assert response.status_code == 200, response.text
            started = time.perf_counter()
            response = await http.get("/v1/sessions")
            list_page = time.perf_counter() - started
            assert response.status_code == 200, response.text
        return Result(
            listening=server.ready_after,
            first_session=first_session,
            first_events=first_events,
            other_events=other_events,
            list_page=list_page,
            rss_mib=server.rss_kib() / 1024,
        )


def _mib(folder: Path, pattern: str) -> float:
    return sum(p.stat().st_size for p in folder.glob(pattern)) / 1024 / 1024


async def startup_costs() -> tuple[float, float]:
    """Medians of: ``python -c pass`` (spawn to exit) and ``import server`` (in-process)."""
    bare: list[float] = []
    imports: list[float] = []
    code = "import time; t = time.perf_counter(); import server; print(time.perf_counter() - t)"
    for _ in range(IMPORT_RUNS):
        started = time.perf_counter()
        await trio.run_process([sys.executable, "-c", "pass"], cwd=REPO)
        bare.append(time.perf_counter() - started)
        done = await trio.run_process([sys.executable, "-c", code], cwd=REPO, capture_stdout=True)
        imports.append(float(done.stdout.decode().strip()))
    return median(bare), median(imports)


async def main(sessions: int, runs: int) -> None:
    print_header(
        f"B5 cold start: {sessions:,} sessions x {TURNS * (DELTAS + 5)} events",
        "bench.b5_cold_start",
        runs,
    )
    with tempfile.TemporaryDirectory(prefix="b5-") as tmp:
        large, small = Path(tmp) / "large.db", Path(tmp) / "small.db"
        seconds = await build_database(large, sessions, TURNS, DELTAS)
        size = _mib(Path(tmp), "large.db*")
        print(
            f"database: {sessions:,} sessions, {sessions * TURNS * (DELTAS + 5):,} events, "
            f"{size:.0f} MiB; written through the store in {seconds:.1f} s"
        )
        await build_database(small, 1, TURNS, DELTAS)
        table: dict[str, list[Result]] = {"1 session": [], f"{sessions:,} sessions": []}
        for number in range(runs):
            for label, db, count in (
                ("1 session", small, 1),
                (f"{sessions:,} sessions", large, sessions),
            ):
                result = await run(db, count)
                table[label].append(result)
                note(
                    f"run {number + 1} {label}: listening after {result.listening:.3f} s, "
                    f"first GET session {result.first_session * 1000:.1f} ms, "
                    f"first GET events {result.first_events * 1000:.1f} ms, "
                    f"other events {result.other_events * 1000:.1f} ms, "
                    f"list {result.list_page * 1000:.1f} ms, RSS {result.rss_mib:.0f} MiB"
                )
    bare, imports = await startup_costs()
    print(f"for scale: python -c pass {bare:.3f} s; import server (in-process) {imports:.3f} s\n")
    print(
        "| database | spawn → listening s | first GET session ms | first GET events ms "
        "| GET events, 2nd session ms | GET /v1/sessions ms | RSS MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, results in table.items():

        def med(key: str, scale: float = 1000.0, results: list[Result] = results) -> str:
            return f"{median([float(getattr(r, key)) for r in results]) * scale:,.1f}"

        print(
            f"| {label} | {median([r.listening for r in results]):.3f} "
            f"| {med('first_session')} | {med('first_events')} | {med('other_events')} "
            f"| {med('list_page')} | {med('rss_mib', 1.0)} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    trio.run(main, options.sessions, options.runs)

"""B3 idle: resident memory per idle WebSocket connection, server vs the framework baseline.

Run: ``python -m bench.b3_idle [--connections 1000,10000] [--runs 3]``.

For each N a SQLite database with N sessions (no events) is written once through
the store (``bench._common.build_database``). Each run then, against a fresh child:

- ``server``: ``python -m server serve --db <that file>``; N WebSockets, one per
  session, each sending ``hello`` and waiting for ``sync`` (a subscribed IDE
  that then does nothing);
- ``baseline``: ``bench.baseline_app``; N WebSockets to ``/ws``, each ``hello``
  → ``sync``, then idle.

Both first get a warm-up of 20 connections (opened and closed), so lazily
imported code and first-use caches are not counted. Reported: (VmRSS with N
open - VmRSS before) / N, in KiB, after a settle time of 3 s; and the child's
CPU during those 3 s. The clients keep reading (heartbeats) while idle. The
open-files limit is raised with ``resource.setrlimit`` (children inherit it).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from ._common import (
    STEP,
    Child,
    build_database,
    hello,
    median,
    note,
    open_child,
    own_cpu_seconds,
    parse_counts,
    parse_frame,
    print_header,
    raise_nofile,
    server_args,
    server_env,
    ws_url,
)

OPEN_CONCURRENCY = 64
WARM_UP = 20
SETTLE = 3.0


@attrs.frozen
class Result:
    connections: int
    rss_before_mib: float
    rss_after_mib: float
    open_seconds: float
    idle_cpu_percent: float
    client_cpu: float

    @property
    def kib_per_connection(self) -> float:
        return (self.rss_after_mib - self.rss_before_mib) * 1024 / self.connections


@attrs.define
class Crowd:
    """N idle clients: all connected → :attr:`all_ready`; :attr:`release` ends them."""

    size: int
    ready: int = 0
    all_ready: trio.Event = attrs.field(factory=trio.Event)
    release: trio.Event = attrs.field(factory=trio.Event)


async def _drain(ws: WebSocketConnection) -> None:
    while True:
        await ws.get_message()


async def _idle_client(url: str, crowd: Crowd, gate: trio.Semaphore) -> None:
    await gate.acquire()
    holding = True
    try:
        async with open_websocket_url(url, connect_timeout=STEP, disconnect_timeout=STEP) as ws:
            await ws.send_message(hello())
            with trio.fail_after(STEP):
                while parse_frame(await ws.get_message()).get("type") != "sync":
                    pass
            gate.release()
            holding = False
            crowd.ready += 1
            if crowd.ready == crowd.size:
                crowd.all_ready.set()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_drain, ws)
                await crowd.release.wait()
                nursery.cancel_scope.cancel()
            # Close handshakes go through the gate too (10,000 at once time out).
            await gate.acquire()
            holding = True
    finally:
        if holding:
            gate.release()


async def _crowd(urls: list[str], child: Child, result: list[Result]) -> None:
    """Connect *urls* (one client each), measure *child*, then disconnect them all."""
    crowd = Crowd(len(urls))
    gate = trio.Semaphore(OPEN_CONCURRENCY)
    async with trio.open_nursery() as nursery:
        started = time.perf_counter()
        own0 = own_cpu_seconds()
        for url in urls:
            nursery.start_soon(_idle_client, url, crowd, gate)
        with trio.fail_after(STEP + len(urls) * 0.05):
            await crowd.all_ready.wait()
        opened = time.perf_counter() - started
        cpu0 = child.cpu()
        await trio.sleep(SETTLE)
        idle_cpu = (child.cpu() - cpu0) / SETTLE * 100
        result.append(
            Result(
                connections=len(urls),
                rss_before_mib=0.0,
                rss_after_mib=child.rss_kib() / 1024,
                open_seconds=opened,
                idle_cpu_percent=idle_cpu,
                client_cpu=own_cpu_seconds() - own0,
            )
        )
        crowd.release.set()
        nursery.cancel_scope.deadline = trio.current_time() + STEP + len(urls) * 0.05


async def measure(child: Child, url_for: Callable[[int], str], n: int) -> Result:
    warm: list[Result] = []
    await _crowd([url_for(i) for i in range(WARM_UP)], child, warm)
    await trio.sleep(1)
    before = child.rss_kib() / 1024
    out: list[Result] = []
    await _crowd([url_for(i) for i in range(n)], child, out)
    return attrs.evolve(out[0], rss_before_mib=before)


async def run_server(db: Path, n: int) -> Result:
    async with open_child("server", server_args(str(db)), server_env()) as server:
        return await measure(server, lambda i: ws_url(server.url, f"ses_{i:07d}"), n)


async def run_baseline(n: int) -> Result:
    async with open_child("baseline", ["bench.baseline_app"]) as app:
        url = app.url.replace("http://", "ws://", 1) + "/ws"
        return await measure(app, lambda i: url, n)


async def main(counts: list[int], runs: int) -> None:
    limit = raise_nofile(2 * max(counts) + 1024)
    print_header("B3 idle WebSocket connections", "bench.b3_idle", runs)
    print(f"open-files soft limit: {limit}\n")
    table: dict[tuple[int, str], list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="b3-") as tmp:
        for n in counts:
            db = Path(tmp) / f"b3-{n}.db"
            seconds = await build_database(db, n, turns=0, deltas=0)
            note(f"built {db.name}: {n:,} sessions in {seconds:.1f} s")
            for number in range(runs):
                for kind in ("server", "baseline"):
                    result = await (run_server(db, n) if kind == "server" else run_baseline(n))
                    table.setdefault((n, kind), []).append(result)
                    note(
                        f"N={n} run {number + 1} {kind}: {result.kib_per_connection:.1f} KiB/conn "
                        f"(RSS {result.rss_before_mib:.1f} → {result.rss_after_mib:.1f} MiB), "
                        f"opened in {result.open_seconds:.1f} s, "
                        f"idle CPU {result.idle_cpu_percent:.1f} %"
                    )
    print(
        "| connections | process | KiB per idle connection | RSS before MiB | RSS with N open MiB "
        "| idle CPU % | opened in s | server / baseline |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for n in counts:
        base = median([r.kib_per_connection for r in table[(n, "baseline")]])
        for kind in ("server", "baseline"):
            results = table[(n, kind)]
            per = median([r.kib_per_connection for r in results])
            ratio = f"{per / base:.1f}x" if kind == "server" else "-"
            print(
                f"| {n:,} | {kind} | {per:.1f} "
                f"| {median([r.rss_before_mib for r in results]):.1f} "
                f"| {median([r.rss_after_mib for r in results]):.1f} "
                f"| {median([r.idle_cpu_percent for r in results]):.1f} "
                f"| {median([r.open_seconds for r in results]):.1f} | {ratio} |"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--connections", type=parse_counts, default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    trio.run(main, options.connections, options.runs)

"""B1 streaming: N concurrent sessions, each one turn whose model streams 200 tokens.

Run: ``python -m bench.b1_streaming [--sessions 1,100,1000] [--runs 3]
[--providers scripted,openai[,scripted-memory]] [--tokens 200] [--pace 0] [--profile DIR]``.

``--pace P`` spaces the model's tokens P seconds apart (scripted ``--pace``, the
fake's ``--pace``, the baseline's ``pace``) instead of flat out: added latency
below saturation. ``--profile DIR`` samples the server with py-spy during the
streaming phase and prints the hottest functions (it slows the server down).

For each N and run, in this order (interleaved, so drift on a noisy machine hits
all three alike), each against a fresh child process:

- ``scripted``: ``python -m server serve --db <tmp>/b1.db --llm scripted --pace 0``.
  Latency = client receipt - the ``text.delta``'s ``ts`` (its commit time).
- ``openai``: the same server with ``--llm openai`` against ``bench.fake_llm``
  (its own process) streaming 200 tokens ``t=<emit ns>`` as fast as it can.
  Latency = client receipt - the token's emit time, for every token in a delta.
- ``scripted-memory`` (only when asked for in ``--providers``): ``scripted`` on
  the in-memory store (``--db :memory:``), no SQLite and no thread: what the
  durable log costs, apart from the rest of the pipeline.
- ``baseline``: ``bench.baseline_app`` (quart-trio + hypercorn, nothing else)
  sending ``tokens + 5`` frames per connection (what the server sends per turn
  when it coalesces nothing: user.message, turn.started, 200 text.delta,
  message, usage, turn.ended), each stamped with its send time.

The client (this process) creates N sessions over REST (``{"agent": "ask"}``),
opens N WebSockets (hello, wait for ``sync``), then sends every message at once
and reads until each ``turn.ended`` (below 20 sessions, each session runs
``20 // N`` such turns one after the other, so a run is not over in 20 ms).
Measured over that streaming phase only: durable events/s delivered, model
tokens/s delivered, latency p50/p99, server CPU seconds (``/proc/<pid>/stat``)
and peak RSS (``VmHWM``, start-up included), how busy the server's main (trio)
thread was (its CPU seconds / wall time: near 100 % = saturated, since one
thread runs all Python code but SQLite's), the CPU of the server's other threads
(server minus main: SQLite's, aiosqlite's worker), the fake's and the client's CPU
seconds (to show whether they were the bottleneck), and the store's appends
and transactions (``GET /metrics``: how much group commit batched).
"""

from __future__ import annotations

import argparse
import math
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path

import attrs
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from sessions import dumps

from ._common import (
    STEP,
    Child,
    CpuSample,
    cpu_probe,
    create_sessions,
    fmt_int,
    fmt_ms,
    hello,
    median,
    note,
    open_child,
    parse_counts,
    parse_frame,
    percentile,
    print_header,
    print_profiles,
    profiled,
    raise_nofile,
    server_args,
    server_env,
    store_counts,
    ws_url,
)

STREAM_LIMIT = 300.0  # seconds for one run's streaming phase
OPEN_CONCURRENCY = 64  # WebSocket handshakes in flight at once
MIN_TURNS = 20  # below 20 sessions, each runs 20 // N turns one after the other
STAMP = re.compile(r"t=(\d+)")
KINDS = ("scripted", "openai", "scripted-memory", "baseline")
SERVERS = KINDS[:3]


@attrs.define
class Tally:
    """What the clients of one run saw."""

    sessions: int
    turns: int
    probe: Callable[[], CpuSample]
    events: int = 0
    tokens: int = 0
    latencies: list[float] = attrs.field(factory=list)
    ended: Counter[str] = attrs.field(factory=Counter)
    ready: int = 0
    all_ready: trio.Event = attrs.field(factory=trio.Event)
    go: trio.Event = attrs.field(factory=trio.Event)
    started: float = 0.0
    last: float = 0.0
    cpu_at_start: CpuSample | None = None
    cpu_used: CpuSample | None = None  # from go to the last turn.ended (closing excluded)

    def arrive(self) -> None:
        self.ready += 1
        if self.ready == self.sessions:
            self.all_ready.set()

    def start(self) -> None:
        self.cpu_at_start = self.probe()
        self.started = time.time()
        self.go.set()

    def turn_ended(self, reason: str, received: float) -> None:
        self.ended[reason] += 1
        self.last = max(self.last, received)
        if self.ended.total() == self.sessions * self.turns:
            assert self.cpu_at_start is not None
            self.cpu_used = self.probe() - self.cpu_at_start


@attrs.frozen
class Result:
    events: int
    tokens: int
    seconds: float
    p50: float
    p99: float
    server_cpu: float
    main_cpu: float  # the server's main (trio) thread alone
    peak_rss_mib: float
    fake_cpu: float
    client_cpu: float
    ended: str
    appends: int = 0  # the store's, during streaming (0 for the baseline)
    batches: int = 0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


async def _client(
    url: str, starts: Sequence[str], stamped: bool, tally: Tally, gate: trio.Semaphore
) -> None:
    await gate.acquire()
    holding = True
    try:
        async with open_websocket_url(url, connect_timeout=STEP, disconnect_timeout=5) as ws:
            await ws.send_message(hello())
            with trio.fail_after(STEP):
                while parse_frame(await ws.get_message()).get("type") != "sync":
                    pass
            gate.release()
            holding = False
            tally.arrive()
            await tally.go.wait()
            for start in starts:
                await ws.send_message(start)
                await _read_turn(ws, stamped, tally)
    finally:
        if holding:
            gate.release()


async def _read_turn(ws: WebSocketConnection, stamped: bool, tally: Tally) -> None:
    """Read one turn's events up to its ``turn.ended``."""
    while True:
        raw = await ws.get_message()
        received = time.time()
        frame = parse_frame(raw)
        if "seq" not in frame:
            continue
        tally.events += 1
        kind = frame.get("type")
        if kind == "text.delta":
            text = frame.get("text")
            assert isinstance(text, str)
            if stamped:
                stamps = STAMP.findall(text)
                tally.tokens += len(stamps)
                tally.latencies.extend(received - int(s) / 1e9 for s in stamps)
            else:
                ts = frame.get("ts")
                assert isinstance(ts, float)
                tally.tokens += len(text.split())
                tally.latencies.append(received - ts)
        elif kind == "turn.ended":
            tally.turn_ended(str(frame.get("reason", "?")), received)
            return


async def _stream(urls: list[str], starts: Sequence[str], stamped: bool, tally: Tally) -> None:
    """Open every connection, then start every stream at once; return when all ended.

    Each connection sends *starts* one after the other, each after the previous
    turn's ``turn.ended``.
    """
    gate = trio.Semaphore(OPEN_CONCURRENCY)
    async with trio.open_nursery() as nursery:
        for url in urls:
            nursery.start_soon(_client, url, starts, stamped, tally, gate)
        with trio.fail_after(STEP + len(urls) * 0.1):
            await tally.all_ready.wait()
        tally.start()
        nursery.cancel_scope.deadline = trio.current_time() + STREAM_LIMIT


def _result(tally: Tally, server: Child) -> Result:
    cpu = tally.cpu_used
    assert cpu is not None, "not every turn ended"
    return Result(
        events=tally.events,
        tokens=tally.tokens,
        seconds=tally.last - tally.started,
        p50=percentile(tally.latencies, 50),
        p99=percentile(tally.latencies, 99),
        server_cpu=cpu.server,
        main_cpu=cpu.main,
        peak_rss_mib=server.peak_rss_kib() / 1024,
        fake_cpu=cpu.fake,
        client_cpu=cpu.client,
        ended=",".join(f"{k}={v}" for k, v in sorted(tally.ended.items())),
    )


async def run_server(
    sessions: int, turns: int, provider: str, tokens: int, pace: float, profile: Path | None
) -> Result:
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="b1-")))
        fake: Child | None = None
        if provider == "openai":
            fake_args = ["bench.fake_llm", "--tokens", str(tokens), "--pace", str(pace)]
            fake = await stack.enter_async_context(open_child("fake-llm", fake_args))
            args = server_args(str(tmp / "b1.db"), llm="openai", llm_url=fake.url)
        else:
            db = ":memory:" if provider == "scripted-memory" else str(tmp / "b1.db")
            args = server_args(db, pace=pace)
        server = await stack.enter_async_context(open_child("server", args, server_env()))
        ids = await create_sessions(server.url, sessions, "ask")
        tally = Tally(sessions, turns, cpu_probe(server, fake))
        content = f"stream {tokens} words"
        starts = [
            dumps({"type": "user_message", "id": f"m{t}", "content": content})
            for t in range(1, turns + 1)
        ]
        output = profile / f"server-{provider}-{sessions}-pace{pace:g}.txt" if profile else None
        appends, batches = await store_counts(server.url)
        async with profiled(server.pid, output):
            await _stream([ws_url(server.url, i) for i in ids], starts, provider == "openai", tally)
        appends_after, batches_after = await store_counts(server.url)
        result = _result(tally, server)
        return attrs.evolve(
            result, appends=appends_after - appends, batches=batches_after - batches
        )
    raise AssertionError("unreachable")  # pragma: no cover (mypy: AsyncExitStack may swallow)


async def run_baseline(sessions: int, turns: int, frames: int, pace: float) -> Result:
    async with open_child("baseline", ["bench.baseline_app"]) as app:
        url = app.url.replace("http://", "ws://", 1) + "/ws"
        tally = Tally(sessions, turns, cpu_probe(app))
        starts = [dumps({"type": "stream", "frames": frames, "pace": pace})] * turns
        await _stream([url] * sessions, starts, False, tally)
        return _result(tally, app)


def _med(results: list[Result], key: str) -> float:
    values: list[float] = [float(getattr(r, key)) for r in results]
    return median(values)


def report(table: dict[tuple[int, str], list[Result]], counts: list[int], kinds: list[str]) -> None:
    print(
        "| sessions | run | events/s | tokens/s | frames/s vs baseline | latency p50 ms "
        "| latency p99 ms | server CPU s | other threads CPU s | main thread busy "
        "| CPU µs/token | peak RSS MiB "
        "| fake CPU s "
        "| client CPU s | wall s | turn.ended |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for n in counts:
        base = table.get((n, "baseline"), [])
        base_rate = median([r.events_per_s for r in base]) if base else math.nan
        for kind in kinds:
            results = table.get((n, kind), [])
            if not results:
                continue
            rate = median([r.events_per_s for r in results])
            ratio = (
                "-" if kind == "baseline" or math.isnan(base_rate) else f"{rate / base_rate:.2f}"
            )
            per_token = median([r.server_cpu / r.tokens * 1e6 for r in results])
            busy = median([r.main_cpu / r.seconds for r in results])
            others = median([r.server_cpu - r.main_cpu for r in results])
            print(
                f"| {n:,} | {kind} | {fmt_int(rate)} "
                f"| {fmt_int(median([r.tokens_per_s for r in results]))} | {ratio} "
                f"| {fmt_ms(_med(results, 'p50'))} | {fmt_ms(_med(results, 'p99'))} "
                f"| {_med(results, 'server_cpu'):.2f} | {others:.2f} | {busy:.0%} "
                f"| {per_token:.0f} "
                f"| {_med(results, 'peak_rss_mib'):.0f} "
                f"| {_med(results, 'fake_cpu'):.2f} | {_med(results, 'client_cpu'):.2f} "
                f"| {_med(results, 'seconds'):.2f} | {results[-1].ended} |"
            )


async def main(
    counts: list[int],
    runs: int,
    providers: list[str],
    tokens: int,
    pace: float,
    profile: Path | None,
) -> None:
    raise_nofile(4 * max(counts) + 1024)
    rate = "as fast as possible" if pace <= 0 else f"{pace:g} s apart ({1 / pace:g} tokens/s)"
    title = f"B1 streaming: {tokens} tokens per session, {rate}"
    print_header(title, "bench.b1_streaming", runs)
    kinds = [*providers, "baseline"]
    table: dict[tuple[int, str], list[Result]] = {}
    for n in counts:
        turns = max(1, MIN_TURNS // n)
        for run in range(runs):
            for kind in kinds:
                if kind == "baseline":
                    result = await run_baseline(n, turns, tokens + 5, pace)
                else:
                    result = await run_server(n, turns, kind, tokens, pace, profile)
                table.setdefault((n, kind), []).append(result)
                note(
                    f"N={n} run {run + 1} {kind}: {result.events_per_s:,.0f} events/s, "
                    f"{result.tokens_per_s:,.0f} tokens/s, p50 {result.p50 * 1000:.1f} ms, "
                    f"p99 {result.p99 * 1000:.1f} ms, server CPU {result.server_cpu:.2f} s "
                    f"(other threads {result.server_cpu - result.main_cpu:.2f} s), "
                    f"peak RSS {result.peak_rss_mib:.0f} MiB, fake CPU {result.fake_cpu:.2f} s, "
                    f"client CPU {result.client_cpu:.2f} s, wall {result.seconds:.2f} s, "
                    f"{result.events} events, {result.ended}"
                    + (
                        f", {result.appends:,} appends in {result.batches:,} transactions"
                        if result.batches
                        else ""
                    )
                )
    report(table, counts, kinds)
    if profile is not None:
        print_profiles(profile)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", type=parse_counts, default=[1, 100, 1000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--providers", default="scripted,openai")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument(
        "--pace", type=float, default=0.0, help="seconds between tokens (default 0: flat out)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="directory: sample the server with py-spy during streaming (skews the numbers)",
    )
    options = parser.parse_args()
    providers = [p for p in options.providers.split(",") if p]
    assert all(p in SERVERS for p in providers), providers
    if options.profile is not None:
        options.profile.mkdir(parents=True, exist_ok=True)
    trio.run(
        main,
        options.sessions,
        options.runs,
        providers,
        options.tokens,
        options.pace,
        options.profile,
    )

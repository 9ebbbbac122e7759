"""B10 scale-out: B2's tool loop against 1 replica on SQLite, 1 or 2 replicas on PostgreSQL.

Run: ``python -m bench.b10_replicas [--dsn URL] [--sessions 100] [--turns 4]
[--runs 3] [--variants sqlite,pg1,pg2,pg2-cross] [--lease-ttl S]`` (about 8
minutes). ``--lease-ttl`` sets the replicas' ``AGENT_RUNTIME_LEASE_TTL``: with
the default (5 s) a lease renewal can deadlock with a batch (40P01, see
docs/benchmarks.md, B10), and a run may fail on a refused command. ``--dsn``
(else ``$AGENT_RUNTIME_BENCH_POSTGRES``, else the local development server)
must name a server on this machine (its CPU is read from ``/proc``); each run
uses a fresh schema.

The workload is B2's (``bench.b2_tool_loop``, whose client functions are used
as they are): ``coder`` sessions, each running its turns one after the other,
all sessions at once; every turn makes 3 ``read_file`` calls that the session's
WebSocket client answers, then 5 words (``--llm openai`` against one
``bench.fake_llm --tool-calls 3 --tokens 5`` process). Variants, one fresh set
of processes per run, alternating run by run:

- ``sqlite``: one replica on an SQLite file (B2 as it is);
- ``pg1``: one replica on PostgreSQL;
- ``pg2``: two replicas on one PostgreSQL schema; half the sessions are created
  (REST) and driven (WebSocket) on each;
- ``pg2-cross``: the same two replicas, but each session is driven through the
  replica that did not create it: every command is forwarded to the lease
  holder (``sessions/_inbox_pg.py``) and every event reaches the client through
  NOTIFY and a read on the other replica (``sessions/_fanout_pg.py``).

Measured from the first ``user_message`` to the last ``turn.ended``: turns/s;
the turn (``user.message`` received → ``turn.ended`` received) p50/p99; B2's
call→result p99; commit→client: receipt - ``ts`` of every durable event (its
batch's commit start; same clock); the replicas' CPU per turn (summed) and the
busiest main thread; the PostgreSQL server's CPU, commits (``pg_stat_database``,
read 11 s after the run: backends report late) and WAL bytes per turn; the fake
LLM's and this client's CPU. Each replica's ``GET /metrics`` before and after
the run: the fan-out's notification lag (a notification's arrival → its events
delivered to the subscribers there): mean over the run, and the max since start.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import attrs
import trio
from trio_websocket import WebSocketConnection

from sessions import JSONObject

from . import b2_tool_loop as b2
from ._common import (
    STEP,
    Child,
    CpuSample,
    create_sessions,
    fmt_ms,
    http_client,
    median,
    note,
    open_child,
    own_cpu_seconds,
    percentile,
    pg_schema,
    postgres_cpu_probe,
    postgres_dsn,
    print_header,
    server_args,
    server_env,
    ws_url,
)

VARIANTS = ("sqlite", "pg1", "pg2", "pg2-cross")


@attrs.define
class Timings:
    """What the wrapped event reader saw: per-event commit→client, per-turn durations."""

    commit_to_client: list[float] = attrs.field(factory=list)
    turns: list[float] = attrs.field(factory=list)
    turn_started: dict[int, float] = attrs.field(factory=dict)  # id(ws) -> user.message seen


@contextmanager
def timed_events() -> Iterator[Timings]:
    """Wrap B2's event reader (``b2._event``, which ``b2._turn`` calls) for the block.

    B2's client is used as it is; only the function that returns each durable
    event is wrapped, to read its ``ts`` and the turn boundaries.
    """
    timings = Timings()
    original = b2._event

    async def timed(ws: WebSocketConnection) -> JSONObject:
        event = await original(ws)
        received = time.time()
        ts = event.get("ts")
        if isinstance(ts, int | float):
            timings.commit_to_client.append(received - ts)
        kind = event.get("type")
        if kind == "user.message":
            timings.turn_started[id(ws)] = received
        elif kind == "turn.ended" and id(ws) in timings.turn_started:
            timings.turns.append(received - timings.turn_started.pop(id(ws)))
        return event

    b2._event = timed
    try:
        yield timings
    finally:
        b2._event = original


@attrs.frozen
class Outcome:
    turns: int
    seconds: float
    turn_p50: float
    turn_p99: float
    result_p99: float
    lag_p50: float  # commit -> client, every durable event
    lag_p99: float
    server_cpu: float  # all replicas
    busiest_main: float  # the busiest replica's main thread, CPU s / wall s
    pg_cpu: float
    pg_commits: float  # transactions committed in the database (approximate: stats lag)
    wal_bytes: float
    fake_cpu: float
    client_cpu: float
    notify_mean: float  # the fan-out's lag (GET /metrics), over the replicas
    notify_max: float

    @property
    def turns_per_s(self) -> float:
        return self.turns / self.seconds

    def per_turn_ms(self, seconds: float) -> float:
        return seconds / max(self.turns, 1) * 1000


class Probe:
    """CPU of every replica, their main threads, PostgreSQL, the fake and this client."""

    def __init__(
        self, replicas: list[Child], fake: Child, pg_cpu: Callable[[], float] | None, dsn: str
    ) -> None:
        self.replicas, self.fake, self.pg_cpu, self.dsn = replicas, fake, pg_cpu, dsn
        # per-replica main-thread CPU, PG CPU, PG (commits, WAL bytes)
        self.readings: list[tuple[list[float], float, tuple[float, float]]] = []

    def __call__(self) -> CpuSample:
        mains = [r.main_thread_cpu() for r in self.replicas]
        pg = self.pg_cpu() if self.pg_cpu else math.nan
        self.readings.append((mains, pg, pg_counters(self.dsn) if self.pg_cpu else (0.0, 0.0)))
        servers = sum(r.cpu() for r in self.replicas)
        return CpuSample(servers, sum(mains), self.fake.cpu(), own_cpu_seconds())


def pg_counters(dsn: str) -> tuple[float, float]:
    """(transactions committed in the database, WAL position in bytes) now.

    ``xact_commit`` lags: backends report their counts at most once a second,
    and an idle one within 10 s; the final reading waits for that (``STATS_WAIT``).
    """
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT xact_commit, pg_current_wal_lsn() - '0/0' FROM pg_stat_database"
            " WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return float(row[0]), float(row[1])


STATS_WAIT = 11.0


async def fanout_lag(replica: Child) -> tuple[float, float, float]:
    """(samples, summed seconds, max seconds) of the notification lag, from ``/metrics``."""
    async with http_client(replica.url, 2) as http:
        text = (await http.get("/metrics")).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("agent_runtime_notification_lag"):
            values[name] = float(value)
    return (
        values.get("agent_runtime_notification_lag_seconds_count", 0.0),
        values.get("agent_runtime_notification_lag_seconds_sum", 0.0),
        values.get("agent_runtime_notification_lag_max_seconds", math.nan),
    )


@asynccontextmanager
async def replicas(
    stack: AsyncExitStack, variant: str, base: str, fake: Child, lease_ttl: float | None
) -> AsyncIterator[tuple[list[Child], Callable[[], float] | None]]:
    if variant == "sqlite":
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="b10-")))
        db, count, pg_cpu = str(tmp / "b10.db"), 1, None
    else:
        db, _ = stack.enter_context(pg_schema(base))
        count, pg_cpu = (1 if variant == "pg1" else 2), postgres_cpu_probe(base)
    args = server_args(db, llm="openai", llm_url=fake.url)
    env = server_env(**({"lease_ttl": f"{lease_ttl:g}"} if lease_ttl else {}))
    started = []
    for i in range(count):  # one after the other: the first one migrates the schema
        started.append(await stack.enter_async_context(open_child(f"b10-server{i}", args, env)))
    yield started, pg_cpu


async def run(
    variant: str, sessions: int, turns: int, base: str, lease_ttl: float | None
) -> Outcome:
    async with AsyncExitStack() as stack:
        fake_args = ["bench.fake_llm", "--tool-calls", str(b2.ROUND_TRIPS), "--tokens", "5"]
        fake = await stack.enter_async_context(open_child("b10-fake-llm", fake_args))
        servers, pg_cpu = await stack.enter_async_context(
            replicas(stack, variant, base, fake, lease_ttl)
        )
        # Who creates each session, and through whom it is driven.
        k = len(servers)
        halves = [sessions // k + (i < sessions % k) for i in range(k)]
        plan: list[tuple[str, Child]] = []
        for i, (server, count) in enumerate(zip(servers, halves, strict=True)):
            driver = servers[(i + 1) % len(servers)] if variant == "pg2-cross" else server
            plan += [(sid, driver) for sid in await create_sessions(server.url, count, "coder")]
        probe = Probe(servers, fake, pg_cpu, base)
        tally = b2.Tally(sessions, sessions * turns, probe)
        gate = trio.Semaphore(b2.OPEN_CONCURRENCY)
        content = "read a.txt three times"
        with timed_events() as timings:
            async with trio.open_nursery() as nursery:
                for session_id, driver in plan:
                    url = ws_url(driver.url, session_id)
                    nursery.start_soon(b2._session, url, turns, content, tally, gate)
                with trio.fail_after(STEP + sessions * 0.1):
                    await tally.all_ready.wait()
                pg = variant != "sqlite"
                lags_before = [await fanout_lag(s) for s in servers] if pg else []
                tally.start()
                nursery.cancel_scope.deadline = trio.current_time() + b2.RUN_LIMIT
        cpu = tally.cpu_used
        assert cpu is not None, f"{variant}: not every turn ended ({tally.turns} did)"
        seconds = tally.finished - tally.started
        (mains0, pg0, (xact0, wal0)), (mains1, pg1, (_, wal1)) = (
            probe.readings[0],
            probe.readings[-1],
        )
        if pg:
            await trio.sleep(STATS_WAIT)
        xact1 = pg_counters(base)[0] if pg else 0.0
        busiest = max(b - a for a, b in zip(mains0, mains1, strict=True)) / seconds
        lags = [await fanout_lag(s) for s in servers] if pg else []
        samples = sum(n for n, _, _ in lags) - sum(n for n, _, _ in lags_before)
        lag_sum = sum(s for _, s, _ in lags) - sum(s for _, s, _ in lags_before)
        return Outcome(
            turns=tally.turns,
            seconds=seconds,
            turn_p50=percentile(timings.turns, 50),
            turn_p99=percentile(timings.turns, 99),
            result_p99=percentile(tally.to_result, 99),
            lag_p50=percentile(timings.commit_to_client, 50),
            lag_p99=percentile(timings.commit_to_client, 99),
            server_cpu=cpu.server,
            busiest_main=busiest,
            pg_cpu=pg1 - pg0,
            pg_commits=xact1 - xact0,
            wal_bytes=wal1 - wal0,
            fake_cpu=cpu.fake,
            client_cpu=cpu.client,
            notify_mean=lag_sum / samples if samples else math.nan,
            notify_max=max((m for _, _, m in lags), default=math.nan),
        )
    raise AssertionError("unreachable")  # pragma: no cover (AsyncExitStack may swallow)


def _per(rs: list[Outcome], value: Callable[[Outcome], float]) -> str:
    """The median of *value* per turn; ``-`` where it was not measured (SQLite)."""
    per = median([value(r) / max(r.turns, 1) for r in rs])
    return f"{per:.1f}" if per else "-"


def _cell(values: list[float], fmt: Callable[[float], str]) -> str:
    return f"{fmt(median(values))} ({fmt(min(values))}-{fmt(max(values))})"


async def main(
    sessions: int, turns: int, runs: int, variants: list[str], base: str, lease_ttl: float | None
) -> None:
    print_header(
        f"B10 scale-out: B2's tool loop ({b2.ROUND_TRIPS} tool round trips per turn, openai "
        f"provider), {sessions} sessions x {turns} turns; 1 or 2 replicas",
        "bench.b10_replicas",
        runs,
    )
    results: dict[str, list[Outcome]] = {v: [] for v in variants}
    for number in range(runs):
        for variant in variants if number % 2 == 0 else variants[::-1]:
            outcome = await run(variant, sessions, turns, base, lease_ttl)
            results[variant].append(outcome)
            note(
                f"run {number + 1} {variant}: {outcome.turns_per_s:.1f} turns/s, turn p50 "
                f"{fmt_ms(outcome.turn_p50)} p99 {fmt_ms(outcome.turn_p99)} ms, commit→client "
                f"p50 {fmt_ms(outcome.lag_p50)} p99 {fmt_ms(outcome.lag_p99)} ms, server "
                f"{outcome.per_turn_ms(outcome.server_cpu):.1f} ms/turn, PG "
                f"{outcome.per_turn_ms(outcome.pg_cpu):.1f} ms/turn "
                f"{outcome.pg_commits / outcome.turns:.1f} commits/turn "
                f"{outcome.wal_bytes / outcome.turns / 1024:.1f} KiB WAL/turn, busiest main "
                f"{outcome.busiest_main:.0%}, notify lag mean {fmt_ms(outcome.notify_mean)} "
                f"max {fmt_ms(outcome.notify_max)} ms, fake {outcome.fake_cpu:.2f} s, "
                f"client {outcome.client_cpu:.2f} s, wall {outcome.seconds:.2f} s"
            )
    print(
        "| variant | turns/s | turn p50 ms | turn p99 ms | call→result p99 ms"
        " | commit→client p50 ms | p99 ms | replicas' CPU ms/turn | busiest main thread"
        " | PostgreSQL CPU ms/turn | PG commits/turn | WAL KiB/turn"
        " | notification lag mean / max ms | fake CPU ms/turn | client CPU ms/turn |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for variant in variants:
        rs = results[variant]

        def ms(key: str, rs: list[Outcome] = rs) -> str:
            return fmt_ms(median([float(getattr(r, key)) for r in rs]))

        def per_turn(key: str, rs: list[Outcome] = rs) -> str:
            value = median([r.per_turn_ms(float(getattr(r, key))) for r in rs])
            return "-" if math.isnan(value) else f"{value:.1f}"

        print(
            f"| {variant} | {_cell([r.turns_per_s for r in rs], lambda v: f'{v:.1f}')}"
            f" | {ms('turn_p50')} | {ms('turn_p99')} | {ms('result_p99')}"
            f" | {ms('lag_p50')} | {ms('lag_p99')}"
            f" | {_cell([r.per_turn_ms(r.server_cpu) for r in rs], lambda v: f'{v:.1f}')}"
            f" | {median([r.busiest_main for r in rs]):.0%} | {per_turn('pg_cpu')}"
            f" | {_per(rs, lambda r: r.pg_commits)}"
            f" | {_per(rs, lambda r: r.wal_bytes / 1024)}"
            f" | {ms('notify_mean')} / {ms('notify_max')} | {per_turn('fake_cpu')}"
            f" | {per_turn('client_cpu')} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dsn", help="PostgreSQL server (a local one: its CPU is read)")
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--lease-ttl", type=float, help="AGENT_RUNTIME_LEASE_TTL of the replicas (default: theirs)"
    )
    options = parser.parse_args()
    chosen = [v for v in options.variants.split(",") if v]
    assert all(v in VARIANTS for v in chosen), chosen
    dsn = postgres_dsn(options.dsn)
    trio.run(main, options.sessions, options.turns, options.runs, chosen, dsn, options.lease_ttl)

"""B2 tool loop: turns with 3 tool round trips answered by the bench client over WebSocket.

Run: ``python -m bench.b2_tool_loop [--sessions 1,100] [--turns 10] [--runs 3]
[--providers openai,scripted]``. Each session runs ``--turns`` turns, or more so
that a run has at least 100 turns (1 session: 100 turns one after the other).

Each session is a ``coder`` session; each of its turns (run one after the other)
makes three ``read_file`` calls, one at a time, that this client answers with a
``tool_result`` (``read_file`` is allowed by the default policy: no approval):

- ``openai``: the server with ``--llm openai`` against ``bench.fake_llm
  --tool-calls 3 --tokens 5`` (its own process): a ``read_file`` call while the
  turn has fewer than 3 tool results, then 5 words of text; the turn ends
  ``completed``.
- ``scripted``: ``--llm scripted --pace 0`` with ``AGENT_RUNTIME_MAX_STEPS=3``
  and the message ``loop`` (the scripted model calls ``read_file`` after every
  result); the turn ends ``max_steps`` after the third result.

Per run (fresh server, SQLite file in a temp dir): turns/s over all sessions,
and per round trip the p50/p99 of (a) ``tool.call`` received → the first durable
event after our ``tool_result`` (the server's ``tool.result``: ack, commit and
fan-out of the result) and (b) ``tool.call`` received → the model's next output
(``tool.call`` or ``text.delta``: the whole step including the next LLM call).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import attrs
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from sessions import JSONObject, dumps

from ._common import (
    STEP,
    Child,
    CpuSample,
    cpu_probe,
    create_sessions,
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
    server_args,
    server_env,
    ws_url,
)

ROUND_TRIPS = 3
MIN_TURNS = 100  # per run: fewer sessions run more turns each (1 session: 100 turns)
RUN_LIMIT = 300.0
OPEN_CONCURRENCY = 64


@attrs.define
class Tally:
    sessions: int
    expected: int  # turns in the run
    probe: Callable[[], CpuSample]
    turns: int = 0
    round_trips: int = 0
    to_result: list[float] = attrs.field(factory=list)
    to_next_step: list[float] = attrs.field(factory=list)
    reasons: dict[str, int] = attrs.field(factory=dict)
    kinds: dict[str, int] = attrs.field(factory=dict)  # durable events received, by type
    approvals: int = 0
    ready: int = 0
    all_ready: trio.Event = attrs.field(factory=trio.Event)
    go: trio.Event = attrs.field(factory=trio.Event)
    started: float = 0.0
    finished: float = 0.0
    cpu_at_start: CpuSample | None = None
    cpu_used: CpuSample | None = None  # from go to the last turn.ended (closing excluded)

    def start(self) -> None:
        self.cpu_at_start = self.probe()
        self.started = time.perf_counter()
        self.go.set()

    def turn_ended(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        self.turns += 1
        if self.turns == self.expected:
            self.finished = time.perf_counter()
            assert self.cpu_at_start is not None
            self.cpu_used = self.probe() - self.cpu_at_start


@attrs.frozen
class Result:
    turns: int
    seconds: float
    result_p50: float
    result_p99: float
    step_p50: float
    step_p99: float
    round_trips_per_turn: float
    server_cpu: float
    main_cpu: float  # the server's main (trio) thread alone
    fake_cpu: float
    client_cpu: float
    reasons: str
    events_per_turn: float  # durable events the client received per turn
    kinds: str  # the same, by type

    @property
    def turns_per_s(self) -> float:
        return self.turns / self.seconds


async def _event(ws: WebSocketConnection) -> JSONObject:
    """The next durable event (ephemeral acks and heartbeats are skipped)."""
    while True:
        frame = parse_frame(await ws.get_message())
        if "seq" in frame:
            return frame
        if frame.get("type") == "error":
            raise RuntimeError(f"server error frame: {frame}")


async def _turn(ws: WebSocketConnection, number: int, content: str, tally: Tally) -> None:
    await ws.send_message(dumps({"type": "user_message", "id": f"m{number}", "content": content}))
    call_seen: float | None = None  # when the last tool.call arrived
    answered = False  # our tool_result for it is sent, its first event not yet seen
    while True:
        event = await _event(ws)
        received = time.perf_counter()
        kind = str(event.get("type"))
        tally.kinds[kind] = tally.kinds.get(kind, 0) + 1
        if call_seen is not None:
            if answered:
                tally.to_result.append(received - call_seen)
                answered = False
            if kind in ("tool.call", "text.delta"):
                tally.to_next_step.append(received - call_seen)
                call_seen = None
        if kind == "tool.call":
            call_seen = received
            tally.round_trips += 1
            reply = {
                "type": "tool_result",
                "id": f"r{event['seq']}",
                "call_id": event["call_id"],
                "result": "line 1 of a.txt\nline 2 of a.txt\n",
            }
            await ws.send_message(dumps(reply))
            answered = True
        elif kind == "approval.requested":
            tally.approvals += 1
            approve = {
                "type": "approval",
                "id": f"a{event['seq']}",
                "call_id": event["call_id"],
                "decision": "approve",
            }
            await ws.send_message(dumps(approve))
        elif kind == "turn.ended":
            tally.turn_ended(str(event.get("reason")))
            return


async def _session(url: str, turns: int, content: str, tally: Tally, gate: trio.Semaphore) -> None:
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
            tally.ready += 1
            if tally.ready == tally.sessions:
                tally.all_ready.set()
            await tally.go.wait()
            for number in range(1, turns + 1):
                await _turn(ws, number, content, tally)
    finally:
        if holding:
            gate.release()


async def run(sessions: int, turns: int, provider: str, profile: Path | None) -> Result:
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="b2-")))
        fake: Child | None = None
        env = server_env()
        if provider == "openai":
            fake_args = ["bench.fake_llm", "--tool-calls", str(ROUND_TRIPS), "--tokens", "5"]
            fake = await stack.enter_async_context(open_child("fake-llm", fake_args))
            args = server_args(str(tmp / "b2.db"), llm="openai", llm_url=fake.url)
            content = "read a.txt three times"
        else:
            args = server_args(str(tmp / "b2.db"), pace=0.0)
            env = server_env(max_steps=str(ROUND_TRIPS))
            content = "loop"
        server = await stack.enter_async_context(open_child("server", args, env))
        ids = await create_sessions(server.url, sessions, "coder")
        output = profile / f"b2-server-{provider}-{sessions}.txt" if profile else None
        await stack.enter_async_context(profiled(server.pid, output))
        tally = Tally(sessions, sessions * turns, cpu_probe(server, fake))
        gate = trio.Semaphore(OPEN_CONCURRENCY)
        async with trio.open_nursery() as nursery:
            for session_id in ids:
                url = ws_url(server.url, session_id)
                nursery.start_soon(_session, url, turns, content, tally, gate)
            with trio.fail_after(STEP + sessions * 0.1):
                await tally.all_ready.wait()
            tally.start()
            nursery.cancel_scope.deadline = trio.current_time() + RUN_LIMIT
        cpu = tally.cpu_used
        assert cpu is not None, "not every turn ended"
        if tally.approvals:
            note(f"  note: {tally.approvals} approvals were requested (and approved)")
        return Result(
            turns=tally.turns,
            seconds=tally.finished - tally.started,
            result_p50=percentile(tally.to_result, 50),
            result_p99=percentile(tally.to_result, 99),
            step_p50=percentile(tally.to_next_step, 50),
            step_p99=percentile(tally.to_next_step, 99),
            round_trips_per_turn=tally.round_trips / max(tally.turns, 1),
            server_cpu=cpu.server,
            main_cpu=cpu.main,
            fake_cpu=cpu.fake,
            client_cpu=cpu.client,
            reasons=",".join(f"{k}={v}" for k, v in sorted(tally.reasons.items())),
            events_per_turn=sum(tally.kinds.values()) / max(tally.turns, 1),
            kinds=" ".join(
                f"{k}={v / max(tally.turns, 1):.1f}" for k, v in sorted(tally.kinds.items())
            ),
        )
    raise AssertionError("unreachable")  # pragma: no cover (AsyncExitStack may swallow)


def _med(results: list[Result], key: str) -> float:
    return median([float(getattr(r, key)) for r in results])


async def main(
    counts: list[int], turns: int, runs: int, providers: list[str], profile: Path | None
) -> None:
    print_header(
        f"B2 tool loop: {ROUND_TRIPS} tool round trips per turn, {turns} turns per session "
        f"(at least {MIN_TURNS} turns per run)",
        "bench.b2_tool_loop",
        runs,
    )
    table: dict[tuple[int, str], list[Result]] = {}
    for n in counts:
        per_session = max(turns, -(-MIN_TURNS // n))
        for number in range(runs):
            for provider in providers:
                result = await run(n, per_session, provider, profile)
                table.setdefault((n, provider), []).append(result)
                note(
                    f"N={n} run {number + 1} {provider}: {result.turns_per_s:,.1f} turns/s, "
                    f"tool.call→tool.result p50 {result.result_p50 * 1000:.1f} ms "
                    f"p99 {result.result_p99 * 1000:.1f} ms, tool.call→next step "
                    f"p50 {result.step_p50 * 1000:.1f} ms p99 {result.step_p99 * 1000:.1f} ms, "
                    f"{result.round_trips_per_turn:.1f} round trips/turn, "
                    f"server CPU {result.server_cpu:.2f} s, fake CPU {result.fake_cpu:.2f} s, "
                    f"client CPU {result.client_cpu:.2f} s, wall {result.seconds:.2f} s, "
                    f"{result.reasons}; events/turn {result.events_per_turn:.1f}: {result.kinds}"
                )
    print(
        "| sessions | provider | turns/s | round trips/turn | call→result p50 ms "
        "| call→result p99 ms | call→next step p50 ms | call→next step p99 ms "
        "| server CPU ms/turn | main thread busy | events/turn | fake CPU s | client CPU s "
        "| turn.ended |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for n in counts:
        for provider in providers:
            results = table[(n, provider)]
            cpu_per_turn = median([r.server_cpu / max(r.turns, 1) * 1000 for r in results])
            busy = median([r.main_cpu / r.seconds for r in results])
            print(
                f"| {n:,} | {provider} | {median([r.turns_per_s for r in results]):,.1f} "
                f"| {_med(results, 'round_trips_per_turn'):.1f} "
                f"| {fmt_ms(_med(results, 'result_p50'))} | {fmt_ms(_med(results, 'result_p99'))} "
                f"| {fmt_ms(_med(results, 'step_p50'))} | {fmt_ms(_med(results, 'step_p99'))} "
                f"| {cpu_per_turn:.1f} | {busy:.0%} | {_med(results, 'events_per_turn'):.1f} "
                f"| {_med(results, 'fake_cpu'):.2f} "
                f"| {_med(results, 'client_cpu'):.2f} | {results[-1].reasons} |"
            )
    if profile is not None:
        print_profiles(profile)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", type=parse_counts, default=[1, 100])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--providers", default="openai,scripted")
    parser.add_argument(
        "--profile", type=Path, help="directory: sample the server with py-spy (skews the numbers)"
    )
    options = parser.parse_args()
    if options.profile is not None:
        options.profile.mkdir(parents=True, exist_ok=True)
    providers = [p for p in options.providers.split(",") if p]
    assert all(p in ("openai", "scripted") for p in providers), providers
    trio.run(main, options.sessions, options.turns, options.runs, providers, options.profile)

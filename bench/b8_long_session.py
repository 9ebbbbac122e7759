"""B8 long session: server CPU per turn of a session with 800 prior turns vs a fresh one's.

Run: ``python -m bench.b8_long_session [--sessions 10] [--prior 800] [--turns 10]
[--runs 3] [--profile DIR]``. The target is a long/fresh ratio of at most 1.1.

Per run (fresh temp dir, fresh server): a SQLite file is written through the real
store (``open_sqlite_store``, one append per turn) before the server starts. It
holds ``--sessions`` *long* ``coder`` sessions of ``--prior`` completed turns each
and ``--sessions`` *fresh* ``coder`` sessions without events, all owned by the
bench principal. Each prior turn is what the runtime writes for a turn with one
tool round trip (payloads made by ``encode_event``): ``user.message`` (no
``turn_id``, as the runtime commits it with the queued turn), then with the
turn's id ``turn.started`` (pointing at the ``user.message`` seq), ``message``
with one ``read_file`` call, ``tool.call``, ``tool.result`` (200 characters),
``message`` (30 words), ``usage`` and ``turn.ended completed``; the turn row is
``completed``. Call ids are unique per session, so the history the server folds
and sends to the model pairs every call with its result.

The server runs with ``--llm openai`` against ``bench.fake_llm --tool-calls 1
--tokens 5`` (its own process): each turn makes two LLM requests (a
``read_file`` call, then 5 words), and one tool round trip that this client
answers with a ``tool_result`` as soon as it sees ``tool.call`` (``read_file``
needs no approval). Three phases share the server, in alternating order
(run 1 fresh, long, heavy; run 2 heavy, long, fresh; ...):

- ``fresh``: every fresh session opens one WebSocket (``hello`` → ``sync``),
  runs one warm-up turn (not measured), and when all are warm, runs ``--turns``
  turns one after the other (all sessions concurrently);
- ``long``: the same on the long sessions. Their ``hello.after`` is the last
  prior seq (a client that has the history; no replay). The warm-up turn is
  the first use of the session, so it loads and folds the whole history: the
  measured turns are steady state;
- ``heavy``, the control: the same on ``--sessions`` sessions of ONE prior turn
  whose question is padded so that their model requests are about as large as
  the long sessions' (the report shows both sizes, as the fake received them).
  long/fresh is the target; long/heavy separates what a long history costs
  per message (folding, encoding, pairing, context estimates: the runtime's
  work) from what carrying its bytes to the model costs (the copy into the
  body, the socket, the kernel, and the fake reading them on the same cores).

Measured per phase, from the first measured ``user_message`` to the last
``turn.ended``: server CPU (all threads, and the main trio thread alone, from
``/proc``) per turn, fake LLM CPU per turn, turns/s, the p50 of one turn
(``user_message`` sent → ``turn.ended`` received), and the mean size of a
model request (the fake's ``/v1/stats``), and the server's minor page faults per
turn (``/proc``: pages mapped on first touch, as when a large buffer is allocated
afresh; unlike CPU time, hardly moved by other work on the machine). Every turn must end
``completed`` after exactly one round trip, or the bench fails. ``/proc``
counts CPU in ticks (10 ms at ``CLK_TCK`` 100): a phase needs many turns (the
defaults: 100) for the per-turn figures, and their ratio, to mean much.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import attrs
import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from agents import AgentEvent, encode_event
from agents.events import (
    AssistantMessage,
    ToolCallEvent,
    ToolCallInfo,
    ToolResultEvent,
    TurnEnded,
    TurnStarted,
    UsageEvent,
    UserMessage,
)
from sessions import (
    Append,
    JSONObject,
    NewEvent,
    Session,
    Turn,
    TurnStatus,
    dumps,
    now,
    open_sqlite_store,
)

from ._common import (
    PRINCIPAL,
    STEP,
    TOKEN,
    Child,
    CpuSample,
    cpu_probe,
    fmt_ms,
    median,
    minor_faults,
    note,
    open_child,
    parse_frame,
    percentile,
    print_header,
    print_profiles,
    profiled,
    server_args,
    server_env,
    ws_url,
)

AGENT = "coder"
EVENTS_PER_TURN = 8  # of a prior turn, as written below
PHASES = ("fresh", "long", "heavy")
CONTENT = "read a.py and explain it"
TOOL_CONTENT = ("def f(x):\n    return x + 1\n" * 8)[:200]  # 200 characters
ANSWER = " ".join(f"word{i}" for i in range(30))  # 30 words
RUN_LIMIT = 300.0  # bound of one phase's measured turns
OPEN_CONCURRENCY = 64
BUILD_CONCURRENCY = 64


# -- the database ----------------------------------------------------------------


@attrs.frozen
class Built:
    """What :func:`build` wrote: per phase, (session id, its last seq) of each session."""

    sessions: dict[str, list[tuple[str, int]]]
    events: int
    seconds: float
    mib: float


def _question(t: int) -> str:
    return f"question {t}: {CONTENT}"


def _prior_turn(
    turn_id: str, t: int, user_seq: int, question: str | None = None
) -> tuple[NewEvent, ...]:
    """Prior turn *t* of a session: what the runtime writes for one tool round trip."""
    call = ToolCallInfo(f"call_p{t}", "read_file", {"path": "a.py"})
    events: list[AgentEvent] = [
        TurnStarted(AGENT, user_seq),
        AssistantMessage(f"msg_c{t}", "", AGENT, tool_calls=(call,)),
        ToolCallEvent(call.call_id, call.name, call.arguments),
        ToolResultEvent(call.call_id, True, "x", TOOL_CONTENT),
        AssistantMessage(f"msg_a{t}", ANSWER, AGENT),
        UsageEvent(1200, 40, "fake-model"),
        TurnEnded("completed"),
    ]
    # The runtime commits the user message with the queued turn, without a turn_id.
    asked = NewEvent(*encode_event(UserMessage(f"msg_u{t}", question or _question(t))))
    return (asked, *(NewEvent(*encode_event(event), turn_id) for event in events))


def _wire_size(t: int) -> int:
    """About how many bytes prior turn *t* adds to a chat-completions request."""
    call: JSONObject = {
        "id": f"call_p{t}",
        "type": "function",
        "function": {"name": "read_file", "arguments": '{"path": "a.py"}'},
    }
    messages: list[JSONObject] = [
        {"role": "user", "content": _question(t)},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": TOOL_CONTENT, "tool_call_id": f"call_p{t}"},
        {"role": "assistant", "content": ANSWER},
    ]
    return sum(len(dumps(message)) + 1 for message in messages)


def heavy_question(prior: int) -> str:
    """A question padded so that one prior turn weighs what *prior* turns do on the wire."""
    pad = sum(_wire_size(t) for t in range(prior)) - _wire_size(0)
    return _question(0) + " " + "x" * max(0, pad - 1)


async def build(path: Path, sessions: int, prior: int) -> Built:
    """Write *sessions* long sessions of *prior* turns, as many heavy and fresh ones."""
    started = time.perf_counter()
    base = now() - 3 * sessions
    built: dict[str, list[tuple[str, int]]] = {
        "long": [(f"ses_long{i:05d}", prior * EVENTS_PER_TURN) for i in range(sessions)],
        "heavy": [(f"ses_heavy{i:05d}", EVENTS_PER_TURN) for i in range(sessions)],
        "fresh": [(f"ses_fresh{i:05d}", 0) for i in range(sessions)],
    }
    limiter = trio.CapacityLimiter(BUILD_CONCURRENCY)
    padded = heavy_question(prior)

    async with open_sqlite_store(path) as store:

        async def writer(number: int, session_id: str, turns: int, heavy: bool = False) -> None:
            async with limiter:
                created = base + number
                title = _question(0) if turns else ""
                session = Session(session_id, PRINCIPAL, title, created, created, AGENT)
                await store.append(Append(session_id, session=session))
                for t in range(turns):
                    turn_id = f"turn_{session_id}_{t}"
                    user_seq = t * EVENTS_PER_TURN + 1
                    row = Turn(
                        turn_id,
                        session_id,
                        AGENT,
                        TurnStatus.COMPLETED,
                        created,
                        created,
                        {"message_id": f"msg_u{t}"},
                    )
                    events = _prior_turn(turn_id, t, user_seq, padded if heavy else None)
                    committed = await store.append(Append(session_id, events=events, turn=row))
                    seqs = [event.seq for event in committed.events]
                    if seqs != list(range(user_seq, user_seq + EVENTS_PER_TURN)):
                        raise RuntimeError(f"{session_id} turn {t}: unexpected seqs {seqs}")

        async with trio.open_nursery() as nursery:
            for number, (session_id, _) in enumerate(built["long"]):
                nursery.start_soon(writer, number, session_id, prior)
            for number, (session_id, _) in enumerate(built["heavy"]):
                nursery.start_soon(writer, sessions + number, session_id, 1, True)
            for number, (session_id, _) in enumerate(built["fresh"]):
                nursery.start_soon(writer, 2 * sessions + number, session_id, 0)
    mib = sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1024 / 1024
    events = (prior + 1) * sessions * EVENTS_PER_TURN
    return Built(built, events, time.perf_counter() - started, mib)


# -- the client ------------------------------------------------------------------


@attrs.define
class Tally:
    sessions: int
    expected: int  # measured turns of the phase
    probe: Callable[[], CpuSample]
    turns: int = 0
    round_trips: int = 0
    latencies: list[float] = attrs.field(factory=list)
    reasons: dict[str, int] = attrs.field(factory=dict)
    ready: int = 0  # sessions connected and warmed up
    all_ready: trio.Event = attrs.field(factory=trio.Event)
    go: trio.Event = attrs.field(factory=trio.Event)
    done: trio.Event = attrs.field(factory=trio.Event)
    started: float = 0.0
    finished: float = 0.0
    cpu_at_start: CpuSample | None = None
    cpu_used: CpuSample | None = None  # from go to the last turn.ended (closing excluded)

    def session_ready(self) -> None:
        self.ready += 1
        if self.ready == self.sessions:
            self.all_ready.set()

    def start(self) -> None:
        self.cpu_at_start = self.probe()
        self.started = time.perf_counter()
        self.go.set()

    def turn_ended(self, reason: str, round_trips: int, seconds: float) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        self.round_trips += round_trips
        self.latencies.append(seconds)
        self.turns += 1
        if self.turns == self.expected:
            self.finished = time.perf_counter()
            assert self.cpu_at_start is not None
            self.cpu_used = self.probe() - self.cpu_at_start
            self.done.set()


@attrs.define
class Stream:
    """One session's WebSocket and the last durable seq it received."""

    ws: WebSocketConnection
    seq: int

    async def event(self) -> JSONObject:
        """The next durable event (acks and heartbeats are skipped); no replay allowed."""
        while True:
            frame = parse_frame(await self.ws.get_message())
            seq = frame.get("seq")
            if isinstance(seq, int):
                if seq <= self.seq:
                    raise RuntimeError(f"event seq {seq} after seq {self.seq}: a replay?")
                self.seq = seq
                return frame
            if frame.get("type") == "error":
                raise RuntimeError(f"server error frame: {frame}")


async def _turn(stream: Stream, command_id: str) -> tuple[str, int]:
    """Send one ``user_message`` and answer its tool calls; (end reason, round trips)."""
    command: JSONObject = {"type": "user_message", "id": command_id, "content": CONTENT}
    await stream.ws.send_message(dumps(command))
    round_trips = 0
    while True:
        event = await stream.event()
        kind = event.get("type")
        if kind == "tool.call":
            round_trips += 1
            reply = {
                "type": "tool_result",
                "id": f"r{event['seq']}",
                "call_id": event["call_id"],
                "result": TOOL_CONTENT,
            }
            await stream.ws.send_message(dumps(reply))
        elif kind == "approval.requested":
            raise RuntimeError(f"unexpected approval request (read_file needs none): {event}")
        elif kind == "turn.ended":
            return str(event.get("reason")), round_trips


async def _session(
    url: str, after: int, turns: int, tally: Tally, gate: trio.Semaphore, name: str
) -> None:
    await gate.acquire()
    holding = True
    try:
        async with open_websocket_url(url, connect_timeout=STEP, disconnect_timeout=5) as ws:
            await ws.send_message(json.dumps({"type": "hello", "after": after, "token": TOKEN}))
            with trio.fail_after(STEP):
                while parse_frame(await ws.get_message()).get("type") != "sync":
                    pass
            gate.release()
            holding = False
            stream = Stream(ws, after)
            with trio.fail_after(STEP):
                reason, round_trips = await _turn(stream, "warm-up")
            if (reason, round_trips) != ("completed", 1):
                raise RuntimeError(
                    f"{name} warm-up turn of {url}: {reason}, {round_trips} round trips"
                )
            tally.session_ready()
            await tally.go.wait()
            for number in range(1, turns + 1):
                sent = time.perf_counter()
                with trio.fail_after(STEP):
                    reason, round_trips = await _turn(stream, f"m{number}")
                tally.turn_ended(reason, round_trips, time.perf_counter() - sent)
    finally:
        if holding:
            gate.release()


@attrs.frozen
class Result:
    phase: str
    turns: int
    seconds: float
    turn_p50: float
    server_cpu: float
    main_cpu: float  # the server's main (trio) thread alone
    fake_cpu: float
    client_cpu: float
    reasons: str
    request_bytes: float  # mean body of a model request, as the fake received it
    server_faults: int  # minor page faults of the server during the phase

    @property
    def turns_per_s(self) -> float:
        return self.turns / self.seconds

    def per_turn_ms(self, seconds: float) -> float:
        return seconds / self.turns * 1000


async def fake_stats(client: httpx.AsyncClient) -> tuple[int, int]:
    """(requests, body bytes) the fake received so far."""
    response = await client.get("/stats")
    response.raise_for_status()
    stats = response.json()
    return int(stats["requests"]), int(stats["body_bytes"])


async def _phase(
    server: Child,
    name: str,
    sessions: list[tuple[str, int]],
    turns: int,
    probe: Callable[[], CpuSample],
    fake: httpx.AsyncClient,
    profile: Path | None,
) -> Result:
    tally = Tally(len(sessions), len(sessions) * turns, probe)
    gate = trio.Semaphore(OPEN_CONCURRENCY)
    output = profile / f"b8-server-{name}.txt" if profile else None
    async with trio.open_nursery() as nursery:
        for session_id, after in sessions:
            url = ws_url(server.url, session_id)
            nursery.start_soon(_session, url, after, turns, tally, gate, name)
        with trio.fail_after(2 * STEP + len(sessions) * 0.1):
            await tally.all_ready.wait()
        stats_before = await fake_stats(fake)
        faults_before = minor_faults(server.pid)
        async with profiled(server.pid, output):
            tally.start()
            with trio.fail_after(RUN_LIMIT):
                await tally.done.wait()
        faults = minor_faults(server.pid) - faults_before
        stats_after = await fake_stats(fake)
    requests = stats_after[0] - stats_before[0]
    body_bytes = stats_after[1] - stats_before[1]
    cpu = tally.cpu_used
    assert cpu is not None, "not every turn ended"
    if tally.turns != tally.expected or tally.reasons != {"completed": tally.expected}:
        raise RuntimeError(f"{name}: {tally.turns} of {tally.expected} turns, {tally.reasons}")
    if tally.round_trips != tally.expected:
        raise RuntimeError(f"{name}: {tally.round_trips} round trips in {tally.turns} turns")
    return Result(
        phase=name,
        turns=tally.turns,
        seconds=tally.finished - tally.started,
        turn_p50=percentile(tally.latencies, 50),
        server_cpu=cpu.server,
        main_cpu=cpu.main,
        fake_cpu=cpu.fake,
        client_cpu=cpu.client,
        reasons=",".join(f"{k}={v}" for k, v in sorted(tally.reasons.items())),
        request_bytes=body_bytes / max(1, requests),
        server_faults=faults,
    )


async def run(
    sessions: int, prior: int, turns: int, order: tuple[str, ...], profile: Path | None
) -> tuple[dict[str, Result], Built]:
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="b8-")))
        db = tmp / "b8.db"
        built = await build(db, sessions, prior)
        note(
            f"  database: {sessions} x {prior} prior turns ({built.events:,} events) "
            f"+ {sessions} fresh sessions, {built.mib:.1f} MiB, written in {built.seconds:.1f} s"
        )
        fake_args = ["bench.fake_llm", "--tool-calls", "1", "--tokens", "5"]
        fake = await stack.enter_async_context(open_child("fake-llm", fake_args))
        args = server_args(str(db), llm="openai", llm_url=fake.url)
        server = await stack.enter_async_context(open_child("server", args, server_env()))
        probe = cpu_probe(server, fake)
        stats = await stack.enter_async_context(httpx.AsyncClient(base_url=fake.url))
        results: dict[str, Result] = {}
        for name in order:
            phase_sessions = built.sessions[name]
            results[name] = await _phase(server, name, phase_sessions, turns, probe, stats, profile)
        return results, built
    raise AssertionError("unreachable")  # pragma: no cover (AsyncExitStack may swallow)


# -- the report ------------------------------------------------------------------


@attrs.frozen
class Row:
    order: str
    results: dict[str, Result]

    def cpu(self, phase: str) -> float:
        result = self.results[phase]
        return result.per_turn_ms(result.server_cpu)

    def main(self, phase: str) -> float:
        result = self.results[phase]
        return result.per_turn_ms(result.main_cpu)

    def values(self) -> dict[str, float]:
        """The row's figures by column key (``<what>_<phase>`` and the ratios)."""
        out: dict[str, float] = {
            "ratio": _ratio(self.cpu("long"), self.cpu("fresh")),
            "control": _ratio(self.cpu("long"), self.cpu("heavy")),
        }
        for phase, r in self.results.items():
            out[f"cpu_{phase}"] = self.cpu(phase)
            out[f"main_{phase}"] = self.main(phase)
            out[f"tps_{phase}"] = r.turns_per_s
            out[f"p50_{phase}"] = r.turn_p50
            out[f"fake_{phase}"] = r.per_turn_ms(r.fake_cpu)
            out[f"kib_{phase}"] = r.request_bytes / 1024
            out[f"flt_{phase}"] = r.server_faults / r.turns
        return out


def _ratio(value: float, base: float) -> float:
    # /proc counts 10 ms ticks: a short phase can read 0 CPU.
    return value / base if base > 0 else math.nan


HEADER = (
    "| run | order | fresh server CPU ms/turn | long | heavy | **long/fresh** | long/heavy "
    "| main thread ms/turn (fresh / long / heavy) | turns/s (f / l / h) "
    "| turn p50 ms (f / l / h) | fake CPU ms/turn (f / l / h) "
    "| model request KiB (f / l / h) | server page faults/turn (f / l / h) | turn.ended |"
)


def _cells(label: str, order: str, v: dict[str, float], reasons: str, mark: str = "") -> str:
    def three(key: str, spec: str) -> str:
        return " / ".join(format(v[f"{key}_{phase}"], spec) for phase in PHASES)

    p50s = " / ".join(fmt_ms(v[f"p50_{phase}"]) for phase in PHASES)
    return (
        f"| {label} | {order} | {v['cpu_fresh']:.2f} | {v['cpu_long']:.2f} "
        f"| {v['cpu_heavy']:.2f} | {v['ratio']:.2f}{mark} | {v['control']:.2f} "
        f"| {three('main', '.2f')} | {three('tps', ',.1f')} | {p50s} "
        f"| {three('fake', '.2f')} | {three('kib', ',.1f')} | {three('flt', ',.1f')} "
        f"| {reasons} |"
    )


async def main(sessions: int, prior: int, turns: int, runs: int, profile: Path | None) -> None:
    print_header(
        f"B8 long session: server CPU per turn, {sessions} sessions with {prior} prior turns "
        f"vs {sessions} fresh sessions (and {sessions} heavy ones: 1 prior turn as large), "
        f"{turns} turns per session, 1 tool round trip per turn",
        "bench.b8_long_session",
        runs,
    )
    rows: list[Row] = []
    builds: list[Built] = []
    for number in range(runs):
        order = PHASES if number % 2 == 0 else PHASES[::-1]
        note(f"run {number + 1}: {' then '.join(order)}")
        results, built = await run(sessions, prior, turns, order, profile)
        builds.append(built)
        for name in order:
            r = results[name]
            note(
                f"run {number + 1} {name}: {r.turns_per_s:,.1f} turns/s, "
                f"server CPU {r.per_turn_ms(r.server_cpu):.2f} ms/turn "
                f"(main thread {r.per_turn_ms(r.main_cpu):.2f}), "
                f"fake CPU {r.per_turn_ms(r.fake_cpu):.2f} ms/turn, "
                f"client CPU {r.client_cpu:.2f} s, turn p50 {r.turn_p50 * 1000:.1f} ms, "
                f"request {r.request_bytes / 1024:,.1f} KiB, "
                f"page faults {r.server_faults / r.turns:,.1f}/turn, "
                f"wall {r.seconds:.2f} s, {r.reasons}"
            )
        row = Row(", ".join(order), {name: results[name] for name in PHASES})
        rows.append(row)
        v = row.values()
        note(f"run {number + 1}: long/fresh {v['ratio']:.2f}, long/heavy {v['control']:.2f}")
    print(
        f"database: {sessions} long sessions x {prior} prior turns, {sessions} heavy sessions "
        f"x 1 prior turn, {sessions} fresh sessions ({builds[0].events:,} events, "
        f"{EVENTS_PER_TURN} per turn), {median([b.mib for b in builds]):.1f} MiB; written "
        f"through the store in {median([b.seconds for b in builds]):.1f} s (median)"
    )
    print(
        "CPU per turn from the first measured message to the last turn.ended, after one "
        "warm-up turn per session; median row: median of each column over the runs\n"
    )
    print(HEADER)
    print("|---:|---|---:|---:|---:|---:|---:|---|---|---|---|---|---|")
    per_run = [row.values() for row in rows]
    for number, (row, values) in enumerate(zip(rows, per_run, strict=True)):
        reasons = "; ".join(row.results[phase].reasons for phase in PHASES)
        print(_cells(str(number + 1), row.order, values, reasons))
    medians = {key: median([v[key] for v in per_run]) for key in per_run[0]}
    totals = "; ".join(
        f"completed={sum(row.results[phase].turns for row in rows)}" for phase in PHASES
    )
    mark = " ✓" if medians["ratio"] <= 1.1 else " ✗"
    print(_cells("median", "alternating", medians, f"{totals} (all runs)", mark))
    print(
        "\ntarget: long/fresh server CPU per turn ≤ 1.1 (✓ met, ✗ not met); long/heavy: "
        "the same comparison at about equal model request size (the control)"
    )
    if profile is not None:
        print_profiles(profile)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--sessions", type=int, default=10, help="long sessions (and heavy and fresh ones)"
    )
    parser.add_argument("--prior", type=int, default=800, help="prior turns per long session")
    parser.add_argument("--turns", type=int, default=10, help="measured turns per session")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--profile", type=Path, help="directory: sample the server with py-spy (skews the numbers)"
    )
    options = parser.parse_args()
    assert options.sessions >= 1 and options.prior >= 1 and options.turns >= 1, options
    assert options.runs >= 1, options
    if options.profile is not None:
        options.profile.mkdir(parents=True, exist_ok=True)
    trio.run(main, options.sessions, options.prior, options.turns, options.runs, options.profile)

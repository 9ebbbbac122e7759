"""Shared helpers of the load generators: child processes, /proc readings, statistics.

Every benchmark starts the process it measures (the server, the baseline app, the
fake LLM) as a child with :func:`open_child`, so its CPU time and resident memory
can be read from ``/proc/<pid>`` while the load runs. Only loopback is used, and
every wait is bounded (:data:`STEP` seconds unless a bench says otherwise).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import quote

import attrs
import httpx
import trio

from agents import AgentEvent, encode_event
from agents.events import (
    AssistantMessage,
    TextDeltaEvent,
    TurnEnded,
    TurnStarted,
    UsageEvent,
    UserMessage,
)
from sessions import (
    JSON,
    Append,
    JSONObject,
    NewEvent,
    Session,
    Turn,
    TurnStatus,
    now,
    open_sqlite_store,
)

REPO = Path(__file__).resolve().parents[1]
TOKEN = "benchtoken"
PRINCIPAL = "bench"
STEP = 60.0  # bound of any single wait (start-up, a request, one frame)
READY_PREFIX = "listening on "
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- machine and versions -------------------------------------------------------


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


def machine_lines() -> list[str]:
    """The machine, the kernel and the versions of everything on the measured path."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/meminfo") as info:
            kib = int(next(line.split()[1] for line in info if line.startswith("MemTotal")))
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        memory = ""
    packages = ("trio", "hypercorn", "quart", "quart-trio", "wsproto", "h11")
    clients = ("trio-websocket", "httpx", "trio-asyncio", "aiosqlite")
    return [
        f"machine: {cpu}, {os.cpu_count()} cores{memory}, {platform.system()} {platform.release()}",
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        + ", ".join(f"{p} {_version(p)}" for p in packages),
        "clients/bridge: " + ", ".join(f"{p} {_version(p)}" for p in clients),
    ]


def print_header(title: str, module: str, runs: int) -> None:
    """The report's head: what ran, where, with which versions."""
    print(title)
    for line in machine_lines():
        print(line)
    print(f"command: python -m {' '.join([module, *sys.argv[1:]])}; medians of {runs} runs")
    print(flush=True)


def note(text: str) -> None:
    """Progress on stderr (stdout holds only the report)."""
    print(text, file=sys.stderr, flush=True)


# -- /proc readings -------------------------------------------------------------


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU seconds of process *pid* (all its threads), or of its thread *tid*."""
    where = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(where) as file:
        text = file.read()
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise ValueError(f"no {key} in /proc/{pid}/status")


def rss_kib(pid: int) -> int:
    """Current resident set size (VmRSS) in KiB."""
    return _status_kib(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int:
    """Peak resident set size (VmHWM) in KiB."""
    return _status_kib(pid, "VmHWM")


def own_cpu_seconds() -> float:
    """CPU seconds used by this (the client) process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@attrs.frozen
class CpuSample:
    """CPU seconds so far of the measured child, its main thread, the fake LLM, this client."""

    server: float
    main: float
    fake: float
    client: float

    def __sub__(self, other: CpuSample) -> CpuSample:
        return CpuSample(
            self.server - other.server,
            self.main - other.main,
            self.fake - other.fake,
            self.client - other.client,
        )


def cpu_probe(child: Child, fake: Child | None = None) -> Callable[[], CpuSample]:
    """A function reading :class:`CpuSample` now (``/proc`` and ``getrusage``)."""

    def probe() -> CpuSample:
        return CpuSample(
            child.cpu(),
            child.main_thread_cpu(),
            fake.cpu() if fake is not None else 0.0,
            own_cpu_seconds(),
        )

    return probe


def raise_nofile(wanted: int) -> int:
    """Raise the soft open-files limit towards *wanted* (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- PostgreSQL (B4 on PostgreSQL, B10) -------------------------------------------

POSTGRES_ENV = "AGENT_RUNTIME_BENCH_POSTGRES"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:54329/postgres"


def postgres_dsn(given: str | None = None) -> str:
    """*given*, else ``$AGENT_RUNTIME_BENCH_POSTGRES``, else the local development server."""
    return given or os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES


@contextmanager
def pg_schema(base: str) -> Iterator[tuple[str, str]]:
    """``(dsn, schema)``: a DSN whose connections use a new, empty schema; dropped afterwards.

    As ``tests/pg.py``: ``CREATE SCHEMA`` and ``options=-csearch_path=...``.
    """
    import psycopg

    schema = f"bench_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            separator = "&" if "?" in base else "?"
            yield f"{base}{separator}options={quote(f'-csearch_path={schema}')}", schema
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as file:
        text = file.read()
    return text[text.rindex(")") + 2 :].split()  # [0] is field 3 (state)


def minor_faults(pid: int) -> int:
    """Minor page faults of *pid* so far (all threads): pages the kernel mapped on
    first touch, e.g. each time a large buffer is allocated afresh."""
    return int(_stat_fields(pid)[7])  # field 10, minflt


def postgres_cpu_probe(dsn: str) -> Callable[[], float]:
    """A function reading the CPU seconds used so far by the PostgreSQL server of *dsn*.

    The server must run on this machine: its postmaster (the parent of our
    backend) plus every live child, plus the children it has already reaped
    (``cutime``/``cstime``: backends of closed connections), from ``/proc``.
    """
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        postmaster = int(_stat_fields(int(row[0]))[1])  # while the backend lives

    def probe() -> float:
        fields = _stat_fields(postmaster)
        total = sum(int(f) for f in fields[11:15]) / _CLK_TCK  # utime stime cutime cstime
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                child = _stat_fields(int(entry))
            except (OSError, ValueError):
                continue  # gone meanwhile
            if child[1] == str(postmaster):
                total += (int(child[11]) + int(child[12])) / _CLK_TCK
        return total

    return probe


# -- statistics -----------------------------------------------------------------


class JsonLines:
    """The JSON objects a child writes one per line (an ACP agent's stdout)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream, self.buffer = stream, b""

    async def next(self) -> tuple[JSONObject, int]:
        """The next object, and the bytes its line took (newline included)."""
        while b"\n" not in self.buffer:
            data = await self.stream.receive_some(1 << 16)
            if not data:
                raise RuntimeError("the child closed its output")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        value = json.loads(line)
        assert isinstance(value, dict)
        return value, len(line) + 1


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], p: float) -> float:
    """The *p*-th percentile (nearest rank) of *values*; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


# -- child processes ------------------------------------------------------------


@attrs.define
class Child:
    """A running child process that announced ``listening on URL``."""

    name: str
    process: trio.Process
    url: str
    ready_after: float  # seconds from spawn to the ready line
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def main_thread_cpu(self) -> float:
        """CPU seconds of the main thread alone (trio's; the rest is SQLite's worker)."""
        return cpu_seconds(self.pid, self.pid)

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def peak_rss_kib(self) -> int:
        return peak_rss_kib(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


async def _drain(stream: trio.abc.ReceiveStream, log: Path) -> None:
    with log.open("ab") as file:
        while data := await stream.receive_some(65536):
            file.write(data)


async def _ready_line(stream: trio.abc.ReceiveStream, log: Path) -> str:
    buffer = b""
    with log.open("ab") as file:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                raise RuntimeError("the child exited before it was ready")
            file.write(data)
            buffer += data
            for line in buffer.decode(errors="replace").splitlines():
                if line.startswith(READY_PREFIX):
                    return line[len(READY_PREFIX) :].strip()


async def stop_process(process: trio.Process, grace: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after *grace* seconds; always reaps."""
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(grace):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


async def end_stdio_child(process: trio.Process) -> None:
    """Close a stdio child's stdin (its end of input: an ACP adapter exits), wait for
    it within :data:`STEP`, then kill it if it is still running."""
    assert process.stdin is not None
    await process.stdin.aclose()
    with trio.move_on_after(STEP):
        await process.wait()
    if process.returncode is None:
        process.kill()


@asynccontextmanager
async def open_child(
    name: str, args: Sequence[str], env: Mapping[str, str] | None = None
) -> AsyncIterator[Child]:
    """Run ``python -m <args>`` from the repository root until the block exits.

    Waits (at most :data:`STEP` s) for the child's ``listening on URL`` line on
    stdout; its stdout and stderr go to a log file kept for diagnosis.
    """
    folder = Path(tempfile.gettempdir()) / "agent-runtime-bench"
    folder.mkdir(exist_ok=True)
    log = folder / f"{name}-{os.getpid()}.log"
    log.write_bytes(b"")
    merged = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as errors:
        spawned = time.perf_counter()
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", *args],
            stdout=subprocess.PIPE,
            stderr=errors,
            cwd=REPO,
            env=merged,
        )
    try:
        assert process.stdout is not None
        try:
            with trio.fail_after(STEP):
                url = await _ready_line(process.stdout, log)
        except (RuntimeError, trio.TooSlowError):
            await stop_process(process, 2)
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"{name} did not start:\n{tail}") from None
        child = Child(name, process, url, time.perf_counter() - spawned, log)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, process.stdout, log)
            try:
                yield child
            finally:
                await stop_process(process)
                nursery.cancel_scope.cancel()
    finally:
        await stop_process(process, 2)


def server_args(
    db: str, *, llm: str = "scripted", llm_url: str | None = None, pace: float = 0.0
) -> list[str]:
    """Arguments of ``python -m server serve`` on a free loopback port."""
    args = ["server", "serve", "--host", "127.0.0.1", "--port", "0", "--db", db, "--llm", llm]
    if llm == "openai":
        assert llm_url is not None
        args += ["--llm-url", llm_url, "--model", "fake-model"]
    else:
        args += ["--pace", f"{pace:g}"]
    return args


def server_env(**settings: str) -> dict[str, str]:
    """Environment for the server: the bench token plus ``AGENT_RUNTIME_<NAME>`` settings.

    The per-connection command rate limit (default 20/s) is lifted: one bench
    client sends commands as fast as the server answers them (B2: ~120/s).
    """
    env = {
        "AGENT_RUNTIME_TOKENS": f"{TOKEN}:{PRINCIPAL}",
        "AGENT_RUNTIME_COMMANDS_PER_SECOND": "100000",
    }
    env.update({f"AGENT_RUNTIME_{key.upper()}": value for key, value in settings.items()})
    return env


# -- protocol helpers -----------------------------------------------------------


def ws_url(base: str, session_id: str) -> str:
    return base.replace("http://", "ws://", 1) + f"/v1/sessions/{session_id}/ws"


def hello() -> str:
    return json.dumps({"type": "hello", "after": 0, "token": TOKEN})


def parse_frame(raw: str | bytes) -> JSONObject:
    value: JSON = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"unexpected frame {raw!r:.200}")
    return value


async def store_counts(base: str) -> tuple[int, int]:
    """(appends, batches) the server's store writer has committed, from ``GET /metrics``."""
    async with http_client(base, 1) as http:
        text = (await http.get("/metrics")).text

    def value(name: str) -> int:
        found = re.search(rf"^{name}_total (\S+)$", text, re.MULTILINE)
        return 0 if found is None else int(float(found.group(1)))

    return value("agent_runtime_store_appends"), value("agent_runtime_store_batches")


def http_client(base: str, connections: int = 64) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=base,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=STEP,
        limits=limits,
    )


async def create_sessions(base: str, count: int, agent: str, concurrency: int = 32) -> list[str]:
    """Create *count* sessions over REST (``POST /v1/sessions``), *concurrency* at a time."""
    ids: list[str] = [""] * count
    limiter = trio.CapacityLimiter(concurrency)

    async with http_client(base, concurrency) as http:

        async def one(i: int) -> None:
            async with limiter:
                response = await http.post("/v1/sessions", json={"agent": agent})
            if response.status_code != 201:
                raise RuntimeError(f"POST /v1/sessions: {response.status_code} {response.text}")
            session_id = response.json()["id"]
            assert isinstance(session_id, str)
            ids[i] = session_id

        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(one, i)
    return ids


def fmt_int(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def fmt_ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:,.1f}"


def parse_counts(text: str) -> list[int]:
    """``"1,100,1000"`` → ``[1, 100, 1000]``."""
    return [int(part) for part in text.split(",") if part.strip()]


# -- pre-built databases (B3, B5) ------------------------------------------------


def _turn_events(turn_id: str, turn: int, deltas: int) -> tuple[NewEvent, ...]:
    """One completed turn of ``deltas + 5`` events, as the runtime writes them."""
    asked, answered = f"msg_u{turn}", f"msg_a{turn}"
    words = [f" word{i}" for i in range(deltas)]
    events: list[AgentEvent] = [
        UserMessage(asked, f"question number {turn}: explain the code please"),
        TurnStarted("ask"),
        *(TextDeltaEvent(answered, word) for word in words),
        AssistantMessage(answered, "".join(words), "ask"),
        UsageEvent(120, deltas, "scripted"),
        TurnEnded("completed"),
    ]
    return tuple(NewEvent(*encode_event(event), turn_id) for event in events)


async def build_database(
    path: Path, sessions: int, turns: int, deltas: int, *, concurrency: int = 256
) -> float:
    """Write *sessions* sessions of *turns* completed turns (``deltas + 5`` events each).

    Goes through the real store (``open_sqlite_store``, group commit, one append
    per turn), so the file is exactly what the server writes. Returns seconds taken.
    """
    started = time.perf_counter()
    base = now() - sessions

    async with open_sqlite_store(path) as store:

        async def writer(first: int) -> None:
            for i in range(first, sessions, concurrency):
                session_id = f"ses_{i:07d}"
                session = Session(session_id, PRINCIPAL, f"session {i}", base + i, base + i, "ask")
                await store.append(Append(session_id, session=session))
                for t in range(turns):
                    turn_id = f"turn_{i:07d}_{t}"
                    turn = Turn(
                        turn_id,
                        session_id,
                        "ask",
                        TurnStatus.COMPLETED,
                        base + i,
                        base + i,
                        {"message_id": f"msg_u{t}"},
                    )
                    events = _turn_events(turn_id, t, deltas)
                    await store.append(Append(session_id, events=events, turn=turn))

        async with trio.open_nursery() as nursery:
            for first in range(min(concurrency, sessions)):
                nursery.start_soon(writer, first)
    return time.perf_counter() - started


# -- profiling (optional: py-spy, ``pip install py-spy``) -------------------------


def py_spy() -> str | None:
    """The ``py-spy`` executable next to this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


@asynccontextmanager
async def profiled(pid: int, output: Path | None, rate: int = 250) -> AsyncIterator[None]:
    """Sample *pid* with ``py-spy record --format raw`` into *output* during the block.

    Does nothing when *output* is ``None``. Non-blocking sampling (the target is
    not paused); idle threads are not sampled, so counts are CPU samples.
    """
    executable = py_spy()
    if output is None:
        yield
        return
    if executable is None:
        raise RuntimeError("--profile needs py-spy: pip install py-spy")
    args = [executable, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
    args += ["--nonblocking", "--output", str(output)]
    process = await trio.lowlevel.open_process(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        await trio.sleep(1)  # py-spy attaches
        yield
    finally:
        with trio.CancelScope(shield=True):
            process.send_signal(signal.SIGINT)
            with trio.move_on_after(STEP):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


def _frame_name(frame: str) -> str:
    """``"send (wsproto/connection.py:123)"`` → ``"send (wsproto/connection.py)"``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})" if path else name


def _task_of(frames: list[str]) -> str:
    """Which task a stack belongs to: the frame just under trio's ``unrolled_run``."""
    for i, frame in enumerate(frames):
        if frame.startswith(("unrolled_run (", "Thread.run (")):
            if i + 1 < len(frames):
                return frames[i + 1]
            return "scheduler (trio run loop)" if frame.startswith("unrolled") else frame
    return frames[0]


def profile_summary(output: Path, top: int = 25) -> list[str]:
    """The hottest functions of a ``py-spy --format raw`` file: self and inclusive %."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    tasks: Counter[str] = Counter()
    total = 0
    for line in output.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        tasks[_task_of(frames)] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return ["(no samples)"]
    packages: Counter[str] = Counter()
    for name, n in own.items():
        where = name.rpartition(" (")[2].rstrip(")")
        packages[where.split("/", 1)[0].removesuffix(".py") or "?"] += n
    lines = [f"{total} samples; self time by package:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in packages.most_common(15)]
    lines.append("by task (the frame under trio's run loop; 'scheduler' = the loop itself):")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in tasks.most_common(15)]
    lines.append("top self time:")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    lines.append("top inclusive time:")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top + 15)]
    return lines


def print_profiles(folder: Path) -> None:
    """Print :func:`profile_summary` of every ``*.txt`` profile in *folder*."""
    for output in sorted(folder.glob("*.txt")):
        print(f"\nprofile {output.name} (py-spy, CPU samples of the last run):")
        for line in profile_summary(output):
            print(line)

"""Real ACP clients against ``agent-runtime acp``: what they need, and schema conformance.

The real-client tests (``test_python_sdk.py``, ``test_acpx.py``) run clients we did
not write (the official Python SDK's client side, acpx) as subprocesses, each
spawning ``python -m server acp --db PATH`` as its agent. The :func:`acp_traffic`
fixture wraps that agent command in ``tee_agent.py``, which records every line
crossing the agent's stdio; :meth:`AcpTraffic.assert_conforms` (called by each
test at its end, and by the fixture afterwards if the test did not) checks every
line the adapter wrote: a whole line of UTF-8 JSON, a JSON-RPC 2.0 object with
only the members JSON-RPC allows, and valid against the ACP schema definition it
must match (``conformance.py``, with the schema vendored in ``schema/``).

Components come from the environment, like PostgreSQL in ``tests/pg.py``:
``AGENT_RUNTIME_TEST_ACPX`` names the acpx executable (``.ci/acp.sh`` installs the
pinned one and sets it; a developer who ran ``npm ci`` in ``.ci/acp`` has it there,
and that is used too), ``AGENT_RUNTIME_TEST_ACP_SCHEMA`` the schema of the pinned
``@agentclientprotocol/sdk`` (which must be the vendored one). Without a component
the tests that need it skip, saying why, except under ``CI=true``, where they fail.

``AGENT_RUNTIME_TEST_ACP_AGENT`` (a command line, ``--db PATH`` is appended) runs
the same tests against another ACP agent, to tell a client quirk from an adapter
bug.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from server._config import ServeConfig
from server.acp import EmbeddedLink, open_embedded_link
from tests.acp.conformance import SCHEMA_PATH, Conformance
from tests.components import missing, require_executable

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TEE = HERE / "tee_agent.py"
SDK_CLIENT = HERE / "sdk_client.py"
ACPX_ENV = "AGENT_RUNTIME_TEST_ACPX"
SCHEMA_ENV = "AGENT_RUNTIME_TEST_ACP_SCHEMA"
AGENT_ENV = "AGENT_RUNTIME_TEST_ACP_AGENT"
NODE_MODULES = ROOT / ".ci" / "acp" / "node_modules"
LOCAL_ACPX = NODE_MODULES / ".bin" / "acpx"
LOCAL_SCHEMA = NODE_MODULES / "@agentclientprotocol" / "sdk" / "schema" / "v1" / "schema.json"
# Generous: a first run on a cold machine imports a lot; a hang still ends the test.
PROCESS_TIMEOUT = 60.0


def require_acpx() -> Path:
    """The acpx executable (skips, or in CI fails, the test without one)."""
    reason = f"no acpx: set {ACPX_ENV} (.ci/acp.sh installs it: `. .ci/acp.sh`)"
    return require_executable(ACPX_ENV, LOCAL_ACPX, reason)


def require_sdk_schema() -> Path:
    """The stable ACP v1 schema file of the pinned npm ``@agentclientprotocol/sdk`` (the
    full one, ``schema.unstable.json``, is beside it)."""
    named = os.environ.get(SCHEMA_ENV)
    if named:
        return Path(named)
    if LOCAL_SCHEMA.is_file():
        return LOCAL_SCHEMA
    missing(f"no @agentclientprotocol/sdk schema: set {SCHEMA_ENV} (.ci/acp.sh does)")


def require_python_sdk() -> None:
    """The official ACP Python SDK (the ``acp`` package of the dev extra) is installed."""
    if importlib.util.find_spec("acp") is None:
        missing("no agent-client-protocol: pip install -e '.[dev]'")


def agent_command(db: Path) -> list[str]:
    """The agent under test, on stdio, with its store at *db*."""
    other = os.environ.get(AGENT_ENV)
    if other:
        return [*shlex.split(other), "--db", str(db)]
    return [sys.executable, "-m", "server", "acp", "--db", str(db)]


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child, with the project importable from anywhere."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


@attrs.define
class AcpTraffic:
    """The lines crossing the agents' stdio in one test, recorded by ``tee_agent.py``."""

    log: Path
    checked: bool = False

    def wrap(self, command: Sequence[str]) -> list[str]:
        """*command* run through the recorder (what the client is told to spawn)."""
        return [sys.executable, str(TEE), str(self.log), "--", *command]

    def records(self) -> list[dict[str, Any]]:
        """Every record so far: ``{"pid", "from": "agent" | "client", "line"}``."""
        if not self.log.exists():
            return []
        return [json.loads(raw) for raw in self.log.read_text(encoding="utf-8").splitlines()]

    def pids(self) -> list[int]:
        """The recorded agent processes, in the order they started."""
        return list(dict.fromkeys(int(record["pid"]) for record in self.records()))

    def connection(self, pid: int) -> Connection:
        """The messages that crossed the stdio of the agent process *pid*, in order."""
        sent = []
        for record in self.records():
            if record["pid"] != pid:
                continue
            try:
                message = json.loads(record.get("line", ""))
            except ValueError:
                continue  # assert_conforms reports it
            if isinstance(message, dict):
                sent.append((str(record["from"]), message))
        return Connection(sent)

    def connections(self) -> list[Connection]:
        """:meth:`connection` of every agent process, in the order they started."""
        return [self.connection(pid) for pid in self.pids()]

    def assert_conforms(self) -> None:
        """Every line the agents wrote is a valid ACP message (and some were written)."""
        self.checked = True
        lines, problems = check_log(self.log)
        assert lines > 0, f"the agent wrote nothing to stdout ({self.log})"
        shown = "\n".join(problems[:40])
        more = f"\n... and {len(problems) - 40} more" if len(problems) > 40 else ""
        assert not problems, (
            f"{len(problems)} problems in the agent's {lines} lines "
            f"(schema {SCHEMA_PATH}):\n{shown}{more}"
        )


@attrs.frozen
class Call:
    """A JSON-RPC request of one connection and its response (None if unanswered)."""

    caller: str  # "client" or "agent"
    method: str
    params: Any
    at: int  # where the request is in Connection.sent
    response: dict[str, Any] | None
    answered_at: int | None

    @property
    def result(self) -> Any:
        assert self.response is not None, f"{self.method} was not answered"
        assert "error" not in self.response, f"{self.method} failed: {self.response}"
        return self.response.get("result")


@attrs.frozen
class Connection:
    """One agent process's traffic: ``(from, message)`` pairs in wire order."""

    sent: list[tuple[str, dict[str, Any]]]

    def calls(self, method: str | None = None) -> list[Call]:
        """The requests (of *method*, or all) with their responses, by request order."""
        open_calls: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        found: list[Call] = []
        for at, (source, message) in enumerate(self.sent):
            key = (source, json.dumps(message.get("id")))
            if "method" in message and "id" in message:
                open_calls[key] = (at, message)
            elif "method" not in message:
                # A response answers the other side's request with that id.
                other = "client" if source == "agent" else "agent"
                opened = open_calls.pop((other, key[1]), None)
                if opened is not None:
                    start, request = opened
                    found.append(
                        Call(other, request["method"], request.get("params"), start, message, at)
                    )
        found += [
            Call(source, request["method"], request.get("params"), start, None, None)
            for (source, _), (start, request) in open_calls.items()
        ]
        found.sort(key=lambda call: call.at)
        return [call for call in found if method is None or call.method == method]

    def call(self, method: str) -> Call:
        """The one request of *method*."""
        found = self.calls(method)
        assert len(found) == 1, f"expected one {method} request, got {len(found)}: {found}"
        return found[0]

    def updates(
        self, kind: str | None = None, *, after: int = -1, before: int | None = None
    ) -> list[dict[str, Any]]:
        """The agent's ``session/update`` updates (of *kind*) between two positions."""
        end = len(self.sent) if before is None else before
        return [
            message["params"]["update"]
            for at, (source, message) in enumerate(self.sent)
            if after < at < end
            and source == "agent"
            and message.get("method") == "session/update"
            and (kind is None or message["params"]["update"].get("sessionUpdate") == kind)
        ]

    def text(
        self, kind: str = "agent_message_chunk", *, after: int = -1, before: int | None = None
    ) -> str:
        """The text of the *kind* chunks (see :meth:`updates`), joined."""
        return "".join(
            update["content"].get("text", "")
            for update in self.updates(kind, after=after, before=before)
            if update.get("content", {}).get("type") == "text"
        )


_REQUEST = frozenset({"jsonrpc", "id", "method", "params"})
_NOTIFICATION = frozenset({"jsonrpc", "method", "params"})
_RESPONSE = frozenset({"jsonrpc", "id", "result", "error"})


def check_connection(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """What is wrong with the agent's lines of one connection (tee records in wire order).

    Each line must be whole (newline-terminated) UTF-8 JSON, an object with no
    members JSON-RPC 2.0 does not allow, and pass :class:`Conformance` (which knows,
    from the client's lines, what each response answers).
    """
    conformance = Conformance()
    problems: list[str] = []
    for number, record in enumerate(records, 1):
        text = record.get("line")
        if record.get("from") == "client":
            with contextlib.suppress(ValueError):  # bad client lines: not the adapter's fault
                conformance.client_sent(json.loads(text) if isinstance(text, str) else None)
            continue
        where = f"line {number}"
        if not isinstance(text, str):
            kind = "not UTF-8" if "hex" in record else "not newline-terminated"
            problems.append(f"{where}: {kind}: {record!r}")
            continue
        try:
            message = json.loads(text)
        except ValueError:
            problems.append(f"{where}: not JSON: {text[:300]}")
            continue
        if not isinstance(message, dict):
            problems.append(f"{where}: not a JSON object: {text[:300]}")
            continue
        allowed = _RESPONSE if "method" not in message else _REQUEST
        if "method" in message and "id" not in message:
            allowed = _NOTIFICATION
        if extra := sorted(set(message) - allowed):
            problems.append(f"{where}: members JSON-RPC 2.0 does not allow {extra}: {text[:300]}")
        try:
            conformance.check(message)
        except AssertionError as error:
            problems.append(f"{where}: {error}")
    return problems


def check_log(path: Path) -> tuple[int, list[str]]:
    """``(agent lines, problems)`` of a tee log, each agent process (connection) apart."""
    by_pid: dict[int, list[dict[str, Any]]] = {}
    if path.exists():
        for raw in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(raw)
            by_pid.setdefault(int(record["pid"]), []).append(record)
    problems: list[str] = []
    for pid, records in by_pid.items():
        problems += [f"agent pid {pid}, {problem}" for problem in check_connection(records)]
    lines = sum(1 for records in by_pid.values() for r in records if r.get("from") == "agent")
    return lines, problems


@pytest.fixture
async def link() -> AsyncIterator[EmbeddedLink]:
    """The embedded runtime the in-process adapter tests drive (in-memory store, scripted
    model with no pacing); test_connected.py overrides it with a connected link."""
    config = ServeConfig(db=":memory:", scripted_pace=0.0, shutdown_grace=1.0)
    async with open_embedded_link(config) as opened:
        yield opened


@pytest.fixture
def acp_traffic(tmp_path: Path) -> Iterator[AcpTraffic]:
    """Records the agents' stdio; their output must conform even if the test forgot to ask."""
    traffic = AcpTraffic(tmp_path / "acp-traffic.jsonl")
    yield traffic
    if not traffic.checked and traffic.log.exists():
        _, problems = check_log(traffic.log)
        assert not problems, "the agent broke the ACP schema:\n" + "\n".join(problems[:40])


@attrs.frozen
class Finished:
    """A finished subprocess: its status, and stdout and stderr as text."""

    argv: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[dict[str, Any]]:
        """stdout's JSON-object lines (anything else on stdout fails the test)."""
        found = []
        for line in self.stdout.splitlines():
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                pytest.fail(f"not a JSON line on stdout of {self.describe()}: {line!r}")
            assert isinstance(value, dict), line
            found.append(value)
        return found

    def describe(self) -> str:
        return f"`{shlex.join(self.argv)}` (exit {self.returncode}); stderr:\n{self.stderr[-4000:]}"


async def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    time_limit: float = PROCESS_TIMEOUT,
) -> Finished:
    """Run *argv* to completion (killed, and the test failed, after *time_limit* s)."""
    try:
        with trio.fail_after(time_limit):
            done = await trio.run_process(
                list(argv),
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=dict(env) if env is not None else child_env(),
                cwd=cwd,
            )
    except trio.TooSlowError:
        pytest.fail(f"`{shlex.join(argv)}` did not finish within {time_limit} s")
    return Finished(
        argv,
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


class LineReader:
    """Reads a child's stdout line by line (for acting while it still runs)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""
        self.lines: list[str] = []
        self.eof = False

    async def next_line(self) -> str | None:
        """The next line (without its newline); None at end of stream."""
        while b"\n" not in self._buffer:
            data = await self._stream.receive_some(65536)
            if not data:
                self.eof = True
                if self._buffer:
                    line, self._buffer = self._buffer, b""
                    self.lines.append(line.decode("utf-8", "replace"))
                    return self.lines[-1]
                return None
            self._buffer += data
        raw, _, self._buffer = self._buffer.partition(b"\n")
        self.lines.append(raw.decode("utf-8", "replace"))
        return self.lines[-1]

    async def rest(self) -> list[str]:
        """Every line up to end of stream."""
        while await self.next_line() is not None:
            pass
        return self.lines

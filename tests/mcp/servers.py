"""Real MCP servers for the tests (servers we did not write), and a stdio wire tap.

* ``mcp-server-time`` (PyPI, in the venv): stdio, tools ``get_current_time`` and
  ``convert_time``, annotated read-only.
* ``@modelcontextprotocol/server-everything`` (npm, pinned in ``.ci/mcp``):
  ``AGENT_RUNTIME_TEST_MCP_EVERYTHING`` names its executable, else
  ``.ci/mcp/node_modules/.bin/mcp-server-everything`` is used if present. Without
  it the tests that need it skip, except under ``CI=true``, where they fail.
  After ``initialize`` it registers more tools, which sends
  ``notifications/tools/list_changed``.

:class:`Tap` wraps a stdio server in ``tap.py``, which logs every line either
way, so a test can see what the server was sent (``notifications/cancelled``)
and learn the real server's pid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import attrs
import trio

from agents._core._mcp import McpServerConfig, StdioTransport
from tests.components import missing, require_executable

ROOT = Path(__file__).resolve().parents[2]
TAP = Path(__file__).resolve().parent / "tap.py"
EVERYTHING_ENV = "AGENT_RUNTIME_TEST_MCP_EVERYTHING"
LOCAL_EVERYTHING = ROOT / ".ci" / "mcp" / "node_modules" / ".bin" / "mcp-server-everything"
#: Generous: node's first start on a cold machine is slow; a hang still ends the test.
WAIT = 20.0

T = TypeVar("T")


def require_everything() -> Path:
    reason = f"no mcp-server-everything: set {EVERYTHING_ENV} or run `npm ci` in .ci/mcp"
    return require_executable(EVERYTHING_ENV, LOCAL_EVERYTHING, reason)


def require_time() -> Path:
    executable = Path(sys.executable).parent / "mcp-server-time"
    if not os.access(executable, os.X_OK):
        missing(f"no mcp-server-time next to {sys.executable}: pip install mcp-server-time")
    return executable


def time_config(name: str = "time", **options: Any) -> McpServerConfig:
    return McpServerConfig(name, StdioTransport(str(require_time())), **options)


def everything_config(
    name: str = "every", tap: Tap | None = None, stubborn: bool = False, **options: Any
) -> McpServerConfig:
    transport = StdioTransport(str(require_everything()), ("stdio",))
    if tap is not None:
        transport = tap.wrap(transport, stubborn=stubborn)
    return McpServerConfig(name, transport, **options)


@attrs.frozen
class Tap:
    """The log of ``tap.py`` around one stdio server (all its runs append to it)."""

    log: Path

    def wrap(self, transport: StdioTransport, *, stubborn: bool = False) -> StdioTransport:
        flags = ("--stubborn",) if stubborn else ()
        return attrs.evolve(
            transport,
            command=sys.executable,
            args=(str(TAP), str(self.log), *flags, "--", transport.command, *transport.args),
        )

    def messages(self, direction: str = "c2s") -> list[dict[str, Any]]:
        """The JSON-RPC messages logged so far in *direction* (``c2s``: sent to the server)."""
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            entry = json.loads(line)
            if entry["dir"] == direction and isinstance(entry["message"], dict):
                out.append(entry["message"])
        return out

    def pids(self) -> dict[str, int] | None:
        """``{"tap": PID, "server": PID}`` of the latest run, once it started."""
        path = Path(f"{self.log}.pid")
        return json.loads(path.read_text()) if path.exists() else None

    def request_id(self, method: str, tool: str | None = None) -> Any:
        """The id of the last request *method* (for *tool*) sent, or ``None``."""
        found = None
        for message in self.messages():
            params = message.get("params") or {}
            wanted = tool is None or params.get("name") == tool
            if message.get("method") == method and "id" in message and wanted:
                found = message["id"]
        return found

    def cancelled(self, request_id: Any) -> bool:
        return any(
            m.get("method") == "notifications/cancelled"
            and (m.get("params") or {}).get("requestId") == request_id
            for m in self.messages()
        )

    async def wait(self, condition: Callable[[], T | None], what: str) -> T:
        """Until *condition* (reading the log, written by another process) gives a value.

        Polling is right here: the log is outside this process.
        """
        with trio.move_on_after(WAIT):
            while True:
                value = condition()
                if value is not None and value is not False:
                    return value
                await trio.sleep(0.02)
        raise AssertionError(f"the tap log never showed {what}: {self.messages()}")


def children() -> set[int]:
    """The pids of this process's children (Linux)."""
    pids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            pids.update(int(p) for p in f.read().split())
    return pids


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name: state, parent pid, ..."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()


def parent_of(pid: int) -> int:
    """The pid of *pid*'s parent (Linux ``/proc``)."""
    return int(_stat(pid)[1])


def alive(pid: int) -> bool:
    """Whether *pid* runs (a zombie, exited but unreaped, counts as gone)."""
    try:
        return _stat(pid)[0] != "Z"
    except FileNotFoundError:
        return False


async def wait_gone(pids: set[int], within: float = 5.0) -> None:
    """Until none of *pids* runs: a killed process takes a moment to be torn down.

    Polling is right here: the processes are not ours to wait for (grandchildren).
    """
    with trio.move_on_after(within):
        while True:
            if not any(alive(pid) for pid in pids):
                return
            await trio.sleep(0.02)
    assert not any(alive(pid) for pid in pids), f"still running: {pids}"


def listening_port(pid: int) -> int | None:
    """The TCP port *pid* listens on, from its socket fds and ``/proc/net/tcp{,6}``."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    except OSError:
        return None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.read().splitlines()[1:]:
                fields = row.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    return int(fields[1].rpartition(":")[2], 16)
    return None


@asynccontextmanager
async def everything_http() -> AsyncIterator[str]:
    """``mcp-server-everything streamableHttp`` on a free port; yields its endpoint URL.

    ``PORT=0`` lets the kernel pick the port (no race over a "free" one), but the
    server then does not say which: it is read from the child's listening socket.
    """
    executable = require_everything()
    process = await trio.lowlevel.open_process(
        [str(executable), "streamableHttp"],
        env={**os.environ, "PORT": "0"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port = None
        with trio.move_on_after(WAIT):
            # Polling the child's sockets: it is another process.
            while (port := listening_port(process.pid)) is None:
                if process.poll() is not None:
                    raise AssertionError(f"mcp-server-everything exited: {process.returncode}")
                await trio.sleep(0.02)
        assert port is not None, "mcp-server-everything did not listen"
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        with trio.CancelScope(shield=True):
            process.terminate()
            with trio.move_on_after(5) as scope:
                await process.wait()
            if scope.cancelled_caught:
                process.kill()
                await process.wait()

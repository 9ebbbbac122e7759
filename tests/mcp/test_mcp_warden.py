"""The warden that keeps a stdio MCP server from outliving the runtime (real processes).

A stand-in runtime (a small Python process) starts the warden as the SDK does (in
a session of its own, stdin a pipe it holds) and is then SIGKILLed; the server is
a Python process that ignores its stdin closing, as a server busy in a call does.
Exits are awaited on pidfds (the processes are not our children), never by sleeping.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from agents._core._mcp import StdioTransport
from agents._tools import _mcp_warden
from agents._tools._mcp_transports import _warded

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the warden is Linux only")

WARDEN = _mcp_warden.__file__
#: A server that says its pid, then runs until killed (``stubborn``: ignoring SIGTERM).
SERVER = """
import os, signal, sys, time
if "stubborn" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("server", os.getpid(), flush=True)
while True:
    time.sleep(3600)
"""
#: Starts the warden (argv: the server's command) as the SDK would, says its pid, waits.
RUNTIME = f"""
import os, subprocess, sys
warden = subprocess.Popen(
    [sys.executable, "-I", "-S", {WARDEN!r}, str(os.getpid()), "--", *sys.argv[1:]],
    stdin=subprocess.PIPE,
    start_new_session=True,
)
print("warden", warden.pid, flush=True)
warden.wait()
"""
#: Bounds every wait on a process: the warden's grace, and a loaded machine's slack.
WITHIN = _mcp_warden.GRACE + 10.0


class Lines:
    """The lines a process writes to the pipe it shares with its descendants."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream, self._buffer = stream, b""

    async def pids(self, *names: str) -> dict[str, int]:
        """The pids the processes *names* say (``server PID``), in whichever order they do."""
        said = dict(line.split() for line in [await self.next() for _ in names])
        assert said.keys() == set(names), said
        return {name: int(pid) for name, pid in said.items()}

    async def next(self) -> str:
        with trio.fail_after(WITHIN):
            while b"\n" not in self._buffer:
                chunk = await self._stream.receive_some()
                assert chunk, f"the pipe closed after {self._buffer!r}"
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    async def end(self) -> None:
        """Until every writer has closed the pipe (no process holds it any more)."""
        with trio.fail_after(WITHIN):
            while await self._stream.receive_some():
                pass


async def exited(pid: int) -> None:
    """Until *pid* has exited (a pidfd is readable then, whoever its parent is)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        with trio.fail_after(WITHIN):
            await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


def warded(runtime_pid: int, command: list[str]) -> list[str]:
    """The warden's command line, as the runtime writes it (``_warded``)."""
    return [sys.executable, "-I", "-S", WARDEN, str(runtime_pid), "--", *command]


def server(*flags: str) -> list[str]:
    return [sys.executable, "-c", SERVER, *flags]


@asynccontextmanager
async def runtime_with_warded(*flags: str) -> AsyncIterator[tuple[trio.Process, int, int, Lines]]:
    """A stand-in runtime running a server under the warden: (runtime, warden pid, server pid)."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", RUNTIME, *server(*flags)], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        lines = Lines(process.stdout)
        pids = await lines.pids("warden", "server")
        yield process, pids["warden"], pids["server"], lines
    finally:
        process.kill()
        await process.wait()
        await process.stdout.aclose()


async def test_a_dead_runtime_takes_its_server_with_it() -> None:
    async with runtime_with_warded() as (runtime, warden, served, lines):
        runtime.kill()  # SIGKILL: no chance to stop anything; the server's stdin closes
        await exited(served)
        await exited(warden)
        await lines.end()


async def test_a_server_ignoring_sigterm_is_killed_after_the_grace() -> None:
    async with runtime_with_warded("stubborn") as (runtime, warden, served, lines):
        runtime.kill()
        await exited(served)
        await exited(warden)
        await lines.end()


async def test_sigterm_stops_the_server_and_the_status_says_so() -> None:
    process = await trio.lowlevel.open_process(
        warded(os.getpid(), server()),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None
    try:
        served = (await Lines(process.stdout).pids("server"))["server"]
        process.send_signal(signal.SIGTERM)  # the warden alone: it passes it on to the group
        with trio.fail_after(WITHIN):
            assert await process.wait() == 128 + signal.SIGTERM
        await exited(served)
    finally:
        process.kill()
        await process.wait()
        await process.stdout.aclose()


def run_warded(command: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        warded(os.getpid(), command),
        input=stdin,
        capture_output=True,
        start_new_session=True,
        timeout=WITHIN,
        check=False,
    )


def test_the_server_has_the_stdio_and_its_status_is_passed_on() -> None:
    echo = run_warded(["sh", "-c", 'read line; echo "got $line"; echo oops >&2; exit 3'], b"hi\n")
    assert (echo.returncode, echo.stdout, echo.stderr) == (3, b"got hi\n", b"oops\n")
    assert run_warded(["sh", "-c", "kill -KILL $$"]).returncode == 128 + signal.SIGKILL


def test_a_command_that_cannot_run_says_why() -> None:
    missing = run_warded(["no-such-mcp-server"])
    assert missing.returncode == 127
    assert missing.stderr == b"cannot run 'no-such-mcp-server': No such file or directory\n"


def test_a_runtime_that_is_not_the_parent_starts_nothing(tmp_path: Path) -> None:
    # Reparented before it looked: the runtime is gone, so the server must not start.
    marker = tmp_path / "started"
    done = subprocess.run(
        warded(os.getppid(), ["touch", str(marker)]),
        timeout=WITHIN,
        check=False,
    )
    assert done.returncode == 0 and not marker.exists()


def test_only_a_command_that_can_run_is_warded(tmp_path: Path) -> None:
    command, args = _warded(StdioTransport("sh", ("-c", "true")))
    assert [command, *args] == warded(os.getpid(), ["sh", "-c", "true"])
    # Started directly, for the SDK's spawn error to say why it cannot start.
    assert _warded(StdioTransport("no-such-mcp-server")) == ("no-such-mcp-server", [])
    assert _warded(StdioTransport("./absent", cwd=str(tmp_path))) == ("./absent", [])

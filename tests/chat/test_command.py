"""Stopping a command the chat client runs: the whole process group, SIGTERM then SIGKILL.

The commands are real shells whose children a naive kill (the shell's pid only)
would leave behind. They report their pids through a FIFO, so the tests wait for
the processes to exist without sleeping.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest
import trio

from server.chat._command import ToolFailure, run_command

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads process groups in /proc")

# Bounds every wait on a real process: generous, but a hang fails instead of blocking.
LIMIT = 20.0
# Far longer than any test: if this sleep is still there afterwards, it was not killed.
LONG = "sleep 300"


def live_members(group: int) -> list[int]:
    """Pids of process group *group* that are alive (zombies are dead, just not reaped)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[2] == str(group) and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def make_fifo(directory: Path, name: str = "pids.fifo") -> Path:
    path = directory / name
    os.mkfifo(path)
    return path


@asynccontextmanager
async def fifo_lines(path: Path) -> AsyncIterator[trio.abc.ReceiveStream]:
    """The read end of FIFO *path*, kept open for writing too so a read waits for data."""
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    keep_open = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        async with trio.lowlevel.FdStream(reader) as stream:
            yield stream
    finally:
        os.close(keep_open)


async def read_pid(stream: trio.abc.ReceiveStream) -> int:
    data = b""
    with trio.fail_after(LIMIT):
        while b"\n" not in data:
            data += await stream.receive_some(64)
    return int(data.split()[0])


def kill_leftovers(group: int) -> None:
    """Never leave a test's processes running, whatever the test found."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)


async def test_stop_kills_the_whole_group_and_says_so(tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path)
    stop = trio.Event()
    failure: list[str] = []
    command = f"sh -c '{LONG} & echo $! > {fifo.name}; wait'"

    async def run() -> None:
        with pytest.raises(ToolFailure) as info:
            await run_command(command, tmp_path, LIMIT * 3, 1000, stop=stop, grace=0.5)
        failure.append(str(info.value))

    async with fifo_lines(fifo) as pids:
        with trio.fail_after(LIMIT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run)
                group = os.getpgid(await read_pid(pids))
                assert group != os.getpgid(0)  # its own group, not ours
                stop.set()
    try:
        assert failure and "killed after" in failure[0], failure
        assert "because the user cancelled the turn" in failure[0]
        assert live_members(group) == []
    finally:
        kill_leftovers(group)


async def test_sigterm_comes_first_so_programs_can_clean_up(tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path)
    stop = trio.Event()
    # The trap runs only on SIGTERM (a SIGKILL cannot be caught).
    trap = "trap 'echo cleaned > cleanup.txt; exit 1' TERM"
    # The child reports itself once it runs, past the window where it still has the trap.
    command = f"{trap}; sh -c 'echo $$ > {fifo.name}; exec {LONG}' & wait"
    async with fifo_lines(fifo) as pids, trio.open_nursery() as nursery:

        async def run() -> None:
            with pytest.raises(ToolFailure):
                await run_command(command, tmp_path, LIMIT * 3, 1000, stop=stop, grace=5.0)

        nursery.start_soon(run)
        group = os.getpgid(await read_pid(pids))
        stop.set()
    try:
        assert (tmp_path / "cleanup.txt").read_text() == "cleaned\n"
        assert live_members(group) == []
    finally:
        kill_leftovers(group)


async def test_what_ignores_sigterm_gets_sigkill_after_the_grace(tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path)
    # An ignored signal stays ignored in the children: nothing here dies of SIGTERM.
    command = f"trap '' TERM; sh -c '{LONG} & echo $! > {fifo.name}; wait'"
    async with fifo_lines(fifo) as pids:
        with trio.fail_after(LIMIT):
            async with trio.open_nursery() as nursery:

                async def run() -> None:
                    await run_command(command, tmp_path, LIMIT * 3, 1000, grace=0.2)

                nursery.start_soon(run)
                group = os.getpgid(await read_pid(pids))
                start = trio.current_time()
                nursery.cancel_scope.cancel()  # as when the client quits
    try:
        assert trio.current_time() - start >= 0.2  # it did wait for the grace period
        assert live_members(group) == []
    finally:
        kill_leftovers(group)

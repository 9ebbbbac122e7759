"""A cancelled turn kills the command it runs, whole process group, against the real server.

The human is a :class:`Keyboard` whose next line the test types when it wants;
the client asking for a line again is the sign that the turn is over and the
client is idle, so the test checks the processes at that moment, while the client
is still running (a quitting client kills what it runs anyway).
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import attrs
import pytest
import trio

from server.chat import ChatOptions, chat_main
from tests.chat.test_command import (
    LONG,
    fifo_lines,
    kill_leftovers,
    live_members,
    make_fifo,
    read_pid,
)
from tests.server.helpers import ALICE, STEP, LiveServer

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads process groups in /proc")

# A command whose child a kill of the shell alone leaves behind; it reports the child's pid.
COMMAND = f"sh -c '{LONG} & echo $! > pids.fifo; wait'"


class Keyboard:
    """Lines typed when the test says so; counts how often the client asked for one."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[str | None](8)
        self.prompts = 0
        self._prompted = trio.Event()

    async def readline(self) -> str | None:
        self.prompts += 1
        self._prompted.set()
        self._prompted = trio.Event()
        return await self._receive.receive()

    async def type(self, line: str | None) -> None:
        await self._send.send(line)

    async def wait_for_prompt(self, count: int) -> None:
        """Until the client has asked for its *count*-th line."""
        with trio.fail_after(STEP):
            while self.prompts < count:
                await self._prompted.wait()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


def options(server: LiveServer, root: Path, session: str | None = None) -> ChatOptions:
    return ChatOptions(
        url=server.url,
        token=ALICE,
        workspace=root,
        session=session,
        yes=True,
        handle_signals=False,
        backoff=0.01,
        kill_grace=0.5,
    )


async def test_ctrl_c_kills_the_command_and_its_result_says_so(
    server: LiveServer, root: Path, nursery: trio.Nursery
) -> None:
    fifo = make_fifo(root)
    keyboard = Keyboard()
    ctrl_c, interrupts = trio.open_memory_channel[object](1)
    out = io.StringIO()
    done = trio.Event()

    async def run_client() -> None:
        await chat_main(
            options(server, root), out=out, err=out, env={}, lines=keyboard, interrupts=interrupts
        )
        done.set()

    async with fifo_lines(fifo) as pids:
        nursery.start_soon(run_client)
        await keyboard.wait_for_prompt(1)
        await keyboard.type(f"run {COMMAND}")
        group = os.getpgid(await read_pid(pids))
    try:
        await ctrl_c.send(None)
        await keyboard.wait_for_prompt(2)  # the turn ended; the client waits for the human
        transcript = out.getvalue()
        assert live_members(group) == [], transcript
        assert "= failed: error: execute_command: killed after" in transcript
        assert "because the user cancelled the turn" in transcript
        assert "== turn cancelled" in transcript
    finally:
        kill_leftovers(group)
        await keyboard.type("/quit")
        with trio.fail_after(STEP):
            await done.wait()


async def test_a_turn_cancelled_elsewhere_kills_the_command(
    server: LiveServer, root: Path, nursery: trio.Nursery
) -> None:
    session_id = await server.new_session()
    fifo = make_fifo(root)
    keyboard = Keyboard()
    out = io.StringIO()
    done = trio.Event()

    async def run_client() -> None:
        await chat_main(options(server, root, session_id), out=out, err=out, env={}, lines=keyboard)
        done.set()

    async with fifo_lines(fifo) as pids:
        nursery.start_soon(run_client)
        await keyboard.wait_for_prompt(1)
        await keyboard.type(f"run {COMMAND}")
        group = os.getpgid(await read_pid(pids))
    try:
        async with server.ws(session_id) as other_ide:
            ack = await other_ide.command({"type": "cancel", "id": "other-cancel"})
        assert ack["status"] == "accepted", ack
        await keyboard.wait_for_prompt(2)
        transcript = out.getvalue()
        assert live_members(group) == [], transcript
        assert "[stopped the tool call: no longer pending" in transcript
        assert "== turn cancelled" in transcript
    finally:
        kill_leftovers(group)
        await keyboard.type("/quit")
        with trio.fail_after(STEP):
            await done.wait()


async def test_ctrl_c_in_one_shot_mode_exits_130(server: LiveServer, root: Path) -> None:
    fifo = make_fifo(root)
    ctrl_c, interrupts = trio.open_memory_channel[object](1)
    opts = attrs.evolve(options(server, root), message=f"run {COMMAND}")
    out = io.StringIO()
    code: list[int] = []

    async def run_client() -> None:
        code.append(await chat_main(opts, out=out, err=out, env={}, interrupts=interrupts))

    async with fifo_lines(fifo) as pids:
        with trio.fail_after(STEP):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_client)
                group = os.getpgid(await read_pid(pids))
                await ctrl_c.send(None)
    try:
        assert code == [130], out.getvalue()
        assert "because the user cancelled the turn" in out.getvalue()
        assert live_members(group) == []
    finally:
        kill_leftovers(group)

"""``agent-runtime chat`` driven like a human in a pseudo-terminal, against a subprocess server.

Both programs are real subprocesses (``python -m server serve|chat``); pexpect
plays the keyboard. These are plain (sync) tests: pexpect blocks, so no trio here.
"""

from __future__ import annotations

import os
import re
import select
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.chat.test_command import LONG, kill_leftovers, live_members

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals need POSIX"),
]

TOKEN = "pty-token"
# Bounds every single expect: start-up of a Python process included, but never a hang.
TIMEOUT = 30


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EDITOR", "VISUAL")}
    env.update({"AGENT_RUNTIME_TOKENS": f"{TOKEN}:alice", "NO_COLOR": "1", "TERM": "dumb"})
    env.pop("AGENT_RUNTIME_CONFIG", None)
    return env


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("pty-server")
    server = pexpect.spawn(
        sys.executable,
        ["-m", "server", "serve", "--port", "0", "--db", str(home / "db"), "--pace", "0.02"],
        cwd=str(home),
        env=child_env(),
        encoding="utf-8",
        timeout=TIMEOUT,
    )
    try:
        server.expect(r"listening on (http://[0-9.]+:\d+)")
        match = server.match
        assert isinstance(match, re.Match)
        yield str(match.group(1))
    finally:
        server.kill(2)  # SIGINT: graceful shutdown
        server.expect(pexpect.EOF)
        server.close()


def spawn_chat(url: str, workspace: Path, *extra: str) -> pexpect.spawn[str]:
    chat = pexpect.spawn(
        sys.executable,
        [
            *("-m", "server", "chat", "--url", url, "--token", TOKEN),
            *("--workspace", str(workspace), *extra),
        ],
        cwd=str(workspace),
        env=child_env(),
        encoding="utf-8",
        timeout=TIMEOUT,
    )
    chat.expect_exact("you> ")
    return chat


def test_approve_then_reject(server_url: str, tmp_path: Path) -> None:
    chat = spawn_chat(server_url, tmp_path)
    try:
        chat.sendline("create hello.py with print('hi')")
        chat.expect_exact("+print('hi')")  # the diff preview of the new file
        chat.expect_exact("[s] approve for this session > ")
        chat.sendline("a")
        chat.expect_exact("= ok: created hello.py")
        chat.expect_exact("== turn completed")
        chat.expect_exact("you> ")
        assert (tmp_path / "hello.py").read_text() == "print('hi')"

        chat.sendline("create other.py with nope")
        chat.expect_exact("[s] approve for this session > ")
        chat.sendline("r")
        chat.expect_exact("feedback for the agent (optional) > ")
        chat.sendline("not today")
        chat.expect_exact("= failed: rejected by user: not today")
        chat.expect_exact("== turn completed")
        chat.expect_exact("you> ")
        assert not (tmp_path / "other.py").exists()

        chat.sendline("/quit")
        chat.expect(pexpect.EOF)
    finally:
        chat.close(force=True)
    assert chat.exitstatus == 0


def test_ctrl_c_cancels_the_turn_then_quits(server_url: str, tmp_path: Path) -> None:
    chat = spawn_chat(server_url, tmp_path)
    try:
        chat.sendline("stream 2000 words")
        chat.expect_exact("alpha")
        chat.sendintr()
        chat.expect_exact("cancelling the turn")
        chat.expect_exact("== turn cancelled")
        chat.expect_exact("you> ")
        chat.sendintr()
        chat.expect(pexpect.EOF)
    finally:
        chat.close(force=True)
    assert chat.exitstatus == 130


def read_pid_from_fifo(path: Path) -> int:
    """The pid a command writes to FIFO *path*, waiting at most TIMEOUT for it."""
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    keep_open = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # so a read waits for data
    try:
        data = b""
        while b"\n" not in data:
            ready, _, _ = select.select([reader], [], [], TIMEOUT)
            assert ready, "the command did not report its pid"
            data += os.read(reader, 64)
        return int(data.split()[0])
    finally:
        os.close(keep_open)
        os.close(reader)


@pytest.mark.skipif(sys.platform != "linux", reason="reads process groups in /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_client_killed_by_a_signal_kills_its_command(
    server_url: str, tmp_path: Path, signum: signal.Signals
) -> None:
    os.mkfifo(tmp_path / "pids.fifo")
    chat = spawn_chat(server_url, tmp_path, "--yes")
    group = None
    try:
        chat.sendline(f"run sh -c '{LONG} & echo $! > pids.fifo; wait'")
        group = os.getpgid(read_pid_from_fifo(tmp_path / "pids.fifo"))
        chat.kill(signum)
        chat.expect(pexpect.EOF)
        chat.close()
        assert live_members(group) == []
        assert chat.exitstatus == 128 + signum
    finally:
        chat.close(force=True)
        if group is not None:
            kill_leftovers(group)

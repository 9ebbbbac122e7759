"""``agent-runtime chat`` driven like a human in a pseudo-terminal, against a subprocess server.

Both programs are real subprocesses (``python -m server serve|chat``); pexpect
plays the keyboard. These are plain (sync) tests: pexpect blocks, so no trio here.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

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


def spawn_chat(url: str, workspace: Path) -> pexpect.spawn[str]:
    chat = pexpect.spawn(
        sys.executable,
        ["-m", "server", "chat", "--url", url, "--token", TOKEN, "--workspace", str(workspace)],
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
        chat.expect_exact("== turn cancelled ==")
        chat.expect_exact("you> ")
        chat.sendintr()
        chat.expect(pexpect.EOF)
    finally:
        chat.close(force=True)
    assert chat.exitstatus == 130

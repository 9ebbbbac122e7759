"""The chat prompt in a real terminal: slash commands, history, multi-line input, undo.

Like ``test_pty``: the server and the client are real subprocesses and pexpect
types. ``TERM=xterm`` makes prompt_toolkit draw its full prompt (``test_pty`` covers
the dumb-terminal one), so the prompt shows as ``you>`` followed by cursor
movements; CPR is off because pexpect does not answer cursor-position queries.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import pexpect
import pytest

from tests.chat.test_pty import TIMEOUT, TOKEN, child_env
from tests.chat.test_pty import server_url as server_url  # the fixture, shared

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals need POSIX"),
]

PROMPT = "you>"
UP = "\x1b[A"
ESC_ENTER = "\x1b\r"


def spawn(url: str, workspace: Path, *extra: str) -> pexpect.spawn[str]:
    return start(url, workspace, *extra)[0]


def start(url: str, workspace: Path, *extra: str) -> tuple[pexpect.spawn[str], str]:
    """The client, once it prompts, and the id of the session it created."""
    env = child_env() | {"TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"}
    chat = pexpect.spawn(
        sys.executable,
        [
            *("-m", "server", "chat", "--url", url, "--token", TOKEN),
            *("--workspace", str(workspace), *extra),
        ],
        cwd=str(workspace),
        env=env,
        encoding="utf-8",
        timeout=TIMEOUT,
        dimensions=(40, 200),
    )
    chat.expect(r"\[session (ses_[A-Za-z0-9_-]+) ")
    match = chat.match
    assert isinstance(match, re.Match)
    chat.expect_exact(PROMPT)
    return chat, str(match.group(1))


def turn(chat: pexpect.spawn[str], line: str, *expected: str) -> None:
    """Send *line*, expect each of *expected* in order, then the turn's end and the prompt."""
    chat.sendline(line)
    for text in expected:
        chat.expect_exact(text)
    chat.expect_exact("== turn completed")
    chat.expect_exact(PROMPT)


def command(chat: pexpect.spawn[str], line: str, *expected: str) -> None:
    """Send the slash command *line*, expect *expected* in order, then the prompt."""
    chat.sendline(line)
    for text in expected:
        chat.expect_exact(text)
    chat.expect_exact(PROMPT)


def quit_(chat: pexpect.spawn[str]) -> None:
    chat.sendline("/quit")
    chat.expect(pexpect.EOF)
    chat.close()
    assert chat.exitstatus == 0


def test_slash_commands_are_handled_by_the_client(server_url: str, tmp_path: Path) -> None:
    chat, session = start(server_url, tmp_path)
    try:
        command(chat, "/help", "/agent NAME", "/auto-approve PATTERN", "Esc then Enter")
        command(chat, "/frobnicate now", "unknown command /frobnicate; /help lists them")
        command(chat, "/agent", "  coder", "usage: /agent NAME")
        command(chat, "/agent ask", "[agent: ask]")
        command(chat, "/agent nobody", "! /agent refused [")
        command(chat, "/model", "  scripted (4,096 tokens, the server's)", "usage: /model NAME")
        command(chat, "/model other-model", "[model: other-model]")
        command(chat, "/model default", "[model: the default]")
        command(chat, "/agent coder", "[agent: coder]")
        command(chat, "/auto-approve write_*", "auto-approving tools matching write_*")
        turn(chat, "create a.txt with hello", "(/auto-approve write_*)", "= ok: created a.txt")
        command(chat, "/cost", "[this session: ", " model calls, tokens ")
        turn(chat, "/compact", "[compacting the session's history]")
        command(chat, "/sessions", f"* {session}")
        # /new and /session ID: another session in the same terminal, and back.
        chat.sendline("/new")
        chat.expect(r"\[session (ses_[A-Za-z0-9_-]+) \|")
        match = chat.match
        assert isinstance(match, re.Match) and match.group(1) != session
        chat.expect_exact(PROMPT)
        command(chat, f"/session {session}", f"[session {session} |")
        command(chat, "/sessions", f"* {session}")
        quit_(chat)
    finally:
        chat.close(force=True)
    assert (tmp_path / "a.txt").read_text() == "hello"
    # None of the commands reached the model: the one user message is the one sent.
    response = httpx.get(
        f"{server_url}/v1/sessions/{session}/events",
        params={"limit": 1000},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    events = response.json()["events"]
    messages = [e["content"] for e in events if e["type"] == "user.message"]
    assert messages == ["create a.txt with hello"]


def test_undo_and_diff(server_url: str, tmp_path: Path) -> None:
    (tmp_path / "edit.txt").write_text("old line\n")
    chat = spawn(server_url, tmp_path, "--yes")
    try:
        turn(chat, "create new.txt with fresh", "= ok: created new.txt")
        turn(chat, "edit edit.txt replace old with new", "= ok: edited edit.txt")
        command(
            chat, "/diff", "--- a/edit.txt", "-old line", "+new line", "+++ b/new.txt", "+fresh"
        )
        command(chat, "/undo", "undid the file changes of 1 turn", "restored edit.txt")
        assert (tmp_path / "edit.txt").read_text() == "old line\n"
        (tmp_path / "new.txt").write_text("changed by someone else")
        command(chat, "/undo", "! /undo refused: new.txt changed since the agent wrote it")
        assert (tmp_path / "new.txt").read_text() == "changed by someone else"
        (tmp_path / "new.txt").write_text("fresh")
        command(chat, "/undo", "removed new.txt")
        assert sorted(p.name for p in tmp_path.iterdir()) == [".agent-runtime", "edit.txt"]
        command(chat, "/undo", "nothing to undo")
        quit_(chat)
    finally:
        chat.close(force=True)


def test_history_survives_a_restart_of_the_client(server_url: str, tmp_path: Path) -> None:
    chat = spawn(server_url, tmp_path, "--yes")
    try:
        turn(chat, "create recalled.txt with from the first run", "= ok: created recalled.txt")
        chat.sendeof()  # Ctrl-D: exit without adding anything to the history
        chat.expect(pexpect.EOF)
    finally:
        chat.close(force=True)
    assert chat.exitstatus == 0
    (tmp_path / "recalled.txt").unlink()

    chat = spawn(server_url, tmp_path, "--yes")
    try:
        chat.send(UP)
        chat.expect_exact("create recalled.txt")  # the recalled line, redrawn
        turn(chat, "", "= ok: created recalled.txt")
        quit_(chat)
    finally:
        chat.close(force=True)
    assert (tmp_path / "recalled.txt").read_text() == "from the first run"


def test_multi_line_input(server_url: str, tmp_path: Path) -> None:
    chat = spawn(server_url, tmp_path, "--yes")
    try:
        chat.sendline("create backslash.txt with line one\\")
        turn(chat, "line two", "= ok: created backslash.txt")
        chat.send("create escape.txt with first" + ESC_ENTER)
        turn(chat, "second", "= ok: created escape.txt")
        quit_(chat)
    finally:
        chat.close(force=True)
    assert (tmp_path / "backslash.txt").read_text() == "line one\nline two"
    assert (tmp_path / "escape.txt").read_text() == "first\nsecond"

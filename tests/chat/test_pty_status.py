"""The status line and live command output of ``agent-runtime chat`` on a real pseudo-terminal.

The chat client and the server are subprocesses (see test_pty.py); the command the
agent runs waits on a FIFO, so the test decides when it ends, and sees the status
line while it waits, without sleeping.
"""

from __future__ import annotations

import io
import os
import re
import sys
from pathlib import Path

import pexpect
import pytest

from tests.chat.test_pty import TIMEOUT, TOKEN, child_env, server_url

__all__ = ["server_url"]  # the module-scoped server fixture, shared with test_pty

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals need POSIX"),
]

# prompt_toolkit's cursor moves and modes: screen() ignores them, it only follows
# the rows of the transcript.
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]")
COMMAND = "sh -c 'printf \"  indented\\tout\\n\"; read x < gate.fifo; echo done'"


def screen(output: str) -> list[str]:
    """The rows a terminal shows after *output*, following ``\\r`` and ``\\n``."""
    lines, row, column = [""], 0, 0
    for char in ESCAPES.sub("", output):
        if char == "\n":
            row, column = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif char == "\r":
            column = 0
        else:
            line = lines[row].ljust(column)
            lines[row] = line[:column] + char + line[column + 1 :]
            column += 1
    return [line.rstrip(" ") for line in lines]


def test_status_line_and_live_output_while_a_command_runs(server_url: str, tmp_path: Path) -> None:
    gate = tmp_path / "gate.fifo"
    os.mkfifo(gate)
    # A terminal that can rewrite lines, without colour: the status line uses no escapes.
    env = child_env() | {"TERM": "xterm", "NO_COLOR": "1"}
    chat = pexpect.spawn(
        sys.executable,
        [
            *("-m", "server", "chat", "--url", server_url, "--token", TOKEN),
            *("--workspace", str(tmp_path), "--yes"),
        ],
        cwd=str(tmp_path),
        env=env,
        encoding="utf-8",
        timeout=TIMEOUT,
        dimensions=(24, 120),
    )
    seen = io.StringIO()
    chat.logfile_read = seen
    try:
        chat.expect_exact("you>")
        chat.send(f"run {COMMAND}\r")
        chat.expect_exact("  |   indented\tout")  # shown while the command still runs
        chat.expect(r"running execute_command `sh -c [^\r\n]*\(\d+\.\d s\)")
        with gate.open("w") as writer:  # the command reads it and finishes
            writer.write("go\n")
        chat.expect_exact("= ok: exit 0")
        chat.expect_exact("== turn completed")
        chat.expect_exact("you>")
        chat.send("/quit\r")
        chat.expect(pexpect.EOF)
    finally:
        chat.close(force=True)
    assert chat.exitstatus == 0
    output = seen.getvalue()
    running = output[output.index("  |   indented") : output.index("= ok: exit 0")]
    assert "running execute_command" in running
    assert "\x1b" not in running  # NO_COLOR: the status line is erased with spaces
    shown = screen(output)
    assert not [line for line in shown if "running execute_command" in line], shown
    at = shown.index("  |   indented\tout")
    assert shown[at + 1 : at + 3] == ["  | done", "= ok: exit 0"], shown

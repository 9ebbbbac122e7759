"""Usage errors argparse reports still end ``--output json`` with the ``chat.exit`` line.

The client runs as a user's script meets it, ``python -m server chat ...`` in a
subprocess: argparse's usage text goes to stderr as always, and in JSON mode stdout
gets exactly the final record. No server is needed: parsing fails first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from server.chat import EXIT_USAGE, chat_parser
from server.chat._options import requested_output

# Bounds the start-up of a Python process, never a hang.
TIMEOUT = 30


async def run_chat_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_RUNTIME_")}
    with trio.fail_after(TIMEOUT):
        return await trio.run_process(
            [sys.executable, "-m", "server", "chat", *args],
            cwd=cwd,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--output", "json", "-m", "hi", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["--output=json", "-m"], "argument -m/--message: expected one argument"),
        (
            ["-m", "hi", "--out", "json", "--command-timeout", "soon"],
            "argument --command-timeout: 'soon' is not a number of seconds",
        ),
    ],
)
async def test_an_argparse_error_in_json_mode_ends_with_chat_exit(
    argv: list[str], message: str, tmp_path: Path
) -> None:
    result = await run_chat_cli(tmp_path, *argv)
    stderr = result.stderr.decode()
    assert result.returncode == EXIT_USAGE, stderr
    lines = result.stdout.decode().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"type": "chat.exit", "code": EXIT_USAGE, "reason": "usage", "error": message}
    ]
    assert stderr.startswith("usage: agent-runtime chat "), stderr  # argparse's text, as ever
    assert f"agent-runtime chat: error: {message}\n" in stderr
    assert "Traceback" not in stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "hi", "--frobnicate"],
        ["--output", "xml", "-m", "hi"],  # an invalid --output is not a request for JSON
        ["--output", "json", "--output", "text", "--bogus"],  # the last one counts
    ],
)
async def test_an_argparse_error_in_text_mode_is_argparse_s_alone(
    argv: list[str], tmp_path: Path
) -> None:
    result = await run_chat_cli(tmp_path, *argv)
    stderr = result.stderr.decode()
    assert result.returncode == EXIT_USAGE, stderr
    assert result.stdout == b""
    assert stderr.startswith("usage: agent-runtime chat "), stderr
    assert "agent-runtime chat: error: " in stderr


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--output", "json"],
        ["--output=json"],
        ["--o", "json"],
        ["--outp=json"],
        ["--output", "json", "--output", "text"],
        ["--output", "text", "--output=json"],
        ["-m", "--output json"],  # one word with a space: argparse takes it as a value
        ["--agent=--output", "-m", "x"],
    ],
)
def test_requested_output_reads_argv_as_argparse_does(argv: list[str]) -> None:
    # On command lines argparse accepts, the scan must agree with it; this also fails
    # if a new flag made the abbreviation --o ambiguous.
    assert requested_output(argv) == chat_parser().parse_args(argv).output


def test_requested_output_of_command_lines_argparse_refuses() -> None:
    assert requested_output(["--output", "json", "--bogus"]) == "json"
    assert requested_output(["--output"]) == "text"  # no value
    assert requested_output(["--output", "JSON"]) == "text"  # not a valid choice
    assert requested_output(["--", "--output", "json"]) == "text"  # after --: values
    assert requested_output(["--outputs", "json"]) == "text"  # not a prefix of --output

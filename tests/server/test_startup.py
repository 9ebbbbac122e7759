"""``agent-runtime`` start-up through the real CLI: errors, the banner, the hints.

Each case runs ``python -m server`` in a subprocess, the way a user meets it: a
start-up error must be one line or two on stderr naming the file and the field
(no traceback) with exit status 2, and a successful start prints the URL once,
with the database and the model beside it.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from sessions import open_sqlite_store
from tests.server.helpers import STEP

pytestmark = pytest.mark.slow

MODES_OK = (
    '[modes.tester]\ndescription = "Tests."\nsystem_prompt = "Test."\ntools = ["read_file"]\n'
)
POLICY_OK = '[[approval.rules]]\ntool = "execute_command"\naction = "deny"\n'


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_RUNTIME_")}
    env.update({"PYTHONUNBUFFERED": "1"}, **extra)
    return env


async def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(30):
        return await trio.run_process(
            [sys.executable, "-m", "server", *args],
            cwd=cwd,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=cli_env(),
        )


def assert_short_startup_error(result: subprocess.CompletedProcess[bytes], *names: str) -> str:
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, stderr
    for name in names:
        assert name in stderr, (name, stderr)
    return stderr


BAD_FILES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    # case: (file content, arguments, what stderr must name)
    "invalid TOML": ("[server\nport = 1\n", ("--config", "f.toml"), ("f.toml", "line 1")),
    "unknown tool": (
        '[modes.coder]\ntools = ["nope"]\n',
        ("--modes", "f.toml"),
        ("f.toml", "modes.coder.tools", "unknown tool 'nope'", "read_file"),
    ),
    "invalid regex": (
        '[modes.coder]\nfile_regex = "("\n',
        ("--modes", "f.toml"),
        ("f.toml", "modes.coder.file_regex", "invalid regex"),
    ),
    "invalid policy": ("[[approval.rules]\n", ("--policy", "f.toml"), ("f.toml", "invalid TOML")),
    "modes named in the config file": (
        '[agents]\nmodes = "missing-modes.toml"\n',
        ("--config", "f.toml"),
        ("missing-modes.toml", "cannot read"),
    ),
    "invalid timeout in the config file": (
        "[llm]\nidle_timeout = 0\n",
        ("--config", "f.toml"),
        ("f.toml: [llm] idle_timeout", "positive number of seconds"),
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
async def test_a_bad_file_is_one_clear_line(tmp_path: Path, case: str) -> None:
    content, args, names = BAD_FILES[case]
    (tmp_path / "f.toml").write_text(content, encoding="utf-8")
    result = await run_cli(tmp_path, "serve", "--port", "0", "--db", ":memory:", *args)
    assert_short_startup_error(result, *names)


async def test_a_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    result = await run_cli(tmp_path, "serve", "--db", ":memory:", "--policy", "nowhere.toml")
    assert_short_startup_error(result, "nowhere.toml", "No such file")


async def test_a_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await run_cli(tmp_path, "serve", "--port", str(port), "--db", ":memory:")
    assert_short_startup_error(result, f"127.0.0.1:{port}", "already in use", "--port")


async def test_a_database_held_by_another_process_is_one_clear_line(tmp_path: Path) -> None:
    db = tmp_path / "held.db"
    async with open_sqlite_store(str(db)):
        served = await run_cli(tmp_path, "serve", "--port", "0", "--db", str(db))
        listed = await run_cli(tmp_path, "sessions", "list", "--db", str(db))
    assert_short_startup_error(served, str(db), "in use by another")
    assert_short_startup_error(listed, str(db), "in use by another")


async def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "f.toml").write_text('[modes.coder]\ntools = ["nope"]\n', encoding="utf-8")
    result = await run_cli(tmp_path, "serve", "--debug", "--db", ":memory:", "--modes", "f.toml")
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert stderr.startswith("agent-runtime: f.toml: modes.coder.tools: unknown tool 'nope'")
    assert "Traceback" in stderr


async def test_version_comes_from_the_installed_package(tmp_path: Path) -> None:
    from importlib.metadata import version

    result = await run_cli(tmp_path, "--version")
    assert result.returncode == 0
    assert result.stdout.decode().strip() == f"agent-runtime {version('agent-runtime')}"


class Lines:
    """Lines of a child's stdout, read as they come."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.seen: list[str] = []

    async def until(self, needle: str) -> list[str]:
        with trio.fail_after(30):
            while not any(needle in line for line in self.seen):
                while b"\n" not in self.buffer:
                    data = await self.stream.receive_some(4096)
                    if not data:
                        raise AssertionError(f"process ended; output so far: {self.seen}")
                    self.buffer += data
                line, _, self.buffer = self.buffer.partition(b"\n")
                self.seen.append(line.decode())
        return self.seen


@asynccontextmanager
async def serving(
    cwd: Path, *args: str, env: dict[str, str]
) -> AsyncIterator[tuple[trio.Process, Lines, Path]]:
    """``agent-runtime serve ARGS`` with stdout piped and stderr in a file."""
    stderr_path = cwd / "stderr.log"
    with stderr_path.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "server", "serve", "--port", "0", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
    try:
        assert process.stdout is not None
        yield process, Lines(process.stdout), stderr_path
    finally:
        if process.returncode is None:
            process.kill()
        with trio.move_on_after(STEP):
            await process.wait()
        assert process.stdout is not None
        await process.stdout.aclose()


async def stop(process: trio.Process) -> None:
    process.send_signal(signal.SIGINT)
    with trio.fail_after(STEP):
        await process.wait()
    assert process.returncode == 0


async def test_readme_form_starts_and_says_where_everything_is(tmp_path: Path) -> None:
    (tmp_path / "modes.toml").write_text(MODES_OK, encoding="utf-8")
    (tmp_path / "policy.toml").write_text(POLICY_OK, encoding="utf-8")
    # Not activated: the venv's bin directory is not on PATH, as after the README's
    # first command.
    env = cli_env(PATH=os.defpath)
    args = ("--db", "s.db", "--modes", "modes.toml", "--policy", "policy.toml")
    async with serving(tmp_path, *args, env=env) as (process, lines, stderr):
        seen = await lines.until(" chat --url ")
        await stop(process)
    assert seen[0].startswith("listening on http://127.0.0.1:")
    assert seen[1] == f"database: {tmp_path / 's.db'}"
    assert seen[2].startswith("model: scripted (offline demo)")
    logged = stderr.read_text()
    assert "listening on" not in logged and "Running on" not in logged  # the URL once
    assert sum("listening on" in line for line in seen) == 1
    # The hint works when pasted into a terminal whose PATH lacks the venv.
    chat = shlex.split(seen[-1])
    assert chat[1:3] == ["chat", "--url"]
    with trio.fail_after(30):
        pasted = await trio.run_process(
            [*chat[:1], "--version"], capture_stdout=True, env=env, cwd=tmp_path
        )
    assert pasted.stdout.startswith(b"agent-runtime ")


async def test_openai_without_a_key_is_announced_with_its_settings(tmp_path: Path) -> None:
    args = (
        *("--db", ":memory:", "--llm", "openai", "--llm-url", "http://127.0.0.1:9/v1"),
        *("--model", "m1", "--llm-first-token-timeout", "5", "--llm-retries", "1"),
    )
    async with serving(tmp_path, *args, env=cli_env()) as (process, lines, stderr):
        seen = await lines.until("model: ")
        await stop(process)
    assert seen[2] == (
        "model: openai, m1 at http://127.0.0.1:9/v1 "
        "(timeouts: connect 10s, first token 5s, idle 60s; 1 retry)"
    )
    warnings = [line for line in stderr.read_text().splitlines() if "WARNING" in line]
    assert len(warnings) == 1
    assert "AGENT_RUNTIME_LLM_API_KEY is not set" in warnings[0]

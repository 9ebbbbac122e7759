"""``agent-runtime`` as a real process: crash recovery, graceful SIGTERM, the CLI.

Each server runs as ``python -m server serve --port 0`` on a temporary SQLite
file; its port comes from the ``listening on`` line it prints once ready.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from server import ServeConfig
from tests.server.helpers import STEP, Frame, LiveServer, ended, make_config, start_server

pytestmark = pytest.mark.slow

TOKEN = "proc-token"


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_RUNTIME_")}
    env.update({"AGENT_RUNTIME_TOKENS": f"{TOKEN}:alice", "PYTHONUNBUFFERED": "1"}, **extra)
    return env


class Lines:
    """Lines of a child's stdout."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.seen: list[str] = []

    async def line(self) -> str:
        while b"\n" not in self.buffer:
            data = await self.stream.receive_some(4096)
            if not data:
                raise AssertionError(f"process ended; output so far: {self.seen}")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        self.seen.append(line.decode())
        return self.seen[-1]


@asynccontextmanager
async def running_server(
    db: Path | str, log: Path, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[trio.Process, LiveServer]]:
    """``agent-runtime serve`` on *db*; yields once it printed ``listening on``."""
    command = [sys.executable, "-m", "server", "serve", "--port", "0", "--db", str(db), *args]
    with log.open("ab") as stderr:
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=stderr, env=env or server_env()
        )
    try:
        assert process.stdout is not None
        lines = Lines(process.stdout)
        with trio.fail_after(30):
            while not (line := await lines.line()).startswith("listening on "):
                pass
        url = line.removeprefix("listening on ").strip()
        config = make_config(tokens={TOKEN: "alice"}, db=str(db))
        yield process, LiveServer(url, config, trio.Event())
    finally:
        if process.returncode is None:
            process.kill()
        with trio.move_on_after(STEP):
            await process.wait()
        if process.stdout is not None:
            await process.stdout.aclose()


async def test_sigkill_mid_stream_then_restart(tmp_path: Path) -> None:
    db, log = tmp_path / "sessions.db", tmp_path / "server.log"
    received: list[Frame] = []
    async with running_server(db, log, "--pace", "0.01") as (process, server):
        session_id = await server.new_session(TOKEN)
        async with server.ws(session_id, TOKEN) as client:
            ack = await client.command(
                {"type": "user_message", "id": "m", "content": "stream 500 words"}
            )
            while len(received) < 25:
                received.append(await client.event())
            process.kill()  # SIGKILL while the client is receiving the stream
            await process.wait()
    assert process.returncode == -signal.SIGKILL

    async with running_server(db, log) as (_, server):
        async with server.http(TOKEN) as http:
            url = f"/v1/sessions/{session_id}/events"
            events = (await http.get(url, params={"limit": 1000})).json()["events"]
        assert events[: len(received)] == received  # everything shown was committed
        endings = [e for e in events if ended(e) and e["turn_id"] == ack["turn_id"]]
        assert [e["reason"] for e in endings] == ["interrupted"]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        async with server.ws(session_id, TOKEN, after=len(events)) as client:
            new = await client.command({"type": "user_message", "id": "n", "content": "explain"})
            assert new["status"] == "accepted"
            assert (await client.until(ended))[-1]["reason"] == "completed"


async def test_sigterm_mid_stream_ends_the_turn_and_exits_zero(tmp_path: Path) -> None:
    db, log = tmp_path / "sessions.db", tmp_path / "server.log"
    env = server_env(AGENT_RUNTIME_SHUTDOWN_GRACE="0.5")
    args = ("--pace", "0.01", "--log-format", "json")
    async with running_server(db, log, *args, env=env) as (process, server):
        session_id = await server.new_session(TOKEN)
        async with server.ws(session_id, TOKEN) as client:
            await client.command(
                {"type": "user_message", "id": "m", "content": "stream 2000 words"}
            )
            for _ in range(10):
                await client.event()
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(STEP):
                rest = await client.until(ended)
            assert rest[-1]["reason"] == "interrupted"
            with trio.fail_after(STEP):
                await process.wait()
        assert process.returncode == 0, log.read_text()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert {"ts", "level", "logger", "message"} <= records[0].keys()
    assert any(r["logger"] == "agent_runtime.access" for r in records)
    assert TOKEN not in log.read_text()
    # The CLI reads the same database once the server has released it.
    listing = await run_cli("sessions", "--db", str(db), "list", "--owner", "alice")
    assert session_id in listing
    shown = await run_cli("sessions", "--db", str(db), "show", session_id, "--events")
    assert '"type":"turn.ended"' in shown
    assert f"deleted {session_id}" in await run_cli(
        "sessions", "--db", str(db), "delete", session_id
    )
    missing = await trio.run_process(
        [sys.executable, "-m", "server", "sessions", "--db", str(db), "show", session_id],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=server_env(),
    )
    assert missing.returncode == 1
    assert b"no session" in missing.stderr


async def run_cli(*args: str) -> str:
    with trio.fail_after(30):
        result = await trio.run_process(
            [sys.executable, "-m", "server", *args],
            capture_stdout=True,
            capture_stderr=True,
            env=server_env(),
        )
    return result.stdout.decode()


async def test_cli_refuses_public_bind_without_tokens(tmp_path: Path) -> None:
    env = server_env()
    del env["AGENT_RUNTIME_TOKENS"]
    with trio.fail_after(30):
        result = await trio.run_process(
            [sys.executable, "-m", "server", "serve", "--host", "0.0.0.0", "--db", ":memory:"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )
    assert result.returncode == 2
    assert b"refusing to listen on 0.0.0.0" in result.stderr


async def test_cli_generates_a_token_on_loopback(tmp_path: Path) -> None:
    env = server_env()
    del env["AGENT_RUNTIME_TOKENS"]
    command = [sys.executable, "-m", "server", "serve", "--port", "0", "--db", ":memory:"]
    process = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    try:
        assert process.stdout is not None
        lines = Lines(process.stdout)
        with trio.fail_after(30):
            while "agent-runtime chat" not in await lines.line():
                pass
        output = "\n".join(lines.seen)
        assert "\nmodel: scripted (offline demo)" in output
        curl = next(line for line in lines.seen if "curl" in line)
        token = curl.split("Bearer ")[1].split("'")[0]
        url = next(line for line in lines.seen if line.startswith("listening on")).split()[-1]
        server = LiveServer(url, ServeConfig(), trio.Event())
        async with server.http(token) as http:
            assert (await http.get("/v1/sessions")).status_code == 200
        process.send_signal(signal.SIGINT)
        with trio.fail_after(STEP):
            await process.wait()
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        assert process.stdout is not None
        await process.stdout.aclose()


@pytest.mark.parametrize("output", ["text", "json"])
async def test_a_reader_that_left_ends_chat_quietly(
    nursery: trio.Nursery, tmp_path: Path, output: str
) -> None:
    # ``agent-runtime chat -m ... | head -1``: the pipe's reader is gone at once here.
    server = await start_server(nursery, make_config(tokens={TOKEN: "alice"}))
    read_end, write_end = os.pipe()
    os.close(read_end)
    chat = ["chat", "--url", server.url, "--token", TOKEN, "--output", output]
    commands = [[*chat, "-m", "stream 300 words"], ["schema"]]
    try:
        for command in commands:
            with trio.fail_after(30):
                result = await trio.run_process(
                    [sys.executable, "-m", "server", *command],
                    stdin=subprocess.DEVNULL,
                    stdout=write_end,
                    capture_stderr=True,
                    check=False,
                    cwd=tmp_path,
                    env=server_env(),
                )
            assert result.returncode == 128 + signal.SIGPIPE, result.stderr.decode()
            assert b"Traceback" not in result.stderr
            assert b"Error" not in result.stderr
    finally:
        os.close(write_end)

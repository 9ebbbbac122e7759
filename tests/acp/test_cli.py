"""``agent-runtime acp`` as a process: only JSON-RPC on stdout, and it ends on EOF or SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from server.acp._connection import LineReader
from tests.acp.conformance import Conformance

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": 1}}


async def _start(db: Path) -> trio.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with (db.parent / "stderr.log").open("wb") as stderr:  # the child keeps its own handle
        return await trio.lowlevel.open_process(
            [sys.executable, "-m", "server", "acp", "--db", str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
        )


async def _initialize(process: trio.Process) -> LineReader:
    assert process.stdin is not None and process.stdout is not None
    await process.stdin.send_all(json.dumps(INITIALIZE).encode() + b"\n")
    reader = LineReader(process.stdout)
    with trio.fail_after(30):
        line = await reader.next_line()
    assert isinstance(line, bytes)
    assert json.loads(line)["result"]["protocolVersion"] == 1
    return reader


async def test_end_of_input_exits_0_with_nothing_but_json_rpc_on_stdout(tmp_path: Path) -> None:
    process = await _start(tmp_path / "sessions.db")
    assert process.stdin is not None and process.stdout is not None
    # Everything read before the end of input is still answered.
    conformance = Conformance()
    conformance.client_sent(INITIALIZE)
    conformance.client_sent_garbage()
    await process.stdin.send_all(json.dumps(INITIALIZE).encode() + b"\ngarbage\n")
    await process.stdin.aclose()
    reader = LineReader(process.stdout)
    with trio.fail_after(30):
        answers = []
        while isinstance(line := await reader.next_line(), bytes):
            answers.append(json.loads(line))
            conformance.check(answers[-1])
        assert await process.wait() == 0
    by_id = {m["id"]: m for m in answers}  # answered in either order
    assert len(answers) == 2 and by_id[1]["result"]["protocolVersion"] == 1
    assert by_id[None]["error"]["code"] == -32700
    assert (tmp_path / "sessions.db").exists()


async def test_sigterm_exits_0(tmp_path: Path) -> None:
    process = await _start(tmp_path / "sessions.db")
    await _initialize(process)
    process.send_signal(signal.SIGTERM)
    with trio.fail_after(30):
        assert await process.wait() == 0

"""B14 reopening an ACP session: ``session/load`` (the log replayed) vs ``session/resume``.

Run: ``python -m bench.b14_acp_reopen [--turns 200] [--words 20] [--runs 3]``.

One ``python -m server acp`` process writes a session of TURNS turns (each
``stream WORDS words``, scripted model, ``--pace 0``) to a fresh SQLite file. Then
each run starts a fresh adapter process on that file (as an editor does when it
starts again, and as acpx does for every new queue owner), sends ``initialize``,
and times one request that reopens the session: ``session/load`` or
``session/resume``, alternating which goes first. Measured from sending the
request to its answer: the wall time, the adapter's CPU (``/proc``), and the
``session/update`` notifications and bytes the client had to read.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from sessions import JSON, JSONObject, dumps

from ._common import STEP, JsonLines, cpu_seconds, end_stdio_child, median, note, print_header


@attrs.frozen
class Reopened:
    seconds: float
    cpu: float  # seconds of the adapter process
    updates: int
    received: int  # bytes of the lines read until the answer


class Adapter:
    """One ``agent-runtime acp`` process and the JSON-RPC client driving it."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process, self.stdin = process, process.stdin
        self.lines = JsonLines(process.stdout)
        self.next_id = 0

    async def call(self, method: str, params: JSONObject) -> tuple[JSONObject, int, int]:
        """Send a request; its answer, and the updates and bytes read until it came."""
        self.next_id += 1
        request_id = self.next_id
        message: JSONObject = {"jsonrpc": "2.0", "id": request_id, "method": method}
        message["params"] = params
        await self.stdin.send_all(dumps(message).encode() + b"\n")
        updates = received = 0
        with trio.fail_after(STEP):
            while True:
                got, size = await self.lines.next()
                received += size
                if got.get("id") == request_id and "method" not in got:
                    assert "result" in got, got
                    return got, updates, received
                updates += got.get("method") == "session/update"


@asynccontextmanager
async def adapter(db: Path, workdir: Path) -> AsyncIterator[Adapter]:
    command = [sys.executable, "-m", "server", "acp", "--db", str(db), "--pace", "0"]
    with (workdir / "stderr.log").open("ab") as stderr:
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
        )
    client = Adapter(process)
    try:
        await client.call("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
        yield client
    finally:
        await end_stdio_child(process)


async def write_session(db: Path, workdir: Path, turns: int, words: int) -> str:
    async with adapter(db, workdir) as client:
        new, _, _ = await client.call("session/new", {"cwd": str(workdir), "mcpServers": []})
        result = new["result"]
        assert isinstance(result, dict)
        session_id = str(result["sessionId"])
        for _ in range(turns):
            prompt: list[JSON] = [{"type": "text", "text": f"stream {words} words"}]
            await client.call("session/prompt", {"sessionId": session_id, "prompt": prompt})
    return session_id


async def reopen(db: Path, workdir: Path, session_id: str, method: str) -> Reopened:
    async with adapter(db, workdir) as client:
        params: JSONObject = {"sessionId": session_id, "cwd": str(workdir), "mcpServers": []}
        cpu, started = cpu_seconds(client.process.pid), time.perf_counter()
        _, updates, received = await client.call(method, params)
        seconds = time.perf_counter() - started
        return Reopened(seconds, cpu_seconds(client.process.pid) - cpu, updates, received)


async def main(turns: int, words: int, runs: int) -> None:
    print_header(
        f"B14 reopening an ACP session of {turns} turns ({words} words each)",
        "bench.b14_acp_reopen",
        runs,
    )
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        db = workdir / "b14.db"
        started = time.perf_counter()
        session_id = await write_session(db, workdir, turns, words)
        note(f"wrote the session in {time.perf_counter() - started:.1f} s")
        results: dict[str, list[Reopened]] = {"session/load": [], "session/resume": []}
        for number in range(runs):
            order = list(results) if number % 2 == 0 else list(results)[::-1]
            for method in order:
                run = await reopen(db, workdir, session_id, method)
                results[method].append(run)
                note(
                    f"run {number + 1} {method}: {run.seconds * 1e3:.1f} ms, "
                    f"{run.cpu * 1e3:.0f} ms CPU, {run.updates} updates, {run.received:,} bytes"
                )
    print("| request | answer ms | adapter CPU ms | updates | KiB read |")
    print("|---|---:|---:|---:|---:|")
    for method, rs in results.items():
        print(
            f"| `{method}` | {median([r.seconds for r in rs]) * 1e3:.1f} "
            f"| {median([r.cpu for r in rs]) * 1e3:.0f} "
            f"| {median([r.updates for r in rs]):,.0f} "
            f"| {median([r.received for r in rs]) / 1024:,.1f} |"
        )
    load, resume = results["session/load"], results["session/resume"]
    wall = median([r.seconds for r in resume]) / median([r.seconds for r in load])
    load_cpu = median([r.cpu for r in load])
    # CPU is read in clock ticks (10 ms): a small session's load may cost none.
    cpu = (
        "n/a (under a clock tick)"
        if load_cpu <= 0
        else f"{median([r.cpu for r in resume]) / load_cpu:.2f}x"
    )
    print(f"\nresume / load: answer {wall:.2f}x, CPU {cpu}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--words", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    trio.run(main, args.turns, args.words, args.runs)

"""B12 MCP tools: what a turn with an MCP call costs, and how fast a cancel ends one.

Run: ``python -m bench.b12_mcp [--turns 50] [--runs 3] [--cancels 10]`` (needs
``mcp-server-time`` next to the interpreter, from the dev extra). Each run starts
``python -m server serve`` (scripted model, ``--pace 0``) on its own SQLite file,
with ``mcp-server-time`` mounted (trusted, so its read-only tools run without
asking), and drives one session over its WebSocket:

- ``ide``: ``--turns`` turns of ``read notes.md``: the IDE round trip, answered
  by this client at once (the baseline: the same two LLM steps, one tool call);
- ``mcp``: ``--turns`` turns of ``call mcp__time__get_current_time {...}``: the
  runtime runs the call on the MCP server itself;
- ``direct``: the same tool called ``--turns`` times straight through the SDK
  (``mcp.ClientSession`` over stdio, in this process): what the MCP server and
  the protocol cost by themselves.

The runs alternate the order of ``ide`` and ``mcp``. Per turn: wall time from
``user_message`` to ``turn.ended`` (median) and the server's CPU. Then
``--cancels`` times: start a call of server-everything's minute-long
``trigger-long-running-operation`` (if ``AGENT_RUNTIME_TEST_MCP_EVERYTHING`` or
``.ci/mcp`` has it) and time ``cancel`` → ``turn.ended``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from sessions import JSONObject, dumps

from ._common import (
    REPO,
    TOKEN,
    Child,
    median,
    note,
    open_child,
    parse_frame,
    print_header,
    server_args,
    server_env,
    ws_url,
)

TIME_SERVER = Path(sys.executable).parent / "mcp-server-time"
EVERYTHING = Path(
    os.environ.get(
        "AGENT_RUNTIME_TEST_MCP_EVERYTHING",
        REPO / ".ci" / "mcp" / "node_modules" / ".bin" / "mcp-server-everything",
    )
)
MODES = """
[modes.librarian]
description = "Uses MCP tools."
system_prompt = "You use the tools of MCP servers."
tool_groups = ["read"]
mcp = {servers}
"""
TIME_CALL = 'call mcp__time__get_current_time {"timezone": "UTC"}'
LONG_CALL = 'call mcp__every__trigger-long-running-operation {"duration": 60, "steps": 60}'


@attrs.frozen
class Turns:
    seconds: list[float]  # per turn, user_message -> turn.ended
    cpu: float  # the server's CPU seconds over all of them

    @property
    def cpu_ms_per_turn(self) -> float:
        return self.cpu / len(self.seconds) * 1000


def write_config(folder: Path, everything: bool) -> Path:
    servers = ["time", "every"] if everything else ["time"]
    modes = folder / "modes.toml"
    modes.write_text(MODES.format(servers=json.dumps(servers)), encoding="utf-8")
    text = (
        f'[agents]\nmodes = "{modes}"\n\n'
        f'[mcp.servers.time]\ncommand = "{TIME_SERVER}"\ntrusted = true\nstartup = "eager"\n'
    )
    if everything:
        text += (
            f'\n[mcp.servers.every]\ncommand = "{EVERYTHING}"\nargs = ["stdio"]\n'
            'trusted = true\nstartup = "eager"\n'
        )
    config = folder / "agent.toml"
    config.write_text(text, encoding="utf-8")
    return config


class Client:
    """One session's WebSocket: send a message, answer IDE calls, wait for the turn's end."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws, self.count = ws, 0

    async def command(self, frame: JSONObject) -> None:
        self.count += 1
        await self.ws.send_message(dumps({"id": f"c{self.count}", **frame}))

    async def turn(self, content: str) -> float:
        started = time.perf_counter()
        await self.command({"type": "user_message", "content": content})
        while True:
            frame = parse_frame(await self.ws.get_message())
            if frame.get("type") == "tool.call":
                result = {"type": "tool_result", "call_id": frame["call_id"], "result": "notes"}
                await self.command(result)
            elif frame.get("type") == "turn.ended":
                return time.perf_counter() - started

    async def cancel_latency(self) -> float:
        await self.command({"type": "user_message", "content": LONG_CALL})
        turn_id = None
        while True:
            frame = parse_frame(await self.ws.get_message())
            if frame.get("type") == "turn.started":
                turn_id = frame.get("turn_id")
            if frame.get("type") == "tool.started":
                break
        started = time.perf_counter()
        await self.command({"type": "cancel", "turn_id": turn_id})
        while parse_frame(await self.ws.get_message()).get("type") != "turn.ended":
            pass
        return time.perf_counter() - started


async def session(server: Child) -> str:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        created = (await http.post("/v1/sessions", json={"agent": "librarian"})).json()
    return str(created["id"])


@asynccontextmanager
async def served(config: Path) -> AsyncIterator[tuple[Child, Client]]:
    """A fresh ``serve`` with *config* on its own SQLite file, and one session's client."""
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "b12.db")
        args = [*server_args(db), "--config", str(config)]
        async with open_child("server", args, env=server_env()) as server:
            session_id = await session(server)
            async with open_websocket_url(ws_url(server.url, session_id)) as ws:
                await ws.send_message(json.dumps({"type": "hello", "after": 0, "token": TOKEN}))
                while parse_frame(await ws.get_message()).get("type") != "sync":
                    pass
                yield server, Client(ws)


async def run_turns(config: Path, way: str, turns: int) -> Turns:
    async with served(config) as (server, client):
        content = "read notes.md" if way == "ide" else TIME_CALL
        await client.turn(content)  # warm up: the MCP server's first call
        cpu = server.cpu()
        with trio.fail_after(600):
            seconds = [await client.turn(content) for _ in range(turns)]
        return Turns(seconds, server.cpu() - cpu)


async def cancels(config: Path, count: int) -> list[float]:
    async with served(config) as (_, client):
        with trio.fail_after(600):
            return [await client.cancel_latency() for _ in range(count)]


async def direct(turns: int) -> list[float]:
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=str(TIME_SERVER))
    async with stdio_client(params) as (read, write), ClientSession(read, write) as mcp:
        await mcp.initialize()
        await mcp.call_tool("get_current_time", {"timezone": "UTC"})
        seconds = []
        for _ in range(turns):
            started = time.perf_counter()
            await mcp.call_tool("get_current_time", {"timezone": "UTC"})
            seconds.append(time.perf_counter() - started)
        return seconds


async def main(turns: int, runs: int, cancel_count: int) -> None:
    print_header(f"B12 MCP tools: {turns} turns per way", "bench.b12_mcp", runs)
    everything = os.access(EVERYTHING, os.X_OK)
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), everything)
        results: dict[str, list[Turns]] = {"ide": [], "mcp": []}
        direct_ms: list[float] = []
        for number in range(runs):
            order = ("ide", "mcp") if number % 2 == 0 else ("mcp", "ide")
            for way in order:
                run = await run_turns(config, way, turns)
                results[way].append(run)
                note(
                    f"run {number + 1} {way}: median {median(run.seconds) * 1000:.1f} ms/turn, "
                    f"{run.cpu_ms_per_turn:.1f} ms CPU/turn"
                )
            direct_ms.append(median(await direct(turns)) * 1000)
        print("| turn | wall ms per turn (median) | server CPU ms per turn |")
        print("|---|---:|---:|")
        for way, label in (("ide", "IDE round trip (read_file)"), ("mcp", "MCP call (time)")):
            rs = results[way]
            wall = median([median(r.seconds) for r in rs]) * 1000
            cpu = median([r.cpu_ms_per_turn for r in rs])
            print(f"| {label} | {wall:.1f} | {cpu:.1f} |")
        print(f"| the MCP call alone, through the SDK in-process | {median(direct_ms):.1f} | — |")
        ide = median([median(r.seconds) for r in results["ide"]])
        mcp = median([median(r.seconds) for r in results["mcp"]])
        print(f"\nMCP turn / IDE turn wall time: {mcp / ide:.2f}x")
        if everything and cancel_count:
            latencies = await cancels(config, cancel_count)
            print(
                f"cancel during a running MCP call -> turn.ended: median "
                f"{median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
                f"({len(latencies)} cancels)"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cancels", type=int, default=10)
    args = parser.parse_args()
    trio.run(main, args.turns, args.runs, args.cancels)

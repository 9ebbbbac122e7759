"""B11 ACP overhead: streamed updates per second through ``agent-runtime acp`` vs our WebSocket.

Run: ``python -m bench.b11_acp [--words 20000] [--runs 3]``. Each run streams one
turn of ``stream N words then hold g`` from the scripted model (``--pace 0``;
``stream N words`` ends the text and the turn) two ways, alternating which goes
first, each in its own fresh process on its own SQLite file:

- ``ws``: ``python -m server serve``; this client creates a session over REST,
  opens its WebSocket and sends the message; it counts ``text.delta`` events
  until ``turn.ended``;
- ``acp``: ``python -m server acp`` (embedded); this client speaks ACP on its
  stdio (``initialize``, ``session/new``, ``session/prompt``) and counts
  ``agent_message_chunk`` updates until the prompt's answer.

Both count the same runtime events (one ``text.delta`` becomes one chunk), so
the ratio of CPU per update (server or adapter process, from ``/proc``) is the
adapter's overhead per update over the WebSocket path.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs
import httpx
import trio
from trio_websocket import open_websocket_url

from sessions import JSONObject, dumps

from ._common import (
    STEP,
    TOKEN,
    JsonLines,
    cpu_seconds,
    end_stdio_child,
    hello,
    median,
    note,
    open_child,
    parse_frame,
    print_header,
    server_args,
    server_env,
    ws_url,
)


@attrs.frozen
class Run:
    updates: int
    seconds: float
    cpu: float  # seconds of the server (ws) or adapter (acp) process

    @property
    def per_second(self) -> float:
        return self.updates / self.seconds

    @property
    def cpu_us_per_update(self) -> float:
        return self.cpu / max(self.updates, 1) * 1e6


async def over_ws(words: int) -> Run:
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "b11.db")
        async with open_child("server", server_args(db), env=server_env()) as server:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
                created = (await http.post("/v1/sessions", json={"agent": "coder"})).json()
            session_id = str(created["id"])
            async with open_websocket_url(ws_url(server.url, session_id)) as ws:
                await ws.send_message(hello())
                while parse_frame(await ws.get_message()).get("type") != "sync":
                    pass
                cpu, started = server.cpu(), time.perf_counter()
                content = f"stream {words} words"
                await ws.send_message(
                    dumps({"type": "user_message", "id": "m1", "content": content})
                )
                updates = 0
                with trio.fail_after(300):
                    while True:
                        frame = parse_frame(await ws.get_message())
                        if frame.get("type") == "text.delta":
                            updates += 1
                        elif frame.get("type") == "turn.ended":
                            break
                return Run(updates, time.perf_counter() - started, server.cpu() - cpu)


async def over_acp(words: int) -> Run:
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "b11.db")
        command = [sys.executable, "-m", "server", "acp", "--db", db, "--pace", "0"]
        with (Path(tmp) / "stderr.log").open("wb") as stderr:
            process = await trio.lowlevel.open_process(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
            )
        assert process.stdin is not None and process.stdout is not None
        lines = JsonLines(process.stdout)

        async def call(id_: int, method: str, params: JSONObject) -> JSONObject:
            assert process.stdin is not None
            message: JSONObject = {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}
            await process.stdin.send_all(dumps(message).encode() + b"\n")
            while True:
                answer, _ = await lines.next()
                if answer.get("id") == id_ and "method" not in answer:
                    return answer

        try:
            with trio.fail_after(STEP):
                await call(1, "initialize", {"protocolVersion": 1, "clientCapabilities": {}})
                new = await call(2, "session/new", {"cwd": tmp, "mcpServers": []})
            result = new.get("result")
            assert isinstance(result, dict), new
            session_id = result["sessionId"]
            prompt: JSONObject = {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "session/prompt",
                "params": {
                    "sessionId": session_id,
                    "prompt": [{"type": "text", "text": f"stream {words} words"}],
                },
            }
            cpu, started = cpu_seconds(process.pid), time.perf_counter()
            await process.stdin.send_all(dumps(prompt).encode() + b"\n")
            updates = 0
            with trio.fail_after(300):
                while True:
                    got, _ = await lines.next()
                    if got.get("id") == 3:
                        break
                    params = got.get("params")
                    if got.get("method") == "session/update" and isinstance(params, dict):
                        update = params.get("update")
                        if isinstance(update, dict) and (
                            update.get("sessionUpdate") == "agent_message_chunk"
                        ):
                            updates += 1
            return Run(updates, time.perf_counter() - started, cpu_seconds(process.pid) - cpu)
        finally:
            await end_stdio_child(process)


async def main(words: int, runs: int) -> None:
    print_header(f"B11 ACP overhead: one turn streaming {words:,} words", "bench.b11_acp", runs)
    results: dict[str, list[Run]] = {"ws": [], "acp": []}
    for number in range(runs):
        order = ("ws", "acp") if number % 2 == 0 else ("acp", "ws")
        for way in order:
            run = await (over_ws(words) if way == "ws" else over_acp(words))
            results[way].append(run)
            note(
                f"run {number + 1} {way}: {run.updates} updates in {run.seconds:.2f} s "
                f"({run.per_second:,.0f}/s), {run.cpu_us_per_update:.0f} µs CPU per update"
            )
    print("| path | updates | updates/s | CPU µs per update (server or adapter) |")
    print("|---|---:|---:|---:|")
    for way, label in (("ws", "WebSocket (serve)"), ("acp", "ACP (acp, embedded)")):
        rs = results[way]
        print(
            f"| {label} | {median([r.updates for r in rs]):,.0f} "
            f"| {median([r.per_second for r in rs]):,.0f} "
            f"| {median([r.cpu_us_per_update for r in rs]):.0f} |"
        )
    ws_cpu = median([r.cpu_us_per_update for r in results["ws"]])
    acp_cpu = median([r.cpu_us_per_update for r in results["acp"]])
    print(f"\nACP / WebSocket CPU per update: {acp_cpu / ws_cpu:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--words", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    trio.run(main, args.words, args.runs)

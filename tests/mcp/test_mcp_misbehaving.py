"""The MCP service against a misbehaving server in memory (``memory_server.py``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from agents._core._mcp import McpOutcome, McpServerConfig, StdioTransport
from agents._errors import McpUnavailable
from agents._tools._mcp_servers import open_mcp_servers
from agents._tools._mcp_status import McpServerStatus
from tests.mcp.memory_server import MemoryServer, memory_config, tool


def starting_again(restarts: int) -> Callable[[McpServerStatus], bool]:
    return lambda status: status.state == "starting" and status.restarts >= restarts


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


async def test_a_tool_with_a_bad_input_schema_costs_only_that_tool(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = MemoryServer(
        [
            tool("echo"),
            tool("text", inputSchema={"type": "string"}),
            {"name": "bare"},
            tool("untyped", inputSchema={"properties": {}}),
            tool("last"),
        ]
    )
    async with open_mcp_servers([memory_config()], transport=server.transport) as servers:
        assert [t.tool for t in await servers.tools("mem")] == ["echo", "last"]
        outcome = await servers.call("mem", "last", {"text": "hi"}, 10)
        assert (outcome.kind, outcome.text) == ("ok", "called last")
        assert servers.status()[0].restarts == 0 and server.starts == 1
    left_out = [w for w in warnings(caplog) if "is left out" in w]
    assert [w.split("'")[1] for w in left_out] == ["text", "bare", "untyped"]
    assert all("pydantic.dev" not in w and "\n" not in w for w in left_out)
    assert "(inputSchema.type: " in left_out[0]


async def test_a_tool_with_an_empty_name_is_left_out(caplog: pytest.LogCaptureFixture) -> None:
    server = MemoryServer([tool(""), tool("echo")])
    async with open_mcp_servers([memory_config()], transport=server.transport) as servers:
        assert [t.name for t in await servers.tools("mem")] == ["mcp__mem__echo"]
    assert "MCP server mem: tool 'mcp__mem__' has an unusable name" in warnings(caplog)


async def test_a_server_hanging_in_initialize_is_waited_for_once_not_at_every_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = MemoryServer(hang_init=True)
    async with open_mcp_servers(
        [memory_config()], transport=server.transport, start_timeout=20
    ) as servers:
        started = trio.current_time()
        with pytest.raises(McpUnavailable):
            await servers.tools("mem")  # its first start: worth the wait
        assert trio.current_time() - started == pytest.approx(20)
        for restarts in (1, 2, 3):
            # Found starting again (its backoff is shorter than its start timeout).
            await servers.wait_for("mem", starting_again(restarts))
            asked = trio.current_time()
            with pytest.raises(McpUnavailable, match="did not finish initializing within 20 s"):
                await servers.tools("mem")
            outcome = await servers.call("mem", "echo", {}, 5)
            assert outcome.kind == "failed" and "the call was not sent" in outcome.text
            assert trio.current_time() == asked


async def test_start_up_warnings_say_why_a_command_cannot_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = tmp_path / "server.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    configs = [
        McpServerConfig("plain", StdioTransport(str(script))),
        McpServerConfig("folder", StdioTransport(str(tmp_path))),
        McpServerConfig("gone", StdioTransport(str(tmp_path / "missing"))),
    ]
    async with open_mcp_servers(configs):
        pass  # lazy: never started, yet warned about at once
    assert warnings(caplog) == [
        f"MCP server plain: command {str(script)!r} is not executable; "
        "its tools stay unavailable until it can start",
        f"MCP server folder: command {str(tmp_path)!r} is a directory; "
        "its tools stay unavailable until it can start",
        f"MCP server gone: command {str(tmp_path / 'missing')!r} is not found; "
        "its tools stay unavailable until it can start",
    ]


async def test_an_unparseable_answer_fails_every_call_in_flight_at_once_and_restarts(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    broken = json.dumps({"jsonrpc": "2.0", "id": 1, "result": "!" * 100_000})
    server = MemoryServer([tool("echo")], garbage=broken, hold=2)
    async with open_mcp_servers([memory_config()], transport=server.transport) as servers:
        await servers.tools("mem")
        outcomes: list[McpOutcome] = []

        async def call() -> None:
            outcomes.append(await servers.call("mem", "echo", {}, 60))

        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            nursery.start_soon(call)
        assert trio.current_time() == started  # not after the 60 s read timeout
        fault = f"sent an unparseable message (not a JSON-RPC message: {broken[:60]}…)"
        unknown = "so the call was cut off; whether it took effect is unknown"
        assert [(o.kind, o.text) for o in outcomes] == 2 * [
            ("failed", f"the MCP server mem {fault}, {unknown}")
        ]
        status = await servers.wait_for("mem", lambda s: s.state == "backoff")
        assert status.last_error == f"the MCP server mem {fault}"
        status = await servers.wait_for("mem", lambda s: s.state == "ready")
        assert (status.restarts, server.starts, status.last_error) == (1, 2, None)
    # Its log line quotes as little of the garbage as the outcome does.
    assert f"MCP server mem {fault}; disconnecting it" in warnings(caplog)

"""The MCP service against real servers (``servers.py``): tools, calls, failures, shutdown."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio
from prometheus_client import CollectorRegistry

from agents._core._mcp import HttpTransport, McpServerConfig, StdioTransport
from agents._errors import McpUnavailable
from agents._tools._mcp_servers import McpServers, open_mcp_servers
from agents._tools._mcp_status import McpMetrics, McpServerStatus
from sessions import JSONObject
from tests.mcp.servers import (
    WAIT,
    Tap,
    alive,
    children,
    everything_config,
    everything_http,
    time_config,
    wait_gone,
)

pytestmark = [
    pytest.mark.slow,
    # The SDK's streamable HTTP transport cancels its SSE reads without closing the
    # httpx2 async generators under them; trio's finalizer then warns at GC (SDK 2.3.0).
    pytest.mark.filterwarnings(r"ignore:Async generator 'httpx2\.:ResourceWarning"),
    pytest.mark.filterwarnings(r"ignore:Async generator 'httpcore2\.:ResourceWarning"),
]

LONG = "trigger-long-running-operation"


def ready(status: McpServerStatus) -> bool:
    return status.state == "ready"


async def check_everything(servers: McpServers, name: str, *, list_changed: bool) -> None:
    """Echo, annotations, and the re-listing after the server's ``tools/list_changed``.

    Over streamable HTTP the server sends that notification while handling our
    ``notifications/initialized``, before the SDK opened the GET stream that could
    carry it, so it is lost there (a race in the server, not ours to fix).
    """
    tools = {t.tool: t for t in await servers.tools(name)}
    assert tools["echo"].name == f"mcp__{name}__echo"
    assert tools["echo"].hints.read_only is True
    assert tools["echo"].parameters["type"] == "object"
    assert tools["gzip-file-as-resource"].hints.read_only is False
    assert tools["gzip-file-as-resource"].hints.idempotent is True
    outcome = await servers.call(name, "echo", {"message": "hello"}, 10)
    assert (outcome.kind, outcome.text) == ("ok", "Echo: hello")
    if list_changed:
        with trio.fail_after(WAIT):
            await servers.wait_for(name, lambda s: s.tool_refreshes >= 1)
    # Registered after initialize: in the list re-read after the notification (stdio),
    # or already in the first one (HTTP).
    assert "simulate-research-query" in {t.tool for t in await servers.tools(name)}


async def test_time_server_lists_and_calls() -> None:
    registry = CollectorRegistry()
    async with open_mcp_servers([time_config()], McpMetrics(registry)) as servers:
        tools = {t.tool: t for t in await servers.tools("time")}
        assert set(tools) == {"get_current_time", "convert_time"}
        assert all(t.hints.read_only for t in tools.values())
        outcome = await servers.call("time", "get_current_time", {"timezone": "UTC"}, 10)
        assert outcome.kind == "ok"
        assert '"timezone": "UTC"' in outcome.text
    labels = {"server": "time", "tool": "get_current_time", "outcome": "ok"}
    assert registry.get_sample_value("agent_runtime_mcp_calls_total", labels) == 1
    assert registry.get_sample_value(
        "agent_runtime_mcp_call_seconds_count", {"server": "time", "tool": "get_current_time"}
    )


async def test_everything_over_stdio(tmp_path: Path) -> None:
    tap = Tap(tmp_path / "wire.log")
    async with open_mcp_servers([everything_config(tap=tap)]) as servers:
        await check_everything(servers, "every", list_changed=True)
        listings = [m for m in tap.messages() if m.get("method") == "tools/list"]
        assert len(listings) >= 2


async def test_everything_over_streamable_http() -> None:
    async with everything_http() as url:
        config = McpServerConfig("web", HttpTransport(url))
        async with open_mcp_servers([config]) as servers:
            await check_everything(servers, "web", list_changed=False)
            assert servers.status()[0].transport == "http"


async def test_http_headers_from_the_environment_must_be_set() -> None:
    transport = HttpTransport("http://127.0.0.1:9/mcp", headers_env={"X-Key": "NO_SUCH_VAR_4711"})
    async with open_mcp_servers([McpServerConfig("web", transport)]) as servers:
        with pytest.raises(McpUnavailable, match="NO_SUCH_VAR_4711"):
            await servers.tools("web")


async def test_allow_list_filters_tools() -> None:
    config = everything_config(tools=("echo", "get-s*"))
    async with open_mcp_servers([config]) as servers:
        names = {t.tool for t in await servers.tools("every")}
        assert names == {"echo", "get-sum", "get-structured-content"}


async def test_lazy_server_starts_on_first_use(tmp_path: Path) -> None:
    tap = Tap(tmp_path / "wire.log")
    async with open_mcp_servers([everything_config(tap=tap)]) as servers:
        await trio.testing.wait_all_tasks_blocked()
        assert servers.status()[0].state == "idle"
        assert servers.status()[0].pid is None
        assert tap.pids() is None
        assert children() == set()
        await servers.tools("every")
        status = servers.status()[0]
        assert status.state == "ready"
        assert status.pid is not None
        assert children() == {status.pid}


async def test_eager_server_starts_on_entry() -> None:
    async with open_mcp_servers([time_config(startup="eager")]) as servers:
        with trio.fail_after(WAIT):
            status = await servers.wait_for("time", ready)
        assert status.pid is not None and alive(status.pid)
        assert len(status.tools) == 2


async def test_tool_error_is_an_error_outcome() -> None:
    async with open_mcp_servers([everything_config()]) as servers:
        arguments: JSONObject = {"data": "ftp://example.invalid/file"}
        outcome = await servers.call("every", "gzip-file-as-resource", arguments, 10)
        assert outcome.kind == "error"
        assert "Unsupported URL protocol" in outcome.text


async def test_timeout_sends_cancelled(tmp_path: Path) -> None:
    tap = Tap(tmp_path / "wire.log")
    registry = CollectorRegistry()
    async with open_mcp_servers([everything_config(tap=tap)], McpMetrics(registry)) as servers:
        arguments: JSONObject = {"duration": 30, "steps": 30}
        outcome = await servers.call("every", LONG, arguments, 0.5)
        assert outcome.kind == "timeout"
        assert "within 0.5 s" in outcome.text
        request = tap.request_id("tools/call", LONG)
        assert request is not None
        await tap.wait(lambda: tap.cancelled(request), f"notifications/cancelled for {request}")
        # The connection is still good.
        assert (await servers.call("every", "echo", {"message": "x"}, 10)).kind == "ok"
    labels = {"server": "every", "tool": LONG, "outcome": "timeout"}
    assert registry.get_sample_value("agent_runtime_mcp_calls_total", labels) == 1


async def test_cancelled_caller_returns_fast_and_server_is_told(tmp_path: Path) -> None:
    tap = Tap(tmp_path / "wire.log")
    async with open_mcp_servers([everything_config(tap=tap)]) as servers:
        await servers.tools("every")
        finished = False
        with trio.CancelScope() as scope:

            async def cancel_once_sent() -> None:
                await tap.wait(lambda: tap.request_id("tools/call", LONG), "the tools/call")
                scope.cancel()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel_once_sent)
                await servers.call("every", LONG, {"duration": 30, "steps": 30}, 60)
                finished = True
        cancelled_at = trio.current_time()
        assert scope.cancelled_caught and not finished
        request = tap.request_id("tools/call", LONG)
        await tap.wait(lambda: tap.cancelled(request), f"notifications/cancelled for {request}")
        assert trio.current_time() - cancelled_at < 1.0


async def test_killed_server_fails_the_call_and_restarts(tmp_path: Path) -> None:
    tap = Tap(tmp_path / "wire.log")
    registry = CollectorRegistry()
    async with open_mcp_servers([everything_config(tap=tap)], McpMetrics(registry)) as servers:
        await servers.tools("every")
        first = tap.pids()
        assert first is not None

        async def kill_once_called() -> None:
            await tap.wait(lambda: tap.request_id("tools/call", LONG), "the tools/call")
            os.kill(first["server"], signal.SIGKILL)

        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(kill_once_called)
                outcome = await servers.call("every", LONG, {"duration": 30, "steps": 30}, 60)
        assert outcome.kind == "failed"
        assert outcome.text == (
            "the MCP server every stopped during the call; whether it took effect is unknown"
        )
        with trio.fail_after(WAIT):
            # A server that crashed is waited for through its restart.
            assert await servers.tools("every")
        status = {s.name: s for s in servers.status()}["every"]
        assert status.restarts == 1 and ready(status)
        assert status.last_error is None
        assert status.pid != first["tap"]
        assert (await servers.call("every", "echo", {"message": "again"}, 10)).kind == "ok"
    assert registry.get_sample_value("agent_runtime_mcp_restarts_total", {"server": "every"}) == 1


async def test_missing_command_is_unavailable_and_others_keep_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = McpServerConfig("broken", StdioTransport("/nonexistent/mcp-server-x"))
    unknown = McpServerConfig("unknown", StdioTransport("no-such-mcp-server-on-path"))
    async with open_mcp_servers([broken, unknown, time_config()]) as servers:
        # Said at once, though both start lazily; the time server is found.
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert warned == [
            "MCP server broken: command '/nonexistent/mcp-server-x' is not found; "
            "its tools stay unavailable until it can start",
            "MCP server unknown: command 'no-such-mcp-server-on-path' is not found; "
            "its tools stay unavailable until it can start",
        ]
        with pytest.raises(McpUnavailable) as raised:
            await servers.tools("broken")
        assert "cannot start the MCP server broken" in str(raised.value)
        assert "No such file or directory" in str(raised.value)
        # Failed at its first start: no restart is waited for (waiting out the
        # backoff held every model step that listed tools for ~9 s).
        assert {s.name: s.restarts for s in servers.status()}["broken"] == 0
        outcome = await servers.call("broken", "anything", {}, 5)
        assert outcome.kind == "failed" and "the call was not sent" in outcome.text
        with pytest.raises(McpUnavailable, match="unknown MCP server 'nope'"):
            await servers.tools("nope")
        assert len(await servers.tools("time")) == 2
        status = {s.name: s for s in servers.status()}
        assert status["broken"].state == "backoff"
        assert status["time"].state == "ready"


async def test_shutdown_stops_every_process(tmp_path: Path) -> None:
    tap = Tap(tmp_path / "wire.log")
    configs = [time_config(startup="eager"), everything_config(tap=tap, startup="eager")]
    async with open_mcp_servers(configs, shutdown_timeout=5.0) as servers:
        with trio.fail_after(WAIT):
            for name in servers.names():
                await servers.wait_for(name, ready)
        pids = tap.pids()
        assert pids is not None
        running = {s.pid for s in servers.status()} | set(pids.values())
        assert all(pid is not None and alive(pid) for pid in running)
        started = trio.current_time()
    assert trio.current_time() - started < 5.0
    assert children() == set()
    await wait_gone({pid for pid in running if pid is not None})
    assert {s.state for s in servers.status()} == {"stopped"}


async def test_shutdown_is_bounded_for_a_server_that_will_not_stop(tmp_path: Path) -> None:
    # The tap ignores SIGTERM and its stdin closing: only our kill at the deadline stops it.
    tap = Tap(tmp_path / "wire.log")
    config = everything_config(tap=tap, stubborn=True, startup="eager")
    async with open_mcp_servers([config], shutdown_timeout=1.5) as servers:
        with trio.fail_after(WAIT):
            await servers.wait_for("every", ready)
        pids = tap.pids()
        assert pids is not None
        started = trio.current_time()
    assert trio.current_time() - started < 2.0
    assert not alive(pids["tap"])  # our child: the SDK waited for it
    assert children() == set()
    await wait_gone({pids["server"]})  # killed with it, in its process group

"""The MCP service against a real stdio server that breaks (``broken_server.py``)."""

from __future__ import annotations

import sys
import unicodedata
from pathlib import Path

import pytest
import trio

from agents._core._mcp import McpOutcome, McpServerConfig, StdioTransport
from agents._errors import McpUnavailable
from agents._tools._mcp_servers import open_mcp_servers
from agents._tools._mcp_status import McpServerStatus
from tests.mcp.servers import WAIT

pytestmark = pytest.mark.slow

SERVER = Path(__file__).resolve().parent / "broken_server.py"
UNKNOWN = "whether it took effect is unknown"


def broken_config(*options: str) -> McpServerConfig:
    return McpServerConfig("broken", StdioTransport(sys.executable, (str(SERVER), *options)))


def backoff(status: McpServerStatus) -> bool:
    return status.state == "backoff"


@pytest.mark.parametrize(
    "line",
    [
        '{"jsonrpc": "2.0", "id": 3, "result": 5}',  # a result must be an object
        '{"jsonrpc": "2.0", "id": 3}',  # neither a result nor an error
    ],
)
async def test_a_broken_answer_ends_the_calls_in_flight_at_once_then_it_restarts(
    line: str,
) -> None:
    async with open_mcp_servers([broken_config("--garbage", line, "--hold", "2")]) as servers:
        with trio.fail_after(WAIT):
            assert [t.tool for t in await servers.tools("broken")] == ["echo"]
        outcomes: list[McpOutcome] = []

        async def call() -> None:
            # Far longer than the test may take: only a prompt failure passes.
            outcomes.append(await servers.call("broken", "echo", {}, 600))

        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(call)
                nursery.start_soon(call)
        assert [(o.kind, o.text) for o in outcomes] == 2 * [
            (
                "failed",
                "the MCP server broken sent an unparseable message "
                f"(not a JSON-RPC message: {line}), "
                f"so the call was cut off; {UNKNOWN}",
            )
        ]
        with trio.fail_after(WAIT):
            # Failed like a crash: it is waited for through its restart.
            assert [t.tool for t in await servers.tools("broken")] == ["echo"]
        assert servers.status()[0].restarts == 1


@pytest.mark.parametrize(
    "line",
    [
        "Server running on stdio",  # a banner, a print()
        '{"level": "info", "msg": "listening"}',  # a JSON logger on the wrong stream
        "[1, 2]",
    ],
)
async def test_stray_output_on_stdout_is_logged_and_ignored(
    line: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As the SDKs' own clients do: a server that prints works here as elsewhere."""
    config = broken_config("--banner", line, "--chatter", line)
    async with open_mcp_servers([config]) as servers:
        with trio.fail_after(WAIT):
            assert [t.tool for t in await servers.tools("broken")] == ["echo"]
            outcome = await servers.call("broken", "echo", {}, 600)
        assert (outcome.kind, outcome.text) == ("ok", "echoed")
        assert servers.status()[0].restarts == 0
    ignored = "MCP server broken wrote what is not an MCP message to its output (ignored): "
    shown = [r.getMessage() for r in caplog.records if r.getMessage().startswith(ignored)]
    assert len(shown) >= 4 and set(shown) == {ignored + line}


async def test_a_server_exiting_at_a_bad_flag_shows_its_stderr_in_last_error() -> None:
    async with open_mcp_servers([broken_config("--bogus")]) as servers:
        with trio.fail_after(WAIT), pytest.raises(McpUnavailable) as raised:
            await servers.tools("broken")
        last_error = servers.status()[0].last_error
    assert last_error is not None
    # argparse wraps its usage to the terminal's width: only its ends are certain.
    assert last_error.startswith(
        "the MCP server broken failed to initialize: Connection closed; "
        "its stderr: usage: broken_server.py [-h] "
    )
    assert last_error.endswith("\\nbroken_server.py: error: unrecognized arguments: --bogus")
    # What a call (and so the model) is told says why, not what the server wrote:
    # its stderr may hold its configuration, secrets included.
    assert str(raised.value).startswith(
        "the MCP server broken failed to initialize: Connection closed (retrying in "
    )
    assert "stderr" not in str(raised.value)


async def test_the_stderr_in_last_error_is_its_bounded_escaped_tail() -> None:
    async with open_mcp_servers([broken_config("--die")]) as servers:
        with trio.fail_after(WAIT), pytest.raises(McpUnavailable):
            await servers.tools("broken")
        with trio.fail_after(WAIT):
            status = await servers.wait_for("broken", backoff)
    assert status.last_error is not None
    reason, _, stderr = status.last_error.partition("; its stderr: ")
    assert reason == "the MCP server broken failed to initialize: Connection closed"
    # Its last line, though it has no newline; the start of the last few lines.
    assert stderr.endswith("\\n\\x1b[31mfatal: the config is broken\\x1b[0m")
    assert stderr.startswith("…") and len(stderr) <= 401
    assert not any(unicodedata.category(c) == "Cc" for c in status.last_error)

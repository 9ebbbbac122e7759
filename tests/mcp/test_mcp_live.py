"""MCP tools end to end: a real server (``serve()`` on 127.0.0.1:0) mounting real MCP servers.

The servers are ones we did not write (``tests/mcp/servers.py``): ``mcp-server-time``
and ``@modelcontextprotocol/server-everything`` over stdio (wrapped in the wire
tap, so a test sees what the server was sent) and streamable HTTP. Clients are
real WebSocket and HTTP clients; the model is the scripted one (``call TOOL
{JSON}``) or the loopback fake OpenAI server.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from agents.mcp import HttpTransport, McpServerConfig, StdioTransport
from server import ServeConfig
from tests.fakes.openai_server import (
    Stream,
    finish_chunk,
    open_fake_openai,
    stream_text,
    tool_chunk,
    tool_fragment,
)
from tests.mcp.servers import (
    Tap,
    everything_config,
    everything_http,
    parent_of,
    time_config,
    wait_gone,
)
from tests.server.helpers import (
    STEP,
    Frame,
    LiveServer,
    WsClient,
    ended,
    make_config,
    start_server,
)

# The SDK's streamable HTTP transport leaves httpx2's async generators to the
# garbage collector; trio then warns (not our code, and harmless there).
pytestmark = [
    pytest.mark.filterwarnings(r"ignore:Async generator 'httpx2\.:ResourceWarning"),
    pytest.mark.filterwarnings(r"ignore:Async generator 'httpcore2\.:ResourceWarning"),
]

MODES = """
[modes.librarian]
description = "Uses MCP tools."
system_prompt = "You use the tools of MCP servers."
tool_groups = ["read"]
mcp = {servers}
"""


def write_modes(tmp_path: Path, *servers: str) -> Path:
    """A ``librarian`` mode using every tool of *servers*."""
    path = tmp_path / "modes.toml"
    path.write_text(MODES.format(servers=json.dumps(list(servers))), encoding="utf-8")
    return path


def write_policy(tmp_path: Path, rules: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(rules, encoding="utf-8")
    return path


@asynccontextmanager
async def mcp_server(
    tmp_path: Path, *servers: McpServerConfig, **overrides: Any
) -> AsyncIterator[LiveServer]:
    modes = write_modes(tmp_path, *(server.name for server in servers))
    config: ServeConfig = make_config(modes=modes, mcp_servers=servers, **overrides)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, config)
        try:
            yield server
        finally:
            server.shutdown.set()


async def run_turn(server: LiveServer, session_id: str, content: str) -> list[Frame]:
    """Send *content*, approve whatever asks, and return the turn's events.

    Through the public client library, as an IDE plugin would.
    """
    after = await last_seq(server, session_id)
    async with server.follow(session_id, after=after) as session:
        ack = await session.send({"type": "user_message", "content": content})
        assert ack.status == "accepted", ack
        events: list[Frame] = []
        with trio.fail_after(60):
            async for event in session.events():
                events.append(dict(event))
                if event["type"] == "approval.requested":
                    decision = {"type": "approval", "call_id": event["call_id"]}
                    approved = await session.send({**decision, "decision": "approve"})
                    assert approved.status == "accepted", approved
                if ended(event):
                    return events
    raise AssertionError("the session's events ended before the turn did")


LONG_CALL = 'call mcp__every__trigger-long-running-operation {"duration": 60, "steps": 60}'


async def start_long_call(client: WsClient, tap: Tap) -> tuple[Frame, object]:
    """Send a minute-long MCP call; return its turn's ack once the server got the request
    (and the request's id on the wire)."""
    ack = await client.command({"type": "user_message", "id": "m", "content": LONG_CALL})
    await client.until(lambda e: e["type"] == "tool.started")
    call_id = await tap.wait(
        lambda: tap.request_id("tools/call", "trigger-long-running-operation"),
        "the tools/call request",
    )
    return ack, call_id


async def last_seq(server: LiveServer, session_id: str) -> int:
    async with server.http() as http:
        response = await http.get(f"/v1/sessions/{session_id}/events", params={"limit": 1000})
    events = response.json()["events"]
    return int(events[-1]["seq"]) if events else 0


def of_type(events: list[Frame], type_: str) -> list[Frame]:
    return [e for e in events if e["type"] == type_]


async def history(server: LiveServer, session_id: str) -> list[Frame]:
    async with server.http() as http:
        response = await http.get(f"/v1/sessions/{session_id}/messages")
    messages = response.json()["messages"]
    assert isinstance(messages, list)
    return messages


def assert_paired(messages: list[Frame]) -> None:
    asked = [c["id"] for m in messages for c in m.get("tool_calls") or []]
    answered = [m["tool_call_id"] for m in messages if m["role"] == "tool"]
    assert asked == answered, messages


async def test_a_real_servers_tool_result_reaches_the_model_and_pairing_holds(
    tmp_path: Path,
) -> None:
    async with mcp_server(tmp_path, time_config(trusted=True)) as server:
        session_id = await server.new_session(agent="librarian")
        events = await run_turn(
            server, session_id, 'call mcp__time__get_current_time {"timezone": "UTC"}'
        )
        assert not of_type(events, "approval.requested")  # trusted, readOnlyHint
        assert not of_type(events, "tool.call")  # nothing for the IDE to run
        (started,) = of_type(events, "tool.started")
        assert started["server"] == "time" and started["arguments"] == {"timezone": "UTC"}
        (result,) = of_type(events, "tool.result")
        assert result["ok"] is True and json.loads(result["content"])["timezone"] == "UTC"
        assert "mcp__time__get_current_time succeeded" in of_type(events, "message")[-1]["content"]
        messages = await history(server, session_id)
        assert_paired(messages)
        assert '"day_of_week"' in messages[-2]["content"]  # the tool message the model read
        async with server.http() as http:
            listing = (await http.get("/v1/mcp")).json()["servers"]
            metrics = (await http.get("/metrics")).text
        (time_server,) = listing
        assert time_server["state"] == "ready" and time_server["transport"] == "stdio"
        names = {t["name"] for t in time_server["tools"]}
        assert names == {"mcp__time__get_current_time", "mcp__time__convert_time"}
        tool = next(t for t in time_server["tools"] if t["tool"] == "get_current_time")
        assert tool["annotations"]["readOnlyHint"] is True
        assert tool["input_schema"]["required"] == ["timezone"]
        assert (
            'agent_runtime_mcp_calls_total{outcome="ok",server="time",tool="get_current_time"} 1.0'
            in metrics
        )


async def test_the_fake_openai_models_mcp_call_reaches_the_server(tmp_path: Path) -> None:
    call = tool_chunk(
        tool_fragment(
            0,
            call_id="call_t",
            name="mcp__time__get_current_time",
            arguments='{"timezone": "Europe/Paris"}',
        )
    )
    script = [
        Stream((call, finish_chunk("tool_calls"))),
        stream_text("It is late in Paris."),
    ]
    async with open_fake_openai(script) as fake:
        async with mcp_server(
            tmp_path,
            time_config(trusted=True),
            llm="openai",
            llm_url=fake.base_url,
            model="fake-model",
        ) as server:
            session_id = await server.new_session(agent="librarian")
            events = await run_turn(server, session_id, "what time is it in Paris?")
            (result,) = of_type(events, "tool.result")
            assert result["ok"] is True and "Europe/Paris" in result["content"]
            # The model was offered the server's tool with its schema, then got the result.
            chats: list[Any] = [
                r.json() for r in fake.requests if r.path.endswith("/chat/completions")
            ]
            first = chats[0]
            offered = {t["function"]["name"]: t["function"] for t in first["tools"]}
            schema = offered["mcp__time__get_current_time"]["parameters"]
            assert schema["required"] == ["timezone"]
            second = chats[1]
            tool_message = second["messages"][-1]
            assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_t"
            assert "Europe/Paris" in tool_message["content"]
            assert of_type(events, "turn.ended")[0]["reason"] == "completed"


async def test_policy_untrusted_asks_trusted_read_only_runs_explicit_deny_wins(
    tmp_path: Path,
) -> None:
    policy = write_policy(
        tmp_path,
        '[[approval.rules]]\ntool = "mcp__every__get-sum"\naction = "deny"\nreason = "no sums"\n',
    )
    async with mcp_server(
        tmp_path,
        time_config(trusted=False),
        everything_config(trusted=True),
        policy=policy,
    ) as server:
        session_id = await server.new_session(agent="librarian")
        asked = await run_turn(
            server, session_id, 'call mcp__time__get_current_time {"timezone": "UTC"}'
        )
        (request,) = of_type(asked, "approval.requested")
        assert request["rule"] == (
            "default: mcp__time__get_current_time asks (MCP server time is not trusted)"
        )
        assert of_type(asked, "tool.result")[0]["ok"] is True

        allowed = await run_turn(server, session_id, 'call mcp__every__echo {"message": "hi"}')
        assert not of_type(allowed, "approval.requested")
        assert "hi" in of_type(allowed, "tool.result")[0]["content"]

        denied = await run_turn(server, session_id, 'call mcp__every__get-sum {"a": 1, "b": 2}')
        (result,) = of_type(denied, "tool.result")
        assert result["ok"] is False and "denied by policy: rule 1" in result["content"]
        assert not of_type(denied, "tool.started")


async def test_streamable_http_server_serves_a_call(tmp_path: Path) -> None:
    async with everything_http() as url:
        http_server = McpServerConfig("every", HttpTransport(url), trusted=True)
        async with mcp_server(tmp_path, http_server) as server:
            session_id = await server.new_session(agent="librarian")
            events = await run_turn(server, session_id, 'call mcp__every__get-sum {"a": 2, "b": 3}')
            (result,) = of_type(events, "tool.result")
            assert result["ok"] is True and "5" in result["content"]
            async with server.http() as http:
                (listed,) = (await http.get("/v1/mcp")).json()["servers"]
            assert listed["transport"] == "http" and listed["state"] == "ready"


async def test_cancel_during_a_long_call_sends_the_cancellation(tmp_path: Path) -> None:
    tap = Tap(tmp_path / "tap.log")
    async with mcp_server(tmp_path, everything_config(tap=tap, trusted=True)) as server:
        session_id = await server.new_session(agent="librarian")
        async with server.ws(session_id) as client:
            ack, call_id = await start_long_call(client, tap)
            started = trio.current_time()
            await client.command({"type": "cancel", "id": "c", "turn_id": ack["turn_id"]})
            events = await client.until(ended)
            took = trio.current_time() - started
        assert events[-1]["reason"] == "cancelled"
        (result,) = of_type(events, "tool.result")
        assert result["ok"] is False and result["content"].startswith("cancelled")
        assert took < 5.0, took  # a bound against hanging, not a benchmark (SPEC: ≤ 1 s)
        await tap.wait(lambda: tap.cancelled(call_id), "notifications/cancelled for the call")


async def test_a_timeout_cancels_the_call_and_tells_the_model(tmp_path: Path) -> None:
    tap = Tap(tmp_path / "tap.log")
    config = everything_config(tap=tap, trusted=True, timeout_s=0.5)
    async with mcp_server(tmp_path, config) as server:
        session_id = await server.new_session(agent="librarian")
        events = await run_turn(
            server,
            session_id,
            'call mcp__every__trigger-long-running-operation {"duration": 30, "steps": 30}',
        )
        (result,) = of_type(events, "tool.result")
        assert result["ok"] is False
        assert "did not answer trigger-long-running-operation within 0.5 s" in result["content"]
        assert events[-1]["reason"] == "completed"  # the model got the failure and answered
        call_id = tap.request_id("tools/call", "trigger-long-running-operation")
        await tap.wait(lambda: tap.cancelled(call_id), "notifications/cancelled")


async def test_error_results_invalid_arguments_and_oversized_results(tmp_path: Path) -> None:
    async with mcp_server(tmp_path, everything_config(trusted=True)) as server:
        session_id = await server.new_session(agent="librarian")
        # isError from the server: a tool error the model reads.
        failed = await run_turn(
            server,
            session_id,
            'call mcp__every__gzip-file-as-resource {"name": "x.gz", "data": "notaurl://"}',
        )
        (result,) = of_type(failed, "tool.result")
        assert result["ok"] is False and result["content"].startswith("error: ")
        # Schema-invalid arguments never reach the server.
        invalid = await run_turn(server, session_id, 'call mcp__every__get-sum {"a": "one"}')
        (refused,) = of_type(invalid, "tool.result")
        assert refused["ok"] is False and "mcp__every__get-sum:" in refused["content"]
        assert not of_type(invalid, "tool.started")
        # A 300 KB result: whole in the log, cut in what the model reads.
        big = "x" * 300_000
        events = await run_turn(server, session_id, f'call mcp__every__echo {{"message": "{big}"}}')
        (whole,) = of_type(events, "tool.result")
        assert whole["ok"] is True and big in whole["content"]
        messages = await history(server, session_id)
        assert_paired(messages)


async def test_killing_the_mcp_server_mid_call_fails_the_call_then_it_restarts(
    tmp_path: Path,
) -> None:
    tap = Tap(tmp_path / "tap.log")
    async with mcp_server(tmp_path, everything_config(tap=tap, trusted=True)) as server:
        session_id = await server.new_session(agent="librarian")
        async with server.ws(session_id) as client:
            await start_long_call(client, tap)
            pids = tap.pids()
            assert pids is not None
            os.kill(pids["server"], signal.SIGKILL)  # the real server dies mid-call
            events = await client.until(ended)
        (result,) = of_type(events, "tool.result")
        assert result["ok"] is False and "whether it took effect is unknown" in result["content"]
        assert events[-1]["reason"] == "completed"  # the call failed, not the turn
        again = await run_turn(server, session_id, 'call mcp__every__echo {"message": "back"}')
        assert of_type(again, "tool.result")[0]["ok"] is True
        async with server.http() as http:
            (listed,) = (await http.get("/v1/mcp")).json()["servers"]
        assert listed["restarts"] >= 1


@pytest.mark.slow
async def test_sigkill_of_the_runtime_mid_call_resolves_it_failed_unknown_never_rerun(
    tmp_path: Path,
) -> None:
    from tests.server.test_process import TOKEN, running_server

    tap = Tap(tmp_path / "tap.log")
    transport = everything_config(tap=tap, trusted=True).transport
    assert isinstance(transport, StdioTransport)
    command = json.dumps(transport.command)
    args = ", ".join(json.dumps(a) for a in transport.args)
    config_file = tmp_path / "agent.toml"
    config_file.write_text(
        f'[agents]\nmodes = "{write_modes(tmp_path, "every")}"\n\n'
        f"[mcp.servers.every]\ncommand = {command}\nargs = [{args}]\ntrusted = true\n",
        encoding="utf-8",
    )
    db, log = tmp_path / "sessions.db", tmp_path / "server.log"
    async with running_server(db, log, "--config", str(config_file)) as (process, server):
        session_id = await server.new_session(TOKEN, agent="librarian")
        async with server.ws(session_id, TOKEN) as client:
            await start_long_call(client, tap)
            pids = tap.pids()
            assert pids is not None
            warden = parent_of(pids["tap"])
            process.kill()  # SIGKILL of the runtime while the MCP call is in flight
            await process.wait()
    assert process.returncode == -signal.SIGKILL
    # Nothing of the runtime runs on: its warden stopped the server (busy in the
    # call, it would not have noticed its stdin closing) and what that started.
    await wait_gone({warden, *pids.values()})
    calls_before = [m for m in tap.messages() if m.get("method") == "tools/call"]

    async with running_server(db, log, "--config", str(config_file)) as (_, server):
        async with server.ws(session_id, TOKEN) as client:
            with trio.fail_after(STEP * 3):
                events = await client.until(ended)
        (result,) = of_type(events, "tool.result")
        assert result["ok"] is False
        assert "whether the call took effect is unknown (it was not run again)" in result["content"]
        assert events[-1]["reason"] == "completed"  # the turn went on with the failure
    calls_after = [m for m in tap.messages() if m.get("method") == "tools/call"]
    assert calls_after == calls_before  # never re-run

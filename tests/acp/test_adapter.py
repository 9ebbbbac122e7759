"""The adapter end to end, in process: a scripted ACP client against :func:`serve_acp`.

The adapter runs on in-memory streams over the embedded runtime (in-memory store,
scripted model); the test plays the editor: it answers ``fs/*`` from a temporary
directory, runs ``terminal/*`` commands for real and answers permission requests.
Every message the adapter sends is checked against the ACP schema
(:mod:`tests.acp.conformance`).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from agents._core._budget import SCRIPTED_LIMITS, ModelCatalog, ModelLimits
from agents._providers._scripted import stream_words
from server._config import ServeConfig
from server.acp import EmbeddedLink, LinkError, SessionBook, SessionInfo, open_embedded_link
from server.acp._agent import serve_acp
from server.acp._connection import LineReader
from sessions import JSONObject
from tests.acp.conformance import Conformance

Message = dict[str, Any]
# Seconds a test waits for the adapter's next message before it fails.
RECEIVE_TIMEOUT = 10.0
CAPS: Message = {"fs": {"readTextFile": True, "writeTextFile": True}, "terminal": True}


class Client:
    """The editor's side of one connection (see the module docstring)."""

    def __init__(
        self,
        to_agent: trio.testing.MemorySendStream,
        from_agent: trio.testing.MemoryReceiveStream,
        workspace: Path,
    ) -> None:
        self.to_agent = to_agent
        self.reader = LineReader(from_agent)
        self.workspace = workspace
        self.conformance = Conformance()
        self.next_id = 1
        self.permission: Callable[[Message], Message] = lambda _: selected("allow_once")
        self.elicit: Callable[[Message], Message] = lambda _: {"action": "decline"}
        self.received: list[Message] = []  # every agent message, in order
        self.terminals: dict[str, Message] = {}
        self.released: list[str] = []
        self.killed: list[str] = []
        self.hold: set[str] = set()  # methods this client never answers

    async def send(self, message: Message) -> None:
        self.conformance.client_sent(message)
        await self.to_agent.send_all(json.dumps(message).encode() + b"\n")

    async def send_line(self, line: bytes, *, reply_id: object = None) -> None:
        """A line that is no usable request: the adapter answers it with an error."""
        self.conformance.client_sent_garbage(reply_id)
        await self.to_agent.send_all(line + b"\n")

    async def receive(self) -> Message:
        with trio.fail_after(RECEIVE_TIMEOUT):  # a hang fails the test instead
            line = await self.reader.next_line()
        assert isinstance(line, bytes), "the adapter closed its output"
        message: Message = json.loads(line)
        self.conformance.check(message)
        self.received.append(message)
        return message

    async def request(self, method: str, params: Message) -> int:
        message = self.make_request(method, params)
        await self.send(message)
        return int(message["id"])

    def make_request(self, method: str, params: Message) -> Message:
        """A request with the next id, not sent yet (see :meth:`send_together`)."""
        request_id = self.next_id
        self.next_id += 1
        return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}

    async def send_together(self, *messages: Message) -> None:
        """*messages* in one write, as a client pipelining them sends them."""
        for message in messages:
            self.conformance.client_sent(message)
        await self.to_agent.send_all(b"".join(json.dumps(m).encode() + b"\n" for m in messages))

    async def call(self, method: str, params: Message) -> Message:
        """Send a request; answer the adapter's own requests until its response comes."""
        return await self.wait_response(await self.request(method, params))

    async def wait_response(self, request_id: int) -> Message:
        while True:
            message = await self.receive()
            if "method" in message and "id" in message:
                await self.answer(message)
            elif message.get("id") == request_id and "method" not in message:
                return message

    async def response(self, request_id: int) -> Message:
        """The response to our request *request_id*, received already or to come."""
        return await self.until(lambda m: m.get("id") == request_id and "method" not in m)

    async def until(self, predicate: Callable[[Message], bool]) -> Message:
        """The first message matching *predicate*, among those received already or,
        answering requests meanwhile, the next ones."""
        for message in self.received:
            if predicate(message):
                return message
        while True:
            message = await self.receive()
            if predicate(message):
                return message
            if "method" in message and "id" in message:
                await self.answer(message)

    async def answer(self, request: Message) -> None:
        method, params = request["method"], request["params"]
        if method in self.hold:
            return  # never answered: the command "runs" until the adapter gives up
        try:
            result = await self.serve(method, params)
        except OSError as error:
            reply: Message = {"code": -32002, "message": str(error)}
            await self.send({"jsonrpc": "2.0", "id": request["id"], "error": reply})
            return
        await self.send({"jsonrpc": "2.0", "id": request["id"], "result": result})

    async def serve(self, method: str, params: Message) -> Message:
        path = Path(params.get("path", "/nonexistent"))
        if method == "session/request_permission":
            return self.permission(params)
        if method == "elicitation/create":
            return self.elicit(params)
        if method == "fs/read_text_file":
            assert path.is_absolute() and self.workspace in path.parents
            return {"content": await trio.Path(path).read_text()}
        if method == "fs/write_text_file":
            assert path.is_absolute() and self.workspace in path.parents
            await trio.Path(path).write_text(params["content"])
            return {}
        if method == "terminal/create":
            terminal_id = f"term-{len(self.terminals) + 1}"
            self.terminals[terminal_id] = {"argv": [params["command"], *params.get("args", [])]}
            self.terminals[terminal_id].update(cwd=params.get("cwd"), output="", code=None)
            return {"terminalId": terminal_id}
        terminal = self.terminals[params["terminalId"]]
        if method == "terminal/wait_for_exit":  # the command runs now, to its end
            done = await trio.run_process(
                terminal["argv"],
                cwd=terminal["cwd"],
                capture_stdout=True,
                stderr=subprocess.STDOUT,
                check=False,
            )
            terminal.update(output=done.stdout.decode(), code=done.returncode)
            return {"exitCode": terminal["code"], "signal": None}
        if method == "terminal/output":
            status = {"exitCode": terminal["code"], "signal": None}
            return {"output": terminal["output"], "truncated": False, "exitStatus": status}
        if method == "terminal/kill":
            self.killed.append(params["terminalId"])
            return {}
        if method == "terminal/release":
            self.released.append(params["terminalId"])
            return {}
        raise AssertionError(f"unexpected request {method}")

    async def initialize(self, caps: Message | None = None) -> Message:
        params = {"protocolVersion": 1, "clientCapabilities": CAPS if caps is None else caps}
        response = await self.call("initialize", params)
        return response["result"]  # type: ignore[no-any-return]

    async def new_session(self) -> str:
        response = await self.call("session/new", {"cwd": str(self.workspace), "mcpServers": []})
        return response["result"]["sessionId"]  # type: ignore[no-any-return]

    async def prompt(self, session_id: str, text: str) -> Message:
        prompt = [{"type": "text", "text": text}]
        return await self.call("session/prompt", {"sessionId": session_id, "prompt": prompt})

    def updates(self, kind: str | None = None) -> list[Message]:
        found = [
            m["params"]["update"] for m in self.received if m.get("method") == "session/update"
        ]
        return [u for u in found if kind is None or u["sessionUpdate"] == kind]

    def requests(self) -> list[str]:
        return [m["method"] for m in self.received if "method" in m and "id" in m]


def selected(option: str) -> Message:
    return {"outcome": {"outcome": "selected", "optionId": option}}


@asynccontextmanager
async def connected(
    link: Any, workspace: Path, book: SessionBook | None = None
) -> AsyncIterator[Client]:
    """An adapter on in-memory streams, and the client driving it; leaving sends EOF and
    waits for the adapter to end."""
    to_agent, agent_in = trio.testing.memory_stream_one_way_pair()
    agent_out, from_agent = trio.testing.memory_stream_one_way_pair()
    ended = trio.Event()

    async def run() -> None:
        await serve_acp(agent_in, agent_out, link, book=book)
        ended.set()

    root = Path(await trio.Path(workspace).resolve())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        yield Client(to_agent, from_agent, root)
        await to_agent.aclose()
        with trio.fail_after(5):
            await ended.wait()


def text_of(updates: list[Message]) -> str:
    return "".join(u["content"]["text"] for u in updates)


def session_text(client: Client, session_id: str, *, after: int = 0) -> str:
    """The ``agent_message_chunk`` text of *session_id* in what *client* received from
    position *after* on."""
    return "".join(
        m["params"]["update"]["content"]["text"]
        for m in client.received[after:]
        if m.get("method") == "session/update"
        and m["params"]["sessionId"] == session_id
        and m["params"]["update"]["sessionUpdate"] == "agent_message_chunk"
    )


async def until_text(client: Client, session_id: str, text: str, *, after: int = 0) -> None:
    """Wait until *session_id*'s text from *after* on is *text* (a held reply's head)."""
    await client.until(lambda _: session_text(client, session_id, after=after) == text)


def prompt_params(session_id: str, text: str) -> Message:
    return {"sessionId": session_id, "prompt": [{"type": "text", "text": text}]}


def load_params(session_id: str, cwd: Path, servers: Sequence[Message] = ()) -> Message:
    return {"sessionId": session_id, "cwd": str(cwd), "mcpServers": list(servers)}


def cancel_note(session_id: str) -> Message:
    return {"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": session_id}}


async def load_mid_reply_from_another_adapter(link: Any, tmp_path: Path) -> None:
    """A session loaded by a second adapter while its reply streams: the replay ends
    with the reply so far, the rest follows live, with no gap and no duplicate."""
    async with connected(link, tmp_path) as first:
        await first.initialize()
        session_id = await first.new_session()
        held = prompt_params(session_id, "stream 10 words then hold MIDLOAD then 10 words")
        prompt_id = await first.request("session/prompt", held)
        await until_text(first, session_id, stream_words(10))  # held at its gate
        async with connected(link, tmp_path) as second:
            await second.initialize()
            loaded = await second.call("session/load", load_params(session_id, second.workspace))
            assert "result" in loaded, loaded
            assert session_text(second, session_id) == stream_words(10)
            other = await first.new_session()
            await first.prompt(other, "release MIDLOAD")
            assert (await first.response(prompt_id))["result"]["stopReason"] == "end_turn"
            # A later turn's answer comes after every update of the held one.
            await second.prompt(session_id, "stream 2 words")
            assert session_text(second, session_id) == stream_words(20) + stream_words(2)


async def load_mid_reply_again(link: Any, tmp_path: Path) -> None:
    """The session loaded again on the same connection while its reply streams: the
    replay (which the editor shows in place of what it had) has the reply whole, once."""
    async with connected(link, tmp_path) as client:
        await client.initialize()
        session_id = await client.new_session()
        held = prompt_params(session_id, "stream 10 words then hold MIDRELOAD then 10 words")
        prompt_id = await client.request("session/prompt", held)
        await until_text(client, session_id, stream_words(10))
        mark = len(client.received)
        loaded = await client.call("session/load", load_params(session_id, client.workspace))
        assert "result" in loaded, loaded
        assert session_text(client, session_id, after=mark) == stream_words(10)
        other = await client.new_session()
        await client.prompt(other, "release MIDRELOAD")
        assert (await client.response(prompt_id))["result"]["stopReason"] == "end_turn"
        assert session_text(client, session_id, after=mark) == stream_words(20)


@pytest.mark.parametrize(
    ("ending", "stop"),
    [
        ("", "end_turn"),
        (" then cut off", "max_tokens"),
        (" then cut off by content_filter", "refusal"),
    ],
)
async def test_an_answer_cut_off_by_the_provider_is_its_stop_reason(
    link: EmbeddedLink, tmp_path: Path, ending: str, stop: str
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize()
        session_id = await client.new_session()
        response = await client.prompt(session_id, f"stream 5 words{ending}")
        assert response["result"]["stopReason"] == stop
        assert session_text(client, session_id) == stream_words(5)


async def test_initialize_negotiates_version_1_and_text_prompts(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        result = await client.initialize()
    assert result["protocolVersion"] == 1
    caps = result["agentCapabilities"]
    assert caps["loadSession"] is True
    assert caps["promptCapabilities"] == {"image": False, "audio": False, "embeddedContext": False}
    # The session capabilities: tests/acp/test_lifecycle.py.


async def test_a_prompt_asks_permission_then_writes_through_the_client(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize()
        session_id = await client.new_session()
        response = await client.prompt(session_id, "create hello.py with print(1)")
        assert response["result"]["stopReason"] == "end_turn"
        assert (tmp_path / "hello.py").read_text() == "print(1)"
        # Asked first, then read (the diff's old text: a new file), then written.
        assert client.requests() == [
            "session/request_permission",
            "fs/read_text_file",
            "fs/write_text_file",
        ]
        asked = next(m for m in client.received if m.get("method") == "session/request_permission")
        tool_call = asked["params"]["toolCall"]
        assert tool_call["toolCallId"] == "call_1" and tool_call["kind"] == "edit"
        assert "write_file asks for approval" in json.dumps(tool_call["content"])
        kinds = [o["kind"] for o in asked["params"]["options"]]
        assert kinds == ["allow_once", "allow_always", "reject_once", "reject_always"]
        announced = client.updates("tool_call")
        assert [(u["toolCallId"], u["status"]) for u in announced] == [("call_1", "pending")]
        statuses = [u.get("status") for u in client.updates("tool_call_update")]
        assert statuses == ["in_progress", "completed"]
        done = client.updates("tool_call_update")[-1]
        path = str(client.workspace / "hello.py")
        assert done["content"] == [
            {"type": "diff", "path": path, "oldText": None, "newText": "print(1)"}
        ]
        assert client.updates("current_mode_update") == [
            {"sessionUpdate": "current_mode_update", "currentModeId": "coder"}
        ]
        text = text_of(client.updates("agent_message_chunk"))
        assert text == "Writing hello.py.Done: write_file hello.py succeeded."
        # The answer comes after every update of its turn.
        assert client.received[-1]["id"] == 3


async def test_a_rejected_permission_runs_nothing(link: EmbeddedLink, tmp_path: Path) -> None:
    async with connected(link, tmp_path) as client:
        client.permission = lambda _: selected("reject_once")
        await client.initialize()
        session_id = await client.new_session()
        response = await client.prompt(session_id, "create hello.py with print(1)")
        assert response["result"]["stopReason"] == "end_turn"
        assert not (tmp_path / "hello.py").exists()
        assert client.requests() == ["session/request_permission"]
        assert client.updates("tool_call_update")[-1]["status"] == "failed"


async def test_a_command_runs_in_a_client_terminal(link: EmbeddedLink, tmp_path: Path) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize()
        session_id = await client.new_session()
        response = await client.prompt(session_id, "run echo hi")
        assert response["result"]["stopReason"] == "end_turn"
        assert client.requests() == [
            "session/request_permission",
            "terminal/create",
            "terminal/wait_for_exit",
            "terminal/output",
            "terminal/release",
        ]
        create = next(m for m in client.received if m.get("method") == "terminal/create")
        assert create["params"]["command"] == "sh"
        assert create["params"]["args"] == ["-c", "echo hi"]
        assert create["params"]["cwd"] == str(client.workspace)
        assert client.released == ["term-1"]
        terminal = [{"type": "terminal", "terminalId": "term-1"}]
        contents = [u.get("content") for u in client.updates("tool_call_update")]
        assert contents[-1] == terminal and terminal in contents[:-1]
        assert client.updates("tool_call_update")[-1]["status"] == "completed"
        assert '{"exit_code":0,"output":"hi\\n"}' in text_of(client.updates("agent_message_chunk"))


async def test_a_slash_compact_prompt_compacts_and_anything_else_is_a_message(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize()
        session_id = await client.new_session()
        for i in range(3):
            await client.prompt(session_id, f"remember fact {i}")
        compacted = await client.prompt(session_id, "/compact   keep the facts")
        assert compacted["result"]["stopReason"] == "end_turn"
        await client.prompt(session_id, "/compactor is not a command")
    events = await link.read_events(session_id)
    started = [e for e in events if e["type"] == "compaction.started"]
    assert [e["reason"] for e in started] == ["requested"]
    assert any(e["type"] == "context.compacted" for e in events)
    said = [str(e["content"]) for e in events if e["type"] == "user.message"]
    assert said[-1] == "/compactor is not a command" and not any(
        "keep the facts" in t for t in said
    )
    announced = client.updates("available_commands_update")
    assert [c["name"] for u in announced for c in u["availableCommands"]] == ["compact"]


async def test_cancel_mid_stream_answers_cancelled_within_a_second(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize()
        session_id = await client.new_session()
        prompt = [{"type": "text", "text": "slow stream 50 words"}]
        prompt_id = await client.request(
            "session/prompt", {"sessionId": session_id, "prompt": prompt}
        )
        await client.until(
            lambda m: (
                m.get("params", {}).get("update", {}).get("sessionUpdate") == "agent_message_chunk"
            )
        )
        cancelled_at = trio.current_time()
        await client.send(
            {"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": session_id}}
        )
        response = await client.wait_response(prompt_id)
        assert trio.current_time() - cancelled_at < 1.0
        assert response["result"]["stopReason"] == "cancelled"
        streamed = text_of(client.updates("agent_message_chunk"))
        assert 0 < len(streamed.split()) < 50
        # The cut call was billed: its estimate is the turn's usage, and the meter
        # went out before the answer.
        assert response["result"]["usage"]["outputTokens"] > 0
        assert [u["used"] > 0 for u in client.updates("usage_update")] == [True]
        # The session takes the next prompt as usual.
        again = await client.prompt(session_id, "read hello.py")
        assert again["result"]["stopReason"] == "end_turn"


async def test_load_replays_the_history(link: EmbeddedLink, tmp_path: Path) -> None:
    book = SessionBook()
    async with connected(link, tmp_path, book) as client:
        await client.initialize()
        session_id = await client.new_session()
        await client.prompt(session_id, "create hello.py with print(1)")
    async with connected(link, tmp_path, book) as client:
        await client.initialize()
        response = await client.call(
            "session/load", {"sessionId": session_id, "cwd": str(tmp_path), "mcpServers": []}
        )
        assert response["result"]["modes"]["currentModeId"] == "coder"
        updates = client.updates()
        assert updates[0] == {
            "sessionUpdate": "user_message_chunk",
            "content": {"type": "text", "text": "create hello.py with print(1)"},
        }
        assert text_of(client.updates("agent_message_chunk")) == (
            "Writing hello.py.Done: write_file hello.py succeeded."
        )
        assert [u["toolCallId"] for u in client.updates("tool_call")] == ["call_1"]
        assert client.updates("tool_call_update")[-1]["status"] == "completed"
        assert client.requests() == []  # nothing is run again
        listed = await client.call("session/list", {})
        sessions = listed["result"]["sessions"]
        assert [(s["sessionId"], s["cwd"]) for s in sessions] == [
            (session_id, str(client.workspace))
        ]
        assert sessions[0]["title"] == "create hello.py with print(1)"
        # Prompting the loaded session goes on from its history.
        again = await client.prompt(session_id, "read hello.py")
        assert again["result"]["stopReason"] == "end_turn"
        assert "fs/read_text_file" in client.requests()


async def test_two_loads_at_once_ask_and_run_a_pending_call_once(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    book = SessionBook()
    async with connected(link, tmp_path, book) as client:
        await client.initialize()
        session_id = await client.new_session()
        client.hold = {"session/request_permission"}
        prompt = [{"type": "text", "text": "create hello.py with print(1)"}]
        await client.request("session/prompt", {"sessionId": session_id, "prompt": prompt})
        await client.until(lambda m: m.get("method") == "session/request_permission")
    # The editor left with the approval pending; the next one loads the session twice
    # without waiting for the first answer.
    async with connected(link, tmp_path, book) as client:
        await client.initialize()
        params = {"sessionId": session_id, "cwd": str(tmp_path), "mcpServers": []}
        first = await client.request("session/load", params)
        second = await client.request("session/load", params)
        assert "result" in await client.wait_response(first)
        assert "result" in await client.wait_response(second)
        # Allowed, the call runs and the turn ends; a later turn ends after it.
        await client.until(
            lambda m: m.get("params", {}).get("update", {}).get("status") == "completed"
        )
        again = await client.prompt(session_id, "read hello.py")
        assert again["result"]["stopReason"] == "end_turn"
        assert client.requests().count("session/request_permission") == 1
        assert client.requests().count("fs/write_text_file") == 1
        assert len(client.updates("user_message_chunk")) == 2  # each load replayed it
        assert (tmp_path / "hello.py").read_text() == "print(1)"


async def test_set_mode_switches_the_agent(link: EmbeddedLink, tmp_path: Path) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize()
        session_id = await client.new_session()
        response = await client.call("session/set_mode", {"sessionId": session_id, "modeId": "ask"})
        assert response["result"] == {}
        await client.until(
            lambda m: m.get("params", {}).get("update", {}).get("currentModeId") == "ask"
        )
        unknown = await client.call(
            "session/set_mode", {"sessionId": session_id, "modeId": "nobody"}
        )
        assert unknown["error"]["code"] == -32602


async def test_the_agent_is_a_config_option_the_client_can_set(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize()
        created = await client.call("session/new", {"cwd": str(tmp_path), "mcpServers": []})
        session_id = created["result"]["sessionId"]
        option, model = created["result"]["configOptions"]
        assert option["id"] == "mode" and option["currentValue"] == "orchestrator"
        assert model["id"] == "model" and model["currentValue"] == "default"
        assert [o["value"] for o in option["options"]] == [
            m["id"] for m in created["result"]["modes"]["availableModes"]
        ]
        params = {"sessionId": session_id, "configId": "mode", "value": "ask"}
        response = await client.call("session/set_config_option", params)
        option, model = response["result"]["configOptions"]
        assert option["currentValue"] == "ask" and model["currentValue"] == "default"
        # The switch is told both ways: as the mode and as the config option.
        update = await client.until(
            lambda m: (
                m.get("params", {}).get("update", {}).get("sessionUpdate") == "config_option_update"
            )
        )
        assert update["params"]["update"]["configOptions"][0]["currentValue"] == "ask"
        assert [u["currentModeId"] for u in client.updates("current_mode_update")] == ["ask"]
        # Its log says the agent switched; a load reports it as current.
        events = await link.read_events(session_id)
        assert [e["to"] for e in events if e["type"] == "agent.switched"] == ["ask"]
        loaded = await client.call(
            "session/load", {"sessionId": session_id, "cwd": str(tmp_path), "mcpServers": []}
        )
        assert loaded["result"]["configOptions"][0]["currentValue"] == "ask"
        bad_params: list[dict[str, Any]] = [
            {"configId": "model", "value": "gpt"},
            {"configId": "mode", "value": "nobody"},
            {"configId": "mode", "type": "boolean", "value": True},
            {"configId": "mode"},
        ]
        for bad in bad_params:
            refused = await client.call(
                "session/set_config_option", {"sessionId": session_id, **bad}
            )
            assert refused["error"]["code"] == -32602, (bad, refused)


async def test_the_model_is_a_config_option_the_client_can_set(tmp_path: Path) -> None:
    tables = {"scripted": SCRIPTED_LIMITS, "big": ModelLimits(200_000, 8_000)}
    config = ServeConfig(db=":memory:", scripted_pace=0.0, models=ModelCatalog(tables))
    async with open_embedded_link(config) as link, connected(link, tmp_path) as client:
        await client.initialize()
        session_id = await client.new_session()
        params = {"sessionId": session_id, "configId": "model", "value": "big"}
        response = await client.call("session/set_config_option", params)
        _, model = response["result"]["configOptions"]
        assert model["currentValue"] == "big"
        assert [o["value"] for o in model["options"]] == ["default", "scripted", "big"]
        update = await client.until(
            lambda m: (
                m.get("params", {}).get("update", {}).get("sessionUpdate") == "config_option_update"
            )
        )
        assert update["params"]["update"]["configOptions"][1]["currentValue"] == "big"
        assert (await client.prompt(session_id, "stream 2 words"))["result"]["stopReason"]
        events = await link.read_events(session_id)
        assert [e["to"] for e in events if e["type"] == "model.switched"] == ["big"]
        assert [e["model"] for e in events if e["type"] == "turn.started"] == ["big"]
        # Loaded, resumed or forked elsewhere, the session says which model it is on.
        async with connected(link, tmp_path) as other:
            await other.initialize()
            for method in ("session/load", "session/resume", "session/fork"):
                opened = await other.call(method, load_params(session_id, other.workspace))
                assert opened["result"]["configOptions"][1]["currentValue"] == "big", method
        back = {**params, "value": "default"}
        answer = await client.call("session/set_config_option", back)
        assert answer["result"]["configOptions"][1]["currentValue"] == "default"
        refused = await client.call("session/set_config_option", {**params, "value": "gpt-5"})
        assert refused["error"]["code"] == -32602
        assert "default, scripted, big" in refused["error"]["message"]
        events = await link.read_events(session_id)
        assert [e["to"] for e in events if e["type"] == "model.switched"] == ["big", None]


async def test_malformed_input_gets_errors_and_the_adapter_goes_on(
    link: EmbeddedLink, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with connected(link, tmp_path) as client:
        await client.send_line(b"this is not json")
        assert (await client.receive())["error"]["code"] == -32700
        await client.send_line(b"[]")
        assert (await client.receive())["error"]["code"] == -32600
        await client.send_line(b'{"jsonrpc": "1.0", "id": 5, "method": "initialize"}', reply_id=5)
        reply = await client.receive()
        assert (reply["id"], reply["error"]["code"]) == (5, -32600)
        cursor = await client.call("session/list", {"cursor": "garbage"})
        assert cursor["error"]["code"] == -32602
        assert cursor["error"]["message"].startswith('"cursor": ')
        missing = await client.call("no/such_method", {})
        assert missing["error"]["code"] == -32601
        # A request without its id cannot be answered; it is not dropped unseen.
        no_id = {"jsonrpc": "2.0", "method": "session/list", "params": {}}
        await client.to_agent.send_all(json.dumps(no_id).encode() + b"\n")
        cancel = await client.call("session/cancel", {"sessionId": "ses_nope"})
        assert cancel["error"] == {
            "code": -32601,
            "message": "session/cancel is a notification: send no id",
        }
        bad = await client.call("initialize", {"protocolVersion": "one"})
        assert bad["error"]["code"] == -32602
        unknown = await client.call("session/prompt", {"sessionId": "ses_nope", "prompt": []})
        assert unknown["error"]["code"] == -32002
        no_cwd = await client.call("session/new", {"cwd": "relative/dir", "mcpServers": []})
        assert no_cwd["error"]["code"] == -32602
        # A response to nothing we asked is ignored (no reply), and a valid request still works.
        await client.to_agent.send_all(b'{"jsonrpc": "2.0", "id": 999, "result": {}}\n')
        session_id = await client.new_session()
        empty = await client.call("session/prompt", {"sessionId": session_id, "prompt": []})
        assert empty["error"]["code"] == -32602
        image = [{"type": "image", "data": "AA==", "mimeType": "image/png"}]
        refused = await client.call("session/prompt", {"sessionId": session_id, "prompt": image})
        assert refused["error"]["code"] == -32602
        result = await client.initialize()
        assert result["protocolVersion"] == 1
    assert "ignoring 'session/list' sent without an id: a request needs one" in caplog.text


class FailingLink:
    """The embedded link, except that creating a session fails like a full disk."""

    def __init__(self, inner: EmbeddedLink) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def create_session(self, *, instructions: str | None = None) -> SessionInfo:
        raise LinkError("storage_unavailable", "the session store cannot write right now")


async def test_a_runtime_failure_is_an_internal_error(link: EmbeddedLink, tmp_path: Path) -> None:
    async with connected(FailingLink(link), tmp_path) as client:
        response = await client.call("session/new", {"cwd": str(tmp_path), "mcpServers": []})
        error = response["error"]
        assert error["code"] == -32603
        assert error["data"] == {"code": "storage_unavailable"}


async def test_end_of_input_ends_the_adapter(link: EmbeddedLink, tmp_path: Path) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize()
        session_id = await client.new_session()
        prompt = [{"type": "text", "text": "slow stream 50 words"}]
        await client.request("session/prompt", {"sessionId": session_id, "prompt": prompt})
        await client.until(lambda m: m.get("method") == "session/update")
    # connected() closed the input and saw the adapter end; its streaming turn was
    # cancelled, and the prompt answered so before the output closed.
    rest = []
    while isinstance(line := await client.reader.next_line(), bytes):
        rest.append(json.loads(line))
        client.conformance.check(rest[-1])
    assert rest[-1]["id"] == 3 and rest[-1]["result"]["stopReason"] == "cancelled"
    events = await link.read_events(session_id)
    ended = [e for e in events if e["type"] == "turn.ended"]
    assert [e["reason"] for e in ended] == ["cancelled"]
    assert client.conformance.checked >= 3


async def test_an_edit_reads_applies_the_search_replace_and_writes(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    (tmp_path / "hello.py").write_text("print(1)\n")
    async with connected(link, tmp_path) as client:
        client.permission = lambda _: selected("allow_always")
        await client.initialize()
        session_id = await client.new_session()
        response = await client.prompt(session_id, "edit hello.py replace 1 with 2")
        assert response["result"]["stopReason"] == "end_turn"
        assert (tmp_path / "hello.py").read_text() == "print(2)\n"
        path = str(client.workspace / "hello.py")
        assert client.updates("tool_call_update")[-1]["content"] == [
            {"type": "diff", "path": path, "oldText": "print(1)\n", "newText": "print(2)\n"}
        ]
        # "Always allow" is the runtime's remember: the next edit is not asked about.
        asked = client.requests().count("session/request_permission")
        await client.prompt(session_id, "edit hello.py replace 2 with 3")
        assert client.requests().count("session/request_permission") == asked
        assert (tmp_path / "hello.py").read_text() == "print(3)\n"


async def test_always_reject_is_kept_for_the_session(link: EmbeddedLink, tmp_path: Path) -> None:
    async with connected(link, tmp_path) as client:
        client.permission = lambda _: selected("reject_always")
        await client.initialize()
        session_id = await client.new_session()
        await client.prompt(session_id, "create a.py with 1")
        await client.prompt(session_id, "create b.py with 2")
        assert client.requests() == ["session/request_permission"]
        assert not (tmp_path / "a.py").exists() and not (tmp_path / "b.py").exists()
        assert [u["status"] for u in client.updates("tool_call_update")] == ["failed", "failed"]
    events = await link.read_events(session_id)
    resolved = [(e["decision"], e["by"]) for e in events if e["type"] == "approval.resolved"]
    assert resolved == [("reject", "user"), ("reject", "policy")]


async def test_without_client_capabilities_tools_run_in_the_cwd(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize(caps={})
        session_id = await client.new_session()
        await client.prompt(session_id, "create hello.py with print(1)")
        await client.prompt(session_id, "run cat hello.py")
        await client.prompt(session_id, "list .")
        assert set(client.requests()) == {"session/request_permission"}
        assert (tmp_path / "hello.py").read_text() == "print(1)"
        text = text_of(client.updates("agent_message_chunk"))
        assert '"output":"print(1)"' in text and "hello.py" in text
        # An escape is refused before anything runs.
        await client.prompt(session_id, "read ../outside.txt")
        assert client.updates("tool_call_update")[-1]["status"] == "failed"


async def test_a_question_without_choices_is_shown_and_answered(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize()
        session_id = await client.new_session()
        response = await client.prompt(session_id, "ask which file should I use?")
        assert response["result"]["stopReason"] == "end_turn"
        assert client.requests() == []
        assert "which file should I use?" in text_of(client.updates("agent_message_chunk"))


async def test_cancel_kills_and_releases_a_running_command(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        client.hold = {"terminal/wait_for_exit"}
        await client.initialize()
        session_id = await client.new_session()
        prompt = [{"type": "text", "text": "run sleep 30"}]
        prompt_id = await client.request(
            "session/prompt", {"sessionId": session_id, "prompt": prompt}
        )
        await client.until(lambda m: m.get("method") == "terminal/wait_for_exit")
        cancelled_at = trio.current_time()
        await client.send(
            {"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": session_id}}
        )
        response = await client.wait_response(prompt_id)
        assert response["result"]["stopReason"] == "cancelled"
        assert trio.current_time() - cancelled_at < 1.0
        await client.until(lambda m: m.get("method") == "terminal/release")
        assert client.killed == ["term-1"] and client.released == ["term-1"]
        assert client.updates("tool_call_update")[-1]["status"] == "failed"


async def test_the_clients_mcp_servers_serve_that_session_only(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    """``session/new {mcpServers}``: a real MCP server (mcp-server-time) mounted for it."""
    time_server = str(Path(sys.executable).parent / "mcp-server-time")
    servers = [{"name": "time zone", "command": time_server, "args": [], "env": []}]
    async with connected(link, tmp_path) as client:
        await client.initialize()
        response = await client.call(
            "session/new", {"cwd": str(client.workspace), "mcpServers": servers}
        )
        session_id = response["result"]["sessionId"]
        call = 'call mcp__time-zone__get_current_time {"timezone": "UTC"}'
        answer = await client.prompt(session_id, call)
        assert answer["result"]["stopReason"] == "end_turn"
        # Untrusted (the client's): asked, then run by the runtime, not by the client.
        asked = next(m for m in client.received if m.get("method") == "session/request_permission")
        assert asked["params"]["toolCall"]["toolCallId"] == "call_1"
        assert "is not trusted" in json.dumps(asked["params"]["toolCall"])
        assert client.requests() == ["session/request_permission"]
        statuses = [u.get("status") for u in client.updates("tool_call_update")]
        assert statuses[-2:] == ["in_progress", "completed"]
        assert "UTC" in json.dumps(client.updates("tool_call_update")[-1])
        text = text_of(client.updates("agent_message_chunk"))
        assert "mcp__time-zone__get_current_time succeeded" in text
        # Another session of the same connection has no such tool.
        other = await client.new_session()
        await client.prompt(other, call)
        assert "unknown tool 'mcp__time-zone__get_current_time'" in json.dumps(
            client.updates("tool_call_update")[-1]
        )


async def test_invalid_mcp_servers_are_refused_with_a_reason(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize()
        for servers, reason in [
            ("docs", '"mcpServers" must be an array'),
            ([{"name": "x"}], "mcpServers[0].command must be a non-empty string"),
            ([{"type": "sse", "name": "x", "url": "http://h", "headers": []}], "not supported"),
            ([{"name": "x", "command": "c", "env": [{"name": 1}]}], "mcpServers[0].env entries"),
        ]:
            response = await client.call(
                "session/new", {"cwd": str(client.workspace), "mcpServers": servers}
            )
            assert response["error"]["code"] == -32602, response
            assert reason in response["error"]["message"]


async def test_following_a_session_ends_when_it_is_deleted(link: EmbeddedLink) -> None:
    info = await link.create_session()
    seen: list[str] = []

    async def sink(batch: Sequence[JSONObject]) -> None:
        seen.extend(str(event["type"]) for event in batch)

    session = await link._store.get_session(info.id)
    assert session is not None
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(link.follow, info.id, after=0, sink=sink))
            await link._supervisor.delete_session(session)
    assert seen == ["session.deleted"]


class HeldAcks:
    """The embedded link, except that a ``user_message``'s ack waits for :attr:`release`
    once the message took effect: a prompt whose answer is still on its way."""

    def __init__(self, inner: EmbeddedLink) -> None:
        self.inner = inner
        self.release = trio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def submit(self, session_id: str, command: JSONObject) -> JSONObject:
        ack = await self.inner.submit(session_id, command)
        if command.get("type") == "user_message":
            await self.release.wait()
        return ack


async def test_a_prompt_acked_after_end_of_input_is_answered_cancelled(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    held = HeldAcks(link)
    async with connected(held, tmp_path) as client:
        await client.initialize()
        session_id = await client.new_session()
        params = prompt_params(session_id, "stream 3 words then hold ACKLATE")
        prompt_id = await client.request("session/prompt", params)
        await client.to_agent.aclose()
        # Every task waits: the adapter is stopping, and the prompt's ack is on its way.
        await trio.testing.wait_all_tasks_blocked()
        held.release.set()
    rest = []
    while isinstance(line := await client.reader.next_line(), bytes):
        rest.append(json.loads(line))
        client.conformance.check(rest[-1])
    assert rest[-1]["id"] == prompt_id and rest[-1]["result"]["stopReason"] == "cancelled"
    events = await link.read_events(session_id)
    assert [e["reason"] for e in events if e["type"] == "turn.ended"] == ["cancelled"]


async def test_a_second_load_moves_the_session_to_its_cwd_and_mcp_servers_when_idle(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.txt").write_text(f"from {name}\n")
    time_server = str(Path(sys.executable).parent / "mcp-server-time")
    servers = [{"name": "time zone", "command": time_server, "args": [], "env": []}]
    async with connected(link, tmp_path) as client:
        await client.initialize()
        a, b = client.workspace / "a", client.workspace / "b"
        opened = await client.call("session/new", {"cwd": str(a), "mcpServers": []})
        session_id = opened["result"]["sessionId"]
        held = prompt_params(session_id, "stream 3 words then hold MOVE")
        prompt_id = await client.request("session/prompt", held)
        await until_text(client, session_id, stream_words(3))
        # Mid-turn only the cwd and servers it has are accepted.
        refused = await client.call("session/load", load_params(session_id, b))
        assert refused["error"]["code"] == -32602, refused
        assert refused["error"]["message"].startswith('"cwd": ')
        assert "a turn is in progress" in refused["error"]["message"]
        refused = await client.call("session/load", load_params(session_id, a, servers))
        assert refused["error"]["message"].startswith('"mcpServers": '), refused
        same = await client.call("session/load", load_params(session_id, a))
        assert "result" in same, same
        other = await client.new_session()
        await client.prompt(other, "release MOVE")
        assert (await client.response(prompt_id))["result"]["stopReason"] == "end_turn"
        # Idle, the load's cwd and MCP servers apply to what follows.
        moved = await client.call("session/load", load_params(session_id, b, servers))
        assert "result" in moved, moved
        await client.prompt(session_id, "read x.txt")
        read = [m for m in client.received if m.get("method") == "fs/read_text_file"]
        assert [m["params"]["path"] for m in read] == [str(b / "x.txt")]
        assert "from b" in json.dumps(client.updates("tool_call_update")[-1])
        call = 'call mcp__time-zone__get_current_time {"timezone": "UTC"}'
        answer = await client.prompt(session_id, call)
        assert answer["result"]["stopReason"] == "end_turn"
        finished = client.updates("tool_call_update")[-1]
        assert finished["status"] == "completed" and "UTC" in json.dumps(finished)
        listed = await client.call("session/list", {})
        cwds = {s["sessionId"]: s["cwd"] for s in listed["result"]["sessions"]}
        assert cwds[session_id] == str(b)


async def test_a_load_mid_reply_from_another_adapter_shows_the_reply_whole(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    await load_mid_reply_from_another_adapter(link, tmp_path)


async def test_a_load_mid_reply_again_shows_the_reply_whole(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    await load_mid_reply_again(link, tmp_path)


async def test_a_terminal_created_after_a_cancel_is_killed_and_released(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        client.hold = {"terminal/create"}
        await client.initialize()
        session_id = await client.new_session()
        prompt_id = await client.request(
            "session/prompt", prompt_params(session_id, "run sleep 30")
        )
        create = await client.until(lambda m: m.get("method") == "terminal/create")
        await client.send(cancel_note(session_id))
        assert (await client.response(prompt_id))["result"]["stopReason"] == "cancelled"
        # The editor started the command as it read the request; its answer comes late.
        result = await client.serve("terminal/create", create["params"])
        await client.send({"jsonrpc": "2.0", "id": create["id"], "result": result})
        release = await client.until(lambda m: m.get("method") == "terminal/release")
        await client.answer(release)
        assert client.killed == ["term-1"] and client.released == ["term-1"]


async def test_requests_pipelined_after_a_load_wait_for_it(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    book = SessionBook()
    async with connected(link, tmp_path, book) as client:
        await client.initialize()
        session_id = await client.new_session()
        await client.prompt(session_id, "stream 3 words")
    async with connected(link, tmp_path, book) as client:
        await client.initialize()
        load = client.make_request("session/load", load_params(session_id, client.workspace))
        prompt = client.make_request("session/prompt", prompt_params(session_id, "stream 2 words"))
        mode = client.make_request("session/set_mode", {"sessionId": session_id, "modeId": "ask"})
        await client.send_together(load, prompt, mode)
        loaded = await client.response(load["id"])
        assert "result" in loaded, loaded
        assert (await client.response(prompt["id"]))["result"]["stopReason"] == "end_turn"
        assert (await client.response(mode["id"]))["result"] == {}
        # The prompt's turn streamed after the load's replay.
        assert session_text(client, session_id, after=client.received.index(loaded)) == (
            stream_words(2)
        )
    async with connected(link, tmp_path, book) as client:
        await client.initialize()
        # A cancel read behind a prompt still waiting for the load cancels it.
        load = client.make_request("session/load", load_params(session_id, client.workspace))
        prompt = client.make_request("session/prompt", prompt_params(session_id, "stream 2 words"))
        await client.send_together(load, prompt, cancel_note(session_id))
        assert "result" in await client.response(load["id"])
        assert (await client.response(prompt["id"]))["result"]["stopReason"] == "cancelled"


async def test_a_cancel_pipelined_behind_a_prompt_cancels_it(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    """The prompt's task may start after the dispatcher handled the cancel: the order
    on the wire is what counts."""
    async with connected(link, tmp_path) as client:
        await client.initialize()
        session_id = await client.new_session()
        # Which task trio runs first is random: each round gives the bad order a chance.
        for _ in range(10):
            text = prompt_params(session_id, "stream 2 words")
            prompt = client.make_request("session/prompt", text)
            await client.send_together(prompt, cancel_note(session_id))
            assert (await client.response(prompt["id"]))["result"]["stopReason"] == "cancelled"


class HeldRead:
    """The embedded link, except that the first :meth:`read_events` once :attr:`armed`
    waits for :attr:`release` (a replay whose store read is slow)."""

    def __init__(self, inner: EmbeddedLink) -> None:
        self.inner = inner
        self.armed = False
        self.reading = trio.Event()
        self.release = trio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int = 500
    ) -> Sequence[JSONObject]:
        if self.armed:
            self.armed = False
            self.reading.set()
            await self.release.wait()
        return await self.inner.read_events(session_id, after=after, limit=limit)


async def test_nothing_live_goes_out_in_the_middle_of_a_second_loads_replay(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    reads = HeldRead(link)
    async with connected(reads, tmp_path) as client:
        await client.initialize()
        session_id = await client.new_session()
        held = prompt_params(session_id, "stream 10 words then hold INTERLEAVE then 10 words")
        prompt_id = await client.request("session/prompt", held)
        await until_text(client, session_id, stream_words(10))
        mark = len(client.received)
        reads.armed = True
        load_id = await client.request("session/load", load_params(session_id, client.workspace))
        await reads.reading.wait()  # the replay has begun
        # The rest of the reply is committed while the replay is still reading...
        turn_ended = trio.Event()

        async def sink(batch: Sequence[JSONObject]) -> None:
            if any(event["type"] == "turn.ended" for event in batch):
                turn_ended.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(link.follow, session_id, after=0, sink=sink))
            other = await client.new_session()
            await client.prompt(other, "release INTERLEAVE")
            await turn_ended.wait()
            nursery.cancel_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()  # ...and would be sent by now
        reads.release.set()
        assert "result" in await client.response(load_id)
        assert (await client.response(prompt_id))["result"]["stopReason"] == "end_turn"
        # ...but only goes out after it: the replay's head, then the live tail.
        assert session_text(client, session_id, after=mark) == stream_words(20)

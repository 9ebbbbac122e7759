"""``agent-runtime acp`` driven by the official Python SDK's client side.

The SDK (``agent-client-protocol``) is asyncio-only, so it runs in its own process:
``sdk_client.py`` spawns the adapter, serves ``fs/*`` from a temp dir, answers
permission requests as told and prints what it saw as JSON lines; these tests run
it with trio and assert on those lines, on the files on disk and, through
:func:`~tests.acp.conftest.acp_traffic`, on every line the adapter wrote (it must
match the ACP schema).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.acp.conftest import (
    PROCESS_TIMEOUT,
    SDK_CLIENT,
    AcpTraffic,
    Finished,
    agent_command,
    check_connection,
    require_python_sdk,
    run,
)

pytestmark = pytest.mark.slow

Event = dict[str, Any]


@attrs.frozen
class Run:
    """One ``sdk_client.py`` run: its events, and the work dir it served."""

    events: list[Event]
    workdir: Path
    finished: Finished

    def of(self, kind: str, step: int | None = None) -> list[Event]:
        return [
            e for e in self.events if e["event"] == kind and (step is None or e.get("step") == step)
        ]

    def one(self, kind: str, step: int | None = None) -> Event:
        found = self.of(kind, step)
        assert len(found) == 1, f"expected one {kind!r} event (step {step}), got {found}"
        return found[0]

    def updates(self, step: int, kind: str | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = [e["update"] for e in self.of("update", step)]
        return [u for u in found if kind is None or u["sessionUpdate"] == kind]

    def text(self, step: int, kind: str = "agent_message_chunk") -> str:
        """The text of the *kind* chunks of *step*, joined."""
        return "".join(
            u["content"]["text"] for u in self.updates(step, kind) if u["content"]["type"] == "text"
        )

    def stop_reason(self, step: int) -> str:
        result = self.of("prompt_result", step)
        assert result, f"step {step} got no prompt result: {self.of('prompt_error', step)}"
        reason = result[0]["response"]["stopReason"]
        assert isinstance(reason, str)
        return reason

    def tool_status(self, step: int, tool_call_id: str) -> str | None:
        """The last status the updates of *step* gave the tool call *tool_call_id*."""
        status = None
        for update in self.updates(step):
            if update.get("toolCallId") == tool_call_id and update.get("status"):
                status = update["status"]
        return status


@pytest.fixture
def python_sdk() -> None:
    """The SDK is installed (a sync fixture: a skip raised inside trio loses its reason)."""
    require_python_sdk()


async def sdk_run(
    tmp_path: Path,
    traffic: AcpTraffic,
    *steps: str,
    permission: str = "allow",
    answer: str | None = None,
    agent_args: tuple[str, ...] = (),
) -> Run:
    """Run ``sdk_client.py`` with *steps* against the adapter (store in *tmp_path*,
    *agent_args* appended to its command line)."""
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    argv = [
        sys.executable,
        str(SDK_CLIENT),
        "--workdir",
        str(workdir),
        "--permission",
        permission,
        "--timeout",
        str(PROCESS_TIMEOUT - 10),
        *(() if answer is None else ("--answer", answer)),
        *steps,
        "--",
        *traffic.wrap([*agent_command(tmp_path / "acp.db"), *agent_args]),
    ]
    finished = await run(argv, cwd=workdir)
    events = finished.json_lines()
    assert finished.returncode == 0 and events and events[-1]["event"] == "done", (
        f"the SDK client did not finish its steps: {events[-3:]}\n{finished.describe()}"
    )
    return Run(events, workdir, finished)


def permission_tool_call_id(run: Run, step: int) -> str:
    """The tool call the one permission request of *step* was about."""
    request = run.one("permission", step)["request"]
    tool_call_id = request["toolCall"]["toolCallId"]
    assert isinstance(tool_call_id, str)
    kinds = {option["kind"] for option in request["options"]}
    assert any(k.startswith("allow") for k in kinds), kinds
    assert any(k.startswith("reject") for k in kinds), kinds
    return tool_call_id


async def test_initialize_and_new_session(
    tmp_path: Path, acp_traffic: AcpTraffic, python_sdk: None
) -> None:
    result = await sdk_run(tmp_path, acp_traffic, "prompt:hello")
    initialize = result.one("initialize")["response"]
    assert initialize["protocolVersion"] == 1
    assert initialize["agentCapabilities"]["loadSession"] is True
    session_id = result.one("new_session")["response"]["sessionId"]
    assert isinstance(session_id, str) and session_id
    assert result.stop_reason(1) == "end_turn"
    assert "scripted model" in result.text(1)
    assert all(e["sessionId"] == session_id for e in result.of("update"))
    acp_traffic.assert_conforms()


async def test_allowed_write_goes_through_the_clients_fs(
    tmp_path: Path, acp_traffic: AcpTraffic, python_sdk: None
) -> None:
    result = await sdk_run(tmp_path, acp_traffic, "prompt:create hello.py with print(1)")
    tool_call_id = permission_tool_call_id(result, 1)
    assert result.one("permission", 1)["outcome"]["outcome"] == "selected"
    # The client advertised fs.writeTextFile: the adapter must write through it, with an
    # absolute path (ACP requires absolute paths), after the permission was granted.
    write = result.one("write_text_file", 1)
    assert write["path"] == str(result.workdir / "hello.py")
    assert write["content"] == "print(1)"
    assert (result.workdir / "hello.py").read_text() == "print(1)"
    kinds = [e["event"] for e in result.events]
    assert kinds.index("permission") < kinds.index("write_text_file")
    assert any(u["toolCallId"] == tool_call_id for u in result.updates(1, "tool_call"))
    assert result.tool_status(1, tool_call_id) == "completed"
    assert result.stop_reason(1) == "end_turn"
    acp_traffic.assert_conforms()


async def test_denied_write_is_not_written_and_the_turn_ends(
    tmp_path: Path, acp_traffic: AcpTraffic, python_sdk: None
) -> None:
    result = await sdk_run(
        tmp_path, acp_traffic, "prompt:create hello.py with print(1)", permission="deny"
    )
    tool_call_id = permission_tool_call_id(result, 1)
    assert result.one("permission", 1)["outcome"]["outcome"] == "selected"
    assert not result.of("write_text_file")
    assert not (result.workdir / "hello.py").exists()
    assert result.tool_status(1, tool_call_id) not in ("completed", "pending", "in_progress")
    assert result.stop_reason(1) == "end_turn"
    acp_traffic.assert_conforms()


async def test_cancel_mid_stream(tmp_path: Path, acp_traffic: AcpTraffic, python_sdk: None) -> None:
    result = await sdk_run(
        tmp_path, acp_traffic, "cancel-after-chunk:slow stream 50 words", "prompt:stream 3 words"
    )
    result.one("cancel_sent", 1)
    assert result.stop_reason(1) == "cancelled"
    words = result.text(1).split()
    assert 1 <= len(words) < 50, words
    # The session is still usable, and the next turn does not carry the cancelled one's text.
    assert result.stop_reason(2) == "end_turn"
    assert result.text(2) == "alpha beta gamma"
    acp_traffic.assert_conforms()


async def test_cancel_while_permission_pending(
    tmp_path: Path, acp_traffic: AcpTraffic, python_sdk: None
) -> None:
    result = await sdk_run(
        tmp_path, acp_traffic, "cancel-at-permission:create b.py with x", "prompt:stream 2 words"
    )
    tool_call_id = permission_tool_call_id(result, 1)
    kinds = [e["event"] for e in result.events]
    # sdk_client sent session/cancel first, then answered the request "cancelled".
    assert kinds.index("cancel_sent") < kinds.index("permission")
    assert result.one("permission", 1)["outcome"] == {"outcome": "cancelled"}
    assert result.stop_reason(1) == "cancelled"
    assert not result.of("write_text_file")
    assert not (result.workdir / "b.py").exists()
    assert result.tool_status(1, tool_call_id) != "completed"
    assert result.stop_reason(2) == "end_turn"
    assert result.text(2) == "alpha beta"
    acp_traffic.assert_conforms()


async def test_load_session_replays_history(
    tmp_path: Path, acp_traffic: AcpTraffic, python_sdk: None
) -> None:
    prompt = "create hello.py with print(1)"
    result = await sdk_run(tmp_path, acp_traffic, f"prompt:{prompt}", "reload")
    assert result.stop_reason(1) == "end_turn"
    session_id = result.one("new_session")["response"]["sessionId"]
    assert len(result.of("initialize")) == 2
    assert len(result.of("agent_exit")) == 2, "the first agent process did not end on EOF"
    # A second adapter process, the same store: session/load replays the conversation as
    # session/update notifications before it answers.
    result.one("load_session", 2)
    replayed = result.updates(2)
    assert replayed, "session/load replayed nothing"
    assert all(e["sessionId"] == session_id for e in result.of("update", 2))
    assert result.text(2, "user_message_chunk") == prompt
    assert result.text(2) == result.text(1)
    tool_call_id = permission_tool_call_id(result, 1)
    assert any(u.get("toolCallId") == tool_call_id for u in result.updates(2, "tool_call"))
    assert result.tool_status(2, tool_call_id) == "completed"
    assert not result.of("permission", 2), "a replay must not ask for permission again"
    assert not result.of("write_text_file", 2), "a replay must not write files again"
    # Wire order: the replay came before the session/load response.
    second = [e for e in result.events if e["event"] in ("recv", "initialize")]
    start = max(i for i, e in enumerate(second) if e["event"] == "initialize")
    received = [e for e in second[start + 1 :] if e["event"] == "recv"]
    answer = next(i for i, e in enumerate(received) if "response" in e)
    assert not received[answer]["error"], received
    before = {e["update"] for e in received[:answer] if e.get("method") == "session/update"}
    assert {"user_message_chunk", "agent_message_chunk", "tool_call"} <= before, received
    acp_traffic.assert_conforms()


def replayed(run: Run, step: int) -> list[dict[str, Any]]:
    """The updates of a reload *step*, without the commands announced after its answer."""
    return [u for u in run.updates(step) if u["sessionUpdate"] != "available_commands_update"]


async def test_sessions_announce_compact_and_a_slash_compact_prompt_runs_it(
    tmp_path: Path, acp_traffic: AcpTraffic, python_sdk: None
) -> None:
    steps = [f"prompt:remember fact {i}" for i in range(3)]
    # The last prompt keeps the client until the load's announcement, sent after the
    # load's answer, has arrived.
    result = await sdk_run(
        tmp_path, acp_traffic, *steps, "prompt:/compact keep the facts", "reload", "prompt:hi"
    )
    # The SDK parsed the announcement (AvailableCommandsUpdate), sent after session/new
    # was answered (the client knows the session by then), and again after the load.
    announced = [
        u
        for e in result.of("update")
        if (u := e["update"])["sessionUpdate"] == "available_commands_update"
    ]
    (command,) = announced[0]["availableCommands"]
    assert command["name"] == "compact" and command["input"]["hint"]
    wire = [e.get("update") or e.get("method") or "response" for e in result.of("recv")]
    assert wire.count("available_commands_update") == 2
    first = wire.index("available_commands_update")
    assert wire[:first] == ["response", "response"]  # initialize, session/new
    assert result.stop_reason(4) == "end_turn"
    assert result.text(4) == ""  # a compaction says nothing in the conversation
    acp_traffic.assert_conforms()


async def test_usage_update_meters_context_and_cost(
    tmp_path: Path, acp_traffic: AcpTraffic, python_sdk: None
) -> None:
    """Each turn ends with the SDK's ``UsageUpdate``: the context meter and the
    session's cost so far; the prompt's answer has the turn's tokens; a load ends
    its replay with the meter as the log leaves it."""
    config = tmp_path / "agent.toml"
    config.write_text("[models.scripted]\ninput_price = 1.0\noutput_price = 2.0\n")
    result = await sdk_run(
        tmp_path,
        acp_traffic,
        "prompt:hello",
        "prompt:stream 3 words",
        "reload",
        agent_args=("--config", str(config)),
    )
    paid = 0.0
    meters = []
    for step in (1, 2):
        usage = result.one("prompt_result", step)["response"]["usage"]
        assert usage["inputTokens"] > 0 and usage["outputTokens"] > 0
        assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
        # Every call of the turn is the scripted model's, priced $1 / $2 per million.
        paid += (usage["inputTokens"] + 2 * usage["outputTokens"]) / 1e6
        (meter,) = result.updates(step, "usage_update")
        assert meter["size"] == 4096 and 0 < meter["used"] < 4096
        assert meter["cost"]["currency"] == "USD"
        assert meter["cost"]["amount"] == pytest.approx(paid, abs=1e-9)
        meters.append(meter)
    assert meters[1]["cost"]["amount"] > meters[0]["cost"]["amount"]
    # The replay of session/load: one meter, at its end, the one the log left.
    assert result.updates(3, "usage_update") == [meters[1]]
    ending = [u["sessionUpdate"] for u in replayed(result, 3)][-2:]
    assert ending == ["usage_update", "session_info_update"]
    acp_traffic.assert_conforms()


async def test_session_info_update_gives_the_title_as_the_first_message_names_it(
    tmp_path: Path, acp_traffic: AcpTraffic, python_sdk: None
) -> None:
    result = await sdk_run(tmp_path, acp_traffic, "prompt:hello   there", "prompt:hello", "reload")
    (first,) = result.updates(1, "session_info_update")
    assert first["title"] == "hello there"  # as GET /v1/sessions and session/list say
    assert first["updatedAt"].endswith("Z")
    # Before the turn's text: the editor names the session while it answers.
    kinds = [u["sessionUpdate"] for u in result.updates(1)]
    assert kinds.index("session_info_update") < kinds.index("agent_message_chunk")
    # The second message keeps the title and moves updatedAt on.
    (second,) = result.updates(2, "session_info_update")
    assert second["title"] == "hello there" and second["updatedAt"] >= first["updatedAt"]
    # A load tells it once, after the replay.
    assert result.updates(3, "session_info_update") == [second]
    assert replayed(result, 3)[-1] == second
    acp_traffic.assert_conforms()


async def test_a_question_without_choices_is_a_form_the_sdk_fills_in(
    tmp_path: Path, acp_traffic: AcpTraffic, python_sdk: None
) -> None:
    result = await sdk_run(
        tmp_path, acp_traffic, "prompt:ask which file should I use?", answer="main.py"
    )
    form = result.one("elicitation", 1)  # the SDK parsed elicitation/create as a form
    assert form["message"] == "which file should I use?"
    assert form["mode"]["sessionId"] == result.one("new_session")["response"]["sessionId"]
    assert form["response"] == {"action": "accept", "content": {"answer": "main.py"}}
    assert result.stop_reason(1) == "end_turn"
    assert "main.py" in result.text(1)  # the model got the answer, and quotes it
    acp_traffic.assert_conforms()


async def test_a_question_with_choices_is_a_select_the_sdk_picks_from(
    tmp_path: Path, acp_traffic: AcpTraffic, python_sdk: None
) -> None:
    ask = 'call ask_followup_question {"question": "Which file?", "options": ["a.py", "b.py"]}'
    result = await sdk_run(tmp_path, acp_traffic, f"prompt:{ask}", answer="b.py")
    form = result.one("elicitation", 1)  # the SDK parsed the select (oneOf) as a form
    options = form["mode"]["requestedSchema"]["properties"]["choice"]["oneOf"]
    assert [o["title"] for o in options] == ["a.py", "b.py"]
    assert form["response"] == {"action": "accept", "content": {"choice": "choice_1"}}
    assert result.stop_reason(1) == "end_turn"
    assert "b.py" in result.text(1)  # the model got the choice, and quotes it
    acp_traffic.assert_conforms()


async def test_the_sdk_sets_the_agent_and_the_model_as_config_options(
    tmp_path: Path, acp_traffic: AcpTraffic, python_sdk: None
) -> None:
    steps = ["config:mode=ask", "prompt:hi", "config:model=gpt", "config:model=scripted", "resume"]
    result = await sdk_run(tmp_path, acp_traffic, *steps)
    # The SDK's models parsed the options in session/new's answer and in the updates.
    created, model = result.one("new_session")["response"]["configOptions"]
    assert created["id"] == "mode" and created["currentValue"] == "orchestrator"
    assert model["id"] == "model" and model["category"] == "model"
    assert [o["value"] for o in model["options"]] == ["default", "scripted"]
    option, _ = result.one("set_config_option", 1)["response"]["configOptions"]
    assert option["currentValue"] == "ask"
    switched = result.updates(2, "config_option_update") or result.updates(
        1, "config_option_update"
    )
    assert switched and switched[0]["configOptions"][0]["currentValue"] == "ask"
    (refused,) = result.of("config_error", 3)  # not a model the runtime offers
    assert refused["data"]["code"] == -32602
    _, chosen = result.one("set_config_option", 4)["response"]["configOptions"]
    assert chosen["currentValue"] == "scripted"
    resumed = result.one("resume_session", 5)["response"]
    assert [o["currentValue"] for o in resumed["configOptions"]] == ["ask", "scripted"]
    assert resumed["modes"]["currentModeId"] == "ask"
    acp_traffic.assert_conforms()


async def test_resume_then_close_with_the_sdk(
    tmp_path: Path, acp_traffic: AcpTraffic, python_sdk: None
) -> None:
    steps = ["prompt:stream 3 words", "resume", "prompt:stream 2 words", "close", "prompt:hi"]
    result = await sdk_run(tmp_path, acp_traffic, *steps)
    capabilities = result.of("initialize")[0]["response"]["agentCapabilities"]
    assert {"resume", "close", "delete"} <= set(capabilities["sessionCapabilities"])
    resumed = result.one("resume_session", 2)["response"]
    assert resumed["modes"]["currentModeId"]
    # Resumed: the session's meter and title, none of its messages.
    kinds = [u["sessionUpdate"] for u in result.updates(2)]
    assert "usage_update" in kinds and "session_info_update" in kinds
    assert not {"user_message_chunk", "agent_message_chunk"} & set(kinds)
    assert result.stop_reason(3) == "end_turn" and result.text(3) == "alpha beta"
    assert result.one("close_session", 4)["response"] == {}
    (refused,) = result.of("prompt_error", 5)  # closed: not followed by this agent any more
    assert refused["data"]["code"] == -32002
    acp_traffic.assert_conforms()


async def test_fork_with_the_sdk_goes_on_from_the_history_in_a_new_session(
    tmp_path: Path, acp_traffic: AcpTraffic, python_sdk: None
) -> None:
    steps = ["prompt:stream 3 words", "fork", "prompt:stream 2 words", "reload"]
    result = await sdk_run(tmp_path, acp_traffic, *steps)
    capabilities = result.of("initialize")[0]["response"]["agentCapabilities"]
    assert capabilities["sessionCapabilities"]["fork"] == {}
    source = result.of("new_session")[0]["response"]["sessionId"]
    forked = result.one("fork_session", 2)["response"]
    assert forked["sessionId"] != source
    assert forked["modes"]["currentModeId"] == forked["configOptions"][0]["currentValue"]
    kinds = [u["sessionUpdate"] for u in result.updates(2)]
    assert not {"user_message_chunk", "agent_message_chunk"} & set(kinds)
    assert result.stop_reason(3) == "end_turn" and result.text(3) == "alpha beta"
    # A new agent process loads the fork: the source's message, then the fork's own.
    loaded = [u for u in result.updates(4) if u["sessionUpdate"] == "user_message_chunk"]
    assert [u["content"]["text"] for u in loaded] == ["stream 3 words", "stream 2 words"]
    acp_traffic.assert_conforms()


def test_the_conformance_check_can_fail() -> None:
    """The check of the adapter's lines these tests rely on rejects what it must."""
    prompt = {"jsonrpc": "2.0", "id": 7, "method": "session/prompt", "params": {}}
    chunk = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "hi"}}
    good = [
        {"from": "client", "line": json.dumps(prompt)},
        {"from": "agent", "line": json.dumps(_update(chunk))},
        {"from": "agent", "line": json.dumps(_answer(7, {"stopReason": "end_turn"}))},
    ]
    assert check_connection(good) == []
    broken: dict[str, dict[str, Any]] = {
        "misspelt stop reason": {"line": json.dumps(_answer(7, {"stopReason": "canceled"}))},
        "unknown update": {"line": json.dumps(_update({**chunk, "sessionUpdate": "chunk"}))},
        "content without text": {
            "line": json.dumps(_update({**chunk, "content": {"type": "text"}}))
        },
        "answers nothing": {"line": json.dumps(_answer(8, {"stopReason": "end_turn"}))},
        "not JSON-RPC 2.0": {"line": json.dumps({"id": 7, "result": {"stopReason": "end_turn"}})},
        "stray member": {"line": json.dumps({**_answer(7, {"stopReason": "end_turn"}), "x": 1})},
        "usage without size": {
            "line": json.dumps(_update({"sessionUpdate": "usage_update", "used": 1}))
        },
        "not JSON": {"line": "{"},
        "no newline": {"unterminated": json.dumps(_answer(7, {"stopReason": "end_turn"}))},
        "not UTF-8": {"hex": "ff"},
    }
    for what, record in broken.items():
        assert check_connection([good[0], {"from": "agent", **record}]), what


def _update(update: dict[str, Any]) -> dict[str, Any]:
    params = {"sessionId": "s", "update": update}
    return {"jsonrpc": "2.0", "method": "session/update", "params": params}


def _answer(request_id: int, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}

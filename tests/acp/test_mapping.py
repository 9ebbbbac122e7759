"""The pure mapping: events → ``session/update``, turn ends → stop reasons, tool kinds, diffs,
capability negotiation, modes, permission options and prompt content.

Every payload built here is also checked against its definition in the ACP schema.
"""

from __future__ import annotations

from typing import Any

import pytest

from server.acp._capabilities import (
    NO_CHOICE,
    PERMISSION_OPTIONS,
    ClientCaps,
    negotiate,
    permission_answer,
    prompt_text,
    question_answer,
    question_options,
)
from server.acp._jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, RpcError
from server.acp._link import AgentInfo, ModelChoices, SessionInfo
from server.acp._mapping import (
    CUT_OFF_STOP_REASONS,
    DELETED_NOTICE,
    Translator,
    absolute,
    diff_content,
    iso_time,
    session_info_update,
    stop_reason,
    tool_kind,
    tool_title,
    turn_error,
)
from server.acp._options import Choices, SessionOptions, mode_state
from sessions import JSONObject
from tests.acp.conformance import problems

CWD = "/work/project"


def conforming(updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for update in updates:
        assert problems("SessionUpdate", update) == [], update
    return updates


def event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"seq": 1, "session_id": "ses_1", "type": kind, "ts": 0.0, "turn_id": "turn_1", **fields}


WRITE = {"call_id": "call_1", "name": "write_file", "arguments": {"path": "a.py", "content": "x"}}


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("completed", "end_turn"),
        ("max_steps", "max_turn_requests"),
        ("cancelled", "cancelled"),
        ("interrupted", "cancelled"),
        ("error", None),
    ],
)
def test_turn_end_reasons_become_stop_reasons(reason: str, expected: str | None) -> None:
    assert stop_reason(reason) == expected
    if expected is not None:
        assert problems("StopReason", expected) == []


def test_an_error_turn_fails_the_prompt_with_the_error_event() -> None:
    error = turn_error(event("error", code="model_timeout", message="no token", retryable=True))
    assert (error.code, error.message) == (INTERNAL_ERROR, "no token")
    assert error.data == {"code": "model_timeout", "message": "no token", "retryable": True}
    assert problems("Error", error.to_json()) == []
    bare = turn_error(None)
    assert bare.code == INTERNAL_ERROR and bare.data == {"code": "internal"}


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("read_file", "read"),
        ("list_files", "read"),
        ("write_file", "edit"),
        ("apply_diff", "edit"),
        ("create_directory", "edit"),
        ("execute_command", "execute"),
        ("search_files", "search"),
        ("delete_file", "delete"),
        ("move_file", "move"),
        ("switch_mode", "switch_mode"),
        ("new_task", "other"),
        ("attempt_completion", "other"),
        ("ask_followup_question", "other"),
        ("mcp_something", "other"),
    ],
)
def test_tool_names_become_acp_kinds(name: str, kind: str) -> None:
    assert tool_kind(name) == kind
    assert problems("ToolKind", kind) == []


def test_titles_and_paths() -> None:
    assert tool_title("execute_command", {"command": "echo  hi\nthere"}) == "Run echo hi there"
    assert tool_title("read_file", {"path": "a.py", "start_line": 3}) == "Read a.py (lines 3-end)"
    assert tool_title("move_file", {"source": "a", "destination": "b"}) == "Move a to b"
    assert len(tool_title("write_file", {"path": "x" * 500})) == 120
    assert absolute(CWD, "src/../a.py") == "/work/project/a.py"
    assert absolute(CWD, ".") == CWD


def test_live_text_streams_and_the_final_message_is_not_repeated() -> None:
    translator = Translator(CWD)
    assert conforming(translator.feed(event("user.message", message_id="m0", content="hi"))) == []
    delta = translator.feed(event("text.delta", message_id="m1", text="Writing a.py."))
    assert delta == [
        {
            "sessionUpdate": "agent_message_chunk",
            "content": {"type": "text", "text": "Writing a.py."},
        }
    ]
    updates = conforming(
        translator.feed(
            event("message", message_id="m1", content="Writing a.py.", tool_calls=[WRITE])
        )
    )
    assert updates == [
        {
            "sessionUpdate": "tool_call",
            "toolCallId": "call_1",
            "title": "Write a.py",
            "kind": "edit",
            "status": "pending",
            "rawInput": {"path": "a.py", "content": "x"},
            "content": [
                {"type": "diff", "path": "/work/project/a.py", "oldText": None, "newText": "x"}
            ],
            "locations": [{"path": "/work/project/a.py"}],
        }
    ]
    assert conforming(translator.feed(event("tool.call", **WRITE))) == [
        {"sessionUpdate": "tool_call_update", "toolCallId": "call_1", "status": "in_progress"}
    ]
    real = diff_content("/work/project/a.py", "old", "x")
    translator.note_content("call_1", [real])
    done = conforming(
        translator.feed(event("tool.result", call_id="call_1", ok=True, summary="overwrote a.py"))
    )
    assert done == [
        {
            "sessionUpdate": "tool_call_update",
            "toolCallId": "call_1",
            "status": "completed",
            "content": [real],
        }
    ]


def test_text_without_deltas_is_sent_whole_and_failures_say_why() -> None:
    translator = Translator(CWD)
    call = {"call_id": "call_2", "name": "read_file", "arguments": {"path": "b.py"}}
    updates = conforming(
        translator.feed(event("message", message_id="m2", content="Reading.", tool_calls=[call]))
    )
    assert updates[0] == {
        "sessionUpdate": "agent_message_chunk",
        "content": {"type": "text", "text": "Reading."},
    }
    assert updates[1]["locations"] == [{"path": "/work/project/b.py"}]
    failed = conforming(
        translator.feed(
            event("tool.result", call_id="call_2", ok=False, summary="b.py: no such file")
        )
    )
    assert failed[0]["status"] == "failed"
    assert failed[0]["content"][0]["content"]["text"] == "b.py: no such file"


def test_modes_subtasks_and_questions() -> None:
    translator = Translator(CWD, options=SessionOptions(Choices(AGENTS), "orchestrator"))
    switched = translator.feed(event("agent.switched", **{"from": "orchestrator", "to": "coder"}))
    options = SessionOptions(Choices(AGENTS), "coder").config_options()
    assert conforming(switched) == [
        {"sessionUpdate": "current_mode_update", "currentModeId": "coder"},
        {"sessionUpdate": "config_option_update", "configOptions": options},
    ]
    bare = Translator(CWD).feed(event("agent.switched", **{"from": "coder", "to": "ask"}))
    assert bare == [{"sessionUpdate": "current_mode_update", "currentModeId": "ask"}]
    started = translator.feed(
        event("subtask.started", subtask_id="sub_1", agent="ask", message="explain", call_id="c9")
    )
    assert conforming(started)[0]["title"] == "Delegate to ask: explain"
    thought = translator.feed(event("text.delta", message_id="m3", text="hm", subtask_id="sub_1"))
    assert conforming(thought)[0]["sessionUpdate"] == "agent_thought_chunk"
    asked = translator.feed(event("question.asked", question_id="q", text="Which?", options=["a"]))
    assert conforming(asked)[0]["content"]["text"] == "\nWhich?\n- a\n"
    assert translator.feed(event("usage", prompt_tokens=1, completion_tokens=1, model="m")) == []
    assert (
        translator.feed(event("error", code="model_error", message="x")) == []
    )  # live: the prompt


def test_session_info_update_names_the_session_once_it_has_a_title() -> None:
    named = session_info_update(SessionInfo("ses_1", "fix the parser", "coder", 0.0, 1767225600.5))
    assert conforming([named]) == [
        {
            "sessionUpdate": "session_info_update",
            "title": "fix the parser",
            "updatedAt": "2026-01-01T00:00:00.500000Z",
        }
    ]
    untitled = session_info_update(SessionInfo("ses_1", "", "coder", 0.0, 0.0))
    assert conforming([untitled]) == [
        {"sessionUpdate": "session_info_update", "updatedAt": iso_time(0.0)}
    ]
    assert iso_time(0.0) == "1970-01-01T00:00:00Z"


def test_a_deletion_is_said_in_the_conversation() -> None:
    deleted = Translator(CWD).feed(event("session.deleted"))
    assert conforming(deleted) == [
        {
            "sessionUpdate": "agent_message_chunk",
            "content": {"type": "text", "text": DELETED_NOTICE},
        }
    ]


def test_replay_sends_whole_messages_and_the_user_s_side() -> None:
    translator = Translator(CWD, replay=True)
    log = [
        event("user.message", message_id="m0", content="create a.py with x"),
        event("text.delta", message_id="m1", text="Writing a.py."),
        event("message", message_id="m1", content="Writing a.py.", tool_calls=[WRITE]),
        event("approval.requested", call_id="call_1", name="write_file", arguments={}, rule="r"),
        event("approval.resolved", call_id="call_1", decision="approve", by="user"),
        event("tool.call", **WRITE),
        event("tool.result", call_id="call_1", ok=True, summary="created a.py"),
        event("error", code="model_timeout", message="slow"),
        event("turn.ended", reason="error"),
    ]
    updates = conforming([u for e in log for u in translator.feed(e)])
    kinds = [u["sessionUpdate"] for u in updates]
    assert kinds == [
        "user_message_chunk",
        "agent_message_chunk",
        "tool_call",
        "tool_call_update",
        "tool_call_update",
        "agent_message_chunk",
    ]
    assert updates[1]["content"]["text"] == "Writing a.py."
    assert updates[-2]["status"] == "completed"
    assert "model_timeout" in updates[-1]["content"]["text"]


def test_a_replay_that_ends_mid_reply_sends_its_text_once() -> None:
    translator = Translator(CWD, replay=True)
    head = [
        event("user.message", message_id="m0", content="go"),
        event("text.delta", message_id="m1", text="Hello"),
        event("text.delta", message_id="m1", text=" there"),
        event("text.delta", message_id="m2", text="thinking", subtask_id="sub_1"),
    ]
    assert [u["sessionUpdate"] for e in head for u in translator.feed(e)] == ["user_message_chunk"]
    # The log ends here: the reply so far, then live, where its message repeats nothing.
    assert conforming(translator.end_replay()) == [
        {
            "sessionUpdate": "agent_message_chunk",
            "content": {"type": "text", "text": "Hello there"},
        },
        {"sessionUpdate": "agent_thought_chunk", "content": {"type": "text", "text": "thinking"}},
    ]
    assert translator.replay is False
    tail = [
        event("text.delta", message_id="m1", text="!"),
        event("message", message_id="m1", content="Hello there!"),
        event("turn.ended", reason="completed"),
    ]
    updates = conforming([u for e in tail for u in translator.feed(e)])
    assert [u["content"]["text"] for u in updates] == ["!"]
    # A reply with no message by its turn's end (its commit failed) is shown too.
    again = Translator(CWD, replay=True)
    lost = [event("text.delta", message_id="m1", text="cut"), event("turn.ended", reason="error")]
    shown = conforming([u for e in lost for u in again.feed(e)])
    assert [u["content"]["text"] for u in shown] == ["cut"]
    assert again.end_replay() == []


def test_initialize_answers_version_1_whatever_is_asked() -> None:
    for asked in (0, 1, 2, 65535):
        result, caps = negotiate({"protocolVersion": asked})
        assert result["protocolVersion"] == 1
        assert problems("InitializeResponse", result) == []
        assert caps == ClientCaps()
    agent = result["agentCapabilities"]
    assert isinstance(agent, dict) and agent["loadSession"] is True
    assert agent["promptCapabilities"] == {"image": False, "audio": False, "embeddedContext": False}
    for bad in ("1", 1.0, True, None, -1, 70000):
        with pytest.raises(RpcError) as raised:
            negotiate({"protocolVersion": bad})
        assert raised.value.code == INVALID_PARAMS


def test_client_capabilities() -> None:
    full: JSONObject = {"fs": {"readTextFile": True, "writeTextFile": True}, "terminal": True}
    assert ClientCaps.from_json(full) == ClientCaps(True, True, True)
    assert ClientCaps.from_json({"fs": {"readTextFile": True}}) == ClientCaps(read_text_file=True)
    assert ClientCaps.from_json({"fs": "yes", "terminal": 1}) == ClientCaps()
    assert ClientCaps.from_json(None) == ClientCaps()


AGENTS = (AgentInfo("orchestrator", "routes"), AgentInfo("coder", "writes code"))


def test_agents_are_modes() -> None:
    state = mode_state(AGENTS, "coder")
    assert problems("SessionModeState", state) == []
    assert state["currentModeId"] == "coder"
    assert state["availableModes"] == [
        {"id": "orchestrator", "name": "Orchestrator", "description": "routes"},
        {"id": "coder", "name": "Coder", "description": "writes code"},
    ]


def test_the_agent_is_also_a_config_option() -> None:
    (option,) = SessionOptions(Choices(AGENTS), "coder").config_options()
    assert problems("SessionConfigOption", option) == [] and isinstance(option, dict)
    assert option["id"] == "mode" and option["category"] == "mode" and option["type"] == "select"
    assert option["currentValue"] == "coder"
    assert option["options"] == [
        {"value": "orchestrator", "name": "Orchestrator", "description": "routes"},
        {"value": "coder", "name": "Coder", "description": "writes code"},
    ]


def conforming_options(options: SessionOptions) -> list[dict[str, Any]]:
    shown = [o for o in options.config_options() if isinstance(o, dict)]
    for option in shown:
        assert problems("SessionConfigOption", option) == [], option
    return shown


MODELS = Choices(AGENTS, ModelChoices("gpt-4.1", ("gpt-4.1", "o3", "default")))


def test_the_model_is_a_config_option_when_the_runtime_lists_models() -> None:
    options = SessionOptions(MODELS, "coder")
    agent, model = conforming_options(options)
    assert agent["id"] == "mode"
    assert model["id"] == "model" and model["category"] == "model" and model["type"] == "select"
    assert model["currentValue"] == "default"
    values = [o["value"] for o in model["options"]]
    assert values == ["default", "gpt-4.1", "o3"]  # a model named "default" is the defaults
    assert "gpt-4.1" in model["options"][0]["description"]  # what the defaults come to
    assert options.chosen_model("o3") == "o3" and options.chosen_model("default") is None
    for bad in ("gpt-5", "", None, 3):
        with pytest.raises(RpcError) as raised:
            options.chosen_model(bad)
        assert raised.value.code == INVALID_PARAMS
    # Without models listed (an older server): the agent alone, and no model to set.
    alone = SessionOptions(Choices(AGENTS), "coder")
    assert [o["id"] for o in conforming_options(alone)] == ["mode"]
    with pytest.raises(RpcError):
        alone.chosen_model("o3")


def test_a_model_switch_updates_the_options_and_a_name_not_listed_is_shown() -> None:
    translator = Translator(CWD, options=SessionOptions(MODELS, "coder"))
    switched = translator.feed(event("model.switched", **{"from": None, "to": "mine-7b"}))
    ((update,),) = [conforming(switched)]
    assert update["sessionUpdate"] == "config_option_update"
    agent, model = update["configOptions"]
    assert agent["currentValue"] == "coder"
    assert model["currentValue"] == "mine-7b"
    assert [o["value"] for o in model["options"]][-1] == "mine-7b"
    assert translator.options is not None and translator.options.chosen_model("mine-7b")
    back = conforming(translator.feed(event("model.switched", **{"from": "mine-7b", "to": None})))
    assert back[0]["configOptions"][1]["currentValue"] == "default"
    assert (
        Translator(CWD, options=SessionOptions(Choices(AGENTS), "coder")).feed(
            event("model.switched", **{"from": None, "to": "o3"})
        )
        == []
    )


def selected(option: str) -> dict[str, Any]:
    return {"outcome": {"outcome": "selected", "optionId": option}}


def test_permission_options_and_answers() -> None:
    for option in PERMISSION_OPTIONS:
        assert problems("PermissionOption", option) == []
    answer = permission_answer(selected("allow_once"))
    assert (answer.decision, answer.always) == ("approve", False)
    answer = permission_answer(selected("allow_always"))
    assert (answer.decision, answer.always) == ("approve", True)
    answer = permission_answer(selected("reject_once"))
    assert (answer.decision, answer.always, answer.cancelled) == ("reject", False, False)
    answer = permission_answer(selected("reject_always"))
    assert (answer.decision, answer.always) == ("reject", True)
    cancelled = permission_answer({"outcome": {"outcome": "cancelled"}})
    assert (cancelled.decision, cancelled.cancelled) == ("reject", True)
    assert permission_answer(selected("something_else")).decision == "reject"
    assert permission_answer("garbage").decision == "reject"


def test_questions_with_choices_are_permission_requests() -> None:
    options = question_options(["hello.py", "main.py"])
    for option in options:
        assert problems("PermissionOption", option) == []
    assert [o["name"] for o in options if isinstance(o, dict)] == [
        "hello.py",
        "main.py",
        "None of these",
    ]
    assert question_answer(selected("choice_1"), ["hello.py", "main.py"]) == "main.py"
    assert question_answer(selected(NO_CHOICE), ["hello.py"]) is None
    assert question_answer(selected("choice_9"), ["hello.py"]) is None
    assert question_answer({"outcome": {"outcome": "cancelled"}}, ["a"]) is None


def test_prompts_are_text() -> None:
    assert prompt_text([{"type": "text", "text": " fix it "}]) == "fix it"
    link: JSONObject = {"type": "resource_link", "uri": "file:///work/a.py", "name": "a.py"}
    assert prompt_text([{"type": "text", "text": "read"}, link]) == "read\nfile:///work/a.py"
    embedded: JSONObject = {
        "type": "resource",
        "resource": {"uri": "file:///a.py", "text": "x = 1"},
    }
    assert prompt_text([embedded]) == "file:///a.py:\n```\nx = 1\n```"
    for bad in (
        [],
        [{"type": "text", "text": "  "}],
        [{"type": "image", "data": "AA==", "mimeType": "image/png"}],
        [{"type": "resource", "resource": {"uri": "file:///b", "blob": "AA=="}}],
        "text",
        ["text"],
    ):
        with pytest.raises(RpcError) as raised:
            prompt_text(bad)  # type: ignore[arg-type]
        assert raised.value.code == INVALID_PARAMS


def test_diff_content_conforms() -> None:
    for content in (diff_content("/a", None, "x"), diff_content("/a", "x", "y")):
        assert problems("ToolCallContent", content) == []


def test_a_server_side_call_shows_as_in_progress_and_is_never_run_by_the_client() -> None:
    translator = Translator(CWD)
    search = {"call_id": "call_9", "name": "mcp__docs__search", "arguments": {"query": "q"}}
    announced = conforming(
        translator.feed(event("message", message_id="m9", content="", tool_calls=[search]))
    )
    assert announced[0]["status"] == "pending"
    assert conforming(translator.feed(event("tool.started", **search, server="docs"))) == [
        {"sessionUpdate": "tool_call_update", "toolCallId": "call_9", "status": "in_progress"}
    ]


@pytest.mark.parametrize(
    ("cut_off", "expected"), [*CUT_OFF_STOP_REASONS.items(), ("new", "end_turn")]
)
def test_a_completed_turn_cut_off_by_the_provider_says_so(cut_off: str, expected: str) -> None:
    assert stop_reason("completed", cut_off) == expected
    assert problems("StopReason", expected) == []
    assert stop_reason("cancelled", cut_off) == "cancelled"  # a cancel says cancelled whatever

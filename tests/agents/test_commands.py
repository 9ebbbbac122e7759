"""Client commands: strict parsing, error codes, and the wire round trip."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents._core._commands import (
    DECIDED_BY,
    DECISIONS,
    ON_BUSY,
    REMEMBER,
    Ack,
    Answer,
    Cancel,
    Command,
    SendMessage,
    SubmitApproval,
    SubmitToolResult,
    SwitchAgent,
    encode_command,
    parse_command,
)
from agents._errors import CommandError
from sessions import JSON
from tests.agents.test_events import json_objects, json_values

ids = st.text(min_size=1, max_size=200)
texts = st.text()
opt_texts = st.none() | st.text()


@st.composite
def approvals(draw: st.DrawFn) -> SubmitApproval:
    decision = draw(st.sampled_from(DECISIONS))
    return SubmitApproval(
        id=draw(ids),
        call_id=draw(texts),
        decision=decision,
        arguments=draw(json_objects) if decision == "edit" else None,
        feedback=draw(opt_texts) if decision == "reject" else None,
        result=draw(json_values) if decision == "respond" else None,
        remember=draw(st.sampled_from(REMEMBER)) if decision in ("approve", "edit") else "once",
        by=draw(st.sampled_from(DECIDED_BY)),
    )


@st.composite
def tool_results(draw: st.DrawFn) -> SubmitToolResult:
    if draw(st.booleans()):
        return SubmitToolResult(draw(ids), draw(texts), error=draw(texts))
    return SubmitToolResult(draw(ids), draw(texts), result=draw(json_values))


commands: st.SearchStrategy[Command] = st.one_of(
    st.builds(
        SendMessage, id=ids, content=texts, agent=opt_texts, on_busy=st.sampled_from(ON_BUSY)
    ),
    tool_results(),
    approvals(),
    st.builds(Answer, id=ids, question_id=texts, text=texts),
    st.builds(Cancel, id=ids, turn_id=opt_texts),
    st.builds(SwitchAgent, id=ids, agent=texts, content=opt_texts),
)


@given(commands)
def test_round_trip(cmd: Command) -> None:
    wire = encode_command(cmd)
    assert wire["type"] == cmd.type
    assert parse_command(wire) == cmd
    assert parse_command(json.loads(json.dumps(wire))) == cmd


def test_defaults() -> None:
    assert parse_command({"type": "user_message", "id": "1", "content": "hi"}) == SendMessage(
        "1", "hi", None, "queue"
    )
    approval = parse_command({"type": "approval", "id": "2", "call_id": "c", "decision": "approve"})
    assert approval == SubmitApproval("2", "c", "approve", remember="once", by="user")
    assert parse_command({"type": "cancel", "id": "3"}) == Cancel("3")


def test_approval_by_policy() -> None:
    wire: JSON = {
        "type": "approval",
        "id": "1",
        "call_id": "c",
        "decision": "reject",
        "by": "policy",
    }
    cmd = parse_command(wire)
    assert cmd == SubmitApproval("1", "c", "reject", by="policy")
    assert encode_command(cmd)["by"] == "policy"
    null_by: JSON = {
        "type": "approval",
        "id": "1",
        "call_id": "c",
        "decision": "approve",
        "by": None,
    }
    assert parse_command(null_by) == SubmitApproval("1", "c", "approve", by="user")


def test_tool_result_null_counts_only_when_present() -> None:
    cmd = parse_command({"type": "tool_result", "id": "1", "call_id": "c", "result": None})
    assert cmd == SubmitToolResult("1", "c", result=None)
    assert encode_command(cmd) == {"type": "tool_result", "id": "1", "call_id": "c", "result": None}
    with pytest.raises(CommandError, match="exactly one of 'result' or 'error'") as info:
        parse_command({"type": "tool_result", "id": "1", "call_id": "c"})
    assert info.value.code == "invalid_command"


def test_respond_with_null_result() -> None:
    wire: JSON = {
        "type": "approval",
        "id": "1",
        "call_id": "c",
        "decision": "respond",
        "result": None,
    }
    cmd = parse_command(wire)
    assert cmd == SubmitApproval("1", "c", "respond")
    assert encode_command(cmd)["result"] is None


@pytest.mark.parametrize("obj", [None, [], "x", 3, True])
def test_not_an_object_is_bad_json(obj: JSON) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(obj)
    assert info.value.code == "bad_json"


def test_unknown_type() -> None:
    with pytest.raises(CommandError, match="unknown command type 'dance'") as info:
        parse_command({"type": "dance", "id": "1"})
    assert info.value.code == "unknown_command"


_INVALID: list[tuple[JSON, str]] = [
    ({"id": "1"}, "missing field 'type'"),
    ({"type": 7, "id": "1"}, "field 'type' must be a string, got number"),
    ({"type": "cancel"}, "missing field 'id' \\(expected a string\\)"),
    ({"type": "cancel", "id": 5}, "field 'id' must be a string"),
    ({"type": "cancel", "id": ""}, "'id' must be 1 to 200 characters"),
    ({"type": "cancel", "id": "x" * 201}, "'id' must be 1 to 200 characters"),
    ({"type": "cancel", "id": "1", "turn": "t"}, "unknown field\\(s\\) 'turn'"),
    ({"type": "user_message", "id": "1"}, "missing field 'content'"),
    (
        {"type": "user_message", "id": "1", "content": ["a"]},
        "'content' must be a string, got array",
    ),
    ({"type": "user_message", "id": "1", "content": "a", "on_busy": "wait"}, "'on_busy' must be"),
    ({"type": "tool_result", "id": "1", "call_id": "c", "result": 1, "error": "e"}, "exactly one"),
    ({"type": "tool_result", "id": "1", "call_id": "c", "error": 1}, "'error' must be a string"),
    ({"type": "approval", "id": "1", "call_id": "c", "decision": "maybe"}, "'decision' must be"),
    ({"type": "approval", "id": "1", "call_id": "c", "decision": "edit"}, "'arguments'.*required"),
    (
        {"type": "approval", "id": "1", "call_id": "c", "decision": "edit", "arguments": "x"},
        "'arguments' must be an object, got string",
    ),
    (
        {"type": "approval", "id": "1", "call_id": "c", "decision": "approve", "arguments": {}},
        "'arguments'.*only allowed",
    ),
    ({"type": "approval", "id": "1", "call_id": "c", "decision": "respond"}, "requires.*'result'"),
    (
        {"type": "approval", "id": "1", "call_id": "c", "decision": "reject", "result": 1},
        "'result' is only allowed",
    ),
    (
        {"type": "approval", "id": "1", "call_id": "c", "decision": "approve", "remember": "ever"},
        "'remember' must be one of 'once', 'session'",
    ),
    (
        {"type": "approval", "id": "1", "call_id": "c", "decision": "reject", "by": "timeout"},
        "field 'by' must be one of 'user', 'policy', got string",
    ),
    (
        {"type": "approval", "id": "1", "call_id": "c", "decision": "reject", "by": True},
        "field 'by' must be one of 'user', 'policy', got boolean",
    ),
    ({"type": "answer", "id": "1", "question_id": "q"}, "missing field 'text'"),
    ({"type": "switch_agent", "id": "1", "agent": None}, "missing field 'agent'|'agent' must"),
]


@pytest.mark.parametrize(("obj", "match"), _INVALID)
def test_invalid_commands_name_the_field(obj: JSON, match: str) -> None:
    with pytest.raises(CommandError, match=match) as info:
        parse_command(obj)
    assert info.value.code == "invalid_command"


def test_constructors_refuse_invalid_combinations() -> None:
    with pytest.raises(ValueError):
        SubmitToolResult("1", "c", result=1, error="e")
    with pytest.raises(ValueError):
        SubmitApproval("1", "c", "edit")
    with pytest.raises(ValueError):
        SubmitApproval("1", "c", "approve", result="x")


def test_ack_wire_form() -> None:
    assert Ack.accepted("1").to_json() == {"type": "ack", "id": "1", "status": "accepted"}
    assert Ack.accepted("1", turn_id="t").to_json()["turn_id"] == "t"
    rejected = Ack.rejected("2", CommandError("busy", "a turn is running"))
    assert rejected.to_json() == {
        "type": "ack",
        "id": "2",
        "status": "rejected",
        "error": "a turn is running",
        "code": "busy",
    }
    assert Ack.from_json(rejected.to_json()) == rejected
    with pytest.raises(ValueError, match="'status' must be one of"):
        Ack.from_json({"id": "1", "status": "maybe"})

"""The table-driven codec: declarations cover the unions, and each encodes as specified.

Each expected wire form below is compared as JSON *text*, so key order counts too:
the wire stays byte-for-byte what it was before the codec was table-driven.
"""

from __future__ import annotations

import json
from typing import get_args

import pytest
from attrs import frozen

from agents._core._codec import record
from agents._core._commands import (
    ACK,
    COMMANDS,
    Ack,
    Answer,
    Cancel,
    Command,
    Compact,
    SendMessage,
    SubmitApproval,
    SubmitToolResult,
    SwitchAgent,
    SwitchModel,
    encode_command,
    parse_command,
)
from agents._core._events import (
    EVENTS,
    AgentEvent,
    AgentSwitched,
    ApprovalRequested,
    ApprovalResolved,
    AssistantMessage,
    CompactionStarted,
    ContextCompacted,
    ErrorEvent,
    ModelSwitched,
    QuestionAnswered,
    QuestionAsked,
    SessionDeleted,
    SubtaskEnded,
    SubtaskStarted,
    TextDeltaEvent,
    ToolCallEvent,
    ToolCallInfo,
    ToolResultEvent,
    ToolStarted,
    TurnEnded,
    TurnStarted,
    UsageEvent,
    UsageTotals,
    UserMessage,
    decode_event,
    encode_event,
)
from agents._core._frames import CLIENT_FRAMES, SERVER_FRAMES, ErrorFrame, Heartbeat
from agents._errors import CommandError
from sessions import JSONObject

ARGS: JSONObject = {"path": "a.py"}
CALL = ToolCallInfo("c1", "read_file", ARGS)

EVENT_WIRE: list[tuple[AgentEvent, str]] = [
    (UserMessage("m0", "hi", "ask"), '{"message_id": "m0", "content": "hi", "agent": "ask"}'),
    (TurnStarted("coder", 1, "gpt"), '{"agent": "coder", "user_message_seq": 1, "model": "gpt"}'),
    (AgentSwitched("a", "b", "r"), '{"from": "a", "to": "b", "reason": "r"}'),
    (ModelSwitched("x", None), '{"from": "x", "to": null}'),
    (TextDeltaEvent("m1", "t"), '{"message_id": "m1", "text": "t"}'),
    (
        AssistantMessage("m1", "hi", "coder", True, (CALL,), {"openai": {"id": "r"}}),
        '{"message_id": "m1", "role": "assistant", "content": "hi", "agent": "coder",'
        ' "truncated": true, "tool_calls": [{"call_id": "c1", "name": "read_file",'
        ' "arguments": {"path": "a.py"}}], "provider_data": {"openai": {"id": "r"}}}',
    ),
    (
        AssistantMessage("m2", "", "ask"),
        '{"message_id": "m2", "role": "assistant", "content": "", "agent": "ask",'
        ' "truncated": false, "tool_calls": []}',
    ),
    (
        ToolCallEvent("c1", "n", ARGS),
        '{"call_id": "c1", "name": "n", "arguments": {"path": "a.py"}}',
    ),
    (
        ToolStarted("c1", "mcp__t__x", {}, "t"),
        '{"call_id": "c1", "name": "mcp__t__x", "arguments": {}, "server": "t"}',
    ),
    (
        ApprovalRequested("c1", "n", {}, "rule", 5.0),
        '{"call_id": "c1", "name": "n", "arguments": {}, "rule": "rule", "expires_at": 5.0}',
    ),
    (
        ApprovalResolved("c1", "edit", "user", {"a": 1}, "f"),
        '{"call_id": "c1", "decision": "edit", "arguments": {"a": 1}, "feedback": "f",'
        ' "by": "user"}',
    ),
    (
        ApprovalResolved("c1", "expire", "timeout"),
        '{"call_id": "c1", "decision": "expire", "by": "timeout"}',
    ),
    (
        ToolResultEvent("c1", False, "s", "c"),
        '{"call_id": "c1", "ok": false, "summary": "s", "content": "c"}',
    ),
    (
        QuestionAsked("q", "which?", ("a", "b")),
        '{"question_id": "q", "text": "which?", "options": ["a", "b"]}',
    ),
    (QuestionAsked("q", "which?"), '{"question_id": "q", "text": "which?"}'),
    (QuestionAnswered("q", "a"), '{"question_id": "q", "text": "a"}'),
    (
        SubtaskStarted("s1", "ask", "go", "big"),
        '{"subtask_id": "s1", "agent": "ask", "message": "go", "model": "big"}',
    ),
    (
        SubtaskEnded("s1", "ask", True, "done"),
        '{"subtask_id": "s1", "agent": "ask", "summary": "done", "ok": true}',
    ),
    (
        UsageEvent(3, 4, "m", 1, 2, 0.5, "route"),
        '{"prompt_tokens": 3, "completion_tokens": 4, "model": "m", "cached_tokens": 1,'
        ' "reasoning_tokens": 2, "cost": 0.5, "purpose": "route"}',
    ),
    # An unpriced call: cost is null, and (as it always was) the last key.
    (
        UsageEvent(3, 4, "m"),
        '{"prompt_tokens": 3, "completion_tokens": 4, "model": "m", "purpose": "chat",'
        ' "cost": null}',
    ),
    (
        ErrorEvent("model_timeout", "slow"),
        '{"code": "model_timeout", "message": "slow", "retryable": false}',
    ),
    (
        TurnEnded("completed", UsageTotals(1, 2, 0, 0, None, 1), 10, 100),
        '{"reason": "completed", "usage": {"prompt_tokens": 1, "completion_tokens": 2,'
        ' "cached_tokens": 0, "reasoning_tokens": 0, "cost": null, "calls": 1},'
        ' "context_tokens": 10, "context_window": 100}',
    ),
    (TurnEnded("cancelled"), '{"reason": "cancelled"}'),
    (CompactionStarted("threshold", 9), '{"reason": "threshold", "tokens_before": 9}'),
    (SessionDeleted(), "{}"),
    (
        ContextCompacted("sum", 1, 9, 100, 10, "requested", "m", 4),
        '{"summary": "sum", "from_seq": 1, "to_seq": 9, "tokens_before": 100,'
        ' "tokens_after": 10, "reason": "requested", "model": "m", "messages_replaced": 4}',
    ),
]

COMMAND_WIRE: list[tuple[Command, str]] = [
    (
        SendMessage("c1", "hi", "ask"),
        '{"type": "user_message", "id": "c1", "content": "hi", "agent": "ask", "on_busy": "queue"}',
    ),
    (
        SubmitToolResult("c2", "k", result=None),
        '{"type": "tool_result", "id": "c2", "call_id": "k", "result": null}',
    ),
    (
        SubmitToolResult("c3", "k", error="no"),
        '{"type": "tool_result", "id": "c3", "call_id": "k", "error": "no"}',
    ),
    (
        SubmitApproval("c4", "k", "edit", arguments={"a": 1}, remember="session"),
        '{"type": "approval", "id": "c4", "call_id": "k", "decision": "edit", "arguments":'
        ' {"a": 1}, "remember": "session", "by": "user"}',
    ),
    (
        SubmitApproval("c4r", "k", "reject", feedback="f"),
        '{"type": "approval", "id": "c4r", "call_id": "k", "decision": "reject",'
        ' "feedback": "f", "remember": "once", "by": "user"}',
    ),
    (
        SubmitApproval("c5", "k", "respond", result=None, by="policy"),
        '{"type": "approval", "id": "c5", "call_id": "k", "decision": "respond",'
        ' "remember": "once", "by": "policy", "result": null}',
    ),
    (Answer("c6", "q", "t"), '{"type": "answer", "id": "c6", "question_id": "q", "text": "t"}'),
    (Cancel("c7"), '{"type": "cancel", "id": "c7"}'),
    (Cancel("c8", "turn_1"), '{"type": "cancel", "id": "c8", "turn_id": "turn_1"}'),
    (SwitchAgent("c9", "coder"), '{"type": "switch_agent", "id": "c9", "agent": "coder"}'),
    (Compact("c10", "keep"), '{"type": "compact", "id": "c10", "instructions": "keep"}'),
    (SwitchModel("c11", None), '{"type": "switch_model", "id": "c11", "model": null}'),
]


def test_declarations_cover_every_member_of_the_unions() -> None:
    assert {r.cls for r in EVENTS.records} == set(get_args(AgentEvent))
    assert {r.cls for r in COMMANDS.records} == set(get_args(Command))
    assert {r.type for r in EVENTS.records} == {cls.type for cls in get_args(AgentEvent)}
    assert {type(event) for event, _ in EVENT_WIRE} == set(get_args(AgentEvent))
    assert {type(command) for command, _ in COMMAND_WIRE} == set(get_args(Command))


@pytest.mark.parametrize(("event", "wire"), EVENT_WIRE, ids=lambda v: getattr(v, "type", ""))
def test_each_event_encodes_as_specified(event: AgentEvent, wire: str) -> None:
    type_, payload = encode_event(event)
    assert type_ == event.type
    assert json.dumps(payload) == wire
    assert decode_event(type_, json.loads(wire)) == event


@pytest.mark.parametrize(("command", "wire"), COMMAND_WIRE, ids=lambda v: getattr(v, "type", ""))
def test_each_command_encodes_as_specified(command: Command, wire: str) -> None:
    assert json.dumps(encode_command(command)) == wire
    assert parse_command(json.loads(wire)) == command


def test_ack_and_frames_encode_as_specified() -> None:
    ack = Ack("c1", "rejected", error="e", code="busy", turn_id="t")
    assert json.dumps(ack.to_json()) == (
        '{"type": "ack", "id": "c1", "status": "rejected", "error": "e", "code": "busy",'
        ' "turn_id": "t"}'
    )
    assert ACK.decode(ack.to_json(), "ack") == ack
    sync, heartbeat, error = SERVER_FRAMES
    assert heartbeat.encode(Heartbeat()) == {}
    assert error.encode(ErrorFrame("bad_json", "m")) == {"code": "bad_json", "message": "m"}
    retry = ErrorFrame("storage_unavailable", "m", "c1", retryable=True)
    assert error.encode(retry) == {
        "code": "storage_unavailable",
        "message": "m",
        "id": "c1",
        "retryable": True,
    }
    assert [r.type for r in CLIENT_FRAMES] == ["hello"]
    assert sync.type == "sync"


def test_lenient_reads_of_old_logs() -> None:
    # Defaults fill what older versions did not write; nulls of optional fields are absences.
    assert decode_event("usage", {"prompt_tokens": 1, "completion_tokens": 2, "model": "m"}) == (
        UsageEvent(1, 2, "m")
    )
    message: JSONObject = {"message_id": "m", "content": "", "agent": "a", "tool_calls": None}
    assert decode_event("message", message) == AssistantMessage("m", "", "a")
    with pytest.raises(ValueError, match=r"'message': missing field 'message_id' \(expected a"):
        decode_event("message", {})


def test_closed_records_refuse_unknown_fields_and_nullable_absence() -> None:
    with pytest.raises(CommandError, match="unknown field"):
        parse_command({"type": "answer", "id": "1", "question_id": "q", "text": "t", "x": 1})
    with pytest.raises(CommandError, match=r"missing field 'model' \(a string, or null\)"):
        parse_command({"type": "switch_model", "id": "1"})
    # Events are open: a newer version's extra field is ignored.
    assert decode_event("text.delta", {"message_id": "m", "text": "t", "new": 1}) == (
        TextDeltaEvent("m", "t")
    )


def test_a_declaration_error_fails_at_import_time() -> None:
    @frozen
    class Odd:
        when: complex

    with pytest.raises(TypeError, match="no wire shape for annotation 'complex'"):
        record(Odd)

    @frozen
    class Pair:
        a: str
        b: str

    with pytest.raises(TypeError, match="order must list exactly"):
        record(Pair, order=("a",))

"""The durable event vocabulary: wire round trips and rejection of bad payloads."""

from __future__ import annotations

import json
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents._core._events import (
    APPROVAL_DECISIONS,
    RESOLVED_BY,
    TURN_END_REASONS,
    AgentEvent,
    AgentSwitched,
    ApprovalDecision,
    ApprovalRequested,
    ApprovalResolved,
    AssistantMessage,
    CompactionStarted,
    ContextCompacted,
    ErrorEvent,
    ModelSwitched,
    QuestionAnswered,
    QuestionAsked,
    ResolvedBy,
    SessionDeleted,
    SubtaskEnded,
    SubtaskStarted,
    TextDeltaEvent,
    ToolCallEvent,
    ToolCallInfo,
    ToolResultEvent,
    ToolStarted,
    TurnEnded,
    TurnEndReason,
    TurnStarted,
    UsageEvent,
    UsageTotals,
    UserMessage,
    decode_event,
    encode_event,
    summarize,
)
from sessions import JSON, JSONObject

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values: st.SearchStrategy[JSON] = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)
json_objects: st.SearchStrategy[JSONObject] = st.dictionaries(st.text(), json_values, max_size=4)
texts = st.text()
opt_texts = st.none() | st.text()
finite = st.floats(allow_nan=False, allow_infinity=False)

tool_call_infos = st.builds(ToolCallInfo, call_id=texts, name=texts, arguments=json_objects)

events: st.SearchStrategy[AgentEvent] = st.one_of(
    st.builds(UserMessage, message_id=texts, content=texts, agent=opt_texts),
    st.builds(
        TurnStarted,
        agent=texts,
        user_message_seq=st.none() | st.integers(min_value=1),
        model=opt_texts,
    ),
    st.builds(AgentSwitched, from_agent=texts, to_agent=texts, reason=texts),
    st.builds(ModelSwitched, from_model=opt_texts, to_model=opt_texts),
    st.builds(TextDeltaEvent, message_id=texts, text=texts),
    st.builds(
        AssistantMessage,
        message_id=texts,
        content=texts,
        agent=texts,
        truncated=st.booleans(),
        tool_calls=st.lists(tool_call_infos, max_size=3).map(tuple),
    ),
    st.builds(ToolCallEvent, call_id=texts, name=texts, arguments=json_objects),
    st.builds(ToolStarted, call_id=texts, name=texts, arguments=json_objects, server=texts),
    st.builds(
        ApprovalRequested,
        call_id=texts,
        name=texts,
        arguments=json_objects,
        rule=texts,
        expires_at=finite,
    ),
    st.builds(
        ApprovalResolved,
        call_id=texts,
        decision=st.sampled_from(APPROVAL_DECISIONS),
        by=st.sampled_from(RESOLVED_BY),
        arguments=st.none() | json_objects,
        feedback=opt_texts,
    ),
    st.builds(ToolResultEvent, call_id=texts, ok=st.booleans(), summary=texts, content=texts),
    st.builds(
        QuestionAsked,
        question_id=texts,
        text=texts,
        options=st.none() | st.lists(texts, max_size=4).map(tuple),
    ),
    st.builds(QuestionAnswered, question_id=texts, text=texts),
    st.builds(SubtaskStarted, subtask_id=texts, agent=texts, message=texts, model=opt_texts),
    st.builds(SubtaskEnded, subtask_id=texts, agent=texts, ok=st.booleans(), summary=opt_texts),
    st.builds(
        UsageEvent,
        prompt_tokens=st.integers(0),
        completion_tokens=st.integers(0),
        model=texts,
        cached_tokens=st.none() | st.integers(0),
        reasoning_tokens=st.none() | st.integers(0),
        cost=st.none() | st.floats(0, 1000),
        purpose=st.sampled_from(["chat", "route", "compact"]),
    ),
    st.builds(ErrorEvent, code=texts, message=texts, retryable=st.booleans()),
    st.builds(
        TurnEnded,
        reason=st.sampled_from(TURN_END_REASONS),
        usage=st.none()
        | st.builds(
            UsageTotals,
            prompt_tokens=st.integers(0),
            completion_tokens=st.integers(0),
            cached_tokens=st.integers(0),
            reasoning_tokens=st.integers(0),
            cost=st.none() | st.floats(0, 1000),
            calls=st.integers(0),
        ),
        context_tokens=st.none() | st.integers(0),
        context_window=st.none() | st.integers(1),
    ),
    st.builds(CompactionStarted, reason=texts, tokens_before=st.integers(0)),
    st.just(SessionDeleted()),
    st.builds(
        ContextCompacted,
        summary=texts,
        from_seq=st.integers(0),
        to_seq=st.integers(0),
        tokens_before=st.integers(0),
        tokens_after=st.integers(0),
        reason=texts,
        model=texts,
        messages_replaced=st.integers(0),
    ),
)


@given(events)
def test_round_trip(ev: AgentEvent) -> None:
    type_, data = encode_event(ev)
    assert type_ == ev.type
    assert not {"seq", "session_id", "ts", "turn_id"} & data.keys()
    # Optional fields are omitted when None; the explicit nulls are a usage's cost
    # (an unpriced call costs "unknown", not 0) and model.switched's from/to ("the defaults").
    explicit = {("usage", "cost"), ("model.switched", "from"), ("model.switched", "to")}
    assert None not in {k: v for k, v in data.items() if (type_, k) not in explicit}.values()
    assert decode_event(type_, data) == ev


@given(events)
def test_round_trip_through_json_text(ev: AgentEvent) -> None:
    type_, data = encode_event(ev)
    loaded = json.loads(json.dumps(data))
    assert isinstance(loaded, dict)
    assert decode_event(type_, loaded) == ev


def test_every_union_member_has_a_distinct_wire_type() -> None:
    members = get_args(AgentEvent)
    assert len({m.type for m in members}) == len(members) == 21


def test_literal_tuples_match_their_aliases() -> None:
    assert set(TURN_END_REASONS) == set(get_args(TurnEndReason))
    assert set(APPROVAL_DECISIONS) == set(get_args(ApprovalDecision))
    assert set(RESOLVED_BY) == set(get_args(ResolvedBy))


def test_wire_names_follow_the_spec() -> None:
    assert encode_event(AgentSwitched("orchestrator", "coder", "routing")) == (
        "agent.switched",
        {"from": "orchestrator", "to": "coder", "reason": "routing"},
    )
    call = ToolCallInfo("c1", "read_file", {"path": "a.py"})
    assert encode_event(AssistantMessage("m1", "hi", "coder", tool_calls=(call,))) == (
        "message",
        {
            "message_id": "m1",
            "role": "assistant",
            "content": "hi",
            "agent": "coder",
            "truncated": False,
            "tool_calls": [{"call_id": "c1", "name": "read_file", "arguments": {"path": "a.py"}}],
        },
    )
    assert encode_event(UserMessage("m0", "hello")) == (
        "user.message",
        {"message_id": "m0", "content": "hello"},
    )


def test_model_fields_are_optional_and_model_switched_keeps_its_nulls() -> None:
    # Logs written before models could be chosen stay readable: absent = None.
    assert decode_event("turn.started", {"agent": "coder"}) == TurnStarted("coder")
    old: JSONObject = {"subtask_id": "s", "agent": "ask", "message": "m"}
    assert decode_event("subtask.started", old) == SubtaskStarted("s", "ask", "m", None)
    assert encode_event(SubtaskStarted("s", "ask", "m", "big")) == (
        "subtask.started",
        {**old, "model": "big"},
    )
    assert encode_event(TurnStarted("coder", 1, "m1")) == (
        "turn.started",
        {"agent": "coder", "user_message_seq": 1, "model": "m1"},
    )
    assert encode_event(ModelSwitched(None, "m1")) == ("model.switched", {"from": None, "to": "m1"})
    assert decode_event("model.switched", {"to": None}) == ModelSwitched(None, None)
    with pytest.raises(ValueError, match="'to' must be a string"):
        decode_event("model.switched", {"from": None, "to": 3})


def test_decode_accepts_integer_timestamps_and_null_optionals() -> None:
    ev = decode_event(
        "approval.requested",
        {"call_id": "c", "name": "n", "arguments": {}, "rule": "r", "expires_at": 5},
    )
    assert isinstance(ev, ApprovalRequested)
    assert ev.expires_at == 5.0
    assert decode_event("turn.started", {"agent": "coder", "user_message_seq": None}) == (
        TurnStarted("coder", None)
    )


@pytest.mark.parametrize(
    ("type_", "data", "match"),
    [
        ("text.delta", {"message_id": "m"}, "text.delta.*missing field 'text'.*string"),
        ("text.delta", {"message_id": "m", "text": 3}, "field 'text' must be a string, got number"),
        ("usage", {"prompt_tokens": True, "completion_tokens": 1, "model": "m"}, "an integer"),
        ("usage", {"prompt_tokens": 1.5, "completion_tokens": 1, "model": "m"}, "'prompt_tokens'"),
        ("turn.ended", {"reason": "bored"}, "'reason' must be one of 'completed'"),
        ("tool.call", {"call_id": "c", "name": "n", "arguments": []}, "an object, got array"),
        ("question.asked", {"question_id": "q", "text": "t", "options": [1]}, "array of strings"),
        ("error", {"code": "c", "message": "m", "retryable": "no"}, "a boolean, got string"),
        (
            "message",
            {"message_id": "m", "content": "", "agent": "a", "truncated": False, "role": "user"},
            "'role' must be 'assistant'",
        ),
        (
            "message",
            {"message_id": "m", "content": "", "agent": "a", "truncated": False, "tool_calls": [1]},
            r"tool_calls\[0\] must be an object",
        ),
        (
            "message",
            {
                "message_id": "m",
                "content": "",
                "agent": "a",
                "truncated": False,
                "tool_calls": [{"call_id": "c", "name": "n"}],
            },
            r"tool_calls\[0\]: missing field 'arguments'",
        ),
        ("no.such.type", {}, "unknown event type 'no.such.type'"),
    ],
)
def test_bad_payloads_are_refused_with_a_reason(type_: str, data: JSONObject, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decode_event(type_, data)


def test_summarize() -> None:
    assert summarize("short") == "short"
    assert summarize("x" * 500) == "x" * 500
    cut = summarize("x" * 501)
    assert len(cut) == 500
    assert cut.endswith("…")
    assert summarize("abcdef", limit=3) == "ab…"
    with pytest.raises(ValueError):
        summarize("abc", limit=0)


def test_tool_result_of_summarizes_content() -> None:
    ev = ToolResultEvent.of("c1", True, "y" * 2000)
    assert ev.content == "y" * 2000
    assert len(ev.summary) == 500

"""The ``openai`` provider's wire format: request bodies, usage chunks, error bodies.

Pure functions, no network (the streaming side is tests/agents/test_openai.py).
"""

from __future__ import annotations

import json

import attrs
import pytest

from agents._errors import ModelError
from agents._providers._openai_wire import (
    ChunkAssembler,
    encode_message,
    is_context_overflow,
    request_body,
    request_bytes,
    request_parts,
)
from agents.model import (
    ChatMessage,
    FinishDelta,
    ModelRequest,
    TextPart,
    ToolCallDelta,
    ToolCallRequest,
    ToolSpec,
    UsageDelta,
)
from sessions import JSON

CALL = ToolCallRequest("call_1", "read_file", '{"path": "a.py"}')
FINISH: JSON = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


def test_a_history_with_a_tool_call_and_its_result() -> None:
    request = ModelRequest(
        model="",
        messages=(
            ChatMessage("system", "be brief"),
            ChatMessage("user", "read a.py"),
            ChatMessage("assistant", None, (CALL,)),
            ChatMessage("tool", "x = 1", tool_call_id="call_1"),
        ),
        tools=(ToolSpec("read_file", "Read a file", {"type": "object"}),),
        temperature=0.5,
    )
    assert request_body(request, "default-model") == {
        "model": "default-model",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "read a.py"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "read_file", "arguments": '{"path": "a.py"}'},
                    }
                ],
            },
            {"role": "tool", "content": "x = 1", "tool_call_id": "call_1"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "read_file",
                    "description": "Read a file",
                    "parameters": {"type": "object"},
                },
            }
        ],
        "temperature": 0.5,
    }


def test_a_request_that_names_its_model_keeps_it() -> None:
    request = ModelRequest(model="mine", messages=(ChatMessage("user", "hi"),))
    assert request_body(request, "default-model")["model"] == "mine"


def test_parts_are_sent_as_a_content_array() -> None:
    message = ChatMessage.of_parts("user", [TextPart("look "), TextPart("here")])
    assert encode_message(message) == {
        "role": "user",
        "content": [{"type": "text", "text": "look "}, {"type": "text", "text": "here"}],
    }


def test_its_own_provider_data_is_sent_and_other_providers_data_is_not() -> None:
    message = ChatMessage(
        "assistant",
        "done",
        provider_data={
            "openai": {"reasoning_content": "thought", "content": "not this"},
            "anthropic": {"thinking": "secret", "signature": "abc"},
        },
    )
    # The neutral fields win a clash: provider data adds, it does not rewrite.
    assert encode_message(message) == {
        "role": "assistant",
        "content": "done",
        "reasoning_content": "thought",
    }


def test_provider_data_that_is_not_an_object_adds_nothing() -> None:
    message = ChatMessage("assistant", "done", provider_data={"openai": ["odd"]})
    assert encode_message(message) == {"role": "assistant", "content": "done"}


def _requests() -> list[ModelRequest]:
    tools = (ToolSpec("read_file", "Read a file", {"type": "object"}),)
    history = (
        ChatMessage("system", "be brief"),
        ChatMessage.of_parts("user", [TextPart("look "), TextPart("here \u2028")]),
        ChatMessage("assistant", None, (CALL,), provider_data={"openai": {"reasoning": "r"}}),
        ChatMessage("tool", 'x = "1"', tool_call_id="call_1"),
    )
    return [
        ModelRequest(model="", messages=history, tools=tools, temperature=0.5),
        ModelRequest(model="mine", messages=history[:1]),
        ModelRequest(model="", messages=(), tools=tools),
    ]


def test_the_sent_text_is_the_request_body() -> None:
    for request in _requests():
        assert json.loads(request_bytes(request, "default-model")) == request_body(
            request, "default-model"
        )


def test_each_history_message_and_each_tool_list_is_encoded_once() -> None:
    request = _requests()[0]
    first = request_bytes(request, "m")
    assert all("openai" in message.wire_cache for message in request.messages)
    # A cached text is what is sent: changing it shows it is not encoded again
    # (in a history that starts elsewhere, so its joined text is not reused).
    request.messages[1].wire_cache["openai"] = '{"role":"user","content":"cached"}'
    other = attrs.evolve(
        request, messages=(request.messages[0], ChatMessage("user", "new"), *request.messages[1:])
    )
    again = json.loads(request_bytes(other, "m"))
    assert again["messages"][2] == {"role": "user", "content": "cached"}
    assert json.loads(first)["tools"] == again["tools"]
    # Equal messages stay equal whatever their caches hold.
    assert request.messages[1] == ChatMessage.of_parts(
        "user", [TextPart("look "), TextPart("here \u2028")]
    )


def test_a_growing_history_reuses_its_text_and_a_changed_one_does_not() -> None:
    system = ChatMessage("system", "be brief")
    history = [ChatMessage("user", "first")]

    def sent(messages: list[ChatMessage]) -> JSON:
        request = ModelRequest(model="", messages=(system, *messages))
        body: JSON = json.loads(request_bytes(request, "m"))
        assert body == request_body(request, "m")
        assert isinstance(body, dict)
        return body["messages"]

    for n in range(5):
        history.append(ChatMessage("assistant", f"answer {n}"))
        history.append(ChatMessage("user", f"more {n}"))
        sent(history)
    # Same first message, another middle (what compaction will do): not the cached text.
    changed = [history[0], ChatMessage("assistant", "summary"), *history[-2:]]
    assert sent(changed) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "summary"},
        {"role": "assistant", "content": "answer 4"},
        {"role": "user", "content": "more 4"},
    ]
    sent(history[:3])  # shorter than what was cached
    sent(history)
    # A body already built stays as it was while the history it came from grows.
    request = ModelRequest(model="", messages=(system, *history))
    before = request_bytes(request, "m")
    history.append(ChatMessage("assistant", "later"))
    sent(history)
    assert json.loads(before) == request_body(request, "m")


def test_a_long_history_goes_out_as_its_settled_part_not_a_copy_per_call() -> None:
    system = ChatMessage("system", "be brief")
    # Past the settling size from the first call: settled at once.
    history = [ChatMessage("user", "x" * 70_000)]
    settled: list[bytes] = []
    for n in range(100):
        history.append(ChatMessage("assistant", f"answer {n} " + "y" * 2_000))
        request = ModelRequest(model="", messages=(system, *history))
        parts = request_parts(request, "m")
        assert json.loads(b"".join(parts)) == request_body(request, "m")
        first, middle, last = parts
        assert first.startswith(b'{"model":"m","messages":[{"role":"system"')
        assert len(last) < 64 * 1024 + 100
        if not settled or middle is not settled[-1]:
            settled.append(middle)
    # 100 calls adding ~205 KB: the history's text was copied into a new settled
    # part once per 64 KiB of growth (3 times), not once per call.
    assert len(settled) == 4
    assert settled[0].startswith(b'{"role":"user","content":"xxx')


def test_a_short_history_is_one_part() -> None:
    history = (ChatMessage("system", "s"), ChatMessage("user", "a"), ChatMessage("user", "b"))
    request = ModelRequest(model="", messages=history)
    [body] = request_parts(request, "m")
    assert json.loads(body) == request_body(request, "m")


OPENAI_OVERFLOW: JSON = {
    "error": {
        "message": "This model's maximum context length is 4096 tokens. However, your "
        "messages resulted in 5000 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}


@pytest.mark.parametrize(
    "body",
    [
        OPENAI_OVERFLOW,
        {"error": {"message": "bad request", "code": "context_length_exceeded"}},
        {"error": {"message": "x", "type": "ContextWindowExceededError", "code": 400}},
        {"error": {"message": "litellm.ContextWindowExceededError: litellm.BadRequestError"}},
        {"error": {"message": "prompt is too long: 210000 tokens > 200000 maximum"}},
        {"error": {"message": "Context length exceeded: 9000 > 8192"}},
        {"error": {"message": "Too many tokens in the request"}},
        {"detail": "This model's MAXIMUM CONTEXT LENGTH is 8192 tokens"},
        {"error": "Please reduce the length of the messages or completion."},
        "prompt is too long",  # a body that was not JSON
    ],
)
def test_context_overflow_is_recognised_in_any_shape(body: JSON) -> None:
    assert is_context_overflow(400, body)
    assert is_context_overflow(413, body)


@pytest.mark.parametrize("status", [401, 403, 404, 422, 429, 500])
def test_context_overflow_needs_a_400_or_413(status: int) -> None:
    assert not is_context_overflow(status, OPENAI_OVERFLOW)


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "unknown parameter: temprature", "code": "invalid_value"}},
        {"error": {"message": "context too long"}},
        {"error": {"code": 400}},
        "<html>413 Request Entity Too Large</html>",
        None,
        [],
    ],
)
def test_other_client_errors_are_not_context_overflow(body: JSON) -> None:
    assert not is_context_overflow(400, body)
    assert not is_context_overflow(413, body)


def _usage(usage: JSON) -> UsageDelta:
    assembler = ChunkAssembler("m", "test")
    assembler.feed(json.dumps(FINISH))
    assembler.feed(json.dumps({"model": "m", "choices": [], "usage": usage}))
    [delta] = [d for d in assembler.complete() if isinstance(d, UsageDelta)]
    return delta


def test_usage_details_give_cached_and_reasoning_tokens() -> None:
    usage = _usage(
        {
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 32},
        }
    )
    assert usage == UsageDelta(100, 50, "m", cached_tokens=64, reasoning_tokens=32)


@pytest.mark.parametrize(
    "details",
    [
        {},
        {"prompt_tokens_details": None, "completion_tokens_details": None},
        {"prompt_tokens_details": {}, "completion_tokens_details": {}},
        {"prompt_tokens_details": 7, "completion_tokens_details": "lots"},
        {
            "prompt_tokens_details": {"cached_tokens": "64"},
            "completion_tokens_details": {"reasoning_tokens": 1.5},
        },
        {
            "prompt_tokens_details": {"cached_tokens": True},
            "completion_tokens_details": {"reasoning_tokens": -1},
        },
    ],
)
def test_absent_or_malformed_usage_details_are_none(details: dict[str, JSON]) -> None:
    usage = _usage({"prompt_tokens": 10, "completion_tokens": 5, **details})
    assert (usage.prompt_tokens, usage.cached_tokens, usage.reasoning_tokens) == (10, None, None)


def test_an_in_stream_context_length_error_is_a_context_overflow() -> None:
    assembler = ChunkAssembler("m", "test")
    error = {"error": {"message": "maximum context length is 4096 tokens", "code": 400}}
    with pytest.raises(ModelError) as info:
        assembler.feed(json.dumps(error))
    assert info.value.code == "context_overflow"
    rejected = {"error": {"message": "bad tool schema", "code": 400}}
    with pytest.raises(ModelError) as other:
        ChunkAssembler("m", "test").feed(json.dumps(rejected))
    assert other.value.code == "model_rejected"


@pytest.mark.parametrize(
    "bad",
    [-50, True, False, 10**30, 2**62, 1.5, "12", [3], {"n": 3}],
    ids=repr,
)
def test_a_usage_count_that_is_not_a_sane_count_is_taken_as_missing(
    bad: JSON, caplog: pytest.LogCaptureFixture
) -> None:
    # A negative count failed the turn (a metrics counter cannot go down); a bool
    # reached clients as one; 10**30 was stored. Each is now as if not sent.
    usage = _usage(
        {
            "prompt_tokens": bad,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": bad},
            "completion_tokens_details": {"reasoning_tokens": bad},
        }
    )
    assert usage == UsageDelta(0, 5, "m", cached_tokens=None, reasoning_tokens=None)
    assert type(usage.prompt_tokens) is int  # False == 0, but reaches clients as false
    usage = _usage({"prompt_tokens": 7, "completion_tokens": bad})
    assert (usage.prompt_tokens, usage.completion_tokens) == (7, 0)
    assert "invalid usage count" in caplog.text


def test_the_largest_sane_usage_count_is_kept() -> None:
    assert _usage({"prompt_tokens": 10**12, "completion_tokens": 0}).prompt_tokens == 10**12
    assert _usage({"prompt_tokens": 10**12 + 1, "completion_tokens": 0}).prompt_tokens == 0


def test_invalid_usage_is_logged_once_per_call(caplog: pytest.LogCaptureFixture) -> None:
    assembler = ChunkAssembler("m", "test")
    assembler.feed(json.dumps(FINISH))
    for _ in range(3):  # servers that repeat usage in every chunk repeat its faults
        usage = {"prompt_tokens": -1, "completion_tokens": -2}
        assembler.feed(json.dumps({"choices": [], "usage": usage}))
    assembler.complete()
    assert len([r for r in caplog.records if "invalid usage count" in r.message]) == 1


def _tool_calls(*fragments: JSON) -> list[ToolCallRequest]:
    assembler = ChunkAssembler("m", "test")
    for fragment in fragments:
        assembler.feed(json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [fragment]}}]}))
    deltas = assembler.feed(json.dumps(FINISH)) + assembler.complete()
    return [d.call for d in deltas if isinstance(d, ToolCallDelta)]


def _fragment(index: int, call_id: str | None, name: str | None, arguments: str) -> JSON:
    function: dict[str, JSON] = {"arguments": arguments}
    if name is not None:
        function["name"] = name
    out: dict[str, JSON] = {"index": index, "function": function}
    if call_id is not None:
        out["id"] = call_id
    return out


def test_a_new_id_at_an_index_already_used_starts_another_call() -> None:
    # Some OpenAI-compatible servers number every call 0; they were merged into one
    # call with both arguments concatenated.
    calls = _tool_calls(
        _fragment(0, "call_1", "read_file", '{"path": '),
        _fragment(0, None, None, '"a.py"}'),
        _fragment(0, "call_2", "read_file", '{"path": '),
        _fragment(0, None, None, '"b.py"}'),
    )
    assert calls == [
        ToolCallRequest("call_1", "read_file", '{"path": "a.py"}'),
        ToolCallRequest("call_2", "read_file", '{"path": "b.py"}'),
    ]


def test_fragments_repeating_their_calls_id_continue_it() -> None:
    calls = _tool_calls(
        _fragment(0, "call_1", "read_file", '{"path": '),
        _fragment(0, "call_1", None, '"a.py"}'),
        _fragment(1, "call_2", "list_files", "{}"),
    )
    assert calls == [
        ToolCallRequest("call_1", "read_file", '{"path": "a.py"}'),
        ToolCallRequest("call_2", "list_files", "{}"),
    ]


def test_an_id_arriving_after_the_first_fragment_names_that_call() -> None:
    calls = _tool_calls(_fragment(0, None, "read_file", "{}"), _fragment(0, "call_late", None, ""))
    assert calls == [ToolCallRequest("call_late", "read_file", "{}")]


def test_done_after_nothing_and_no_finish_reason_is_a_protocol_error() -> None:
    assembler = ChunkAssembler("m", "test")
    assembler.feed(json.dumps({"id": "x"}))
    assembler.feed(json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}))
    with pytest.raises(ModelError, match="without any output or finish_reason") as info:
        assembler.feed("[DONE]")
    assert info.value.code == "model_protocol_error"
    # An empty answer that says why it ended is an answer.
    assembler = ChunkAssembler("m", "test")
    assembler.feed(json.dumps(FINISH))
    assert [type(d).__name__ for d in assembler.feed("[DONE]")] == ["FinishDelta"]


@pytest.mark.parametrize(
    ("openai", "neutral"),
    [
        ("stop", "stop"),
        ("tool_calls", "tool_calls"),
        ("length", "max_tokens"),
        ("content_filter", "content_filter"),
        ("something_new", "something_new"),
    ],
)
def test_finish_reasons_are_given_in_the_neutral_words(openai: str, neutral: str) -> None:
    assembler = ChunkAssembler("m", "test")
    assembler.feed(json.dumps({"choices": [{"index": 0, "delta": {"content": "Hi"}}]}))
    assembler.feed(json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": openai}]}))
    [finish] = [d for d in assembler.complete() if isinstance(d, FinishDelta)]
    assert finish.reason == neutral

"""The OpenAI chat-completions wire format, without I/O.

:func:`request_body` turns a neutral :class:`ModelRequest` into the JSON body of
``POST /chat/completions``; :class:`SSEDecoder` turns the response's bytes into
event payloads; :class:`ChunkAssembler` turns ``chat.completion.chunk`` payloads
into :data:`~agents.ModelDelta` values (text as it comes, tool calls once
complete, usage and finish at the end). The I/O, timeout and retry policy live
in ``_openai.py``.
"""

from __future__ import annotations

import codecs
import json
import re
import uuid
from collections import OrderedDict
from typing import TypeVar, assert_never

import attrs

from sessions import JSON, JSONObject, dumps

from .._core._model import (
    ChatMessage,
    ContentPart,
    FinishDelta,
    ModelDelta,
    ModelRequest,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallRequest,
    ToolSpec,
    UsageDelta,
)
from .._errors import ModelError

PROVIDER = "openai"
"""This provider's name, and so its key in a message's ``provider_data``."""

_EOL = re.compile(r"\r\n|\r|\n")

MAX_LINE = 8 * 1024 * 1024
"""A line longer than this is refused rather than buffered without bound."""


def request_text(request: ModelRequest, default_model: str) -> str:
    """:func:`request_body` as JSON text, from per-message and per-toolset encodings.

    Each history message is encoded once (cached on the message) and each mode's
    tool list once (cached by identity: :meth:`ModeRegistry.tools_for` returns
    the same tuple every step), so a long session's call costs about what its
    new messages cost, not its whole history.
    """
    messages = _messages_text(request.messages)
    text = f'{{"model":{dumps(request.model or default_model)},"messages":[{messages}]'
    text += ',"stream":true,"stream_options":{"include_usage":true}'
    if request.tools:
        text += f',"tools":{_tools_text(request.tools)}'
    if request.temperature is not None:
        text += f',"temperature":{dumps(request.temperature)}'
    return text + "}"


_V = TypeVar("_V")
_HISTORY_CACHE_SIZE = 128
# id(first history message) -> (the history it encoded, its text): a session's
# next call sends the same messages plus a few, so only those are joined on.
_history_cache: OrderedDict[int, tuple[tuple[ChatMessage, ...], str]] = OrderedDict()


def _messages_text(messages: tuple[ChatMessage, ...]) -> str:
    """The messages' encodings joined; after the first (the system prompt, built
    anew for every call) the longest prefix sent before is reused as one string."""
    if len(messages) < 3:
        return ",".join(_message_text(message) for message in messages)
    head, history = _message_text(messages[0]), messages[1:]
    key = id(history[0])
    hit = _history_cache.get(key)
    # A tuple comparison of the very same objects is an identity check in C.
    if hit is not None and len(hit[0]) <= len(history) and history[: len(hit[0])] == hit[0]:
        done, text = hit
    else:
        done, text = (), ""
    added = ",".join(_message_text(message) for message in history[len(done) :])
    if added:
        text = f"{text},{added}" if text else added
    _keep(_history_cache, key, (history, text), _HISTORY_CACHE_SIZE)
    return f"{head},{text}"


def _keep(cache: OrderedDict[int, _V], key: int, value: _V, size: int) -> None:
    """Store *value* as the most recently used entry; drop the least recent beyond *size*."""
    cache[key] = value
    cache.move_to_end(key)
    if len(cache) > size:
        cache.popitem(last=False)


def _message_text(message: ChatMessage) -> str:
    cached = message.wire_cache.get(PROVIDER)
    if cached is None:
        cached = message.wire_cache[PROVIDER] = dumps(encode_message(message))
    return cached


_TOOLS_CACHE_SIZE = 64
# id(tools) -> (tools, text): the tuple is kept so its id cannot be reused.
_tools_cache: OrderedDict[int, tuple[tuple[ToolSpec, ...], str]] = OrderedDict()


def _tools_text(tools: tuple[ToolSpec, ...]) -> str:
    hit = _tools_cache.get(id(tools))
    text = hit[1] if hit is not None and hit[0] is tools else None
    if text is None:
        text = dumps([encode_tool(tool) for tool in tools])
    _keep(_tools_cache, id(tools), (tools, text), _TOOLS_CACHE_SIZE)
    return text


def request_body(request: ModelRequest, default_model: str) -> JSONObject:
    """The JSON body that asks for *request* as a stream (*default_model* if it names none)."""
    body: JSONObject = {
        "model": request.model or default_model,
        "messages": [encode_message(message) for message in request.messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.tools:
        body["tools"] = [encode_tool(tool) for tool in request.tools]
    if request.temperature is not None:
        body["temperature"] = request.temperature
    return body


def encode_message(message: ChatMessage) -> JSONObject:
    """*message* in chat-completions form.

    Content parts, when the message has them, are sent as a content array. The
    ``openai`` entry of its provider data, if an object, adds its members to the
    message (fields a server wants back, such as its own reasoning field); the
    neutral fields win a clash, and other providers' entries are not sent.
    """
    out: JSONObject = {"role": message.role}
    if message.parts:
        out["content"] = [encode_part(part) for part in message.parts]
    else:
        out["content"] = message.content
    if message.tool_calls:
        out["tool_calls"] = [encode_call(call) for call in message.tool_calls]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    extra = message.provider_data.get(PROVIDER)
    if isinstance(extra, dict):
        for key, value in extra.items():
            out.setdefault(key, value)
    return out


def encode_part(part: ContentPart) -> JSONObject:
    match part:
        case TextPart():
            return {"type": "text", "text": part.text}
        case _:
            assert_never(part)


def encode_call(call: ToolCallRequest) -> JSONObject:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def encode_tool(tool: ToolSpec) -> JSONObject:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


class SSEDecoder:
    """Turns the raw bytes of an event stream into the ``data`` of each event.

    Network reads split the stream anywhere (inside a UTF-8 sequence, between
    ``\\r`` and ``\\n``), so it keeps what it cannot decide yet. ``event``, ``id``,
    ``retry`` fields and ``:`` comments (keep-alives) are skipped.

    Multi-line ``data`` fields of one event are joined with ``\\n`` (as in the
    HTML specification).
    """

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        """The payloads of the events that *chunk* completes.

        Raises:
            ValueError: a line grew longer than :data:`MAX_LINE`.
        """
        text = self._partial + self._utf8.decode(chunk)
        out: list[str] = []
        start = 0
        for match in _EOL.finditer(text):
            if match.group() == "\r" and match.end() == len(text):
                # Possibly the first half of "\r\n": decide when more bytes arrive.
                break
            self._line(text[start : match.start()], out)
            start = match.end()
        self._partial = text[start:]
        if len(self._partial) > MAX_LINE:
            raise ValueError(f"event-stream line longer than {MAX_LINE} characters")
        return out

    def close(self) -> list[str]:
        """The payloads still buffered at the end of the stream.

        The specification drops an event that is not terminated by a blank line;
        real servers sometimes omit the last one, so it is delivered instead.
        """
        out: list[str] = []
        tail = self._partial + self._utf8.decode(b"", final=True)
        self._partial = ""
        for line in _EOL.split(tail):
            self._line(line, out)
        self._line("", out)
        return out

    def _line(self, line: str, out: list[str]) -> None:
        if not line:
            if self._data:
                out.append("\n".join(self._data))
                self._data = []
            return
        if line.startswith(":"):
            return
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value.removeprefix(" "))


def error_message(value: JSON) -> str:
    """The upstream's own error message from an error body, in whatever shape it came."""
    error = value.get("error", value) if isinstance(value, dict) else value
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        for key in ("message", "detail"):
            message = error.get(key)
            if isinstance(message, str):
                return message
    return dumps(value)[:500]


# Lower-cased fragments by which OpenAI, LiteLLM (``ContextWindowExceededError``),
# vLLM, Anthropic and others say that a request does not fit the model's window.
_OVERFLOW_MARKERS = (
    "context_length_exceeded",
    "contextwindowexceedederror",
    "maximum context length",
    "context length exceeded",
    "prompt is too long",
    "too many tokens",
    "reduce the length of the messages",
)


def is_context_overflow(status: int, error: JSON) -> bool:
    """Whether an HTTP *status* answer with body *error* says the context is too long.

    Only 400 and 413 qualify. *error* is the parsed body (OpenAI's ``{"error":
    {"message", "type", "code"}}`` or any other shape) or its text when it was not
    JSON; every string in it (message, type, code) is searched, case-insensitively.
    """
    if status not in (400, 413):
        return False
    text = " ".join(_strings(error, depth=4)).lower()
    return any(marker in text for marker in _OVERFLOW_MARKERS)


def _strings(value: JSON, *, depth: int) -> list[str]:
    if isinstance(value, str):
        return [value]
    if depth == 0:
        return []
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item, depth=depth - 1)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item, depth=depth - 1)]
    return []


def _detail(usage: JSONObject, details: str, key: str) -> int | None:
    """``usage[details][key]`` when it is a non-negative integer, else ``None``."""
    table = usage.get(details)
    value = table.get(key) if isinstance(table, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def protocol_error(message: str) -> ModelError:
    return ModelError(message, retryable=False, code="model_protocol_error")


class UpstreamError(Exception):
    """The server reported an error inside the stream (not a 4xx: those raise ModelError)."""


@attrs.define
class _CallBuilder:
    id: str = ""
    name: str = ""
    arguments: list[str] = attrs.field(factory=list)


class ChunkAssembler:
    """Assembles the data payloads of one completion into model deltas.

    Raises (from :meth:`feed`):
        ModelError: malformed chunk, nameless tool call, or an upstream 4xx error.
        UpstreamError: any other error chunk (may be worth a retry).
    """

    def __init__(self, model: str, source: str) -> None:
        self.model = model
        self.source = source
        self.finish_reason: str | None = None
        self.done = False
        self._calls: dict[int, _CallBuilder] = {}
        self._usage: UsageDelta | None = None

    def feed(self, payload: str) -> list[ModelDelta]:
        """The deltas one event payload yields."""
        if payload.strip() == "[DONE]":
            return self.complete()
        try:
            chunk: JSON = json.loads(payload)
        except ValueError as exc:
            raise protocol_error(
                f"malformed JSON chunk from {self.source} ({exc}): {payload[:200]!r}"
            ) from None
        if not isinstance(chunk, dict):
            raise protocol_error(f"chunk from {self.source} is not an object: {payload[:200]!r}")
        if "error" in chunk:
            self._error(chunk["error"])
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            # Some servers repeat usage in every chunk; the last one is the total.
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            model = chunk.get("model")
            self._usage = UsageDelta(
                prompt_tokens=prompt if isinstance(prompt, int) else 0,
                completion_tokens=completion if isinstance(completion, int) else 0,
                model=model if isinstance(model, str) and model else self.model,
                cached_tokens=_detail(usage, "prompt_tokens_details", "cached_tokens"),
                reasoning_tokens=_detail(usage, "completion_tokens_details", "reasoning_tokens"),
            )
        choices = chunk.get("choices")
        if choices is None:
            return []
        if not isinstance(choices, list):
            raise protocol_error(f"'choices' is not a list: {payload[:200]!r}")
        out: list[ModelDelta] = []
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                content = delta.get("content")
                if isinstance(content, str) and content:
                    out.append(TextDelta(content))
                fragments = delta.get("tool_calls")
                if isinstance(fragments, list):
                    for fragment in fragments:
                        if isinstance(fragment, dict):
                            self._add_fragment(fragment)
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                self.finish_reason = reason
                out += self._flush_calls()
        return out

    def complete(self) -> list[ModelDelta]:
        """The final deltas: calls not yet flushed, usage, then the finish."""
        out = self._flush_calls()
        if self._usage is not None:
            out.append(self._usage)
        out.append(FinishDelta(self.finish_reason or "stop"))
        self.done = True
        return out

    def _error(self, error: JSON) -> None:
        message = error_message(error)
        code = error.get("code") if isinstance(error, dict) else None
        if isinstance(code, int) and 400 <= code < 500 and code != 429:
            kind = "context_overflow" if is_context_overflow(code, error) else "model_rejected"
            raise ModelError(f"upstream error: {message}", retryable=False, code=kind)
        raise UpstreamError(f"upstream error in stream: {message}")

    def _add_fragment(self, fragment: JSONObject) -> None:
        index = fragment.get("index")
        call_id = fragment.get("id")
        if not isinstance(index, int):
            # Servers that omit the index send one call per fragment run; a new id starts a call.
            known = {b.id for b in self._calls.values()}
            last = max(self._calls, default=-1)
            is_new = isinstance(call_id, str) and bool(call_id) and call_id not in known
            index = last + 1 if is_new or last < 0 else last
        builder = self._calls.setdefault(index, _CallBuilder())
        if isinstance(call_id, str) and call_id:
            builder.id = call_id
        function = fragment.get("function")
        if isinstance(function, dict):
            name = function.get("name")
            if isinstance(name, str) and name and not builder.name:
                builder.name = name
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                builder.arguments.append(arguments)
            elif isinstance(arguments, dict):
                builder.arguments = [dumps(arguments)]

    def _flush_calls(self) -> list[ModelDelta]:
        out: list[ModelDelta] = []
        for index in sorted(self._calls):
            builder = self._calls[index]
            if not builder.name:
                raise protocol_error(f"tool call #{index} from {self.source} has no name")
            call = ToolCallRequest(
                id=builder.id or f"call_{uuid.uuid4().hex[:24]}",
                name=builder.name,
                arguments="".join(builder.arguments) or "{}",
            )
            out.append(ToolCallDelta(call))
        self._calls.clear()
        return out

"""The OpenAI chat-completions wire format, without I/O.

:func:`request_body` turns a neutral :class:`ModelRequest` into the JSON body of
``POST /chat/completions`` (:func:`request_parts`: the same as UTF-8 JSON,
encoded incrementally, in pieces sent one after another). The response side
(event-stream decoding, chunk assembly, error bodies) is in
``_openai_response.py`` and re-exported here; the I/O, timeout and retry policy
live in ``_openai.py``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar, assert_never

from attrs import frozen

from sessions import JSONObject, dumps

from .._core._model import (
    ChatMessage,
    ContentPart,
    ModelRequest,
    TextPart,
    ToolCallRequest,
    ToolSpec,
)

# Re-exported (``X as X``): these were defined here before they moved out.
from ._openai_response import MAX_LINE as MAX_LINE
from ._openai_response import ChunkAssembler as ChunkAssembler
from ._openai_response import SSEDecoder as SSEDecoder
from ._openai_response import UpstreamError as UpstreamError
from ._openai_response import error_message as error_message
from ._openai_response import is_context_overflow as is_context_overflow
from ._openai_response import protocol_error as protocol_error

PROVIDER = "openai"
"""This provider's name, and so its key in a message's ``provider_data``."""


def request_parts(request: ModelRequest, default_model: str) -> tuple[bytes, ...]:
    """:func:`request_body` as UTF-8 JSON, in the pieces to send one after another.

    Each history message is encoded once (cached on the message) and each mode's
    tool list once (cached by identity: :meth:`ModeRegistry.tools_for` returns
    the same tuple every step). A long history goes out as its settled part, the
    very object the previous call sent (see :class:`_HistoryText`), between a
    small first piece and a last one: a call costs what its new messages cost,
    not a copy of the whole history. Joining the pieces for every call allocated
    and copied the whole body; on a 580 KiB body that took ~250 µs of page faults
    per call in B8.
    """
    head = f'{{"model":{dumps(request.model or default_model)},"messages":['
    tail = '],"stream":true,"stream_options":{"include_usage":true}'
    if request.tools:
        tail += f',"tools":{_tools_text(request.tools)}'
    if request.temperature is not None:
        tail += f',"temperature":{dumps(request.temperature)}'
    tail += "}"
    messages = request.messages
    if len(messages) < 3:
        return ((head + ",".join(_message_text(message) for message in messages) + tail).encode(),)
    # The first message (the system prompt) is built anew for every call.
    first = (head + _message_text(messages[0]) + ",").encode()
    history = _history_text(messages[1:])
    if not history.settled:
        return (first + history.recent + tail.encode(),)
    if not history.recent:
        return (first, history.settled, tail.encode())
    return (first, history.settled, b"," + history.recent + tail.encode())


def request_bytes(request: ModelRequest, default_model: str) -> bytes:
    """:func:`request_parts` joined: the whole body as one ``bytes``."""
    return b"".join(request_parts(request, default_model))


_V = TypeVar("_V")
_SETTLE_AT = 64 * 1024
"""Bytes of recent history text at which they join the settled part (one copy of
the whole history per this much growth, instead of per call)."""


@frozen
class _HistoryText:
    """Messages as comma-joined UTF-8 JSON, in two immutable pieces.

    ``settled`` is the start of the history, sent as a part of its own and shared
    by every call whose history begins with it; ``recent`` is what followed,
    under :data:`_SETTLE_AT` bytes, copied into each call's last part. Neither is
    ever changed in place, so a body already built (or being sent again) stays as
    it was while the history grows.
    """

    settled: bytes = b""
    recent: bytes = b""

    def extended(self, added: bytes) -> _HistoryText:
        recent = self.recent + b"," + added if self.recent else added
        if len(recent) < _SETTLE_AT:
            return _HistoryText(self.settled, recent)
        return _HistoryText(self.settled + b"," + recent if self.settled else recent)


_HISTORY_CACHE_SIZE = 128
# id(first history message) -> (the history it encoded, its text): a session's
# next call sends the same messages plus a few, so only those are encoded and added.
_history_cache: OrderedDict[int, tuple[tuple[ChatMessage, ...], _HistoryText]] = OrderedDict()


def _history_text(history: tuple[ChatMessage, ...]) -> _HistoryText:
    """The text of *history*, reusing the longest prefix of it encoded before."""
    key = id(history[0])
    hit = _history_cache.get(key)
    # A tuple comparison of the very same objects is an identity check in C.
    if hit is not None and len(hit[0]) <= len(history) and history[: len(hit[0])] == hit[0]:
        done, text = hit
    else:
        done, text = (), _HistoryText()
    if len(done) < len(history):
        added = ",".join(_message_text(message) for message in history[len(done) :])
        text = text.extended(added.encode())
    _keep(_history_cache, key, (history, text), _HISTORY_CACHE_SIZE)
    return text


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
